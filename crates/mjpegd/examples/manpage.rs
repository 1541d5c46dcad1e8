//! Writes the manual page mjpegd(1), in roff, from the command line's own definition
//! (`mjpegd::cli::Cli`), so every flag, its `MJPEGD_*` variable and its default are documented
//! as the binary parses them. An example rather than part of the binary: the server does not
//! carry the generator, and scripts/build-deb.sh runs it for the package.
//!
//!   cargo run -p mjpegd --example manpage                  # to standard output
//!   cargo run -p mjpegd --example manpage -- mjpegd.1      # to a file
//!   cargo run -p mjpegd --example manpage | man -l -       # read it
//!
//! The page's date is the day of `SOURCE_DATE_EPOCH` (seconds) when set, so a package build is
//! reproducible; otherwise today's (an empty date would shift the `.TH` fields).

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};
use mjpegd::cli::Cli;

/// The NAME line: what it is, in the words of a package description.
const ABOUT: &str = "live camera streaming server (Motion JPEG over HTTP)";

/// DESCRIPTION, one paragraph per entry.
const DESCRIPTION: &[&str] = &[
    "mjpegd streams cameras (V4L2 webcams, ffmpeg commands, other MJPEG cameras, image files, \
     a built-in test pattern) to any number of viewers as multipart/x-mixed-replace: browsers, \
     OctoPrint, Home Assistant, OpenCV, VLC and ffmpeg. One capture per camera is shared by every \
     viewer, and it stops when nobody watches. It keeps mjpg-streamer's URLs \
     (/?action=stream, /?action=snapshot).",
    "Without --config, the options define one camera named \"default\". With --config, a TOML \
     file declares the server and any number of cameras (with recording, motion detection, \
     users and the NATS bus); the camera options cannot be combined with it. Every option can \
     also be given as the MJPEGD_* environment variable shown with it.",
];

/// The EXAMPLES section: (command, what it does).
const EXAMPLES: &[(&str, &str)] = &[
    (
        "mjpegd",
        "Serve the test pattern at http://127.0.0.1:8080/ (the grid page; /stream is the MJPEG \
         stream, /snapshot.jpg one frame).",
    ),
    (
        "mjpegd --source v4l2:/dev/video0 --listen 0.0.0.0:8080",
        "Serve the first webcam on every network interface.",
    ),
    (
        "mjpegd --list-devices",
        "List the V4L2 cameras with their formats, sizes and frame rates.",
    ),
    (
        "mjpegd --check-config /etc/mjpegd/mjpegd.toml",
        "Check a configuration file and print what it declares, without serving.",
    ),
    (
        "mjpegd hash-password",
        "Read a password from standard input and print its argon2 hash, for [[auth.users]].",
    ),
];

fn main() -> ExitCode {
    let out = std::env::args_os().nth(1);
    let mut page = Vec::new();
    if let Err(e) = render(&mut page) {
        eprintln!("manpage: cannot render the page: {e}");
        return ExitCode::FAILURE;
    }
    let written = match &out {
        Some(path) => std::fs::write(path, &page).map_err(|e| (path.to_string_lossy(), e)),
        None => std::io::stdout()
            .write_all(&page)
            .map_err(|e| ("standard output".into(), e)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err((to, e)) => {
            eprintln!("manpage: cannot write to {to}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn render(w: &mut dyn Write) -> std::io::Result<()> {
    let man = Man::new(man_cmd())
        .manual("mjpegd manual")
        .date(page_date());
    // Section by section, to leave out clap_mangen's SUBCOMMANDS: it points at pages
    // (mjpegd-hash-password(1), mjpegd-help(1)) that do not exist; COMMANDS below says it all.
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend(extra_sections(&man_cmd()).render().into_bytes());
    man.render_version_section(&mut out)?;
    // Each section repeats the preamble that defines the apostrophe string; once is enough.
    let page = String::from_utf8_lossy(&out);
    let preamble = Roff::new().render();
    let first = page.find(&preamble).map_or(0, |at| at + preamble.len());
    let rest = page[first..].replace(&preamble, "");
    w.write_all(page[..first].as_bytes())?;
    w.write_all(rest.as_bytes())
}

/// The command line the page describes.
fn man_cmd() -> clap::Command {
    Cli::command()
        .about(ABOUT)
        .long_about(DESCRIPTION.join("\n\n"))
}

/// The subcommands, then what clap cannot know: examples, the packaged files, where the rest is
/// documented.
fn extra_sections(cmd: &clap::Command) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands() {
        r.control("TP", []);
        r.text([bold(format!("mjpegd {}", sub.get_name()))]);
        if let Some(about) = sub.get_about() {
            r.text([roman(about.to_string())]);
        }
    }
    r.control("PP", []);
    r.text([roman("Without a command, mjpegd serves.")]);
    r.control("SH", ["EXAMPLES"]);
    for (command, what) in EXAMPLES {
        r.control("TP", []);
        r.text([bold(*command)]);
        r.text([roman(*what)]);
    }
    r.control("SH", ["FILES"]);
    r.control("TP", []);
    r.text([italic("/etc/mjpegd/mjpegd.toml")]);
    r.text([roman(
        "The configuration of the packaged service (mjpegd.service runs mjpegd --config \
         /etc/mjpegd/mjpegd.toml as the user mjpegd). Out of the box it serves the test pattern \
         on 127.0.0.1:8080 only. Check edits with --check-config, then restart the service.",
    )]);
    r.control("TP", []);
    r.text([italic("/var/lib/mjpegd")]);
    r.text([roman(
        "The service's state directory (its working directory: relative recording \
         directories are under it).",
    )]);
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1). The README and the configuration reference (config.md) are in "),
        italic("/usr/share/doc/mjpegd"),
        roman("."),
    ]);
    r
}

/// The day of `SOURCE_DATE_EPOCH` when it is a number of seconds, else today, as YYYY-MM-DD (UTC).
fn page_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
    let (y, m, d) = mjpegd::civil::civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

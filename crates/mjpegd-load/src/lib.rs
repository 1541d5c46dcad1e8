//! The `mjpegd-load` client: measures a running MJPEG server over the wire.
//!
//! - `run`: N concurrent viewers (plus optional stalled ones) of a stream URL; per-viewer fps,
//!   throughput, time to first frame, publish-to-receive latency from `X-Timestamp`, every part
//!   validated; optionally the server's CPU and RSS from `/proc`. Over `http://` or `https://`
//!   ([`tls`]), HTTP/1.1 with one connection per viewer or HTTP/2 with several viewers as
//!   streams of one connection ([`multiplex`]).
//! - `ceiling`: a zero-work reference server with the same wire format, the upper bound the
//!   machine allows.
//! - `cpu`: a process's CPU and RSS over an interval (e.g. an idle server).
//! - `row`: formats saved JSON reports as a markdown table row (used by `scripts/bench.sh`).
//!
//! Everything runs on one thread (a current-thread runtime) so that the client can be pinned to
//! one core and its cost is known. For the same reason the client does not use the server's
//! stream reader (`mjpegd::mjpeg::read`), which copies every frame: [`parse`] is its own
//! zero-copy parser, about ten times cheaper per byte, held to the same grammar by the table of
//! cases in `mjpegd::mjpeg::cases` that both parsers are tested against.

pub mod ceiling;
pub mod client;
pub mod multiplex;
pub mod parse;
pub mod procfs;
pub mod report;
pub mod stats;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use report::{CpuReport, Report};

/// A failure that stops `mjpegd-load`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or input.
    #[error("{0}")]
    Usage(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Command line of `mjpegd-load`.
#[derive(Debug, Parser)]
#[command(
    name = "mjpegd-load",
    version,
    about = "Load client and reference server for MJPEG-over-HTTP streaming servers",
    after_help = "Examples:\n  \
        mjpegd-load run --url http://127.0.0.1:8080/stream --viewers 1000 --duration 15 --pid 1234\n  \
        mjpegd-load run --url http://127.0.0.1:8080/stream --viewers 800 --stalled 200 --duration 20 --json\n  \
        mjpegd-load run --url http://127.0.0.1:8080/stream --viewers 200 --churn 20 --duration 1800\n  \
        mjpegd-load run --url https://localhost:8443/stream --ca cert.pem --http2 --streams-per-connection 12 --viewers 200\n  \
        mjpegd-load ceiling --listen 127.0.0.1:8081 --frame f001.jpg --fps 30\n  \
        mjpegd-load cpu --pid 1234 --duration 5\n  \
        mjpegd-load row --label '1000 viewers' --report run.json --ceiling ceiling.json\n\n\
        Run it on a single core (taskset -c 1 ...) and raise the open file limit (ulimit -n 65536)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open N concurrent viewers of a stream URL for D seconds and report fps, throughput,
    /// time to first frame, latency, invalid parts and errors.
    Run(RunArgs),
    /// Serve a prebuilt part to every connection at a fixed rate: the zero-work reference server.
    Ceiling(CeilingArgs),
    /// Measure a process's CPU % (100 = one core) and RSS over an interval.
    Cpu(CpuArgs),
    /// Print saved JSON reports (from `run --json` or `cpu --json`) as a markdown table row.
    Row(RowArgs),
}

/// Options of `mjpegd-load run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stream URL: http://HOST:PORT/PATH, or https:// (then --ca or --insecure).
    #[arg(long)]
    pub url: String,
    /// For https://: trust the certificates in this PEM file (the server's own, if
    /// self-signed).
    #[arg(long, conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// For https://: accept any certificate (benchmarking against a self-signed one).
    #[arg(long)]
    pub insecure: bool,
    /// Speak HTTP/2: ALPN h2 over https://, prior knowledge (h2c) over http://.
    #[arg(long)]
    pub http2: bool,
    /// With --http2: viewers multiplexed as streams of each connection (a dashboard shows
    /// every camera over one); the last connection takes the remainder.
    #[arg(long, default_value_t = 1, requires = "http2")]
    pub streams_per_connection: u32,
    /// With --http2: let the server send DATA frames of up to this many bytes (16384 to
    /// 16777215; default 16384, what browsers allow).
    #[arg(long, requires = "http2")]
    pub h2_max_frame_size: Option<u32>,
    /// Concurrent reading viewers.
    #[arg(long, default_value_t = 1)]
    pub viewers: u32,
    /// Run length in seconds, from the first connection.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Spread the connections evenly over this many seconds (0: all at once, bounded by
    /// --connect-concurrency).
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Connections being opened at the same time, at most.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Also open this many viewers that send the request and never read (4 KiB receive
    /// buffer), and report how many the server disconnected.
    #[arg(long, default_value_t = 0)]
    pub stalled: u32,
    /// Measure this process (the server): CPU % over the run and peak RSS.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A label copied into the report.
    #[arg(long)]
    pub label: Option<String>,
    /// Exit with status 2 if any part was invalid or any viewer failed.
    #[arg(long)]
    pub strict: bool,
    /// Join/leave churn: each viewer leaves after a random 0.5–1.5 × this many seconds and
    /// joins again at once, until the end (0: viewers stay for the whole run).
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
}

/// Options of `mjpegd-load ceiling`.
#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// The JPEG file sent as every frame.
    #[arg(long)]
    pub frame: PathBuf,
    /// Frames per second.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
}

/// Options of `mjpegd-load cpu`.
#[derive(Debug, Args)]
pub struct CpuArgs {
    /// The process to measure.
    #[arg(long)]
    pub pid: u32,
    /// Interval in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A label copied into the report.
    #[arg(long)]
    pub label: Option<String>,
}

/// Options of `mjpegd-load row`.
#[derive(Debug, Args)]
pub struct RowArgs {
    /// Print the table header instead of a row.
    #[arg(long, conflicts_with_all = ["report", "ceiling"])]
    pub header: bool,
    /// The case's name in the first column (default: the report's label).
    #[arg(long)]
    pub label: Option<String>,
    /// JSON file written by `run --json` or `cpu --json`.
    #[arg(long, required_unless_present = "header")]
    pub report: Option<PathBuf>,
    /// JSON of a `run` against the ceiling server under the same load: adds the fps ratio.
    #[arg(long)]
    pub ceiling: Option<PathBuf>,
}

fn seconds(v: f64, flag: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| Error::Usage(format!("{flag} must be a non-negative number of seconds")))
}

/// Runs a future on a current-thread runtime inside a `LocalSet` (tasks share `Rc` state).
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    Ok(tokio::task::LocalSet::new().block_on(&rt, f))
}

fn read_report(path: &PathBuf) -> Result<Report, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{} is not an mjpegd-load report: {e}",
            path.display()
        ))
    })
}

fn print_json(report: &Report) -> Result<(), Error> {
    let json = serde_json::to_string(report)
        .map_err(|e| Error::Usage(format!("encoding the report: {e}")))?;
    println!("{json}");
    Ok(())
}

fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Run(a) => {
            if a.viewers == 0 && a.stalled == 0 {
                return Err(Error::Usage(
                    "nothing to do: --viewers and --stalled are 0".into(),
                ));
            }
            let cfg = client::RunConfig {
                url: a.url,
                viewers: a.viewers,
                stalled: a.stalled,
                duration: seconds(a.duration, "--duration")?,
                ramp: seconds(a.ramp, "--ramp")?,
                connect_concurrency: a.connect_concurrency,
                pid: a.pid,
                label: a.label,
                churn: seconds(a.churn, "--churn")?,
                trust: match (a.ca, a.insecure) {
                    (Some(ca), _) => Some(tls::Trust::Ca(ca)),
                    (None, true) => Some(tls::Trust::Insecure),
                    (None, false) => None,
                },
                http2: a.http2,
                streams_per_connection: a.streams_per_connection,
                h2_max_frame_size: a.h2_max_frame_size,
            };
            let report = block_on(client::run(cfg))??;
            let failed = report.invalid_parts > 0 || report.errors.total() > 0;
            if a.json {
                print_json(&Report::Run(Box::new(report)))?;
            } else {
                print!("{report}");
            }
            Ok(if a.strict && failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Ceiling(a) => {
            block_on(ceiling::serve(ceiling::CeilingConfig {
                listen: a.listen,
                frame: a.frame,
                fps: a.fps,
            }))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cpu(a) => {
            let duration = seconds(a.duration, "--duration")?;
            let meter = procfs::Meter::start(procfs::Proc::Pid(a.pid))
                .map_err(|e| Error::io(format!("measuring process {}", a.pid), e))?;
            // Sample RSS a few times a second (cheap) so the peak does not depend on VmHWM.
            let end = std::time::Instant::now() + duration;
            let mut meter = meter;
            while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(left.min(Duration::from_millis(250)));
                meter.sample();
            }
            let usage = meter
                .finish()
                .map_err(|e| Error::io(format!("measuring process {}", a.pid), e))?;
            let report = CpuReport {
                label: a.label,
                duration_s: duration.as_secs_f64(),
                usage: report::ProcUsage {
                    pid: a.pid,
                    cpu_percent: usage.cpu_percent,
                    peak_rss_mb: usage.peak_rss as f64 / report::MB,
                    rss_end_mb: usage.rss_end as f64 / report::MB,
                },
            };
            if a.json {
                print_json(&Report::Cpu(report))?;
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Row(a) => {
            if a.header {
                println!("{}", report::markdown_header());
                return Ok(ExitCode::SUCCESS);
            }
            let path = a
                .report
                .ok_or_else(|| Error::Usage("--report is required".into()))?;
            let r = read_report(&path)?;
            let ceiling = a.ceiling.as_ref().map(read_report).transpose()?;
            let label = a.label.or_else(|| match &r {
                Report::Run(r) => r.label.clone(),
                Report::Cpu(c) => c.label.clone(),
            });
            let label = label.unwrap_or_else(|| path.display().to_string());
            println!("{}", report::markdown_row(&label, &r, ceiling.as_ref()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `mjpegd-load` with parsed arguments; errors are printed to stderr.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mjpegd-load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "mjpegd-load",
            "run",
            "--url",
            "http://127.0.0.1:1/stream",
            "--viewers",
            "3",
            "--stalled",
            "2",
            "--json",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Run(RunArgs {
                viewers: 3,
                stalled: 2,
                json: true,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["mjpegd-load", "row"]).is_err());
        assert!(Cli::try_parse_from(["mjpegd-load", "row", "--header"]).is_ok());
    }
}

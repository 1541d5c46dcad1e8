//! Command-line flags (each also settable as an `MJPEGD_*` environment variable), merged with
//! the optional config file into the checked [`Settings`] the rest of the server uses.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{
    self, CameraDraft, ConfigError, ListenSpec, ServerSection, parse_fps, parse_size,
};
use crate::http::HttpConfig;
use crate::hub::CameraConfig;
use crate::server::ServerConfig;
use crate::source::SourceSpec;

/// mjpegd: live camera video to any number of viewers as Motion JPEG over HTTP.
///
/// Without --config, the flags define one camera named "default".
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// TOML config file declaring the server and any number of cameras (see docs/config.md).
    #[arg(long, env = "MJPEGD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check a config file, print what it declares, and exit (status 2 if invalid).
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,

    /// List the cameras (V4L2 devices) with their formats, sizes, frame rates and controls, and exit.
    #[arg(long)]
    pub list_devices: bool,

    /// Read every recorded frame under DIR (a recording directory or one camera's), check
    /// its CRC, print each damaged range, and exit (status 1 if any is damaged).
    #[arg(long, value_name = "DIR")]
    pub check_recordings: Option<PathBuf>,

    /// Address to listen on: ADDR:PORT or unix:PATH; repeat for several [default: 127.0.0.1:8080].
    #[arg(long, env = "MJPEGD_LISTEN", value_delimiter = ',')]
    pub listen: Vec<ListenSpec>,

    /// File mode of unix sockets, octal [default: 0660].
    #[arg(long, env = "MJPEGD_UNIX_MODE")]
    pub unix_mode: Option<String>,

    /// PEM certificate chain: serve HTTPS on every TCP address (reloaded on SIGHUP).
    #[arg(
        long,
        env = "MJPEGD_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "MJPEGD_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// A user allowed to watch, as NAME:HASH (hash from `mjpegd hash-password`); repeat for
    /// several. With any user set, every URL needs a login or a token.
    #[arg(
        long = "user",
        env = "MJPEGD_USERS",
        value_name = "NAME:HASH",
        value_delimiter = ';'
    )]
    pub users: Vec<String>,

    /// Secret signing URL tokens (keeps tokens valid across restarts) [default: random].
    #[arg(long, env = "MJPEGD_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Serve /metrics without authentication.
    #[arg(long, env = "MJPEGD_PUBLIC_METRICS")]
    pub public_metrics: bool,

    /// Serve /api/state without authentication.
    #[arg(long, env = "MJPEGD_PUBLIC_STATE")]
    pub public_state: bool,

    /// Let pages from ORIGIN read streams and state (CORS) [default: off].
    #[arg(long, env = "MJPEGD_ALLOW_ORIGIN", value_name = "ORIGIN")]
    pub allow_origin: Option<String>,

    /// Most stream viewers of one camera, 1-1000000 [default: --max-viewers].
    #[arg(long, env = "MJPEGD_MAX_VIEWERS_PER_CAMERA", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_viewers_per_camera: Option<u64>,

    /// Open connections in total, 1-1000000 [default: 10000].
    #[arg(long, env = "MJPEGD_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,

    /// Open connections from one IP address, 1-1000000 [default: 256].
    #[arg(long, env = "MJPEGD_MAX_CONNECTIONS_PER_IP", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_ip: Option<u64>,

    /// What to stream: `testpattern` (default), `images` (built-in 1,2,3), `images:DIR`, `exec:COMMAND`, `http(s)://URL` or `v4l2:/dev/video0[?format=YUYV]`.
    #[arg(long, env = "MJPEGD_SOURCE")]
    pub source: Option<SourceSpec>,

    /// Output size WxH: generated video renders at it, larger frames are downscaled [default: 1280x720].
    #[arg(long, env = "MJPEGD_SIZE", value_parser = parse_size)]
    pub size: Option<(u32, u32)>,

    /// Capture rate in frames per second, 0.01-240 [default: 30 for testpattern, 1 for images].
    #[arg(long, env = "MJPEGD_FPS", value_parser = parse_fps)]
    pub fps: Option<f64>,

    /// JPEG quality of frames mjpegd encodes, 1-100 [default: 80].
    #[arg(long, env = "MJPEGD_QUALITY", value_parser = clap::value_parser!(u64).range(1..=100))]
    pub quality: Option<u64>,

    /// Clockwise rotation of the video: 0, 90, 180 or 270 [default: 0].
    #[arg(long, env = "MJPEGD_ROTATE", value_parser = ["0", "90", "180", "270"])]
    pub rotate: Option<String>,

    /// Mirror the video: horizontal or vertical.
    #[arg(long, env = "MJPEGD_FLIP", value_parser = ["horizontal", "vertical"])]
    pub flip: Option<String>,

    /// Seconds capture keeps running after the last viewer leaves, 0-86400 [default: 10].
    #[arg(long, env = "MJPEGD_IDLE_TIMEOUT", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub idle_timeout: Option<u64>,

    /// Seconds a viewer's socket may accept no data before it is disconnected, 1-3600 [default: 10].
    #[arg(long, env = "MJPEGD_SEND_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub send_timeout: Option<u64>,

    /// Threads that encode and transform frames, shared by all cameras, 0-256; 0 is one per core [default: 0].
    #[arg(long, env = "MJPEGD_ENCODE_WORKERS", value_parser = clap::value_parser!(u64).range(0..=crate::pool::MAX_WORKERS as u64))]
    pub encode_workers: Option<u64>,

    /// Seconds without a frame before viewers see "no signal" and the source is reopened, 1-3600 [default: 5].
    #[arg(long, env = "MJPEGD_SOURCE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub source_timeout: Option<u64>,

    /// Size WxH streams fit in when the viewer asks for none (?width=/?height=); snapshots keep the full size [default: full].
    #[arg(long, env = "MJPEGD_STREAM_SIZE", value_parser = parse_size)]
    pub stream_size: Option<(u32, u32)>,

    /// Do not send a frame byte-identical to the previous one (a static screen then costs almost nothing).
    #[arg(long, env = "MJPEGD_DROP_SAME_FRAMES")]
    pub drop_same_frames: bool,

    /// Most concurrent stream viewers; past it new viewers get 503 with Retry-After, 1-1000000 [default: 1000].
    #[arg(long, env = "MJPEGD_MAX_VIEWERS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_viewers: Option<u64>,

    /// Publish every camera on this NATS bus (nats://[TOKEN@|USER:PASS@]HOST:4222[,HOST:PORT...]) for edges to serve.
    #[arg(
        long,
        env = "MJPEGD_PUBLISH",
        value_name = "NATS_URL",
        hide_env_values = true
    )]
    pub publish: Option<String>,

    /// Serve every camera announced on this NATS bus, each under its own name (an edge node).
    #[arg(
        long,
        env = "MJPEGD_CAMERAS_FROM",
        value_name = "NATS_URL",
        hide_env_values = true
    )]
    pub cameras_from: Option<String>,

    /// Record the camera into DIR/default/ (segments of the published JPEGs; see docs/recording.md).
    #[arg(long, env = "MJPEGD_RECORD", value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// With --record: most bytes kept, e.g. 500M, 10G, 1T [default: 10G].
    #[arg(
        long,
        env = "MJPEGD_RECORD_MAX_BYTES",
        value_name = "BYTES",
        requires = "record"
    )]
    pub record_max_bytes: Option<String>,

    /// With --record: delete recordings older than this, e.g. 3600, 12h, 7d [default: no limit].
    #[arg(
        long,
        env = "MJPEGD_RECORD_MAX_AGE",
        value_name = "AGE",
        requires = "record"
    )]
    pub record_max_age: Option<String>,

    /// Detect motion on the camera with the default settings (see docs/motion.md).
    #[arg(long, env = "MJPEGD_MOTION")]
    pub motion: bool,

    /// Paint this text into the camera's frames, top left: strftime fields (local time),
    /// {camera}, {fps}; e.g. "{camera} %F %T" (see docs/config.md, "Overlays").
    #[arg(long, env = "MJPEGD_OVERLAY", value_name = "TEXT")]
    pub overlay: Option<String>,

    /// Keep state that survives restarts (camera controls set over HTTP) in DIR [default:
    /// $STATE_DIRECTORY, else $XDG_STATE_HOME/mjpegd, else ~/.local/state/mjpegd].
    #[arg(long, env = "MJPEGD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// A subcommand instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Read a password from standard input and print its argon2 hash for --user or [[auth.users]].
    HashPassword,
}

/// Everything the server needs, checked.
pub struct Settings {
    /// Where to listen.
    pub listen: Vec<ListenSpec>,
    /// Unix socket file mode.
    pub unix_mode: u32,
    /// Certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The cameras, in order.
    pub cameras: Vec<CameraConfig>,
    /// HTTP settings.
    pub http: HttpConfig,
    /// Connection settings.
    pub server: ServerConfig,
    /// The NATS bus, when used.
    pub bus: Option<crate::bus::BusSettings>,
    /// Cameras that record, with their settings.
    pub recordings: Vec<(String, crate::record::RecordConfig)>,
    /// Cameras with motion detection, with their settings.
    pub motions: Vec<(String, crate::motion::MotionConfig)>,
    /// Where state that survives restarts is kept; `None`: nowhere (no home directory).
    pub state_dir: Option<PathBuf>,
}

/// Flags and a config file that do not make a server; each says the flag or file and key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Camera flags given together with `--config`.
    #[error(
        "camera flags (--source, --size, --fps, --quality, --rotate, --flip, --idle-timeout, --source-timeout, --stream-size, --drop-same-frames, --record, --motion, --overlay) \
         cannot be combined with --config: set them in {}'s [[cameras]] tables",
        .0.display()
    )]
    FlagsWithConfig(PathBuf),
    /// The config file cannot be read or parsed.
    #[error(transparent)]
    Load(#[from] config::LoadError),
    /// A key of the config file is wrong.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The key and what is wrong.
        #[source]
        source: ConfigError,
    },
    /// A flag is wrong.
    #[error(transparent)]
    Flag(#[from] ConfigError),
    /// The bus settings, from flags and the file together, are wrong.
    #[error("{0} (from --publish/--cameras-from or the config file)")]
    Bus(#[source] ConfigError),
}

/// The state directory when none is configured: systemd's `StateDirectory=` (the first, when
/// it names several), then the XDG base directory rule.
fn default_state_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = var("STATE_DIRECTORY") {
        return std::env::split_paths(&dirs).next();
    }
    if let Some(xdg) = var("XDG_STATE_HOME") {
        return Some(PathBuf::from(xdg).join("mjpegd"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".local/state/mjpegd"))
}

/// Wraps a config error with the file it is in.
fn in_file(path: &std::path::Path) -> impl Fn(ConfigError) -> SettingsError + '_ {
    move |source| SettingsError::InFile {
        path: path.to_owned(),
        source,
    }
}

impl Cli {
    fn camera_flags_given(&self) -> bool {
        self.source.is_some()
            || self.size.is_some()
            || self.fps.is_some()
            || self.quality.is_some()
            || self.rotate.is_some()
            || self.flip.is_some()
            || self.idle_timeout.is_some()
            || self.source_timeout.is_some()
            || self.stream_size.is_some()
            || self.drop_same_frames
            || self.record.is_some()
            || self.motion
            || self.overlay.is_some()
    }

    /// Merges flags and the config file into checked settings; errors name the flag or the
    /// file and key, and what is accepted.
    pub fn into_settings(self) -> Result<Settings, SettingsError> {
        let (server_section, cameras, auth_section, mut bus_section, (recordings, motions)) =
            match &self.config {
                Some(path) => {
                    if self.camera_flags_given() {
                        return Err(SettingsError::FlagsWithConfig(path.clone()));
                    }
                    let mut file = config::load(path)?;
                    // An edge may serve only what it discovers.
                    let edge_only = file.cameras.is_empty()
                        && (file.bus.cameras_from.is_some() || self.cameras_from.is_some());
                    let cameras = if edge_only {
                        Vec::new()
                    } else {
                        config::check_cameras(&file.cameras).map_err(in_file(path))?
                    };
                    let bus = std::mem::take(&mut file.bus);
                    let server =
                        config::check_server(&file.server, "server.").map_err(in_file(path))?;
                    let recordings =
                        config::check_recordings(&file.cameras).map_err(in_file(path))?;
                    let motions = config::check_motions(&file.cameras).map_err(in_file(path))?;
                    (
                        server,
                        cameras,
                        Some((file.auth, path.clone())),
                        bus,
                        (recordings, motions),
                    )
                }
                None => {
                    let draft = CameraDraft {
                        name: "default".into(),
                        source: self.source.as_ref().map_or_else(
                            || SourceSpec::TestPattern.to_string(),
                            ToString::to_string,
                        ),
                        size: self.size.map(|(w, h)| format!("{w}x{h}")),
                        fps: self.fps,
                        quality: self.quality,
                        idle_timeout: self.idle_timeout,
                        source_timeout: self.source_timeout,
                        rotate: self.rotate.as_deref().and_then(|r| r.parse().ok()),
                        flip: self.flip.clone(),
                        stream_size: self.stream_size.map(|(w, h)| format!("{w}x{h}")),
                        drop_same_frames: self.drop_same_frames.then_some(true),
                        record: self.record.clone().map(|dir| config::RecordSection {
                            dir,
                            max_bytes: self
                                .record_max_bytes
                                .clone()
                                .map(config::NumberOrText::Text),
                            max_age: self.record_max_age.clone().map(config::NumberOrText::Text),
                            ..config::RecordSection::default()
                        }),
                        motion: self.motion.then(config::MotionSection::default),
                        controls: None,
                        overlay: self.overlay.clone().map(|text| {
                            config::OneOrMany::One(config::OverlaySection {
                                text,
                                ..config::OverlaySection::default()
                            })
                        }),
                    };
                    let flag = |field: &str| match field.split_once('.') {
                        Some((section, _)) => format!("--{section}"),
                        None => format!("--{}", field.replace('_', "-")),
                    };
                    // An edge (--cameras-from) without camera flags serves only what it discovers.
                    let cameras = if self.cameras_from.is_some() && !self.camera_flags_given() {
                        Vec::new()
                    } else {
                        vec![config::check_camera(&draft, &flag)?]
                    };
                    let record_flag = |field: &str| match field {
                        "dir" => "--record".to_owned(),
                        f => format!("--record-{}", f.replace('_', "-")),
                    };
                    let recordings = match &draft.record {
                        Some(r) => {
                            vec![(draft.name.clone(), config::check_record(r, &record_flag)?)]
                        }
                        None => Vec::new(),
                    };
                    let server = config::check_server(&ServerSection::default(), "--")?;
                    let bus = config::BusSection {
                        // Also the idle grace of discovered cameras; a build without the bus
                        // has none, and must not mistake the flag for a bus setting.
                        #[cfg(feature = "bus")]
                        idle_timeout: self.idle_timeout,
                        ..config::BusSection::default()
                    };
                    let motion_flag = |_: &str| "--motion".to_owned();
                    let motions = config::check_camera_motion(&draft, &motion_flag)?
                        .map(|m| (draft.name.clone(), m))
                        .into_iter()
                        .collect();
                    (server, cameras, None, bus, (recordings, motions))
                }
            };
        let snapshot_wait = cameras
            .iter()
            .map(|c| c.source_timeout)
            .max()
            // Cameras discovered on a bus use the default source timeout.
            .unwrap_or(std::time::Duration::from_secs(5))
            + std::time::Duration::from_secs(1);
        let max_viewers = self
            .max_viewers
            .map_or(server_section.max_viewers, |v| v as usize);
        let send_timeout = self
            .send_timeout
            .map_or(server_section.send_timeout, std::time::Duration::from_secs);
        let names: Vec<String> = cameras.iter().map(|c| c.name.clone()).collect();
        if let Some(url) = &self.publish {
            bus_section.url = Some(config::OneOrMany::One(url.clone()));
            if bus_section.publish.is_none() {
                bus_section.publish = Some(config::PublishSection::All(true));
            }
        }
        if let Some(url) = &self.cameras_from {
            bus_section.cameras_from = Some(url.clone());
        }
        let bus = config::check_bus(&bus_section, &names).map_err(|e| match &self.config {
            Some(path) if self.publish.is_none() && self.cameras_from.is_none() => in_file(path)(e),
            _ => SettingsError::Bus(e),
        })?;
        let (mut users, secret, login_form) = match auth_section {
            Some((a, path)) => (
                config::check_auth(&a, &names).map_err(in_file(&path))?,
                a.secret.clone(),
                config::login_form(&a).map_err(in_file(&path))?,
            ),
            None => (Vec::new(), None, true),
        };
        for (i, u) in self.users.iter().enumerate() {
            let (name, hash) = u.split_once(':').ok_or_else(|| {
                config::err(
                    format!("--user {i}"),
                    "expected NAME:HASH, e.g. alice:$argon2id$...",
                )
            })?;
            crate::auth::check_hash(hash).map_err(|e| config::err(format!("--user {name}"), e))?;
            users.push(crate::auth::User {
                name: name.to_owned(),
                password_hash: hash.to_owned(),
                cameras: None,
                control: true,
            });
        }
        let secret = self.auth_secret.clone().or(secret);
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => server_section.tls.clone(),
        };
        let unix_mode = match &self.unix_mode {
            Some(m) => u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    config::err(
                        "--unix-mode",
                        format!("expected an octal mode such as 0660 (got {m:?})"),
                    )
                })?,
            None => server_section.unix_mode,
        };
        Ok(Settings {
            listen: if self.listen.is_empty() {
                server_section.listen.clone()
            } else {
                self.listen.clone()
            },
            unix_mode,
            tls,
            cameras,
            http: HttpConfig {
                max_viewers,
                snapshot_wait,
                max_viewers_per_camera: self
                    .max_viewers_per_camera
                    .map(|v| v as usize)
                    .or(server_section.max_viewers_per_camera)
                    .unwrap_or(max_viewers),
                snapshot_rate: server_section.snapshot_rate,
                snapshot_rate_per_ip: server_section.snapshot_rate_per_ip,
                auth: std::sync::Arc::new(crate::auth::Auth::new(users, secret.as_deref())),
                public_metrics: self.public_metrics || server_section.public_metrics,
                public_state: self.public_state || server_section.public_state,
                allow_origin: self
                    .allow_origin
                    .clone()
                    .or(server_section.allow_origin.clone()),
                host_names: server_section.names.clone(),
                export_rate_window: server_section.export_rate_window,
                login_form,
                ..HttpConfig::default()
            },
            server: ServerConfig {
                send_timeout,
                header_read_timeout: server_section.header_timeout,
                max_connections: self
                    .max_connections
                    .map_or(server_section.max_connections, |v| v as usize),
                max_connections_per_ip: self
                    .max_connections_per_ip
                    .map_or(server_section.max_connections_per_ip, |v| v as usize),
                encode_workers: self
                    .encode_workers
                    .map_or(server_section.encode_workers, |v| v as usize),
                ..ServerConfig::default()
            },
            bus,
            recordings,
            motions,
            state_dir: self
                .state_dir
                .clone()
                .or_else(|| server_section.state_dir.clone())
                .or_else(default_state_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rejects_out_of_range_values_naming_the_flag() {
        for args in [
            ["mjpegd", "--quality", "0"],
            ["mjpegd", "--fps", "0"],
            ["mjpegd", "--size", "10x10"],
            ["mjpegd", "--max-viewers", "0"],
            ["mjpegd", "--send-timeout", "0"],
            ["mjpegd", "--rotate", "45"],
        ] {
            let err = Cli::try_parse_from(args)
                .expect_err("must be rejected")
                .to_string();
            assert!(err.contains(args[1]), "{err}");
        }
    }

    #[test]
    fn flags_define_one_default_camera() {
        let cli =
            Cli::try_parse_from(["mjpegd", "--source", "images", "--rotate", "90"]).expect("parse");
        let s = cli.into_settings().expect("settings");
        assert_eq!(s.cameras.len(), 1);
        assert_eq!(s.cameras[0].name, "default");
        assert_eq!(s.cameras[0].fps, 1.0);
        assert_eq!(u32::from(s.cameras[0].transform.rotate), 90);
    }

    #[cfg(feature = "bus")]
    #[test]
    fn bus_flags_make_camera_nodes_and_edges() {
        let cli = Cli::try_parse_from(["mjpegd", "--publish", "nats://t0ken@127.0.0.1:4222"])
            .expect("parse");
        let s = cli.into_settings().expect("settings");
        let bus = s.bus.expect("bus");
        assert_eq!(bus.publish, crate::bus::Publish::All);
        assert!(!bus.discover);
        assert_eq!(bus.connect.auth, crate::link::Auth::Token("t0ken".into()));
        assert_eq!(s.cameras.len(), 1, "a camera node keeps its default camera");

        let cli = Cli::try_parse_from(["mjpegd", "--cameras-from", "nats://127.0.0.1:4222"])
            .expect("parse");
        let s = cli.into_settings().expect("settings");
        assert!(
            s.cameras.is_empty(),
            "an edge serves only what it discovers"
        );
        assert!(s.bus.expect("bus").discover);

        let cli = Cli::try_parse_from(["mjpegd", "--publish", "nats://u:hunter2@h:1/cam"])
            .expect("parse");
        let e = cli.into_settings().err().expect("refused").to_string();
        assert!(
            e.contains("without a camera") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[cfg(not(feature = "bus"))]
    #[test]
    fn bus_flags_say_the_bus_is_not_built() {
        for flag in ["--publish", "--cameras-from"] {
            let cli = Cli::try_parse_from(["mjpegd", flag, "nats://u:hunter2@127.0.0.1:4222"])
                .expect("parse");
            let e = cli.into_settings().err().expect("refused").to_string();
            assert!(e.contains("without the `bus` feature"), "{flag}: {e}");
            assert!(!e.contains("hunter2"), "{flag}: {e}");
        }
        let cli = Cli::try_parse_from(["mjpegd", "--idle-timeout", "5"]).expect("parse");
        let s = cli
            .into_settings()
            .expect("--idle-timeout is a camera setting too");
        assert!(s.bus.is_none());
    }

    #[test]
    fn camera_flags_and_config_do_not_mix() {
        let cli =
            Cli::try_parse_from(["mjpegd", "--config", "x.toml", "--fps", "3"]).expect("parse");
        let e = cli.into_settings().err().expect("refused").to_string();
        assert!(e.contains("cannot be combined with --config"), "{e}");
    }
}

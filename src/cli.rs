//! Command-line flags (each also settable as an `MJPEGD_*` environment variable), merged with
//! the optional config file into the checked [`Settings`] the rest of the server uses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{self, CameraDraft, ServerSection, parse_fps, parse_size};
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

    /// Address and port to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "MJPEGD_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// What to stream: `testpattern` (default), `images` (built-in 1,2,3) or `images:DIR`.
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

    /// Seconds without a frame before viewers see "no signal" and the source is reopened, 1-3600 [default: 5].
    #[arg(long, env = "MJPEGD_SOURCE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub source_timeout: Option<u64>,

    /// Most concurrent stream viewers; past it new viewers get 503 with Retry-After, 1-1000000 [default: 1000].
    #[arg(long, env = "MJPEGD_MAX_VIEWERS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_viewers: Option<u64>,
}

/// Everything the server needs, checked.
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The cameras, in order.
    pub cameras: Vec<CameraConfig>,
    /// HTTP settings.
    pub http: HttpConfig,
    /// Connection settings.
    pub server: ServerConfig,
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
    }

    /// Merges flags and the config file into checked settings; errors name the flag or the
    /// file and key, and what is accepted.
    pub fn into_settings(self) -> Result<Settings, String> {
        let (server_section, cameras) = match &self.config {
            Some(path) => {
                if self.camera_flags_given() {
                    return Err(format!(
                        "camera flags (--source, --size, --fps, --quality, --rotate, --flip, --idle-timeout, --source-timeout) \
                         cannot be combined with --config: set them in {}'s [[cameras]] tables",
                        path.display()
                    ));
                }
                let file = config::load(path)?;
                let cameras = config::check_cameras(&file.cameras)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let server = config::check_server(&file.server, "server.")
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                (server, cameras)
            }
            None => {
                let draft = CameraDraft {
                    name: "default".into(),
                    source: self
                        .source
                        .as_ref()
                        .map_or_else(|| SourceSpec::TestPattern.to_string(), ToString::to_string),
                    size: self.size.map(|(w, h)| format!("{w}x{h}")),
                    fps: self.fps,
                    quality: self.quality,
                    idle_timeout: self.idle_timeout,
                    source_timeout: self.source_timeout,
                    rotate: self.rotate.as_deref().and_then(|r| r.parse().ok()),
                    flip: self.flip.clone(),
                };
                let flag = |field: &str| format!("--{}", field.replace('_', "-"));
                let camera = config::check_camera(&draft, &flag).map_err(|e| e.to_string())?;
                let server = config::check_server(&ServerSection::default(), "--")
                    .map_err(|e| e.to_string())?;
                (server, vec![camera])
            }
        };
        let snapshot_wait = cameras
            .iter()
            .map(|c| c.source_timeout)
            .max()
            .unwrap_or_default()
            + std::time::Duration::from_secs(1);
        let max_viewers = self
            .max_viewers
            .map_or(server_section.max_viewers, |v| v as usize);
        let send_timeout = self
            .send_timeout
            .map_or(server_section.send_timeout, std::time::Duration::from_secs);
        Ok(Settings {
            listen: self.listen.unwrap_or(server_section.listen),
            cameras,
            http: HttpConfig {
                max_viewers,
                snapshot_wait,
                ..HttpConfig::default()
            },
            server: ServerConfig {
                send_timeout,
                ..ServerConfig::default()
            },
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
            let err = Cli::try_parse_from(args).expect_err("must be rejected").to_string();
            assert!(err.contains(args[1]), "{err}");
        }
    }

    #[test]
    fn flags_define_one_default_camera() {
        let cli = Cli::try_parse_from(["mjpegd", "--source", "images", "--rotate", "90"]).expect("parse");
        let s = cli.into_settings().expect("settings");
        assert_eq!(s.cameras.len(), 1);
        assert_eq!(s.cameras[0].name, "default");
        assert_eq!(s.cameras[0].fps, 1.0);
        assert_eq!(u32::from(s.cameras[0].transform.rotate), 90);
    }

    #[test]
    fn camera_flags_and_config_do_not_mix() {
        let cli = Cli::try_parse_from(["mjpegd", "--config", "x.toml", "--fps", "3"]).expect("parse");
        let e = cli.into_settings().err().expect("refused");
        assert!(e.contains("cannot be combined with --config"), "{e}");
    }
}

//! Command-line flags (each also settable as an `MJPEGD_*` environment variable), checked into
//! the settings the rest of the server uses.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::http::HttpConfig;
use crate::hub::CameraConfig;
use crate::render::MAX_DIMENSION;
use crate::server::ServerConfig;
use crate::source::{Params, SourceSpec};

/// Lowest and highest capture rate accepted by `--fps`.
pub const FPS_RANGE: (f64, f64) = (0.01, 240.0);

/// mjpegd: live camera video to any number of viewers as Motion JPEG over HTTP.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Address and port to listen on.
    #[arg(long, env = "MJPEGD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// What to stream: `testpattern`, `images` (built-in 1,2,3) or `images:DIR`.
    #[arg(long, env = "MJPEGD_SOURCE", default_value = "testpattern")]
    pub source: SourceSpec,

    /// Frame size of generated video (test pattern, built-in images, no-signal frames), WxH.
    #[arg(long, env = "MJPEGD_SIZE", default_value = "1280x720", value_parser = parse_size)]
    pub size: (u32, u32),

    /// Capture rate in frames per second [default: 30 for testpattern, 1 for images].
    #[arg(long, env = "MJPEGD_FPS", value_parser = parse_fps)]
    pub fps: Option<f64>,

    /// JPEG quality of frames mjpegd encodes, 1-100.
    #[arg(long, env = "MJPEGD_QUALITY", default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// Seconds capture keeps running after the last viewer leaves (0-86400).
    #[arg(long, env = "MJPEGD_IDLE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub idle_timeout: u64,

    /// Seconds a viewer's socket may accept no data before it is disconnected (1-3600).
    #[arg(long, env = "MJPEGD_SEND_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub send_timeout: u64,

    /// Seconds without a frame before viewers see "no signal" and the source is reopened (1-3600).
    #[arg(long, env = "MJPEGD_SOURCE_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub source_timeout: u64,

    /// Most concurrent stream viewers; past it new viewers get 503 with Retry-After (1-1000000).
    #[arg(long, env = "MJPEGD_MAX_VIEWERS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_viewers: u64,
}

/// Everything the server needs, checked.
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The cameras (one, named `default`, from the flags).
    pub cameras: Vec<CameraConfig>,
    /// HTTP settings.
    pub http: HttpConfig,
    /// Connection settings.
    pub server: ServerConfig,
    /// A one-line description of the source for the startup log.
    pub source_description: String,
}

impl Cli {
    /// Checks the flags and builds the settings; errors name the flag and what is accepted.
    pub fn into_settings(self) -> Result<Settings, String> {
        let fps = self.fps.unwrap_or_else(|| self.source.default_fps());
        let params = Params {
            width: self.size.0,
            height: self.size.1,
            fps,
            quality: self.quality,
        };
        let opener = self
            .source
            .opener(params)
            .map_err(|e| format!("--source {}: {e}", self.source))?;
        let source_description = opener.describe();
        // A slow source (images at 0.1 fps) is not a stalled one.
        let source_timeout =
            Duration::from_secs(self.source_timeout).max(Duration::from_secs_f64(3.0 / fps));
        let camera = CameraConfig {
            name: "default".into(),
            opener,
            width: params.width,
            height: params.height,
            quality: params.quality,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            source_timeout,
        };
        Ok(Settings {
            listen: self.listen,
            cameras: vec![camera],
            http: HttpConfig {
                max_viewers: usize::try_from(self.max_viewers).unwrap_or(usize::MAX),
                snapshot_wait: source_timeout + Duration::from_secs(1),
                ..HttpConfig::default()
            },
            server: ServerConfig {
                send_timeout: Duration::from_secs(self.send_timeout),
                ..ServerConfig::default()
            },
            source_description,
        })
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let err = || {
        format!("expected WIDTHxHEIGHT with each from 16 to {MAX_DIMENSION}, e.g. 1280x720 (got {s:?})")
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
    let w: u32 = w.trim().parse().map_err(|_| err())?;
    let h: u32 = h.trim().parse().map_err(|_| err())?;
    if !(16..=MAX_DIMENSION).contains(&w) || !(16..=MAX_DIMENSION).contains(&h) {
        return Err(err());
    }
    Ok((w, h))
}

fn parse_fps(s: &str) -> Result<f64, String> {
    let (lo, hi) = FPS_RANGE;
    match s.trim().parse::<f64>() {
        Ok(f) if (lo..=hi).contains(&f) => Ok(f),
        _ => Err(format!("expected a number of frames per second from {lo} to {hi} (got {s:?})")),
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
        ] {
            let err = Cli::try_parse_from(args).expect_err("must be rejected").to_string();
            assert!(err.contains(args[1]), "{err}");
        }
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1280x720"), Ok((1280, 720)));
        assert_eq!(parse_size("640X480"), Ok((640, 480)));
        assert!(parse_size("1280").is_err());
        assert!(parse_size("99999x10").is_err());
    }
}

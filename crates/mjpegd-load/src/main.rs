//! `mjpegd-load`: load client and zero-work reference server for MJPEG streaming servers.
//! All the logic lives in the [`mjpegd_load`] library so its parts can be unit-tested.

use clap::Parser;

fn main() -> std::process::ExitCode {
    mjpegd_load::main(mjpegd_load::Cli::parse())
}

//! `mjpegd-load`: load client and zero-work reference server for MJPEG streaming servers.
//! All the logic lives in [`mjpegd::loadtest`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    mjpegd::loadtest::main(mjpegd::loadtest::Cli::parse())
}

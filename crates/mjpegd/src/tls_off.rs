//! TLS serving is not in this build (feature `tls` off): `--tls-cert` is refused at startup and
//! says how to get it. The type is uninhabited, so no code path can pretend to serve TLS.

use std::path::{Path, PathBuf};

/// Why TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// This build has no TLS.
    #[error(
        "--tls-cert {}: this mjpegd was built without the `tls` feature; rebuild with \
         `cargo build --release --features tls` (on by default), or terminate TLS in a \
         reverse proxy",
        .cert.display()
    )]
    NotBuilt {
        /// The certificate asked for.
        cert: PathBuf,
    },
}

/// TLS settings of a server; no value exists in a build without TLS.
#[derive(Debug, Clone)]
pub enum TlsConfig {}

impl TlsConfig {
    /// Refuses: this build cannot serve TLS.
    pub fn load(cert_path: &Path, _key_path: &Path) -> Result<TlsConfig, TlsError> {
        Err(TlsError::NotBuilt {
            cert: cert_path.to_owned(),
        })
    }

    /// Re-reads the certificate; unreachable, as no value exists.
    pub fn reload(&self) -> Result<(), TlsError> {
        match *self {}
    }
}

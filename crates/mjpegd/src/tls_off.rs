//! TLS serving is not in this build (feature `tls` off): `--tls-cert` is refused at startup and
//! says how to get it. The type is uninhabited, so no code path can pretend to serve TLS.

use std::path::Path;

/// TLS settings of a server; no value exists in a build without TLS.
#[derive(Debug, Clone)]
pub enum TlsConfig {}

impl TlsConfig {
    /// Refuses: this build cannot serve TLS.
    pub fn load(cert_path: &Path, _key_path: &Path) -> Result<TlsConfig, String> {
        Err(format!(
            "--tls-cert {}: this mjpegd was built without the `tls` feature; rebuild with \
             `cargo build --release --features tls` (on by default), or terminate TLS in a \
             reverse proxy",
            cert_path.display()
        ))
    }

    /// Re-reads the certificate; unreachable, as no value exists.
    pub fn reload(&self) -> Result<(), String> {
        match *self {}
    }
}

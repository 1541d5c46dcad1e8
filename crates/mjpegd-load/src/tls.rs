//! The client side of `https://`: rustls with the ring provider (as the server uses), a trust
//! anchor given with `--ca` or no verification at all with `--insecure`, and the ALPN protocol
//! the run speaks (`http/1.1`, or `h2` for `--http2`).
//!
//! There is no system trust store here on purpose: the load client measures one's own server,
//! usually behind a self-signed certificate, and a benchmark should not depend on what the
//! machine happens to trust.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Error;

/// ALPN identifier of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";

/// ALPN identifier of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Verified against the certificates of this PEM file (and the URL's host name).
    Ca(std::path::PathBuf),
    /// Not verified at all: for benchmarking against a self-signed certificate.
    Insecure,
}

/// A TLS connector for one run, with the server name every connection presents.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Connector {
    /// A connector for `host` that offers `alpn` and trusts as told.
    pub fn new(host: &str, trust: &Trust, alpn: &[u8]) -> Result<Connector, Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| Error::Usage(format!("{host:?} is not a valid TLS server name: {e}")))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Usage(format!("TLS set-up: {e}")))?;
        let mut config = match trust {
            Trust::Ca(path) => builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider().signature_verification_algorithms,
                )))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Connector {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake over a connected socket.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

/// The certificates of a PEM file as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, Error> {
    let bad = |why: String| Error::Usage(format!("--ca {}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".to_owned()));
    }
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c).map_err(|e| bad(e.to_string()))?;
    }
    Ok(store)
}

/// `--insecure`: any certificate is accepted, but the handshake signatures are still checked
/// (the connection is still encrypted to whoever holds the key, which keeps the cost honest).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

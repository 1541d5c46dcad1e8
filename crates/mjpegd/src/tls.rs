//! TLS serving (feature `tls`): rustls with the ring provider (no C TLS library). Serves a
//! certificate that can be reloaded from disk (on SIGHUP) without dropping connections.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

pub use crate::crypto::install_crypto_provider;

/// A server certificate that can be swapped while serving.
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reloadable")
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Poison recovered: the slot holds a whole `Arc`, swapped in one store; refusing it
        // would fail every handshake from then on.
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// TLS settings of a server: the acceptor and what is needed to reload its certificate.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
    cert: Arc<Reloadable>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

/// Why a certificate or key could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be opened or read.
    #[error("--tls-cert {}: cannot read: {source}", .path.display())]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file is not valid PEM.
    #[error("--tls-cert {}: bad PEM: {source}", .path.display())]
    BadCertPem {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error(
        "--tls-cert {}: no CERTIFICATE block found (expected a PEM certificate chain)",
        .path.display()
    )]
    NoCert {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no key that can be read.
    #[error(
        "--tls-key {}: no usable private key ({source}); expected a PEM PKCS#8, RSA or EC key",
        .path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The key is of a kind rustls cannot sign with.
    #[error("--tls-key {}: unsupported key: {source}", .path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

fn load_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|source| TlsError::ReadCert {
            path: cert_path.to_owned(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::BadCertPem {
            path: cert_path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::NoKey {
        path: key_path.to_owned(),
        source,
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
        TlsError::UnsupportedKey {
            path: key_path.to_owned(),
            source,
        }
    })?;
    Ok(CertifiedKey::new(certs, signing))
}

impl TlsConfig {
    /// Loads a PEM certificate chain and private key; errors name the file and what is wrong.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsConfig, TlsError> {
        let key = load_key(cert_path, key_path)?;
        let cert = Arc::new(Reloadable(RwLock::new(Arc::new(key))));
        let resolver: Arc<dyn ResolvesServerCert> = cert.clone();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        // HTTP/2 first: a browser then multiplexes every camera of a page over one connection
        // instead of stopping at its six per host; clients that offer only HTTP/1.1 get that.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        })
    }

    /// Re-reads the certificate and key; on error the old ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_key(&self.cert_path, &self.key_path)?;
        // Poison recovered: the slot holds a whole `Arc`, swapped in one store.
        *self.cert.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

//! The process-wide rustls crypto provider, shared by TLS serving and the relay's HTTPS client:
//! ring, so no C TLS library and no aws-lc build is needed.

use std::sync::Once;

/// Installs ring as the process-wide rustls crypto provider; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed; that one is used instead.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

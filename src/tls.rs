//! TLS plumbing shared by the relay client: rustls with the ring provider, installed once.

use std::sync::Once;

/// Installs ring as the process-wide rustls crypto provider (no C TLS library, no aws-lc build).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed; that one is used instead.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

//! The process's TLS provider, below everything that makes a TLS connection (egress itself,
//! the probes, the client library, the binaries).

/// Makes *ring* the process's default TLS provider (once) for the HTTP clients that take it
/// from there.
pub fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

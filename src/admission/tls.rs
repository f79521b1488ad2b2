//! HTTPS for the admission webhook (and the servers the tests run): a CA and a serving
//! certificate it signed, and a listener that completes TLS handshakes off the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::server::TlsStream;

/// A CA and the serving certificate it signed, as PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The CA certificate clients trust (the kubeconfig's `certificate-authority-data`).
    pub ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Identity {
    /// A new CA named `name`, and a certificate it signed for `localhost`, `127.0.0.1`, `::1`
    /// and `extra_hosts`.
    pub fn generate(name: &str, extra_hosts: &[&str]) -> Result<Self, rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        for host in extra_hosts {
            if !hosts.iter().any(|h| h == host) {
                hosts.push((*host).to_owned());
            }
        }
        let mut leaf = CertificateParams::new(hosts)?;
        leaf.distinguished_name.push(DnType::CommonName, name);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The serving certificate, as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The serving certificate's private key, as PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The rustls configuration serving this certificate over HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        server_config(&self.cert_pem, &self.key_pem)
    }
}

/// The rustls configuration serving the certificate chain `cert_pem` with `key_pem` over
/// HTTP/1.1 (what the API server speaks to webhooks).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, String> {
    let serving = ServingCert::empty();
    serving.set(cert_pem, key_pem)?;
    Ok(serving.server_config())
}

/// The certificate a server presents, replaceable while it runs: each new TLS handshake gets
/// the one set last (rotation without a restart or a dropped connection).
#[derive(Debug, Default)]
pub struct ServingCert {
    current: arc_swap::ArcSwapOption<CertifiedKey>,
}

impl ServingCert {
    /// None yet: handshakes fail until [`ServingCert::set`].
    pub fn empty() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Serves the chain `cert_pem` with `key_pem` from the next handshake on; returns whether
    /// it differs from the one served before. An unreadable pair, or a key that does not fit
    /// the certificate, is refused and the current one kept.
    pub fn set(&self, cert_pem: &str, key_pem: &str) -> Result<bool, String> {
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("reading the serving certificate: {e}"))?;
        if certs.is_empty() {
            return Err("reading the serving certificate: no certificate in it".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("reading the serving key: {e}"))?;
        let changed = self
            .current
            .load()
            .as_ref()
            .is_none_or(|current| current.cert != certs);
        let key = CertifiedKey::from_der(certs, key, &provider())
            .map_err(|e| format!("the serving certificate does not fit its key: {e}"))?;
        self.current.store(Some(Arc::new(key)));
        Ok(changed)
    }

    /// The rustls configuration serving whatever is set, over HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let resolver: Arc<dyn ResolvesServerCert> = self.clone();
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

fn provider() -> tokio_rustls::rustls::crypto::CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// Accepts TCP connections and hands out those whose TLS handshake completed; a slow or
/// failing handshake holds up nobody else.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `listener` (must run inside a Tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local_addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the runtime; wait for that.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

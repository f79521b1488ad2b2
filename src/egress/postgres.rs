//! Postgres connections through the checked resolver.
//!
//! sqlx connects by host name itself, resolving it with the system resolver, and a pool offers
//! no hook before it opens a connection; with `verify-full` it also needs the name for the
//! certificate. So every pool (and every probe) talks to a relay instead: a Unix socket in a
//! private directory (mode 0700) of this process. For each connection sqlx opens, the relay
//! resolves the server's name and checks every address ([`CheckedResolver`]), connects to a
//! checked address, does the TLS that `sslMode` asks for — the certificate checked against the
//! name, never the address — and then relays bytes. sqlx speaks the plain protocol to the relay.
//!
//! A connection the relay refuses answers sqlx's startup message with a Postgres
//! `ErrorResponse` whose SQLSTATE says why (`TM001` policy denied, `TM002` unreachable,
//! `TM003` TLS failed, in the implementation-defined class `TM`), so the request fails at once
//! with the reason instead of hanging or retrying.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::error::EgressError;
use super::resolver::CheckedResolver;
use super::tls::install_crypto_provider;
use crate::api::SslMode;

/// SQLSTATE of a connection the endpoint policy refused.
pub const SQLSTATE_POLICY_DENIED: &str = "TM001";
/// SQLSTATE of a server that could not be reached (no answer, name does not resolve).
pub const SQLSTATE_UNREACHABLE: &str = "TM002";
/// SQLSTATE of a failed TLS negotiation or certificate check.
pub const SQLSTATE_TLS_FAILED: &str = "TM003";

/// SQLSTATE of a login the relay stopped because the server asked for the password in
/// cleartext or as MD5 over a connection whose certificate was not verified.
pub const SQLSTATE_INSECURE_AUTH: &str = "TM004";

/// The condition reason of a relay SQLSTATE, if `code` is one.
pub fn reason_of_sqlstate(code: &str) -> Option<&'static str> {
    use crate::api::conditions::reason;
    match code {
        SQLSTATE_POLICY_DENIED => Some(reason::POLICY_DENIED),
        SQLSTATE_UNREACHABLE => Some(reason::UNREACHABLE),
        SQLSTATE_TLS_FAILED => Some(reason::TLS_FAILED),
        SQLSTATE_INSECURE_AUTH => Some(reason::INSECURE_AUTH),
        _ => None,
    }
}

/// A private directory for relay sockets, removed when the last relay using it goes.
#[derive(Debug)]
pub struct RelayDir {
    path: PathBuf,
    next: AtomicU64,
}

impl RelayDir {
    /// A new directory under `parent` (the system temporary directory when `None`), readable
    /// by this user only.
    pub fn create(parent: Option<&Path>) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let suffix: u64 = {
            use aes_gcm::aead::Generate as _;
            u64::from_le_bytes(<[u8; 8]>::generate())
        };
        let path = parent.join(format!("tenant-mcp-{}-{suffix:016x}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self {
            path,
            next: AtomicU64::new(0),
        })
    }

    /// A new directory for one relay's socket (sqlx takes a socket directory, as libpq does,
    /// and connects to `.s.PGSQL.<port>` in it).
    fn socket_dir(&self) -> io::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt as _;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.path.join(format!("pg-{n}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(dir)
    }
}

impl Drop for RelayDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How a relayed connection ended its set-up: ready for queries after this long (TCP, TLS and
/// login, until the server's first `ReadyForQuery`), or refused with a condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Ready for queries.
    Ready(Duration),
    /// Refused: `PolicyDenied`, `Unreachable`, `TlsFailed`, `AuthFailed`, `DatabaseNotFound`
    /// or `ServerError`.
    Failed(&'static str),
}

/// Told how each relayed connection's set-up ended (the client library's metrics).
pub type ConnectHook = Arc<dyn Fn(ConnectOutcome) + Send + Sync>;

/// Where a relay connects and how.
#[derive(Clone)]
pub struct PgTarget {
    /// The server's host (a name or an IP literal).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `spec.sslMode`.
    pub ssl_mode: SslMode,
    /// The CA bundle of `caCertSecretRef` (PEM); the public web roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// How long one TCP connect may take.
    pub connect_timeout: Duration,
    /// Told how each connection's set-up ended, if set.
    pub hook: Option<ConnectHook>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

static LIVE_RELAYS: AtomicU64 = AtomicU64::new(0);

/// Relays alive in this process (each is a listening socket and an accepting task; every
/// pool of the client library has one, so they are at most its cached pools plus the probes
/// running).
pub fn live_relays() -> u64 {
    LIVE_RELAYS.load(Ordering::Relaxed)
}

/// A relay socket for one server; stops accepting when dropped (relayed connections that are
/// open keep going until either side closes).
#[derive(Debug)]
pub struct PgRelay {
    /// The directory holding the socket `.s.PGSQL.<port>`.
    socket_dir: PathBuf,
    stop: CancellationToken,
    _dir: Arc<RelayDir>,
}

impl PgRelay {
    /// Starts a relay to `target` in `dir`, checking with `resolver`.
    pub fn start(
        dir: Arc<RelayDir>,
        resolver: CheckedResolver,
        target: PgTarget,
    ) -> Result<Self, String> {
        let tls = tls_config(&target)?;
        let socket_dir = dir
            .socket_dir()
            .map_err(|e| format!("relay socket directory under {}: {e}", dir.path.display()))?;
        let path = socket_dir.join(format!(".s.PGSQL.{}", target.port));
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("relay socket {}: {e}", path.display()))?;
        let stop = CancellationToken::new();
        let upstream = Arc::new(Upstream {
            resolver,
            target,
            tls,
        });
        let until = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = until.cancelled() => return,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, _)) => {
                        let upstream = upstream.clone();
                        tokio::spawn(async move { upstream.serve(stream).await });
                    }
                    Err(e) => {
                        debug!("relay accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        LIVE_RELAYS.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            socket_dir,
            stop,
            _dir: dir,
        })
    }

    /// `options` pointed at this relay: the socket instead of the host, and no TLS between
    /// sqlx and the relay (the relay does the server's TLS). The host and port stay (the port
    /// names the socket file; both appear in messages).
    pub fn connect_options(&self, options: PgConnectOptions) -> PgConnectOptions {
        options
            .socket(&self.socket_dir)
            .ssl_mode(PgSslMode::Disable)
    }
}

impl Drop for PgRelay {
    fn drop(&mut self) {
        LIVE_RELAYS.fetch_sub(1, Ordering::Relaxed);
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// A relayed connection's upstream side: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Upstream {
    resolver: CheckedResolver,
    target: PgTarget,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Upstream {
    async fn serve(&self, mut client: UnixStream) {
        let started = std::time::Instant::now();
        // TLS set-up with a server that accepted and then hangs would otherwise wait forever.
        let limit = self.target.connect_timeout;
        let connected = tokio::time::timeout(limit, self.connect())
            .await
            .unwrap_or_else(|_| {
                Err((
                    SQLSTATE_UNREACHABLE,
                    format!(
                        "{}:{}: no answer within {limit:?}",
                        self.target.host, self.target.port
                    ),
                ))
            });
        match connected {
            Ok((server, verified)) => {
                let report = |outcome| {
                    if let Some(hook) = &self.target.hook {
                        hook(outcome);
                    }
                };
                relay(client, server, verified, started, report).await;
            }
            Err((code, message)) => {
                debug!(code, "relay refused a connection: {message}");
                if let Some(hook) = &self.target.hook {
                    hook(ConnectOutcome::Failed(
                        reason_of_sqlstate(code).unwrap_or("ServerError"),
                    ));
                }
                // sqlx sends its startup message first and then waits for the answer.
                let _ = read_startup(&mut client).await;
                let _ = client.write_all(&error_response(code, &message)).await;
                let _ = client.shutdown().await;
            }
        }
    }

    /// The upstream connection, and whether its server certificate was verified (the TLS of
    /// `verify-ca` or `verify-full`).
    async fn connect(&self) -> Result<(Box<dyn Stream>, bool), (&'static str, String)> {
        let t = &self.target;
        let endpoint = format!("{}:{}", t.host, t.port);
        let addrs = self
            .resolver
            .resolve(&t.host, t.port)
            .await
            .map_err(|e| match e {
                EgressError::PolicyDenied(v) => (SQLSTATE_POLICY_DENIED, v.to_string()),
                other => (SQLSTATE_UNREACHABLE, other.to_string()),
            })?;
        let tcp = connect_any(&addrs, t.connect_timeout)
            .await
            .map_err(|e| (SQLSTATE_UNREACHABLE, format!("{endpoint}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match t.ssl_mode {
            // sqlx does not implement `allow` either (it connects without TLS).
            SslMode::Disable | SslMode::Allow => Ok((Box::new(tcp), false)),
            mode => self.negotiate_tls(tcp, mode, &endpoint).await,
        }
    }

    async fn negotiate_tls(
        &self,
        mut tcp: TcpStream,
        mode: SslMode,
        endpoint: &str,
    ) -> Result<(Box<dyn Stream>, bool), (&'static str, String)> {
        let tls_failed = |m: String| (SQLSTATE_TLS_FAILED, format!("{endpoint}: {m}"));
        // SSLRequest: length 8, code 80877103.
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(|e| (SQLSTATE_UNREACHABLE, format!("{endpoint}: {e}")))?;
        let mut answer = [0u8];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| (SQLSTATE_UNREACHABLE, format!("{endpoint}: {e}")))?;
        match (answer[0], mode) {
            (b'S', _) => {}
            (b'N', SslMode::Prefer) => return Ok((Box::new(tcp), false)),
            (b'N', _) => {
                return Err(tls_failed(format!(
                    "the server does not support TLS, which sslMode {} requires",
                    mode.as_str()
                )));
            }
            (other, _) => {
                return Err(tls_failed(format!(
                    "unexpected answer 0x{other:02x} to the TLS request"
                )));
            }
        }
        let Some(config) = &self.tls else {
            return Err(tls_failed("no TLS configuration".into()));
        };
        // The certificate is checked against the configured name, never the address; an IP
        // literal host (bare or bracketed) is checked against the certificate's IP SANs, and
        // no SNI is sent for it.
        let host = self
            .target
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| tls_failed(format!("host {:?}: {e}", self.target.host)))?;
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| tls_failed(format!("TLS with sslMode {}: {e}", mode.as_str())))?;
        let verified = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        Ok((Box::new(stream), verified))
    }
}

/// The longest message a server sends before it is ready (its parameters, a SASL challenge,
/// an error) is far below this.
const MAX_LOGIN_MESSAGE: usize = 64 * 1024;

/// Relays bytes both ways. Until the server's first `ReadyForQuery` (or an `ErrorResponse`
/// during login), its messages are forwarded one by one so the set-up can be timed and told
/// to `report`; then it is plain copying. Over a connection whose certificate was not
/// `verified`, a request for the password in cleartext or as MD5 is answered with an error
/// instead of being passed on (libpq's `require_auth=scram-sha-256`): a server that merely
/// asks — one a DNS answer or a changed host sent us to — never receives the password.
async fn relay(
    client: UnixStream,
    server: Box<dyn Stream>,
    verified: bool,
    started: std::time::Instant,
    report: impl Fn(ConnectOutcome),
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(server);
    // Ends when the client closes (or gives up waiting): then the whole connection ends,
    // whatever the server does, so a server that hangs holds no task or socket of ours.
    let mut upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let login = async {
        loop {
            let mut header = [0u8; 5];
            if server_read.read_exact(&mut header).await.is_err() {
                return ConnectOutcome::Failed(crate::api::conditions::reason::UNREACHABLE);
            }
            let len = usize::try_from(u32::from_be_bytes([
                header[1], header[2], header[3], header[4],
            ]))
            .unwrap_or(usize::MAX)
            .saturating_sub(4);
            // The server is whatever a tenant configured: a length is not an allocation size.
            if len > MAX_LOGIN_MESSAGE {
                return ConnectOutcome::Failed("ServerError");
            }
            let mut body = vec![0u8; len];
            if server_read.read_exact(&mut body).await.is_err() {
                return ConnectOutcome::Failed(crate::api::conditions::reason::UNREACHABLE);
            }
            if header[0] == b'R' && !verified && readable_password_request(&body) {
                let refused = error_response(
                    SQLSTATE_INSECURE_AUTH,
                    "the server asked for the password in cleartext or as MD5 over a connection \
                     whose certificate was not verified; the password was not sent (use \
                     sslMode verify-full or verify-ca, or scram-sha-256 authentication)",
                );
                let _ = client_write.write_all(&refused).await;
                return ConnectOutcome::Failed(crate::api::conditions::reason::INSECURE_AUTH);
            }
            let forwarded = client_write.write_all(&header).await.is_ok()
                && client_write.write_all(&body).await.is_ok();
            match header[0] {
                b'Z' => return ConnectOutcome::Ready(started.elapsed()),
                b'E' => return ConnectOutcome::Failed(login_failure(&body)),
                _ if !forwarded => return ConnectOutcome::Failed("ServerError"),
                _ => {}
            }
        }
    };
    let outcome = tokio::select! {
        outcome = login => outcome,
        // The client gave up before the server finished the login (a server that hangs).
        _ = &mut upstream => ConnectOutcome::Failed(crate::api::conditions::reason::TIMEOUT),
    };
    report(outcome);
    let _ = client_write.flush().await;
    if matches!(outcome, ConnectOutcome::Ready(_)) && !upstream.is_finished() {
        tokio::select! {
            _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
            _ = &mut upstream => {}
        }
    }
    upstream.abort();
    let _ = client_write.shutdown().await;
}

/// Whether an `Authentication` message asks for the password in a form the server can read
/// or crack offline: cleartext (3) or MD5 (5). SASL (SCRAM) never reveals it.
fn readable_password_request(body: &[u8]) -> bool {
    matches!(body, [0, 0, 0, 3, ..] | [0, 0, 0, 5, ..])
}

/// The reason of a login `ErrorResponse` from its SQLSTATE (`C` field).
fn login_failure(body: &[u8]) -> &'static str {
    use crate::api::conditions::reason;
    let code = body
        .split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .unwrap_or_default();
    match code {
        b"28P01" | b"28000" => reason::AUTH_FAILED,
        b"3D000" => reason::DATABASE_NOT_FOUND,
        _ => "ServerError",
    }
}

async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr}: no answer within {timeout:?}"),
                );
            }
        }
    }
    Err(last)
}

/// Reads one length-prefixed startup message (bounded: nothing larger is waited for).
async fn read_startup(client: &mut UnixStream) -> io::Result<()> {
    let read = async {
        let mut len = [0u8; 4];
        client.read_exact(&mut len).await?;
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(0);
        let mut rest = vec![0u8; len.saturating_sub(4).min(64 * 1024)];
        client.read_exact(&mut rest).await?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no startup message",
            ))
        })
}

/// A Postgres `ErrorResponse` (severity FATAL) with `code` and `message`.
fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', &format!("tenant-mcp: {message}")),
    ] {
        body.push(field);
        body.extend(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    out.extend(len.to_be_bytes());
    out.extend(body);
    out
}

/// The TLS client configuration `target.ssl_mode` asks for (`None` without TLS): `verify-full`
/// checks chain and name, `verify-ca` the chain only, `require` and `prefer` encrypt without
/// checking (as libpq and sqlx do).
fn tls_config(target: &PgTarget) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &target.ca_pem {
            Some(pem) => {
                for cert in pem_certificates(pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("caCertSecretRef: a certificate was refused: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(Arc::new(roots))
    };
    let config = match target.ssl_mode {
        SslMode::Disable | SslMode::Allow => return Ok(None),
        SslMode::VerifyFull => builder
            .with_root_certificates(roots()?)
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots()?,
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
        SslMode::Require | SslMode::Prefer => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| format!("caCertSecretRef is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("caCertSecretRef holds no PEM certificate".into());
    }
    Ok(certs)
}

/// `verify-ca`: the chain must lead to a trusted CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` / `prefer`: encrypted, certificate not checked (the handshake's signatures still
/// are).
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;

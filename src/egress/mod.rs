//! Every connection to an endpoint a config names goes through here: the controller's probes,
//! the management tools' connection tests and the client library's Postgres pools, S3 clients
//! and MCP clients. An [`Egress`] holds one endpoint policy and the connectors that obey it:
//!
//! - a [`CheckedResolver`] that resolves a name and checks the name and every address against
//!   the policy, on every new connection, so a DNS answer that changed after promotion is
//!   caught before anything connects to it;
//! - the S3 HTTP connector, which asks that resolver for every host it connects to — the
//!   virtual-host names (`<bucket>.<endpoint host>`) included;
//! - the MCP HTTP client, which asks it too, follows no redirect and uses no proxy;
//! - Postgres relays ([`postgres`]), through which sqlx connects.
//!
//! A denied address is an error with reason `PolicyDenied` on the request that needed it —
//! never a fallback to another server. Static parts of an endpoint (scheme, port, an IP
//! literal) are checked with [`Egress::check_url`] / the spec validation before a client is
//! built; every client is built anew when the policy changes.

mod error;
pub mod lookup;
pub mod postgres;
mod resolver;
mod tls;

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::SharedHttpClient;

pub use error::{EgressError, cause};
pub use lookup::{Lookup, StaticLookup, SystemLookup};
pub use postgres::{ConnectHook, ConnectOutcome, PgRelay, PgTarget, RelayDir};
pub use resolver::CheckedResolver;
pub use tls::install_crypto_provider;

use crate::api::{PostgresServer, S3Server};
use crate::config::{EndpointPolicy, S3Credentials};

/// An idle HTTP connection (S3, MCP) is closed after this long. The HTTP clients are shared
/// by every tenant under one endpoint policy, so this and the per-host bound below bound them
/// all: at most [`HTTP_MAX_IDLE_PER_HOST`] idle connections per server, none older than this.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most idle HTTP connections kept per server host.
pub const HTTP_MAX_IDLE_PER_HOST: usize = 16;

/// One endpoint policy and the connectors that obey it.
#[derive(Debug)]
pub struct Egress {
    resolver: CheckedResolver,
    fingerprint: u64,
    s3_http: SharedHttpClient,
    mcp_http: reqwest::Client,
    relay_dir: Arc<RelayDir>,
}

impl Egress {
    /// Connectors under `policy`, resolving with `lookup`.
    pub fn new(policy: EndpointPolicy, lookup: Arc<dyn Lookup>) -> Result<Self, String> {
        install_crypto_provider();
        let fingerprint = policy_fingerprint(&policy);
        let resolver = CheckedResolver::new(Arc::new(policy), lookup);
        let s3_http = aws_smithy_http_client::Builder::new()
            .pool_idle_timeout(HTTP_IDLE_TIMEOUT)
            .pool_max_idle_per_host(HTTP_MAX_IDLE_PER_HOST)
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_with_resolver(resolver.clone());
        let mcp_http = reqwest::Client::builder()
            // A redirect could lead anywhere, including past the endpoint policy.
            .redirect(reqwest::redirect::Policy::none())
            // The policy checks the server's addresses, not a proxy's.
            .no_proxy()
            .dns_resolver(resolver.clone())
            .pool_idle_timeout(HTTP_IDLE_TIMEOUT)
            .pool_max_idle_per_host(HTTP_MAX_IDLE_PER_HOST)
            .build()
            .map_err(|e| format!("HTTP client for MCP: {e}"))?;
        let relay_dir = RelayDir::create(None).map_err(|e| {
            format!(
                "a private directory for Postgres relay sockets under {}: {e} (set TMPDIR to a writable directory)",
                std::env::temp_dir().display()
            )
        })?;
        Ok(Self {
            resolver,
            fingerprint,
            s3_http,
            mcp_http,
            relay_dir: Arc::new(relay_dir),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &EndpointPolicy {
        self.resolver.policy()
    }

    /// A hash of the policy: clients built under one policy are rebuilt under another.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The checked resolver.
    pub fn resolver(&self) -> &CheckedResolver {
        &self.resolver
    }

    /// Checks what the policy can say of `url` without resolving it: scheme, port and an IP
    /// literal host. (A host name is checked by the resolver on every connect.)
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        let policy = self.policy();
        policy.check_scheme(url.scheme())?;
        policy.check_port(url.port_or_known_default().unwrap_or(443))?;
        if let Some(host) = url.host() {
            policy.check_host(&host.to_owned())?;
            match host {
                url::Host::Ipv4(ip) => policy.check_ip(ip.into())?,
                url::Host::Ipv6(ip) => policy.check_ip(ip.into())?,
                url::Host::Domain(_) => {}
            }
        }
        Ok(())
    }

    /// The HTTP client every MCP connection goes through.
    pub fn mcp_http(&self) -> reqwest::Client {
        self.mcp_http.clone()
    }

    /// The S3 client of `server` with `credentials`, on the checked connector; with `retry`
    /// false one attempt per request (probes answer fast and the caller retries). The one
    /// place an S3 client is configured, for probes and the client library alike.
    pub fn s3_client(
        &self,
        server: &S3Server,
        credentials: &S3Credentials,
        retry: bool,
    ) -> Result<aws_sdk_s3::Client, EgressError> {
        let url = url::Url::parse(&server.endpoint).map_err(|e| EgressError::Unresolved {
            host: server.endpoint.clone(),
            message: e.to_string(),
        })?;
        self.check_url(&url)?;
        let keys = aws_credential_types::Credentials::from_keys(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.expose().to_owned(),
            None,
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&server.endpoint)
            .region(aws_sdk_s3::config::Region::new(server.region.clone()))
            .credentials_provider(keys)
            .force_path_style(server.force_path_style)
            .http_client(self.s3_http.clone())
            .timeout_config(s3_timeouts(server.timeout_seconds));
        if !retry {
            config = config.retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
        }
        Ok(aws_sdk_s3::Client::from_conf(config.build()))
    }

    /// A relay for `server` (see [`postgres`]): sqlx connects to it, it connects to a checked
    /// address of the server.
    pub fn postgres_relay(
        &self,
        server: &PostgresServer,
        ca_pem: Option<&[u8]>,
        connect_timeout: Duration,
        hook: Option<ConnectHook>,
    ) -> Result<PgRelay, String> {
        let target = PgTarget {
            host: server.host.clone(),
            port: u16::try_from(server.port).unwrap_or(5432),
            ssl_mode: server.ssl_mode,
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            connect_timeout,
            hook,
        };
        PgRelay::start(self.relay_dir.clone(), self.resolver.clone(), target)
    }
}

fn policy_fingerprint(policy: &EndpointPolicy) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{policy:?}").hash(&mut h);
    h.finish()
}

/// The [`Egress`] of the current policy, made anew only when the policy changes: probes and
/// tools hand in the policy of each call and share connectors between calls.
#[derive(Debug)]
pub struct EgressCache {
    lookup: Arc<dyn Lookup>,
    current: std::sync::Mutex<Option<Arc<Egress>>>,
}

impl EgressCache {
    /// A cache resolving with `lookup`.
    pub fn new(lookup: Arc<dyn Lookup>) -> Self {
        Self {
            lookup,
            current: std::sync::Mutex::new(None),
        }
    }

    /// The egress of `policy`.
    pub fn get(&self, policy: &EndpointPolicy) -> Result<Arc<Egress>, String> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(egress) = current.as_ref()
            && egress.policy() == policy
        {
            return Ok(egress.clone());
        }
        let egress = Arc::new(Egress::new(policy.clone(), self.lookup.clone())?);
        *current = Some(egress.clone());
        Ok(egress)
    }
}

impl Default for EgressCache {
    fn default() -> Self {
        Self::new(Arc::new(SystemLookup))
    }
}

/// An S3 operation, retries and connecting included, ends within `seconds`: without an
/// operation timeout the SDK waits for a server that accepted and never answers forever.
fn s3_timeouts(seconds: i32) -> aws_sdk_s3::config::timeout::TimeoutConfig {
    let whole = Duration::from_secs(u64::from(seconds.max(1).unsigned_abs()));
    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(whole.min(Duration::from_secs(10)))
        .operation_attempt_timeout(whole)
        .operation_timeout(whole)
        .build()
}

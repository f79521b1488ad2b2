//! Building the clients of one endpoint without network I/O: a lazily connecting pool
//! behind an egress relay, an aws-sdk-s3 client on the checked HTTP connector, and an MCP
//! client on the checked HTTP client whose session opens on first use. Every connection any of
//! them opens resolves the endpoint's name and checks every address against the endpoint
//! policy first ([`crate::egress`]).

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, Tool,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Mutex;

use super::metrics::ClientMetrics;
use super::pool::budget::Limits;
use super::pool::{ConnectionBudget, PoolSettings, TenantPool};
use super::routes::{Endpoint, Origin};
use crate::api::PostgresServer;
use crate::config::candidate::{Candidate, ServerKey};
use crate::config::{McpCredentials, McpTarget, PostgresCredentials, mcp_target};
use crate::egress::{ConnectHook, ConnectOutcome, Egress, EgressCache, Lookup};
use crate::probe::mcp::{MAX_TOOL_PAGES, MAX_TOOLS};

/// What every client shares: the budget of Postgres connections all tenant pools draw on,
/// and the connectors of the current endpoint policy.
#[derive(Clone, Debug)]
pub struct Shared {
    pg_budget: Arc<ConnectionBudget>,
    egress: Arc<EgressCache>,
    metrics: Arc<ClientMetrics>,
}

impl Shared {
    /// Shared parts for at most `pg_cap` open Postgres connections in all, resolving names
    /// with the system resolver.
    pub fn new(pg_cap: u32) -> Result<Self, String> {
        Self::with_lookup(
            pg_cap,
            Arc::new(crate::egress::SystemLookup),
            Arc::default(),
        )
    }

    /// As [`Self::new`], resolving names with `lookup` and counting connections and their
    /// failures in `metrics`.
    pub fn with_lookup(
        pg_cap: u32,
        lookup: Arc<dyn Lookup>,
        metrics: Arc<ClientMetrics>,
    ) -> Result<Self, String> {
        crate::probe::install_crypto_provider();
        Ok(Self {
            pg_budget: Arc::new(ConnectionBudget::new(pg_cap)),
            egress: Arc::new(EgressCache::new(lookup)),
            metrics,
        })
    }

    /// The Postgres connections of every pool together.
    pub fn pg_budget(&self) -> &Arc<ConnectionBudget> {
        &self.pg_budget
    }
}

/// A built client of one endpoint.
#[derive(Clone, Debug)]
pub enum Built {
    /// A Postgres pool.
    Postgres(TenantPool),
    /// An S3 client and its bucket.
    S3(S3Handle),
    /// An MCP client.
    Mcp(Arc<McpClient>),
}

impl Built {
    /// Closes what holds connections: a pool closes its idle connections now and those in use
    /// when they come back; an MCP session ends. Dropping the last handle of an S3 client
    /// releases it.
    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::S3(_) => {}
            Self::Mcp(client) => client.close().await,
        }
    }
}

/// The S3 client of an endpoint with its bucket; a prefix when the bucket is shared.
#[derive(Clone, Debug)]
pub struct S3Handle {
    /// The client (cheap to clone).
    pub client: aws_sdk_s3::Client,
    /// The bucket.
    pub bucket: String,
    /// Key prefix every object of this tenant lives under (`tenants/<id>/` in the global
    /// bucket, empty in a tenant's own).
    pub prefix: String,
    /// Counts the client's first request and failures (the services call it).
    pub observer: Observer,
}

/// Reports one client's connections and failures to the client metrics: the time its server
/// took to be ready the first time (or each new connection, for Postgres), and its failures by
/// stage and reason.
#[derive(Clone, Debug)]
pub struct Observer {
    metrics: Arc<ClientMetrics>,
    key: ServerKey,
    origin: Origin,
    first: Arc<std::sync::atomic::AtomicBool>,
}

impl Observer {
    /// An observer of a `key` client on a server of `origin`.
    pub fn new(metrics: Arc<ClientMetrics>, key: ServerKey, origin: Origin) -> Self {
        Self {
            metrics,
            key,
            origin,
            first: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// The server was ready after `took`.
    pub fn connected(&self, took: Duration) {
        self.metrics.connected(&self.key, self.origin, took);
    }

    /// A request that took `took` succeeded: the first one of this client counts as its
    /// connection time.
    pub fn succeeded(&self, took: Duration) {
        if self.first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.connected(took);
        }
    }

    /// Something failed at `stage` (`connect` or `request`) with `reason`.
    pub fn failed(&self, stage: &'static str, reason: &str) {
        self.metrics
            .error(&self.key, Some(self.origin), stage, reason);
    }
}

/// Builds the client of server `key` at `endpoint` under its policy; `tenant` is applied as
/// MCP tenant routing.
pub fn build(
    shared: &Shared,
    key: &ServerKey,
    endpoint: &Endpoint,
    tenant: Option<&str>,
) -> Result<Built, String> {
    let egress = shared.egress.get(&endpoint.policy)?;
    match &endpoint.server {
        Candidate::Postgres {
            spec,
            credentials,
            ca_pem,
        } => Ok(Built::Postgres(postgres_pool(
            shared,
            &egress,
            endpoint.origin,
            spec,
            credentials,
            ca_pem.as_deref(),
        )?)),
        Candidate::Minio { spec, credentials } => Ok(Built::S3(S3Handle {
            client: egress
                .s3_client(spec, credentials, true)
                .map_err(|e| e.to_string())?,
            bucket: spec.bucket.clone(),
            prefix: String::new(),
            observer: Observer::new(shared.metrics.clone(), ServerKey::Minio, endpoint.origin),
        })),
        Candidate::Mcp { spec, credentials } => {
            let target = mcp_target(spec, tenant).map_err(|e| e.to_string())?;
            egress.check_url(&target.url).map_err(|e| e.to_string())?;
            // Header errors show now, not on the first call.
            crate::probe::mcp::transport_config(&target, credentials)?;
            Ok(Built::Mcp(Arc::new(McpClient {
                target,
                credentials: credentials.clone(),
                timeout: Duration::from_secs(u64::from(spec.timeout_seconds.unsigned_abs())),
                http: egress.mcp_http(),
                session: Mutex::new(None),
                observer: Observer::new(shared.metrics.clone(), key.clone(), endpoint.origin),
            })))
        }
    }
}

fn postgres_pool(
    shared: &Shared,
    egress: &Egress,
    origin: Origin,
    spec: &PostgresServer,
    credentials: &PostgresCredentials,
    ca_pem: Option<&[u8]>,
) -> Result<TenantPool, String> {
    let secs = |s: i32| Duration::from_secs(u64::from(s.unsigned_abs()));
    let pool = &spec.pool;
    egress
        .policy()
        .check_ssl_mode(spec.ssl_mode)
        .map_err(|e| e.to_string())?;
    let observer = Observer::new(shared.metrics.clone(), ServerKey::Postgres, origin);
    let hook: ConnectHook = Arc::new(move |outcome| match outcome {
        ConnectOutcome::Ready(took) => observer.connected(took),
        ConnectOutcome::Failed(reason) => observer.failed("connect", reason),
    });
    let relay =
        egress.postgres_relay(spec, ca_pem, secs(pool.acquire_timeout_seconds), Some(hook))?;
    let options = relay.connect_options(
        PgConnectOptions::new()
            .host(&spec.host)
            .port(u16::try_from(spec.port).unwrap_or(5432))
            .database(&spec.database)
            .username(&credentials.username)
            .password(credentials.password.expose())
            .application_name("tenant-mcp-client"),
    );
    let settings = PoolSettings {
        limits: Limits {
            max: u32::try_from(pool.max_connections).unwrap_or(1),
            min: u32::try_from(pool.min_connections).unwrap_or(0),
            idle_timeout: secs(pool.idle_timeout_seconds),
            max_lifetime: secs(pool.max_lifetime_seconds),
        },
        acquire_timeout: secs(pool.acquire_timeout_seconds),
    };
    // The relay lives exactly as long as the pool.
    let relay: Arc<dyn std::any::Any + Send + Sync> = Arc::new(relay);
    Ok(TenantPool::new(
        &shared.pg_budget,
        options,
        settings,
        Some(relay),
    ))
}

type Session = RunningService<RoleClient, ClientConfig>;

/// Every tool of `session`'s server, a page at a time; `Ok(Err(limit))` when the server pages
/// past [`MAX_TOOL_PAGES`] or [`MAX_TOOLS`].
async fn bounded_tools(session: &Session) -> Result<Result<Vec<Tool>, String>, rmcp::ServiceError> {
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_TOOL_PAGES {
        let params =
            cursor.map(|c| rmcp::model::PaginatedRequestParams::default().with_cursor(Some(c)));
        let page = session.list_tools(params).await?;
        tools.extend(page.tools);
        if tools.len() > MAX_TOOLS {
            return Ok(Err(format!("the server lists more than {MAX_TOOLS} tools")));
        }
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(Ok(tools)),
        }
    }
    Ok(Err(format!(
        "the server pages on past {MAX_TOOL_PAGES} pages"
    )))
}

/// An MCP client of one server for one tenant (its routing applied). The session opens on
/// the first call and is opened again after it fails.
pub struct McpClient {
    target: McpTarget,
    credentials: McpCredentials,
    timeout: Duration,
    http: reqwest::Client,
    session: Mutex<Option<Arc<OpenSession>>>,
    observer: Observer,
}

static OPEN_MCP_SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// MCP sessions open in this process (each holds its HTTP stream and a task of rmcp's).
pub fn open_mcp_sessions() -> u64 {
    OPEN_MCP_SESSIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A session, counted in [`open_mcp_sessions`] until its last handle is dropped (dropping
/// it ends the session).
struct OpenSession(Session);

impl OpenSession {
    fn new(session: Session) -> Self {
        OPEN_MCP_SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(session)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        OPEN_MCP_SESSIONS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::ops::Deref for OpenSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0
    }
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("url", &self.target.url.as_str())
            .finish_non_exhaustive()
    }
}

/// Why an MCP call failed; the message never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MCP server {url}: {message}")]
pub struct McpCallError {
    /// The server.
    pub url: String,
    /// What happened.
    pub message: String,
    /// `PolicyDenied` when the endpoint policy refused the connection (`Unreachable` when the
    /// name did not resolve); `None` for anything else.
    pub reason: Option<&'static str>,
}

impl McpClient {
    /// The URL requests go to (with the tenant's path prefix, if any).
    pub fn url(&self) -> &str {
        self.target.url.as_str()
    }

    /// Every tool of the server (all pages), within the server's timeout (opening a session
    /// included). A server that pages on past [`MAX_TOOL_PAGES`] pages or
    /// [`MAX_TOOLS`] tools is refused (threat model: a tenant's server must not exhaust an
    /// application's memory); each message is bounded by the transport.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpCallError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let session = self.session_by(deadline).await?;
        let result = tokio::time::timeout_at(deadline, bounded_tools(&session)).await;
        self.finish(result).await?.map_err(|limit| {
            self.observer
                .failed("request", crate::probe::reason::PROTOCOL_ERROR);
            self.error(format!("tools/list: {limit}"))
        })
    }

    /// Calls tool `name` with `arguments`, within the server's timeout (opening a session
    /// included).
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallToolResult, McpCallError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let session = self.session_by(deadline).await?;
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let result = tokio::time::timeout_at(deadline, session.call_tool(params)).await;
        self.finish(result).await
    }

    /// The session, by `deadline`: a caller waiting behind another one's `initialize` (to a
    /// server that hangs, say) still fails at its own deadline.
    async fn session_by(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<OpenSession>, McpCallError> {
        match tokio::time::timeout_at(deadline, self.session()).await {
            Ok(session) => session,
            Err(_) => {
                self.observer.failed("connect", "Timeout");
                Err(self.error(format!("initialize: no answer within {:?}", self.timeout)))
            }
        }
    }

    /// Ends the session, if one is open.
    pub async fn close(&self) {
        if let Some(session) = self.session.lock().await.take() {
            session.cancellation_token().cancel();
        }
    }

    async fn finish<T>(
        &self,
        result: Result<Result<T, rmcp::ServiceError>, tokio::time::error::Elapsed>,
    ) -> Result<T, McpCallError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                // The session may be dead (server restarted): open a new one next time.
                self.close().await;
                self.observer
                    .failed("request", crate::probe::mcp::reason_of(&e));
                Err(self.refused(&e))
            }
            Err(_) => {
                // Whatever the session waits for may never come: start afresh next time
                // (unless another caller is opening one right now).
                if let Ok(mut slot) = self.session.try_lock()
                    && let Some(session) = slot.take()
                {
                    session.cancellation_token().cancel();
                }
                self.observer.failed("request", "Timeout");
                Err(self.error(format!("no answer within {:?}", self.timeout)))
            }
        }
    }

    fn error(&self, message: String) -> McpCallError {
        McpCallError {
            url: self.target.url.to_string(),
            message: crate::probe::mcp::scrub(message, &self.credentials),
            reason: None,
        }
    }

    /// The error of a failed call, with the egress refusal behind it if that is what failed.
    fn refused(&self, error: &(dyn std::error::Error + 'static)) -> McpCallError {
        match crate::probe::mcp::egress_cause(error) {
            Some(denied) => McpCallError {
                reason: Some(denied.reason()),
                ..self.error(denied.to_string())
            },
            None => self.error(error.to_string()),
        }
    }

    async fn session(&self) -> Result<Arc<OpenSession>, McpCallError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref()
            && !session.is_closed()
        {
            return Ok(session.clone());
        }
        let config = crate::probe::mcp::transport_config(&self.target, &self.credentials)
            .map_err(|m| self.error(m))?;
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("tenant-mcp-client", env!("CARGO_PKG_VERSION")),
        );
        let started = std::time::Instant::now();
        let session = tokio::time::timeout(self.timeout, info.serve(transport))
            .await
            .map_err(|_| {
                self.observer.failed("connect", "Timeout");
                self.error(format!("initialize: no answer within {:?}", self.timeout))
            })?
            .map_err(|e| {
                self.observer
                    .failed("connect", crate::probe::mcp::reason_of(&e));
                let mut refused = self.refused(&e);
                if refused.reason.is_none() {
                    refused.message = format!("initialize: {}", refused.message);
                }
                refused
            })?;
        self.observer.connected(started.elapsed());
        let session = Arc::new(OpenSession::new(session));
        *slot = Some(session.clone());
        Ok(session)
    }
}

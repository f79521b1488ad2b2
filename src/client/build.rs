//! Building the clients of one endpoint without network I/O: a lazily connecting sqlx pool, an
//! aws-sdk-s3 client on the shared HTTP connector, and an MCP client whose session opens on
//! first use.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::SharedHttpClient;
use rmcp::ServiceExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, Tool,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::Mutex;

use super::routes::Endpoint;
use crate::api::{PostgresServer, S3Server};
use crate::config::candidate::Candidate;
use crate::config::{McpCredentials, McpTarget, PostgresCredentials, S3Credentials, mcp_target};

/// What every client shares: the parent pool whose size caps the connections of all tenant
/// pools together, one S3 HTTP connector, one HTTP client for MCP.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Never connects itself; child pools take their connection permits from it.
    pg_parent: PgPool,
    /// The cap on open Postgres connections across all pools.
    pg_cap: u32,
    s3_http: SharedHttpClient,
    mcp_http: reqwest::Client,
}

impl Shared {
    /// Shared parts for at most `pg_cap` open Postgres connections in all.
    pub fn new(pg_cap: u32) -> Result<Self, String> {
        crate::probe::install_crypto_provider();
        let pg_cap = pg_cap.max(1);
        // sqlx's parent pool: children "steal" permits from it, so the sum of open connections
        // over every child stays under its max_connections. A child keeps every permit it
        // stole (a closed connection's permit goes back to the child, not the parent) until
        // the child pool is dropped: the cache makes room by closing idle pools
        // (`ClientCache::make_room`). The parent is lazy and never asked for a connection.
        let pg_parent = PgPoolOptions::new()
            .max_connections(pg_cap)
            .connect_lazy_with(PgConnectOptions::new().host("127.0.0.1"));
        let s3_http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mcp_http = reqwest::Client::builder()
            // A redirect could lead anywhere, including past the endpoint policy.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client for MCP: {e}"))?;
        Ok(Self {
            pg_parent,
            pg_cap,
            s3_http,
            mcp_http,
        })
    }

    /// The cap on open Postgres connections.
    pub fn pg_cap(&self) -> u32 {
        self.pg_cap
    }
}

/// A built client of one endpoint.
#[derive(Clone, Debug)]
pub enum Built {
    /// A Postgres pool.
    Postgres(PgPool),
    /// An S3 client and its bucket.
    S3(S3Handle),
    /// An MCP client.
    Mcp(Arc<McpClient>),
}

impl Built {
    /// Closes what holds connections: a pool waits for checked-out connections to come back,
    /// then closes them all; an MCP session ends. Dropping the last handle of an S3 client
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
}

/// Builds the client of `endpoint`; `tenant` is applied as MCP tenant routing.
pub fn build(shared: &Shared, endpoint: &Endpoint, tenant: Option<&str>) -> Result<Built, String> {
    match &endpoint.server {
        Candidate::Postgres {
            spec,
            credentials,
            ca_pem,
        } => Ok(Built::Postgres(postgres_pool(
            shared,
            spec,
            credentials,
            ca_pem.as_deref(),
        ))),
        Candidate::Minio { spec, credentials } => Ok(Built::S3(S3Handle {
            client: s3_client(shared, spec, credentials),
            bucket: spec.bucket.clone(),
            prefix: String::new(),
        })),
        Candidate::Mcp { spec, credentials } => {
            let target = mcp_target(spec, tenant).map_err(|e| e.to_string())?;
            // Header errors show now, not on the first call.
            crate::probe::mcp::transport_config(&target, credentials)?;
            Ok(Built::Mcp(Arc::new(McpClient {
                target,
                credentials: credentials.clone(),
                timeout: Duration::from_secs(u64::from(spec.timeout_seconds.unsigned_abs())),
                http: shared.mcp_http.clone(),
                session: Mutex::new(None),
            })))
        }
    }
}

fn postgres_pool(
    shared: &Shared,
    spec: &PostgresServer,
    credentials: &PostgresCredentials,
    ca_pem: Option<&[u8]>,
) -> PgPool {
    let mut options = PgConnectOptions::new()
        .host(&spec.host)
        .port(u16::try_from(spec.port).unwrap_or(5432))
        .database(&spec.database)
        .username(&credentials.username)
        .password(credentials.password.expose())
        .ssl_mode(crate::probe::postgres::ssl_mode(spec.ssl_mode))
        .application_name("tenant-mcp-client");
    if let Some(pem) = ca_pem {
        options = options.ssl_root_cert_from_pem(pem.to_vec());
    }
    let secs = |s: i32| Duration::from_secs(u64::from(s.unsigned_abs()));
    let pool = &spec.pool;
    let max = pg_max_connections(shared, spec);
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(u32::try_from(pool.min_connections).unwrap_or(0).min(max))
        .acquire_timeout(secs(pool.acquire_timeout_seconds))
        .idle_timeout(secs(pool.idle_timeout_seconds))
        .max_lifetime(secs(pool.max_lifetime_seconds))
        .parent(shared.pg_parent.clone())
        .connect_lazy_with(options)
}

/// The most connections the pool of `spec` opens.
pub fn pg_max_connections(shared: &Shared, spec: &PostgresServer) -> u32 {
    // A child may not be larger than its parent (sqlx asserts it).
    u32::try_from(spec.pool.max_connections)
        .unwrap_or(1)
        .clamp(1, shared.pg_cap)
}

fn s3_client(shared: &Shared, spec: &S3Server, credentials: &S3Credentials) -> aws_sdk_s3::Client {
    let keys = aws_credential_types::Credentials::from_keys(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose().to_owned(),
        None,
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&spec.endpoint)
        .region(aws_sdk_s3::config::Region::new(spec.region.clone()))
        .credentials_provider(keys)
        .force_path_style(spec.force_path_style)
        .http_client(shared.s3_http.clone())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

type Session = RunningService<RoleClient, ClientConfig>;

/// An MCP client of one server for one tenant (its routing applied). The session opens on
/// the first call and is opened again after it fails.
pub struct McpClient {
    target: McpTarget,
    credentials: McpCredentials,
    timeout: Duration,
    http: reqwest::Client,
    session: Mutex<Option<Arc<Session>>>,
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
}

impl McpClient {
    /// The URL requests go to (with the tenant's path prefix, if any).
    pub fn url(&self) -> &str {
        self.target.url.as_str()
    }

    /// Every tool of the server (all pages).
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpCallError> {
        let session = self.session().await?;
        let result = tokio::time::timeout(self.timeout, session.list_all_tools()).await;
        self.finish(result).await
    }

    /// Calls tool `name` with `arguments`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallToolResult, McpCallError> {
        let session = self.session().await?;
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let result = tokio::time::timeout(self.timeout, session.call_tool(params)).await;
        self.finish(result).await
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
                Err(self.error(e.to_string()))
            }
            Err(_) => Err(self.error(format!("no answer within {:?}", self.timeout))),
        }
    }

    fn error(&self, message: String) -> McpCallError {
        McpCallError {
            url: self.target.url.to_string(),
            message: crate::probe::mcp::scrub(message, &self.credentials),
        }
    }

    async fn session(&self) -> Result<Arc<Session>, McpCallError> {
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
        let session = tokio::time::timeout(self.timeout, info.serve(transport))
            .await
            .map_err(|_| self.error(format!("initialize: no answer within {:?}", self.timeout)))?
            .map_err(|e| self.error(format!("initialize: {e}")))?;
        let session = Arc::new(session);
        *slot = Some(session.clone());
        Ok(session)
    }
}

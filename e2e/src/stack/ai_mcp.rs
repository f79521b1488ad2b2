//! The project's own test "AI MCP server" (rmcp, Streamable HTTP): multi-tenant the way real
//! shared AI services are. It serves `/mcp` (tenant from a header) and
//! `/tenants/{tenant}/mcp` (tenant from the path), checks bearer tokens (each either for one
//! tenant or for all), and reports in every answer, and in [`AiMcpServer::served`], which
//! server served which tenant, so tests can prove where a request went.

use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_router};
use serde::{Deserialize, Serialize};

/// A bearer token the server accepts.
#[derive(Clone, Debug)]
pub struct Token {
    /// The token.
    pub token: String,
    /// The one tenant it may be used for; `None` for any tenant (a platform token).
    pub tenant: Option<String>,
}

/// How to run a test AI MCP server.
#[derive(Clone, Debug)]
pub struct AiMcpConfig {
    /// Its name, reported in every answer (e.g. `global`, `acme-dedicated`).
    pub name: String,
    /// Accepted bearer tokens; empty means no authentication.
    pub tokens: Vec<Token>,
    /// The header carrying the tenant on `/mcp` (default `X-Tenant-Id`).
    pub tenant_header: String,
}

impl AiMcpConfig {
    /// A server called `name` accepting `tokens`.
    pub fn new(name: &str, tokens: Vec<Token>) -> Self {
        Self {
            name: name.to_owned(),
            tokens,
            tenant_header: "X-Tenant-Id".into(),
        }
    }
}

/// How a request named its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Routing {
    /// The `/tenants/{tenant}/mcp` path.
    PathPrefix,
    /// The tenant header.
    Header,
    /// Neither: a request for no particular tenant.
    None,
}

/// What one tool call was for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    /// The server's name.
    pub server: String,
    /// The tenant, if the request named one.
    pub tenant: Option<String>,
    /// How it named it.
    pub routing: Routing,
    /// The tool called.
    pub tool: String,
}

/// The tenant a request is for, put into its extensions by the auth layer.
#[derive(Clone, Debug)]
struct TenantOf {
    tenant: Option<String>,
    routing: Routing,
}

#[derive(Clone)]
struct Shared {
    config: Arc<AiMcpConfig>,
    served: Arc<Mutex<Vec<Served>>>,
}

/// The `generate` tool's input.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: String,
}

/// The `generate` tool's output.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Generated {
    /// Who served it.
    #[serde(flatten)]
    pub served: Served,
    /// The "completion": the prompt, labelled with server and tenant.
    pub text: String,
}

#[derive(Clone)]
struct AiTools {
    shared: Shared,
}

impl AiTools {
    fn record(&self, parts: &axum::http::request::Parts, tool: &str) -> Served {
        let of = parts
            .extensions
            .get::<TenantOf>()
            .cloned()
            .unwrap_or(TenantOf {
                tenant: None,
                routing: Routing::None,
            });
        let served = Served {
            server: self.shared.config.name.clone(),
            tenant: of.tenant,
            routing: of.routing,
            tool: tool.to_owned(),
        };
        if let Ok(mut log) = self.shared.served.lock() {
            log.push(served.clone());
        }
        served
    }
}

#[tool_router(server_handler)]
impl AiTools {
    /// Which server answered, for which tenant, routed how.
    #[tool(description = "Report which server served this request, for which tenant")]
    fn whoami(&self, Extension(parts): Extension<axum::http::request::Parts>) -> Json<Served> {
        Json(self.record(&parts, "whoami"))
    }

    /// A stand-in for a model call: deterministic, labelled with server and tenant.
    #[tool(description = "Generate a completion for a prompt (deterministic test model)")]
    fn generate(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        Parameters(GenerateRequest { prompt }): Parameters<GenerateRequest>,
    ) -> Json<Generated> {
        let served = self.record(&parts, "generate");
        let text = format!(
            "[{}/{}] {prompt}",
            served.server,
            served.tenant.as_deref().unwrap_or("-")
        );
        Json(Generated { served, text })
    }
}

/// Checks the bearer token and works out the tenant, before rmcp sees the request.
async fn authenticate(State(shared): State<Shared>, mut request: Request, next: Next) -> Response {
    let config = &shared.config;
    let path_tenant = request
        .uri()
        .path()
        .strip_prefix("/tenants/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    let header_tenant = request
        .headers()
        .get(config.tenant_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let of = match (path_tenant, header_tenant) {
        (Some(path), Some(header)) if path != header => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "the path names tenant {path:?} but {} names {header:?}",
                    config.tenant_header
                ),
            )
                .into_response();
        }
        (Some(tenant), _) => TenantOf {
            tenant: Some(tenant),
            routing: Routing::PathPrefix,
        },
        (None, Some(tenant)) => TenantOf {
            tenant: Some(tenant),
            routing: Routing::Header,
        },
        (None, None) => TenantOf {
            tenant: None,
            routing: Routing::None,
        },
    };
    if !config.tokens.is_empty() {
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = presented.and_then(|p| config.tokens.iter().find(|t| t.token == p))
        else {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "a valid bearer token is required",
            )
                .into_response();
        };
        if let Some(only) = &token.tenant
            && of.tenant.as_ref() != Some(only)
        {
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "this token is for tenant {only:?}, not {:?}",
                    of.tenant.as_deref().unwrap_or("")
                ),
            )
                .into_response();
        }
    }
    request.extensions_mut().insert(of);
    next.run(request).await
}

/// A running test AI MCP server (on its own thread and runtime, so a test that blocks its own
/// runtime cannot stall it).
pub struct AiMcpServer {
    address: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AiMcpServer {
    /// Starts serving on a random loopback port.
    pub fn start(config: AiMcpConfig) -> std::io::Result<Self> {
        Self::start_on(config, std::net::IpAddr::from([127, 0, 0, 1]))
    }

    /// [`Self::start`] on a random port of `host` (a node's `HOST_IP`, for Pods).
    pub fn start_on(config: AiMcpConfig, host: std::net::IpAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind((host, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let shared = Shared {
            config: Arc::new(config),
            served: Arc::new(Mutex::new(Vec::new())),
        };
        let served = shared.served.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ai-mcp")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("ai-mcp".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut config = StreamableHttpServerConfig::default();
                    let cancel = config.cancellation_token.clone();
                    config.sse_keep_alive = None;
                    // Tenants reach their servers by name (tests give them names that resolve
                    // to loopback); this test server answers any Host.
                    config.allowed_hosts.clear();
                    let tools = AiTools {
                        shared: shared.clone(),
                    };
                    let mcp = StreamableHttpService::new(
                        move || Ok(tools.clone()),
                        Arc::new(LocalSessionManager::default()),
                        config,
                    );
                    let router = axum::Router::new()
                        .route_service("/mcp", mcp.clone())
                        .route_service("/tenants/{tenant}/mcp", mcp)
                        .layer(axum::middleware::from_fn_with_state(shared, authenticate));
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    // As a production server would: without it every request after the
                    // first on a kept-alive connection waits out a 40 ms delayed ACK.
                    let listener = listener.tap_io(|stream| {
                        let _ = stream.set_nodelay(true);
                    });
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                            cancel.cancel();
                        })
                        .await;
                });
            })?;
        Ok(Self {
            address,
            served,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The endpoint that takes the tenant from the header (`http://127.0.0.1:PORT/mcp`).
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    /// The base for path-prefix routing (`http://127.0.0.1:PORT`); a tenant's endpoint is
    /// `{base}/tenants/{tenant}/mcp`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every tool call served so far, oldest first.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AiMcpServer {
    fn drop(&mut self) {
        // Dropping the sender stops the server; not joined here, so dropping inside an
        // async context never blocks.
        self.shutdown.take();
    }
}

//! The management server over Streamable HTTP (`/mcp`) behind bearer authentication, a request
//! size limit and a per-caller rate, and over stdio for a local agent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::auth::{AuthError, Authenticator};
use super::limits::{Limits, RateLimiter, rate_key};
use super::metrics::ServerMetrics;
use super::tools::ManagementTools;

/// What the HTTP front checks before a request reaches the tools.
struct Gate {
    auth: Arc<Authenticator>,
    metrics: Arc<ServerMetrics>,
    rate: RateLimiter,
    max_request_bytes: usize,
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// How long a refused request's body may take to arrive before its connection is closed.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most bytes of an oversized request's body read (and dropped) so its refusal reaches the
/// client; beyond it the connection is closed with the body unread.
const OVERSIZED_DRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// `response` with `Connection: close`.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and drops up to `limit` bytes of `body`; whether it ended within them.
async fn discard(body: axum::body::Body, limit: usize) -> bool {
    use futures::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                seen = seen.saturating_add(bytes.len());
                if seen > limit {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// `response` to a refused `request`, sent once the request's body (at most `limit` bytes,
/// within [`DRAIN_TIMEOUT`]) is read and dropped. A server that answers early and closes with
/// the body unread makes the kernel reset the connection, and the client loses the answer
/// ("Server disconnected without sending a response"); one that answers early and keeps the
/// connection leaves the body to be parsed as the next request. A body that does not end in
/// time or within `limit` gets `Connection: close`.
async fn after_body(request: Request, limit: usize, response: Response) -> Response {
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, discard(request.into_body(), limit)).await;
    match drained {
        Ok(true) => response,
        _ => closing(response),
    }
}

/// Size first (no body is read for an oversized request), then the token, then the caller's
/// rate. A body without a declared length is cut off at the same limit by rmcp itself
/// (`max_request_body_bytes`, set in [`router`]).
///
/// Every refusal is a complete response on a connection the client can reuse or is told to
/// close: the refused body is read and dropped first (see [`after_body`]).
async fn guard(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > gate.max_request_bytes) {
        gate.metrics.refused("too_large");
        let response = refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes", gate.max_request_bytes),
        );
        return after_body(request, OVERSIZED_DRAIN_LIMIT, response).await;
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match gate.auth.authenticate(header) {
        Ok(caller) => caller,
        Err(e) => {
            gate.metrics.refused("unauthenticated");
            let mut response = refuse(StatusCode::UNAUTHORIZED, e.to_string());
            let challenge = match e {
                AuthError::MissingToken => "Bearer",
                _ => "Bearer error=\"invalid_token\"",
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            return after_body(request, gate.max_request_bytes, response).await;
        }
    };
    if let Err(wait) = gate.rate.check(&rate_key(&caller)) {
        gate.metrics.refused("rate_limited");
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests from {:?}: try again in {}s",
                caller.subject,
                wait.as_secs() + 1
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return after_body(request, gate.max_request_bytes, response).await;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The HTTP routes: `/mcp` (Streamable HTTP) behind the gate; `/healthz` (for probes) and
/// `/metrics` (OpenMetrics) without a token. `stop` ends open sessions.
///
/// `allowed_hosts` are the `Host` values `/mcp` answers (names, or `name:port`), against DNS
/// rebinding; empty allows loopback names only. Requests are served statelessly (no session
/// kept between them), so any replica behind a Service can answer any request.
pub fn router(
    tools: ManagementTools,
    auth: Arc<Authenticator>,
    limits: &Limits,
    allowed_hosts: &[String],
    stop: CancellationToken,
) -> axum::Router {
    let metrics = tools.metrics();
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_max_request_body_bytes(limits.max_request_bytes)
        .with_cancellation_token(stop);
    if !allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(allowed_hosts.iter().cloned());
    }
    let mcp = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let gate = Arc::new(Gate {
        auth,
        metrics: metrics.clone(),
        rate: RateLimiter::new(limits.requests_per_minute, limits.burst),
        max_request_bytes: limits.max_request_bytes,
    });
    axum::Router::new()
        .route_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(gate, guard))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
}

/// Serves one session on stdin/stdout for a local agent, as the holder of `token`.
pub async fn serve_stdio(
    tools: ManagementTools,
    auth: &Authenticator,
    token: &str,
) -> Result<(), StdioError> {
    let caller = auth.authenticate(Some(&format!("Bearer {token}")))?;
    tracing::info!(subject = %caller.subject, "serving the management tools on stdio");
    let service = tools
        .for_caller(caller)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| StdioError::Start(e.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|e| StdioError::Start(e.to_string()))?;
    Ok(())
}

/// Why the stdio server did not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// The token was refused.
    #[error("the stdio token was refused: {0}")]
    Token(#[from] AuthError),
    /// The session could not start or ended in error.
    #[error("stdio session: {0}")]
    Start(String),
}

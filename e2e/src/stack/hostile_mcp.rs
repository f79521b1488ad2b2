//! A hostile MCP server: the attacker of the threat model's line "a tenant's own servers must
//! not exhaust the controller's, the management server's or an application's memory". It
//! speaks just enough Streamable HTTP (JSON answers, no SSE stream) to pass `initialize`, then
//! answers every `tools/list` with a page of about `page_bytes` and a next cursor, forever.
//! Pages are generated while they are sent, so the server itself holds only a few KiB.
//! Hand-written on purpose: no real server misbehaves this way, and the behaviour is the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// A running hostile server.
pub struct HostileMcpServer {
    port: u16,
    pages: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Hostile {
    page_bytes: usize,
    pages: Arc<AtomicUsize>,
}

impl HostileMcpServer {
    /// Starts one on a loopback port whose `tools/list` pages are about `page_bytes` long.
    pub async fn start(page_bytes: usize) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let pages = Arc::new(AtomicUsize::new(0));
        let state = Hostile {
            page_bytes,
            pages: pages.clone(),
        };
        let app = Router::new()
            .route("/mcp", post(answer).delete(|| async { StatusCode::OK }))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, pages, task })
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// How many `tools/list` pages it has started to send.
    pub fn pages_sent(&self) -> usize {
        self.pages.load(Ordering::Relaxed)
    }
}

impl Drop for HostileMcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(hostile): State<Hostile>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(id) = request.get("id").cloned() else {
        // A notification (`notifications/initialized`).
        return StatusCode::ACCEPTED.into_response();
    };
    let json_response = |body: Body| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap_or_default()
    };
    match request.get("method").and_then(Value::as_str) {
        Some("initialize") => {
            let version = request
                .pointer("/params/protocolVersion")
                .cloned()
                .unwrap_or(json!("2025-06-18"));
            json_response(Body::from(
                json!({"jsonrpc": "2.0", "id": id, "result": {
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "hostile", "version": "1"}}})
                .to_string(),
            ))
        }
        Some("tools/list") => {
            let page = hostile.pages.fetch_add(1, Ordering::Relaxed);
            json_response(Body::from_stream(page_stream(id, page, hostile.page_bytes)))
        }
        _ => json_response(Body::from(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}})
                .to_string(),
        )),
    }
}

/// One page of about `bytes`: tools of 1 KiB descriptions, then `nextCursor`.
fn page_stream(
    id: Value,
    page: usize,
    bytes: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let description = "x".repeat(1000);
    let tools = bytes / 1100 + 1;
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":["#);
    let tail = format!(r#"],"nextCursor":"page-{}"}}}}"#, page + 1);
    let body = (0..tools).map(move |i| {
        let comma = if i == 0 { "" } else { "," };
        Ok(Bytes::from(format!(
            r#"{comma}{{"name":"tool-{page}-{i}","description":"{description}","inputSchema":{{"type":"object"}}}}"#
        )))
    });
    futures::stream::iter(
        std::iter::once(Ok(Bytes::from(head)))
            .chain(body)
            .chain(std::iter::once(Ok(Bytes::from(tail)))),
    )
}

//! The sample app: an axum service that, for the tenant of each request (header
//! `x-tenant-id`), stores a document in the tenant's object storage, records it in the
//! tenant's Postgres under row-level security, and asks the tenant's AI MCP server for a
//! summary. Each answer says which server (the tenant's own or the global one) did what.
//!
//! - `PUT /documents/{name}` (body: the text): store, summarize, record;
//! - `GET /documents`: the tenant's rows (RLS) and objects;
//! - `GET /documents/{name}`: the stored text;
//! - `GET /endpoints`: per server type, the origin and endpoint used (or why none);
//! - `GET /metrics`: the client library's metrics (Prometheus text; no tenant header).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tenant_mcp::client::layer::{Tenant, TenantLayer};
use tenant_mcp::client::{ClientError, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp::services::{ServiceError, TenantServices};

/// The documents table: the tenant id defaults to the transaction's `app.tenant_id`, and the
/// policy shows and accepts only that tenant's rows, also to the table's owner (FORCE).
pub const SCHEMA: &[&str] = &[
    "SELECT pg_advisory_xact_lock(7262617)",
    "CREATE TABLE IF NOT EXISTS documents (
        tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'),
        name text NOT NULL,
        object_key text NOT NULL,
        size bigint NOT NULL,
        summary text,
        PRIMARY KEY (tenant_id, name))",
    "ALTER TABLE documents ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE documents FORCE ROW LEVEL SECURITY",
    "DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_policies
                       WHERE tablename = 'documents' AND policyname = 'tenant_isolation') THEN
            CREATE POLICY tenant_isolation ON documents
                USING (tenant_id = current_setting('app.tenant_id', true))
                WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
        END IF;
    END $$",
];

/// The app's state.
#[derive(Clone, Debug)]
pub struct App {
    clients: TenantClients,
    services: TenantServices,
    /// The AI MCP tool asked for summaries; it takes `{"prompt": "…"}`.
    summary_tool: String,
    /// Postgres endpoints whose schema is in place.
    migrated: Arc<Mutex<HashSet<u64>>>,
    /// The client library's metrics.
    registry: Arc<Registry>,
}

impl App {
    /// The app over `clients`, summarizing with tool `summary_tool`.
    pub fn new(clients: TenantClients, summary_tool: impl Into<String>) -> Self {
        let mut registry = Registry::default();
        clients.register_metrics(&mut registry);
        Self {
            services: TenantServices::new(clients.clone()),
            clients,
            summary_tool: summary_tool.into(),
            migrated: Arc::default(),
            registry: Arc::new(registry),
        }
    }

    /// The routes, with the tenant taken from the `x-tenant-id` header.
    pub fn router(self) -> Router {
        Router::new()
            .route("/documents", get(list))
            .route("/documents/{name}", get(fetch).put(store))
            .route("/endpoints", get(endpoints))
            .layer(TenantLayer::header("x-tenant-id"))
            .route("/metrics", get(metrics))
            .with_state(self)
    }

    /// Creates the documents table on the tenant's Postgres once per server and login.
    async fn ensure_schema(&self, tenant: &str) -> Result<(), AppError> {
        let endpoint = self.clients.endpoint(tenant, &ServerKey::Postgres)?;
        let fingerprint = endpoint.fingerprint;
        if lock(&self.migrated).contains(&fingerprint) {
            return Ok(());
        }
        let pool = self.clients.postgres(tenant).await?;
        // Getting a connection may be refused by the endpoint policy: say so, with the reason.
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| AppError::Service(ServiceError::postgres(tenant, e)))?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(AppError::schema)?;
        }
        tx.commit().await.map_err(AppError::schema)?;
        lock(&self.migrated).insert(fingerprint);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `PUT /documents/{name}` did.
#[derive(Debug, Serialize)]
pub struct Stored {
    /// The tenant.
    pub tenant: String,
    /// The document.
    pub name: String,
    /// Bytes stored.
    pub size: usize,
    /// Whose Postgres recorded it (`tenant` or `global`).
    pub postgres: &'static str,
    /// Whose object storage holds it.
    pub storage: &'static str,
    /// The AI MCP server's summary, or why there is none.
    pub summary: Result<String, String>,
}

async fn store(
    State(app): State<App>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<Stored>, AppError> {
    let key = format!("documents/{name}");
    app.services
        .objects
        .put_current(&key, body.clone().into_bytes(), Some("text/plain"))
        .await?;
    let storage = app.clients.endpoint(&tenant, &ServerKey::Minio)?.origin;
    let summary = summarize(&app, &body).await;
    app.ensure_schema(&tenant).await?;
    let mut tx = app.services.postgres.begin_current().await?;
    sqlx::query(
        "INSERT INTO documents (name, object_key, size, summary) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, name) DO UPDATE
         SET object_key = EXCLUDED.object_key, size = EXCLUDED.size, summary = EXCLUDED.summary",
    )
    .bind(&name)
    .bind(&key)
    .bind(i64::try_from(body.len()).unwrap_or(i64::MAX))
    .bind(summary.as_ref().ok())
    .execute(tx.conn())
    .await
    .map_err(|e| tx.error(e))?;
    let postgres = tx.origin();
    tx.commit().await?;
    Ok(Json(Stored {
        tenant: tenant.to_string(),
        name,
        size: body.len(),
        postgres: postgres.as_str(),
        storage: storage.as_str(),
        summary: summary.map_err(|e| e.to_string()),
    }))
}

/// The summary of `text` from the tenant's AI MCP server (its text output).
async fn summarize(app: &App, text: &str) -> Result<String, ServiceError> {
    let mut arguments = serde_json::Map::new();
    arguments.insert("prompt".into(), format!("Summarize: {text}").into());
    let result = app
        .services
        .ai
        .call_tool_current(&app.summary_tool, arguments)
        .await?;
    if let Some(text) = result
        .structured_content
        .as_ref()
        .and_then(|v| v.get("text"))
        .and_then(|t| t.as_str())
    {
        return Ok(text.to_owned());
    }
    Ok(result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// One row of `GET /documents`.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Document {
    /// The tenant the row belongs to (always the caller: RLS).
    pub tenant_id: String,
    /// The document.
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// The summary, if there was one.
    pub summary: Option<String>,
}

/// What `GET /documents` answers.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// Rows visible in Postgres.
    pub rows: Vec<Document>,
    /// Objects under the tenant's prefix.
    pub objects: Vec<tenant_mcp::services::ObjectInfo>,
}

async fn list(
    State(app): State<App>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Result<Json<Listing>, AppError> {
    app.ensure_schema(&tenant).await?;
    let mut tx = app.services.postgres.begin_current().await?;
    let rows = sqlx::query_as::<_, Document>(
        "SELECT tenant_id, name, size, summary FROM documents ORDER BY name",
    )
    .fetch_all(tx.conn())
    .await
    .map_err(|e| tx.error(e))?;
    tx.commit().await?;
    let objects = app.services.objects.list(&tenant, "documents/").await?;
    Ok(Json(Listing { rows, objects }))
}

async fn fetch(State(app): State<App>, Path(name): Path<String>) -> Result<String, AppError> {
    let bytes = app
        .services
        .objects
        .get_current(&format!("documents/{name}"))
        .await?;
    String::from_utf8(bytes).map_err(|_| AppError::NotText)
}

/// One row of `GET /endpoints`.
#[derive(Debug, Serialize)]
pub struct Used {
    /// `postgres`, `minio` or `aiMcpServer`.
    pub server: String,
    /// `tenant` or `global`, when there is one.
    pub origin: Option<&'static str>,
    /// Where it points (no credentials), or why there is none.
    pub endpoint: Result<String, String>,
}

async fn metrics(State(app): State<App>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn endpoints(
    State(app): State<App>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Json<Vec<Used>> {
    let used = [ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp]
        .iter()
        .map(|key| match app.clients.endpoint(&tenant, key) {
            Ok(e) => Used {
                server: key.as_string(),
                origin: Some(e.origin.as_str()),
                endpoint: Ok(e.describe()),
            },
            Err(e) => Used {
                server: key.as_string(),
                origin: None,
                endpoint: Err(e.to_string()),
            },
        })
        .collect();
    Json(used)
}

/// Why a request failed, as a JSON `{"error": …}` with a status that fits.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A service call failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Creating the documents table failed.
    #[error("creating the documents table: {0}")]
    Schema(sqlx::Error),
    /// The stored object is not UTF-8 text.
    #[error("the document is not UTF-8 text")]
    NotText,
}

impl From<ClientError> for AppError {
    fn from(e: ClientError) -> Self {
        Self::Service(e.into())
    }
}

impl AppError {
    fn schema(e: sqlx::Error) -> Self {
        Self::Schema(e)
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Service(ServiceError::NotFound { .. }) => StatusCode::NOT_FOUND,
            Self::Service(ServiceError::InvalidKey { .. }) => StatusCode::BAD_REQUEST,
            Self::Service(ServiceError::Client(ClientError::NotConfigured { .. })) => {
                StatusCode::NOT_IMPLEMENTED
            }
            // The tenant's server cannot be used now; no other server was tried.
            Self::Service(ServiceError::PolicyDenied { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Service(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotText => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let reason = match &self {
            Self::Service(e) => e.reason().to_owned(),
            Self::Schema(_) => "PostgresError".to_owned(),
            Self::NotText => "NotText".to_owned(),
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string(), "reason": reason })),
        )
            .into_response()
    }
}

//! The Kubernetes API stand-in: enough of the real API server's wire protocol and object
//! semantics for kubectl, kube-rs's watcher and Controller, and tenant-mcp to run unchanged.
//!
//! Start one in-process with [`ApiServer::start`]; it listens on a random loopback port and
//! writes a kubeconfig that kubectl and kube-rs use as they would a real cluster's.

pub mod apply;
pub mod auth;
pub mod discovery;
pub mod errors;
pub mod http;
pub mod openapi;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};

use auth::Authenticator;
use store::Store;

/// How to run a stand-in.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one. Defaults to `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// File to keep the objects in across restarts.
    pub data_file: Option<PathBuf>,
    /// Static token file; without one everyone is an administrator.
    pub token_file: Option<PathBuf>,
}

/// A running stand-in.
pub struct ApiServer {
    url: String,
    store: Arc<Store>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Starts serving on `config.listen` (a random loopback port by default).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let store = Store::new(config.data_file.clone()).map_err(anyhow::Error::msg)?;
        let auth = match &config.token_file {
            Some(path) => Authenticator::from_file(path).map_err(anyhow::Error::msg)?,
            None => Authenticator::allow_all(),
        };
        let listener = tokio::net::TcpListener::bind(
            config
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        )
        .await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let app = Arc::new(http::App {
            store: store.clone(),
            auth,
            server_address: url.trim_start_matches("http://").to_owned(),
            stopping,
        });
        let router = axum::Router::new()
            .fallback(
                |State(app): State<Arc<http::App>>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    http::handle(app, method, uri, headers, body).await
                },
            )
            .with_state(app);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let flusher = store.clone();
        let task = tokio::spawn(async move {
            let flush_loop = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Err(e) = flusher.flush() {
                        tracing::warn!(error = %e, "could not persist the store");
                    }
                }
            };
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = rx.await;
                // End open watches, so connections can close and clients reconnect.
                let _ = stopping_tx.send(true);
            });
            tokio::select! {
                result = serve => if let Err(e) = result { tracing::warn!(error = %e, "the API stand-in stopped") },
                () = flush_loop => {}
            }
            let _ = flusher.flush();
        });
        Ok(Self {
            url,
            store,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store, for tests that inspect it directly.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A kubeconfig for this server; `token` is sent as the bearer token when given.
    pub fn kubeconfig(&self, token: Option<&str>) -> String {
        let user = format!("    token: {}\n", token.unwrap_or("stand-in-admin"));
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: stand-in\n    namespace: default\ncurrent-context: stand-in\nusers:\n- name: stand-in\n  user:\n{user}",
            self.url
        )
    }

    /// Writes [`Self::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(token))
    }

    /// Stops serving (open watches end), and writes the data file if there is one.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Open watches hold a graceful shutdown open; cut them after a moment, as a
            // restarting API server does.
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        let _ = self.store.flush();
    }
}

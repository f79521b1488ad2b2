//! The Kubernetes API stand-in: enough of the real API server's wire protocol and object
//! semantics for kubectl, kube-rs's watcher and Controller, and tenant-mcp to run unchanged.
//!
//! Start one in-process with [`ApiServer::start`]; it listens on a random loopback port, over
//! HTTPS with a throwaway CA unless told otherwise, and writes a kubeconfig that kubectl and
//! kube-rs use as they would a real cluster's.

pub mod apply;
pub mod auth;
pub mod discovery;
pub mod errors;
pub mod events;
pub mod faults;
pub mod http;
pub mod openapi;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod store;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use base64::Engine as _;

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
    /// Serve plain HTTP instead of HTTPS. kubectl then sends no bearer tokens, so only the
    /// anonymous administrator of a server without a token file can use it.
    pub plain_http: bool,
    /// Where the serving CA, certificate and key are kept (`ca.crt`, `tls.crt`, `tls.key`),
    /// generated there the first time. Defaults to `<data_file>.tls` when there is a data
    /// file, so a restarted server keeps its kubeconfigs valid; otherwise they are new on
    /// every start.
    pub tls_dir: Option<PathBuf>,
}

/// A running stand-in.
///
/// It serves from a thread and runtime of its own, so a test that blocks its own runtime
/// (running kubectl synchronously, say) cannot stall the server it is talking to.
pub struct ApiServer {
    url: String,
    address: SocketAddr,
    identity: Option<tls::Identity>,
    store: Arc<Store>,
    faults: Arc<faults::Faults>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Starts serving on `config.listen` (a random loopback port by default).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let store = Store::new(config.data_file.clone()).map_err(anyhow::Error::msg)?;
        let auth = match &config.token_file {
            Some(path) => Authenticator::from_file(path).map_err(anyhow::Error::msg)?,
            None => Authenticator::allow_all(),
        };
        let listen = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let identity = if config.plain_http {
            None
        } else {
            let host = address.ip().to_string();
            let dir = config.tls_dir.clone().or_else(|| {
                config.data_file.as_ref().map(|f| {
                    let mut dir = f.clone().into_os_string();
                    dir.push(".tls");
                    PathBuf::from(dir)
                })
            });
            Some(match dir {
                Some(dir) => {
                    tls::Identity::load_or_generate(&dir, &host).map_err(anyhow::Error::msg)?
                }
                None => tls::Identity::generate(&host)?,
            })
        };
        let tls_config = identity
            .as_ref()
            .map(tls::Identity::server_config)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let url = format!(
            "{}://{address}",
            if identity.is_some() { "https" } else { "http" }
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = store.clone();
        let faults = Arc::new(faults::Faults::default());
        let served_faults = faults.clone();
        let server_address = address.to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-standin")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("kube-standin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = Served {
                        store: served,
                        faults: served_faults,
                        auth,
                        server_address,
                        shutdown: rx,
                    };
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!(error = %e, "the API stand-in could not listen");
                            return;
                        }
                    };
                    match tls_config {
                        None => serve(listener, app).await,
                        Some(config) => match tls::TlsListener::new(listener, config) {
                            Ok(listener) => serve(listener, app).await,
                            Err(e) => {
                                tracing::error!(error = %e, "the API stand-in could not listen")
                            }
                        },
                    }
                });
            })?;
        Ok(Self {
            url,
            address,
            identity,
            store,
            faults,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Requests held back and writes recorded, for fault tests.
    pub fn faults(&self) -> &faults::Faults {
        &self.faults
    }

    /// The base URL (`https://127.0.0.1:PORT`, or `http://` when serving plain HTTP).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store, for tests that inspect it directly.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The address it listens on (to restart a server on the same port).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The CA certificate (PEM) that signed the serving certificate, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.ca_pem.as_str())
    }

    /// A kubeconfig for this server; `token` is sent as the bearer token when given.
    pub fn kubeconfig(&self, token: Option<&str>) -> String {
        let ca = self.ca_pem().map_or_else(String::new, |pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        });
        let user = format!("    token: {}\n", token.unwrap_or("stand-in-admin"));
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\n{ca}contexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: stand-in\n    namespace: default\ncurrent-context: stand-in\nusers:\n- name: stand-in\n  user:\n{user}",
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
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = self.store.flush();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Dropping the sender stops the server thread; it is not joined here, so a drop
        // inside an async context never blocks.
        self.shutdown.take();
    }
}

/// What the server thread serves with.
struct Served {
    store: Arc<Store>,
    faults: Arc<faults::Faults>,
    auth: Authenticator,
    server_address: String,
    shutdown: tokio::sync::oneshot::Receiver<()>,
}

/// Serves until `shutdown` fires (or its sender is dropped), flushing the store every
/// 100 ms and once at the end.
async fn serve<L>(listener: L, served: Served)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let Served {
        store,
        faults,
        auth,
        server_address,
        shutdown,
    } = served;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let app = Arc::new(http::App {
        store: store.clone(),
        auth,
        server_address,
        stopping,
        faults,
    });
    let router = axum::Router::new()
        .fallback(
            |State(app): State<Arc<http::App>>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move { http::handle(app, method, uri, headers, body).await },
        )
        .with_state(app);
    let flusher = store.clone();
    let flush_loop = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = flusher.flush() {
                tracing::warn!(error = %e, "could not persist the store");
            }
        }
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = shutdown.await;
        let _ = stopped_tx.send(());
        // End open watches, so connections can close and clients reconnect.
        let _ = stopping_tx.send(true);
    });
    let cut_off = async {
        let _ = stopped_rx.await;
        // Connections still open a moment after shutdown are cut, as a restarting API
        // server does.
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tokio::select! {
        result = server => if let Err(e) = result { tracing::warn!(error = %e, "the API stand-in stopped") },
        () = flush_loop => {}
        () = cut_off => {}
    }
    let _ = store.flush();
}

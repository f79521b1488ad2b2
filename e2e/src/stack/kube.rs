//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and
//! kube-controller-manager v1.36, as controller-runtime's envtest runs them (no scheduler, no
//! kubelet: Pods are stored but never run).
//!
//! The binaries come from `$KUBEBUILDER_ASSETS` (the envtest convention; `setup-envtest use
//! 1.36 -p path` on a machine with internet, plus `kube-controller-manager` beside them), else
//! from `../shared/kube/install` beside the checkout. The API server authenticates a static
//! admin token (group `system:masters`) and service-account tokens, authorizes with RBAC, and
//! serves a certificate signed by a throwaway CA made here, so kubeconfigs can be written before
//! it starts and stay valid across restarts. The controller manager runs the garbage collector
//! (ownerReferences), namespace deletion and the service-account controllers.
//!
//! Fault tests stop, pause (SIGSTOP), kill and restart the API server or etcd in place: the
//! ports, certificates, keys and data stay, so clients reconnect as they would to a real
//! cluster's restarted control plane.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rcgen::KeyPair;

use super::process::{Service, Workdir, free_port};
use super::tls::Identity;
use super::{START_TIMEOUT, StackError};

const HINT: &str = "the control-plane binaries come from $KUBEBUILDER_ASSETS (etcd, kube-apiserver and \
kube-controller-manager; `setup-envtest use 1.36 -p path` gives the first two on a machine with internet), \
else from ../shared/kube/install beside the checkout, which scripts/test runs";

/// The Kubernetes version the project is tested against.
pub const KUBERNETES_VERSION: &str = "v1.36.2";

/// How to run a control plane. The defaults are a cluster as a user's: watch cache on,
/// compaction every 5 minutes, the controller manager running.
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// `--etcd-compaction-interval` of the API server; a short one makes old resource versions
    /// expire (`410 Gone`) within seconds.
    pub compaction_interval: Duration,
    /// `--watch-cache`: off, watches are served by etcd itself, so a compacted resource version
    /// is `410 Gone` at once instead of after the cache's window.
    pub watch_cache: bool,
    /// Start kube-controller-manager (garbage collector, namespace deletion).
    pub controller_manager: bool,
    /// Write the API server's audit log of every write (`--audit-log-path`), read back with
    /// [`ControlPlane::audited_writes`].
    pub audit_writes: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            compaction_interval: Duration::from_secs(300),
            watch_cache: true,
            controller_manager: true,
            audit_writes: false,
        }
    }
}

/// Which process of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
}

/// A running control plane, stopped when dropped.
pub struct ControlPlane {
    // Declared in stop order: the controller manager and the API server before etcd (an API
    // server whose etcd is gone hangs in its graceful shutdown).
    controller_manager: Option<Service>,
    apiserver: Option<Service>,
    etcd: Option<Service>,
    bin: PathBuf,
    options: ControlPlaneOptions,
    etcd_ports: (u16, u16),
    api_port: u16,
    admin_token: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    // Last, so every process stops before its files go.
    dir: Workdir,
}

/// The directory with `etcd`, `kube-apiserver` and `kube-controller-manager`:
/// `$KUBEBUILDER_ASSETS`, else what `../shared/kube/install` unpacked (found once per process).
pub fn binaries() -> Result<PathBuf, StackError> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = match std::env::var_os("KUBEBUILDER_ASSETS") {
        Some(dir) => PathBuf::from(dir),
        None => INSTALLED
            .get_or_init(install_from_shared)
            .clone()
            .map_err(|why| StackError::Missing {
                program: "kube-apiserver".into(),
                hint: format!("{why}; {HINT}"),
            })?,
    };
    for program in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        if !dir.join(program).is_file() {
            return Err(StackError::Missing {
                program: program.into(),
                hint: format!("not in {}; {HINT}", dir.display()),
            });
        }
    }
    Ok(dir)
}

fn install_from_shared() -> Result<PathBuf, String> {
    let script = super::repo_root().join("../shared/kube/install");
    if !script.is_file() {
        return Err(format!(
            "$KUBEBUILDER_ASSETS is not set and {} does not exist",
            script.display()
        ));
    }
    let out = Command::new(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(PathBuf::from(dir))
}

/// The serving identity and keys a control plane keeps for its whole life.
struct Pki {
    ca_pem: String,
}

impl ControlPlane {
    /// Starts a control plane with the default options; blocks until the API server is ready
    /// (a few seconds).
    pub fn start() -> Result<Self, StackError> {
        Self::start_with(ControlPlaneOptions::default())
    }

    /// Starts a control plane with `options`.
    pub fn start_with(options: ControlPlaneOptions) -> Result<Self, StackError> {
        let bin = binaries()?;
        let dir = Workdir::new("kube")?;
        let pki = write_pki(dir.path())?;
        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        write_file(
            &dir.path().join("tokens.csv"),
            &format!("{admin_token},admin,admin,\"system:masters\"\n"),
        )?;
        let mut plane = Self {
            controller_manager: None,
            apiserver: None,
            etcd: None,
            bin,
            options,
            etcd_ports: (free_port()?, free_port()?),
            api_port: free_port()?,
            admin_token,
            ca_pem: pki.ca_pem,
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
        };
        write_file(&plane.dir.path().join("audit-policy.yaml"), AUDIT_POLICY)?;
        // The ports were free a moment ago; another process may take one first, so retry.
        for component in [Component::Etcd, Component::ApiServer] {
            let mut attempt = 0;
            loop {
                plane.write_kubeconfig(&plane.kubeconfig.clone(), &User::Admin)?;
                match plane.start_component(component) {
                    Ok(()) => break,
                    Err(e @ StackError::Exited { .. })
                        if attempt < 3 && e.to_string().contains("address already in use") =>
                    {
                        attempt += 1;
                        match component {
                            Component::Etcd => plane.etcd_ports = (free_port()?, free_port()?),
                            _ => plane.api_port = free_port()?,
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if plane.options.controller_manager {
            plane.start_component(Component::ControllerManager)?;
        }
        Ok(plane)
    }

    /// The API server's URL (`https://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The API server's address.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// The cluster administrator's kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the API server's certificate, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory holding the logs, keys and etcd's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a kubeconfig for `user` against this API server to `path`.
    pub fn write_kubeconfig(&self, path: &Path, user: &User) -> Result<(), StackError> {
        let ca = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            self.ca_pem.as_bytes(),
        );
        let auth = match user {
            User::Admin => format!("    token: {}\n", self.admin_token),
            User::Token(token) => format!("    token: {token}\n"),
            User::Impersonate { name, groups } => {
                let mut text = format!(
                    "    token: {}\n    as: {}\n",
                    self.admin_token,
                    yaml_string(name)
                );
                if !groups.is_empty() {
                    text.push_str("    as-groups:\n");
                    for group in groups {
                        text.push_str(&format!("    - {}\n", yaml_string(group)));
                    }
                }
                text
            }
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: e2e\n  user:\n{auth}contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\n    namespace: default\ncurrent-context: e2e\n",
            url = self.url(),
        );
        write_file(path, &text)
    }

    /// The log of `component`.
    pub fn log_file(&self, component: Component) -> PathBuf {
        self.dir.path().join(format!("{}.log", component.name()))
    }

    /// Stops `component` (SIGTERM, then SIGKILL after `grace`); its data stays.
    pub fn stop_component(&mut self, component: Component, grace: Duration) {
        if let Some(mut service) = self.slot(component).take() {
            service.stop(grace);
        }
    }

    /// Kills `component` at once (SIGKILL), as a crashed process; its data stays.
    pub fn kill_component(&mut self, component: Component) {
        if let Some(mut service) = self.slot(component).take() {
            service.kill();
        }
    }

    /// Freezes `component` (SIGSTOP): its sockets stay open and nothing answers, as a hung
    /// process or a partitioned node. [`Self::resume_component`] continues it.
    pub fn pause_component(&mut self, component: Component) {
        self.signal(component, "-STOP");
    }

    /// Continues a component that [`Self::pause_component`] froze (SIGCONT).
    pub fn resume_component(&mut self, component: Component) {
        self.signal(component, "-CONT");
    }

    /// (Re)starts `component` on its old ports with its old data; blocks until it is ready.
    pub fn start_component(&mut self, component: Component) -> Result<(), StackError> {
        if self.slot(component).is_some() {
            return Ok(());
        }
        let command = self.command(component);
        let mut service = Service::start(component.name(), &self.dir, command)?;
        match component {
            Component::Etcd => {
                let addr = SocketAddr::from(([127, 0, 0, 1], self.etcd_ports.0));
                service.wait_for_port(addr, START_TIMEOUT)?;
            }
            Component::ApiServer => {
                let ready = self.readiness_check();
                service.wait_until(START_TIMEOUT, ready)?;
            }
            // It needs no readiness: the garbage collector catches up from the API.
            Component::ControllerManager => {}
        }
        *self.slot(component) = Some(service);
        Ok(())
    }

    /// `GET path` on the API server as the administrator, blocking: the status code and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        https_get(self.api_port, &self.ca_pem, &self.admin_token, path)
    }

    /// Every write the API server answered, in order, from its audit log (empty unless the
    /// options asked for [`ControlPlaneOptions::audit_writes`]).
    pub fn audited_writes(&self) -> Vec<AuditedWrite> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["stage"] == "ResponseComplete")
            .filter_map(|event| {
                Some(AuditedWrite {
                    user: event["user"]["username"].as_str()?.to_owned(),
                    verb: event["verb"].as_str()?.to_owned(),
                    uri: event["requestURI"].as_str()?.to_owned(),
                    code: u16::try_from(event["responseStatus"]["code"].as_u64()?).ok()?,
                    at: event["stageTimestamp"].as_str()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The API server's `apiserver_request_total` counters, summed by (verb, resource with its
    /// subresource), e.g. `("PATCH", "tenantmcpconfigs/status")`: what a benchmark subtracts
    /// before from after to count the requests a run cost.
    pub fn request_counts(&self) -> Result<BTreeMap<(String, String), u64>, String> {
        let (status, text) = self.get("/metrics")?;
        if status != 200 {
            return Err(format!("GET /metrics: HTTP {status}"));
        }
        Ok(parse_request_counts(&text))
    }

    /// The process id of `component`, while it runs (to read its CPU time or memory).
    pub fn pid(&self, component: Component) -> Option<u32> {
        match component {
            Component::Etcd => self.etcd.as_ref(),
            Component::ApiServer => self.apiserver.as_ref(),
            Component::ControllerManager => self.controller_manager.as_ref(),
        }
        .and_then(Service::pid)
    }

    /// Whether `component` is running.
    pub fn is_running(&mut self, component: Component) -> bool {
        self.slot(component)
            .as_mut()
            .is_some_and(Service::is_running)
    }

    fn readiness_check(&self) -> impl Fn() -> bool + use<> {
        let (port, ca, token) = (self.api_port, self.ca_pem.clone(), self.admin_token.clone());
        move || https_get(port, &ca, &token, "/readyz").is_ok_and(|(status, _)| status == 200)
    }

    fn slot(&mut self, component: Component) -> &mut Option<Service> {
        match component {
            Component::Etcd => &mut self.etcd,
            Component::ApiServer => &mut self.apiserver,
            Component::ControllerManager => &mut self.controller_manager,
        }
    }

    fn signal(&mut self, component: Component, signal: &str) {
        if let Some(pid) = self.slot(component).as_ref().and_then(Service::pid) {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    fn command(&self, component: Component) -> Command {
        let dir = self.dir.path();
        let path = |name: &str| dir.join(name).display().to_string();
        let mut command = Command::new(self.bin.join(component.name()));
        match component {
            Component::Etcd => {
                let (client, peer) = self.etcd_ports;
                command
                    .arg(format!("--data-dir={}", path("etcd")))
                    .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                    .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                    .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                    .arg(format!(
                        "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                    ))
                    .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
                    // A throwaway cluster: speed over durability.
                    .args(["--unsafe-no-fsync", "--log-level=warn"])
                    .arg("--quota-backend-bytes=8589934592");
            }
            Component::ApiServer => {
                command
                    .arg(format!(
                        "--etcd-servers=http://127.0.0.1:{}",
                        self.etcd_ports.0
                    ))
                    .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                    .arg(format!("--secure-port={}", self.api_port))
                    // Loopback addresses are not valid endpoints of the `kubernetes` Service.
                    .arg("--endpoint-reconciler-type=none")
                    .arg(format!("--cert-dir={}", path("pki")))
                    .arg(format!("--tls-cert-file={}", path("pki/serving.crt")))
                    .arg(format!(
                        "--tls-private-key-file={}",
                        path("pki/serving.key")
                    ))
                    .arg(format!("--client-ca-file={}", path("pki/ca.crt")))
                    .arg(format!("--token-auth-file={}", path("tokens.csv")))
                    .arg("--authorization-mode=RBAC")
                    .arg("--service-account-issuer=https://kubernetes.default.svc")
                    .arg(format!("--service-account-key-file={}", path("pki/sa.pub")))
                    .arg(format!(
                        "--service-account-signing-key-file={}",
                        path("pki/sa.key")
                    ))
                    .arg("--service-cluster-ip-range=10.96.0.0/16")
                    // Webhooks behind a Service are called at an endpoint's address (there
                    // is no kube-proxy here to route a cluster IP).
                    .arg("--enable-aggregator-routing=true")
                    .arg(format!(
                        "--etcd-compaction-interval={}s",
                        self.options.compaction_interval.as_secs().max(1)
                    ))
                    .arg(format!("--watch-cache={}", self.options.watch_cache))
                    .arg("--v=1");
                if self.options.audit_writes {
                    command
                        .arg(format!("--audit-policy-file={}", path("audit-policy.yaml")))
                        .arg(format!("--audit-log-path={}", path("audit.log")))
                        // Each event written before the response: a test reads it right after.
                        .arg("--audit-log-mode=blocking");
                }
            }
            Component::ControllerManager => {
                let kubeconfig = self.kubeconfig.display().to_string();
                command
                    .arg(format!("--kubeconfig={kubeconfig}"))
                    .arg(format!("--authentication-kubeconfig={kubeconfig}"))
                    .arg(format!("--authorization-kubeconfig={kubeconfig}"))
                    .args(["--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0"])
                    .arg(format!(
                        "--service-account-private-key-file={}",
                        path("pki/sa.key")
                    ))
                    .arg(format!("--root-ca-file={}", path("pki/ca.crt")))
                    .arg("--use-service-account-credentials=true")
                    // client-go's default 20 requests/s per controller would take minutes to
                    // set up (and collect) the thousands of namespaces a benchmark makes.
                    .args(["--kube-api-qps=200", "--kube-api-burst=400"])
                    // No nodes and no cloud: the controllers for them would only log errors.
                    .arg("--controllers=*,-nodeipam,-nodelifecycle,-service,-route,-cloud-node-lifecycle")
                    .arg("--v=1");
            }
        }
        command
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Nothing of a test's cluster is kept: no graceful shutdown to wait for.
        for component in [
            Component::ControllerManager,
            Component::ApiServer,
            Component::Etcd,
        ] {
            self.kill_component(component);
        }
    }
}

impl Component {
    /// The program's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::ApiServer => "kube-apiserver",
            Self::ControllerManager => "kube-controller-manager",
        }
    }
}

/// The audit policy of [`ControlPlaneOptions::audit_writes`]: who wrote what, with which
/// answer; reads are not recorded.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

/// One write from the API server's audit log.
#[derive(Clone, Debug)]
pub struct AuditedWrite {
    /// Who sent it.
    pub user: String,
    /// `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// The request's path and query.
    pub uri: String,
    /// The HTTP status it was answered with.
    pub code: u16,
    /// When the answer was sent.
    pub at: jiff::Timestamp,
}

/// Who a kubeconfig authenticates as.
#[derive(Clone, Debug)]
pub enum User {
    /// The cluster administrator (group `system:masters`).
    Admin,
    /// The holder of a bearer token, e.g. a ServiceAccount's from the TokenRequest API.
    Token(String),
    /// A user the administrator impersonates (`kubectl --as NAME --as-group GROUP`): the
    /// authorizer decides as for that user, as it would for a person signed in through OIDC.
    Impersonate {
        /// The user name.
        name: String,
        /// Its groups.
        groups: Vec<String>,
    },
}

impl User {
    /// The user `name` in `groups`.
    pub fn person(name: &str, groups: &[&str]) -> Self {
        Self::Impersonate {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn write_file(path: &Path, text: &str) -> Result<(), StackError> {
    std::fs::write(path, text).map_err(|e| StackError::Io {
        what: format!("writing {}", path.display()),
        source: e,
    })
}

/// A CA, the API server's serving certificate (for loopback and the in-cluster names) and the
/// service-account signing key, written into `<dir>/pki`.
fn write_pki(dir: &Path) -> Result<Pki, StackError> {
    let setup = |e: rcgen::Error| StackError::Setup {
        service: "kube-apiserver".into(),
        step: "making its certificates".into(),
        output: e.to_string(),
    };
    let identity = Identity::generate(
        "kube-apiserver",
        &["kubernetes", "kubernetes.default", "kubernetes.default.svc"],
    )
    .map_err(setup)?;
    // ECDSA P-256 (ES256): kube-apiserver signs and verifies service-account tokens with it.
    let sa = KeyPair::generate().map_err(setup)?;
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| StackError::Io {
        what: format!("creating {}", pki.display()),
        source: e,
    })?;
    write_file(&pki.join("ca.crt"), &identity.ca_pem)?;
    write_file(&pki.join("serving.crt"), identity.cert_pem())?;
    write_file(&pki.join("serving.key"), identity.key_pem())?;
    write_file(&pki.join("sa.key"), &sa.serialize_pem())?;
    write_file(&pki.join("sa.pub"), &sa.public_key_pem())?;
    Ok(Pki {
        ca_pem: identity.ca_pem,
    })
}

/// A blocking `GET path` over TLS to 127.0.0.1:`port`, trusting `ca_pem`, with a bearer
/// token: the status code and body. Enough HTTP/1.1 for `/readyz` and `/metrics`.
fn https_get(port: u16, ca_pem: &str, token: &str, path: &str) -> Result<(u16, String), String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let socket = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, socket);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // The server closed without close_notify after a complete response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() > deadline {
            return Err("response too slow".into());
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// `apiserver_request_total` in Prometheus text, summed by (verb, resource[/subresource]).
fn parse_request_counts(text: &str) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| {
                    pair.trim_start_matches(',')
                        .strip_prefix(&format!("{name}=\""))
                })
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        *counts.entry((label("verb"), resource)).or_insert(0) += value as u64;
    }
    counts
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_summed_by_verb_and_resource() {
        let text = "# HELP apiserver_request_total x\n\
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 3\n\
apiserver_request_total{code=\"404\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 2\n\
apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"tenantmcp.dev\",resource=\"tenantmcpconfigs\",scope=\"namespace\",subresource=\"status\",verb=\"APPLY\",version=\"v1alpha1\"} 7\n";
        let counts = parse_request_counts(text);
        assert_eq!(counts[&("LIST".into(), "secrets".into())], 5);
        assert_eq!(
            counts[&("APPLY".into(), "tenantmcpconfigs/status".into())],
            7
        );
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(dechunk(""), "");
    }
}

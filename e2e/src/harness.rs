//! The test harness: a cluster to run scenarios against — a real control plane of its own
//! (etcd, kube-apiserver and kube-controller-manager, [`ControlPlane`]), or the cluster in
//! `E2E_KUBECONFIG` — plus kubectl, identities and per-test namespaces, so every scenario runs
//! unchanged on both.
//!
//! Each test gets its own control plane (a few seconds to start): cluster-scoped objects (the
//! CRDs, `GlobalMcpConfig default`) and each test's controller watching every namespace never
//! meet another test's.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::stack::kube::{ControlPlane, ControlPlaneOptions, User};

/// Where the scenarios run.
pub struct Cluster {
    client: kube::Client,
    kubeconfig: PathBuf,
    // Before the directory, so the processes stop before their files go.
    plane: Option<ControlPlane>,
    dir: tempfile::TempDir,
}

/// kubectl: `$KUBECTL`, else the project's pinned copy in `.tools/bin`, else `kubectl` on PATH.
pub fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
    if pinned.exists() {
        pinned
    } else {
        PathBuf::from("kubectl")
    }
}

/// helm: `$HELM`, else the project's pinned copy in `.tools/bin` (`scripts/test` installs it),
/// else `helm` on PATH.
pub fn helm_path() -> Result<PathBuf, crate::stack::StackError> {
    crate::stack::tool(
        "helm",
        "HELM",
        "run scripts/test, which installs helm into .tools/bin",
    )
}

/// A kube-rs client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

impl Cluster {
    /// The cluster in `E2E_KUBECONFIG`, or a control plane of this test's own.
    pub async fn start() -> anyhow::Result<Self> {
        match std::env::var_os("E2E_KUBECONFIG") {
            Some(path) => Self::from_kubeconfig(PathBuf::from(path)).await,
            None => Self::local(ControlPlaneOptions::default()).await,
        }
    }

    /// The cluster whose administrator's kubeconfig is at `kubeconfig` (a running one).
    pub async fn from_kubeconfig(kubeconfig: PathBuf) -> anyhow::Result<Self> {
        let client = client_for(&kubeconfig).await?;
        Ok(Self {
            client,
            kubeconfig,
            plane: None,
            dir: tempfile::tempdir()?,
        })
    }

    /// A control plane of this test's own with `options`, whatever `E2E_KUBECONFIG` says: for
    /// scenarios that stop, pause or restart the API server or etcd.
    pub async fn local(options: ControlPlaneOptions) -> anyhow::Result<Self> {
        crate::stack::install_crypto_provider();
        let plane = tokio::task::spawn_blocking(move || ControlPlane::start_with(options))
            .await
            .context("starting the control plane")??;
        let kubeconfig = plane.kubeconfig().to_path_buf();
        let client = client_for(&kubeconfig).await?;
        Ok(Self {
            client,
            kubeconfig,
            plane: Some(plane),
            dir: tempfile::tempdir()?,
        })
    }

    /// The control plane, when this test started one (not under `E2E_KUBECONFIG`).
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.plane.as_ref()
    }

    /// The control plane, to stop, pause or restart its parts.
    pub fn control_plane_mut(&mut self) -> Option<&mut ControlPlane> {
        self.plane.as_mut()
    }

    /// A kubeconfig for `user` against this cluster (written once per user). Under
    /// `E2E_KUBECONFIG`, impersonation goes through that kubeconfig's own user.
    pub fn kubeconfig_for(&self, user: &User) -> anyhow::Result<PathBuf> {
        let name = match user {
            User::Admin => return Ok(self.kubeconfig.clone()),
            User::Token(token) => format!("token-{}", short_hash(token)),
            User::Impersonate { name, groups } => {
                format!("as-{}", short_hash(&format!("{name}/{}", groups.join(","))))
            }
        };
        let path = self.dir.path().join(format!("kubeconfig-{name}"));
        if path.exists() {
            return Ok(path);
        }
        match &self.plane {
            Some(plane) => plane.write_kubeconfig(&path, user)?,
            None => write_derived_kubeconfig(&self.kubeconfig, &path, user)?,
        }
        Ok(path)
    }

    /// A kube-rs client as `user`.
    pub async fn client_as(&self, user: &User) -> anyhow::Result<kube::Client> {
        client_for(&self.kubeconfig_for(user)?).await
    }

    /// A bearer token for ServiceAccount `namespace/name`, from the TokenRequest API (valid for
    /// an hour): what a pod running under that account would present.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = Api::<ServiceAccount>::namespaced(self.client(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
        issued
            .status
            .map(|s| s.token)
            .with_context(|| format!("no token in the TokenRequest of {namespace}/{name}"))
    }

    /// A kube-rs client for the cluster.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs kubectl with this cluster's kubeconfig and `args`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        std::process::Command::new(kubectl_path())
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("kubectl could not run ({e}); scripts/test installs it into .tools/bin")
            })
    }

    /// Runs kubectl and returns stdout, panicking with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `stdin` as input (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = std::process::Command::new(kubectl_path())
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("kubectl could not run ({e})"));
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("kubectl did not finish: {e}"))
    }

    /// Creates namespace `name`, bound to `tenant` (label `tenantmcp.dev/tenant`) when given.
    pub async fn create_namespace(&self, name: &str, tenant: Option<&str>) -> anyhow::Result<()> {
        create_namespace(&self.client(), name, tenant).await
    }

    /// Creates a namespace with a random suffix for one scenario.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!(
            "e2e-{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let api: Api<Namespace> = Api::all(self.client());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        api.create(&PostParams::default(), &ns).await?;
        Ok(name)
    }

    /// Deletes a scenario's namespace (and so everything in it).
    pub async fn delete_namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client());
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}

fn short_hash(text: &str) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A copy of the kubeconfig at `from` whose user is `user`: a token replaces its credentials;
/// impersonation keeps them and adds `as` / `as-groups`.
fn write_derived_kubeconfig(from: &Path, to: &Path, user: &User) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let current = config["current-context"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let user_name = config["contexts"]
        .as_sequence()
        .and_then(|c| {
            c.iter()
                .find(|c| c["name"].as_str() == Some(current.as_str()))
        })
        .and_then(|c| c["context"]["user"].as_str())
        .unwrap_or_default()
        .to_owned();
    if let Some(users) = config["users"].as_sequence_mut() {
        for entry in users
            .iter_mut()
            .filter(|u| u["name"].as_str() == Some(user_name.as_str()))
        {
            match user {
                User::Admin => {}
                User::Token(token) => {
                    entry["user"] = serde_yaml_ng::to_value(serde_json::json!({ "token": token }))?;
                }
                User::Impersonate { name, groups } => {
                    entry["user"]["as"] = name.as_str().into();
                    entry["user"]["as-groups"] = serde_yaml_ng::to_value(groups)?;
                }
            }
        }
    }
    std::fs::write(to, serde_yaml_ng::to_string(&config)?)
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

impl Cluster {
    /// Installs (server-side applies) tenant-mcp's CRDs and waits until they are served.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        install_crds(&self.client()).await
    }
}

/// Installs (server-side applies) tenant-mcp's CRDs through `client` and waits until they
/// are established.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::{Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        tenant_mcp::api::TenantMcpConfig::crd(),
        tenant_mcp::api::GlobalMcpConfig::crd(),
    ] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("tenant-mcp-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying the CRD {name}"))?;
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(std::time::Duration::from_secs(30), established)
            .await
            .with_context(|| format!("waiting for the CRD {name} to be established"))??;
    }
    Ok(())
}

/// Creates namespace `name` through `client`, bound to `tenant` (label
/// `tenantmcp.dev/tenant`) when given.
pub async fn create_namespace(
    client: &kube::Client,
    name: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let mut namespace = serde_json::json!({"metadata": {"name": name}});
    if let Some(tenant) = tenant {
        namespace["metadata"]["labels"] =
            serde_json::json!({ tenant_mcp::api::TENANT_LABEL: tenant });
    }
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(namespace)?)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Creates the GlobalMcpConfig `default` with `spec` through `client`.
pub async fn create_global_config(
    client: &kube::Client,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let global = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": tenant_mcp::api::GLOBAL_CONFIG_NAME},
        "spec": spec
    });
    Api::<tenant_mcp::api::GlobalMcpConfig>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(global)?)
        .await
        .context("creating the GlobalMcpConfig")?;
    Ok(())
}

/// `helm template` of the project's chart as release `t` in namespace `tenant-mcp-system`, with
/// `--set` values (and the CRDs with `include_crds`): the YAML, or helm's error. helm is the
/// project's pinned copy (`scripts/test` installs it) or `$HELM`.
pub fn helm_template(sets: &[&str], include_crds: bool) -> Result<String, String> {
    let helm = helm_path().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(helm);
    command
        .args(["template", "t", "--namespace", "tenant-mcp-system"])
        .arg(crate::stack::repo_root().join("charts/tenant-mcp"));
    if include_crds {
        command.arg("--include-crds");
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().map_err(|e| format!("running helm: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// Polls `check` every 50 ms until it gives a value; panics naming `what` after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

//! A real control plane with the chart installed by `helm install`, and every identity the
//! threat model names: the controller's, the management server's and two application pods'
//! ServiceAccounts (each with a token from the TokenRequest API, as a pod gets), and three
//! people — acme's tenant admin alice, evil's tenant admin eve and the uber admin carol —
//! signed in as the cluster's authenticator would report them (impersonated by the
//! administrator). The API server's RBAC authorizer decides what each may do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Cluster, client_for, kubectl_path};
use crate::stack::kube::User;
use crate::stack::repo_root;

/// The release namespace.
pub const NS: &str = "tenant-mcp-system";
/// The release name.
pub const RELEASE: &str = "t";
/// Where the global servers' credentials live (the chart's default).
pub const CREDENTIALS_NS: &str = "tenant-mcp-credentials";
/// The controller's service account.
pub const CONTROLLER: &str = "system:serviceaccount:tenant-mcp-system:t-tenant-mcp-controller";
/// The management server's service account.
pub const MCP: &str = "system:serviceaccount:tenant-mcp-system:t-tenant-mcp-mcp-server";
/// An application account whose client watches every namespace.
pub const APP: &str = "system:serviceaccount:rag:rag-api";
/// An application account whose client watches tenant-acme only.
pub const WORKER: &str = "system:serviceaccount:rag:acme-worker";

/// Who acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The cluster administrator (`system:masters`).
    Admin,
    /// The controller's ServiceAccount.
    Controller,
    /// The management MCP server's ServiceAccount.
    McpServer,
    /// The admission webhook's ServiceAccount.
    Webhook,
    /// An application pod's ServiceAccount whose client watches every namespace.
    App,
    /// An application pod's ServiceAccount whose client watches tenant-acme only.
    Worker,
    /// acme's tenant admin (group `acme-admins`).
    Alice,
    /// The uber admin (group `platform-admins`).
    Carol,
    /// evil's tenant admin (group `evil-admins`).
    Eve,
}

impl Identity {
    /// Every identity.
    pub const ALL: [Self; 9] = [
        Self::Admin,
        Self::Controller,
        Self::McpServer,
        Self::Webhook,
        Self::App,
        Self::Worker,
        Self::Alice,
        Self::Carol,
        Self::Eve,
    ];

    /// The ServiceAccount `(namespace, name)` this identity is, if it is one.
    pub fn service_account(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Controller => Some((NS, "t-tenant-mcp-controller")),
            Self::McpServer => Some((NS, "t-tenant-mcp-mcp-server")),
            Self::Webhook => Some((NS, "t-tenant-mcp-webhook")),
            Self::App => Some(("rag", "rag-api")),
            Self::Worker => Some(("rag", "acme-worker")),
            Self::Admin | Self::Alice | Self::Carol | Self::Eve => None,
        }
    }

    fn person(self) -> Option<User> {
        match self {
            Self::Alice => Some(User::person("alice", &["acme-admins"])),
            Self::Carol => Some(User::person("carol", &["platform-admins"])),
            Self::Eve => Some(User::person("eve", &["evil-admins"])),
            _ => None,
        }
    }
}

/// The control plane with the chart installed, and a kubeconfig per identity.
pub struct RbacWorld {
    /// The cluster.
    pub cluster: Cluster,
    /// Kubeconfigs and rendered manifests.
    pub dir: tempfile::TempDir,
    kubeconfigs: HashMap<Identity, PathBuf>,
    /// The chart's admission webhook run as its pod (when the chart installs it), so every
    /// write meets it as on a cluster.
    pub webhook: Option<crate::workload::LocalPod>,
}

impl RbacWorld {
    /// The kubeconfig of `who`.
    pub fn kubeconfig(&self, who: Identity) -> &Path {
        self.kubeconfigs
            .get(&who)
            .map_or_else(|| self.cluster.kubeconfig(), PathBuf::as_path)
    }

    /// kubectl as `who`.
    pub fn kubectl(&self, who: Identity, args: &[&str]) -> Output {
        Command::new(kubectl_path())
            .env("KUBECONFIG", self.kubeconfig(who))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl could not run: {e}"))
    }

    /// `kubectl apply --server-side -f path` as the cluster admin; panics when it fails.
    pub fn apply(&self, path: &Path) {
        let out = self.kubectl(
            Identity::Admin,
            &["apply", "--server-side", "-f", &path.display().to_string()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `yaml` to a file and applies it as `who`; kubectl's output.
    pub fn apply_as(&self, who: Identity, yaml: &str) -> Output {
        let path = self
            .dir
            .path()
            .join(format!("apply-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self.kubectl(who, &["apply", "-f", &path.display().to_string()])
    }

    /// `kubectl auth can-i` as `who`: the API server's authorizer answers.
    pub fn can(&self, who: Identity, args: &[&str]) -> bool {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = self.kubectl(who, &all);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "can-i {args:?} as {who:?}: {other:?} {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// A kube-rs client as `who`.
    pub async fn client(&self, who: Identity) -> kube::Client {
        client_for(self.kubeconfig(who))
            .await
            .unwrap_or_else(|e| panic!("a client for {who:?}: {e}"))
    }
}

/// The namespaces of the world made before the chart: the release's, the application's and
/// three tenants' (acme, globex, evil), each bound to its tenant. The chart makes the global
/// credentials' namespace itself (helm refuses to adopt one it did not make).
const NAMESPACES: [(&str, Option<&str>); 5] = [
    (NS, None),
    ("rag", None),
    ("tenant-acme", Some("acme")),
    ("tenant-globex", Some("globex")),
    ("tenant-evil", Some("evil")),
];

/// The chart's values for the world, plus `extra`.
pub fn chart_values(extra: &[&str]) -> Vec<String> {
    let mut sets: Vec<String> = [
        "rbac.tenantAdmins[0].namespace=tenant-acme",
        "rbac.tenantAdmins[0].subjects[0].kind=Group",
        "rbac.tenantAdmins[0].subjects[0].name=acme-admins",
        "rbac.tenantAdmins[1].namespace=tenant-evil",
        "rbac.tenantAdmins[1].subjects[0].kind=Group",
        "rbac.tenantAdmins[1].subjects[0].name=evil-admins",
        "rbac.uberAdmins[0].kind=Group",
        "rbac.uberAdmins[0].name=platform-admins",
        "rbac.clientServiceAccounts[0].namespace=rag",
        "rbac.clientServiceAccounts[0].name=rag-api",
        "rbac.clientServiceAccounts[1].namespace=rag",
        "rbac.clientServiceAccounts[1].name=acme-worker",
        "rbac.clientServiceAccounts[1].watchNamespace=tenant-acme",
        "globalConfig.endpointPolicy.allowLoopback=true",
        "globalConfig.servers.postgres.host=global-db.example.com",
        "globalConfig.servers.postgres.database=rag",
        "globalConfig.servers.postgres.credentialsSecretRef.name=global-postgres",
        "database.enabled=true",
        "database.urlSecret.name=controller-database",
        // The migration Job is a pre-install hook; with no kubelet it would never finish, so
        // the tests that need the schema run `tenant-mcp migrate up` as the Job would.
        "database.migration.enabled=false",
        // Made beforehand, as a GitOps pipeline must (the world creates them).
        "encryptionKeys.existingSecret=t-tenant-mcp-keys",
        "mcpServer.auth.jwtSecret.existingSecret=t-tenant-mcp-mcp-jwt",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    sets.extend(extra.iter().map(|s| (*s).to_owned()));
    sets
}

/// `helm` with `args` against the cluster at `kubeconfig`: its output, or helm's error.
pub fn helm(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let helm = crate::harness::helm_path().map_err(|e| e.to_string())?;
    let out = Command::new(helm)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .map_err(|e| format!("running helm: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "helm {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm install` (or `upgrade --install`) of the project's chart as release [`RELEASE`] in
/// [`NS`] with `--set` values; helm's output.
pub fn helm_install(kubeconfig: &Path, sets: &[String]) -> Result<String, String> {
    helm_release(kubeconfig, sets, &[])
}

/// [`helm_install`] with further helm flags (`--wait`, `--timeout 300s`).
pub fn helm_release(kubeconfig: &Path, sets: &[String], flags: &[&str]) -> Result<String, String> {
    let chart = repo_root().join("charts/tenant-mcp").display().to_string();
    let mut args = vec![
        "upgrade",
        "--install",
        RELEASE,
        chart.as_str(),
        "--namespace",
        NS,
    ];
    args.extend_from_slice(flags);
    for set in sets {
        args.extend(["--set", set.as_str()]);
    }
    helm(kubeconfig, &args)
}

/// Starts the world: a control plane, the namespaces, the key material, the application pods'
/// ServiceAccounts, the chart installed with [`chart_values`] (and `extra`), and a kubeconfig
/// per [`Identity`].
pub async fn start(extra: &[&str]) -> RbacWorld {
    crate::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    let cluster = Cluster::start()
        .await
        .unwrap_or_else(|e| panic!("starting the control plane: {e}"));
    let mut world = RbacWorld {
        cluster,
        dir,
        kubeconfigs: HashMap::new(),
        webhook: None,
    };

    let namespaces = world.dir.path().join("namespaces.yaml");
    let mut docs: Vec<String> = NAMESPACES
        .iter()
        .map(|(name, tenant)| {
            let labels = tenant.map_or_else(String::new, |t| {
                format!(", labels: {{tenantmcp.dev/tenant: {t}}}")
            });
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}{labels}}}\n")
        })
        .collect();
    // The application pods' accounts belong to the application, not the chart.
    for (_, name) in [Identity::App, Identity::Worker]
        .iter()
        .filter_map(|i| i.service_account())
    {
        docs.push(format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: rag}}\n"
        ));
    }
    std::fs::write(&namespaces, docs.join("---\n"))
        .unwrap_or_else(|e| panic!("writing namespaces: {e}"));
    world.apply(&namespaces);

    // The control plane's key material, created once outside the chart.
    let key_material = world.dir.path().join("key-material.yaml");
    std::fs::write(
        &key_material,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: t-tenant-mcp-keys, namespace: tenant-mcp-system}}\nstringData: {{k1: {k1}, active: k1}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: t-tenant-mcp-mcp-jwt, namespace: tenant-mcp-system}}\nstringData: {{jwt-secret: {jwt}}}\n",
            k1 = tenant_mcp::crypto::generate_key(),
            jwt = tenant_mcp::crypto::generate_key(),
        ),
    )
    .unwrap_or_else(|e| panic!("writing the key material: {e}"));
    world.apply(&key_material);
    helm_install(world.cluster.kubeconfig(), &chart_values(extra))
        .unwrap_or_else(|e| panic!("{e}"));
    let webhook = format!("{RELEASE}-tenant-mcp-webhook");
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(world.cluster.client(), NS);
    if deployments
        .get_opt(&webhook)
        .await
        .unwrap_or_else(|e| panic!("reading Deployment {webhook}: {e}"))
        .is_some()
    {
        world.webhook = Some(
            crate::workload::start_webhook(&world.cluster, NS, &webhook)
                .await
                .unwrap_or_else(|e| panic!("{e:#}")),
        );
    }

    for who in Identity::ALL {
        let user = if let Some((namespace, name)) = who.service_account() {
            User::Token(
                world
                    .cluster
                    .service_account_token(namespace, name)
                    .await
                    .unwrap_or_else(|e| panic!("{e:#}")),
            )
        } else {
            who.person().unwrap_or(User::Admin)
        };
        let path = world
            .cluster
            .kubeconfig_for(&user)
            .unwrap_or_else(|e| panic!("a kubeconfig for {who:?}: {e:#}"));
        world.kubeconfigs.insert(who, path);
    }
    world.wait_for_admission_policies().await;
    world
}

impl RbacWorld {
    /// Waits until the API server enforces each ValidatingAdmissionPolicy the chart installed
    /// (it loads new policies asynchronously, within about a second): a server-side dry run of
    /// a write each policy refuses, as the identity it binds, until it is refused.
    async fn wait_for_admission_policies(&self) {
        use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
        use k8s_openapi::api::core::v1::Secret;
        use k8s_openapi::api::rbac::v1::Role;
        use kube::api::{Api, PostParams};
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(self.cluster.client());
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let secret = |extra: serde_json::Value| {
            let mut body = serde_json::json!({"metadata": {"name": "policy-probe"}});
            json_patch::merge(&mut body, &extra);
            serde_json::from_value::<Secret>(body).unwrap_or_else(|e| panic!("{e}"))
        };
        let probes: Vec<(&str, Identity, &str)> = vec![
            ("no-token-secrets", Identity::Alice, "tenant-acme"),
            ("own-secret-writes", Identity::Controller, "tenant-acme"),
            ("controller-rbac-writes", Identity::Controller, NS),
        ];
        for (suffix, who, ns) in probes {
            let name = format!("{RELEASE}-tenant-mcp-{suffix}");
            let installed = policies
                .get_opt(&name)
                .await
                .unwrap_or_else(|e| panic!("reading {name}: {e}"))
                .is_some();
            if !installed {
                continue;
            }
            let client = self.client(who).await;
            crate::harness::wait_for(
                &format!("{name} to be enforced"),
                std::time::Duration::from_secs(30),
                async || {
                    let refused = match suffix {
                        "controller-rbac-writes" => Api::<Role>::namespaced(client.clone(), ns)
                            .create(
                                &dry,
                                &Role {
                                    metadata: kube::api::ObjectMeta {
                                        name: Some("policy-probe".into()),
                                        ..Default::default()
                                    },
                                    rules: None,
                                },
                            )
                            .await
                            .err(),
                        // A token Secret (no-token-secrets), or a plain one that is not a
                        // snapshot (own-secret-writes): each refused by its policy alone.
                        _ => Api::<Secret>::namespaced(client.clone(), ns)
                            .create(
                                &dry,
                                &secret(if suffix == "no-token-secrets" {
                                    serde_json::json!({
                                        "type": "kubernetes.io/service-account-token",
                                        "metadata": {"annotations": {
                                            "kubernetes.io/service-account.name": "default"}}
                                    })
                                } else {
                                    serde_json::json!({})
                                }),
                            )
                            .await
                            .err(),
                    };
                    refused
                        .filter(|e| e.to_string().contains(&name))
                        .map(|_| ())
                },
            )
            .await;
        }
    }
}

//! A stand-in that enforces RBAC, with the chart's rendered manifests applied and a token per
//! identity: the controller's, the management server's and two application pods' service
//! accounts, two tenant admins (acme's alice and evil's eve) and an uber admin (carol). Tests
//! act as each identity with kubectl or kube-rs and see what RBAC lets through.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::apiserver::Config;
use crate::harness::{Cluster, client_for, helm_template, kubectl_path};
use crate::stack::repo_root;

/// The release namespace.
pub const NS: &str = "tenant-mcp-system";
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

/// The stand-in with the chart applied, and a scratch directory for kubeconfigs.
pub struct RbacWorld {
    /// The stand-in.
    pub cluster: Cluster,
    /// Kubeconfigs and rendered manifests.
    pub dir: tempfile::TempDir,
}

impl RbacWorld {
    /// A kubeconfig for the holder of `token`.
    pub fn kubeconfig(&self, token: &str) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{token}"));
        if !path.exists()
            && let Some(server) = self.cluster.stand_in_server()
            && let Err(e) = server.write_kubeconfig(&path, Some(token))
        {
            panic!("writing {}: {e}", path.display());
        }
        path
    }

    /// kubectl as the holder of `token`.
    pub fn kubectl(&self, token: &str, args: &[&str]) -> Output {
        Command::new(kubectl_path())
            .env("KUBECONFIG", self.kubeconfig(token))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl could not run: {e}"))
    }

    /// `kubectl apply --server-side -f path` as the cluster admin; panics when it fails.
    pub fn apply(&self, path: &Path) {
        let out = self.kubectl(
            "admin-token",
            &["apply", "--server-side", "-f", &path.display().to_string()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `yaml` to a file and applies it as the holder of `token`; kubectl's output.
    pub fn apply_as(&self, token: &str, yaml: &str) -> Output {
        let path = self
            .dir
            .path()
            .join(format!("apply-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self.kubectl(token, &["apply", "-f", &path.display().to_string()])
    }

    /// `kubectl auth can-i` as the holder of `token`.
    pub fn can(&self, token: &str, args: &[&str]) -> bool {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = self.kubectl(token, &all);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "can-i {args:?}: {other:?} {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// A kube-rs client as the holder of `token`.
    pub async fn client(&self, token: &str) -> kube::Client {
        client_for(&self.kubeconfig(token))
            .await
            .unwrap_or_else(|e| panic!("a client for {token}: {e}"))
    }
}

/// The namespaces of the world: the release's, the global credentials', the application's and
/// three tenants' (acme, globex, evil), each bound to its tenant.
const NAMESPACES: [(&str, Option<&str>); 6] = [
    (NS, None),
    (CREDENTIALS_NS, None),
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

/// Starts the world: a stand-in with a token per identity, the namespaces, the CRDs and the
/// chart rendered with [`chart_values`] (and `extra`).
pub async fn start(extra: &[&str]) -> RbacWorld {
    crate::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    let tokens = dir.path().join("tokens.csv");
    let sa = |user: &str, ns: &str| {
        format!("{user},\"system:serviceaccounts,system:serviceaccounts:{ns}\"")
    };
    let lines = [
        "admin-token,admin,1,\"system:masters\"".to_owned(),
        format!("controller-token,{},2", sa(CONTROLLER, NS)),
        format!("mcp-token,{},3", sa(MCP, NS)),
        format!("app-token,{},4", sa(APP, "rag")),
        format!("worker-token,{},7", sa(WORKER, "rag")),
        "alice-token,alice,5,\"acme-admins\"".to_owned(),
        "carol-token,carol,6,\"platform-admins\"".to_owned(),
        "eve-token,eve,8,\"evil-admins\"".to_owned(),
    ];
    std::fs::write(&tokens, lines.join("\n"))
        .unwrap_or_else(|e| panic!("writing the token file: {e}"));
    let cluster = Cluster::stand_in(Config {
        token_file: Some(tokens),
        ..Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("starting the stand-in: {e}"));
    let world = RbacWorld { cluster, dir };

    let namespaces = world.dir.path().join("namespaces.yaml");
    let docs: Vec<String> = NAMESPACES
        .iter()
        .map(|(name, tenant)| {
            let labels = tenant.map_or_else(String::new, |t| {
                format!(", labels: {{tenantmcp.dev/tenant: {t}}}")
            });
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}{labels}}}\n")
        })
        .collect();
    std::fs::write(&namespaces, docs.join("---\n"))
        .unwrap_or_else(|e| panic!("writing namespaces: {e}"));
    world.apply(&namespaces);
    world.apply(&repo_root().join("charts/tenant-mcp/crds"));

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
    let values = chart_values(extra);
    let sets: Vec<&str> = values.iter().map(String::as_str).collect();
    let rendered = helm_template(&sets, false).unwrap_or_else(|e| panic!("helm template: {e}"));
    let path = world.dir.path().join("chart.yaml");
    std::fs::write(&path, rendered).unwrap_or_else(|e| panic!("writing the chart: {e}"));
    world.apply(&path);
    world
}

//! What the docs promise a kubectl user (v1.35, pinned by scripts/test) on a real API server:
//! apply, get with printer columns, describe, wait, delete, server-side apply, strict field
//! validation, and RBAC with `kubectl auth can-i`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use kube::Resource as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp_e2e::harness::Cluster;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

/// The example tenants, moved into this scenario's own namespaces (`<prefix>-acme`, …).
fn example_tenants(prefix: &str) -> String {
    let mut text = String::new();
    for file in [
        "examples/manifests/tenants/acme-full.yaml",
        "examples/manifests/tenants/globex-partial.yaml",
        "examples/manifests/tenants/initech-minimal.yaml",
    ] {
        text.push_str(&repo(file).replace("namespace: tenant-", &format!("namespace: {prefix}-")));
        text.push_str("\n---\n");
    }
    text
}

async fn namespaces(cluster: &Cluster, prefix: &str) {
    for tenant in ["acme", "globex", "initech"] {
        cluster.kubectl_ok(&["create", "namespace", &format!("{prefix}-{tenant}")]);
    }
}

fn cleanup(cluster: &Cluster, prefix: &str) {
    for tenant in ["acme", "globex", "initech"] {
        let _ = cluster.kubectl(&[
            "delete",
            "namespace",
            &format!("{prefix}-{tenant}"),
            "--wait=false",
        ]);
    }
}

fn prefix() -> String {
    format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

#[tokio::test]
async fn kubectl_applies_gets_describes_waits_and_deletes() {
    let cluster = Cluster::start().await.unwrap();
    let out = cluster.kubectl_ok(&[
        "apply",
        "-f",
        &format!("{}/../crds", env!("CARGO_MANIFEST_DIR")),
    ]);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/tenantmcpconfigs.tenantmcp.dev"
        ),
        "{out}"
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=30s",
        "crd/tenantmcpconfigs.tenantmcp.dev",
    ]);
    let p = prefix();
    namespaces(&cluster, &p).await;

    let applied = cluster.kubectl_stdin(&["apply", "-f", "-"], &example_tenants(&p));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let applied = String::from_utf8_lossy(&applied.stdout).into_owned();
    assert!(
        applied.contains("tenantmcpconfig.tenantmcp.dev/acme created"),
        "{applied}"
    );
    assert!(
        applied.contains("secret/acme-postgres created"),
        "{applied}"
    );

    // Printer columns, served as a table.
    let table = cluster.kubectl_ok(&["get", "tmc", "-n", &format!("{p}-acme")]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TENANT", "READY", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("acme"), "{table}");
    let wide = cluster.kubectl_ok(&["get", "tmc", "-n", &format!("{p}-acme"), "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("REASON"),
        "priority-1 columns show with -o wide: {wide}"
    );

    // Server-side defaults, read back through kubectl.
    let port = cluster.kubectl_ok(&[
        "get",
        "tmc",
        "acme",
        "-n",
        &format!("{p}-acme"),
        "-o",
        "jsonpath={.spec.servers.aiMcpServer.tenantRouting.mode}",
    ]);
    assert_eq!(port, "None");

    let described = cluster.kubectl_ok(&["describe", "tmc", "acme", "-n", &format!("{p}-acme")]);
    let tenant_id = described
        .lines()
        .find(|l| l.trim_start().starts_with("Tenant Id:"));
    assert_eq!(
        tenant_id.and_then(|l| l.split_whitespace().last()),
        Some("acme"),
        "{described}"
    );

    // An event recorded the way the controller records them (kube-rs, events.k8s.io/v1)
    // shows in `kubectl describe` (which lists core/v1 events).
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &format!("{p}-acme"));
    let acme = api.get("acme").await.unwrap();
    let recorder = Recorder::new(
        cluster.client(),
        Reporter {
            controller: "tenant-mcp-e2e".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "ProbeFailed".into(),
        note: Some("postgres: connection refused".into()),
        action: "Probe".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &acme.object_ref(&()))
        .await
        .unwrap();
    let described = cluster.kubectl_ok(&["describe", "tmc", "acme", "-n", &format!("{p}-acme")]);
    let line = described.lines().find(|l| l.contains("ProbeFailed"));
    let line = line.unwrap_or_else(|| panic!("the event is listed: {described}"));
    assert!(
        line.contains("Warning") && line.contains("postgres: connection refused"),
        "{line}"
    );

    // kubectl wait on a condition the controller would write.
    let status = json!({"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "AllServersHealthy", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status("acme", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=20s",
        "tmc/acme",
        "-n",
        &format!("{p}-acme"),
    ]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.observedGeneration}=1",
        "--timeout=20s",
        "tmc/acme",
        "-n",
        &format!("{p}-acme"),
    ]);
    let ready = cluster.kubectl_ok(&[
        "get",
        "tmc",
        "acme",
        "-n",
        &format!("{p}-acme"),
        "--no-headers",
    ]);
    assert!(
        ready.split_whitespace().nth(2) == Some("True"),
        "READY column: {ready}"
    );

    let deleted = cluster.kubectl_ok(&["delete", "tmc", "globex", "-n", &format!("{p}-globex")]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let missing = cluster.kubectl(&["get", "tmc", "globex", "-n", &format!("{p}-globex")]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(
            "Error from server (NotFound): tenantmcpconfigs.tenantmcp.dev \"globex\" not found"
        ),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    cleanup(&cluster, &p);
}

#[tokio::test]
async fn kubectl_refuses_invalid_configs_with_the_field() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let p = prefix();
    namespaces(&cluster, &p).await;
    let with_ns =
        |file: &str| repo(file).replace("namespace: tenant-acme", &format!("namespace: {p}-acme"));

    let unknown = cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &with_ns("examples/manifests/invalid/unknown-field.yaml"),
    );
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("unknown field \"spec.servers.postgres.hostname\""),
        "{stderr}"
    );

    let port = cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &with_ns("examples/manifests/invalid/port-out-of-range.yaml"),
    );
    let stderr = String::from_utf8_lossy(&port.stderr);
    assert!(!port.status.success());
    assert!(stderr.contains("spec.servers.postgres.port"), "{stderr}");
    assert!(stderr.contains("65535"), "{stderr}");
    cleanup(&cluster, &p);
}

#[tokio::test]
async fn kubectl_server_side_apply_reports_conflicts() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let p = prefix();
    namespaces(&cluster, &p).await;
    let manifest = repo("examples/manifests/tenants/initech-minimal.yaml").replace(
        "namespace: tenant-initech",
        &format!("namespace: {p}-initech"),
    );
    let out = cluster.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            "-",
        ],
        &manifest,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A manager owns only the fields it applied (not server defaults): once gitops applies
    // `enabled`, another manager changing it is a conflict.
    let owned = manifest.replace("tenantId: initech", "tenantId: initech\n  enabled: true");
    let out = cluster.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            "-",
        ],
        &owned,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed = manifest.replace("tenantId: initech", "tenantId: initech\n  enabled: false");
    let conflict = cluster.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=mcp-tools",
            "-f",
            "-",
        ],
        &changed,
    );
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(!conflict.status.success(), "expected a conflict");
    assert!(stderr.contains("conflict"), "{stderr}");
    let forced = cluster.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=mcp-tools",
            "-f",
            "-",
        ],
        &changed,
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let enabled = cluster.kubectl_ok(&[
        "get",
        "tmc",
        "initech",
        "-n",
        &format!("{p}-initech"),
        "-o",
        "jsonpath={.spec.enabled}",
    ]);
    assert_eq!(enabled, "false");
    cleanup(&cluster, &p);
}

/// RBAC for people: alice (group tenant-admins) and bob (no group), as the administrator
/// impersonates them — what an OIDC sign-in would give the authorizer.
#[tokio::test]
async fn kubectl_auth_can_i_follows_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await.unwrap();
    let kubectl = |args: &[&str]| cluster.kubectl(args);
    let rbac = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tenant-mcp-tenant-admin}
rules:
- apiGroups: [tenantmcp.dev]
  resources: [tenantmcpconfigs]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [acme-postgres]
  verbs: [get, update, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tenant-admins, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tenant-mcp-tenant-admin}
subjects:
- {kind: Group, name: tenant-admins, apiGroup: rbac.authorization.k8s.io}
"#;
    // kubectl resolves `tenantmcpconfigs.tenantmcp.dev` by discovery: the CRD must exist.
    let crds = format!("{}/../crds", env!("CARGO_MANIFEST_DIR"));
    let out = kubectl(&["apply", "-f", &crds]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("rbac.yaml");
    std::fs::write(&path, rbac).unwrap();
    let out = kubectl(&["apply", "-f", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let can = |who: &str, args: &[&str]| -> String {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(identity(who));
        String::from_utf8_lossy(&kubectl(&all).stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(
        can(
            "alice",
            &["create", "tenantmcpconfigs.tenantmcp.dev", "-n", "team-a"]
        ),
        "yes"
    );
    assert_eq!(
        can(
            "alice",
            &["create", "tenantmcpconfigs.tenantmcp.dev", "-n", "team-b"]
        ),
        "no"
    );
    assert_eq!(
        can("alice", &["get", "secrets/acme-postgres", "-n", "team-a"]),
        "yes"
    );
    assert_eq!(
        can("alice", &["get", "secrets/other", "-n", "team-a"]),
        "no"
    );
    assert_eq!(can("alice", &["list", "secrets", "-n", "team-a"]), "no");
    assert_eq!(
        can(
            "bob",
            &["get", "tenantmcpconfigs.tenantmcp.dev", "-n", "team-a"]
        ),
        "no"
    );
    assert_eq!(can("admin", &["delete", "namespaces"]), "yes");

    // Real requests agree with can-i.
    let denied = kubectl(&[
        "get",
        "secrets",
        "-n",
        "team-a",
        "--as",
        "alice",
        "--as-group",
        "tenant-admins",
    ]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("Error from server (Forbidden): secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\""), "{stderr}");
    // A list that selects one object by name is authorized as a request for that name, as
    // kube-apiserver does: resourceNames can grant listing and watching exactly one Secret.
    let by_name = |name: &str| {
        kubectl(&[
            "get",
            "secrets",
            "-n",
            "team-a",
            "--field-selector",
            &format!("metadata.name={name}"),
            "--as",
            "alice",
            "--as-group",
            "tenant-admins",
        ])
    };
    let allowed = by_name("acme-postgres");
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let other = by_name("other");
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("forbidden"),
        "{other:?}"
    );
    let unauthenticated = kubectl(&["get", "ns", "--token", "wrong"]);
    assert!(
        String::from_utf8_lossy(&unauthenticated.stderr).contains("Unauthorized"),
        "{unauthenticated:?}"
    );
    drop(dir);
}

/// kubectl's impersonation flags for `who`.
fn identity(who: &str) -> &'static [&'static str] {
    match who {
        "alice" => &["--as", "alice", "--as-group", "tenant-admins"],
        "bob" => &["--as", "bob"],
        _ => &[],
    }
}

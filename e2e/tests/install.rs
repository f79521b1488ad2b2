//! The first steps of the README on a real API server (kube-apiserver v1.36): `kubectl apply
//! -f crds/` and the chart's copy of the CRDs are accepted without a warning — the API server
//! estimates the cost of every CEL rule and refuses a CRD over budget — and so is every
//! example manifest. `helm install` of the chart is in `chart.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::repo_root;

/// `kubectl apply -f path` (a file or directory): stdout; panics on a refusal or a warning
/// (kubectl prints the API server's warnings on stderr).
fn apply_clean(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let path = repo_root().join(path).display().to_string();
    let mut all = vec!["apply"];
    all.extend_from_slice(args);
    all.extend(["-f", path.as_str()]);
    let out = cluster.kubectl(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl apply -f {path}: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "kubectl apply -f {path} warned: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_crds_and_every_example_apply_without_a_refusal_or_a_warning() {
    let cluster = Cluster::start().await.unwrap();
    let created = apply_clean(&cluster, &[], "crds");
    assert!(
        created.contains("tenantmcpconfigs.tenantmcp.dev created")
            && created.contains("globalmcpconfigs.tenantmcp.dev created"),
        "{created}"
    );
    // The chart ships the same CRDs: applying them changes nothing.
    let again = apply_clean(&cluster, &[], "charts/tenant-mcp/crds");
    assert!(
        !again.contains("configured"),
        "the chart's CRDs differ: {again}"
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/tenantmcpconfigs.tenantmcp.dev",
        "crd/globalmcpconfigs.tenantmcp.dev",
    ]);

    apply_clean(&cluster, &[], "examples/manifests/namespaces.yaml");
    apply_clean(&cluster, &["-R"], "examples/manifests/global");
    let tenants = apply_clean(&cluster, &["-R"], "examples/manifests/tenants");
    for tenant in ["acme", "globex", "initech"] {
        assert!(
            tenants.contains(&format!("tenantmcpconfig.tenantmcp.dev/{tenant} created")),
            "{tenants}"
        );
    }
    // Server-side apply (what Argo CD and Flux use) of the same files agrees.
    apply_clean(
        &cluster,
        &["--server-side", "-R"],
        "examples/manifests/tenants",
    );
    let listed = cluster.kubectl_ok(&["get", "tmc", "-A"]);
    let header = listed.lines().next().unwrap_or_default();
    for column in ["NAMESPACE", "NAME", "TENANT", "READY", "AGE"] {
        assert!(header.contains(column), "{listed}");
    }
    assert_eq!(listed.lines().count(), 4, "{listed}");
}

//! `tenant-mcp status` and `tenant-mcp route`, the binary against a real control plane (or
//! `E2E_KUBECONFIG`'s cluster) with the controller promoting real servers: acme on its own
//! Postgres, globex with a wrong password (failing, so unavailable — never global), initech on
//! the global servers only, an impostor config claiming acme from evil's namespace, and then
//! the feature flag switched off. The JSON is checked field by field, the text against a
//! snapshot, and the exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tenant_mcp::controller::{self, Settings};
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tokio_util::sync::CancellationToken;

fn tenant_mcp(cluster: &Cluster, args: &[&str]) -> (i32, String) {
    let out = Command::new(tenant_mcp_e2e::stack::tenant_mcp_binary().unwrap())
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig())
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("error:"), "{args:?}: {stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn json(cluster: &Cluster, args: &[&str]) -> (i32, Value) {
    let (code, text) = tenant_mcp(cluster, args);
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// The rows of `tenant` in a status report, by server type.
fn servers(report: &Value, tenant: &str) -> Vec<(String, Value)> {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .unwrap_or_else(|| panic!("no {tenant} in {report}"))["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["server"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// The text with what changes from run to run replaced: ages, latencies, hashes, ports,
/// snapshot suffixes, database names.
fn normalized(text: &str) -> String {
    let rules = [
        (r"\d+[smhd] ago", "T ago"),
        (r"\d+ ms", "N ms"),
        (r"\b[0-9a-f]{7}\b", "HASH"),
        (r"-[0-9a-f]{10}\b", "-SNAP"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"/(acme|globex|platform)_[0-9a-f]{8}", "/${1}_DB"),
    ];
    let mut out = text.to_owned();
    for (pattern, with) in rules {
        out = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&out, with)
            .into_owned();
    }
    // Column widths follow the longest cell, which the replacements changed.
    out.lines()
        .map(|l| {
            regex::Regex::new(r" {2,}")
                .unwrap()
                .replace_all(l, "  ")
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const SNAPSHOT: &str = "\
tenant configs: on · endpoint policy: schemes https/http, any port, public and loopback addresses, TLS not required · 3 tenants, 2 need attention

TENANT  SERVER  SERVED FROM  ENDPOINT  DESIRED  ACTIVE  STATE  REASON  CHECKED  LATENCY  SNAPSHOT
acme  postgres  tenant  postgres://127.0.0.1:PORT/acme_DB  HASH  HASH  Healthy  -  T ago  N ms  acme-postgres-SNAP
globex  postgres  unavailable: AuthFailed  -  HASH  - (pending change)  Failing  AuthFailed  T ago  -  -
initech  postgres  global  postgres://127.0.0.1:PORT/platform_DB  -  -  -  -  -  -  -

! config tenant-evil/acme does not serve acme: namespace \"tenant-evil\" is bound to tenant \"evil\" (label tenantmcp.dev/tenant), not to \"acme\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_route_say_what_serves_each_tenant_and_why() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::local(Default::default()).await.unwrap();
    cluster.install_crds().await.unwrap();
    for (ns, tenant) in [
        ("tenant-mcp-credentials", None),
        ("tenant-acme", Some("acme")),
        ("tenant-globex", Some("globex")),
        ("tenant-initech", Some("initech")),
        ("tenant-evil", Some("evil")),
    ] {
        cluster.create_namespace(ns, tenant).await.unwrap();
    }
    let pg = Postgres::start().unwrap();
    let mut dbs = Vec::new();
    for name in ["acme", "globex", "platform"] {
        let db = pg.create_database(name).await.unwrap();
        let user = format!("{name}_{}", &db[db.len() - 6..]);
        execute(
            &pg.admin_url("postgres"),
            &format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
        )
        .await
        .unwrap();
        dbs.push((db, user));
    }
    let port = pg.port();
    let postgres = |db: &str| {
        format!(
            "{{host: 127.0.0.1, port: {port}, database: {db}, sslMode: disable, credentialsSecretRef: {{name: pg}}}}"
        )
    };
    let secret = |ns: &str, user: &str, pw: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: pg, namespace: {ns}}}\nstringData: {{username: {user}, password: {pw}}}\n---\n"
        )
    };
    let config = |ns: &str, name: &str, tenant: &str, servers: &str| {
        format!(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{tenantId: {tenant}, servers: {servers}}}\n---\n"
        )
    };
    let global = |flag: bool| {
        format!(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\n\
             spec: {{tenantConfigsEnabled: {flag}, credentialsNamespace: tenant-mcp-credentials, \
             endpointPolicy: {{allowLoopback: true}}, servers: {{postgres: {}}}}}\n",
            postgres(&dbs[2].0)
        )
    };
    let manifests = [
        secret("tenant-mcp-credentials", &dbs[2].1, "pw"),
        secret("tenant-acme", &dbs[0].1, "pw"),
        config(
            "tenant-acme",
            "acme",
            "acme",
            &format!("{{postgres: {}}}", postgres(&dbs[0].0)),
        ),
        secret("tenant-globex", &dbs[1].1, "wrong-password"),
        config(
            "tenant-globex",
            "globex",
            "globex",
            &format!("{{postgres: {}}}", postgres(&dbs[1].0)),
        ),
        config("tenant-initech", "initech", "initech", "{}"),
        secret("tenant-evil", &dbs[0].1, "pw"),
        config(
            "tenant-evil",
            "acme",
            "acme",
            &format!("{{postgres: {}}}", postgres(&dbs[0].0)),
        ),
        global(true),
    ]
    .concat();
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(controller::run(
        cluster.client(),
        Settings {
            identity: "status-test".into(),
            ..Settings::default()
        },
        None,
        stop.clone(),
        None,
    ));
    wait_for(
        "acme promoted, globex failing",
        Duration::from_secs(60),
        async || {
            let (_, report) = json(&cluster, &["status", "-o", "json"]);
            let acme = servers(&report, "acme");
            let globex = servers(&report, "globex");
            (acme[0].1["servedFrom"] == "tenant" && globex[0].1["state"] == "Failing").then_some(())
        },
    )
    .await;

    // JSON, field by field.
    let (code, report) = json(&cluster, &["status", "-o", "json"]);
    assert_eq!(
        code, 1,
        "globex is failing and an impostor exists: {report}"
    );
    assert_eq!(report["tenantConfigsEnabled"], true);
    assert_eq!(report["healthy"], false);
    let (_, acme) = &servers(&report, "acme")[0];
    assert_eq!(acme["servedFrom"], "tenant");
    assert_eq!(acme["state"], "Healthy");
    assert_eq!(acme["pendingChange"], false);
    assert_eq!(acme["desired"], acme["active"]);
    assert!(
        acme["endpoint"].as_str().unwrap().contains(&dbs[0].0),
        "{acme}"
    );
    assert!(
        acme["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("acme-postgres-"),
        "{acme}"
    );
    assert!(
        acme["because"]
            .as_str()
            .unwrap()
            .contains("the active entry of tenant-acme/acme")
    );
    let (_, globex) = &servers(&report, "globex")[0];
    assert_eq!(
        globex["servedFrom"], "unavailable",
        "never the global server: {globex}"
    );
    assert_eq!(globex["reason"], "AuthFailed");
    assert_eq!(globex["checkReason"], "AuthFailed");
    assert_eq!(globex["pendingChange"], true);
    assert_eq!(globex["active"], Value::Null);
    assert_eq!(globex["endpoint"], Value::Null);
    let (_, initech) = &servers(&report, "initech")[0];
    assert_eq!(initech["servedFrom"], "global");
    assert!(
        initech["because"]
            .as_str()
            .unwrap()
            .contains("does not declare"),
        "{initech}"
    );
    let acme_tenant = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap();
    assert_eq!(acme_tenant["config"], "tenant-acme/acme");
    let claims: Vec<(&str, bool)> = acme_tenant["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["config"].as_str().unwrap(),
                c["serving"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        claims,
        [("tenant-acme/acme", true), ("tenant-evil/acme", false)]
    );

    // Text, against the snapshot.
    let (code, text) = tenant_mcp(&cluster, &["status", "--color", "never"]);
    assert_eq!(code, 1);
    assert_eq!(normalized(text.trim_end()), SNAPSHOT, "\n{text}");
    // Colour only when asked (or on a terminal): plain when piped.
    let (_, piped) = tenant_mcp(&cluster, &["status"]);
    assert!(!piped.contains('\x1b'), "{piped}");
    let (_, coloured) = tenant_mcp(&cluster, &["status", "--color", "always"]);
    assert!(coloured.contains("\x1b[31m"), "{coloured}");

    // One tenant in detail.
    let (code, detail) = json(&cluster, &["status", "--tenant", "acme", "-o", "json"]);
    assert_eq!(code, 1, "the impostor needs attention");
    assert_eq!(detail["tenants"].as_array().unwrap().len(), 1);
    assert!(
        detail["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready")
    );
    let events = detail["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["reason"] == "Promoted"), "{detail}");
    let (_, text) = tenant_mcp(
        &cluster,
        &["status", "--tenant", "globex", "--color", "never"],
    );
    assert!(
        text.contains("configs claiming globex:\n  tenant-globex/globex: serves"),
        "{text}"
    );
    assert!(text.contains("recent events:"), "{text}");

    // route: the same decisions, one tenant.
    let (code, answers) = json(&cluster, &["route", "--tenant", "acme", "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(answers[0]["servedFrom"], "tenant");
    let (code, text) = tenant_mcp(
        &cluster,
        &["route", "--tenant", "globex", "--server", "postgres"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.starts_with("globex postgres -> unavailable: no server (AuthFailed)"),
        "{text}"
    );
    let (code, text) = tenant_mcp(&cluster, &["route", "--tenant", "initech"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("initech postgres -> global: postgres://127.0.0.1"),
        "{text}"
    );
    let (code, text) = tenant_mcp(&cluster, &["route", "--tenant", "nobody"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("because no TenantMcpConfig serves this tenant"),
        "{text}"
    );

    // The flag off: every tenant on the global servers, whatever its config says.
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &global(false));
    assert!(out.status.success());
    let (code, report) = json(&cluster, &["status", "-o", "json"]);
    assert_eq!(report["tenantConfigsEnabled"], false);
    for tenant in ["acme", "globex", "initech"] {
        let (_, row) = &servers(&report, tenant)[0];
        assert_eq!(row["servedFrom"], "global", "{tenant}: {row}");
        assert!(
            row["because"].as_str().unwrap().contains("switched off"),
            "{row}"
        );
    }
    assert_eq!(code, 1, "the impostor still needs attention");
    let (_, text) = tenant_mcp(&cluster, &["status", "--color", "never"]);
    assert!(
        text.starts_with("tenant configs: off (every tenant on the global servers)"),
        "{text}"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

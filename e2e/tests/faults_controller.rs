//! Faults 1, 5 and 6 of issue 22, on the real controller binary and a real control plane:
//!
//! 1. the Kubernetes API down for 10 s: the client library serves every tenant, cached or not,
//!    from its last routes throughout, and both it and the controller take in the changes made
//!    just before and after;
//! 5. the controller killed (SIGKILL) mid-promotion — after the snapshot Secret was made and
//!    before its status write, and while its mirror write waits on a lock: the next controller
//!    converges (status.active names an existing snapshot, no orphan snapshot after the grace
//!    period, the mirror row equal to the cluster);
//! 6. a leader paused (SIGSTOP) past its Lease with a status write in flight, then resumed:
//!    the write it had sent is refused, it writes nothing after the other replica took over,
//!    and the new leader finishes the work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::json;
use sqlx::Connection as _;
use tenant_mcp::api::{SNAPSHOT_TYPE, TenantMcpConfig};
use tenant_mcp::client::{ClientSettings, Origin, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp_e2e::controller_process::{ControllerOptions, ControllerProcess};
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::scenario::{self, apply};
use tenant_mcp_e2e::stack::admission_hold::{AdmissionHold, HoldRule, Release};
use tenant_mcp_e2e::stack::kube::{Component, ControlPlaneOptions, User};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::process::Workdir;

fn controller(
    kubeconfig: &Path,
    dir: &Path,
    identity: &str,
    mirror: Option<(&str, &Path)>,
    lease_seconds: u32,
) -> ControllerProcess {
    ControllerProcess::start(&ControllerOptions {
        kubeconfig,
        dir,
        identity,
        lease_namespace: "default",
        mirror,
        lease_seconds,
    })
}

/// Tenant `name`'s namespace, Secret and config on its own login to `db`.
async fn tenant(
    client: &kube::Client,
    pg: &Postgres,
    db: &str,
    name: &str,
    user: &str,
    password: &str,
    extra: serde_json::Value,
) {
    let ns = format!("tenant-{name}");
    apply(client, &scenario::namespace(&ns, Some(name)))
        .await
        .unwrap();
    apply(
        client,
        &scenario::secret(&ns, "pg", &[("username", user), ("password", password)]),
    )
    .await
    .unwrap();
    apply(
        client,
        &scenario::config(
            &ns,
            name,
            name,
            json!({"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                                "sslMode": "disable", "credentialsSecretRef": {"name": "pg"}}}),
            extra,
        ),
    )
    .await
    .unwrap();
}

fn configs(client: &kube::Client, name: &str) -> Api<TenantMcpConfig> {
    Api::namespaced(client.clone(), &format!("tenant-{name}"))
}

async fn ready_reason(client: &kube::Client, name: &str) -> Option<(String, String)> {
    scenario::condition(
        &scenario::status(&configs(client, name), name).await,
        "Ready",
    )
}

/// The user a tenant's pool logs in as, through the client library.
async fn served_as(clients: &TenantClients, tenant: &str) -> Result<String, String> {
    let pool = clients.postgres(tenant).await.map_err(|e| e.to_string())?;
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_served_through_an_api_outage_and_changes_around_it_are_taken_in() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = Workdir::new("outage").unwrap();
    let mut cluster = Cluster::local(ControlPlaneOptions::default())
        .await
        .unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("outage").await.unwrap();
    let suffix = db[db.len() - 6..].to_owned();
    let user = |t: &str| format!("{t}_{suffix}");

    let creds = "tenant-mcp-credentials";
    pg.set_login(&user("platform"), "platform-pass")
        .await
        .unwrap();
    apply(&client, &scenario::namespace(creds, None))
        .await
        .unwrap();
    apply(
        &client,
        &scenario::secret(
            creds,
            "global-pg",
            &[
                ("username", &user("platform")),
                ("password", "platform-pass"),
            ],
        ),
    )
    .await
    .unwrap();
    apply(
        &client,
        &scenario::global(
            creds,
            json!({"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                                "sslMode": "disable", "credentialsSecretRef": {"name": "global-pg"}}}),
        ),
    )
    .await
    .unwrap();
    let tenants = ["t0", "t1", "t2", "t3", "t4", "t5"];
    for t in tenants {
        pg.set_login(&user(t), &format!("{t}-pass")).await.unwrap();
        tenant(
            &client,
            &pg,
            &db,
            t,
            &user(t),
            &format!("{t}-pass"),
            json!({}),
        )
        .await;
    }
    let mut controller = controller(cluster.kubeconfig(), dir.path(), "outage", None, 30);
    for t in tenants {
        wait_for(&format!("{t} Ready"), Duration::from_secs(60), async || {
            ready_reason(&client, t).await.filter(|r| r.0 == "True")
        })
        .await;
    }
    let clients = TenantClients::from_kube(client.clone(), ClientSettings::default())
        .await
        .unwrap();
    for t in tenants {
        wait_for(
            &format!("{t}'s route"),
            Duration::from_secs(30),
            async || {
                clients
                    .endpoint(t, &ServerKey::Postgres)
                    .ok()
                    .filter(|e| e.origin == Origin::Tenant)
            },
        )
        .await;
    }
    // Half the tenants have pools already; the other half and a tenant without a config do
    // not.
    for t in &tenants[..3] {
        assert_eq!(served_as(&clients, t).await.unwrap(), user(t));
    }

    // A change just before the API goes away: the controller may not have seen it yet.
    let disable = json!({"enabled": false});
    tenant(
        &client,
        &pg,
        &db,
        "t4",
        &user("t4"),
        "t4-pass",
        disable.clone(),
    )
    .await;
    // The API server dies (SIGKILL): every connection to it is cut, nothing answers.
    cluster
        .control_plane_mut()
        .unwrap()
        .kill_component(Component::ApiServer);
    let outage = Instant::now();
    let mut served = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        for t in tenants.iter().chain(&["walk-in"]) {
            let who = served_as(&clients, t)
                .await
                .unwrap_or_else(|e| panic!("{t} failed during the API outage: {e}"));
            let expected: &[String] = match *t {
                "walk-in" => &[user("platform")],
                // Its own login, or the global one if the client saw the change in time.
                "t4" => &[user("t4"), user("platform")],
                t => &[user(t)],
            };
            assert!(expected.contains(&who), "{t} served as {who}");
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{served} requests served during the 10 s API outage, none failed");
    assert!(
        controller.wait(Duration::ZERO).is_none(),
        "the controller survived the outage"
    );

    let plane = cluster.control_plane_mut().unwrap();
    tokio::task::block_in_place(|| plane.start_component(Component::ApiServer)).unwrap();
    // A change after it is back.
    tenant(&client, &pg, &db, "t5", &user("t5"), "t5-pass", disable).await;
    // The controller's watches reconnect within their back-off (capped at 5 s,
    // tenant_mcp::watch_backoff) and, their resumed versions being unknown to the restarted
    // API server (410 Gone), list again. With kube-runtime's default back-off (30 s, also on
    // the Controller's merged trigger stream) this took more than two minutes.
    for t in ["t4", "t5"] {
        wait_for(
            &format!("{t} Disabled by the controller"),
            Duration::from_secs(60),
            async || ready_reason(&client, t).await.filter(|r| r.1 == "Disabled"),
        )
        .await;
        wait_for(
            &format!("{t} on the global server"),
            Duration::from_secs(60),
            async || (served_as(&clients, t).await.ok()? == user("platform")).then_some(()),
        )
        .await;
    }
    for t in &tenants[..4] {
        assert_eq!(served_as(&clients, t).await.unwrap(), user(t));
    }
    clients.shutdown().await;
    controller.terminate();
}

/// Snapshot Secrets of `name`'s namespace, and the one its status names.
async fn snapshots(client: &kube::Client, name: &str) -> (Vec<String>, Option<String>) {
    let all: Vec<String> = Api::<Secret>::namespaced(client.clone(), &format!("tenant-{name}"))
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| s.type_.as_deref() == Some(SNAPSHOT_TYPE))
        .filter_map(|s| s.metadata.name)
        .collect();
    let active = scenario::status(&configs(client, name), name)
        .await
        .active
        .postgres
        .and_then(|a| a.snapshot_secret);
    (all, active)
}

/// After a crash: the config Ready and mirrored with `password`'s snapshot, that snapshot the
/// only one left once the grace period is over, and `mirror verify` content.
async fn converged(
    client: &kube::Client,
    cluster: &Cluster,
    mirror: &MirrorDatabase,
    keys: &Path,
    password: &str,
) {
    wait_for(
        "acme Ready and Mirrored",
        Duration::from_secs(60),
        async || {
            let s = scenario::status(&configs(client, "acme"), "acme").await;
            let ok = scenario::condition(&s, "Ready").is_some_and(|r| r.0 == "True")
                && scenario::condition(&s, "Mirrored").is_some_and(|m| m.0 == "True");
            ok.then_some(())
        },
    )
    .await;
    let mut seen = String::new();
    wait_for(
        "one snapshot, the active one, with the new password",
        Duration::from_secs(60),
        async || {
            let (all, active) = snapshots(client, "acme").await;
            // Printed on change: shown by nextest only if the wait times out.
            let now = format!("snapshots {all:?}, active {active:?}");
            if now != seen {
                eprintln!("{now}");
                seen = now;
            }
            let active = active?;
            let secret = Api::<Secret>::namespaced(client.clone(), "tenant-acme")
                .get_opt(&active)
                .await
                .ok()??;
            let pw = String::from_utf8(secret.data?.get("password")?.0.clone()).ok()?;
            (all == [active] && pw == password).then_some(())
        },
    )
    .await;
    let (code, out) = tenant_mcp_e2e::stack::run_tenant_mcp(
        &["mirror", "verify"],
        &[
            ("KUBECONFIG", cluster.kubeconfig().as_os_str()),
            ("TENANT_MCP_DATABASE_URL", mirror.uber_admin_url.as_ref()),
            ("TENANT_MCP_KEYS_DIR", keys.as_os_str()),
        ],
    );
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_promotion_leaves_a_state_the_next_one_converges_from() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::local(ControlPlaneOptions::default())
        .await
        .unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let faults = AdmissionHold::install(&client, &["tenantmcpconfigs/status"])
        .await
        .unwrap();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("crash").await.unwrap();
    let mirror = MirrorDatabase::create(&pg, "mirror").await.unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("k1"), tenant_mcp::crypto::generate_key()).unwrap();
    std::fs::write(keys.join("active"), "k1").unwrap();
    let acme = format!("acme_{}", &db[db.len() - 6..]);
    apply(
        &client,
        &scenario::global("tenant-mcp-credentials", json!({})),
    )
    .await
    .unwrap();
    pg.set_login(&acme, "pass-1").await.unwrap();
    tenant(&client, &pg, &db, "acme", &acme, "pass-1", json!({})).await;
    let start = |identity: &str| {
        controller(
            cluster.kubeconfig(),
            dir.path(),
            identity,
            Some((&mirror.controller_url, &keys)),
            3,
        )
    };
    let mut first = start("first");
    converged(&client, &cluster, &mirror, &keys, "pass-1").await;

    // 1. Killed after it made the new snapshot (and mirrored it), before its status write.
    let hold = faults.hold(HoldRule::object(
        "tenantmcpconfigs",
        "status",
        "tenant-acme",
        "acme",
    ));
    pg.set_login(&acme, "pass-2").await.unwrap();
    tenant(&client, &pg, &db, "acme", &acme, "pass-2", json!({})).await;
    hold.wait_held(1, Duration::from_secs(30)).await;
    let (made, _) = snapshots(&client, "acme").await;
    assert_eq!(
        made.len(),
        2,
        "the new snapshot exists before the status write: {made:?}"
    );
    first.kill();
    hold.release(Release::Deny);
    let mut second = start("second");
    converged(&client, &cluster, &mirror, &keys, "pass-2").await;

    // 2. Killed while its mirror write waits on a lock.
    let mut locker = sqlx::PgConnection::connect(&mirror.admin_url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE tenant_configs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    pg.set_login(&acme, "pass-3").await.unwrap();
    tenant(&client, &pg, &db, "acme", &acme, "pass-3", json!({})).await;
    let mut watcher = sqlx::PgConnection::connect(&mirror.admin_url)
        .await
        .unwrap();
    let controller_login = mirror
        .controller_url
        .trim_start_matches("postgres://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    wait_for(
        "the mirror write waiting on the lock",
        Duration::from_secs(30),
        async || {
            let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&controller_login)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
    second.kill();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    let mut third = start("third");
    converged(&client, &cluster, &mirror, &keys, "pass-3").await;
    third.terminate();
}

/// Two controller replicas, each a ServiceAccount of its own (`default/replica-a`,
/// `default/replica-b`, both cluster admins so only their names tell them apart): the
/// kubeconfig of each, with a token from the TokenRequest API.
async fn replicas(cluster: &Cluster) -> (PathBuf, PathBuf) {
    for name in ["replica-a", "replica-b"] {
        apply(
            &cluster.client(),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": "default"}}),
        )
        .await
        .unwrap();
        apply(
            &cluster.client(),
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": format!("e2e-{name}")},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]}),
        )
        .await
        .unwrap();
    }
    let mut paths = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let token = cluster
            .service_account_token("default", name)
            .await
            .unwrap();
        paths.push(cluster.kubeconfig_for(&User::Token(token)).unwrap());
    }
    (paths.remove(0), paths.remove(0))
}

const REPLICA_A: &str = "system:serviceaccount:default:replica-a";
const REPLICA_B: &str = "system:serviceaccount:default:replica-b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_writes_nothing_after_the_other_takes_over() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    // Who wrote what, and with which answer: the API server's audit log.
    let cluster = Cluster::local(ControlPlaneOptions {
        audit_writes: true,
        ..ControlPlaneOptions::default()
    })
    .await
    .unwrap();
    let (as_a, as_b) = replicas(&cluster).await;
    let client = cluster.client();
    cluster.install_crds().await.unwrap();
    apply(
        &client,
        &scenario::global("tenant-mcp-credentials", json!({})),
    )
    .await
    .unwrap();
    let faults = AdmissionHold::install(&client, &["tenantmcpconfigs/status"])
        .await
        .unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    let holder = async || {
        leases
            .get_opt("tenant-mcp-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let a = controller(&as_a, dir.path(), "replica-a", None, 3);
    wait_for("replica-a to lead", Duration::from_secs(30), async || {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = controller(&as_b, dir.path(), "replica-b", None, 3);

    // A's status write for a new config is in flight (held at the server) when A freezes.
    let hold = faults.hold(
        HoldRule::object("tenantmcpconfigs", "status", "tenant-paused", "paused")
            .from_user(REPLICA_A),
    );
    apply(
        &client,
        &scenario::namespace("tenant-paused", Some("paused")),
    )
    .await
    .unwrap();
    apply(
        &client,
        &scenario::config("tenant-paused", "paused", "paused", json!({}), json!({})),
    )
    .await
    .unwrap();
    hold.wait_held(1, Duration::from_secs(30)).await;
    a.pause();
    wait_for(
        "replica-b to take over",
        Duration::from_secs(30),
        async || (holder().await.as_deref() == Some("replica-b")).then_some(()),
    )
    .await;
    let api = configs(&client, "paused");
    wait_for(
        "B makes the config Ready",
        Duration::from_secs(30),
        async || {
            scenario::condition(&scenario::status(&api, "paused").await, "Ready")
                .filter(|r| r.0 == "True")
        },
    )
    .await;
    let writes = || cluster.control_plane().unwrap().audited_writes();
    let taken_over = writes()
        .iter()
        .find(|w| w.user == REPLICA_B && w.uri.contains("/leases/") && w.code < 300)
        .map(|w| w.at)
        .unwrap();
    // A's write goes on to storage late, and A resumes.
    hold.release(Release::Allow);
    a.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Another change: only B may act on it.
    apply(
        &client,
        &scenario::config(
            "tenant-paused",
            "paused",
            "paused",
            json!({}),
            json!({"enabled": false}),
        ),
    )
    .await
    .unwrap();
    wait_for("B marks it Disabled", Duration::from_secs(30), async || {
        scenario::condition(&scenario::status(&api, "paused").await, "Ready")
            .filter(|r| r.1 == "Disabled")
    })
    .await;
    let late: Vec<_> = writes()
        .into_iter()
        .filter(|w| w.user == REPLICA_A && w.at > taken_over && w.code < 300)
        .collect();
    assert!(
        late.is_empty(),
        "replica-a wrote after losing the Lease: {late:?}"
    );
    let refused = writes()
        .into_iter()
        .find(|w| w.user == REPLICA_A && w.uri.contains("/paused/status"));
    assert_eq!(
        refused.map(|w| w.code),
        Some(409),
        "A's late status write is refused"
    );
    drop(b);
}

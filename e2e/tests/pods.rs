//! The chart's workloads as Pods on a real node (`../shared/kube/cluster-up`: kubelet,
//! containerd, runc): the image packed here without a registry ([`tenant_mcp_e2e::image`]),
//! `helm install` with the migration hook Job, every Deployment Available with its probes, the
//! restricted security context and the memory limit as the node enforces them, the webhook
//! refusing an invalid config, a tenant promoted and mirrored by the controller Pod, `helm
//! upgrade` rolling Pods, the PDB holding an eviction, the leading controller Pod deleted
//! mid-promotion, and the OOM kill of a controller whose limit is below its working set.
//!
//! Each test starts one node (about 7 s to Ready) and runs every step on it, rather than one
//! node per step. The tests run one at a time (`.config/nextest.toml`, test group `node`): two
//! nodes on one host broke each other's Pods.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::image::{PackedImage, TENANT_MCP, pack_built};
use tenant_mcp_e2e::rbac::{NS, RELEASE, helm_release};
use tenant_mcp_e2e::scenario;
use tenant_mcp_e2e::stack::node::NodeCluster;
use tenant_mcp_e2e::stack::postgres::{Postgres, PostgresOptions};
use tenant_mcp_e2e::stack::process::status_bytes;
use tenant_mcp_e2e::stack::repo_root;

/// A node with the tenant-mcp image imported, and a harness cluster on its API.
async fn node_with_image() -> (NodeCluster, Cluster, PackedImage) {
    let (node, image) = tokio::task::spawn_blocking(|| {
        let node = NodeCluster::start().unwrap();
        let image = pack_built(TENANT_MCP).unwrap();
        node.import(&image).unwrap();
        (node, image)
    })
    .await
    .unwrap();
    let cluster = Cluster::from_kubeconfig(node.kubeconfig()).await.unwrap();
    (node, cluster, image)
}

/// The chart installed (or upgraded) as the release on the node with `sets`, waiting up to
/// `timeout` for its workloads: helm's output, or a panic with its error.
fn install_on(node: &NodeCluster, sets: &[String], timeout: &str) -> String {
    helm_release(&node.kubeconfig(), sets, &["--wait", "--timeout", timeout])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn image_values(image: &PackedImage) -> Vec<String> {
    vec![
        format!("image.repository={}", image.repository),
        format!("image.tag={}", image.tag),
        // Imported, never pulled: there is no registry.
        "image.pullPolicy=Never".into(),
    ]
}

/// Whether every replica of the Deployment is updated and available (`kubectl rollout
/// status`'s rule).
fn rolled_out(deployment: &Deployment) -> bool {
    let want = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return false;
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Available" && c.status == "True")
}

/// The Pods of the release's `component` (controller, mcp-server, webhook) that are not being
/// deleted, by name.
async fn pods_of(pods: &Api<Pod>, component: &str) -> Vec<Pod> {
    let selector =
        format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn describe_pod(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    format!(
        "{} phase {:?} ready {} deleting {:?}",
        pod.metadata.name.as_deref().unwrap_or("?"),
        status.phase,
        is_ready(pod),
        pod.metadata.deletion_timestamp
    )
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// Waits until every Deployment of the release is rolled out.
async fn all_rolled_out(cluster: &Cluster, timeout: Duration) {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), NS);
    wait_for(
        "every Deployment of the release Available",
        timeout,
        async || {
            let list = deployments.list(&ListParams::default()).await.ok()?;
            (list.items.len() == 3 && list.items.iter().all(rolled_out)).then_some(())
        },
    )
    .await;
}

/// A running container's process as the node sees it: `/proc/PID/status` and whether its root
/// filesystem is mounted read-only.
struct ContainerProcess {
    status: String,
    root_read_only: bool,
    /// Every mount point in the container.
    mount_points: BTreeSet<String>,
    memory_limit: Option<u64>,
}

/// The process of the pod's running container, if it has one right now (a container being
/// restarted has none, and its status may still name the old one).
fn container_process(node: &NodeCluster, pod: &Pod) -> Option<ContainerProcess> {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())?;
    let pid = node.container_pid(&id)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS …"
    let root_read_only = mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.get(4) == Some(&"/")
            && fields
                .get(5)
                .is_some_and(|o| o.split(',').any(|x| x == "ro"))
    });
    let mount_points = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .collect();
    // cgroup v1: "N:memory:/kubepods/…"
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let memory_limit = cgroup
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, path)| path.to_owned()))
        .and_then(|path| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
                .ok()
        })
        .and_then(|v| v.trim().parse().ok());
    Some(ContainerProcess {
        status,
        root_read_only,
        mount_points,
        memory_limit,
    })
}

/// The `n` Ready Pods of `component` and their containers' processes, once each has one.
async fn running_processes(
    node: &NodeCluster,
    pods: &Api<Pod>,
    component: &str,
    n: usize,
) -> Vec<(Pod, ContainerProcess)> {
    wait_for(
        &format!("{n} Ready {component} Pods with a running container"),
        Duration::from_secs(120),
        async || {
            let running = pods_of(pods, component).await;
            if running.len() != n || !running.iter().all(is_ready) {
                return None;
            }
            running
                .into_iter()
                .map(|pod| container_process(node, &pod).map(|process| (pod, process)))
                .collect()
        },
    )
    .await
}

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map_or("", |v| v.trim_start_matches(':').trim())
}

/// A Postgres that Pods reach at the node's `HOST_IP`, with the mirror's logins made as a DBA
/// would before the chart is installed: the table owner (with CREATEROLE, for the migration
/// hook) and a controller login already in `tenant_mcp_controller` (which the migrations
/// accept as it is).
struct PodPostgres {
    pg: Postgres,
    owner_url: String,
    controller_url: String,
    admin_url: String,
}

async fn postgres_for_pods(node: &NodeCluster) -> PodPostgres {
    let host = node.host_ip();
    let cidr = node.pod_cidr().to_owned();
    let pg = tokio::task::spawn_blocking(move || {
        Postgres::start_with(&PostgresOptions {
            pod_access: Some((host, &cidr)),
            ..PostgresOptions::default()
        })
        .unwrap()
    })
    .await
    .unwrap();
    let database = pg.create_database("mirror").await.unwrap();
    let mirror = tenant_mcp_e2e::stack::mirror_db::MirrorDatabase::with_roles(&pg, &database)
        .await
        .unwrap();
    let suffix = database.rsplit('_').next().unwrap();
    let admin = sqlx::PgPool::connect(&mirror.admin_url).await.unwrap();
    for statement in [
        "CREATE ROLE tenant_mcp_controller NOLOGIN".to_owned(),
        format!("GRANT tenant_mcp_controller TO controller_{suffix}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
    let at_host = |url: &str| url.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    PodPostgres {
        owner_url: at_host(&mirror.owner_url),
        controller_url: at_host(&mirror.controller_url),
        admin_url: mirror.admin_url,
        pg,
    }
}

/// `helm install` on a node that runs Pods: the migration hook Job runs and completes, every
/// Deployment becomes Available with its probes passing, each container runs as the chart
/// renders it (uid 65532, no new privileges, no capabilities, read-only root filesystem, the
/// memory limit in its cgroup), the webhook refuses an invalid config at `kubectl apply`, the
/// controller Pod promotes and mirrors a tenant whose Postgres it reaches at `HOST_IP`, `helm
/// upgrade` rolls every Pod, and the PDB refuses to evict the second webhook replica while the
/// first one's replacement is not ready. Then the leading controller Pod is deleted while a
/// promotion is in flight: the Deployment replaces it, the Lease moves, and the active config
/// stays in status and the mirror throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_as_pods_and_rolls_evicts_and_fails_over() {
    let (node, cluster, image) = node_with_image().await;
    let pg = postgres_for_pods(&node).await;
    let host = node.host_ip();

    cluster.kubectl_ok(&["create", "namespace", NS]);
    for (name, url) in [
        ("controller-database", &pg.controller_url),
        ("migration-database", &pg.owner_url),
    ] {
        cluster.kubectl_ok(&[
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=url={url}"),
        ]);
    }
    let mut values = image_values(&image);
    values.extend([
        "database.enabled=true".into(),
        "database.urlSecret.name=controller-database".into(),
        "database.migration.urlSecret.name=migration-database".into(),
        // The servers Pods use listen on this host, and the policy allows exactly that address.
        format!("globalConfig.endpointPolicy.allowedCidrs={{{host}/32}}"),
    ]);
    let started = Instant::now();
    let out = install_on(&node, &values, "300s");
    assert!(out.contains("STATUS: deployed"), "{out}");
    eprintln!("helm install --wait: {:?}", started.elapsed());
    all_rolled_out(&cluster, Duration::from_secs(60)).await;

    // The hook Job ran the migrations as the owner (nothing else did) and was deleted on
    // success (hook-delete-policy hook-succeeded).
    let owner = sqlx::PgPool::connect(&pg.admin_url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_mcp.schema_changes")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert!(applied > 0, "the migration Job applied nothing");
    let table_owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = 'tenant_configs'",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert!(table_owner.starts_with("owner_"), "{table_owner}");
    let jobs = cluster.kubectl_ok(&["-n", NS, "get", "jobs", "-o", "name"]);
    assert_eq!(
        jobs.trim(),
        "",
        "the hook Job should be gone after it succeeded"
    );

    // Every container as the node runs it.
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    for (component, limit) in [
        ("controller", 256u64 << 20),
        ("mcp-server", 256 << 20),
        ("webhook", 128 << 20),
    ] {
        for (pod, process) in running_processes(&node, &pods, component, 2).await {
            let what = format!("{component} {:?}", pod.metadata.name);
            assert!(
                status_field(&process.status, "Uid").starts_with("65532\t65532"),
                "{what}: {}",
                status_field(&process.status, "Uid")
            );
            assert_eq!(status_field(&process.status, "NoNewPrivs"), "1", "{what}");
            assert_eq!(
                status_field(&process.status, "CapEff"),
                "0000000000000000",
                "{what}"
            );
            assert!(process.root_read_only, "{what}: root filesystem writable");
            // The volumes as rendered: a writable /tmp, the mirror's keys, the JWT secret.
            let mounted: &[&str] = match component {
                "controller" => &["/tmp", "/etc/tenant-mcp/keys"],
                "mcp-server" => &["/tmp", "/etc/tenant-mcp/auth"],
                _ => &[],
            };
            for path in mounted {
                assert!(
                    process.mount_points.contains(*path),
                    "{what}: {path} not mounted: {:?}",
                    process.mount_points
                );
            }
            assert_eq!(process.memory_limit, Some(limit), "{what}");
        }
    }

    // The webhook made its certificate, set caBundle, and refuses an invalid config.
    let client = cluster.client();
    scenario::apply(&client, &scenario::namespace("tenant-acme", Some("acme")))
        .await
        .unwrap();
    let ca_bundle = cluster.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        &format!("{RELEASE}-tenant-mcp"),
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    assert!(!ca_bundle.is_empty(), "caBundle not set");
    let invalid = repo_root().join("examples/manifests/invalid/credential-query-parameter.yaml");
    let refused = cluster.kubectl(&["apply", "-f", invalid.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("admission webhook \"validate.tenantmcp.dev\" denied"),
        "{stderr}"
    );

    // A tenant on its own Postgres, reached at HOST_IP: the controller Pod promotes it and
    // mirrors it.
    let tenant_db = pg.pg.create_database("acme").await.unwrap();
    pg.pg.set_login("acme_app", "acme-pass-1").await.unwrap();
    scenario::apply(
        &client,
        &scenario::secret(
            "tenant-acme",
            "acme-pg",
            &[("username", "acme_app"), ("password", "acme-pass-1")],
        ),
    )
    .await
    .unwrap();
    let acme = |max_connections: i32| {
        scenario::config(
            "tenant-acme",
            "acme",
            "acme",
            json!({"postgres": {"host": host.to_string(), "port": pg.pg.port(),
                                "database": tenant_db, "sslMode": "disable",
                                "pool": {"maxConnections": max_connections},
                                "credentialsSecretRef": {"name": "acme-pg"}}}),
            json!({}),
        )
    };
    scenario::apply(&client, &acme(5)).await.unwrap();
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), "tenant-acme");
    let active_pool = async |configs: &Api<TenantMcpConfig>| {
        scenario::status(configs, "acme")
            .await
            .active
            .postgres
            .map(|p| p.spec.pool.max_connections)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while active_pool(&configs).await != Some(5) {
        assert!(
            Instant::now() < deadline,
            "acme's Postgres was not promoted by the controller Pod:\n{}",
            cluster.kubectl_ok(&[
                "-n",
                "tenant-acme",
                "get",
                "tenantmcpconfig",
                "acme",
                "-o",
                "yaml"
            ])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mirrored = async || -> bool {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM tenant_configs WHERE tenant_id = 'acme' AND mcp_server_config IS NOT NULL",
        )
        .fetch_one(&owner)
        .await
        .is_ok_and(|n| n == 1)
    };
    wait_for("acme's mirror row", Duration::from_secs(60), async || {
        mirrored().await.then_some(())
    })
    .await;

    // helm upgrade with a changed value rolls every Pod.
    let before: BTreeSet<String> = names(&pods.list(&ListParams::default()).await.unwrap().items);
    let mut upgraded = values.clone();
    upgraded.push("logLevel=debug".into());
    install_on(&node, &upgraded, "300s");
    all_rolled_out(&cluster, Duration::from_secs(120)).await;
    for component in ["controller", "mcp-server", "webhook"] {
        let now = names(&pods_of(&pods, component).await);
        assert_eq!(now.len(), 2, "{component}: {now:?}");
        assert!(
            now.is_disjoint(&before),
            "{component}: {now:?} not rolled (before: {before:?})"
        );
    }

    // The PDB (minAvailable 1) lets one webhook replica go and holds the other. The
    // disruption controller first has to count the rolled Pods (until then its status may
    // still count the old ones, as `kubectl drain` would meet it too).
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(cluster.client(), NS);
    let webhooks = wait_for(
        "the webhook's PDB to count two healthy replicas",
        Duration::from_secs(60),
        async || {
            let status = budgets
                .get(&format!("{RELEASE}-tenant-mcp-webhook"))
                .await
                .ok()?
                .status?;
            let webhooks = pods_of(&pods, "webhook").await;
            (status.expected_pods == 2
                && status.current_healthy == 2
                && status.disruptions_allowed == 1
                && webhooks.len() == 2
                && webhooks.iter().all(is_ready))
            .then_some(webhooks)
        },
    )
    .await;
    let described: Vec<String> = webhooks.iter().map(describe_pod).collect();
    let [first, second] = [&webhooks[0], &webhooks[1]].map(|p| p.metadata.name.clone().unwrap());
    // What `kubectl drain` posts: a policy/v1 Eviction.
    let evict = |pod: &str| {
        cluster.kubectl_stdin(
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{NS}/pods/{pod}/eviction"),
                "-f",
                "-",
            ],
            &json!({"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": pod, "namespace": NS}})
            .to_string(),
        )
    };
    let out = evict(&first);
    assert!(
        out.status.success(),
        "evicting {first}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = evict(&second);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("would violate the pod's disruption budget"),
        "evicting {second} after {first}: {stderr}\nbefore: {described:?}\n{}",
        cluster.kubectl_ok(&["-n", NS, "get", "pods", "-o", "wide"])
    );
    all_rolled_out(&cluster, Duration::from_secs(120)).await;

    // The leading controller Pod is deleted while a promotion is in flight.
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let lease_name = format!("{RELEASE}-tenant-mcp-controller");
    let holder = async || {
        leases
            .get(&lease_name)
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity)
    };
    let leader = wait_for("a controller leader", Duration::from_secs(60), holder).await;
    let controllers = names(&pods_of(&pods, "controller").await);
    assert!(
        controllers.contains(&leader),
        "{leader} not in {controllers:?}"
    );
    scenario::apply(&client, &acme(7)).await.unwrap();
    cluster.kubectl_ok(&["-n", NS, "delete", "pod", &leader, "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        // Last-known-good holds throughout: the active config and the mirror row stay.
        let active = active_pool(&configs).await;
        assert!(
            matches!(active, Some(5 | 7)),
            "the active config went away: {active:?}"
        );
        assert!(mirrored().await, "the mirror row went away");
        let new_leader = holder().await;
        let replaced = pods_of(&pods, "controller").await;
        if active == Some(7)
            && new_leader.as_ref().is_some_and(|l| *l != leader)
            && replaced.len() == 2
            && !names(&replaced).contains(&leader)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after deleting leader {leader}: active {active:?}, leader {new_leader:?}, pods {:?}",
            names(&replaced)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    all_rolled_out(&cluster, Duration::from_secs(120)).await;
    owner.close().await;
}

/// `n` tenants as YAML for `kubectl apply`: a namespace bound to each and a config with an S3
/// server that is never reached (the controller holds each config whatever its probe says).
fn tenants_yaml(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---
apiVersion: v1
kind: Namespace
metadata: {{name: {prefix}{i}, labels: {{tenantmcp.dev/tenant: {prefix}{i}}}}}
---
apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata: {{name: config, namespace: {prefix}{i}}}
spec:
  tenantId: {prefix}{i}
  servers:
    minio:
      endpoint: https://s3.example.com
      bucket: bucket-{i}
      credentialsSecretRef: {{name: s3}}
"
            )
        })
        .collect()
}

/// The controller's container: its restart count, why it last ended, and why it waits now.
fn controller_container(pod: &Pod) -> (i32, Option<String>, Option<String>) {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default();
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .and_then(|t| t.reason);
    let waiting = status.state.and_then(|s| s.waiting).and_then(|w| w.reason);
    (status.restart_count, last, waiting)
}

/// A controller whose memory limit holds it idle but not at N configs is OOM-killed when it
/// lists them, restarts into the same list and is killed again: the crash loop a real cluster
/// shows (what the chart's sized defaults must prevent, docs/operations.md "Sizing"). The limit
/// is measured, not guessed: twice the idle controller's anonymous memory (at least 4 MiB
/// more), and the 1,500 configs then created need about 14 MiB more (about 9.5 KiB each in a
/// debug build). The standby replica's readiness does not stop the rollout to that limit: a
/// standby is Ready before it has listed anything. Raising the limit again ends the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_under_a_too_small_memory_limit_is_oom_killed_and_restarts() {
    const CONFIGS: usize = 1500;
    let (node, cluster, image) = node_with_image().await;
    cluster.kubectl_ok(&["create", "namespace", NS]);
    let mut values = image_values(&image);
    values.extend([
        "webhook.enabled=false".into(),
        "mcpServer.enabled=false".into(),
        "controller.replicas=1".into(),
    ]);
    let install = |extra: &[String]| {
        let mut sets = values.clone();
        sets.extend_from_slice(extra);
        install_on(&node, &sets, "180s");
    };
    install(&[]);
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    let idle_anon = {
        // Settled after its first lists.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, process) = running_processes(&node, &pods, "controller", 1)
            .await
            .remove(0);
        status_bytes(&process.status, "RssAnon").expect("RssAnon in /proc/PID/status")
    };
    let limit_mib = (idle_anon * 2).max(idle_anon + (4 << 20)).div_ceil(1 << 20);
    eprintln!(
        "idle controller: {} KiB anonymous; limit {limit_mib} MiB",
        idle_anon >> 10
    );
    let small = [
        format!("controller.resources.limits.memory={limit_mib}Mi"),
        format!("controller.resources.requests.memory={limit_mib}Mi"),
    ];
    install(&small);
    // The control: idle, it lives under that limit.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (idle, _) = running_processes(&node, &pods, "controller", 1)
        .await
        .remove(0);
    let (restarts, last, _) = controller_container(&idle);
    assert!(
        last.as_deref() != Some("OOMKilled"),
        "idle under {limit_mib} MiB: {restarts} restarts, last {last:?}"
    );

    let before = restarts;
    let out = cluster.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &tenants_yaml("oom", CONFIGS),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let looping = wait_for(
        "the controller OOM-killed twice and in CrashLoopBackOff",
        Duration::from_secs(300),
        async || {
            let pod = pods_of(&pods, "controller").await.into_iter().next()?;
            let (restarts, last, waiting) = controller_container(&pod);
            (restarts >= before + 2
                && last.as_deref() == Some("OOMKilled")
                && waiting.as_deref() == Some("CrashLoopBackOff"))
            .then_some(restarts)
        },
    )
    .await;
    eprintln!(
        "{CONFIGS} configs under {limit_mib} MiB: {looping} restarts, OOMKilled, CrashLoopBackOff"
    );

    // The default limit again: the controller comes up and reconciles the configs.
    install(&[]);
    all_controller_ready(&pods).await;
    let configs: Api<TenantMcpConfig> = Api::all(cluster.client());
    wait_for(
        "every config reconciled by the restored controller",
        Duration::from_secs(300),
        async || {
            let list = configs.list(&ListParams::default()).await.ok()?;
            (list.items.len() == CONFIGS
                && list.items.iter().all(|c| {
                    c.status
                        .as_ref()
                        .is_some_and(|s| s.observed_generation.is_some())
                }))
            .then_some(())
        },
    )
    .await;
}

/// Waits until the one controller replica is Ready and was never OOM-killed.
async fn all_controller_ready(pods: &Api<Pod>) {
    wait_for(
        "the controller Ready and never OOM-killed",
        Duration::from_secs(180),
        async || {
            let running = pods_of(pods, "controller").await;
            (running.len() == 1
                && is_ready(&running[0])
                && controller_container(&running[0]).1.as_deref() != Some("OOMKilled"))
            .then_some(())
        },
    )
    .await;
}

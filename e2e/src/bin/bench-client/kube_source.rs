//! The Kubernetes source at scale, on a real control plane this process starts: N tenants,
//! each a labelled namespace, a TenantMcpConfig with a `kubectl apply` annotation and a
//! promoted status, and its snapshot Secret. The client's memory is measured in a child process
//! (this binary again, `--kube-memory-child`), so nothing else of this process is counted; then
//! lookups run here while statuses are edited.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp_e2e::harness::Cluster;

use super::manifests::{bucket, tenant};

/// A control plane with N tenants.
pub struct Populated {
    /// The cluster.
    pub cluster: Cluster,
    /// The tenants, in order.
    pub names: Vec<String>,
}

fn server_specs(t: &str, database: &str) -> serde_json::Value {
    serde_json::json!({
        "postgres": {"host": "127.0.0.1", "database": database, "sslMode": "disable",
            "credentialsSecretRef": {"name": "creds"}},
        "minio": {"endpoint": "http://127.0.0.1:9000", "bucket": bucket(t),
            "credentialsSecretRef": {"name": "creds"}},
        "aiMcpServer": {"url": "http://127.0.0.1:8080/mcp",
            "bearerTokenSecretRef": {"name": "creds", "key": "token"}}
    })
}

/// The status the controller would write after promoting `database`.
fn status(t: &str, database: &str) -> serde_json::Value {
    let specs = server_specs(t, database);
    let active = |key: &str| {
        serde_json::json!({"spec": specs[key], "snapshotSecret": "snap",
            "specHash": format!("hash-{database}"), "promotedAt": "2026-11-30T00:00:00Z"})
    };
    serde_json::json!({"status": {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "every declared server is active", "lastTransitionTime": "2026-11-30T00:00:00Z"},
            {"type": "Validated", "status": "True", "reason": "Valid", "message": "the spec is valid", "lastTransitionTime": "2026-11-30T00:00:00Z"},
            {"type": "Mirrored", "status": "True", "reason": "Mirrored", "message": "the active config is mirrored into tenant_configs", "lastTransitionTime": "2026-11-30T00:00:00Z"}
        ],
        "servers": {
            "postgres": {"state": "Healthy", "lastCheckedAt": "2026-11-30T00:00:00Z", "latencyMs": 3, "specHash": "h", "secretVersions": {"creds": "1"}, "policyHash": "p"},
            "minio": {"state": "Healthy", "lastCheckedAt": "2026-11-30T00:00:00Z", "latencyMs": 3, "specHash": "h", "secretVersions": {"creds": "1"}, "policyHash": "p"},
            "aiMcpServer": {"state": "Healthy", "lastCheckedAt": "2026-11-30T00:00:00Z", "latencyMs": 3, "specHash": "h", "secretVersions": {"creds": "1"}, "policyHash": "p"}
        },
        "active": {"postgres": active("postgres"), "minio": active("minio"), "aiMcpServer": active("aiMcpServer")}
    }})
}

impl Populated {
    /// The tenants the memory child checks (`BENCH_SAMPLE`): the first and the last.
    pub fn sample(&self) -> String {
        format!(
            "{},{}",
            self.names.first().map_or("", String::as_str),
            self.names.last().map_or("", String::as_str)
        )
    }
}

/// Starts a control plane and creates `n` tenants (64 at a time).
pub async fn populate(n: usize) -> anyhow::Result<Populated> {
    let cluster = Cluster::local(Default::default()).await?;
    cluster.install_crds().await?;
    let client = cluster.client();
    allow_loopback(&client).await?;
    let names: Vec<String> = (0..n).map(|i| tenant("k", i)).collect();
    futures::stream::iter(names.iter().cloned())
        .map(|t| {
            let client = client.clone();
            async move { create_tenant(&client, &t).await.with_context(|| t.clone()) }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(Populated { cluster, names })
}

/// The GlobalMcpConfig allowing loopback servers, which the default policy denies.
pub async fn allow_loopback(client: &kube::Client) -> anyhow::Result<()> {
    tenant_mcp_e2e::harness::create_global_config(
        client,
        serde_json::json!({"endpointPolicy": {"allowLoopback": true}}),
    )
    .await
}

async fn create_tenant(client: &kube::Client, t: &str) -> anyhow::Result<()> {
    tenant_mcp_e2e::harness::create_namespace(client, t, Some(t)).await?;
    let config = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "config", "namespace": t},
        "spec": {"tenantId": t, "servers": server_specs(t, "db0")}
    });
    // What `kubectl apply` leaves on every object it creates: the whole object again.
    let mut applied = config.clone();
    applied["metadata"]["annotations"] = serde_json::json!({
        "kubectl.kubernetes.io/last-applied-configuration": config.to_string()
    });
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), t);
    let created = configs
        .create(&PostParams::default(), &serde_json::from_value(applied)?)
        .await?;
    let uid = created.uid().context("no uid")?;
    let snapshot = serde_json::json!({
        "metadata": {"name": "snap", "namespace": t,
            "labels": {"app.kubernetes.io/managed-by": "tenant-mcp"},
            "ownerReferences": [{"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "name": "config", "uid": uid, "controller": true}]},
        "type": tenant_mcp::api::SNAPSHOT_TYPE,
        "stringData": {"username": "u", "password": "p", "accessKeyId": "a",
            "secretAccessKey": "s", "bearerToken": "tok"}
    });
    Api::<Secret>::namespaced(client.clone(), t)
        .create(&PostParams::default(), &serde_json::from_value(snapshot)?)
        .await?;
    configs
        .patch_status(
            "config",
            &PatchParams::default(),
            &Patch::Merge(status(t, "db0")),
        )
        .await?;
    Ok(())
}

/// RSS of the client process: before the client starts, and once it is in sync.
pub struct ChildMemory {
    /// Before `from_kube`.
    pub before: super::Footprint,
    /// In sync, every tenant routed.
    pub loaded: super::Footprint,
}

/// Measures the client's memory in a child process against `populated`.
pub async fn measure_memory(populated: &Populated) -> anyhow::Result<ChildMemory> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--kube-memory-child")
        .arg(populated.cluster.kubeconfig())
        .env("BENCH_SAMPLE", populated.sample())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "the memory child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let number = |name: &str| -> anyhow::Result<u64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .context(format!("no {name} in {stdout}"))?
            .trim()
            .parse()
            .context(name.to_owned())
    };
    let field = |at: &str| -> anyhow::Result<super::Footprint> {
        Ok(super::Footprint {
            rss: number(&format!("rss-{at} "))?,
            live: number(&format!("live-{at} "))?,
        })
    };
    Ok(ChildMemory {
        before: field("before")?,
        loaded: field("loaded")?,
    })
}

/// The child's side: start the client on `kubeconfig`, wait for sync, check that the sample
/// tenants route to their own servers, print RSS before and after.
pub async fn memory_child(kubeconfig: &Path) -> anyhow::Result<()> {
    let before = super::footprint()?;
    let client = tenant_mcp_e2e::harness::client_for(kubeconfig).await?;
    let clients = TenantClients::from_kube(
        client,
        ClientSettings {
            sync_timeout: Duration::from_secs(600),
            ..ClientSettings::default()
        },
    )
    .await?;
    let sample = std::env::var("BENCH_SAMPLE").unwrap_or_default();
    for t in sample.split(',').filter(|t| !t.is_empty()) {
        for key in [ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp] {
            let endpoint = clients
                .endpoint(t, &key)
                .with_context(|| format!("{t} {key:?}"))?;
            anyhow::ensure!(
                endpoint.origin == tenant_mcp::client::routes::Origin::Tenant,
                "{t} is not on its own server"
            );
        }
    }
    // Let the watch tasks' buffers from the initial lists go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = super::footprint()?;
    if std::env::var_os("BENCH_MAPPINGS").is_some() {
        print_largest_mappings();
    }
    println!(
        "rss-before {}\nlive-before {}\nrss-loaded {}\nlive-loaded {}",
        before.rss, before.live, loaded.rss, loaded.live
    );
    clients.shutdown().await;
    Ok(())
}

/// For profiling (`BENCH_MAPPINGS=1`): the largest resident mappings, on stderr, to tell the
/// allocator's arenas from thread stacks and the binary.
fn print_largest_mappings() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .unwrap_or(0);
            maps.push((kb, current.clone()));
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-'))
        {
            current = line.to_owned();
        }
    }
    maps.sort_unstable_by_key(|m| std::cmp::Reverse(m.0));
    for (kb, map) in maps.iter().take(8) {
        eprintln!("{kb:>8} kB {map}");
    }
}

/// Lookups of cached Postgres pools by two OS threads, without edits and then while one task
/// edits a random tenant's status every `every` (each edit moves the routes generation, so
/// every tenant's next lookup re-checks its route).
pub struct DuringEdits {
    /// Lookups with no edits.
    pub quiet: Vec<Duration>,
    /// Lookups while edits land.
    pub edited: Vec<Duration>,
    /// Edits that landed during the second run.
    pub edits: usize,
    /// The second run's length.
    pub seconds: f64,
}

/// Runs [`DuringEdits`] with `lookups` per thread.
pub async fn lookups_during_edits(
    populated: &Populated,
    lookups: usize,
    every: Duration,
) -> anyhow::Result<DuringEdits> {
    let clients = TenantClients::from_kube(
        populated.cluster.client(),
        ClientSettings {
            sync_timeout: Duration::from_secs(600),
            max_cached_tenants: populated.names.len() * 2,
            idle_ttl: Duration::from_secs(3600),
            ..ClientSettings::default()
        },
    )
    .await?;
    for name in &populated.names {
        clients.postgres(name).await.context("warming")?;
    }
    let quiet = run_lookups(&clients, &populated.names, lookups).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let editor = {
        let (client, names, stop) = (
            populated.cluster.client(),
            populated.names.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut edits = 0usize;
            let mut picker = super::Picker::from_state(0x2545_F491_4F6C_DD1D);
            while !stop.is_cancelled() {
                let t = picker.pick(&names);
                let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), t);
                let db = format!("db{}", edits + 1);
                if configs
                    .patch_status(
                        "config",
                        &PatchParams::default(),
                        &Patch::Merge(status(t, &db)),
                    )
                    .await
                    .is_ok()
                {
                    edits += 1;
                }
                tokio::time::sleep(every).await;
            }
            edits
        })
    };
    let started = Instant::now();
    let edited = run_lookups(&clients, &populated.names, lookups).await?;
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    let edits = editor.await?;
    clients.shutdown().await;
    Ok(DuringEdits {
        quiet,
        edited,
        edits,
        seconds,
    })
}

/// Lookups of `names` by two OS threads, every call driven to completion on this runtime (a
/// lookup after an edit may build its tenant's new pool, which awaits).
async fn run_lookups(
    clients: &TenantClients,
    names: &[String],
    lookups: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (clients, handle) = (clients.clone(), tokio::runtime::Handle::current());
    super::two_threads(names, lookups, move |name| {
        Ok(handle.block_on(clients.postgres(name))?)
    })
    .await
}

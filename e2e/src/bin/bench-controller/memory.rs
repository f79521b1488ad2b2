//! Memory at N configs: each of the chart's three processes (`tenant-mcp controller`,
//! `webhook`, `mcp-server`, the release binary) started on the large full run's cluster and
//! driven through its heaviest work there, its resident and peak memory read from
//! `/proc/<pid>/status`; and where the controller's bytes go, store by store, measured in this
//! process by a counting allocator while the same objects are put into the same stores with
//! the controller's own functions.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, ObjectList};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use serde_json::json;
use tenant_mcp::api::{TenantMcpConfig, slim};
use tenant_mcp::controller::{claim_index, namespace_index, secret_index, snapshot_index};
use tenant_mcp_e2e::harness::Cluster;

/// Resident and peak resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Footprint {
    /// `VmRSS` when read.
    pub rss: u64,
    /// `VmHWM`: the most it was resident at any moment (what a memory limit must hold).
    pub peak: u64,
}

/// A process measured, and how long its work took.
#[derive(Clone, Debug)]
pub struct ProcessRun {
    /// What ran and what it did.
    pub label: String,
    /// Its memory at the end.
    pub footprint: Footprint,
    /// Its work's wall time.
    pub took: Duration,
}

/// One of the controller's stores at N objects: live heap bytes as the controller keeps them,
/// and as the objects arrive (before slimming), where that differs.
#[derive(Clone, Debug)]
pub struct StoreRow {
    /// The store.
    pub store: &'static str,
    /// Objects in it.
    pub objects: usize,
    /// Bytes of the objects as listed (no slimming), if the store slims.
    pub as_listed: Option<u64>,
    /// Bytes as the controller keeps them.
    pub kept: u64,
}

/// Everything measured at N configs.
#[derive(Clone, Debug)]
pub struct Memory {
    /// The controller process, one row per run.
    pub controller: Vec<ProcessRun>,
    /// The webhook process.
    pub webhook: ProcessRun,
    /// The management server process.
    pub mcp_server: ProcessRun,
    /// The controller's stores.
    pub stores: Vec<StoreRow>,
}

/// `VmRSS` and `VmHWM` of process `pid`.
pub fn footprint(pid: u32) -> anyhow::Result<Footprint> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        tenant_mcp_e2e::stack::process::status_bytes(&status, name)
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Footprint {
        rss: field("VmRSS")?,
        peak: field("VmHWM")?,
    })
}

/// Measures everything on `cluster`, which holds `n` configs the controller has reconciled.
pub async fn measure(
    cluster: &Cluster,
    n: usize,
    controller_runs: usize,
    allocated: impl Fn() -> usize,
) -> anyhow::Result<Memory> {
    let mut controller = Vec::new();
    for run in 0..controller_runs {
        eprintln!("controller process {}/{controller_runs}", run + 1);
        controller.push(controller_process(cluster, n, run).await?);
    }
    eprintln!("webhook process");
    let webhook = webhook_process(cluster, n).await?;
    eprintln!("management server process");
    let mcp_server = mcp_server_process(cluster, n).await?;
    eprintln!("the controller's stores");
    let stores = stores(cluster, allocated).await?;
    Ok(Memory {
        controller,
        webhook,
        mcp_server,
        stores,
    })
}

/// Starts `tenant-mcp controller` (no mirror) on `cluster`'s configs and reads its memory
/// after it counted at least `n` reconciles and then one more quiet second.
async fn controller_process(cluster: &Cluster, n: usize, run: usize) -> anyhow::Result<ProcessRun> {
    use tenant_mcp_e2e::controller_process::{ControllerOptions, ControllerProcess};
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let identity = format!("bench-process-{run}");
    let process = ControllerProcess::start_logging(
        &ControllerOptions {
            kubeconfig: cluster.kubeconfig(),
            dir: dir.path(),
            identity: &identity,
            lease_namespace: "default",
            mirror: None,
            lease_seconds: 15,
        },
        "warn",
    );
    let reconciles = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("tenant_mcp_reconciles_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    loop {
        let seen = reconciles(&process.metrics());
        if seen >= n as u64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the controller process reconciled {seen} of {n} in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(ProcessRun {
        label: format!(
            "controller: took over {n} configs and reconciled each ({} reconciles)",
            reconciles(&process.metrics())
        ),
        footprint: footprint(process.pid())?,
        took,
    })
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tenant-mcp <args>` with `env` and waits until it listens on `port`.
async fn start(args: &[&str], env: &[(&str, String)], port: u16) -> anyhow::Result<Child> {
    let binary = tenant_mcp_e2e::stack::tenant_mcp_binary()?;
    let child = Child(
        std::process::Command::new(binary)
            .args(args)
            .envs(tenant_mcp_e2e::bench::chart_allocator_env()?)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("TENANT_MCP_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "tenant-mcp {args:?} did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(child)
}

/// `tenant-mcp webhook`, reviewing 500 config creates (each reads the claimants of its tenant)
/// and 5 GlobalMcpConfig updates (each lists every config, to count whom a policy demotes).
async fn webhook_process(cluster: &Cluster, n: usize) -> anyhow::Result<ProcessRun> {
    use tenant_mcp_e2e::stack::tls::Identity;
    let dir = tempfile::tempdir()?;
    let identity = Identity::generate("bench-webhook", &[])?;
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, identity.cert_pem())?;
    std::fs::write(&key, identity.key_pem())?;
    let port = tenant_mcp_e2e::stack::process::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let process = start(
        &["webhook", "--listen", &listen],
        &[
            ("KUBECONFIG", cluster.kubeconfig().display().to_string()),
            ("TENANT_MCP_WEBHOOK_CERT_FILE", cert.display().to_string()),
            ("TENANT_MCP_WEBHOOK_KEY_FILE", key.display().to_string()),
        ],
        port,
    )
    .await?;
    let address = listen.parse()?;
    let started = Instant::now();
    for i in 0..500 {
        let config = json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "config", "namespace": format!("tenant-{:05}", i % n)},
            "spec": {"tenantId": format!("t{:05}", i % n)}
        });
        review(address, &identity.ca_pem, "TenantMcpConfig", &config, None).await?;
    }
    let global = json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {"endpointPolicy": {"allowLoopback": true, "deniedCidrs": ["10.0.0.0/8"]}}
    });
    let old = json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {"endpointPolicy": {"allowLoopback": true}}
    });
    for _ in 0..5 {
        review(
            address,
            &identity.ca_pem,
            "GlobalMcpConfig",
            &global,
            Some(&old),
        )
        .await?;
    }
    let took = started.elapsed();
    Ok(ProcessRun {
        label: format!(
            "webhook: 500 config creates and 5 GlobalMcpConfig updates reviewed at {n} configs"
        ),
        footprint: footprint(process.0.id())?,
        took,
    })
}

/// One AdmissionReview of `object` (an update of `old`, or a create) through `POST /validate`.
async fn review(
    address: std::net::SocketAddr,
    ca_pem: &str,
    kind: &str,
    object: &serde_json::Value,
    old: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    let resource = if kind == "GlobalMcpConfig" {
        "globalmcpconfigs"
    } else {
        "tenantmcpconfigs"
    };
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "tenantmcp.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "tenantmcp.dev", "version": "v1alpha1", "resource": resource},
            "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "userInfo": {"username": "bench"},
            "object": object,
            "oldObject": old,
        }
    });
    let (status, text) = tenant_mcp_e2e::webhook::post_review(
        address,
        ca_pem,
        "localhost",
        &serde_json::to_vec(&body)?,
    )
    .await?;
    anyhow::ensure!(status == 200, "the webhook answered {status}: {text}");
    Ok(())
}

/// `tenant-mcp mcp-server`, an uber admin listing every config and reading 20.
async fn mcp_server_process(cluster: &Cluster, n: usize) -> anyhow::Result<ProcessRun> {
    use tenant_mcp_e2e::mcp_admin::{AUDIENCE, ISSUER, SECRET, call, token};
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, SECRET)?;
    let port = tenant_mcp_e2e::stack::process::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let process = start(
        &[
            "mcp-server",
            "--listen",
            &listen,
            "--allowed-host",
            "127.0.0.1",
        ],
        &[
            ("KUBECONFIG", cluster.kubeconfig().display().to_string()),
            ("TENANT_MCP_JWT_SECRET_FILE", secret.display().to_string()),
            ("TENANT_MCP_JWT_ISSUER", ISSUER.to_owned()),
            ("TENANT_MCP_JWT_AUDIENCE", AUDIENCE.to_owned()),
        ],
        port,
    )
    .await?;
    let url = format!("http://{listen}/mcp");
    let uber = token(&["uber_admin"], None);
    let started = Instant::now();
    let listed = list_all_raw(&url, &uber).await?;
    // 20 reads: each is four HTTP requests, and the server's default burst per caller is 120.
    for i in 0..20 {
        call(
            &url,
            &uber,
            "rag_get_tenant_mcp_config",
            json!({"tenantId": format!("t{:05}", i % n)}),
        )
        .await
        .map_err(|e| anyhow::anyhow!("reading: {e}"))?;
    }
    let took = started.elapsed();
    anyhow::ensure!(listed.0 == n, "the list showed {} of {n} configs", listed.0);
    Ok(ProcessRun {
        label: format!(
            "management server: all {n} configs listed in pages of 500 (the largest answer {:.1} MiB), 20 read",
            listed.1 as f64 / (1024.0 * 1024.0)
        ),
        footprint: footprint(process.0.id())?,
        took,
    })
}

/// `rag_list_tenant_mcp_configs` of every config over plain HTTP, page by page of the most an
/// answer holds: the configs listed and the largest answer's size in bytes. (Before the list
/// had pages, its one answer was 34 MiB at 10,000 configs, more than rmcp's client takes.)
async fn list_all_raw(url: &str, bearer: &str) -> anyhow::Result<(usize, usize)> {
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut request = http
            .post(url)
            .bearer_auth(bearer)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body);
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        request.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "bench", "version": "0"}}}),
        None,
    )
    .await?;
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    init.text().await?;
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        session.as_deref(),
    )
    .await?;
    let (mut configs, mut largest, mut next) = (0, 0, None::<String>);
    for id in 2.. {
        let mut arguments = json!({"limit": tenant_mcp::mcp_server::input::LIST_PAGE_MAX});
        if let Some(token) = &next {
            arguments["continue"] = json!(token);
        }
        let answer = post(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": "rag_list_tenant_mcp_configs", "arguments": arguments}}),
            session.as_deref(),
        )
        .await?
        .text()
        .await?;
        largest = largest.max(answer.len());
        let result = answer
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .chain(std::iter::once(answer.as_str()))
            .find_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
            .context("no JSON-RPC answer to the list")?;
        let page = &result["result"]["structuredContent"];
        configs += page["configs"]
            .as_array()
            .with_context(|| format!("no configs in {:.300}", result.to_string()))?
            .len();
        match page["continue"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    Ok((configs, largest))
}

/// Live heap bytes that `make` leaves allocated (what it returns, kept until measured).
fn bytes_of<T>(allocated: &impl Fn() -> usize, make: impl FnOnce() -> T) -> (T, u64) {
    let before = allocated();
    let made = make();
    let after = allocated();
    (made, after.saturating_sub(before) as u64)
}

/// The live heap bytes of `objects` as a reflector store holds them, each whole in an `Arc`.
fn as_listed<K: Clone>(allocated: &impl Fn() -> usize, objects: &[K]) -> u64 {
    let (listed, bytes) = bytes_of(allocated, || {
        objects
            .iter()
            .cloned()
            .map(std::sync::Arc::new)
            .collect::<Vec<_>>()
    });
    drop(listed);
    bytes
}

/// `objects` as a reflector store holds them (each in an `Arc`) before and after `slim`: the
/// slimmed ones, and the live heap bytes of both.
fn listed_and_kept<K: Clone>(
    allocated: &impl Fn() -> usize,
    objects: &[K],
    slim: fn(&mut K),
) -> (Vec<std::sync::Arc<K>>, u64, u64) {
    let listed_bytes = as_listed(allocated, objects);
    let (kept, kept_bytes) = bytes_of(allocated, || {
        objects
            .iter()
            .cloned()
            .map(|mut o| {
                slim(&mut o);
                std::sync::Arc::new(o)
            })
            .collect::<Vec<_>>()
    });
    (kept, listed_bytes, kept_bytes)
}

/// Every object of `api`, listed in pages as the controller's watches list them.
async fn list_all<K>(api: &Api<K>) -> anyhow::Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut all = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page: ObjectList<K> = api.list(&params).await?;
        all.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(all),
        }
    }
}

/// Where the controller's bytes go: each store filled with the cluster's objects by the
/// controller's own functions, its live heap counted.
async fn stores(cluster: &Cluster, allocated: impl Fn() -> usize) -> anyhow::Result<Vec<StoreRow>> {
    let client = cluster.client();
    let mut rows = Vec::new();

    let configs = list_all(&Api::<TenantMcpConfig>::all(client.clone())).await?;
    let (kept, listed_bytes, kept_bytes) = listed_and_kept(&allocated, &configs, slim::config);
    rows.push(StoreRow {
        store: "TenantMcpConfigs (the reflector store)",
        objects: kept.len(),
        as_listed: Some(listed_bytes),
        kept: kept_bytes,
    });

    let claims = claim_index::ClaimIndex::default();
    let ((), bytes) = bytes_of(&allocated, || {
        for config in &kept {
            claims.observe(&Event::Apply(config.as_ref().clone()));
        }
    });
    rows.push(StoreRow {
        store: "claim index (configs by tenant and namespace)",
        objects: kept.len(),
        as_listed: None,
        kept: bytes,
    });

    let readers = secret_index::SecretIndex::default();
    let ((), bytes) = bytes_of(&allocated, || {
        for config in &kept {
            let names = config
                .spec
                .servers
                .secret_uses()
                .iter()
                .map(|u| u.name.to_owned())
                .collect();
            let ns = config.metadata.namespace.as_deref().unwrap_or_default();
            let name = config.metadata.name.as_deref().unwrap_or_default();
            readers.set(ns, name, names);
        }
    });
    rows.push(StoreRow {
        store: "Secret index (which configs read which Secret)",
        objects: kept.len(),
        as_listed: None,
        kept: bytes,
    });
    drop(kept);

    // The reflector store of the namespaces' metadata that the index replaced held each
    // object as listed.
    let namespaces = list_all(&Api::<PartialObjectMeta<Namespace>>::all(client.clone())).await?;
    let listed_bytes = as_listed(&allocated, &namespaces);
    let index = namespace_index::NamespaceIndex::default();
    let ((), bytes) = bytes_of(&allocated, || {
        for namespace in &namespaces {
            index.observe(&Event::Apply(namespace.clone()));
        }
    });
    rows.push(StoreRow {
        store: "namespace index (each namespace's tenant binding)",
        objects: namespaces.len(),
        as_listed: Some(listed_bytes),
        kept: bytes,
    });
    drop(index);

    let secrets = list_all(&Api::<PartialObjectMeta<Secret>>::all(client.clone())).await?;
    let is_snapshot = |s: &PartialObjectMeta<Secret>| {
        s.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(tenant_mcp::controller::snapshot::CONFIG_UID_LABEL))
    };
    // What the index held before it kept only what it reads: each snapshot's metadata.
    let (whole, whole_bytes) = bytes_of(&allocated, || {
        secrets
            .iter()
            .filter(|s| is_snapshot(s))
            .map(|s| s.metadata.clone())
            .collect::<Vec<_>>()
    });
    let snapshot_count = whole.len();
    drop(whole);
    let snapshots = snapshot_index::SnapshotIndex::default();
    let ((), bytes) = bytes_of(&allocated, || {
        for secret in &secrets {
            snapshots.observe(&Event::Apply(secret.clone()));
        }
    });
    rows.push(StoreRow {
        store: "snapshot index (from the metadata of every Secret)",
        objects: snapshot_count,
        as_listed: Some(whole_bytes),
        kept: bytes,
    });
    Ok(rows)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The chart's default limit of the process a run measured (by its label's first word).
fn limit_of(run: &ProcessRun, limits: &[(&str, u64)]) -> Option<u64> {
    let key = match run.label.split(':').next()? {
        "controller" => "controller",
        "webhook" => "webhook",
        "management server" => "mcpServer",
        _ => return None,
    };
    limits.iter().find(|(k, _)| *k == key).map(|(_, l)| *l)
}

/// The runs whose peak times [`LIMIT_HEADROOM`](tenant_mcp_e2e::bench::LIMIT_HEADROOM) does not fit the chart's default limit.
pub fn over_limit(m: &Memory) -> anyhow::Result<Vec<String>> {
    use tenant_mcp_e2e::bench::{LIMIT_HEADROOM, chart_memory_limits};
    let limits = chart_memory_limits()?;
    Ok(m.controller
        .iter()
        .chain([&m.webhook, &m.mcp_server])
        .filter_map(|run| {
            let limit = limit_of(run, &limits)?;
            let needed = (run.footprint.peak as f64 * LIMIT_HEADROOM) as u64;
            (needed > limit).then(|| {
                format!(
                    "{}: peak {} × {LIMIT_HEADROOM} = {} exceeds the chart's default limit {}",
                    run.label,
                    mib(run.footprint.peak),
                    mib(needed),
                    mib(limit)
                )
            })
        })
        .collect())
}

/// The memory tables.
pub fn render_memory(m: &Memory, n: usize) -> String {
    use tenant_mcp_e2e::bench::{LIMIT_HEADROOM, chart_memory_limits};
    let limits = chart_memory_limits().unwrap_or_default();
    let mut out = format!(
        "\n\nMemory at {n} configs (with their namespaces, credential Secrets and snapshot Secrets), the release binary as the chart runs it, one process at a time: RSS when its work was done, and its peak (VmHWM, what a memory limit must hold), against the chart's default limit with {:.0} % headroom:\n\n\
| process and work | RSS | peak | work took | chart limit | peak × {LIMIT_HEADROOM} fits |\n|---|---|---|---|---|---|\n",
        (LIMIT_HEADROOM - 1.0) * 100.0
    );
    for run in m.controller.iter().chain([&m.webhook, &m.mcp_server]) {
        let limit = limit_of(run, &limits);
        let fits = limit.map_or("–", |l| {
            if (run.footprint.peak as f64 * LIMIT_HEADROOM) as u64 <= l {
                "yes"
            } else {
                "**no**"
            }
        });
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} s | {} | {fits} |\n",
            run.label,
            mib(run.footprint.rss),
            mib(run.footprint.peak),
            run.took.as_secs_f64(),
            limit.map_or_else(|| "–".to_owned(), mib),
        ));
    }
    let mut rss: Vec<u64> = m.controller.iter().map(|r| r.footprint.rss).collect();
    let mut peak: Vec<u64> = m.controller.iter().map(|r| r.footprint.peak).collect();
    rss.sort_unstable();
    peak.sort_unstable();
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        let median = rss[rss.len() / 2];
        out.push_str(&format!(
            "\nController over {} runs: RSS median **{}** (range {}–{}), {:.1} KiB per config; peak median {} (range {}–{}).\n",
            rss.len(),
            mib(median),
            mib(*first),
            mib(*last),
            median as f64 / n as f64 / 1024.0,
            mib(peak[peak.len() / 2]),
            mib(peak[0]),
            mib(peak[peak.len() - 1]),
        ));
    }
    out.push_str(
        "\nWhere the controller's bytes go: each of its stores filled with this cluster's objects by the controller's own code, in the bench process, its live heap counted by the allocator. \"As listed\" is the same objects as the API sends them, which is what the store held before it kept only what the controller reads.\n\n\
| store | objects | as listed | kept | per object kept |\n|---|---|---|---|---|\n",
    );
    for row in &m.stores {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} B |\n",
            row.store,
            row.objects,
            row.as_listed.map_or_else(|| "–".to_owned(), mib),
            mib(row.kept),
            row.kept as f64 / row.objects.max(1) as f64,
        ));
    }
    out
}

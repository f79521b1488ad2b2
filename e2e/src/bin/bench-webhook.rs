//! Benchmark of the admission webhook on a real control plane (etcd, kube-apiserver,
//! kube-controller-manager v1.36). Not a test: it measures and writes the results to
//! `docs/benchmarks.md`.
//!
//! The controller runs in this process throughout, reconciling every config as on a cluster
//! (its finalizer patches are updates the webhook reviews too). Each round creates N tenants
//! twice, in the same minute: once without the webhook registered (the baseline: what a create
//! costs the API server alone) and once with it (`failurePolicy: Fail`, called by URL over
//! HTTPS; the webhook is the library's router and TLS listener, as `tenant-mcp webhook` serves
//! them, in this process). Each tenant is a labelled namespace and a Secret (not timed) and a
//! TenantMcpConfig with a Postgres server referencing the Secret (timed: the client's create
//! call, end to end). The webhook's own time per review (from its request arriving to its
//! answer, so its reads from the API server included, TLS excluded) is recorded beside. Configs
//! accumulate across rounds, so later rounds review against more configs. Then a change of the
//! GlobalMcpConfig, which the webhook answers by listing every config to count the tenants a
//! policy would demote, is timed with and without the webhook.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tenant_mcp::admission::server;
use tenant_mcp::api::{GlobalMcpConfig, TenantMcpConfig};
use tenant_mcp_e2e::bench::{self, measured_line, ms, quantile};
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::tls::{Identity, TlsListener};
use tokio_util::sync::CancellationToken;

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants created per phase (one phase without the webhook, one with, per round).
    #[arg(long, env = "BENCH_TENANTS", default_value_t = 1000)]
    tenants: usize,
    /// Rounds.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3)]
    runs: usize,
    /// Creates in flight at once (a GitOps sync applies in parallel).
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// GlobalMcpConfig changes timed per phase.
    #[arg(long, default_value_t = 5)]
    global_changes: usize,
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, env = "BENCH_OUTPUT", default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

const CONFIGURATION: &str = "tenant-mcp-bench";

/// What the webhook answered, as the timing layer saw it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Review {
    CreateTenant,
    UpdateTenant,
    Global,
}

type Samples = Arc<Mutex<Vec<(Review, Duration)>>>;

/// Times each review from its request to the webhook's answer.
async fn timed(State(samples): State<Samples>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 8 << 20)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let review = if text.contains(r#""kind":"GlobalMcpConfig""#) {
        Review::Global
    } else if text.contains(r#""operation":"CREATE""#) {
        Review::CreateTenant
    } else {
        Review::UpdateTenant
    };
    let started = Instant::now();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Ok(mut samples) = samples.lock() {
        samples.push((review, started.elapsed()));
    }
    response
}

/// One phase's figures.
struct Phase {
    round: usize,
    webhook: bool,
    /// Configs in the cluster before the phase.
    present: usize,
    creates: Vec<Duration>,
    /// The webhook's own time for the creates, and for the controller's updates.
    reviews_create: Vec<Duration>,
    reviews_update: Vec<Duration>,
    globals: Vec<Duration>,
    reviews_global: Vec<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::bench::start();
    let cluster = Cluster::local(Default::default()).await?;
    cluster.install_crds().await?;
    let client = cluster.client();
    set_global(&client, &["5432"]).await?;

    let samples: Samples = Arc::default();
    let identity = Identity::generate("tenant-mcp-webhook", &[]).map_err(anyhow::Error::msg)?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = tcp.local_addr()?.port();
    let listener = TlsListener::new(tcp, identity.server_config().map_err(anyhow::Error::msg)?)?;
    let app = server::router(client.clone())
        .layer(axum::middleware::from_fn_with_state(samples.clone(), timed));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let shutdown = CancellationToken::new();
    let controller = tokio::spawn(tenant_mcp::controller::run(
        client.clone(),
        tenant_mcp::controller::Settings {
            identity: "bench".into(),
            ..Default::default()
        },
        None,
        shutdown.clone(),
        None,
    ));

    let pure = pure_review_times(2000);

    let mut phases = Vec::new();
    let mut present = 0;
    for round in 1..=args.runs {
        for webhook in [false, true] {
            if webhook {
                register(&client, port, &identity.ca_pem).await?;
            } else {
                unregister(&client).await?;
            }
            eprintln!("round {round}: {} tenants, webhook {webhook}", args.tenants);
            let prefix = format!("r{round}-{}", if webhook { "on" } else { "off" });
            prepare(&client, &prefix, args.tenants).await?;
            take(&samples);
            let creates = create_configs(&client, &prefix, args.tenants, args.concurrency).await?;
            // The controller's finalizer patches of these configs follow the creates.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let reviewed = take(&samples);
            let mut globals = Vec::new();
            for i in 0..args.global_changes {
                let ports = if i % 2 == 0 {
                    ["5432", "443"]
                } else {
                    ["443", "5432"]
                };
                let started = Instant::now();
                set_global(&client, &ports).await?;
                globals.push(started.elapsed());
            }
            let reviewed_globals = take(&samples);
            let of = |samples: &[(Review, Duration)], kind: Review| {
                let mut d: Vec<Duration> = samples
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, d)| *d)
                    .collect();
                d.sort_unstable();
                d
            };
            phases.push(Phase {
                round,
                webhook,
                present,
                creates,
                reviews_create: of(&reviewed, Review::CreateTenant),
                reviews_update: of(&reviewed, Review::UpdateTenant),
                globals: sorted(globals),
                reviews_global: of(&reviewed_globals, Review::Global),
            });
            present += args.tenants;
        }
    }
    unregister(&client).await?;
    shutdown.cancel();
    controller.await.context("controller task")??;

    let mut report = render(&phases, args.concurrency);
    report.push_str(&format!(
        "\nThe review alone (`admission::review::review`, no I/O: the checks `tenant-mcp validate` \
runs, for one config with a Postgres server, with the GlobalMcpConfig and the namespace label at \
hand), {} calls one after another: p50 {}, p99 {}.\n",
        pure.len(),
        ms(quantile(&pure, 0.50)),
        ms(quantile(&pure, 0.99))
    ));
    println!("{report}");
    let body = format!(
        "{}\n\n{}\n\n{report}",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-webhook"),
        METHOD
    );
    bench::write_section(
        &args.output,
        "bench-webhook",
        "Admission webhook: what it adds to a write",
        &body,
    )?;
    Ok(())
}

const METHOD: &str = "Method: one process starts a real control plane (etcd, kube-apiserver and \
kube-controller-manager v1.36 on loopback) and runs the controller, reconciling every config \
throughout, and the webhook (the library's router and TLS listener, as `tenant-mcp webhook` \
serves them; registered by URL with `failurePolicy: Fail`). Each round creates N tenants twice, \
in the same minute: without the webhook registered (the baseline) and with it. A tenant is a \
labelled namespace and a credentials Secret (made first, not timed) and a TenantMcpConfig with a \
Postgres server naming the Secret: its create call is timed end to end, at the stated number in \
flight. For each review the webhook's own time is recorded too: from the request reaching it to \
its answer, its reads from the API server included (the GlobalMcpConfig, the namespace's label, \
the configs claiming the tenant by field selector; since issue 34 no Secret), TLS excluded. Configs \
stay, so later phases run against more of them. Then the GlobalMcpConfig is changed (its policy); \
since issue 34 the webhook reads nothing more for it (it no longer counts the tenants the new \
policy would demote).";

/// The pure review's time for a typical create, `n` times.
fn pure_review_times(n: usize) -> Vec<Duration> {
    use tenant_mcp::admission::review::{Cluster as Held, review};
    let object = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "config", "namespace": "t-00001"},
        "spec": {"tenantId": "t-00001", "servers": {"postgres": {
            "host": "127.0.0.1", "port": 5432, "database": "rag", "sslMode": "disable",
            "credentialsSecretRef": {"name": "pg"}}}}
    });
    let global = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {"endpointPolicy": {"allowLoopback": true, "allowedPorts": ["5432"]}}
    });
    let held = Held {
        global: Some(&global),
        namespace_label: Some("t-00001"),
        ..Held::default()
    };
    let times = (0..n)
        .map(|_| {
            let started = Instant::now();
            let verdict = review(&object, None, &held);
            let elapsed = started.elapsed();
            assert!(verdict.allowed(), "{verdict:?}");
            elapsed
        })
        .collect();
    sorted(times)
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort_unstable();
    v
}

fn take(samples: &Samples) -> Vec<(Review, Duration)> {
    samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

async fn set_global(client: &kube::Client, ports: &[&str]) -> anyhow::Result<()> {
    let global = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {"endpointPolicy": {"allowLoopback": true, "allowedPorts": ports}}
    });
    Api::<GlobalMcpConfig>::all(client.clone())
        .patch(
            "default",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&global),
        )
        .await?;
    Ok(())
}

/// The config every tenant-mcp webhook refuses.
fn canary() -> anyhow::Result<TenantMcpConfig> {
    Ok(serde_yaml_ng::from_str(tenant_mcp_e2e::webhook::CANARY)?)
}

/// Whether the API server calls the webhook now (a dry run of the canary is refused by it).
async fn called(client: &kube::Client) -> anyhow::Result<bool> {
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match configs.create(&dry, &canary()?).await {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(status)) if status.message.contains("denied the request") => Ok(true),
        Err(e) => Err(e.into()),
    }
}

async fn wait_called(client: &kube::Client, want: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while called(client).await? != want {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the API server did not {} calling the webhook within 60 s",
            if want { "start" } else { "stop" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn register(client: &kube::Client, port: u16, ca_pem: &str) -> anyhow::Result<()> {
    let configuration =
        tenant_mcp_e2e::webhook::configuration_by_url(CONFIGURATION, port, ca_pem, "Fail");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await?;
    wait_called(client, true).await
}

async fn unregister(client: &kube::Client) -> anyhow::Result<()> {
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    if configurations.get_opt(CONFIGURATION).await?.is_some() {
        configurations
            .delete(CONFIGURATION, &DeleteParams::default())
            .await?;
    }
    wait_called(client, false).await
}

/// Tenant `i` of phase `prefix`: its id and namespace name.
fn tenant(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

/// The namespaces (bound to their tenants) and credential Secrets of a phase.
async fn prepare(client: &kube::Client, prefix: &str, n: usize) -> anyhow::Result<()> {
    let make = |i: usize| {
        let client = client.clone();
        let id = tenant(prefix, i);
        async move {
            Api::<Namespace>::all(client.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(serde_json::json!({
                        "metadata": {"name": id, "labels": {"tenantmcp.dev/tenant": id}}
                    }))?,
                )
                .await?;
            Api::<Secret>::namespaced(client, &id)
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(serde_json::json!({
                        "metadata": {"name": "pg"},
                        "stringData": {"username": "app", "password": "bench"}
                    }))?,
                )
                .await?;
            anyhow::Ok(())
        }
    };
    futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
}

/// Creates the phase's configs, `concurrency` at a time; each create's time.
async fn create_configs(
    client: &kube::Client,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let create = |i: usize| {
        let client = client.clone();
        let id = tenant(prefix, i);
        async move {
            let config: TenantMcpConfig = serde_json::from_value(serde_json::json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "config"},
                "spec": {"tenantId": id, "servers": {"postgres": {
                    "host": "127.0.0.1", "port": 5432, "database": "rag", "sslMode": "disable",
                    "credentialsSecretRef": {"name": "pg"}}}}
            }))?;
            let started = Instant::now();
            Api::<TenantMcpConfig>::namespaced(client, &id)
                .create(&PostParams::default(), &config)
                .await
                .with_context(|| format!("creating the config of {id}"))?;
            anyhow::Ok(started.elapsed())
        }
    };
    let times: Vec<Duration> = futures::stream::iter(0..n)
        .map(create)
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(sorted(times))
}

fn cells(d: &[Duration]) -> String {
    if d.is_empty() {
        return "– | – | –".into();
    }
    format!(
        "{} | {} | {}",
        ms(quantile(d, 0.50)),
        ms(quantile(d, 0.99)),
        ms(quantile(d, 0.999))
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn render(phases: &[Phase], concurrency: usize) -> String {
    let mut out = format!(
        "Creating a TenantMcpConfig ({concurrency} in flight), by the client, and the webhook's own \
time for it:\n\n\
| round | webhook | configs already there | creates | create p50 | p99 | p99.9 | webhook's own p50 | p99 | p99.9 |\n\
|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for p in phases {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            p.round,
            if p.webhook { "on" } else { "off" },
            p.present,
            p.creates.len(),
            cells(&p.creates),
            // Empty without the webhook: dashes.
            cells(&p.reviews_create),
        ));
    }
    // Over the rounds, the median of `f(without, with)` for the creates' `q` quantiles.
    let per_round = |q: f64, f: fn(f64, f64) -> f64| {
        median(
            phases
                .chunks(2)
                .filter_map(|pair| match pair {
                    [off, on] => Some(f(
                        quantile(&off.creates, q).as_secs_f64(),
                        quantile(&on.creates, q).as_secs_f64(),
                    )),
                    _ => None,
                })
                .collect(),
        )
    };
    let ratio = |q| per_round(q, |off, on| on / off);
    let added = |q| per_round(q, |off, on| (on - off) * 1e3);
    out.push_str(&format!(
        "\nMedian over the rounds, with the webhook against without in the same round: create p50 \
×{:.2} ({:+.2} ms), p99 ×{:.2} ({:+.2} ms).\n",
        ratio(0.50),
        added(0.50),
        ratio(0.99),
        added(0.99)
    ));
    let updates: Vec<&Phase> = phases.iter().filter(|p| p.webhook).collect();
    out.push_str(
        "\nThe controller's own writes of the same configs that the webhook reviews (the finalizer \
patch: `spec` unchanged, always allowed), the webhook's own time:\n\n\
| round | reviews | p50 | p99 | p99.9 |\n|---|---|---|---|---|\n",
    );
    for p in &updates {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            p.round,
            p.reviews_update.len(),
            cells(&p.reviews_update)
        ));
    }
    out.push_str(
        "\nChanging the GlobalMcpConfig's policy (server-side apply), by the client, and the \
webhook's own time (it reads every config):\n\n\
| round | webhook | configs there | changes | p50 | p99 | webhook's own p50 | p99 |\n\
|---|---|---|---|---|---|---|---|\n",
    );
    for p in phases {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.round,
            if p.webhook { "on" } else { "off" },
            p.present + p.creates.len(),
            p.globals.len(),
            ms(quantile(&p.globals, 0.50)),
            ms(quantile(&p.globals, 0.99)),
            if p.webhook {
                ms(quantile(&p.reviews_global, 0.50))
            } else {
                "–".into()
            },
            if p.webhook {
                ms(quantile(&p.reviews_global, 0.99))
            } else {
                "–".into()
            },
        ));
    }
    out
}

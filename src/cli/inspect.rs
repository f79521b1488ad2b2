//! `tenant-mcp status` and `tenant-mcp route`: what serves each tenant right now and why,
//! computed by the client library's own routing from what the cluster holds
//! ([`tenant_mcp::client::inspect`]). Against any kubeconfig; read-only.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tenant_mcp::client::inspect::{ClusterView, EventLine, recent_events};
use tenant_mcp::client::report::{RouteAnswer, StatusReport, TenantStatus, route};
use tenant_mcp::config::candidate::ServerKey;

use super::database::block_on;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Text,
    /// JSON, for scripts.
    Json,
    /// YAML.
    Yaml,
}

/// When to colour text output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this tenant, in detail: conditions, recent Events, the binding rule's verdict on
    /// every config that claims it, and (with `--database-url`) its mirror row's version.
    #[arg(long, env = "TENANT_MCP_STATUS_TENANT")]
    pub tenant: Option<String>,
    /// Output format.
    #[arg(short, long, env = "TENANT_MCP_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Colour (text output only).
    #[arg(long, env = "TENANT_MCP_COLOR", value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Postgres URL of the mirror database, to show the tenant's row version (with
    /// `--tenant`). Prefer the environment variable.
    #[arg(long, env = "TENANT_MCP_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Arguments of `route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The tenant.
    #[arg(long, env = "TENANT_MCP_ROUTE_TENANT")]
    pub tenant: String,
    /// Only this server type (`postgres`, `minio`, `aiMcpServer`, `mcpServers.<name>`).
    #[arg(long, env = "TENANT_MCP_ROUTE_SERVER")]
    pub server: Option<String>,
    /// Output format.
    #[arg(short, long, env = "TENANT_MCP_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn print_structured<T: Serialize>(value: &T, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        Output::Text => {}
    }
    Ok(())
}

async fn view(tenant: Option<&str>) -> anyhow::Result<(kube::Client, ClusterView)> {
    tenant_mcp::probe::install_crypto_provider();
    let kube = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster, KUBECONFIG or ~/.kube/config)")?;
    let view = ClusterView::load(kube.clone(), tenant).await?;
    Ok((kube, view))
}

/// `status` with the detail of one tenant.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Detailed {
    #[serde(flatten)]
    report: StatusReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror_version: Option<Option<i64>>,
}

/// Runs `status`: exit 0 when every tenant is served as declared, 1 when any needs attention.
pub fn run_status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(t) = &args.tenant {
        tenant_mcp::config::validate::check_tenant_id(t).map_err(anyhow::Error::msg)?;
    }
    block_on(async {
        let (kube, view) = view(args.tenant.as_deref()).await?;
        let report = StatusReport::build(&view);
        let mut detailed = Detailed {
            report,
            conditions: None,
            events: None,
            mirror_version: None,
        };
        if let Some(tenant) = &args.tenant {
            let claims: Vec<_> = view.claims(tenant).into_iter().map(|(c, _)| c).collect();
            detailed.conditions = view
                .serving(tenant)
                .and_then(|c| c.status.as_ref())
                .and_then(|s| serde_json::to_value(&s.conditions).ok());
            detailed.events = Some(recent_events(kube, &claims, 10).await?);
            if let Some(url) = &args.database_url {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .context("connecting to --database-url")?;
                detailed.mirror_version =
                    Some(tenant_mcp::mirror::row_version(&pool, tenant).await?);
            }
        }
        let healthy = detailed.report.healthy;
        match args.output {
            Output::Text => {
                let color = match args.color {
                    Color::Always => true,
                    Color::Never => false,
                    Color::Auto => {
                        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                    }
                };
                print!(
                    "{}",
                    render_status(&detailed, color, jiff::Timestamp::now())
                );
            }
            other => print_structured(&detailed, other)?,
        }
        Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })?
}

/// Runs `route`: exit 0 when every server type asked about is served, 1 when any is not.
pub fn run_route(args: &RouteArgs) -> anyhow::Result<ExitCode> {
    tenant_mcp::config::validate::check_tenant_id(&args.tenant).map_err(anyhow::Error::msg)?;
    let keys: Vec<ServerKey> = match &args.server {
        Some(s) => vec![ServerKey::parse(s).with_context(|| {
            format!("--server {s:?}: expected postgres, minio, aiMcpServer or mcpServers.<name>")
        })?],
        None => Vec::new(),
    };
    block_on(async {
        let (_, view) = view(Some(&args.tenant)).await?;
        let answers = route(&view, &args.tenant, &keys);
        match args.output {
            Output::Text => print!("{}", render_route(&args.tenant, &answers)),
            other => print_structured(&answers, other)?,
        }
        let served = answers
            .iter()
            .all(|a| matches!(a.served_from, "tenant" | "global"));
        Ok(if served {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })?
}

/// `route`'s text: one line per server type.
pub fn render_route(tenant: &str, answers: &[RouteAnswer]) -> String {
    let mut out = String::new();
    if answers.is_empty() {
        let _ = writeln!(
            out,
            "{tenant}: no server type is declared by a config of this tenant or the global config"
        );
    }
    for a in answers {
        let target = match (&a.endpoint, &a.reason) {
            (Some(e), _) => e.clone(),
            (None, Some(r)) => format!("no server ({r})"),
            (None, None) => "no server".to_owned(),
        };
        let _ = writeln!(
            out,
            "{tenant} {} -> {}: {target}\n    because {}",
            a.server, a.served_from, a.because
        );
    }
    out
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn age(now: jiff::Timestamp, then: Option<jiff::Timestamp>) -> String {
    let Some(then) = then else {
        return "-".into();
    };
    let secs = now.duration_since(then).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

/// `status`'s text: a header line, then a table of tenants by server type, then (with
/// `--tenant`) the details. Colour marks what needs attention.
fn render_status(d: &Detailed, color: bool, now: jiff::Timestamp) -> String {
    let r = &d.report;
    let mut out = String::new();
    let flag = if r.tenant_configs_enabled {
        paint("on", "32", color)
    } else {
        paint("off (every tenant on the global servers)", "33", color)
    };
    let degraded = r.tenants.iter().filter(|t| t.degraded).count();
    let tenants = match r.tenants.len() {
        1 => "1 tenant".to_owned(),
        n => format!("{n} tenants"),
    };
    let _ = writeln!(
        out,
        "tenant configs: {flag} · endpoint policy: {} · {tenants}, {degraded} need attention",
        r.policy,
    );
    let _ = writeln!(out);
    out.push_str(&table(&server_rows(r, now), color));
    details(&mut out, d, color, now);
    out
}

/// The table's header.
const HEADER: [&str; 11] = [
    "TENANT",
    "SERVER",
    "SERVED FROM",
    "ENDPOINT",
    "DESIRED",
    "ACTIVE",
    "STATE",
    "REASON",
    "CHECKED",
    "LATENCY",
    "SNAPSHOT",
];

/// One row per tenant and server type (one for a tenant without servers): each cell with its
/// colour code (empty: none).
fn server_rows(r: &StatusReport, now: jiff::Timestamp) -> Vec<Vec<(String, &'static str)>> {
    let mut rows: Vec<Vec<(String, &'static str)>> = Vec::new();
    for t in &r.tenants {
        if t.servers.is_empty() {
            rows.push(vec![
                (t.tenant.clone(), ""),
                ("-".into(), ""),
                ("global".into(), ""),
            ]);
        }
        for s in &t.servers {
            let served = match (&s.reason, s.served_from) {
                (Some(reason), "unavailable") => (format!("unavailable: {reason}"), "31"),
                (_, "notConfigured") => ("not configured".to_owned(), "31"),
                (_, from) => (from.to_owned(), ""),
            };
            let active = match (&s.active, s.pending_change) {
                (Some(a), true) => (format!("{a} (pending change)"), "33"),
                (None, true) => ("- (pending change)".to_owned(), "33"),
                (Some(a), false) => (a.clone(), ""),
                (None, false) => ("-".to_owned(), ""),
            };
            let state = match s.state.as_deref() {
                Some("Healthy") => ("Healthy".to_owned(), "32"),
                Some("Failing") => ("Failing".to_owned(), "31"),
                Some(other) => (other.to_owned(), "33"),
                None => ("-".to_owned(), ""),
            };
            rows.push(vec![
                (t.tenant.clone(), ""),
                (s.server.clone(), ""),
                served,
                (s.endpoint.clone().unwrap_or_else(|| "-".into()), ""),
                (s.desired.clone().unwrap_or_else(|| "-".into()), ""),
                active,
                state,
                (s.check_reason.clone().unwrap_or_else(|| "-".into()), ""),
                (age(now, s.last_check), ""),
                (
                    s.latency_ms
                        .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
                    "",
                ),
                (s.snapshot.clone().unwrap_or_else(|| "-".into()), ""),
            ]);
        }
    }
    rows
}

/// The header and `rows` in columns as wide as their widest cell, painted when `color`.
fn table(rows: &[Vec<(String, &'static str)>], color: bool) -> String {
    let mut out = String::new();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, (text, _)) in row.iter().enumerate() {
            widths[i] = widths[i].max(text.chars().count());
        }
    }
    let line = |cells: Vec<(String, &str)>| -> String {
        let n = cells.len();
        let mut text = String::new();
        for (i, (cell, code)) in cells.into_iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let painted = if code.is_empty() {
                cell
            } else {
                paint(&cell, code, color)
            };
            text.push_str(&painted);
            if i + 1 < n {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_owned()
    };
    let _ = writeln!(
        out,
        "{}",
        line(HEADER.iter().map(|h| ((*h).to_owned(), "")).collect())
    );
    for row in rows {
        let _ = writeln!(out, "{}", line(row.clone()));
    }
    out
}

/// What follows the table: refused configs, and for one tenant its conditions, claims, the
/// reason of each route, recent events and the mirror row's version.
fn details(out: &mut String, d: &Detailed, color: bool, now: jiff::Timestamp) {
    let r = &d.report;
    for t in r
        .tenants
        .iter()
        .filter(|t| t.claims.iter().any(|c| !c.serving))
    {
        let _ = writeln!(out);
        refused(out, t, color);
    }
    if let Some(conditions) = &d.conditions {
        let _ = writeln!(out, "\nconditions:");
        for c in conditions.as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                c["type"].as_str().unwrap_or_default(),
                c["status"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            );
        }
    }
    if let Some(t) = r.tenants.first().filter(|_| d.events.is_some()) {
        let _ = writeln!(out, "\nconfigs claiming {}:", t.tenant);
        for c in &t.claims {
            let verdict = if c.serving {
                paint("serves", "32", color)
            } else {
                paint(&c.verdict, "31", color)
            };
            let _ = writeln!(out, "  {}: {verdict}", c.config);
        }
        let _ = writeln!(out, "\nwhy each server type is served from where it is:");
        for s in &t.servers {
            let _ = writeln!(out, "  {} ({}): {}", s.server, s.served_from, s.because);
        }
    }
    if let Some(events) = &d.events {
        let _ = writeln!(out, "\nrecent events:");
        if events.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for e in events {
            let _ = writeln!(
                out,
                "  {} {} {} {}: {}",
                age(now, e.time),
                e.kind,
                e.reason,
                e.config,
                e.note
            );
        }
    }
    if let Some(version) = &d.mirror_version {
        let text = version.map_or_else(|| "no row".to_owned(), |v| v.to_string());
        let _ = writeln!(out, "\nmirror row version: {text}");
    }
}

fn refused(out: &mut String, t: &TenantStatus, color: bool) {
    for c in t.claims.iter().filter(|c| !c.serving) {
        let _ = writeln!(
            out,
            "{} config {} does not serve {}: {}",
            paint("!", "31", color),
            c.config,
            t.tenant,
            c.verdict
        );
    }
}

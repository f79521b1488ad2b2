//! What the bench binaries share: quantiles of timings, their formatting, and writing one
//! section of `docs/benchmarks.md` (between `<!-- <name>:begin -->` and `<!-- <name>:end -->`)
//! without touching the others.

use std::path::Path;
use std::time::Duration;

/// What every bench binary does first: logs to stderr (`RUST_LOG`, warnings by default, so
/// stdout carries only the report) and *ring* as the TLS provider.
pub fn start() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    crate::stack::install_crypto_provider();
}

/// The `q` quantile (0..=1) of `sorted` (nearest rank); zero for no samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `d` in microseconds, two decimals.
pub fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

/// `d` in milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The date and machine line every section starts with, for `command`.
pub fn measured_line(command: &str) -> String {
    format!(
        "Measured {} on {} CPUs, `{command}`.",
        jiff::Zoned::now().strftime("%Y-%m-%d"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// Replaces section `name` of the Markdown file at `path` with `title` and `body` (appends it
/// when the file has none yet).
pub fn write_section(path: &Path, name: &str, title: &str, body: &str) -> std::io::Result<()> {
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{begin}\n## {title}\n\n{body}\n{end}");
    let updated = match (existing.find(&begin), existing.find(&end)) {
        (Some(b), Some(e)) => format!("{}{section}{}", &existing[..b], &existing[e + end.len()..]),
        _ => format!("{}\n\n{section}\n", existing.trim_end()),
    };
    std::fs::write(path, updated)
}

/// The chart's Deployments whose default memory limit the benchmarks check: (key in
/// `values.yaml`, the `tenant-mcp` subcommand its container runs).
pub const CHART_PROCESSES: [(&str, &str); 3] = [
    ("controller", "controller"),
    ("webhook", "webhook"),
    ("mcpServer", "mcp-server"),
];

/// Headroom every default memory limit keeps above the peak measured at 10,000 configs.
pub const LIMIT_HEADROOM: f64 = 1.3;

/// Bytes of a Kubernetes memory quantity (`256Mi`, `1Gi`, `500M`, `1048576`).
pub fn memory_quantity(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (number, unit) = q.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// The allocator settings the chart gives every tenant-mcp container (`malloc` in its
/// `values.yaml`, as glibc's environment variables), for processes that stand in for its Pods:
/// measured without them, a process would hold more than the Pod does.
pub fn chart_allocator_env() -> anyhow::Result<Vec<(&'static str, String)>> {
    let path = crate::stack::repo_root().join("charts/tenant-mcp/values.yaml");
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path)?)?;
    Ok([
        ("arenaMax", "MALLOC_ARENA_MAX"),
        ("mmapThreshold", "MALLOC_MMAP_THRESHOLD_"),
    ]
    .into_iter()
    .filter_map(|(key, var)| match values["malloc"][key].as_u64() {
        Some(n) if n > 0 => Some((var, n.to_string())),
        _ => None,
    })
    .collect())
}

/// The default `resources.limits.memory` of each of [`CHART_PROCESSES`] in the chart's
/// `values.yaml`, in bytes, by values key.
pub fn chart_memory_limits() -> anyhow::Result<Vec<(&'static str, u64)>> {
    use anyhow::Context as _;
    let path = crate::stack::repo_root().join("charts/tenant-mcp/values.yaml");
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path)?)?;
    CHART_PROCESSES
        .iter()
        .map(|(key, _)| {
            let limit = values[*key]["resources"]["limits"]["memory"]
                .as_str()
                .with_context(|| format!("{key}.resources.limits.memory in {}", path.display()))?;
            let bytes = memory_quantity(limit)
                .with_context(|| format!("{key}.resources.limits.memory {limit:?}"))?;
            Ok((*key, bytes))
        })
        .collect()
}

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

//! The Dockerfile cannot be built on this machine (no container runtime), so this keeps it
//! consistent with what can be checked: it builds the binary Cargo builds, with a toolchain at
//! least the crate's rust-version, runs it as the user the chart's securityContext names, and
//! every subcommand the chart passes exists.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_dockerfile_matches_the_crate_and_the_chart() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked --bin tenant-mcp"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/tenant-mcp"]"#));

    // The builder's toolchain is at least the crate's rust-version.
    let manifest = read("Cargo.toml");
    let required = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let builder = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|l| l.split('-').next())
        .unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        version(builder) >= version(required),
        "rust:{builder} < rust-version {required}"
    );

    // The runtime user is the chart's.
    let helpers = read("charts/tenant-mcp/templates/_helpers.tpl");
    let uid = helpers
        .lines()
        .find_map(|l| l.trim().strip_prefix("runAsUser: "))
        .unwrap();
    assert!(
        dockerfile.contains(&format!("USER {uid}:{uid}")),
        "chart runs as {uid}"
    );

    // Every subcommand the chart runs exists.
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/tenant-mcp/templates");
    let mut commands = Vec::new();
    for entry in std::fs::read_dir(templates).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(args) = line.trim().strip_prefix("args: [") {
                let args: Vec<String> = args
                    .trim_end_matches(']')
                    .split(',')
                    .map(|a| a.trim().to_owned())
                    .collect();
                commands.push(args);
            }
        }
    }
    assert!(commands.len() >= 3, "{commands:?}");
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_tenant-mcp"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tenant-mcp {args:?} --help: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

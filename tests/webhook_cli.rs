//! `tenant-mcp webhook`'s usage errors: they happen before any connection, so no cluster is
//! needed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

fn stderr_of(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenant-mcp"))
        .arg("webhook")
        .args(args)
        // The chart's variables must not leak in from the environment running the tests.
        .env_remove("TENANT_MCP_WEBHOOK_CERT_FILE")
        .env_remove("TENANT_MCP_WEBHOOK_CERT_SECRET")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_a_certificate_source_both_ways_are_named() {
    let (ok, stderr) = stderr_of(&[]);
    assert!(!ok);
    assert!(
        stderr.contains("--tls-cert-file") && stderr.contains("--certificate-secret"),
        "{stderr}"
    );
}

/// The arguments of the mode in which the webhook makes its own certificate.
const SELF_SIGNED: [&str; 6] = [
    "--certificate-secret",
    "s",
    "--webhook-configuration",
    "w",
    "--service",
    "x",
];

#[test]
fn the_two_certificate_sources_exclude_each_other_and_lifetimes_are_checked() {
    let files = ["--tls-cert-file", "a", "--tls-key-file", "b"];
    let (ok, stderr) = stderr_of(&[&files[..], &SELF_SIGNED].concat());
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (ok, stderr) = stderr_of(&[&SELF_SIGNED[..], &["--certificate-lifetime", "90d"]].concat());
    assert!(!ok);
    assert!(
        stderr.contains("--certificate-lifetime") && stderr.contains("2160h"),
        "{stderr}"
    );
    let (ok, stderr) = stderr_of(&["--certificate-secret", "s"]);
    assert!(!ok);
    assert!(
        stderr.contains("--webhook-configuration") && stderr.contains("--service"),
        "{stderr}"
    );
}

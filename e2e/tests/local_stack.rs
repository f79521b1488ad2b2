//! The `local-stack` binary starts every server, writes a working kubeconfig and env file,
//! and tears everything down on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn local_stack_serves_until_terminated_then_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-stack"))
        .arg("--state-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let env_file = dir.path().join("env");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !env_file.exists() {
        assert!(Instant::now() < deadline, "no env file");
        assert!(
            child.try_wait().unwrap().is_none(),
            "local-stack exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    let env = parse_env(&std::fs::read_to_string(&env_file).unwrap());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // kubectl reaches the stand-in with the kubeconfig, and the CRDs are installed.
    let out = Command::new(tenant_mcp_e2e::harness::kubectl_path())
        .env("KUBECONFIG", &env["KUBECONFIG"])
        .args(["get", "crd", "-o", "name"])
        .output()
        .unwrap();
    let crds = String::from_utf8_lossy(&out.stdout);
    assert!(
        crds.contains("tenantmcpconfigs.tenantmcp.dev"),
        "{crds} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(crds.contains("globalmcpconfigs.tenantmcp.dev"), "{crds}");

    let ports: Vec<u16> = [
        "STACK_S3_ENDPOINT",
        "STACK_ACME_S3_ENDPOINT",
        "STACK_AI_MCP_URL",
        "STACK_ACME_AI_MCP_URL",
        "STACK_MCP_EVERYTHING_URL",
    ]
    .iter()
    .map(|k| {
        let url = &env[*k];
        let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
        port.parse().unwrap()
    })
    .collect();
    for port in &ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            "port {port} serves"
        );
    }
    assert!(env["STACK_DATABASE_URL"].starts_with("postgres://postgres:"));

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("local stack up in"), "{stdout}");
    assert!(stdout.contains("local stack stopped"), "{stdout}");
    assert!(!env_file.exists(), "the env file goes with the stack");
    for port in &ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} closed"
        );
    }
}

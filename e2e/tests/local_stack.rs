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

/// Starts `local-stack` with its state in `dir`; returns it once its env file is written.
fn start_stack(dir: &std::path::Path) -> (std::process::Child, HashMap<String, String>) {
    start_stack_in(dir, |_| {})
}

/// [`start_stack`] with `setup` applied to the command first.
fn start_stack_in(
    dir: &std::path::Path,
    setup: impl FnOnce(&mut Command),
) -> (std::process::Child, HashMap<String, String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-stack"));
    command
        .arg("--state-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    setup(&mut command);
    let mut child = command.spawn().unwrap();
    let env_file = dir.join("env");
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
    (child, env)
}

/// The port of the Kubernetes API server in the kubeconfig at `path`.
fn api_port(path: &str) -> u16 {
    let text = std::fs::read_to_string(path).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap();
    server.rsplit(':').next().unwrap().parse().unwrap()
}

/// The port of a `postgres://…@127.0.0.1:<port>/…` URL.
fn postgres_port(url: &str) -> u16 {
    url.rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn local_stack_serves_until_terminated_then_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (child, env) = start_stack(dir.path());
    let env_file = dir.path().join("env");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // kubectl reaches the control plane with the kubeconfig, and the CRDs are installed.
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

/// Waits up to 15 s for every one of `ports` to stop serving, `after` saying why they should.
fn assert_closed_soon(ports: &[u16], after: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for &port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {port} still serves after {after}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A test or stack killed outright (SIGKILL: a test's timeout, an interrupted benchmark) runs
/// no destructor; its control plane and Postgres must still go, not run on through the suite.
#[test]
fn a_killed_stack_leaves_no_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, env) = start_stack(dir.path());
    let ports = [
        api_port(&env["KUBECONFIG"]),
        postgres_port(&env["STACK_DATABASE_URL"]),
    ];
    for port in ports {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_closed_soon(&ports, "its stack was killed");
}

/// cargo-nextest ends a test that overran its timeout by killing the test's whole process
/// group. The reapers watching the stack's servers were in that group and died with it, so
/// the control plane ran on (found: a kube-apiserver, etcd and kube-controller-manager from a
/// timed-out test still up 40 minutes later). The reapers lead groups of their own now.
#[test]
fn a_stack_killed_with_its_process_group_leaves_no_server_behind() {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, env) = start_stack_in(dir.path(), |c| {
        c.process_group(0);
    });
    let ports = [
        api_port(&env["KUBECONFIG"]),
        postgres_port(&env["STACK_DATABASE_URL"]),
    ];
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
    assert_closed_soon(&ports, "its stack's process group was killed");
}

/// Without control-plane binaries the stack stops at once and says where they come from.
#[test]
fn local_stack_without_control_plane_binaries_says_where_they_come_from() {
    let empty = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_local-stack"))
        .arg("--state-dir")
        .arg(state.path())
        .arg("--check")
        .env("KUBEBUILDER_ASSETS", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for hint in [
        "etcd",
        "KUBEBUILDER_ASSETS",
        "setup-envtest use 1.36",
        "../shared/kube/install",
    ] {
        assert!(stderr.contains(hint), "no {hint:?} in: {stderr}");
    }
}

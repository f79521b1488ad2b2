//! `tenant-mcp validate` and `tenant-mcp crdgen` as a pipeline runs them: the real binary, the
//! shipped example manifests, exit codes and output formats.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tenant_mcp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-mcp"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the tenant-mcp binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The valid example set: namespaces, the global config and every tenant.
const VALID: &str =
    "examples/manifests/namespaces.yaml,examples/manifests/global,examples/manifests/tenants";

#[test]
fn the_valid_examples_pass() {
    let out = tenant_mcp(&["validate", "-f", VALID]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for object in [
        "GlobalMcpConfig default: valid",
        "TenantMcpConfig tenant-acme/acme: valid",
        "TenantMcpConfig tenant-globex/globex: valid",
        "TenantMcpConfig tenant-initech/initech: valid",
    ] {
        assert!(text.contains(object), "missing {object:?} in\n{text}");
    }
    assert!(
        text.contains("note: endpoint policy: from GlobalMcpConfig default"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "4 objects checked in 6 files: 4 valid, 0 invalid; 14 other objects skipped\n"
        ),
        "{text}"
    );
}

fn invalid_examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/manifests/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn expectations(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: ").map(str::to_owned))
        .collect()
}

/// Each file under `examples/manifests/invalid/` breaks one rule and names, in `# expect:`
/// lines, the errors it must produce: exactly those, no more.
#[test]
fn each_invalid_example_produces_exactly_its_errors() {
    let files = invalid_examples();
    assert!(
        files.len() >= 40,
        "expected one file per rule, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expected = expectations(file);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = tenant_mcp(&["validate", "-f", &rel]);
        let text = stdout(&out);
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.ends_with(": valid") && !l.contains(": warning: ") && !l.starts_with("note: ")
            })
            .filter(|l| !l.contains(" objects checked in "))
            .collect();
        let all_found = expected
            .iter()
            .all(|e| errors.iter().any(|l| l.contains(e.as_str())));
        if out.status.code() != Some(1) || errors.len() != expected.len() || !all_found {
            failures.push(format!(
                "{rel} (exit {:?}): expected {expected:#?}\ngot {errors:#?}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn json_output_for_pipelines() {
    let out = tenant_mcp(&[
        "validate",
        "-o",
        "json",
        "-f",
        "examples/manifests/invalid/port-out-of-range.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["summary"]["invalid"], 1);
    let object = &report["objects"][0];
    assert_eq!(object["kind"], "TenantMcpConfig");
    assert_eq!(object["namespace"], "tenant-acme");
    assert_eq!(object["name"], "acme");
    assert_eq!(object["errors"][0]["path"], "spec.servers.postgres.port");
    assert_eq!(object["errors"][0]["reason"], "FieldValueInvalid");
    assert_eq!(
        object["errors"][0]["message"],
        "must be 1..=65535, got 70000"
    );

    let out = tenant_mcp(&["validate", "--output", "json", "-f", VALID]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["summary"]["valid"], 4);
}

#[test]
fn unreadable_input_exits_2() {
    let out = tenant_mcp(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no/such/file.yaml: no such file or directory")
    );
}

#[test]
fn reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-mcp"))
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: a, namespace: n}\nspec: {tenantId: UPPER}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("-: TenantMcpConfig n/a: spec.tenantId: must be a DNS label"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn secret_values_never_reach_the_output() {
    for file in invalid_examples() {
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for format in ["text", "json"] {
            let text = stdout(&tenant_mcp(&["validate", "-o", format, "-f", &rel]));
            for secret in ["hunter2", "wJalrXUtnFEMI", "s3cret", "abc123"] {
                assert!(
                    !text.contains(secret),
                    "{rel} ({format}) leaks {secret:?}:\n{text}"
                );
            }
        }
    }
}

#[test]
fn crdgen_check_detects_stale_files() {
    assert_eq!(
        tenant_mcp(&["crdgen", "--check"]).status.code(),
        Some(0),
        "crds/ is stale"
    );
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_string_lossy().into_owned();
    assert_eq!(
        tenant_mcp(&["crdgen", "--out-dir", &dir_arg]).status.code(),
        Some(0)
    );
    assert_eq!(
        tenant_mcp(&["crdgen", "--check", "--out-dir", &dir_arg])
            .status
            .code(),
        Some(0)
    );
    let file = dir.path().join("tenantmcpconfigs.yaml");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("maximum: 65535.0", "maximum: 70000.0");
    std::fs::write(&file, edited).unwrap();
    let out = tenant_mcp(&["crdgen", "--check", "--out-dir", &dir_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenantmcpconfigs.yaml"));
}

/// `tenant-mcp validate` on `path`, killed if it runs past `limit` (a regression to the
/// scanner's quadratic time would otherwise hang the suite).
fn validate_with_watchdog(path: &Path, limit: std::time::Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-mcp"))
        .args(["validate", "-f"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("validate {} still ran after {limit:?}", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Input a pipeline should never have to wait on: 400 KB of nested brackets (before the limit,
/// about a minute in the YAML scanner), a 20 MiB file, block nesting past the limit. Each is
/// refused at once, before parsing, with exit 2 and the limit named. The watchdog only stops a
/// hang; how fast it is belongs in a benchmark, not an assertion.
#[test]
fn oversized_or_deeply_nested_input_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "nested.yaml",
            format!("a: {}1{}\n", "{a: ".repeat(100_000), "}".repeat(100_000)),
            "line 1: nested deeper than the limit of 64 levels (--max-depth)",
        ),
        (
            "brackets.json",
            format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)),
            "(--max-depth)",
        ),
        (
            "huge.yaml",
            "# padding\n".repeat(2 * 1024 * 1024),
            "more than the limit of 1048576 bytes (--max-file-bytes)",
        ),
        (
            "indented.yaml",
            (0..80).map(|i| format!("{}k:\n", "  ".repeat(i))).collect(),
            "line 65: nested deeper than the limit of 64 levels",
        ),
    ];
    for (name, text, says) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (code, out) = validate_with_watchdog(&path, std::time::Duration::from_secs(20));
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(says), "{name}: {out}");
    }
}

//! Issue 28: the validating admission webhook on a real kube-apiserver. The webhook is served
//! in this process over HTTPS (the library's router and TLS listener, as `tenant-mcp webhook`
//! serves them) and registered with a `ValidatingWebhookConfiguration` by URL; `kubectl
//! apply` then meets it as a platform engineer would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tenant_mcp::admission::server;
use tenant_mcp::config::manifest::{check_documents, parse_documents};
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::tls::{Identity, TlsListener};

/// Serves the webhook and registers it for tenant-mcp's resources; returns once the API server
/// calls it (a canary config with an inline password is refused by it).
async fn webhook(cluster: &Cluster) -> tokio::task::JoinHandle<()> {
    webhook_with(cluster, "Fail").await
}

/// [`webhook`] with failure policy `policy`.
async fn webhook_with(cluster: &Cluster, policy: &str) -> tokio::task::JoinHandle<()> {
    let identity = Identity::generate("tenant-mcp-webhook", &[]).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener::new(tcp, identity.server_config().unwrap()).unwrap();
    let client = cluster.client();
    let served = tokio::spawn(async move {
        let _ = axum::serve(listener, server::router(client)).await;
    });
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "tenant-mcp"},
        "webhooks": [{
            "name": "validate.tenantmcp.dev",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}{}", server::PATH),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&identity.ca_pem),
            },
            "rules": [{"apiGroups": ["tenantmcp.dev"], "apiVersions": ["v1alpha1"],
                       "operations": ["CREATE", "UPDATE"],
                       "resources": ["tenantmcpconfigs", "globalmcpconfigs"], "scope": "*"}],
            "failurePolicy": policy, "sideEffects": "None", "timeoutSeconds": 5,
            "admissionReviewVersions": ["v1"],
        }],
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(cluster.client())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    cluster.kubectl_ok(&["create", "namespace", "canary"]);
    let canary = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: canary, namespace: canary}\nspec:\n  tenantId: canary\n  servers:\n    mcpServers:\n    - {name: x, url: 'https://u:p@example.com/mcp'}\n";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], canary);
        if String::from_utf8_lossy(&out.stderr).contains("denied the request") {
            break;
        }
        if out.status.success() {
            cluster.kubectl(&["delete", "-n", "canary", "tenantmcpconfig", "canary"]);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API server never called the webhook"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    served
}

/// `validate`'s message with where the other config is (a file there, the cluster here) cut.
fn comparable(path: &str, message: &str) -> String {
    let message = match message.find(" in ") {
        Some(at) if message.contains("already has a config") => &message[..at],
        _ => message,
    };
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

fn yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).unwrap()
}

/// Every invalid example that reaches the webhook (it parses, and the CRD schema lets it
/// through) is refused by `kubectl apply` with each field path and message `tenant-mcp
/// validate` prints for it; the others are refused by the API server's own schema. Every valid
/// example is accepted, and a Secret not there yet is a warning kubectl prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_refuses_what_validate_refuses_with_the_same_message() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let served = webhook(&cluster).await;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut by_webhook, mut by_schema) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let source = file.display().to_string();
        let documents = parse_documents(&source, &text);
        let Ok(values) = documents
            .iter()
            .map(|d| d.content.clone())
            .collect::<Result<Vec<Value>, _>>()
        else {
            continue;
        };
        let Some(at) = values.iter().rposition(|v| {
            v["apiVersion"] == tenant_mcp::api::API_VERSION
                && matches!(
                    v["kind"].as_str(),
                    Some("TenantMcpConfig" | "GlobalMcpConfig")
                )
        }) else {
            continue;
        };
        let report = check_documents(&documents);
        let expected = &report.objects[at].errors;
        if expected.is_empty() {
            continue;
        }
        // Namespaces the file uses but does not declare exist bound to the tenant of the
        // config in them; the file's own documents go in first, the reviewed one last.
        for v in &values {
            let Some(ns) = v.pointer("/metadata/namespace").and_then(Value::as_str) else {
                continue;
            };
            let declared = values.iter().any(|d| {
                d["kind"] == "Namespace"
                    && d.pointer("/metadata/name").and_then(Value::as_str) == Some(ns)
            });
            if declared {
                continue;
            }
            let _ = cluster.kubectl(&["create", "namespace", ns]);
            if let Some(tenant) = v.pointer("/spec/tenantId").and_then(Value::as_str) {
                cluster.kubectl_ok(&[
                    "label",
                    "--overwrite",
                    "namespace",
                    ns,
                    &format!("tenantmcp.dev/tenant={tenant}"),
                ]);
            }
        }
        for (i, v) in values.iter().enumerate().filter(|(i, _)| *i != at) {
            let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &yaml(v));
            assert!(
                out.status.success(),
                "{source}: document {} was refused: {}",
                i + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &yaml(&values[at]));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{source}: accepted");
        if stderr.contains("denied the request") {
            for e in expected.iter() {
                let want = comparable(&e.path.to_string(), &e.message);
                assert!(
                    stderr.contains(&want),
                    "{source}: kubectl said\n{stderr}\nnot\n{want}"
                );
            }
            by_webhook += 1;
        } else {
            by_schema += 1;
        }
        cluster.kubectl(&["delete", "tenantmcpconfigs", "--all", "-A", "--wait=false"]);
        cluster.kubectl(&["delete", "globalmcpconfigs", "--all", "--wait=false"]);
        for v in values.iter().filter(|v| v["kind"] == "Secret") {
            let (Some(name), Some(ns)) = (
                v.pointer("/metadata/name").and_then(Value::as_str),
                v.pointer("/metadata/namespace").and_then(Value::as_str),
            ) else {
                continue;
            };
            cluster.kubectl(&["delete", "secret", "-n", ns, name, "--wait=false"]);
        }
    }
    eprintln!("refused by the webhook: {by_webhook}; by the API server's schema: {by_schema}");
    assert!(
        by_webhook >= 25,
        "only {by_webhook} examples reached the webhook"
    );

    // The valid examples: accepted; the tenants' Secrets are not applied, so kubectl prints
    // the webhook's warnings for them.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    for path in [
        "namespaces.yaml",
        "global/secrets.yaml",
        "global/global-config.yaml",
    ] {
        cluster.kubectl_ok(&["apply", "-f", examples.join(path).to_str().unwrap()]);
    }
    let out = cluster.kubectl(&["apply", "-f", examples.join("tenants").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: spec.servers.") && stderr.contains("does not exist in namespace"),
        "no warning for a Secret not there yet: {stderr}"
    );
    served.abort();
}

/// The runbook's two cases, on the real API server: with `failurePolicy: Fail` a webhook that
/// is down refuses every write of tenant-mcp's resources (and nothing else), naming the
/// webhook; with `Ignore` the writes go through unchecked (the controller still reports an
/// invalid config in its status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_down_behaves_as_its_failure_policy_says() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let served = webhook_with(&cluster, "Fail").await;
    served.abort();
    let _ = served.await;
    cluster.kubectl_ok(&["create", "namespace", "tenant-acme"]);
    cluster.kubectl_ok(&[
        "label",
        "namespace",
        "tenant-acme",
        "tenantmcp.dev/tenant=acme",
    ]);
    let config = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme, namespace: tenant-acme}\nspec: {tenantId: acme}\n";
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "written with the webhook down under Fail"
    );
    assert!(
        stderr.contains("failed calling webhook") && stderr.contains("validate.tenantmcp.dev"),
        "{stderr}"
    );
    // Other resources are not held up.
    cluster.kubectl_ok(&["create", "configmap", "-n", "tenant-acme", "unrelated"]);

    cluster.kubectl_ok(&[
        "patch",
        "validatingwebhookconfiguration",
        "tenant-mcp",
        "--type",
        "json",
        "-p",
        r#"[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]"#,
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], config);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused under Ignore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

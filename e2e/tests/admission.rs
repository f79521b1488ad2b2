//! Issue 28: the validating admission webhook on a real kube-apiserver. The webhook is served
//! in this process over HTTPS (the library's router and TLS listener, as `tenant-mcp webhook`
//! serves them) and registered with a `ValidatingWebhookConfiguration` by URL; `kubectl
//! apply` then meets it as a platform engineer would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

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
    let config =
        tenant_mcp_e2e::webhook::configuration_by_url("tenant-mcp", port, &identity.ca_pem, policy);
    Api::<ValidatingWebhookConfiguration>::all(cluster.client())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    let canary = tenant_mcp_e2e::webhook::CANARY;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], canary);
        if String::from_utf8_lossy(&out.stderr).contains("denied the request") {
            break;
        }
        if out.status.success() {
            cluster.kubectl(&["delete", "-n", "default", "tenantmcpconfig", "canary"]);
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
/// example is accepted, and nothing is said of Secrets: the webhook reads none.
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
        // What only a Secret's keys tell is the controller's to report: the webhook reads no
        // Secret (issue 34, item 3).
        let mut expected = report.objects[at].errors.clone();
        expected.0.retain(|e| !e.message.contains("has no key"));
        let expected = &expected;
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

    // The valid examples: accepted. The tenants' Secrets are not applied, and the webhook
    // does not say so: it reads no Secret (the controller reports them missing).
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
        !stderr.contains("Secret"),
        "the webhook spoke of a Secret: {stderr}"
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

/// The chart's webhook, installed by `helm install` with the defaults (failurePolicy Fail, a
/// certificate the webhook makes) and run as its pod: the API server reaches it through its
/// Service (an EndpointSlice to the process, as for a running pod) and trusts it through the
/// `caBundle` the webhook set. The chart's own GlobalMcpConfig was created in the same
/// install, before any webhook answered (a GlobalMcpConfig's create is called with
/// failurePolicy Ignore); later changes of it, and any create while it answers, are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_the_webhook_with_its_certificate_and_kubectl_meets_it() {
    use k8s_openapi::api::core::v1::Secret;
    use tenant_mcp_e2e::rbac::{self, Identity};

    let w = rbac::start(&[]).await;
    assert!(
        w.webhook.is_some(),
        "the chart installs the webhook by default"
    );
    let admin = w.client(Identity::Admin).await;

    // The certificate: a kubernetes.io/tls Secret the webhook made, its CA in caBundle.
    let secret = Api::<Secret>::namespaced(admin.clone(), rbac::NS)
        .get("t-tenant-mcp-webhook-tls")
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    let configuration = Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .get("t-tenant-mcp")
        .await
        .unwrap();
    let webhook = &configuration.webhooks.unwrap()[0];
    assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(webhook.side_effects, "None");
    assert!(webhook.timeout_seconds.unwrap() <= 5);
    assert_eq!(
        webhook.client_config.ca_bundle.as_ref().unwrap().0,
        data["ca.crt"].0,
        "caBundle is the CA the webhook made"
    );
    let leaf = tenant_mcp::admission::certificate::inspect(
        std::str::from_utf8(&data["tls.crt"].0).unwrap(),
        "tls.crt",
    )
    .unwrap();
    assert!(
        leaf[0]
            .dns_names
            .contains(&"t-tenant-mcp-webhook.tenant-mcp-system.svc".to_owned())
    );

    // The chart's GlobalMcpConfig exists: its create at install did not wait for the webhook.
    w.cluster.kubectl_ok(&["get", "globalmcpconfig", "default"]);

    // kubectl meets the webhook: validate's message, through the Service.
    let example = repo("examples/manifests/invalid/policy-denies-cloud-metadata.yaml");
    let out = w.kubectl(Identity::Admin, &["apply", "-f", &example]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("admission webhook \"validate.tenantmcp.dev\" denied the request")
            && stderr.contains(
                "spec.servers.aiMcpServer.url: address 169.254.169.254 is a cloud metadata endpoint, which the endpoint policy denies"
            ),
        "{stderr}"
    );
    // An impostor: acme's config in a namespace bound to evil, by acme's own admin... who
    // cannot write there; by the cluster admin, who can, it is refused by the webhook.
    let impostor = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme, namespace: tenant-evil}\nspec: {tenantId: acme}\n";
    let out = w.cluster.kubectl_stdin(&["apply", "-f", "-"], impostor);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("namespace \"tenant-evil\" is bound to tenant \"evil\""),
        "{stderr}"
    );
    // A tenant admin's valid config is admitted; nothing is said of its Secret.
    let own = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme, namespace: tenant-acme}\nspec:\n  tenantId: acme\n  servers:\n    postgres: {host: db.example.com, database: acme, credentialsSecretRef: {name: acme-pg}}\n";
    let path = w.dir.path().join("acme.yaml");
    std::fs::write(&path, own).unwrap();
    let out = w.kubectl(Identity::Alice, &["apply", "-f", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("acme-pg"), "{stderr}");

    // A later change of the chart's GlobalMcpConfig is checked.
    let out = w.cluster.kubectl(&[
        "patch",
        "globalmcpconfig",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"endpointPolicy":{"allowedCidrs":["10.0.0.0/33"]}}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("validate.tenantmcp.dev"),
        "{stderr}"
    );
    // Issue 34, item 8: no write skips review by its labels. A GlobalMcpConfig created with
    // the chart's own labels while the webhook answers is reviewed (and refused) like any
    // other; before, a matchCondition let exactly that through unchecked. (The one
    // GlobalMcpConfig there may be is `default`: it is deleted and created again.)
    w.cluster
        .kubectl_ok(&["delete", "globalmcpconfig", "default", "--wait=true"]);
    let labelled = "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata:\n  name: default\n  labels: {helm.sh/chart: tenant-mcp-0.1.0, app.kubernetes.io/instance: t, app.kubernetes.io/managed-by: Helm}\nspec:\n  endpointPolicy: {allowedCidrs: [10.0.0.0/33]}\n";
    let out = w.cluster.kubectl_stdin(&["create", "-f", "-"], labelled);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("admission webhook \"validate-global-create.tenantmcp.dev\" denied")
            && stderr.contains("allowedCidrs"),
        "{stderr}"
    );
}

/// The webhook renews its serving certificate and its CA (lifetimes of seconds here, months
/// and years by default) while the API server keeps calling it: a new CA is trusted beside the
/// old one before it signs, the old one leaves the bundle when it expires, and no write in
/// between fails to reach the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_renews_its_certificate_and_ca_while_the_api_server_calls_it() {
    use k8s_openapi::api::core::v1::Secret;
    use tenant_mcp_e2e::rbac::{self, Identity};

    // A CA of 21 s is due with 7 s left: room for a check interval (1 s at these lifetimes)
    // between trusting a new CA and signing with it (issue 34, item 9), and for rounds
    // slowed by a loaded machine.
    let w = rbac::start(&[
        "webhook.certificate.lifetime=6s",
        "webhook.certificate.caLifetime=21s",
    ])
    .await;
    let secrets = Api::<Secret>::namespaced(w.client(Identity::Admin).await, rbac::NS);
    let valid = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme, namespace: tenant-acme}\nspec: {tenantId: acme}\n";
    let invalid = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme, namespace: tenant-acme}\nspec:\n  tenantId: acme\n  servers:\n    mcpServers:\n    - {name: x, url: 'https://u:p@example.com/mcp'}\n";
    let mut cas = std::collections::BTreeSet::new();
    let mut leaves = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    let mut round = 0;
    // 40 s: past the first CA's expiry (21 s) and its successor's renewal (28 s).
    while started.elapsed() < Duration::from_secs(40) {
        round += 1;
        let data = secrets
            .get("t-tenant-mcp-webhook-tls")
            .await
            .unwrap()
            .data
            .unwrap();
        let first_ca = String::from_utf8(data["ca.crt"].0.clone()).unwrap();
        cas.insert(first_ca.split("-----END").next().unwrap().to_owned());
        leaves.insert(data["tls.crt"].0.clone());
        // Both answers come from the webhook: one admitted, one refused by it.
        let ok = w
            .cluster
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], valid);
        if !ok.status.success() {
            failures.push(format!(
                "{:?}: valid: {}",
                started.elapsed(),
                String::from_utf8_lossy(&ok.stderr)
            ));
        }
        let refused = w
            .cluster
            .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], invalid);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        if !stderr.contains("denied the request") {
            failures.push(format!("{:?}: invalid: {stderr}", started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {round} rounds did not reach the webhook:\n{}\nthe webhook's certificate log:\n{}",
        failures.len(),
        failures.join("\n"),
        w.webhook
            .as_ref()
            .and_then(|pod| std::fs::read_to_string(pod.service.log_file()).ok())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("rotation"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(cas.len() >= 3, "CAs seen: {}", cas.len());
    assert!(
        leaves.len() >= 6,
        "serving certificates seen: {}",
        leaves.len()
    );
    // The first CA has expired and left the bundle.
    let bundle = secrets
        .get("t-tenant-mcp-webhook-tls")
        .await
        .unwrap()
        .data
        .unwrap()["ca.crt"]
        .0
        .clone();
    let now = jiff::Timestamp::now().as_second();
    let kept = tenant_mcp::admission::certificate::inspect(
        std::str::from_utf8(&bundle).unwrap(),
        "ca.crt",
    )
    .unwrap();
    assert!(
        kept.iter().all(|ca| ca.not_after > now),
        "an expired CA is still trusted"
    );
}

fn repo(path: &str) -> String {
    tenant_mcp_e2e::stack::repo_root()
        .join(path)
        .display()
        .to_string()
}

/// Replicas of the webhook starting at once against no Secret (as a fresh install's two pods
/// do) agree: one CA, one serving certificate, `caBundle` trusting it, and every replica
/// serving that certificate. Four start together so that their first reads and writes
/// overlap (the ones that lose the create re-read what the winner stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_agree_on_one_ca_and_certificate() {
    use k8s_openapi::api::core::v1::Secret;
    use tenant_mcp::admission::certificate::{self, Lifetimes, keys};
    use tenant_mcp::admission::rotation::{self, SelfSigned};
    use tenant_mcp::admission::tls::ServingCert;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;

    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    let client = cluster.client();
    let configuration: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "race"},
        "webhooks": [{
            "name": "validate.tenantmcp.dev",
            "clientConfig": {"service": {"name": "race-webhook", "namespace": "default",
                                         "path": server::PATH, "port": 443}},
            "rules": [{"apiGroups": ["tenantmcp.dev"], "apiVersions": ["*"],
                       "operations": ["CREATE"], "resources": ["tenantmcpconfigs"]}],
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
        }],
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
    let settings = SelfSigned {
        namespace: "default".into(),
        secret: "race-tls".into(),
        webhook_configuration: "race".into(),
        service: "race-webhook".into(),
        lifetimes: Lifetimes::default(),
    };
    let replicas: Vec<_> = (0..4).map(|_| ServingCert::empty()).collect();
    let rounds = replicas
        .iter()
        .map(|serving| rotation::round(&client, &settings, serving));
    for result in futures::future::join_all(rounds).await {
        result.unwrap();
    }

    let data = Api::<Secret>::namespaced(client.clone(), "default")
        .get("race-tls")
        .await
        .unwrap()
        .data
        .unwrap();
    let text = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    let bundle = text(keys::CA_BUNDLE);
    assert_eq!(
        certificate::inspect(&bundle, "ca.crt").unwrap().len(),
        1,
        "one CA"
    );
    let trusted = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get("race")
        .await
        .unwrap()
        .webhooks
        .unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    assert_eq!(trusted.0, bundle.as_bytes(), "caBundle is the stored CA");

    // Each replica, served over TLS, presents the stored certificate, valid for the Service's
    // name under the stored CA.
    let stored =
        rustls::pki_types::CertificateDer::from_pem_slice(text(keys::CERT).as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    for serving in &replicas {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        // The listener completes handshakes by itself; no request is sent.
        let _listener = TlsListener::new(tcp, serving.server_config()).unwrap();
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("race-webhook.default.svc").unwrap();
        let tls = connector.connect(name, stream).await.unwrap();
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(presented, stored, "a replica serves another certificate");
    }
}

/// Issue 34, item 4 (threat model: any Pod must never learn through the admission webhook
/// which keys a Secret has or which config serves a tenant, nor make it do work for a review
/// the API server did not send). A client that is not the API server posts forged reviews
/// straight to the chart's webhook (as its pod runs it): they learn nothing of a Secret in
/// `kube-system`, of acme's config or of other tenants' servers. Then 20 forged reviews of
/// 2 MiB each, of the shape that costs the most to parse, at once: the webhook keeps
/// answering the API server's real reviews, and its peak memory stays under the chart's
/// 128 MiB limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reviews_learn_nothing_and_heavy_ones_leave_the_webhook_answering() {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::ListParams;
    use tenant_mcp_e2e::rbac::{self, Identity};
    use tenant_mcp_e2e::stack::process::peak_rss;
    use tenant_mcp_e2e::webhook::post_review;

    let w = rbac::start(&[]).await;
    let admin = w.client(Identity::Admin).await;
    let slice = Api::<EndpointSlice>::namespaced(admin.clone(), rbac::NS)
        .list(&ListParams::default().labels("kubernetes.io/service-name=t-tenant-mcp-webhook"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| !s.endpoints.is_empty())
        .expect("the webhook pod's EndpointSlice");
    let address = std::net::SocketAddr::new(
        slice.endpoints[0].addresses[0].parse().unwrap(),
        u16::try_from(slice.ports.unwrap()[0].port.unwrap()).unwrap(),
    );
    let certificate = Api::<Secret>::namespaced(admin.clone(), rbac::NS)
        .get("t-tenant-mcp-webhook-tls")
        .await
        .unwrap();
    let ca = String::from_utf8(certificate.data.unwrap()["ca.crt"].0.clone()).unwrap();
    let host = "t-tenant-mcp-webhook.tenant-mcp-system.svc";
    let review = |object: Value| {
        serde_json::to_vec(
            &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "forged", "operation": "CREATE", "object": object}}),
        )
        .unwrap()
    };

    // What there is to learn: a Secret in kube-system, acme's config, a second namespace
    // bound to acme.
    Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "cloud-root"},
                "stringData": {"root-signing-key": "x"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    w.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme-config, namespace: tenant-acme}\nspec:\n  tenantId: acme\n  servers:\n    postgres: {host: db.acme.example.com, database: acme, credentialsSecretRef: {name: acme-pg}}\n",
    );
    w.cluster
        .create_namespace("tenant-acme-eu", Some("acme"))
        .await
        .unwrap();
    let tenant = |ns: &str, tenant: &str, secret: &str| {
        json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "forged", "namespace": ns},
            "spec": {"tenantId": tenant, "servers": {"postgres": {"host": "db.example.com",
                "database": "x", "credentialsSecretRef": {"name": secret}}}}})
    };
    let forged = [
        // Which keys a kube-system Secret has, through a GlobalMcpConfig's credentials
        // namespace or a config written there.
        json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
            "metadata": {"name": "default"},
            "spec": {"credentialsNamespace": "kube-system",
                "endpointPolicy": {"deniedCidrs": ["0.0.0.0/0"]},
                "servers": {"postgres": {"host": "db.example.com", "database": "x",
                    "credentialsSecretRef": {"name": "cloud-root"}}}}}),
        tenant("kube-system", "kube", "cloud-root"),
        // Where acme's config lives.
        tenant("tenant-acme-eu", "acme", "pg"),
    ];
    for object in forged {
        let (status, body) = post_review(address, &ca, host, &review(object.clone()))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        for secret in ["root-signing-key", "tenant-acme/", "acme-config", "db.acme"] {
            assert!(
                !body.contains(secret),
                "a forged review learned {secret:?}: {body}"
            );
        }
        // Nothing said of what a policy would take from tenants either.
        assert!(!body.contains("use now"), "{body}");
    }

    // Heavy forged reviews at once, each just under the webhook's limits: nearly 2 MiB, and
    // as many small objects as a review may hold (what costs the most memory to parse).
    let pid = w.webhook.as_ref().unwrap().service.pid().unwrap();
    let mut heavy = tenant("tenant-acme", "acme", "pg");
    let padding: Vec<Value> = (0..9_000).map(|i| json!({"k": i % 10})).collect();
    heavy["spec"]["padding"] = json!(padding);
    heavy["spec"]["filler"] = json!("x".repeat(1_800_000));
    let heavy = review(heavy);
    assert!(heavy.len() < server::MAX_REVIEW_BYTES, "{}", heavy.len());
    assert!(server::check_shape(&heavy).is_ok());
    // One of a shape no API server sends is refused before it is parsed.
    let mut bomb = tenant("tenant-acme", "acme", "pg");
    bomb["spec"]["padding"] = json!(
        (0..140_000)
            .map(|i| json!({"k": i % 10}))
            .collect::<Vec<_>>()
    );
    let (status, body) = post_review(address, &ca, host, &review(bomb))
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    eprintln!(
        "webhook peak RSS before the flood {} MiB",
        peak_rss(pid).unwrap() >> 20
    );
    let floods: Vec<_> = (0..20)
        .map(|_| {
            let (heavy, ca) = (heavy.clone(), ca.clone());
            tokio::spawn(async move { post_review(address, &ca, host, &heavy).await })
        })
        .collect();
    // Meanwhile the API server's own reviews get answers: an invalid config is refused by
    // the webhook, not by a timeout or a 503.
    for _ in 0..5 {
        let out = w.cluster.kubectl_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            tenant_mcp_e2e::webhook::CANARY,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("denied the request"),
            "a real review went unanswered during the flood: {stderr}"
        );
    }
    let mut answered = 0;
    for flood in floods {
        let (status, _) = flood.await.unwrap().unwrap();
        assert!(status == 200 || status == 503, "{status}");
        answered += usize::from(status == 200);
    }
    eprintln!(
        "{answered} of 20 heavy forged reviews answered; the rest refused as too many at once"
    );
    // Larger than the limit: refused unread.
    let mut huge = heavy.clone();
    huge.extend(std::iter::repeat_n(b' ', server::MAX_REVIEW_BYTES));
    let (status, _) = post_review(address, &ca, host, &huge).await.unwrap();
    assert_eq!(status, 413);
    let peak = peak_rss(pid).unwrap();
    eprintln!("webhook peak RSS {} MiB", peak >> 20);
    assert!(
        peak < 128 << 20,
        "the webhook's peak memory {} MiB is over the chart's 128 MiB limit",
        peak >> 20
    );
}

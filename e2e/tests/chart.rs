//! The Helm chart (`charts/tenant-mcp`) with a real helm (installed into `.tools/bin` by
//! `scripts/test`): it lints, renders for several value sets, refuses bad values with the
//! field named, keeps the restricted security context everywhere, and its alert rules are
//! valid PromQL over metrics the code exports; and on a real control plane, `helm install`
//! of every value set succeeds without a warning. The RBAC it installs is exercised under the
//! real authorizer in `chart_rbac.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;
use tenant_mcp_e2e::harness::helm_template;
use tenant_mcp_e2e::stack::repo_root;

fn helm() -> PathBuf {
    tenant_mcp_e2e::harness::helm_path().unwrap()
}

/// The chart's YAML for `sets`, without the CRDs.
fn render_text(sets: &[&str]) -> String {
    helm_template(sets, false).unwrap_or_else(|e| panic!("{sets:?}: {e}"))
}

/// `helm template` of the chart with `--set` values: the objects, or helm's error.
fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let text = helm_template(sets, true)?;
    Ok(serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect())
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(name_suffix))
        })
        .unwrap_or_else(|| panic!("no {kind} *{name_suffix}"))
}

fn env<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

/// What the code exports: every series name (counters as `_total`, histograms as
/// `_bucket`/`_sum`/`_count`) and every label name.
struct Exported {
    names: BTreeSet<String>,
    labels: BTreeSet<String>,
}

fn exported() -> Exported {
    use tenant_mcp::client::metrics::ClientMetrics;
    use tenant_mcp::controller::metrics::{Metrics, TenantState};
    // A family without a sample is not encoded: give each one.
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ClientMetrics::with_a_sample_of_each();
    metrics.register(&mut registry);
    let mut client = String::new();
    prometheus_client::encoding::text::encode(&mut client, &registry).unwrap();
    let controller = Metrics::new();
    drop(controller.reconcile());
    controller.error("Timeout");
    controller.probe("postgres", "Healthy", std::time::Duration::from_millis(1));
    controller.config_state("ns/name", TenantState::Ready, vec!["postgres"]);
    controller.promoted("postgres");
    controller.demoted("postgres");
    controller.mirror_written("ns/name", Ok(()));
    let controller = controller.encode();
    let management = tenant_mcp::mcp_server::metrics::ServerMetrics::new();
    management.call(
        "rag_get_tenant_mcp_config",
        "Ok",
        std::time::Duration::from_millis(1),
    );
    management.refused("rate_limited");
    let management = management.encode();
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::from(["le".to_owned()]);
    let label = regex::Regex::new(r#"[{,]([a-z_]+)=""#).unwrap();
    for line in client
        .lines()
        .chain(controller.lines())
        .chain(management.lines())
    {
        labels.extend(label.captures_iter(line).map(|c| c[1].to_owned()));
        let mut parts = line.split_whitespace();
        if parts.next() != Some("#") || parts.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
                true
            }
            _ => names.insert(name.to_owned()),
        };
    }
    Exported { names, labels }
}

/// Checks that `expr` parses as PromQL and names only exported series and labels.
fn check_query(what: &str, expr: &str, exported: &Exported) {
    promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{what}: {e}\n{expr}"));
    let metric = regex::Regex::new(r"tenant_mcp_[a-z_]+").unwrap();
    for name in metric.find_iter(expr) {
        assert!(
            exported.names.contains(name.as_str()),
            "{what} uses {}, which nothing exports ({:?})",
            name.as_str(),
            exported.names
        );
    }
    // Labels in `by (…)` and in selectors.
    let grouping = regex::Regex::new(r"by \(([^)]*)\)").unwrap();
    let matcher = regex::Regex::new(r"[{,]\s*([a-z_]+)\s*(?:=|!=|=~|!~)").unwrap();
    let used = grouping
        .captures_iter(expr)
        .flat_map(|c| {
            c[1].split(',')
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .chain(matcher.captures_iter(expr).map(|c| c[1].to_owned()));
    for label in used {
        assert!(
            exported.labels.contains(&label),
            "{what} uses label {label}, which no exported series has ({:?})",
            exported.labels
        );
    }
}

#[test]
fn the_chart_lints_and_renders_for_each_value_set() {
    let out = Command::new(helm())
        .args(["lint", "--strict"])
        .arg(repo_root().join("charts/tenant-mcp"))
        // Linting renders without a cluster: the token secret must exist already.
        .args([
            "--set",
            "mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Defaults (as a GitOps render: the token secret made beforehand): controller and MCP
    // server, two replicas each, the GlobalMcpConfig, no mirror, no Secret of the chart's.
    let defaults = render(VALUE_SETS[0]).unwrap();
    let kinds: BTreeSet<&str> = defaults.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "GlobalMcpConfig",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(kinds.contains(kind), "no {kind} by default: {kinds:?}");
    }
    // Issue 34: the admission policies RBAC cannot express, on by default.
    for name in [
        "no-token-secrets",
        "own-secret-writes",
        "webhook-configuration-writes",
        "controller-rbac-writes",
    ] {
        find(&defaults, "ValidatingAdmissionPolicy", name);
        find(&defaults, "ValidatingAdmissionPolicyBinding", name);
    }
    assert!(
        !kinds.contains("Certificate") && !kinds.contains("Issuer"),
        "no cert-manager objects unless asked for: {kinds:?}"
    );
    assert!(!kinds.contains("Secret"), "{kinds:?}");
    assert!(
        !kinds.contains("Job") && !kinds.contains("PrometheusRule"),
        "{kinds:?}"
    );
    assert!(
        !defaults.iter().any(|o| o["kind"] == "ConfigMap"
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-dashboard"))),
        "no dashboard unless asked for"
    );
    let controller = find(&defaults, "Deployment", "-controller");
    assert_eq!(controller["spec"]["replicas"], 2);
    assert_eq!(
        env(controller, "TENANT_MCP_LEADER_ELECTION").unwrap()["value"],
        "true"
    );
    assert!(env(controller, "TENANT_MCP_DATABASE_URL").is_none());
    let mcp = find(&defaults, "Deployment", "-mcp-server");
    assert_eq!(
        env(mcp, "TENANT_MCP_JWT_SECRET_FILE").unwrap()["value"],
        "/etc/tenant-mcp/auth/jwt-secret"
    );
    let hosts = env(mcp, "TENANT_MCP_MCP_ALLOWED_HOSTS").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(
        hosts.contains("t-tenant-mcp-mcp-server.tenant-mcp-system.svc.cluster.local"),
        "{hosts}"
    );
    let global = find(&defaults, "GlobalMcpConfig", "default");
    assert_eq!(
        global["spec"]["credentialsNamespace"],
        "tenant-mcp-credentials"
    );
    let credentials_ns = find(&defaults, "Namespace", "tenant-mcp-credentials");
    assert_eq!(
        credentials_ns["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(global["spec"]["tenantConfigsEnabled"], true);

    // The webhook by default: Fail, through its Service, with a certificate it makes itself
    // in a Secret it alone may write, and two replicas kept by a PDB.
    let configuration = find(&defaults, "ValidatingWebhookConfiguration", "t-tenant-mcp");
    let hook = &configuration["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(
        hook["clientConfig"]["service"]["name"],
        "t-tenant-mcp-webhook"
    );
    assert!(hook["clientConfig"]["caBundle"].is_null());
    assert!(configuration["metadata"]["annotations"].is_null());
    // What each webhook entry is called for: (resource, operation) pairs, and its policy.
    let calls = |hook: &Value| -> BTreeSet<String> {
        let mut calls = BTreeSet::new();
        for rule in hook["rules"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for operation in rule["operations"].as_array().unwrap() {
                    calls.insert(format!(
                        "{} {}",
                        resource.as_str().unwrap(),
                        operation.as_str().unwrap()
                    ));
                }
            }
        }
        calls
    };
    assert_eq!(
        calls(hook),
        BTreeSet::from([
            "tenantmcpconfigs CREATE".to_owned(),
            "tenantmcpconfigs UPDATE".to_owned(),
            "globalmcpconfigs UPDATE".to_owned()
        ])
    );
    // Issue 34, item 8: no matchCondition exempts anything; a GlobalMcpConfig's create has an
    // entry of its own under Ignore (the chart's own is created before the webhook answers).
    let creates = &configuration["webhooks"][1];
    assert_eq!(
        calls(creates),
        BTreeSet::from(["globalmcpconfigs CREATE".to_owned()])
    );
    assert_eq!(creates["failurePolicy"], "Ignore");
    assert_eq!(creates["clientConfig"], hook["clientConfig"]);
    for entry in configuration["webhooks"].as_array().unwrap() {
        assert!(entry["matchConditions"].is_null(), "{entry}");
    }
    let webhook = find(&defaults, "Deployment", "-webhook");
    assert_eq!(webhook["spec"]["replicas"], 2);
    assert_eq!(
        env(webhook, "TENANT_MCP_WEBHOOK_CERT_SECRET").unwrap()["value"],
        "t-tenant-mcp-webhook-tls"
    );
    assert_eq!(
        env(webhook, "TENANT_MCP_WEBHOOK_CONFIGURATION").unwrap()["value"],
        "t-tenant-mcp"
    );
    assert!(env(webhook, "TENANT_MCP_WEBHOOK_CERT_FILE").is_none());
    assert!(webhook["spec"]["template"]["spec"]["volumes"].is_null());
    find(&defaults, "PodDisruptionBudget", "-webhook");
    let secret_role = find(&defaults, "Role", "-webhook-certificate");
    let named: Vec<&Value> = secret_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resourceNames"].is_array())
        .collect();
    assert!(
        named
            .iter()
            .all(|r| r["resourceNames"] == serde_json::json!(["t-tenant-mcp-webhook-tls"])),
        "{secret_role}"
    );

    // Everything on: the mirror with its migration hook, monitoring, admins, clients, JWKS.
    let full = render(VALUE_SETS[1]).unwrap();
    let job = find(&full, "Job", "-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["migrate", "up"])
    );
    let controller = find(&full, "Deployment", "-controller");
    assert_eq!(
        env(controller, "TENANT_MCP_DATABASE_URL").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "tenant-mcp-db"
    );
    assert_eq!(
        controller["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v["secret"]["secretName"]
                .as_str()
                .filter(|n| n.ends_with("keys"))),
        Some("tenant-mcp-keys"),
        "the controller mounts the existing keys Secret"
    );
    let mcp = find(&full, "Deployment", "-mcp-server");
    assert!(env(mcp, "TENANT_MCP_JWKS_FILE").is_some());
    assert!(env(mcp, "TENANT_MCP_JWT_SECRET_FILE").is_none());
    assert!(!full.iter().any(|o| {
        o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-mcp-jwt"))
    }));
    let binding = full
        .iter()
        .find(|o| {
            o["kind"] == "RoleBinding"
                && o["metadata"]["namespace"] == "tenant-acme"
                && o["roleRef"]["name"] == "tenant-mcp-tenant-admin"
        })
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"], "acme-admins");
    // Client accounts read the global credentials by name, in their own namespace, and the
    // controller grants the cluster-wide one its snapshots.
    let credentials = full
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "tenant-mcp-client-credentials")
        .unwrap();
    assert_eq!(
        credentials["metadata"]["namespace"],
        "tenant-mcp-credentials"
    );
    assert_eq!(
        credentials["rules"][0]["resourceNames"],
        serde_json::json!(["extra-credential", "global-ai", "global-pg"])
    );
    let controller_env = find(&full, "Deployment", "-controller");
    assert_eq!(
        env(controller_env, "TENANT_MCP_SNAPSHOT_READERS").unwrap()["value"],
        "rag/rag-api",
        "only the cluster-wide client account"
    );
    // No client role of any value set reads Secrets by list or outside its namespaces.
    for objects in [&defaults, &full] {
        for role in objects.iter().filter(|o| {
            o["kind"] == "ClusterRole"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("tenant-mcp-client"))
        }) {
            for rule in role["rules"].as_array().unwrap() {
                let secrets = rule["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!("secrets"));
                if secrets {
                    assert_eq!(rule["verbs"], serde_json::json!(["get"]), "{role}");
                }
            }
        }
    }

    // The webhook with cert-manager: a self-signed Issuer and a Certificate for the Service's
    // names, the Secret mounted and read from files, caBundle left to the cainjector.
    let configuration = find(&full, "ValidatingWebhookConfiguration", "t-tenant-mcp");
    assert_eq!(configuration["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "tenant-mcp-system/t-tenant-mcp-webhook"
    );
    let certificate = find(&full, "Certificate", "t-tenant-mcp-webhook");
    assert_eq!(
        certificate["spec"]["secretName"],
        "t-tenant-mcp-webhook-tls"
    );
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        "t-tenant-mcp-webhook.tenant-mcp-system.svc"
    );
    assert_eq!(certificate["spec"]["issuerRef"]["kind"], "Issuer");
    assert_eq!(
        find(&full, "Issuer", "t-tenant-mcp-webhook")["spec"]["selfSigned"],
        serde_json::json!({})
    );
    let webhook = find(&full, "Deployment", "-webhook");
    assert_eq!(
        env(webhook, "TENANT_MCP_WEBHOOK_CERT_FILE").unwrap()["value"],
        "/etc/tenant-mcp/webhook-tls/tls.crt"
    );
    assert!(env(webhook, "TENANT_MCP_WEBHOOK_CERT_SECRET").is_none());
    assert_eq!(
        webhook["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "t-tenant-mcp-webhook-tls"
    );
    // A named issuer: no Issuer of the chart's.
    let issued = render(&[
        "mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt",
        "webhook.certificate.certManager.enabled=true",
        "webhook.certificate.certManager.issuerRef.name=platform-ca",
        "webhook.certificate.certManager.issuerRef.kind=ClusterIssuer",
    ])
    .unwrap();
    assert!(of_kind(&issued, "Issuer").is_empty());
    assert_eq!(
        find(&issued, "Certificate", "-webhook")["spec"]["issuerRef"]["name"],
        "platform-ca"
    );

    // The alerts are valid PromQL over series and labels the code exports.
    let exported = exported();
    let rule = find(&full, "PrometheusRule", "");
    let mut alerts = 0;
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            check_query(r["alert"].as_str().unwrap(), expr, &exported);
            alerts += 1;
        }
    }
    assert!(alerts >= 6, "{alerts}");

    // Minimal: no MCP server, one controller replica (no PDB), no policy objects, no global.
    let minimal = render(VALUE_SETS[2]).unwrap();
    let kinds: BTreeSet<&str> = minimal.iter().filter_map(|o| o["kind"].as_str()).collect();
    for absent in [
        "PodDisruptionBudget",
        "NetworkPolicy",
        "GlobalMcpConfig",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(!kinds.contains(absent), "{absent} in {kinds:?}");
    }
    assert_eq!(of_kind(&minimal, "Deployment").len(), 1);

    // The rollback switch: every tenant to global, in the controller and the GlobalMcpConfig.
    let rollback = render(VALUE_SETS[3]).unwrap();
    let controller = find(&rollback, "Deployment", "-controller");
    assert_eq!(
        env(controller, "TENANT_MCP_TENANT_CONFIGS_ENABLED").unwrap()["value"],
        "false"
    );
    assert_eq!(
        find(&rollback, "GlobalMcpConfig", "default")["spec"]["tenantConfigsEnabled"],
        false
    );

    // The restricted security context on every workload of every value set.
    for objects in [&defaults, &full, &minimal, &rollback] {
        for workload in objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job")
        {
            let name = &workload["metadata"]["name"];
            let pod = &workload["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            for container in pod["containers"].as_array().unwrap() {
                let sc = &container["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{name}"
                );
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
                assert!(
                    container["resources"]["limits"]["memory"].is_string(),
                    "{name}"
                );
            }
            // Services and PDBs select this workload's pods only by labels it carries.
            let labels = workload["spec"]["template"]["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if workload["kind"] == "Deployment" {
                let selector = workload["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .unwrap();
                for (k, v) in selector {
                    assert_eq!(labels.get(k), Some(v), "{name}: selector {k}");
                }
            }
        }
        for service in of_kind(objects, "Service") {
            let selector = service["spec"]["selector"].as_object().unwrap();
            let matched = of_kind(objects, "Deployment").into_iter().any(|d| {
                let labels = d["spec"]["template"]["metadata"]["labels"]
                    .as_object()
                    .unwrap();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            });
            assert!(
                matched,
                "Service {} selects no pods",
                service["metadata"]["name"]
            );
        }
    }
}

/// The Grafana dashboard: the ConfigMap carries the sidecar label and the JSON unchanged,
/// every panel query is valid PromQL (after Grafana's own variables are put in) over series
/// and labels the code exports, the asked-for views are there, and panels do not overlap.
#[test]
fn the_dashboard_parses_and_queries_only_exported_series() {
    let full = render(VALUE_SETS[1]).unwrap();
    let map = find(&full, "ConfigMap", "-dashboard");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = map["data"]["tenant-mcp.json"].as_str().unwrap();
    let dashboard: Value = serde_json::from_str(json).unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/tenant-mcp/dashboards/tenant-mcp.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard, file, "the ConfigMap holds the file as it is");
    assert_eq!(dashboard["uid"], "tenant-mcp");

    let exported = exported();
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let metric = regex::Regex::new(r"tenant_mcp_[a-z_]+").unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "{title}: id reused"
        );
        let g = &panel["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        assert!(x + w <= 24, "{title}: wider than the dashboard");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            !panel["description"].as_str().unwrap_or_default().is_empty(),
            "{title}: no description"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let promql = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m");
            check_query(title, &promql, &exported);
            used.extend(metric.find_iter(expr).map(|m| m.as_str().to_owned()));
        }
    }
    // The views the operators asked for: tenants by state, connection-test failures,
    // reconcile p99, promotions, mirror lag, the client cache, first-connect p99, client
    // errors, management calls.
    for series in [
        "tenant_mcp_tenants",
        "tenant_mcp_probes_total",
        "tenant_mcp_reconcile_duration_seconds_bucket",
        "tenant_mcp_promotions_total",
        "tenant_mcp_mirror_lag_seconds",
        "tenant_mcp_client_cache_hits_total",
        "tenant_mcp_client_cache_misses_total",
        "tenant_mcp_client_builds_total",
        "tenant_mcp_client_requests_total",
        "tenant_mcp_client_connect_seconds_bucket",
        "tenant_mcp_client_errors_total",
        "tenant_mcp_management_calls_total",
    ] {
        assert!(used.contains(series), "no panel shows {series}");
    }
    assert_eq!(
        dashboard["templating"]["list"][0]["type"], "datasource",
        "the data source is a variable"
    );
}

#[test]
fn bad_values_are_refused_with_the_field_named() {
    let cases: [(&[&str], &str); 14] = [
        (&["controller.replicas=two"], "/controller/replicas"),
        (&["controller.replica=2"], "replica"),
        (
            &["metrics.prometheusRule.probeFailureRatio=2"],
            "/metrics/prometheusRule/probeFailureRatio",
        ),
        (
            &[
                "database.enabled=true",
                "encryptionKeys.existingSecret=k",
                "mcpServer.auth.jwtSecret.existingSecret=j",
            ],
            "database.enabled needs database.urlSecret.name",
        ),
        (
            &[
                "mcpServer.auth.jwtSecret.existingSecret=a",
                "mcpServer.auth.jwks.existingConfigMap=b",
                "mcpServer.auth.issuer=https://issuer.example",
                "mcpServer.auth.audience=tenant-mcp",
            ],
            "set at most one of jwtSecret.existingSecret",
        ),
        // A JWKS pins tokens to this server only with an issuer and an audience.
        (
            &[
                "mcpServer.auth.jwks.existingConfigMap=b",
                "mcpServer.auth.issuer=https://issuer.example",
            ],
            "/mcpServer/auth/audience",
        ),
        (
            &[
                "mcpServer.auth.jwks.existingConfigMap=b",
                "mcpServer.auth.audience=tenant-mcp",
            ],
            "/mcpServer/auth/issuer",
        ),
        // The global credentials never share the control plane's namespace.
        (
            &[
                "globalConfig.credentialsNamespace=tenant-mcp-system",
                "mcpServer.auth.jwtSecret.existingSecret=j",
            ],
            "must not be the release namespace",
        ),
        (
            &["webhook.failurePolicy=Sometimes"],
            "/webhook/failurePolicy",
        ),
        // The API server holds each write this long; more than 5 s is refused by the chart.
        (&["webhook.timeoutSeconds=10"], "/webhook/timeoutSeconds"),
        (
            &["webhook.certificate.lifetime=90d"],
            "/webhook/certificate/lifetime",
        ),
        // No replica under Fail would refuse every write of tenant-mcp's resources.
        (
            &[
                "webhook.replicas=0",
                "mcpServer.auth.jwtSecret.existingSecret=j",
            ],
            "webhook.replicas=0 with webhook.failurePolicy=Fail",
        ),
        // Issue 34, item 1 (threat model: a tenant admin must never obtain a token of an
        // account that may read the global credentials): whoever may create Secrets or Pods in
        // a namespace acts as its accounts, so a client account may not live where tenant
        // admins do — unless it reads only that namespace and there are no global credentials.
        (
            &[
                "mcpServer.auth.jwtSecret.existingSecret=j",
                "rbac.tenantAdmins[0].namespace=tenant-acme",
                "rbac.tenantAdmins[0].subjects[0].kind=Group",
                "rbac.tenantAdmins[0].subjects[0].name=acme-admins",
                "rbac.clientServiceAccounts[0].namespace=tenant-acme",
                "rbac.clientServiceAccounts[0].name=acme-app",
                "rbac.clientServiceAccounts[0].watchNamespace=tenant-acme",
                "globalConfig.servers.postgres.host=db.example.com",
                "globalConfig.servers.postgres.database=rag",
                "globalConfig.servers.postgres.credentialsSecretRef.name=global-pg",
            ],
            "rbac.clientServiceAccounts[0] (tenant-acme/acme-app): namespace tenant-acme has tenant admins",
        ),
        (
            &[
                "mcpServer.auth.jwtSecret.existingSecret=j",
                "rbac.tenantAdmins[0].namespace=tenant-acme",
                "rbac.tenantAdmins[0].subjects[0].kind=Group",
                "rbac.tenantAdmins[0].subjects[0].name=acme-admins",
                "rbac.clientServiceAccounts[0].namespace=tenant-acme",
                "rbac.clientServiceAccounts[0].name=acme-app",
            ],
            "this account reads every tenant's snapshots",
        ),
    ];
    for (sets, says) in cases {
        let err = render(sets).unwrap_err();
        assert!(err.contains(says), "{sets:?}: {err}");
    }
}

/// The threat-model line "a GitOps renderer must never rotate key material by rendering twice".
/// Without a cluster (helm template, Argo CD, Flux), the chart refuses to make the mirror keys
/// or the token signing secret, naming the value that takes an existing Secret; with those
/// values, renders are identical and carry no key material. On a cluster, `helm install`
/// makes them once, and later renders (an upgrade's dry run, twice) keep the same bytes.
#[tokio::test]
async fn key_material_is_made_once_on_a_cluster_and_never_by_a_render_without_one() {
    let mirror = ["database.enabled=true", "database.urlSecret.name=db"];
    let jwt = "mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt";
    let keys = "encryptionKeys.existingSecret=tenant-mcp-keys";
    let cases: [(Vec<&str>, &str); 2] = [
        (vec![], "mcpServer.auth.jwtSecret.existingSecret"),
        (
            mirror.iter().copied().chain([jwt]).collect(),
            "encryptionKeys.existingSecret",
        ),
    ];
    for (sets, says) in cases {
        let err = render(&sets).unwrap_err();
        assert!(
            err.contains(&format!(
                "{says} is required when rendering without a cluster"
            )),
            "{sets:?}: {err}"
        );
    }
    let gitops: Vec<&str> = mirror.iter().copied().chain([jwt, keys]).collect();
    let first = render_text(&gitops);
    assert_eq!(
        first,
        render_text(&gitops),
        "a render is the same every time"
    );
    let objects = render(&gitops).unwrap();
    assert!(
        of_kind(&objects, "Secret").is_empty(),
        "no key material rendered"
    );

    // On a cluster: install makes them, renders after that keep them.
    let cluster = tenant_mcp_e2e::harness::Cluster::start().await.unwrap();
    cluster.kubectl_ok(&["create", "namespace", "tenant-mcp-system"]);
    let helm_on_cluster = |args: &[&str]| {
        let out = Command::new(helm())
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(args)
            .args(["t", "--namespace", "tenant-mcp-system"])
            .arg(repo_root().join("charts/tenant-mcp"))
            // No kubelet runs the migration hook's Job (the hook is checked on its own in
            // every_value_set_installs_with_helm_without_a_warning).
            .arg("--no-hooks")
            .args(mirror.iter().flat_map(|s| ["--set", s]))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    helm_on_cluster(&["install"]);
    let secret_data = |name: &str| {
        let json = cluster.kubectl_ok(&[
            "get",
            "secret",
            "-n",
            "tenant-mcp-system",
            name,
            "-o",
            "jsonpath={.data}",
        ]);
        serde_json::from_str::<Value>(&json).unwrap()
    };
    let made_keys = secret_data("t-tenant-mcp-keys");
    let made_jwt = secret_data("t-tenant-mcp-mcp-jwt");
    assert_eq!(made_keys["active"], "azE=", "active key id k1");
    assert!(made_keys["k1"].as_str().is_some_and(|k| k.len() == 44));
    for _ in 0..2 {
        let rendered = helm_on_cluster(&["upgrade", "--dry-run=server"]);
        // The release's description, then the manifest, then the chart's notes.
        let manifest = rendered
            .split_once("MANIFEST:")
            .map_or(rendered.as_str(), |(_, m)| m);
        let manifest = manifest.split_once("NOTES:").map_or(manifest, |(m, _)| m);
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(manifest)
            .map(|doc| serde_yaml_ng::Value::deserialize(doc).unwrap())
            .filter(|v| !v.is_null())
            .map(|v| serde_json::to_value(v).unwrap())
            .collect();
        let data = |suffix| find(&docs, "Secret", suffix)["data"].clone();
        assert_eq!(
            data("-keys"),
            made_keys,
            "the keys Secret is rendered as it is"
        );
        assert_eq!(data("-mcp-jwt"), made_jwt);
    }
}

/// The value sets the tests render, each as `--set` values.
const VALUE_SETS: &[&[&str]] = &[
    &["mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt"],
    &[
        "database.enabled=true",
        "database.urlSecret.name=tenant-mcp-db",
        "encryptionKeys.existingSecret=tenant-mcp-keys",
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.grafanaDashboard.enabled=true",
        "mcpServer.auth.jwks.existingConfigMap=issuer-keys",
        "mcpServer.auth.issuer=https://issuer.example",
        "mcpServer.auth.audience=tenant-mcp",
        "globalConfig.servers.postgres.host=db.example.com",
        "globalConfig.servers.postgres.database=rag",
        "globalConfig.servers.postgres.credentialsSecretRef.name=global-pg",
        "globalConfig.servers.aiMcpServer.url=https://ai.example.com/mcp",
        "globalConfig.servers.aiMcpServer.bearerTokenSecretRef.name=global-ai",
        "globalConfig.servers.aiMcpServer.bearerTokenSecretRef.key=token",
        "globalConfig.credentialSecretNames[0]=extra-credential",
        "rbac.tenantAdmins[0].namespace=tenant-acme",
        "rbac.tenantAdmins[0].subjects[0].kind=Group",
        "rbac.tenantAdmins[0].subjects[0].name=acme-admins",
        "rbac.uberAdmins[0].kind=Group",
        "rbac.uberAdmins[0].name=platform-admins",
        "rbac.clientServiceAccounts[0].namespace=rag",
        "rbac.clientServiceAccounts[0].name=rag-api",
        "rbac.clientServiceAccounts[1].namespace=rag",
        "rbac.clientServiceAccounts[1].name=acme-worker",
        "rbac.clientServiceAccounts[1].watchNamespace=tenant-acme",
        "webhook.certificate.certManager.enabled=true",
        "webhook.failurePolicy=Ignore",
    ],
    &[
        "mcpServer.enabled=false",
        "controller.replicas=1",
        "networkPolicy.enabled=false",
        "globalConfig.create=false",
        "webhook.enabled=false",
    ],
    &[
        "tenantConfigsEnabled=false",
        "mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt",
    ],
];

/// Schemaless CRDs for the kinds `(group, kind, plural)` of other projects the chart can
/// render (prometheus-operator's, cert-manager's): the install is checked, not what those
/// projects' controllers do with the objects (they are not installed here).
fn schemaless_crds(kinds: &[(&str, &str, &str)]) -> String {
    kinds
        .iter()
        .map(|(group, kind, plural)| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\n\
                 kind: CustomResourceDefinition\n\
                 metadata: {{name: {plural}.{group}}}\n\
                 spec:\n  group: {group}\n  scope: Namespaced\n  \
                 names: {{kind: {kind}, plural: {plural}, singular: {singular}, listKind: {kind}List}}\n  \
                 versions:\n    - name: v1\n      served: true\n      storage: true\n      \
                 schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
                singular = kind.to_lowercase(),
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// helm's stderr, less the lines that are not warnings about the chart (none expected).
fn warnings(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every value set, installed with `helm install` (the API server validates every object
/// against its OpenAPI schema and admission), then uninstalled; helm and the API server say no
/// warning. The migration hook's Job, which helm would wait on and no kubelet runs here, is
/// checked by a server-side dry run instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_set_installs_with_helm_without_a_warning() {
    let cluster = tenant_mcp_e2e::harness::Cluster::start().await.unwrap();
    let apply = |what: &str, yaml: &str| {
        let out = cluster.kubectl_stdin(&["apply", "--server-side", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Stand-ins for the other projects' CRDs that the monitoring and cert-manager values render.
    apply(
        "the monitoring and cert-manager CRDs",
        &schemaless_crds(&[
            ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
            ("monitoring.coreos.com", "PrometheusRule", "prometheusrules"),
            ("cert-manager.io", "Certificate", "certificates"),
            ("cert-manager.io", "Issuer", "issuers"),
        ]),
    );
    let namespaces = ["tenant-acme", "rag"]
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n"))
        .join("---\n");
    apply("namespaces", &namespaces);
    let helm_on_cluster = |args: &[&str], sets: &[&str]| {
        let out = Command::new(helm())
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(args)
            .args(sets.iter().flat_map(|s| ["--set", s]))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?} {sets:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            warnings(&out.stderr),
            Vec::<String>::new(),
            "helm {args:?} {sets:?} warned"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chart = repo_root().join("charts/tenant-mcp").display().to_string();
    for sets in VALUE_SETS {
        let out = helm_on_cluster(
            &[
                "install",
                "t",
                &chart,
                "--namespace",
                "tenant-mcp-system",
                "--create-namespace",
                "--no-hooks",
            ],
            sets,
        );
        assert!(out.contains("STATUS: deployed"), "{sets:?}: {out}");
        // Everything the chart renders is on the server, as rendered.
        let objects: Vec<Value> = render(sets)
            .unwrap()
            .into_iter()
            .filter(|o| o["kind"] != "CustomResourceDefinition")
            .filter(|o| o["metadata"]["annotations"]["helm.sh/hook"].is_null())
            .collect();
        for object in &objects {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            let mut args = vec!["get", kind, name, "-o", "name"];
            if let Some(ns) = object["metadata"]["namespace"].as_str() {
                args.extend(["-n", ns]);
            }
            cluster.kubectl_ok(&args);
        }
        // The hook Job (when rendered) is accepted as it is.
        let hooks = render_text(sets);
        let hook_docs: Vec<&str> = hooks
            .split("\n---")
            .filter(|d| d.contains("helm.sh/hook:"))
            .collect();
        for hook in hook_docs {
            let out = cluster.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], hook);
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "the hook {hook}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if sets.contains(&"tenantConfigsEnabled=false") {
            let flag = cluster.kubectl_ok(&[
                "get",
                "gmc",
                "default",
                "-o",
                "jsonpath={.spec.tenantConfigsEnabled}",
            ]);
            assert_eq!(flag, "false");
        }
        helm_on_cluster(
            &[
                "uninstall",
                "t",
                "--namespace",
                "tenant-mcp-system",
                "--wait",
            ],
            &[],
        );
    }
}

/// A misspelt environment variable would be ignored without a word: every one the chart sets
/// must be one the subcommand it runs reads, or one of the C library's allocator settings.
#[test]
fn every_environment_variable_the_chart_sets_is_read_by_the_binary() {
    let binary = tenant_mcp_e2e::stack::tenant_mcp_binary().unwrap();
    let env_name = regex::Regex::new(r"\[env: ([A-Z0-9_]+)").unwrap();
    let mut checked = 0;
    for sets in VALUE_SETS {
        for workload in render(sets)
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job")
        {
            let container = &workload["spec"]["template"]["spec"]["containers"][0];
            let args: Vec<&str> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            // Flags of `migrate` itself show in `migrate --help`, not `migrate up --help`.
            let help: String = (1..=args.len())
                .map(|n| {
                    let out = Command::new(&binary)
                        .args(&args[..n])
                        .arg("--help")
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
                .collect();
            let known: BTreeSet<&str> = env_name
                .captures_iter(&help)
                .filter_map(|c| c.get(1).map(|m| m.as_str()))
                .collect();
            for var in container["env"].as_array().unwrap() {
                let name = var["name"].as_str().unwrap();
                // Read by glibc's allocator, not the binary.
                if name.starts_with("MALLOC_") {
                    continue;
                }
                assert!(
                    known.contains(name),
                    "{} sets {name}, which `tenant-mcp {}` does not read ({known:?})",
                    workload["metadata"]["name"],
                    args.join(" ")
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "{checked}");
}

/// The chart's default memory requests and limits are the sizing table's 10,000-tenant row
/// (docs/operations.md), and each default limit holds the peak `bench-controller` measured for
/// its process at 10,000 configs (docs/benchmarks.md) with the headroom the bench demands: a
/// default changed without the docs, or a measurement that outgrew a default, fails here.
#[test]
fn the_default_memory_limits_match_the_sizing_table_and_hold_the_measured_peaks() {
    use tenant_mcp_e2e::bench::{LIMIT_HEADROOM, memory_quantity};
    let defaults = render(&["mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt"]).unwrap();
    let memory = |suffix: &str| -> (String, String) {
        let resources = &find(&defaults, "Deployment", suffix)["spec"]["template"]["spec"]["containers"]
            [0]["resources"];
        let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_default();
        (
            text(&resources["requests"]["memory"]),
            text(&resources["limits"]["memory"]),
        )
    };
    let root = tenant_mcp_e2e::stack::repo_root();
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let row = operations
        .lines()
        .find(|l| l.starts_with("| up to 10,000 (the chart's defaults) |"))
        .expect("the sizing table's default row in docs/operations.md");
    let cells: Vec<(String, String)> = row
        .split('|')
        .map(str::trim)
        .filter(|c| c.contains(" / "))
        .map(|c| {
            let (request, limit) = c.split_once(" / ").unwrap();
            (request.to_owned(), limit.to_owned())
        })
        .collect();
    let benchmarks = std::fs::read_to_string(root.join("docs/benchmarks.md")).unwrap();
    let peaks = |prefix: &str| -> Vec<f64> {
        benchmarks
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let peak = l.split('|').nth(3)?.trim().strip_suffix(" MiB")?;
                peak.parse::<f64>().ok()
            })
            .collect()
    };
    for (i, (suffix, measured)) in [
        ("-controller", "| controller: "),
        ("-webhook", "| webhook: "),
        ("-mcp-server", "| management server: "),
    ]
    .into_iter()
    .enumerate()
    {
        let (request, limit) = memory(suffix);
        assert_eq!(
            (&request, &limit),
            (&cells[i].0, &cells[i].1),
            "{suffix}: the chart's default request/limit against docs/operations.md"
        );
        let peaks = peaks(measured);
        assert!(
            !peaks.is_empty(),
            "no measured peak of {measured:?} in docs/benchmarks.md"
        );
        let peak = peaks.iter().copied().fold(0.0, f64::max) * 1024.0 * 1024.0;
        let limit_bytes = memory_quantity(&limit).unwrap() as f64;
        assert!(
            peak * LIMIT_HEADROOM <= limit_bytes,
            "{suffix}: peak {:.1} MiB × {LIMIT_HEADROOM} exceeds the default limit {limit}",
            peak / 1024.0 / 1024.0
        );
    }
}

/// Every tenant-mcp Deployment runs with the allocator settings of `malloc` (the ones
/// bench-controller's memory figures are measured with), and `0` leaves glibc's default.
#[test]
fn every_deployment_sets_the_allocator_of_the_values() {
    let env = |sets: &[&str], suffix: &str, name: &str| -> Option<String> {
        let mut all = vec!["mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt"];
        all.extend_from_slice(sets);
        let objects = render(&all).unwrap();
        let env = &find(&objects, "Deployment", suffix)["spec"]["template"]["spec"]["containers"]
            [0]["env"];
        env.as_array()?
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str().map(str::to_owned))
    };
    for suffix in ["-controller", "-webhook", "-mcp-server"] {
        assert_eq!(env(&[], suffix, "MALLOC_ARENA_MAX").as_deref(), Some("2"));
        assert_eq!(
            env(&[], suffix, "MALLOC_MMAP_THRESHOLD_").as_deref(),
            Some("131072"),
            "{suffix}"
        );
        let off = ["malloc.arenaMax=0", "malloc.mmapThreshold=0"];
        assert_eq!(env(&off, suffix, "MALLOC_ARENA_MAX"), None, "{suffix}");
        assert_eq!(env(&off, suffix, "MALLOC_MMAP_THRESHOLD_"), None);
        let one = ["malloc.arenaMax=1"];
        assert_eq!(env(&one, suffix, "MALLOC_ARENA_MAX").as_deref(), Some("1"));
    }
    assert!(
        render(&["malloc.arenaMax=-1"]).is_err(),
        "refused by the schema"
    );
    assert!(
        render(&["malloc.mmapThreshold=1e9"]).is_err(),
        "refused by the schema"
    );
}

/// The controller and the management server connection-test Postgres through a relay socket
/// under `TMPDIR`, and their root filesystem is read-only: each mounts a writable `emptyDir` at
/// `/tmp`, with the mirror on and off (on a node, without it no Postgres was ever promoted:
/// `tests/pods.rs`).
#[test]
fn the_workloads_that_connect_have_a_writable_tmp() {
    for sets in [
        &["mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt"][..],
        &[
            "mcpServer.auth.jwtSecret.existingSecret=tenant-mcp-jwt",
            "database.enabled=true",
            "database.urlSecret.name=db",
            "encryptionKeys.existingSecret=keys",
        ],
    ] {
        let objects = render(sets).unwrap();
        for suffix in ["-controller", "-mcp-server"] {
            let pod = &find(&objects, "Deployment", suffix)["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            assert_eq!(
                container["securityContext"]["readOnlyRootFilesystem"], true,
                "{suffix} {sets:?}"
            );
            let mount = container["volumeMounts"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["mountPath"] == "/tmp"))
                .unwrap_or_else(|| panic!("{suffix} {sets:?}: no mount at /tmp"));
            assert!(mount["readOnly"] != true, "{suffix}");
            let volume = pod["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
                .unwrap();
            assert!(volume["emptyDir"].is_object(), "{suffix}: {volume}");
        }
    }
}

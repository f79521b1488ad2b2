use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::*;
use crate::config::manifest::parse_documents;

/// `validate`'s message with where the other config is (a file there, the cluster here) cut.
fn comparable(errors: &FieldErrors) -> Vec<(String, String)> {
    errors
        .iter()
        .map(|e| {
            let message = match e.message.find(" in ") {
                Some(at) if e.message.contains("already has a config") => {
                    e.message[..at].to_owned()
                }
                _ => e.message.clone(),
            };
            (e.path.to_string(), message)
        })
        .collect()
}

/// The cluster a file describes: every document but the last config is already stored.
struct FileCluster {
    global: Option<Value>,
    label: Option<String>,
    rivals: Vec<(Value, Option<String>)>,
    secrets: BTreeMap<String, BTreeSet<String>>,
}

fn cluster_of(documents: &[Value], object: &Value) -> FileCluster {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let label_of = |ns: Option<&str>| {
        documents
            .iter()
            .filter(|d| {
                d["kind"] == "Namespace"
                    && d.pointer("/metadata/name").and_then(Value::as_str) == ns
            })
            .find_map(|d| {
                d.pointer("/metadata/labels/tenantmcp.dev~1tenant")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
    };
    let declared = documents.iter().any(|d| {
        d["kind"] == "Namespace" && d.pointer("/metadata/name").and_then(Value::as_str) == namespace
    });
    // A namespace the file does not declare exists in the cluster bound to the object's
    // tenant (as the e2e table test creates it).
    let label = if declared {
        label_of(namespace)
    } else {
        object["spec"]["tenantId"].as_str().map(str::to_owned)
    };
    let mut cluster = FileCluster {
        global: None,
        label,
        rivals: Vec::new(),
        secrets: BTreeMap::new(),
    };
    for d in documents.iter().filter(|d| !std::ptr::eq(*d, object)) {
        match d["kind"].as_str() {
            Some("GlobalMcpConfig") => cluster.global = Some(d.clone()),
            Some("TenantMcpConfig") if d["spec"]["tenantId"] == object["spec"]["tenantId"] => {
                let ns = d.pointer("/metadata/namespace").and_then(Value::as_str);
                let declared = documents.iter().any(|n| {
                    n["kind"] == "Namespace"
                        && n.pointer("/metadata/name").and_then(Value::as_str) == ns
                });
                let label = if declared {
                    label_of(ns)
                } else {
                    d["spec"]["tenantId"].as_str().map(str::to_owned)
                };
                cluster.rivals.push((d.clone(), label));
            }
            Some("Secret") => {
                let keys = ["data", "stringData"]
                    .iter()
                    .filter_map(|f| d.get(*f).and_then(Value::as_object))
                    .flat_map(|m| m.keys().cloned())
                    .collect();
                cluster.secrets.insert(
                    d.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    keys,
                );
            }
            _ => {}
        }
    }
    cluster
}

/// Issue 28: every invalid example the API server would hand to the webhook (it parses, its
/// apiVersion and kind are tenant-mcp's) is refused by the review with exactly the field paths
/// and messages `tenant-mcp validate` prints for it.
#[test]
fn every_invalid_example_is_refused_as_validate_refuses_it() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/manifests/invalid");
    let mut reviewed = 0;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.map(|e| e.path()).unwrap_or_default())
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let source = path.display().to_string();
        let documents = parse_documents(&source, &text);
        let Ok(values) = documents
            .iter()
            .map(|d| d.content.clone())
            .collect::<Result<Vec<Value>, _>>()
        else {
            continue; // not YAML, or a key given twice: kubectl refuses it before the API server
        };
        let report = check_documents(&documents);
        let Some(at) = values.iter().rposition(|v| {
            v["apiVersion"] == crate::api::API_VERSION
                && matches!(
                    v["kind"].as_str(),
                    Some("TenantMcpConfig" | "GlobalMcpConfig")
                )
        }) else {
            continue; // a kind or version the API server does not serve
        };
        let expected = &report.objects[at].errors;
        if expected.is_empty() {
            continue; // the file's error is in another document
        }
        let file = cluster_of(&values, &values[at]);
        let verdict = review(
            &values[at],
            None,
            &Cluster {
                global: file.global.as_ref(),
                namespace_label: file.label.as_deref(),
                rivals: file.rivals.iter().map(|(v, l)| (v, l.as_deref())).collect(),
                secrets: &file.secrets,
                ..Cluster::default()
            },
        );
        assert!(!verdict.allowed(), "{source}: allowed");
        assert_eq!(
            comparable(&verdict.errors),
            comparable(expected),
            "{source}"
        );
        reviewed += 1;
    }
    eprintln!("{reviewed} invalid examples reviewed");
    assert!(reviewed >= 35, "only {reviewed} examples reviewed");
}

fn tenant(name: &str, ns: &str, tenant: &str, servers: Value) -> Value {
    json!({"apiVersion": crate::api::API_VERSION, "kind": "TenantMcpConfig",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"tenantId": tenant, "servers": servers}})
}

fn pg(host: &str) -> Value {
    json!({"postgres": {"host": host, "database": "rag", "credentialsSecretRef": {"name": "pg"}}})
}

/// Every valid example is allowed; a Secret not there yet is a warning, not a refusal.
#[test]
fn a_valid_config_is_allowed_and_a_missing_secret_is_a_warning() {
    let none = BTreeMap::new();
    let object = tenant("acme", "tenant-acme", "acme", pg("db.example.com"));
    let cluster = Cluster {
        namespace_label: Some("acme"),
        secrets: &none,
        ..Cluster::default()
    };
    let verdict = review(&object, None, &cluster);
    assert!(verdict.allowed(), "{}", verdict.message());
    assert_eq!(verdict.warnings.len(), 1, "{:?}", verdict.warnings);
    assert!(verdict.warnings[0].contains("\"pg\" does not exist in namespace tenant-acme yet"));

    let present = BTreeMap::from([(
        "pg".to_owned(),
        BTreeSet::from(["username".to_owned(), "password".to_owned()]),
    )]);
    let verdict = review(
        &object,
        None,
        &Cluster {
            secrets: &present,
            ..cluster
        },
    );
    assert_eq!(verdict, Verdict::default());
}

/// An impostor (a namespace bound to another tenant) is refused at create; a second config for
/// a tenant that already has a serving one is refused, but an impostor's claim does not block
/// the tenant's own config, and a config's update is not its own rival.
#[test]
fn the_binding_rule_and_one_config_per_tenant_hold_at_admission() {
    let none = BTreeMap::new();
    let impostor = tenant("acme", "tenant-evil", "acme", json!({}));
    let verdict = review(
        &impostor,
        None,
        &Cluster {
            namespace_label: Some("evil"),
            secrets: &none,
            ..Cluster::default()
        },
    );
    assert_eq!(
        verdict
            .errors
            .iter()
            .next()
            .map(|e| e.path.to_string())
            .as_deref(),
        Some("metadata.namespace")
    );
    assert!(
        verdict.message().contains("bound to tenant \"evil\""),
        "{}",
        verdict.message()
    );

    let own = tenant("acme", "tenant-acme", "acme", json!({}));
    let second = tenant("acme-2", "tenant-acme", "acme", json!({}));
    let refused = review(
        &second,
        None,
        &Cluster {
            namespace_label: Some("acme"),
            rivals: vec![(&own, Some("acme"))],
            secrets: &none,
            ..Cluster::default()
        },
    );
    assert!(
        refused
            .message()
            .starts_with("spec.tenantId: tenant \"acme\" already has a config"),
        "{}",
        refused.message()
    );
    for (what, rivals) in [
        ("an impostor's claim", vec![(&impostor, Some("evil"))]),
        ("its own stored copy", vec![(&own, Some("acme"))]),
    ] {
        let verdict = review(
            &own,
            None,
            &Cluster {
                namespace_label: Some("acme"),
                rivals,
                secrets: &none,
                ..Cluster::default()
            },
        );
        assert!(verdict.allowed(), "{what}: {}", verdict.message());
    }
}

/// A policy tightened after a config was stored must not block the writes that keep the
/// cluster working: the controller's finalizer removal, label and annotation changes.
#[test]
fn writes_that_leave_the_spec_alone_are_never_refused() {
    let none = BTreeMap::new();
    let stored = tenant("acme", "tenant-acme", "acme", pg("127.0.0.1"));
    let cluster = Cluster {
        namespace_label: Some("acme"),
        secrets: &none,
        ..Cluster::default()
    };
    assert!(
        !review(&stored, None, &cluster).allowed(),
        "loopback is denied"
    );
    let mut relabelled = stored.clone();
    relabelled["metadata"]["labels"] = json!({"team": "rag"});
    let verdict = review(&relabelled, Some(&stored), &cluster);
    assert!(verdict.allowed(), "{}", verdict.message());
    assert!(
        verdict.warnings.iter().any(|w| w.contains("loopback")),
        "{:?}",
        verdict.warnings
    );
    let mut deleting = stored.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-05T00:00:00Z");
    deleting["spec"]["servers"]["postgres"]["port"] = json!(6432);
    assert!(review(&deleting, Some(&stored), &cluster).allowed());
    let mut changed = stored.clone();
    changed["spec"]["servers"]["postgres"]["port"] = json!(6432);
    assert!(!review(&changed, Some(&stored), &cluster).allowed());
}

/// Issue 28, item 2: a GlobalMcpConfig whose policy would take tenants' active servers out of
/// service is allowed, with a warning that says how many tenants and which server types.
#[test]
fn a_policy_that_demotes_active_servers_is_allowed_with_a_warning() {
    let active: crate::api::ActiveConfig = serde_json::from_value(json!({
        "postgres": {"spec": {"host": "10.0.0.5", "database": "rag",
                              "credentialsSecretRef": {"name": "pg"}},
                     "snapshotSecret": "s", "specHash": "h", "promotedAt": "2026-12-05T00:00:00Z"},
        "mcpServers": {"search": {"spec": {"name": "search", "url": "https://10.0.0.6/mcp"},
                                  "specHash": "h", "promotedAt": "2026-12-05T00:00:00Z"}}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let public: crate::api::ActiveConfig = serde_json::from_value(json!({
        "postgres": {"spec": {"host": "db.example.com", "database": "rag",
                              "credentialsSecretRef": {"name": "pg"}},
                     "snapshotSecret": "s", "specHash": "h", "promotedAt": "2026-12-05T00:00:00Z"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let global = |private: bool| {
        json!({"apiVersion": crate::api::API_VERSION, "kind": "GlobalMcpConfig",
               "metadata": {"name": "default"},
               "spec": {"endpointPolicy": {"allowPrivateNetworks": private}}})
    };
    let cluster = Cluster {
        active: vec![("acme", &active), ("globex", &public)],
        ..Cluster::default()
    };
    let verdict = review(&global(false), None, &cluster);
    assert!(verdict.allowed(), "{}", verdict.message());
    assert_eq!(
        verdict.warnings,
        [
            "spec.endpointPolicy: denies servers that 1 tenant(s) use now (mcpServer: 1, postgres: 1); \
          the controller takes them out of service and those tenants fall back to the global \
          servers"
        ]
    );
    assert!(review(&global(true), None, &cluster).warnings.is_empty());
    // Counted in part (the webhook's time ran out): said so, as a lower bound.
    let partial = Cluster {
        active_partial: true,
        ..cluster.clone()
    };
    assert_eq!(
        review(&global(false), None, &partial).warnings,
        [
            "spec.endpointPolicy: denies servers that at least 1 tenant(s) use now (mcpServer: 1, \
          postgres: 1) among the first 2 configs (the webhook stopped counting at its time \
          limit); the controller takes them out of service and those tenants fall back to the \
          global servers"
        ]
    );
    assert_eq!(
        review(&global(true), None, &partial).warnings,
        [
            "spec.endpointPolicy: denies no server that tenants use now among the first 2 configs \
          (the webhook stopped counting at its time limit); the controller takes any it denies \
          out of service"
        ]
    );
}

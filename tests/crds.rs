//! The generated CRDs: current on disk, documented field by field, and their CEL rules enforce
//! what they claim (evaluated client-side with kube's CEL validator).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use kube::CustomResourceExt;
use serde_json::{Value, json};
use tenant_mcp::api::crd::crd_files;
use tenant_mcp::api::reference::reference_markdown;
use tenant_mcp::api::{GlobalMcpConfig, TenantMcpConfig};

#[test]
fn crds_on_disk_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["crds", "charts/tenant-mcp/crds"] {
        for (name, yaml) in crd_files().unwrap() {
            let on_disk = std::fs::read_to_string(root.join(dir).join(name)).unwrap_or_default();
            assert!(
                on_disk == yaml,
                "{dir}/{name} is stale: run `cargo run -- crdgen` and commit the result"
            );
        }
    }
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/crd-reference.md");
    assert!(
        std::fs::read_to_string(reference).unwrap_or_default() == reference_markdown(),
        "docs/crd-reference.md is stale: run `cargo run -- crdgen` and commit the result"
    );
}

/// Walks a schema and collects every property path that has no description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let child = format!("{path}.{name}");
            if prop.get("description").is_none()
                && !matches!(name.as_str(), "apiVersion" | "kind" | "metadata")
            {
                out.push(child.clone());
            }
            undocumented(prop, &child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_field_is_documented() {
    for crd in [TenantMcpConfig::crd(), GlobalMcpConfig::crd()] {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let mut missing = Vec::new();
        undocumented(
            &schema["openAPIV3Schema"],
            &crd.spec.names.kind,
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }
}

#[test]
fn crd_shape() {
    let tenant = TenantMcpConfig::crd();
    assert_eq!(tenant.spec.group, "tenantmcp.dev");
    assert_eq!(tenant.spec.scope, "Namespaced");
    assert_eq!(
        tenant.spec.names.short_names.as_deref(),
        Some(&["tmc".to_owned()][..])
    );
    let version = &tenant.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Tenant", "Ready", "Reason", "Age"]);
    assert_eq!(GlobalMcpConfig::crd().spec.scope, "Cluster");

    let schema = serde_json::to_value(&version.schema).unwrap();
    let servers =
        &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["servers"]["properties"];
    assert_eq!(servers["mcpServers"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        servers["mcpServers"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    let port = &servers["postgres"]["properties"]["port"];
    assert_eq!(
        (port["minimum"].as_f64(), port["maximum"].as_f64()),
        (Some(1.0), Some(65535.0))
    );
}

fn tenant(spec: Value) -> TenantMcpConfig {
    serde_json::from_value(json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "acme", "namespace": "tenant-acme"},
        "spec": spec
    }))
    .unwrap()
}

fn messages(result: Result<(), kube::core::cel::ValidationErrors>) -> Vec<String> {
    match result {
        Ok(()) => Vec::new(),
        Err(e) => e
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn cel_tenant_id_is_immutable() {
    let old = tenant(json!({"tenantId": "acme"}));
    let renamed = tenant(json!({"tenantId": "acme2"}));
    assert!(
        messages(renamed.validate_cel_update(&old))
            .iter()
            .any(|m| m.ends_with("tenantId is immutable"))
    );
    assert!(messages(old.validate_cel_update(&old)).is_empty());
}

#[test]
fn cel_url_schemes() {
    let bad = tenant(json!({"tenantId": "acme", "servers": {
        "aiMcpServer": {"url": "ftp://ai.example.com"},
        "minio": {"endpoint": "s3.example.com", "bucket": "docs", "credentialsSecretRef": {"name": "s3"}}
    }}));
    let found = messages(bad.validate_cel());
    assert!(
        found
            .iter()
            .any(|m| m.ends_with("url must be an http:// or https:// URL")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m.ends_with("endpoint must be an http:// or https:// URL")),
        "{found:?}"
    );
    let good = tenant(
        json!({"tenantId": "acme", "servers": {"aiMcpServer": {"url": "https://ai.example.com"}}}),
    );
    assert!(messages(good.validate_cel()).is_empty());
}

#[test]
fn cel_path_prefix_needs_the_placeholder() {
    let with_prefix = |prefix: &str| {
        tenant(json!({"tenantId": "acme", "servers": {"aiMcpServer": {
            "url": "https://ai.example.com", "tenantRouting": {"mode": "PathPrefix", "pathPrefix": prefix}}}}))
    };
    let found = messages(with_prefix("/tenants/acme").validate_cel());
    assert!(
        found
            .iter()
            .any(|m| m.ends_with("pathPrefix must contain the {tenantId} placeholder")),
        "{found:?}"
    );
    assert!(messages(with_prefix("/tenants/{tenantId}").validate_cel()).is_empty());
}

#[test]
fn cel_global_config_must_be_named_default() {
    let global = |name: &str| -> GlobalMcpConfig {
        serde_json::from_value(json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
            "metadata": {"name": name}, "spec": {}
        }))
        .unwrap()
    };
    let found = messages(global("global").validate_cel());
    assert!(
        found
            .iter()
            .any(|m| m.ends_with("the GlobalMcpConfig must be named default")),
        "{found:?}"
    );
    assert!(messages(global("default").validate_cel()).is_empty());
}

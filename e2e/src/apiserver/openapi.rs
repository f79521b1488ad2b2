//! OpenAPI v3 documents, as far as kubectl reads them: the per-group-version index, PATCH
//! operations that advertise the `fieldValidation` parameter (so `kubectl apply` validates
//! server-side, with `fieldValidation=Strict`), and each custom resource's schema (for
//! `kubectl explain`). Built-in kinds get an open object schema.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resources::ResourceType;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per served group-version.
pub fn index(types: &[ResourceType], resource_version: u64) -> Value {
    let mut paths = BTreeMap::new();
    for t in types {
        let p = gv_path(&t.group, &t.version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={resource_version:016X}")}),
        );
    }
    json!({"paths": paths})
}

fn schema_name(t: &ResourceType) -> String {
    let group = if t.group.is_empty() {
        "core".to_owned()
    } else {
        t.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", t.version, t.kind)
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
pub fn document(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in served {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let item = if t.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}/{{name}}",
                gv_path(group, version),
                t.plural
            )
        } else {
            format!("/{}/{}/{{name}}", gv_path(group, version), t.plural)
        };
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true},
             "description": "Strict, Warn or Ignore: what to do with unknown or duplicate fields"},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        let name = schema_name(t);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        paths.insert(item, json!({
            "get": {"operationId": format!("read{}", t.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}}},
            "patch": {"operationId": format!("patch{}", t.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                      "parameters": params,
                      "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}}},
        }));
        let mut schema = t.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        if t.schema.is_some() {
            let properties = schema.get_mut("properties").and_then(Value::as_object_mut);
            if let Some(props) = properties {
                props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                props.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata.", "x-kubernetes-preserve-unknown-fields": true}));
            }
        }
        schemas.insert(name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

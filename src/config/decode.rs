//! Typed decoding of untrusted JSON with errors a person can act on: every unknown field (with
//! the fields that are allowed there) and the first type error, each by field path.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::field::{ErrorKind, FieldError, FieldErrors, FieldPath};
use super::redact::is_credential_name;

/// Decodes `value` into `T`, reporting unknown fields and type errors by field path (paths are
/// prefixed with `path`).
pub fn decode<T: DeserializeOwned + JsonSchema>(
    value: Value,
    path: &FieldPath,
) -> Result<T, FieldErrors> {
    let mut errors = FieldErrors::default();
    // Unknown fields are found by walking the schema, as the API server prunes them: serde
    // would silently drop those inside `#[serde(flatten)]` structs.
    let schema = schema_of::<T>();
    let mut unknown = Vec::new();
    unknown_fields(&schema, &value, &mut Vec::new(), &mut unknown);
    for (parts, allowed) in unknown {
        errors.push(FieldError::forbidden(
            &join(path, &parts),
            format!(
                "unknown field: not part of the tenantmcp.dev/v1alpha1 API; expected one of {}",
                allowed.join(", ")
            ),
        ));
    }
    let result: Result<T, _> = serde_path_to_error::deserialize(value);
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(errors),
        Err(e) => {
            let at = e.path().to_string();
            let mut parts = if at == "." { Vec::new() } else { split(&at) };
            let raw = e.into_inner().to_string();
            // `deny_unknown_fields` repeats one the schema walk has reported already.
            if raw.starts_with("unknown field") && !errors.is_empty() {
                return Err(errors);
            }
            // serde reports a missing field at its parent; point at the field itself.
            if let Some(name) = raw
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                parts.push(Part::Field(name.to_owned()));
            }
            let mut message = serde_message(&raw);
            // A value in a credential field, or under `credentials`, may be a secret typed into
            // the wrong place: say what was expected, never what was given.
            if parts
                .iter()
                .any(|p| matches!(p, Part::Field(f) if f == "credentials" || is_credential_name(f)))
                && let Some((expected, _given)) = message.split_once(", got ")
            {
                message = format!("{expected} (the value given is not repeated)");
            }
            let kind = if message.starts_with("is required") {
                ErrorKind::Required
            } else {
                ErrorKind::Invalid
            };
            errors.push(FieldError::new(&join(path, &parts), kind, message));
            Err(errors)
        }
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Field(String),
    Index(usize),
}

fn split(text: &str) -> Vec<Part> {
    let mut out = Vec::new();
    for piece in text.split('.').filter(|p| !p.is_empty()) {
        let (field, indices) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        match field.parse::<usize>() {
            Ok(index) => out.push(Part::Index(index)),
            Err(_) if !field.is_empty() => out.push(Part::Field(field.to_owned())),
            Err(_) => {}
        }
        for index in indices.split('[').filter_map(|i| i.strip_suffix(']')) {
            out.push(Part::Index(index.parse().unwrap_or(0)));
        }
    }
    out
}

fn join(path: &FieldPath, parts: &[Part]) -> FieldPath {
    parts.iter().fold(path.clone(), |acc, part| match part {
        Part::Field(name) => acc.child(name),
        Part::Index(i) => acc.index(*i),
    })
}

/// `T`'s JSON schema with every subschema inlined, as the CRD has it; generated once per type
/// and process (generating it took most of a decode's time, and the admission webhook decodes
/// on every write).
fn schema_of<T: JsonSchema>() -> Arc<Value> {
    static SCHEMAS: LazyLock<RwLock<HashMap<&'static str, Arc<Value>>>> =
        LazyLock::new(RwLock::default);
    let key = std::any::type_name::<T>();
    if let Some(schema) = SCHEMAS.read().ok().and_then(|s| s.get(key).cloned()) {
        return schema;
    }
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = Arc::new(
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(Value::Null),
    );
    if let Ok(mut schemas) = SCHEMAS.write() {
        schemas.insert(key, schema.clone());
    }
    schema
}

/// Collects every key of `value` that `schema` does not declare, with the keys it does.
fn unknown_fields(
    schema: &Value,
    value: &Value,
    at: &mut Vec<Part>,
    out: &mut Vec<(Vec<Part>, Vec<String>)>,
) {
    let Some(node) = object_part(schema) else {
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (key, child) in map {
                    // The object envelope is the API server's to check, not the CRD schema's.
                    if at.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    at.push(Part::Field(key.clone()));
                    match props.get(key) {
                        Some(child_schema) => unknown_fields(child_schema, child, at, out),
                        None => {
                            let mut allowed: Vec<String> = props.keys().cloned().collect();
                            allowed.sort();
                            out.push((at.clone(), allowed));
                        }
                    }
                    at.pop();
                }
            } else if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object())
            {
                for (key, child) in map {
                    at.push(Part::Field(key.clone()));
                    unknown_fields(values, child, at, out);
                    at.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node.get("items") {
                for (i, item) in items.iter().enumerate() {
                    at.push(Part::Index(i));
                    unknown_fields(item_schema, item, at, out);
                    at.pop();
                }
            }
        }
        _ => {}
    }
}

/// The part of a schema that describes an object: itself, or the non-null branch of an
/// `anyOf` (how `Option<T>` is written).
fn object_part(node: &Value) -> Option<&Value> {
    let describes = |n: &Value| {
        n.get("properties").is_some()
            || n.get("items").is_some()
            || n.get("additionalProperties").is_some()
    };
    if describes(node) {
        return Some(node);
    }
    ["anyOf", "oneOf", "allOf"].iter().find_map(|key| {
        node.get(key)?
            .as_array()?
            .iter()
            .find(|branch| describes(branch))
    })
}

/// Rewrites serde's messages into the "what was expected, what was given" form.
fn serde_message(raw: &str) -> String {
    if raw.starts_with("missing field `") {
        return "is required".to_owned();
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let mut parts = rest.splitn(2, "`, expected ");
        let got = parts.next().unwrap_or_default();
        let expected = parts.next().unwrap_or_default().replace('`', "");
        return format!("must be {expected}, got {got:?}");
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        let expected = match expected {
            "i32" | "i64" | "u16" | "u32" | "u64" => "an integer",
            "a boolean" | "bool" => "true or false",
            other => other,
        };
        return format!("must be {expected}, got {got}");
    }
    raw.to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{ServersSpec, TenantMcpConfig};

    fn errors<T: DeserializeOwned + JsonSchema>(value: Value) -> Vec<String> {
        match decode::<T>(value, &FieldPath::new("spec")) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn unknown_fields_list_what_is_allowed() {
        let found = errors::<ServersSpec>(json!({
            "postgres": {"host": "h", "database": "d", "credentialsSecretRef": {"name": "n"}, "hostname": "x"},
            "redis": {},
            "mcpServers": [{"name": "a", "url": "https://a", "tls": true}]
        }));
        assert_eq!(
            found,
            [
                "spec.mcpServers[0].tls: unknown field: not part of the tenantmcp.dev/v1alpha1 API; expected one of bearerTokenSecretRef, headers, name, tenantRouting, timeoutSeconds, url",
                "spec.postgres.hostname: unknown field: not part of the tenantmcp.dev/v1alpha1 API; expected one of caCertSecretRef, credentialsSecretRef, database, host, pool, port, sslMode",
                "spec.redis: unknown field: not part of the tenantmcp.dev/v1alpha1 API; expected one of aiMcpServer, mcpServers, minio, postgres",
            ]
        );
    }

    #[test]
    fn type_errors_and_missing_fields_point_at_the_field() {
        assert_eq!(
            errors::<ServersSpec>(
                json!({"aiMcpServer": {"url": "https://a", "headers": [{"name": "X", "value": 1}]}})
            ),
            ["spec.aiMcpServer.headers[0].value: must be a string, got integer `1`"]
        );
        assert_eq!(
            errors::<ServersSpec>(
                json!({"minio": {"endpoint": "https://s3", "credentialsSecretRef": {"name": "n"}}})
            ),
            ["spec.minio.bucket: is required"]
        );
        assert_eq!(
            errors::<ServersSpec>(
                json!({"postgres": {"host": "h", "database": "d", "sslMode": "on", "credentialsSecretRef": {"name": "n"}}})
            ),
            [
                "spec.postgres.sslMode: must be one of disable, allow, prefer, require, verify-ca, verify-full, got \"on\""
            ]
        );
    }

    #[test]
    fn whole_objects_decode_from_the_root() {
        let found = errors::<TenantMcpConfig>(
            json!({"metadata": {"name": "a"}, "spec": {"tenantId": "a", "enable": false}}),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("spec.spec.enable: unknown field"),
            "{found:?}"
        );
        assert!(
            found[0].ends_with("expected one of enabled, servers, tenantId, validation"),
            "{found:?}"
        );
    }

    /// A value in the wrong place may be a credential typed into the wrong field: errors under
    /// credential-bearing fields say what was expected, never what was given.
    #[test]
    fn errors_under_credential_fields_do_not_repeat_the_value() {
        #[derive(Debug, serde::Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Login {
            username: String,
            password: String,
        }
        #[derive(Debug, serde::Deserialize, JsonSchema)]
        #[allow(dead_code)]
        struct Arguments {
            credentials: Login,
            port: u16,
        }
        let text = |v: Value| -> String {
            decode::<Arguments>(v, &FieldPath::default())
                .unwrap_err()
                .to_string()
        };
        let wrong_type =
            text(json!({"credentials": {"username": "u", "password": 918273645}, "port": 1}));
        assert!(
            wrong_type.starts_with("credentials.password: must be a string"),
            "{wrong_type}"
        );
        assert!(!wrong_type.contains("918273645"), "{wrong_type}");
        let under = text(json!({"credentials": {"username": 5551234, "password": "p"}, "port": 1}));
        assert!(!under.contains("5551234"), "{under}");
        // Elsewhere the given value still helps.
        let port = text(json!({"credentials": {"username": "u", "password": "p"}, "port": "x"}));
        assert!(port.contains("\"x\""), "{port}");
    }
}

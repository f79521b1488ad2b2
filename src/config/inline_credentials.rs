//! Finds credentials written straight into a spec, before it is parsed: a spec that says
//! `password: hunter2` must be refused with a pointer to the Secret reference to use instead,
//! not merely with "unknown field".

use serde_json::Value;

use super::field::{FieldError, FieldErrors, FieldPath};
use super::redact::{is_credential_name, redact_url_userinfo};

/// Reports every inline credential in a raw spec: credential-like field names with a value,
/// and URLs with `user:password@`. `path` is where `spec` sits (normally `spec`).
pub fn find_inline_credentials(spec: &Value, path: &FieldPath) -> FieldErrors {
    let mut errors = FieldErrors::default();
    walk(spec, path, &mut errors);
    errors
}

fn walk(value: &Value, path: &FieldPath, errors: &mut FieldErrors) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let child = path.child(key);
                if is_credential_name(key) && !v.is_null() && !v.is_object() {
                    errors.push(FieldError::forbidden(
                        &child,
                        format!(
                            "inline credentials are not allowed: store the value in a Secret in \
                             this namespace and reference it with {}",
                            hint_for(path)
                        ),
                    ));
                } else {
                    walk(v, &child, errors);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let child = match v.get("name").and_then(Value::as_str) {
                    Some(name) => path.key(name),
                    None => path.index(i),
                };
                walk(v, &child, errors);
            }
        }
        Value::String(s) => {
            if let Some(redacted) = redact_url_userinfo(s) {
                errors.push(FieldError::forbidden(
                    path,
                    format!(
                        "URLs must not carry credentials ({redacted}): reference a Secret with {}",
                        hint_for(path)
                    ),
                ));
            }
        }
        _ => {}
    }
}

/// The Secret reference field that replaces an inline credential at `path`.
fn hint_for(path: &FieldPath) -> &'static str {
    let p = path.as_str();
    if p.contains("postgres") || p.contains("minio") {
        "credentialsSecretRef"
    } else if p.contains("headers") {
        "headers[].valueFrom (name and key of the Secret)"
    } else {
        "bearerTokenSecretRef (or headers[].valueFrom for other headers)"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(spec: Value) -> Vec<String> {
        find_inline_credentials(&spec, &FieldPath::new("spec"))
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn finds_inline_passwords_keys_tokens_and_url_credentials() {
        let found = paths(json!({
            "servers": {
                "postgres": {"host": "db", "password": "hunter2"},
                "minio": {"secretAccessKey": "abc", "endpoint": "http://minio:9000"},
                "aiMcpServer": {"url": "https://u:p@ai.example.com/mcp", "token": "t"},
                "mcpServers": [{"name": "search", "url": "https://s", "apiKey": "k"}]
            }
        }));
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found.iter().any(|e| {
            e.starts_with("spec.servers.aiMcpServer.token: inline credentials are not allowed")
        }));
        assert!(found.iter().any(|e| e.starts_with("spec.servers.aiMcpServer.url: URLs must not carry credentials (https://***@ai.example.com/mcp)")));
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("spec.servers.mcpServers[search].apiKey:"))
        );
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("spec.servers.postgres.password:")
                    && e.ends_with("credentialsSecretRef"))
        );
        assert!(
            found
                .iter()
                .any(|e| e.starts_with("spec.servers.minio.secretAccessKey:"))
        );
        assert!(
            !found
                .iter()
                .any(|e| e.contains("hunter2") || e.contains(":p@")),
            "values must not be echoed"
        );
    }

    #[test]
    fn secret_references_are_fine() {
        assert!(paths(json!({
            "servers": {"postgres": {"credentialsSecretRef": {"name": "pg", "passwordKey": "password"}},
                        "aiMcpServer": {"bearerTokenSecretRef": {"name": "ai", "key": "token"}}}
        }))
        .is_empty());
    }
}

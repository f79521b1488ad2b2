//! A stable content hash of a spec, to tell configs apart cheaply (status, cache keys, the
//! mirror's change detection).
//!
//! The hash is SHA-256 over canonical JSON (object keys sorted, no whitespace, strings as raw
//! UTF-8 with serde_json's escaping), so it does not depend on field order, map implementation
//! or serde_json features. Python reproduces it with
//! `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`. Fields left at `None` are
//! not serialized, so adding an optional field to the API does not change existing hashes.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `sha256:<hex>` of the canonical JSON form of `value`.
pub fn spec_hash<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let canonical = canonical_json(&serde_json::to_value(value)?);
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    ))
}

/// The canonical JSON text of `value`: object keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    canonical
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{PostgresCredentialsRef, PostgresServer};

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": null}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(spec_hash(&a).unwrap(), spec_hash(&b).unwrap());
        assert_ne!(spec_hash(&a).unwrap(), spec_hash(&json!({"b": 2})).unwrap());
    }

    /// Pins the hash of a known spec: if this changes, every running tenant's hash changes on
    /// upgrade (and the controller re-tests every config), so it must be a deliberate change.
    #[test]
    fn hash_of_a_known_spec_is_pinned() {
        let pg: PostgresServer = serde_json::from_value(json!({
            "host": "pg.acme.svc", "database": "rag",
            "credentialsSecretRef": {"name": "acme-pg"}
        }))
        .unwrap();
        assert_eq!(
            pg.credentials_secret_ref,
            PostgresCredentialsRef::new("acme-pg")
        );
        let hash = spec_hash(&pg).unwrap();
        assert_eq!(hash, PINNED_POSTGRES_HASH, "canonical JSON: {}", {
            let mut s = String::new();
            write_canonical(&serde_json::to_value(&pg).unwrap(), &mut s);
            s
        });
    }

    /// Computed independently: `json.dumps(spec, sort_keys=True, separators=(",", ":"))` in Python.
    const PINNED_POSTGRES_HASH: &str =
        "sha256:9b7554a02af9a49cff98623675c8bb0f50986d1de654c4d7337e748496a82fb8";
}

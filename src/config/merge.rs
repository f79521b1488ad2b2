//! Partial updates of one server type at a time, with JSON merge-patch semantics (RFC 7386).
//!
//! A patch is an object whose keys are server types: `postgres`, `minio`, `aiMcpServer`, and
//! `mcpServers`, itself an object keyed by server name. A key that is absent leaves that server
//! type exactly as it was; `null` removes it; an object is merged into the current entry (or
//! creates it). Fields set to `null` inside an entry go back to their defaults.
//!
//! Merging never panics, and the empty patch `{}` is the identity.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::decode::decode;
use super::field::{ErrorKind, FieldError, FieldErrors, FieldPath};
use crate::api::{McpServer, NamedMcpServer, ServersSpec};

/// The server types a patch may name.
pub const SERVER_TYPES: &[&str] = &["postgres", "minio", "aiMcpServer", "mcpServers"];

/// Applies `patch` to `current` and returns the merged servers, or every problem with the patch
/// (paths start at `path`, e.g. `servers`). `current` is never changed.
pub fn merge_servers(
    current: &ServersSpec,
    patch: &Value,
    path: &FieldPath,
) -> Result<ServersSpec, FieldErrors> {
    let mut errors = FieldErrors::default();
    let Some(patch) = patch.as_object() else {
        errors.push(FieldError::invalid(
            path,
            format!(
                "must be an object keyed by server type ({}), got {}",
                SERVER_TYPES.join(", "),
                json_type(patch)
            ),
        ));
        return Err(errors);
    };
    let mut merged = current.clone();
    for (key, entry_patch) in patch {
        let entry_path = path.child(key);
        match key.as_str() {
            "postgres" => {
                merged.postgres =
                    merge_entry(&current.postgres, entry_patch, &entry_path, &mut errors)
            }
            "minio" => {
                merged.minio = merge_entry(&current.minio, entry_patch, &entry_path, &mut errors)
            }
            "aiMcpServer" => {
                merged.ai_mcp_server = merge_entry(
                    &current.ai_mcp_server,
                    entry_patch,
                    &entry_path,
                    &mut errors,
                )
            }
            "mcpServers" => {
                merged.mcp_servers =
                    merge_named(&current.mcp_servers, entry_patch, &entry_path, &mut errors)
            }
            other => errors.push(FieldError::new(
                &entry_path,
                ErrorKind::NotSupported,
                format!(
                    "unknown server type {other:?}; expected one of {}",
                    SERVER_TYPES.join(", ")
                ),
            )),
        }
    }
    errors.into_result().map(|()| merged)
}

/// Merges one optional entry. On error, keeps the current entry and records the problems.
fn merge_entry<T>(
    current: &Option<T>,
    patch: &Value,
    path: &FieldPath,
    errors: &mut FieldErrors,
) -> Option<T>
where
    T: Clone + serde::Serialize + DeserializeOwned + JsonSchema,
{
    if patch.is_null() {
        return None;
    }
    if !patch.is_object() {
        errors.push(FieldError::invalid(
            path,
            format!(
                "must be an object (or null to remove it), got {}",
                json_type(patch)
            ),
        ));
        return current.clone();
    }
    let mut doc = match current.as_ref().map(serde_json::to_value) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            errors.push(FieldError::invalid(
                path,
                format!("current value cannot be read: {e}"),
            ));
            return current.clone();
        }
        None => Value::Object(Map::new()),
    };
    json_patch::merge(&mut doc, patch);
    match decode::<T>(doc, path) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.extend(e);
            current.clone()
        }
    }
}

/// Merges the named MCP servers: the patch is an object keyed by name.
fn merge_named(
    current: &[NamedMcpServer],
    patch: &Value,
    path: &FieldPath,
    errors: &mut FieldErrors,
) -> Vec<NamedMcpServer> {
    if patch.is_null() {
        return Vec::new();
    }
    let Some(patch) = patch.as_object() else {
        errors.push(FieldError::invalid(
            path,
            format!(
                "must be an object keyed by server name, e.g. {{\"search\": {{\"url\": \"https://…\"}}}} \
                 (or null to remove all), got {}",
                json_type(patch)
            ),
        ));
        return current.to_vec();
    };
    let mut merged = current.to_vec();
    for (name, entry_patch) in patch {
        let entry_path = path.key(name);
        if let Some(inner) = entry_patch.get("name").and_then(Value::as_str)
            && inner != name
        {
            errors.push(FieldError::invalid(
                &entry_path.child("name"),
                format!("must match the key {name:?} it is listed under, got {inner:?}"),
            ));
            continue;
        }
        let position = merged.iter().position(|s| &s.name == name);
        let existing = position.map(|i| merged[i].server.clone());
        let mut entry_patch = entry_patch.clone();
        if let Some(obj) = entry_patch.as_object_mut() {
            obj.remove("name");
        }
        match (
            merge_entry::<McpServer>(&existing, &entry_patch, &entry_path, errors),
            position,
        ) {
            (Some(server), Some(i)) => merged[i].server = server,
            (Some(server), None) => merged.push(NamedMcpServer {
                name: name.clone(),
                server,
            }),
            (None, Some(i)) => {
                merged.remove(i);
            }
            (None, None) => {}
        }
    }
    merged
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::api::{PostgresCredentialsRef, PostgresServer, S3CredentialsRef, S3Server};

    fn path() -> FieldPath {
        FieldPath::new("servers")
    }

    fn base() -> ServersSpec {
        serde_json::from_value(json!({
            "postgres": {"host": "db.example.com", "database": "rag", "credentialsSecretRef": {"name": "pg"}},
            "minio": {"endpoint": "https://s3.example.com", "bucket": "docs", "credentialsSecretRef": {"name": "s3"}},
            "aiMcpServer": {"url": "https://ai.example.com/mcp"},
            "mcpServers": [{"name": "search", "url": "https://search.example.com"}]
        }))
        .unwrap()
    }

    #[test]
    fn patching_one_type_leaves_the_others_alone() {
        let current = base();
        let merged =
            merge_servers(&current, &json!({"postgres": {"port": 6432}}), &path()).unwrap();
        assert_eq!(merged.postgres.as_ref().unwrap().port, 6432);
        assert_eq!(merged.postgres.as_ref().unwrap().host, "db.example.com");
        assert_eq!(merged.minio, current.minio);
        assert_eq!(merged.ai_mcp_server, current.ai_mcp_server);
        assert_eq!(merged.mcp_servers, current.mcp_servers);
    }

    #[test]
    fn null_removes_a_type_or_a_named_server_and_resets_a_field() {
        let merged = merge_servers(
            &base(),
            &json!({"minio": null, "mcpServers": {"search": null}, "postgres": {"port": null}}),
            &path(),
        )
        .unwrap();
        assert!(merged.minio.is_none());
        assert!(merged.mcp_servers.is_empty());
        assert_eq!(
            merged.postgres.unwrap().port,
            5432,
            "a nulled field returns to its default"
        );
    }

    #[test]
    fn named_servers_are_added_and_merged_by_name() {
        let merged = merge_servers(
            &base(),
            &json!({"mcpServers": {"search": {"timeoutSeconds": 5}, "tools": {"url": "https://tools.example.com"}}}),
            &path(),
        )
        .unwrap();
        let names: Vec<&str> = merged.mcp_servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["search", "tools"]);
        assert_eq!(merged.mcp_servers[0].server.timeout_seconds, 5);
        assert_eq!(
            merged.mcp_servers[0].server.url,
            "https://search.example.com"
        );
    }

    #[test]
    fn a_new_type_needs_its_required_fields() {
        let err = merge_servers(
            &ServersSpec::default(),
            &json!({"postgres": {"host": "db"}}),
            &path(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "servers.postgres.database: is required");
    }

    #[test]
    fn bad_patches_name_the_field() {
        let cases = [
            (
                json!([1]),
                "servers: must be an object keyed by server type (postgres, minio, aiMcpServer, mcpServers), got a list",
            ),
            (
                json!({"redis": {}}),
                "servers.redis: unknown server type \"redis\"; expected one of postgres, minio, aiMcpServer, mcpServers",
            ),
            (
                json!({"minio": "s3://x"}),
                "servers.minio: must be an object (or null to remove it), got a string",
            ),
            (
                json!({"postgres": {"port": "x"}}),
                "servers.postgres.port: must be an integer, got string \"x\"",
            ),
            (
                json!({"postgres": {"sslmode": "require"}}),
                "servers.postgres.sslmode: unknown field: not part of the tenantmcp.dev/v1alpha1 API; expected one of caCertSecretRef, credentialsSecretRef, database, host, pool, port, sslMode",
            ),
            (
                json!({"mcpServers": [{"name": "a"}]}),
                "servers.mcpServers: must be an object keyed by server name",
            ),
            (
                json!({"mcpServers": {"a": {"name": "b", "url": "https://x"}}}),
                "servers.mcpServers[a].name: must match the key \"a\" it is listed under, got \"b\"",
            ),
            (
                json!({"aiMcpServer": {"headers": [{"name": "X", "value": 1}]}}),
                "servers.aiMcpServer.headers[0].value: must be a string, got integer `1`",
            ),
        ];
        for (patch, expected) in cases {
            let err = merge_servers(&base(), &patch, &path())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(expected),
                "patch {patch}:\n  expected {expected}\n  got      {err}"
            );
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("postgres".to_owned()),
            Just("minio".to_owned()),
            Just("aiMcpServer".to_owned()),
            Just("mcpServers".to_owned()),
            Just("host".to_owned()),
            Just("port".to_owned()),
            Just("url".to_owned()),
            Just("name".to_owned()),
            Just("search".to_owned()),
            "[a-zA-Z]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_servers() -> impl Strategy<Value = ServersSpec> {
        let pg = ("[a-z]{1,10}", 1..=65535i32).prop_map(|(host, port)| PostgresServer {
            port,
            ..serde_json::from_value(
                json!({"host": format!("{host}.example.com"), "database": host,
                "credentialsSecretRef": PostgresCredentialsRef::new("pg")}),
            )
            .unwrap()
        });
        let s3 = "[a-z]{3,10}".prop_map(|bucket| S3Server {
            bucket,
            ..serde_json::from_value(json!({"endpoint": "https://s3.example.com", "bucket": "b",
                "credentialsSecretRef": S3CredentialsRef::new("s3")}))
            .unwrap()
        });
        let mcp = (1..=600i32).prop_map(|timeout| McpServer {
            timeout_seconds: timeout,
            ..serde_json::from_value(json!({"url": "https://ai.example.com/mcp"})).unwrap()
        });
        let named = prop::collection::btree_map("[a-z]{1,6}", mcp.clone(), 0..4).prop_map(|m| {
            m.into_iter()
                .map(|(name, server)| NamedMcpServer { name, server })
                .collect::<Vec<_>>()
        });
        (
            prop::option::of(pg),
            prop::option::of(s3),
            prop::option::of(mcp),
            named,
        )
            .prop_map(
                |(postgres, minio, ai_mcp_server, mcp_servers)| ServersSpec {
                    postgres: postgres.map(Box::new),
                    minio: minio.map(Box::new),
                    ai_mcp_server: ai_mcp_server.map(Box::new),
                    mcp_servers,
                },
            )
    }

    proptest! {
        #[test]
        fn merge_never_panics(current in arb_servers(), patch in arb_json()) {
            let _ = merge_servers(&current, &patch, &path());
        }

        #[test]
        fn the_empty_patch_is_the_identity(current in arb_servers()) {
            prop_assert_eq!(merge_servers(&current, &json!({}), &path()).unwrap(), current);
        }

        #[test]
        fn a_merge_touches_only_the_types_it_names(current in arb_servers(), patch in arb_json()) {
            if let (Ok(merged), Some(obj)) = (merge_servers(&current, &patch, &path()), patch.as_object()) {
                if !obj.contains_key("postgres") { prop_assert_eq!(&merged.postgres, &current.postgres); }
                if !obj.contains_key("minio") { prop_assert_eq!(&merged.minio, &current.minio); }
                if !obj.contains_key("aiMcpServer") { prop_assert_eq!(&merged.ai_mcp_server, &current.ai_mcp_server); }
                if !obj.contains_key("mcpServers") { prop_assert_eq!(&merged.mcp_servers, &current.mcp_servers); }
            }
        }

        #[test]
        fn null_removes_exactly_the_named_type(current in arb_servers(), which in 0usize..4) {
            let key = SERVER_TYPES[which];
            let merged = merge_servers(&current, &json!({ key: null }), &path()).unwrap();
            let mut expected = current.clone();
            match which {
                0 => expected.postgres = None,
                1 => expected.minio = None,
                2 => expected.ai_mcp_server = None,
                _ => expected.mcp_servers.clear(),
            }
            prop_assert_eq!(merged, expected);
        }

        #[test]
        fn patching_with_the_current_entries_is_idempotent(current in arb_servers()) {
            let mut patch = serde_json::to_value(&current).unwrap();
            if let Some(list) = patch.get("mcpServers").and_then(Value::as_array).cloned() {
                let by_name: Map<String, Value> = list
                    .into_iter()
                    .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v))
                    .collect();
                patch["mcpServers"] = Value::Object(by_name);
            }
            prop_assert_eq!(merge_servers(&current, &patch, &path()).unwrap(), current);
        }
    }
}

//! Partial updates of one server type at a time, with JSON merge-patch semantics (RFC 7386).
//!
//! A patch is an object whose keys are server types: `postgres`, `minio`, `aiMcpServer`, and
//! `mcpServers`, itself an object keyed by server name. A key that is absent leaves that server
//! type exactly as it was; `null` removes it; an object is merged into the current entry (or
//! creates it). Fields set to `null` inside an entry go back to their defaults.
//!
//! Merging never panics, and the empty patch `{}` is the identity.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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
    T: Clone + serde::Serialize + DeserializeOwned,
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

/// Decodes a JSON value into `T`, reporting unknown fields and type errors by field path.
pub fn decode<T: DeserializeOwned>(value: Value, path: &FieldPath) -> Result<T, FieldErrors> {
    let mut unknown = Vec::new();
    let mut on_unknown = |ignored: serde_ignored::Path<'_>| unknown.push(ignored.to_string());
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_unknown));
    let mut errors = FieldErrors::default();
    for field in unknown {
        errors.push(FieldError::forbidden(
            &join(path, &field),
            "unknown field: not part of the tenantmcp.dev/v1alpha1 API (check the spelling)",
        ));
    }
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(errors),
        Err(e) => {
            let at = e.path().to_string();
            let mut field = join(path, if at == "." { "" } else { &at });
            let raw = e.into_inner().to_string();
            // serde reports a missing field at its parent; point at the field itself.
            if let Some(name) = raw
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                field = field.child(name);
            }
            let message = serde_message(&raw);
            let kind = if message.starts_with("is required") {
                ErrorKind::Required
            } else {
                ErrorKind::Invalid
            };
            errors.push(FieldError::new(&field, kind, message));
            Err(errors)
        }
    }
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

fn join(path: &FieldPath, rest: &str) -> FieldPath {
    if rest.is_empty() {
        return path.clone();
    }
    // serde_path_to_error prints list items as `[3]` and fields separated by dots.
    let mut out = path.clone();
    // serde_ignored prints `?` for the inside of an Option: not a field.
    for part in rest.split('.').filter(|p| *p != "?") {
        match part.split_once('[') {
            Some((field, index)) => {
                if !field.is_empty() {
                    out = out.child(field);
                }
                out = out.index(index.trim_end_matches(']').parse().unwrap_or(0));
            }
            None => match part.parse::<usize>() {
                // serde_ignored prints list items as plain numbers.
                Ok(index) => out = out.index(index),
                Err(_) => out = out.child(part),
            },
        }
    }
    out
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

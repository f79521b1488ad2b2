//! Custom resources against their CRD's `openAPIV3Schema`, as the API server treats them:
//! prune unknown fields (or refuse them with `fieldValidation=Strict`), apply defaults, check
//! types, required fields, enums, patterns, bounds and list-map keys, then evaluate the CEL
//! rules (`x-kubernetes-validations`) with kube's CEL validator, transition rules included.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// One problem: `(field, reason, message)`, as in a 422's `details.causes`.
pub type Cause = (String, String, String);

/// Removes the fields the schema does not declare and returns their paths.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_at(schema, obj, "", true, &mut unknown);
    unknown
}

fn prune_at(schema: &Value, value: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    let child = join(path, &key);
                    match props.get(&key) {
                        Some(s) => {
                            if let Some(v) = map.get_mut(&key) {
                                prune_at(s, v, &child, false, out);
                            }
                        }
                        None => {
                            map.remove(&key);
                            out.push(child);
                        }
                    }
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for (key, v) in map.iter_mut() {
                    prune_at(values, v, &join(path, key), false, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_at(item_schema, v, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default` values for absent properties, recursively.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, prop) in props {
                    if !map.contains_key(key)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(v) = map.get_mut(key) {
                        apply_defaults(prop, v);
                    }
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for v in map.values_mut() {
                    apply_defaults(values, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for v in items.iter_mut() {
                    apply_defaults(item_schema, v);
                }
            }
        }
        _ => {}
    }
}

/// Checks the structural rules; the root's `metadata`, `apiVersion` and `kind` are the API
/// server's own to check.
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(schema, obj, "", true, &mut causes);
    causes
}

/// Evaluates the CEL rules; `old` enables transition rules (`oldSelf`).
pub fn validate_cel(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    match kube::core::cel::Validator::new().validate(schema, obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                let field = e.field_path.trim_start_matches('.').to_owned();
                let got = type_name(pointer(obj, &field).unwrap_or(&Value::Null));
                (
                    field,
                    e.reason.unwrap_or_else(|| "FieldValueInvalid".into()),
                    format!("Invalid value: \"{got}\": {}", e.message),
                )
            })
            .collect(),
    }
}

fn pointer<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(obj);
    }
    obj.pointer(&format!("/{}", path.replace('.', "/")))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 64 {
        format!("{}...", &text[..60])
    } else {
        text
    }
}

fn check(schema: &Value, value: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let invalid = |out: &mut Vec<Cause>, msg: String| {
        out.push((
            path.to_owned(),
            "FieldValueInvalid".into(),
            format!("Invalid value: {}: {msg}", short(value)),
        ));
    };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.get("type").is_some()
        {
            invalid(
                out,
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            );
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = expected == actual
            || (expected == "number" && actual == "integer")
            || (expected == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0));
        if !ok && !int_or_string {
            invalid(
                out,
                format!("{path} in body must be of type {expected}: \"{actual}\""),
            );
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        let supported: Vec<String> = values.iter().map(Value::to_string).collect();
        out.push((
            path.into(),
            "FieldValueNotSupported".into(),
            format!(
                "Unsupported value: {}: supported values: {}",
                short(value),
                supported.join(", ")
            ),
        ));
    }
    match value {
        Value::String(s) => {
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && s.chars().count() as u64 > max
            {
                out.push((
                    path.into(),
                    "FieldValueTooLong".into(),
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && (s.chars().count() as u64) < min
            {
                invalid(
                    out,
                    format!("{path} in body should be at least {min} chars long"),
                );
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(s))
            {
                invalid(out, format!("{path} in body should match '{pattern}'"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                invalid(
                    out,
                    format!("{path} in body should be less than or equal to {max}"),
                );
            }
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                invalid(
                    out,
                    format!("{path} in body should be greater than or equal to {min}"),
                );
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                out.push((
                    path.into(),
                    "FieldValueTooMany".into(),
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let id: Map<String, Value> = keys
                        .iter()
                        .map(|k| {
                            (
                                (*k).to_owned(),
                                item.get(*k).cloned().unwrap_or(Value::Null),
                            )
                        })
                        .collect();
                    let id = Value::Object(id);
                    if !seen.insert(id.to_string()) {
                        out.push((
                            format!("{path}[{i}]"),
                            "FieldValueDuplicate".into(),
                            format!("Duplicate value: {id}"),
                        ));
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = required.as_str()
                    && !map.contains_key(name)
                {
                    out.push((
                        join(path, name),
                        "FieldValueRequired".into(),
                        "Required value".into(),
                    ));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, v) in map {
                    if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if let Some(s) = props.get(key) {
                        check(s, v, &join(path, key), false, out);
                    }
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for (key, v) in map {
                    check(values, v, &join(path, key), false, out);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5,
                   "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "id is immutable"}]},
            "port": {"type": "integer", "minimum": 1.0, "maximum": 65535.0, "default": 5432},
            "mode": {"type": "string", "enum": ["A", "B"]},
            "items": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "opt": {"type": "object", "nullable": true, "properties": {"x": {"type": "boolean"}}}
        }}}})
    }

    #[test]
    fn structural_rules() {
        let obj = json!({"spec": {"id": "ABCDEFG", "port": 70000, "mode": "C", "opt": null,
                                  "items": [{"name": "a"}, {"name": "a"}, {"name": "b"}]}});
        let found: Vec<String> = validate(&schema(), &obj)
            .into_iter()
            .map(|(f, r, m)| format!("{f} {r} {m}"))
            .collect();
        assert_eq!(
            found,
            [
                "spec.id FieldValueTooLong Too long: may not be more than 5 bytes",
                "spec.id FieldValueInvalid Invalid value: \"ABCDEFG\": spec.id in body should match '^[a-z]+$'",
                "spec.items FieldValueTooMany Too many: 3: must have at most 2 items",
                "spec.items[1] FieldValueDuplicate Duplicate value: {\"name\":\"a\"}",
                "spec.mode FieldValueNotSupported Unsupported value: \"C\": supported values: \"A\", \"B\"",
                "spec.port FieldValueInvalid Invalid value: 70000: spec.port in body should be less than or equal to 65535",
            ]
        );
        let missing = validate(&schema(), &json!({"spec": {"port": "x"}}));
        assert_eq!(missing[0].0, "spec.id");
        assert_eq!(
            missing[1].2,
            "Invalid value: \"x\": spec.port in body must be of type integer: \"string\""
        );
    }

    #[test]
    fn pruning_and_defaults() {
        let mut obj = json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}, "spec": {"id": "a", "extra": 1, "opt": {"x": true, "y": 2}}, "junk": true});
        let unknown = prune(&schema(), &mut obj);
        assert_eq!(unknown, ["junk", "spec.extra", "spec.opt.y"]);
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"]["port"], 5432);
        assert_eq!(obj["metadata"]["name"], "n");
    }

    #[test]
    fn cel_transition_rules() {
        let old = json!({"spec": {"id": "a"}});
        let new = json!({"spec": {"id": "b"}});
        let found = validate_cel(&schema(), &new, Some(&old));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "spec.id");
        assert!(found[0].2.ends_with("id is immutable"), "{found:?}");
        assert!(validate_cel(&schema(), &new, None).is_empty());
    }
}

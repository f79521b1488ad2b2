//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! The model follows the real API server's: each manager owns a set of field paths; apply
//! merges the applied configuration (maps recursively, `listType: map` lists by key, anything
//! else atomically), removes fields its manager applied before but no longer applies (unless
//! another manager owns them too), and refuses to change a field another manager owns with a
//! different value unless `force` is set. Non-apply writes take ownership of what they change.
//! Not modelled: `listType: set` lists (treated as atomic) and ownership of list items by value.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::resources::ResourceType;

/// A path into an object: `f:<field>` steps and `k:<key json>` steps into keyed lists.
type FieldPath = Vec<String>;
/// The fields one manager owns.
type FieldSet = BTreeSet<FieldPath>;

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The schema of a child field, if known.
fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|v| v.is_object()))
}

fn list_keys(schema: Option<&Value>) -> Option<Vec<String>> {
    let s = schema?;
    if s.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    Some(
        s.get("x-kubernetes-list-map-keys")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    )
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let id: Map<String, Value> = keys
        .iter()
        .map(|k| (k.clone(), item.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    format!("k:{}", Value::Object(id))
}

/// The leaf fields of an (applied or stored) object.
fn fields_of(value: &Value, schema: Option<&Value>, root: bool) -> FieldSet {
    let mut out = FieldSet::new();
    collect(value, schema, &mut Vec::new(), root, &mut out);
    out
}

fn collect(
    value: &Value,
    schema: Option<&Value>,
    at: &mut FieldPath,
    root: bool,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if root && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if at.len() == 1
                    && at[0] == "f:metadata"
                    && matches!(
                        k.as_str(),
                        "name"
                            | "namespace"
                            | "uid"
                            | "resourceVersion"
                            | "generation"
                            | "creationTimestamp"
                            | "managedFields"
                            | "deletionTimestamp"
                            | "deletionGracePeriodSeconds"
                    )
                {
                    continue;
                }
                at.push(format!("f:{k}"));
                collect(v, child_schema(schema, k), at, false, out);
                at.pop();
            }
        }
        Value::Array(items) => match list_keys(schema) {
            Some(keys) if !items.is_empty() => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in items {
                    at.push(item_key(item, &keys));
                    at.push(".".into());
                    out.insert(at.clone());
                    at.pop();
                    collect(item, item_schema, at, false, out);
                    at.pop();
                }
            }
            _ => {
                out.insert(at.clone());
            }
        },
        _ => {
            out.insert(at.clone());
        }
    }
}

fn get_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = obj;
    for step in path {
        if step == "." {
            continue;
        }
        if let Some(field) = step.strip_prefix("f:") {
            current = current.get(field)?;
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).ok()?;
            current = current.as_array()?.iter().find(|item| {
                key.as_object()
                    .is_some_and(|k| k.iter().all(|(f, v)| item.get(f) == Some(v)))
            })?;
        }
    }
    Some(current)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if last == "." {
        // A list item itself: remove it from its list.
        let Some((item, list_path)) = parents.split_last() else {
            return;
        };
        let Some(key) = item
            .strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Value>(k).ok())
        else {
            return;
        };
        if let Some(Value::Array(items)) = get_mut_at(obj, list_path) {
            items.retain(|i| {
                !key.as_object()
                    .is_some_and(|k| k.iter().all(|(f, v)| i.get(f) == Some(v)))
            });
        }
        return;
    }
    if let (Some(field), Some(Value::Object(map))) =
        (last.strip_prefix("f:"), get_mut_at(obj, parents))
    {
        map.remove(field);
        // As structured-merge-diff does, a map left empty by the removal goes too (the
        // applier owned everything in it), so no `{}` missing its required fields remains.
        if map.is_empty()
            && parents.len() > 1
            && parents.last().is_some_and(|p| p.starts_with("f:"))
        {
            remove_at(obj, parents);
        }
    }
}

fn get_mut_at<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut current = obj;
    for step in path {
        if step == "." {
            continue;
        }
        if let Some(field) = step.strip_prefix("f:") {
            current = current.get_mut(field)?;
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).ok()?;
            current = current.as_array_mut()?.iter_mut().find(|item| {
                key.as_object()
                    .is_some_and(|k| k.iter().all(|(f, v)| item.get(f) == Some(v)))
            })?;
        }
    }
    Some(current)
}

/// Merges `src` into `dst` the way apply does.
fn merge(dst: &mut Value, src: &Value, schema: Option<&Value>) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                let child = child_schema(schema, k);
                match d.get_mut(k) {
                    Some(existing) => merge(existing, v, child),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d @ Value::Array(_), Value::Array(s)) => match list_keys(schema) {
            Some(keys) => {
                let item_schema = schema.and_then(|x| x.get("items"));
                if let Value::Array(items) = d {
                    for item in s {
                        let key = item_key(item, &keys);
                        match items.iter_mut().find(|i| item_key(i, &keys) == key) {
                            Some(existing) => merge(existing, item, item_schema),
                            None => items.push(item.clone()),
                        }
                    }
                }
            }
            None => *d = Value::Array(s.clone()),
        },
        (d, s) => *d = s.clone(),
    }
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for step in path {
            let entry = node.entry(step.clone()).or_insert_with(|| json!({}));
            node = match entry {
                Value::Object(m) => m,
                // safe: every entry is inserted as an object just above.
                _ => unreachable!("fieldsV1 nodes are objects"),
            };
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value) -> FieldSet {
    fn walk(v: &Value, at: &mut FieldPath, out: &mut FieldSet) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {
                out.insert(at.clone());
            }
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry, parsed.
struct Entry {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Entry {
                manager: text("manager"),
                operation: text("operation"),
                subresource: text("subresource"),
                api_version: text("apiVersion"),
                time: text("time"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

fn store_entries(obj: &mut Value, list: Vec<Entry>) {
    let managed: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if !obj.get("metadata").is_some_and(Value::is_object) && !managed.is_empty() {
        obj["metadata"] = json!({});
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if managed.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(managed));
        }
    }
}

/// Applies `applied` as `manager` onto `live` (`None` when the object does not exist yet).
/// `subresource` is `"status"` for the status subresource, `""` otherwise.
#[allow(clippy::too_many_arguments)] // every input is part of the apply request
pub fn apply(
    rt: &ResourceType,
    name: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: &str,
) -> Result<Value, ApiError> {
    let schema = rt.schema.as_ref();
    let mut applied = applied.clone();
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    let new_fields = fields_of(&applied, schema, true);
    let mut list = live.map(entries).unwrap_or_default();
    let base = live.cloned().unwrap_or_else(|| json!({}));

    let mut conflicts = Vec::new();
    for path in &new_fields {
        for entry in list.iter().filter(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        }) {
            if entry.fields.contains(path) && get_at(&base, path) != get_at(&applied, path) {
                let shown: Vec<&str> = path
                    .iter()
                    .filter(|s| *s != ".")
                    .map(String::as_str)
                    .collect();
                conflicts.push((
                    format!(".{}", shown.join(".").replace("f:", "")),
                    entry.manager.clone(),
                ));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::apply_conflict(rt, name, &conflicts));
    }
    if force {
        for entry in list.iter_mut().filter(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        }) {
            entry.fields.retain(|p| !new_fields.contains(p));
        }
    }

    let mut result = base;
    let previous: FieldSet = list
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for path in previous.difference(&new_fields) {
        let owned_elsewhere = list
            .iter()
            .filter(|e| {
                !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
            })
            .any(|e| e.fields.contains(path));
        if !owned_elsewhere {
            remove_at(&mut result, path);
        }
    }
    merge(&mut result, &applied, schema);

    list.retain(|e| {
        !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
    });
    list.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        subresource: subresource.into(),
        api_version: rt.api_version(),
        time: now(),
        fields: new_fields,
    });
    store_entries(&mut result, list);
    Ok(result)
}

/// Records a non-apply write by `manager`: it takes ownership of every field it changed, and
/// ownership of fields that no longer exist is dropped.
pub fn record_update(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
) {
    let schema = rt.schema.as_ref();
    let mut list = old.map(entries).unwrap_or_default();
    let new_fields = fields_of(new, schema, true);
    let old_value = old.cloned().unwrap_or_else(|| json!({}));
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| get_at(&old_value, p) != get_at(new, p))
        .cloned()
        .collect();
    for entry in list.iter_mut() {
        entry
            .fields
            .retain(|p| new_fields.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match list.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now();
            }
            None => list.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                subresource: subresource.into(),
                api_version: rt.api_version(),
                time: now(),
                fields: changed,
            }),
        }
    }
    store_entries(new, list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> ResourceType {
        let crd = json!({
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Thing", "plural": "things"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "a": {"type": "string"}, "b": {"type": "string"},
                        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                                  "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}
                    }}}}}}]}
        });
        ResourceType::from_crd(&crd).unwrap().remove(0)
    }

    fn managers(obj: &Value) -> Vec<String> {
        entries(obj)
            .iter()
            .map(|e| format!("{}:{}", e.manager, e.operation))
            .collect()
    }

    #[test]
    fn apply_creates_merges_and_prunes_its_own_fields() {
        let t = rt();
        let first = apply(
            &t,
            "x",
            None,
            &json!({"spec": {"a": "1", "b": "2", "items": [{"name": "p", "v": 1}]}}),
            "gitops",
            false,
            "",
        )
        .unwrap();
        assert_eq!(first["spec"]["b"], "2");
        // Dropping b from the applied config removes it; the keyed list merges by name.
        let second = apply(
            &t,
            "x",
            Some(&first),
            &json!({"spec": {"a": "1", "items": [{"name": "q", "v": 2}]}}),
            "gitops",
            false,
            "",
        )
        .unwrap();
        assert!(second["spec"].get("b").is_none(), "{second}");
        let names: Vec<&str> = second["spec"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["q"],
            "p was applied by gitops before and no longer is"
        );
        assert_eq!(managers(&second), ["gitops:Apply"]);
    }

    /// A whole sub-object the applier owned and no longer applies goes, and so does the map it
    /// leaves empty; an applied empty map stays.
    #[test]
    fn dropping_a_whole_sub_object_removes_it() {
        let t = rt();
        let first = apply(
            &t,
            "x",
            None,
            &json!({"status": {"active": {"postgres": {"host": "h", "port": 1}}, "n": 1}}),
            "controller",
            true,
            "status",
        )
        .unwrap();
        let second = apply(
            &t,
            "x",
            Some(&first),
            &json!({"status": {"active": {}, "n": 2}}),
            "controller",
            true,
            "status",
        )
        .unwrap();
        assert_eq!(second["status"]["active"], json!({}), "{second}");
        assert_eq!(second["status"]["n"], 2);
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let t = rt();
        let live = apply(
            &t,
            "x",
            None,
            &json!({"spec": {"a": "1"}}),
            "gitops",
            false,
            "",
        )
        .unwrap();
        let err = apply(
            &t,
            "x",
            Some(&live),
            &json!({"spec": {"a": "2"}}),
            "mcp-tools",
            false,
            "",
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"gitops\": .spec.a"),
            "{}",
            err.message
        );
        // Same value: shared ownership, no conflict.
        let shared = apply(
            &t,
            "x",
            Some(&live),
            &json!({"spec": {"a": "1"}}),
            "mcp-tools",
            false,
            "",
        )
        .unwrap();
        assert_eq!(managers(&shared), ["gitops:Apply", "mcp-tools:Apply"]);
        let forced = apply(
            &t,
            "x",
            Some(&live),
            &json!({"spec": {"a": "2"}}),
            "mcp-tools",
            true,
            "",
        )
        .unwrap();
        assert_eq!(forced["spec"]["a"], "2");
        assert_eq!(
            managers(&forced),
            ["mcp-tools:Apply"],
            "gitops lost the field"
        );
    }

    #[test]
    fn updates_take_ownership_of_what_they_change() {
        let t = rt();
        let live = apply(
            &t,
            "x",
            None,
            &json!({"spec": {"a": "1", "b": "1"}}),
            "gitops",
            false,
            "",
        )
        .unwrap();
        let mut edited = live.clone();
        edited["spec"]["a"] = json!("edited");
        record_update(&t, Some(&live), &mut edited, "kubectl-edit", "");
        assert_eq!(managers(&edited), ["gitops:Apply", "kubectl-edit:Update"]);
        let err = apply(
            &t,
            "x",
            Some(&edited),
            &json!({"spec": {"a": "1", "b": "1"}}),
            "gitops",
            false,
            "",
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("conflict with \"kubectl-edit\": .spec.a"),
            "{}",
            err.message
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = fields_of(
            &json!({"metadata": {"labels": {"a": "b"}}, "spec": {"x": 1, "l": [1, 2]}}),
            None,
            true,
        );
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        assert_eq!(
            to_fields_v1(&set),
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:l": {}, "f:x": {}}})
        );
    }
}

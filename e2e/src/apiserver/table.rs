//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for, with the columns a real
//! API server prints (a CRD's `additionalPrinterColumns` included).

use serde_json::{Value, json};

use super::resources::ResourceType;

/// `kubectl`'s human-readable duration (`45s`, `5m10s`, `3h`, `12d`).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

fn age(timestamp: Option<&Value>) -> String {
    let Some(ts) = timestamp
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - ts.as_second())
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = obj;
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = after[end + 1..].trim_start_matches('.');
            let items = current.as_array()?;
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches('"').trim_matches('\'');
                current = items.iter().find(|item| {
                    json_path(item, field.trim()).and_then(Value::as_str) == Some(value)
                })?;
            } else {
                current = items.get(inner.parse::<usize>().ok()?)?;
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            current = current.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(current)
}

fn cell(value: Option<&Value>, column_type: &str) -> Value {
    match (value, column_type) {
        (None, _) | (Some(Value::Null), _) => Value::Null,
        (Some(v), "date") => json!(age(Some(v))),
        (Some(Value::String(s)), _) => json!(s),
        (Some(v @ (Value::Number(_) | Value::Bool(_))), _) => v.clone(),
        (Some(v), _) => json!(v.to_string()),
    }
}

type Column = (String, String, String, i64, Box<dyn Fn(&Value) -> Value>);

fn columns(rt: &ResourceType) -> Vec<Column> {
    let col = |name: &str, ty: &str, f: Box<dyn Fn(&Value) -> Value>| {
        (name.to_owned(), ty.to_owned(), String::new(), 0, f)
    };
    let age_col = || {
        col(
            "Age",
            "string",
            Box::new(|o: &Value| json!(age(o.pointer("/metadata/creationTimestamp")))),
        )
    };
    let mut cols: Vec<Column> = vec![col(
        "Name",
        "string",
        Box::new(|o: &Value| o.pointer("/metadata/name").cloned().unwrap_or_default()),
    )];
    if rt.crd.is_some() {
        if rt.printer_columns.is_empty() {
            cols.push(age_col());
        }
        for c in &rt.printer_columns {
            let path = c
                .get("jsonPath")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let ty = c
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string")
                .to_owned();
            let ty_for_cell = ty.clone();
            cols.push((
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                if ty == "date" { "string".into() } else { ty },
                c.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                Box::new(move |o: &Value| cell(json_path(o, &path), &ty_for_cell)),
            ));
        }
        return cols;
    }
    match rt.kind.as_str() {
        "Namespace" => cols.push(col(
            "Status",
            "string",
            Box::new(|o: &Value| o.pointer("/status/phase").cloned().unwrap_or_default()),
        )),
        "Secret" => {
            cols.push(col(
                "Type",
                "string",
                Box::new(|o: &Value| o.get("type").cloned().unwrap_or(json!("Opaque"))),
            ));
            cols.push(col(
                "Data",
                "integer",
                Box::new(|o: &Value| {
                    json!(
                        o.get("data")
                            .and_then(Value::as_object)
                            .map_or(0, |m| m.len())
                    )
                }),
            ));
        }
        "ConfigMap" => cols.push(col(
            "Data",
            "integer",
            Box::new(|o: &Value| {
                let n = |k| o.get(k).and_then(Value::as_object).map_or(0, |m| m.len());
                json!(n("data") + n("binaryData"))
            }),
        )),
        "Lease" => cols.push(col(
            "Holder",
            "string",
            Box::new(|o: &Value| {
                o.pointer("/spec/holderIdentity")
                    .cloned()
                    .unwrap_or_default()
            }),
        )),
        "Event" => {
            return vec![
                col(
                    "Last Seen",
                    "string",
                    Box::new(|o: &Value| {
                        let at = o
                            .get("lastTimestamp")
                            .or_else(|| o.get("eventTime"))
                            .or_else(|| o.pointer("/metadata/creationTimestamp"));
                        json!(age(at))
                    }),
                ),
                col(
                    "Type",
                    "string",
                    Box::new(|o: &Value| o.get("type").cloned().unwrap_or_default()),
                ),
                col(
                    "Reason",
                    "string",
                    Box::new(|o: &Value| o.get("reason").cloned().unwrap_or_default()),
                ),
                col(
                    "Object",
                    "string",
                    Box::new(|o: &Value| {
                        let r = o.get("involvedObject").or_else(|| o.get("regarding"));
                        let kind = r
                            .and_then(|r| r.get("kind"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_ascii_lowercase();
                        let name = r
                            .and_then(|r| r.get("name"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        json!(format!("{kind}/{name}"))
                    }),
                ),
                col(
                    "Message",
                    "string",
                    Box::new(|o: &Value| {
                        o.get("message")
                            .or_else(|| o.get("note"))
                            .cloned()
                            .unwrap_or_default()
                    }),
                ),
            ];
        }
        _ => {}
    }
    cols.push(age_col());
    cols
}

/// The Table for `objects`; `include_object` is `None`, `Metadata` (the default) or `Object`.
pub fn to_table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    include_object: &str,
) -> Value {
    let cols = columns(rt);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|(name, ty, description, priority, _)| {
            let mut d = json!({"name": name, "type": ty, "format": "", "description": description, "priority": priority});
            if name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|(_, _, _, _, f)| f(o)).collect();
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or_default()}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions, "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        for (s, text) in [
            (5, "5s"),
            (119, "119s"),
            (130, "2m10s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (3 * 86400, "3d"),
            (800 * 86400, "2y70d"),
        ] {
            assert_eq!(human_duration(s), text);
        }
    }

    #[test]
    fn printer_column_paths() {
        let obj = json!({"spec": {"tenantId": "acme"}, "status": {"conditions": [
            {"type": "Validated", "status": "True"}, {"type": "Ready", "status": "False"}]}});
        assert_eq!(json_path(&obj, ".spec.tenantId"), Some(&json!("acme")));
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("False"))
        );
        assert_eq!(
            json_path(&obj, ".status.conditions[0].type"),
            Some(&json!("Validated"))
        );
        assert_eq!(json_path(&obj, ".status.missing"), None);
    }
}

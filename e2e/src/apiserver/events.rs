//! The two Event APIs show the same events, as on a real cluster: kube-rs's `Recorder` writes
//! `events.k8s.io/v1` Events, while `kubectl describe` lists `core/v1` Events. Lists of either
//! include the other's events, converted field by field as the API server's conversion does.
//! Gets and watches are not converted (nothing here needs them).

use serde_json::{Map, Value, json};

/// `(events.k8s.io/v1 field, core/v1 field)` pairs that carry the same value.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
];

/// Fields both versions have under the same name.
const SHARED: &[&str] = &[
    "metadata",
    "reason",
    "type",
    "action",
    "related",
    "eventTime",
    "series",
    "reportingInstance",
];

fn convert(event: &Value, to_core: bool, api_version: &str) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    for field in SHARED {
        if let Some(v) = event.get(*field) {
            out.insert((*field).into(), v.clone());
        }
    }
    for (new, core) in RENAMED {
        let (from, to) = if to_core { (new, core) } else { (core, new) };
        if let Some(v) = event.get(*from) {
            out.insert((*to).into(), v.clone());
        }
    }
    if to_core {
        // core/v1 keeps the repeat count and last time in `count`/`lastTimestamp`, which
        // `kubectl describe` shows; events.k8s.io keeps them in `series`.
        if let Some(series) = event.get("series") {
            if let Some(count) = series.get("count") {
                out.entry("count").or_insert(count.clone());
            }
            if let Some(last) = series.get("lastObservedTime") {
                out.entry("lastTimestamp").or_insert(last.clone());
            }
        }
        if let Some(controller) = event.get("reportingController") {
            out.entry("source")
                .or_insert_with(|| json!({"component": controller}));
        }
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event as `core/v1` shows it.
pub fn to_core(event: &Value) -> Value {
    convert(event, true, "v1")
}

/// A `core/v1` Event as `events.k8s.io/v1` shows it.
pub fn to_events_v1(event: &Value) -> Value {
    convert(event, false, "events.k8s.io/v1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_event_reads_as_core_v1_for_kubectl_describe() {
        let recorded = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "acme.1", "namespace": "tenant-acme"},
            "regarding": {"kind": "TenantMcpConfig", "name": "acme", "uid": "u1"},
            "note": "postgres: connection refused", "reason": "ProbeFailed", "type": "Warning",
            "action": "Probe", "reportingController": "tenant-mcp", "reportingInstance": "pod-1",
            "eventTime": "2026-11-24T09:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-11-24T09:05:00.000000Z"},
        });
        let core = to_core(&recorded);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["uid"], "u1");
        assert_eq!(core["message"], "postgres: connection refused");
        assert_eq!(core["count"], 3);
        assert_eq!(core["lastTimestamp"], "2026-11-24T09:05:00.000000Z");
        assert_eq!(core["source"]["component"], "tenant-mcp");
        assert_eq!(core["reportingComponent"], "tenant-mcp");
        assert!(core.get("regarding").is_none());

        let back = to_events_v1(&core);
        assert_eq!(back["regarding"], recorded["regarding"]);
        assert_eq!(back["note"], recorded["note"]);
        assert_eq!(back["reportingController"], "tenant-mcp");
    }
}

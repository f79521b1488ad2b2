//! The admission decision for one `TenantMcpConfig` or `GlobalMcpConfig` write: the same
//! checks `tenant-mcp validate` runs ([`check_documents`]), fed with what the API server knows
//! instead of files — the namespace's tenant label, the stored `GlobalMcpConfig default` and
//! the other configs that claim the tenant. One rule set: a config `validate` refuses is
//! refused here with the same field paths and messages.
//!
//! It must never tell the caller anything the reviewed object's own namespace could not name
//! (threat model: any Pod that reaches the webhook's port can send it a review): it reads no
//! Secret (the controller reports missing Secrets and keys in the config's status), names no
//! config of another namespace, and reads no other tenant's active servers.
//!
//! Pure: the webhook server reads the cluster and hands the objects over.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::api::{GLOBAL_CONFIG_NAME, TENANT_LABEL};
use crate::config::FieldErrors;
use crate::config::manifest::{SourceDocument, check_documents};

/// Where the objects of the cluster appear in messages (`validate` names a file there).
const CLUSTER: &str = "the cluster";

/// How a config of another namespace is named in a refusal: not at all.
const ELSEWHERE: &str = "a TenantMcpConfig in another namespace";

/// What the cluster holds that a decision depends on.
#[derive(Clone, Debug, Default)]
pub struct Cluster<'a> {
    /// The stored `GlobalMcpConfig default` (its endpoint policy, `allowUnboundNamespaces`),
    /// if there is one; ignored when the object under review is that config.
    pub global: Option<&'a Value>,
    /// For a `TenantMcpConfig`: its namespace's `tenantmcp.dev/tenant` label (`None` when the
    /// namespace has none).
    pub namespace_label: Option<&'a str>,
    /// Other `TenantMcpConfig`s claiming the same tenant, with their namespaces' labels.
    pub rivals: Vec<(&'a Value, Option<&'a str>)>,
}

/// The answer to an admission request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Why the write is refused; empty when it is allowed.
    pub errors: FieldErrors,
    /// What kubectl prints beside an allowed (or refused) write.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Whether the write is allowed.
    pub fn allowed(&self) -> bool {
        self.errors.is_empty()
    }

    /// The refusal as one line, each error as `validate` prints it (`path: message`).
    pub fn message(&self) -> String {
        self.errors
            .iter()
            .map(|e| {
                if e.path.is_empty() {
                    e.message.clone()
                } else {
                    e.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Whether a write must go through whatever the rules say now: an update of an object being
/// deleted (the controller removes its finalizer) or one that leaves `spec` as it was (labels,
/// annotations, finalizers).
pub fn never_refused(object: &Value, old: Option<&Value>) -> bool {
    let spec_unchanged = old.is_some_and(|o| o.get("spec") == object.get("spec"));
    being_deleted(object) || spec_unchanged
}

/// Whether `object` is being deleted (only its finalizers may still change).
pub fn being_deleted(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// The decision for `object` (created, or updated from `old`) given `cluster`.
///
/// Writes that must never be refused are allowed whatever the rules say now: an update of an
/// object being deleted (the controller removes its finalizer) and an update that leaves the
/// `spec` as it was (labels, annotations, finalizers) — a policy tightened since the object
/// was stored must not block either; the controller reports such configs in their status.
pub fn review(object: &Value, old: Option<&Value>, cluster: &Cluster<'_>) -> Verdict {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut documents = Vec::new();
    let mut push = |source: &str, content: Value| {
        // What the cluster holds is not a document of a file: no position in its messages.
        let position = if source == CLUSTER {
            0
        } else {
            documents.len() + 1
        };
        documents.push(SourceDocument {
            source: source.to_owned(),
            position,
            content: Ok(content),
        });
    };
    let reviewing_global = kind == "GlobalMcpConfig";
    if let Some(global) = cluster.global.filter(|_| !reviewing_global) {
        push(CLUSTER, global.clone());
    }
    if let (Some(ns), false) = (&namespace, reviewing_global) {
        let mut labels = serde_json::Map::new();
        if let Some(tenant) = cluster.namespace_label {
            labels.insert(TENANT_LABEL.to_owned(), json!(tenant));
        }
        push(
            CLUSTER,
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "labels": labels}}),
        );
    }
    for (rival, _) in cluster.rivals.iter().filter(|(rival, label)| {
        let same = rival.pointer("/metadata/namespace").and_then(Value::as_str)
            == namespace.as_deref()
            && rival.pointer("/metadata/name").and_then(Value::as_str) == Some(name);
        !same && serves(rival, *label, cluster.global)
    }) {
        push(CLUSTER, (*rival).clone());
    }
    push("the request", object.clone());
    let report = check_documents(&documents);
    let Some(mine) = report.objects.last() else {
        return Verdict::default();
    };
    let mut verdict = Verdict {
        errors: mine.errors.clone(),
        warnings: Vec::new(),
    };
    conceal_other_namespaces(&mut verdict.errors, &cluster.rivals, namespace.as_deref());
    if never_refused(object, old) {
        for e in std::mem::take(&mut verdict.errors).iter() {
            verdict.warnings.push(format!(
                "{e} (stored before this rule applied: allowed because the spec did not change)"
            ));
        }
    }
    if reviewing_global && name != GLOBAL_CONFIG_NAME {
        verdict.warnings.push(format!(
            "only the GlobalMcpConfig named {GLOBAL_CONFIG_NAME:?} is read; {name:?} has no effect"
        ));
    }
    verdict
}

/// Replaces the name of every rival config outside `namespace` in `errors` by
/// [`ELSEWHERE`]: the writer learns that its tenant has a config, not where.
fn conceal_other_namespaces(
    errors: &mut FieldErrors,
    rivals: &[(&Value, Option<&str>)],
    namespace: Option<&str>,
) {
    let hidden: BTreeSet<String> = rivals
        .iter()
        .filter_map(|(rival, _)| {
            let ns = rival
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)?;
            let name = rival.pointer("/metadata/name").and_then(Value::as_str)?;
            (Some(ns) != namespace).then(|| format!("TenantMcpConfig {ns}/{name}"))
        })
        .collect();
    if hidden.is_empty() {
        return;
    }
    for e in &mut errors.0 {
        for name in &hidden {
            e.message = e.message.replace(name.as_str(), ELSEWHERE);
        }
    }
}

/// Whether `rival` (in a namespace labelled `label`) can serve its tenant: only such a claim
/// makes a second config a conflict (an impostor in an unbound namespace does not).
fn serves(rival: &Value, label: Option<&str>, global: Option<&Value>) -> bool {
    let tenant = rival.pointer("/spec/tenantId").and_then(Value::as_str);
    let namespace = rival
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let allow_unbound = global
        .and_then(|g| g.pointer("/spec/allowUnboundNamespaces"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    tenant.is_some_and(|t| {
        crate::config::binding::namespace_allows(namespace, label, t, allow_unbound).is_ok()
    })
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;

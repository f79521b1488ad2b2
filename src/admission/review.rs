//! The admission decision for one `TenantMcpConfig` or `GlobalMcpConfig` write: the same
//! checks `tenant-mcp validate` runs ([`check_documents`]), fed with what the API server knows
//! instead of files — the namespace's tenant label, the stored `GlobalMcpConfig default`, the
//! other configs that claim the tenant and the names of the Secrets that exist. One rule set:
//! a config `validate` refuses is refused here with the same field paths and messages.
//!
//! Pure: the webhook server reads the cluster and hands the objects over.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::api::{GLOBAL_CONFIG_NAME, TENANT_LABEL};
use crate::config::FieldErrors;
use crate::config::decode::decode;
use crate::config::manifest::{SourceDocument, check_documents};

/// Where the objects of the cluster appear in messages (`validate` names a file there).
const CLUSTER: &str = "the cluster";

/// What the cluster holds that a decision depends on.
#[derive(Clone, Debug)]
pub struct Cluster<'a> {
    /// The stored `GlobalMcpConfig default` (its endpoint policy, `allowUnboundNamespaces`),
    /// if there is one; ignored when the object under review is that config.
    pub global: Option<&'a Value>,
    /// For a `TenantMcpConfig`: its namespace's `tenantmcp.dev/tenant` label (`None` when the
    /// namespace has none).
    pub namespace_label: Option<&'a str>,
    /// Other `TenantMcpConfig`s claiming the same tenant, with their namespaces' labels.
    pub rivals: Vec<(&'a Value, Option<&'a str>)>,
    /// For a `GlobalMcpConfig`: every tenant's `status.active`, to say what a new endpoint
    /// policy would take out of service.
    pub active: Vec<(&'a str, &'a crate::api::ActiveConfig)>,
    /// Whether `active` holds only some of the configs (the webhook stops reading them when
    /// its time is nearly up, rather than let the API server time the write out).
    pub active_partial: bool,
    /// The Secrets that exist in the namespace the object's references point into: their
    /// names and the keys of their data (never the values).
    pub secrets: &'a BTreeMap<String, BTreeSet<String>>,
}

static NO_SECRETS: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

impl Default for Cluster<'_> {
    fn default() -> Self {
        Self {
            global: None,
            namespace_label: None,
            rivals: Vec::new(),
            active: Vec::new(),
            active_partial: false,
            secrets: &NO_SECRETS,
        }
    }
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

/// The namespace the Secrets `object` references live in: a GlobalMcpConfig's
/// `credentialsNamespace` (or the default one), a TenantMcpConfig's own namespace.
pub fn secrets_namespace(object: &Value) -> String {
    if object.get("kind").and_then(Value::as_str) == Some("GlobalMcpConfig") {
        object
            .pointer("/spec/credentialsNamespace")
            .and_then(Value::as_str)
            .unwrap_or(crate::api::DEFAULT_CREDENTIALS_NAMESPACE)
            .to_owned()
    } else {
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
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
    let secrets_namespace = secrets_namespace(object);
    for (secret, keys) in cluster.secrets {
        let data: serde_json::Map<String, Value> =
            keys.iter().map(|k| (k.clone(), json!(""))).collect();
        push(
            CLUSTER,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": secret, "namespace": secrets_namespace},
                   "data": data}),
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
        warnings: secret_warnings(object, cluster.secrets, &secrets_namespace),
    };
    if never_refused(object, old) {
        for e in std::mem::take(&mut verdict.errors).iter() {
            verdict.warnings.push(format!(
                "{e} (stored before this rule applied: allowed because the spec did not change)"
            ));
        }
    }
    if reviewing_global && name == GLOBAL_CONFIG_NAME {
        verdict
            .warnings
            .extend(demotions(object, &cluster.active, cluster.active_partial));
    }
    if reviewing_global && name != GLOBAL_CONFIG_NAME {
        verdict.warnings.push(format!(
            "only the GlobalMcpConfig named {GLOBAL_CONFIG_NAME:?} is read; {name:?} has no effect"
        ));
    }
    verdict
}

/// A warning when the endpoint policy of `global` denies servers that tenants use now (the
/// same static rule the client and the controller apply to active entries): allowed — the
/// controller takes them out of service and those tenants fall back to the global servers —
/// but said, with how many tenants and which server types.
fn demotions(
    global: &Value,
    active: &[(&str, &crate::api::ActiveConfig)],
    partial: bool,
) -> Option<String> {
    use crate::config::candidate::ServerKey;
    let spec = decoded::<crate::api::GlobalMcpConfig>(global)?.spec;
    let policy = crate::config::validate::validate_global_spec(&spec).1?;
    let mut tenants = BTreeSet::new();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for (tenant, entries) in active {
        let mut keys = vec![ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp];
        keys.extend(
            entries
                .mcp_servers
                .keys()
                .map(|n| ServerKey::Mcp(n.clone())),
        );
        for key in keys {
            let Some(server) = crate::controller::active::spec(entries, &key) else {
                continue;
            };
            if crate::config::validate::policy_failure(server, &policy).is_some() {
                tenants.insert(*tenant);
                *by_type.entry(key.server_type().to_owned()).or_default() += 1;
            }
        }
    }
    let counted = if partial {
        format!(
            " among the first {} configs (the webhook stopped counting at its time limit)",
            active.len()
        )
    } else {
        String::new()
    };
    if tenants.is_empty() {
        return partial.then(|| {
            format!(
                "spec.endpointPolicy: denies no server that tenants use now{counted}; the \
                 controller takes any it denies out of service"
            )
        });
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    Some(format!(
        "spec.endpointPolicy: denies servers that {}{} tenant(s) use now ({}){counted}; the \
         controller takes them out of service and those tenants fall back to the global servers",
        if partial { "at least " } else { "" },
        tenants.len(),
        types.join(", ")
    ))
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

/// The servers `object` declares, if it decodes.
fn servers_of(object: &Value) -> Option<crate::api::ServersSpec> {
    if object.get("kind").and_then(Value::as_str) == Some("GlobalMcpConfig") {
        decoded::<crate::api::GlobalMcpConfig>(object).map(|g| g.spec.servers)
    } else {
        decoded::<crate::api::TenantMcpConfig>(object).map(|t| t.spec.servers)
    }
}

/// `object` as `T`, if it decodes (`apiVersion` and `kind` are not fields of the types).
fn decoded<T: serde::de::DeserializeOwned + schemars::JsonSchema>(object: &Value) -> Option<T> {
    let mut body = object.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    decode::<T>(body, &Default::default()).ok()
}

/// The names of the Secrets `object` references (what the webhook reads, keys only).
pub fn referenced_secret_names(object: &Value) -> BTreeSet<String> {
    servers_of(object)
        .map(|s| s.secret_uses().iter().map(|u| u.name.to_owned()).collect())
        .unwrap_or_default()
}

/// A warning for each Secret the object references that does not exist yet: GitOps may apply
/// it after the config, and the controller waits for it.
fn secret_warnings(
    object: &Value,
    secrets: &BTreeMap<String, BTreeSet<String>>,
    namespace: &str,
) -> Vec<String> {
    let Some(servers) = servers_of(object) else {
        return Vec::new();
    };
    servers
        .secret_uses()
        .into_iter()
        .filter(|u| !secrets.contains_key(u.name))
        .map(|u| {
            format!(
                "spec.servers.{}: Secret {:?} does not exist in namespace {namespace} yet; the \
                 controller waits for it",
                u.field, u.name
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;

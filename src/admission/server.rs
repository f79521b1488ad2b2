//! The validating webhook's HTTP side: takes an `AdmissionReview`, reads from the API server
//! what [`review`] needs (the namespace's tenant label, `GlobalMcpConfig default`, the other
//! configs claiming the tenant, the Secrets the object references — their keys, never their
//! values), and answers allowed or refused with the same messages as `tenant-mcp validate`,
//! plus warnings. No DNS at admission: the endpoint policy's static rules only.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::review::{Cluster, Verdict, being_deleted, never_refused, review, secrets_namespace};
use crate::api::{GLOBAL_CONFIG_NAME, GlobalMcpConfig, TENANT_LABEL, TenantMcpConfig};

/// The path the `ValidatingWebhookConfiguration` calls.
pub const PATH: &str = "/validate";

/// The webhook's routes: `POST /validate`.
pub fn router(kube: kube::Client) -> Router {
    Router::new().route(PATH, post(validate)).with_state(kube)
}

async fn validate(State(kube): State<kube::Client>, Json(body): Json<Value>) -> Json<Value> {
    let request = body.get("request").cloned().unwrap_or(Value::Null);
    let uid = request.get("uid").cloned().unwrap_or(json!(""));
    let object = request.get("object").cloned().unwrap_or(Value::Null);
    let old = request.get("oldObject").filter(|o| !o.is_null()).cloned();
    let (allowed, status, warnings) = match decide(&kube, &object, old.as_ref()).await {
        Ok(verdict) => {
            let status = (!verdict.allowed())
                .then(|| json!({"code": 422, "reason": "Invalid", "message": verdict.message()}));
            let text = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (kind, namespace, name) = (
                text("/kind"),
                text("/metadata/namespace"),
                text("/metadata/name"),
            );
            info!(
                %kind,
                %namespace,
                %name,
                allowed = verdict.allowed(),
                warnings = verdict.warnings.len(),
                "admission review"
            );
            (verdict.allowed(), status, verdict.warnings)
        }
        // What the cluster holds could not be read. A write that is never refused (the
        // controller's finalizer removal, a label change) still goes through: an API hiccup
        // must not hold up a deletion.
        Err(e) if never_refused(&object, old.as_ref()) => {
            warn!(error = %e, "admission review could not read the cluster; allowed: spec unchanged or deleting");
            let warning = format!(
                "tenant-mcp could not check this write ({e}); allowed because the spec did not change or the object is being deleted"
            );
            (true, None, vec![warning])
        }
        // Otherwise refuse (the failure policy decides what happens when the webhook itself
        // cannot be reached).
        Err(e) => {
            warn!(error = %e, "admission review could not read the cluster");
            let message = format!("tenant-mcp could not check this write: {e}; try again");
            (
                false,
                Some(json!({"code": 503, "reason": "ServiceUnavailable", "message": message})),
                Vec::new(),
            )
        }
    };
    let mut response = json!({"uid": uid, "allowed": allowed});
    if let Some(status) = status {
        response["status"] = status;
    }
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

/// Reads what the review of `object` needs and runs it. The reads are independent and run
/// at once: a review waits for the slowest, not for their sum.
async fn decide(
    kube: &kube::Client,
    object: &Value,
    old: Option<&Value>,
) -> Result<Verdict, kube::Error> {
    // An update of an object being deleted (the controller removing its finalizer) is allowed
    // whatever the cluster holds, and a warning about an object on its way out helps nobody:
    // no reads.
    if old.is_some() && being_deleted(object) {
        return Ok(Verdict::default());
    }
    let kind = object["kind"].as_str().unwrap_or_default();
    let is_tenant = kind == "TenantMcpConfig";
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(kube.clone());
    let configs: Api<TenantMcpConfig> = Api::all(kube.clone());
    let secrets_namespace = secrets_namespace(object);

    let global = async {
        if kind == "GlobalMcpConfig" {
            return Ok(None);
        }
        Ok(Api::<GlobalMcpConfig>::all(kube.clone())
            .get_opt(GLOBAL_CONFIG_NAME)
            .await?
            .map(|g| serde_json::to_value(g).unwrap_or_default()))
    };
    let label = async {
        match (&namespace, is_tenant) {
            (Some(ns), true) => tenant_label(&namespaces, ns).await,
            _ => Ok(None),
        }
    };
    let rivals = async {
        if !is_tenant {
            return Ok(Vec::new());
        }
        // A tenant id that is not a DNS label is refused by the review anyway, and would not
        // make a well-formed field selector.
        let Some(tenant) = object
            .pointer("/spec/tenantId")
            .and_then(Value::as_str)
            .filter(|t| crate::config::validate::is_dns_label(t))
        else {
            return Ok(Vec::new());
        };
        // The CRD's selectable field: the API server filters, the webhook does not list all.
        let claimants = ListParams::default().fields(&format!("spec.tenantId={tenant}"));
        let mut found: Vec<(Value, Option<String>)> = Vec::new();
        for rival in configs
            .list(&claimants)
            .await?
            .items
            .into_iter()
            .filter(|c| c.spec.tenant_id == tenant)
        {
            let rival_label = match rival.metadata.namespace.as_deref() {
                Some(ns) => tenant_label(&namespaces, ns).await?,
                None => None,
            };
            let mut value = serde_json::to_value(&rival).unwrap_or_default();
            value["apiVersion"] = json!(crate::api::API_VERSION);
            value["kind"] = json!("TenantMcpConfig");
            found.push((value, rival_label));
        }
        Ok::<_, kube::Error>(found)
    };
    let active = async {
        if kind != "GlobalMcpConfig" {
            return Ok((Vec::new(), false));
        }
        active_configs(&configs).await
    };
    let secrets = referenced_secrets(kube, &secrets_namespace, object);
    let (global, label, rivals, (active, active_partial), secrets) =
        tokio::try_join!(global, label, rivals, active, secrets)?;
    Ok(review(
        object,
        old,
        &Cluster {
            global: global.as_ref(),
            namespace_label: label.as_deref(),
            rivals: rivals.iter().map(|(v, l)| (v, l.as_deref())).collect(),
            active: active.iter().map(|(t, a)| (t.as_str(), a)).collect(),
            active_partial,
            secrets: &secrets,
        },
    ))
}

/// How long a GlobalMcpConfig review may spend reading configs to count what its policy
/// would demote: well inside the 5 s the API server waits at most (`timeoutSeconds`), since
/// the count is only a warning and a timed-out call refuses the write under `Fail`.
const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Configs read per page while counting.
const COUNT_PAGE: u32 = 500;

/// Every tenant's `status.active`, a page at a time until [`COUNT_BUDGET`] is spent; and
/// whether it stopped early.
async fn active_configs(
    configs: &Api<TenantMcpConfig>,
) -> Result<(Vec<(String, crate::api::ActiveConfig)>, bool), kube::Error> {
    let started = std::time::Instant::now();
    let mut found = Vec::new();
    let mut page = ListParams::default().limit(COUNT_PAGE);
    loop {
        let list = configs.list(&page).await?;
        found.extend(
            list.items
                .into_iter()
                .filter_map(|c| Some((c.spec.tenant_id.clone(), c.status?.active))),
        );
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => {
                if started.elapsed() >= COUNT_BUDGET {
                    return Ok((found, true));
                }
                page = page.continue_token(&token);
            }
            _ => return Ok((found, false)),
        }
    }
}

/// Namespace `ns`'s `tenantmcp.dev/tenant` label, if it exists and has one.
async fn tenant_label(
    namespaces: &Api<PartialObjectMeta<Namespace>>,
    ns: &str,
) -> Result<Option<String>, kube::Error> {
    Ok(namespaces
        .get_opt(ns)
        .await?
        .and_then(|n| n.metadata.labels.and_then(|l| l.get(TENANT_LABEL).cloned())))
}

/// The Secrets `object` references that exist in `namespace`: name → the keys of their data.
async fn referenced_secrets(
    kube: &kube::Client,
    namespace: &str,
    object: &Value,
) -> Result<BTreeMap<String, BTreeSet<String>>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let reads = super::review::referenced_secret_names(object)
        .into_iter()
        .map(|name| {
            let api = api.clone();
            async move { Ok::<_, kube::Error>((api.get_opt(&name).await?, name)) }
        });
    let mut found = BTreeMap::new();
    for (secret, name) in futures::future::try_join_all(reads).await? {
        if let Some(secret) = secret {
            let mut keys: BTreeSet<String> = secret.data.unwrap_or_default().into_keys().collect();
            keys.extend(secret.string_data.unwrap_or_default().into_keys());
            found.insert(name, keys);
        }
    }
    Ok(found)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

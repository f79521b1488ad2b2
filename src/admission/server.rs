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

use super::review::{Cluster, Verdict, never_refused, review};
use crate::api::{
    DEFAULT_CREDENTIALS_NAMESPACE, GLOBAL_CONFIG_NAME, GlobalMcpConfig, TENANT_LABEL,
    TenantMcpConfig,
};

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

/// Reads what the review of `object` needs and runs it.
async fn decide(
    kube: &kube::Client,
    object: &Value,
    old: Option<&Value>,
) -> Result<Verdict, kube::Error> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let global_api: Api<GlobalMcpConfig> = Api::all(kube.clone());
    let global = match kind {
        "GlobalMcpConfig" => None,
        _ => global_api
            .get_opt(GLOBAL_CONFIG_NAME)
            .await?
            .map(|g| serde_json::to_value(g).unwrap_or_default()),
    };
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut label = None;
    let mut rivals: Vec<(Value, Option<String>)> = Vec::new();
    if kind == "TenantMcpConfig" {
        let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(kube.clone());
        if let Some(ns) = &namespace {
            label = tenant_label(&namespaces, ns).await?;
        }
        // A tenant id that is not a DNS label is refused by the review anyway, and would not
        // make a well-formed field selector.
        let tenant = object
            .pointer("/spec/tenantId")
            .and_then(Value::as_str)
            .filter(|t| crate::config::validate::is_dns_label(t));
        let configs: Api<TenantMcpConfig> = Api::all(kube.clone());
        // The CRD's selectable field: the API server filters, the webhook does not list all.
        let claimants =
            ListParams::default().fields(&format!("spec.tenantId={}", tenant.unwrap_or_default()));
        let found = match tenant {
            Some(_) => configs.list(&claimants).await?.items,
            None => Vec::new(),
        };
        for rival in found
            .into_iter()
            .filter(|c| Some(c.spec.tenant_id.as_str()) == tenant)
        {
            let rival_label = match rival.metadata.namespace.as_deref() {
                Some(ns) => tenant_label(&namespaces, ns).await?,
                None => None,
            };
            let mut value = serde_json::to_value(&rival).unwrap_or_default();
            value["apiVersion"] = json!(crate::api::API_VERSION);
            value["kind"] = json!("TenantMcpConfig");
            rivals.push((value, rival_label));
        }
    }
    let mut active: Vec<(String, crate::api::ActiveConfig)> = Vec::new();
    if kind == "GlobalMcpConfig" {
        let configs: Api<TenantMcpConfig> = Api::all(kube.clone());
        active = configs
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter_map(|c| Some((c.spec.tenant_id.clone(), c.status?.active)))
            .collect();
    }
    let secrets_namespace = match kind {
        "GlobalMcpConfig" => object
            .pointer("/spec/credentialsNamespace")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_CREDENTIALS_NAMESPACE)
            .to_owned(),
        _ => namespace.clone().unwrap_or_default(),
    };
    let secrets = referenced_secrets(kube, &secrets_namespace, object).await?;
    Ok(review(
        object,
        old,
        &Cluster {
            global: global.as_ref(),
            namespace_label: label.as_deref(),
            rivals: rivals.iter().map(|(v, l)| (v, l.as_deref())).collect(),
            active: active.iter().map(|(t, a)| (t.as_str(), a)).collect(),
            secrets: &secrets,
        },
    ))
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
    let names = super::review::referenced_secret_names(object);
    let api: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let mut found = BTreeMap::new();
    for name in names {
        if let Some(secret) = api.get_opt(&name).await? {
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

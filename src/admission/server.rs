//! The validating webhook's HTTP side: takes an `AdmissionReview`, reads from the API server
//! what [`review`] needs (the namespace's tenant label, `GlobalMcpConfig default`, the other
//! configs claiming the tenant — never a Secret), and answers allowed or refused with the
//! same messages as `tenant-mcp validate`. No DNS at admission: the endpoint policy's static
//! rules only.
//!
//! Any Pod that reaches the port can send a review, so each one is cheap and bounded: a body
//! of at most [`MAX_REVIEW_BYTES`], at most [`MAX_CONCURRENT_REVIEWS`] read and judged at
//! once (the rest wait, then are refused), at most [`MAX_RIVALS`] rival configs read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::review::{Cluster, Verdict, being_deleted, never_refused, review};
use crate::api::{GLOBAL_CONFIG_NAME, GlobalMcpConfig, TENANT_LABEL, TenantMcpConfig};

/// The path the `ValidatingWebhookConfiguration` calls.
pub const PATH: &str = "/validate";

/// The largest review read: the API server stores objects of up to 1.5 MiB, and an update's
/// review carries the object twice.
pub const MAX_REVIEW_BYTES: usize = 4 << 20;

/// Reviews read and judged at once. A review parses to a few times its size, so this and
/// [`MAX_REVIEW_BYTES`] bound the webhook's memory well inside its 128 MiB limit; a real
/// review takes milliseconds, so the API server's calls rarely wait.
pub const MAX_CONCURRENT_REVIEWS: usize = 4;

/// How long a review waits for a turn before it is refused (inside the API server's 5 s).
const QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Rival configs of one tenant read at most: one that serves is enough to refuse, and a
/// tenant has one serving config.
pub const MAX_RIVALS: u32 = 16;

/// The webhook's routes: `POST /validate`, bounded as the module says.
pub fn router(kube: kube::Client) -> Router {
    let turns = Arc::new(Semaphore::new(MAX_CONCURRENT_REVIEWS));
    Router::new()
        .route(PATH, post(validate))
        .with_state(kube)
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        // Outside the body limit's extractor: a request waits for its turn before its body is
        // read at all.
        .layer(middleware::from_fn_with_state(turns, one_turn))
}

/// Lets a request in when one of [`MAX_CONCURRENT_REVIEWS`] turns is free; after
/// [`QUEUE_WAIT`] it is answered 503 unread (the API server applies the failure policy).
async fn one_turn(State(turns): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(QUEUE_WAIT, turns.acquire()).await {
        Ok(Ok(_turn)) => next.run(request).await,
        _ => {
            warn!("admission review refused: too many reviews at once");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many admission reviews at once",
            )
                .into_response()
        }
    }
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
        let claimants = ListParams::default()
            .fields(&format!("spec.tenantId={tenant}"))
            .limit(MAX_RIVALS);
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
    let (global, label, rivals) = tokio::try_join!(global, label, rivals)?;
    Ok(review(
        object,
        old,
        &Cluster {
            global: global.as_ref(),
            namespace_label: label.as_deref(),
            rivals: rivals.iter().map(|(v, l)| (v, l.as_deref())).collect(),
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

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

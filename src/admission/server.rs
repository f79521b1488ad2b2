//! The validating webhook's HTTP side: takes an `AdmissionReview`, reads from the API server
//! what [`review`] needs (the namespace's tenant label, `GlobalMcpConfig default`, the other
//! configs claiming the tenant — never a Secret), and answers allowed or refused with the
//! same messages as `tenant-mcp validate`. No DNS at admission: the endpoint policy's static
//! rules only.
//!
//! Any Pod that reaches the port can send a review, so each one is cheap and bounded: a body
//! of at most [`MAX_REVIEW_BYTES`]; at most [`SMALL_REVIEWS_AT_ONCE`] small reviews and one
//! large one read and judged at once (the rest wait, then are refused), so forged large
//! reviews never hold up real ones; at most [`MAX_RIVALS`] rival configs read.

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

/// The largest review read. A TenantMcpConfig the CRD schema admits is a few KiB, an update's
/// review carries it twice with its status: 2 MiB leaves room for any real one, and bounds
/// what a forged one costs.
pub const MAX_REVIEW_BYTES: usize = 2 << 20;

/// A review up to this size is small: every real one is.
pub const SMALL_REVIEW_BYTES: usize = 64 << 10;

/// Small reviews read and judged at once. A review parses to many times its size (a JSON
/// array of tiny objects, some 20 times), so the lanes bound the webhook's memory inside its
/// 128 MiB limit: at most this many small reviews and one large one at a time. Small ones
/// never queue behind large ones.
pub const SMALL_REVIEWS_AT_ONCE: usize = 16;

/// How long a review waits for a turn before it is refused (inside the API server's 5 s).
const QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Rival configs of one tenant read at most: one that serves is enough to refuse, and a
/// tenant has one serving config.
pub const MAX_RIVALS: u32 = 16;

/// The webhook's routes: `POST /validate`, bounded as the module says.
pub fn router(kube: kube::Client) -> Router {
    let lanes = Arc::new(Lanes {
        small: Semaphore::new(SMALL_REVIEWS_AT_ONCE),
        large: Semaphore::new(1),
    });
    Router::new()
        .route(PATH, post(validate))
        .with_state(kube)
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        // Outside the body limit's extractor: a request waits for its turn before its body is
        // read at all.
        .layer(middleware::from_fn_with_state(lanes, one_turn))
}

/// Turns for small and large reviews.
struct Lanes {
    small: Semaphore,
    large: Semaphore,
}

/// Lets a request in when its lane has a turn free: a small review (by `Content-Length`)
/// in the small lane, anything else in the large one. After [`QUEUE_WAIT`] it is answered
/// 503 unread (the API server applies the failure policy).
async fn one_turn(State(lanes): State<Arc<Lanes>>, request: Request, next: Next) -> Response {
    let small = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|bytes| bytes <= SMALL_REVIEW_BYTES);
    let lane = if small { &lanes.small } else { &lanes.large };
    match tokio::time::timeout(QUEUE_WAIT, lane.acquire()).await {
        Ok(Ok(_turn)) => next.run(request).await,
        _ => {
            warn!(small, "admission review refused: too many reviews at once");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many admission reviews at once",
            )
                .into_response()
        }
    }
}

async fn validate(State(kube): State<kube::Client>, bytes: axum::body::Bytes) -> Response {
    // A forged review may be built to cost far more memory parsed than its size: refuse one
    // of a shape no API server sends before parsing it.
    if let Err(refusal) = check_shape(&bytes) {
        warn!(%refusal, "admission review refused unparsed");
        return (axum::http::StatusCode::BAD_REQUEST, refusal).into_response();
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(body) => answer(&kube, body).await.into_response(),
        Err(e) => (
            axum::http::StatusCode::BAD_REQUEST,
            format!("not an AdmissionReview: {e}"),
        )
            .into_response(),
    }
}

/// The most JSON objects and arrays in one review. A real one — a config, its status and
/// `managedFields`, twice for an update — has a few hundred.
pub const MAX_REVIEW_CONTAINERS: usize = 10_000;

/// The most values in one review's objects and arrays (counted by their separators).
pub const MAX_REVIEW_VALUES: usize = 100_000;

/// Refuses JSON with more than [`MAX_REVIEW_CONTAINERS`] objects and arrays or
/// [`MAX_REVIEW_VALUES`] values, in one pass over the bytes (strings skipped), so what a
/// review parses to stays a small multiple of its size.
pub fn check_shape(json: &[u8]) -> Result<(), String> {
    let (mut containers, mut values) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => containers += 1,
            b',' => values += 1,
            _ => {}
        }
    }
    if containers > MAX_REVIEW_CONTAINERS || values > MAX_REVIEW_VALUES {
        return Err(format!(
            "an admission review of {containers} objects and arrays and {values} values is \
             larger than any the API server sends (at most {MAX_REVIEW_CONTAINERS} and \
             {MAX_REVIEW_VALUES})"
        ));
    }
    Ok(())
}

/// The answer to one parsed review.
async fn answer(kube: &kube::Client, mut body: Value) -> Json<Value> {
    // Taken apart, not copied: a review may be megabytes.
    let mut request = body["request"].take();
    let uid = request["uid"].take();
    let object = request["object"].take();
    let old = Some(request["oldObject"].take()).filter(|o| !o.is_null());
    drop((body, request));
    let (allowed, status, warnings) = match decide(kube, &object, old.as_ref()).await {
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

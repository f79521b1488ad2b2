//! The webhook's answer when the API server cannot be read. The client points at a loopback
//! port nothing listens on (a real refused connection, not a mock).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{PATH, router};

fn unreachable_cluster() -> kube::Client {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: connections to the port are refused.
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn config(finalizers: &[&str]) -> Value {
    json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "acme", "namespace": "tenant-acme", "finalizers": finalizers},
        "spec": {"tenantId": "acme"}
    })
}

async fn answer(object: Value, old: Option<Value>) -> Value {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                    "object": object, "oldObject": old}
    });
    let response = router(unreachable_cluster())
        .oneshot(
            Request::post(PATH)
                .header("content-type", "application/json")
                .body(Body::from(review.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
}

#[tokio::test]
async fn a_write_that_leaves_the_spec_alone_goes_through_when_the_cluster_cannot_be_read() {
    // The controller adding its finalizer, or a label change: the reads fail, the write is
    // allowed with a warning saying it could not be checked.
    let before = config(&[]);
    let after = config(&["tenantmcp.dev/cleanup"]);
    let response = answer(after, Some(before)).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap()
            .contains("could not check this write"),
        "{response}"
    );
    // The finalizer removal of a config being deleted needs no read at all.
    let mut deleting = config(&[]);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-05T00:00:00Z");
    let response = answer(deleting, Some(config(&["tenantmcp.dev/cleanup"]))).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response["warnings"].is_null(), "{response}");
}

#[tokio::test]
async fn a_new_config_is_refused_when_the_cluster_cannot_be_read() {
    let response = answer(config(&[]), None).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 503, "{response}");
    // A spec change is judged, so it is refused too.
    let mut changed = config(&[]);
    changed["spec"]["enabled"] = json!(false);
    let response = answer(changed, Some(config(&[]))).await;
    assert_eq!(response["allowed"], false, "{response}");
}

/// Issue 34, item 4: a review built to cost far more memory parsed than its size (tens of
/// thousands of tiny objects) is refused before it is parsed; braces inside strings do not
/// count, and a real review passes.
#[test]
fn a_review_of_a_shape_no_api_server_sends_is_refused_unparsed() {
    let real = serde_json::to_vec(&json!({"request": {"object": config(&["f"])}})).unwrap();
    assert!(super::check_shape(&real).is_ok());
    let tiny_objects: Vec<Value> = (0..20_000).map(|_| json!({})).collect();
    let bomb = serde_json::to_vec(&json!({"request": {"object": tiny_objects}})).unwrap();
    let refusal = super::check_shape(&bomb).unwrap_err();
    assert!(refusal.contains("objects and arrays"), "{refusal}");
    let values: Vec<u8> = (0..200_000).map(|_| 1u8).collect();
    let long = serde_json::to_vec(&json!({"a": values})).unwrap();
    assert!(super::check_shape(&long).is_err());
    // Braces and commas inside strings, escaped quotes included, are text.
    let text = serde_json::to_vec(&json!({"s": "{[,\"{[,".repeat(50_000)})).unwrap();
    assert!(super::check_shape(&text).is_ok());
}

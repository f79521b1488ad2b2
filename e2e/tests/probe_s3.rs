//! The S3 probe against a real S3 server (s3s-fs, which checks SigV4): each failure gets its
//! own reason, and no message carries the secret key. `AccessDenied` is not covered: s3s-fs has
//! one key pair and no bucket policies, so a valid key always has access.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use serde_json::json;
use tenant_mcp::api::S3Server as S3Spec;
use tenant_mcp::config::{Credential, EndpointPolicy, S3Credentials};
use tenant_mcp::probe::s3::probe_s3;
use tenant_mcp_e2e::stack::egress;
use tenant_mcp_e2e::stack::loopback_policy;
use tenant_mcp_e2e::stack::process::free_port;
use tenant_mcp_e2e::stack::s3::S3Server;

fn spec(endpoint: &str, bucket: &str) -> S3Spec {
    serde_json::from_value(json!({
        "endpoint": endpoint, "bucket": bucket, "credentialsSecretRef": {"name": "s3"}
    }))
    .unwrap()
}

fn creds(access: &str, secret: &str) -> S3Credentials {
    S3Credentials {
        access_key_id: access.into(),
        secret_access_key: Credential::new(secret),
    }
}

#[tokio::test]
async fn each_failure_has_its_own_reason_and_no_secret() {
    let s3 = S3Server::start("probe-access", "probe-secret-0123456789").unwrap();
    s3.client()
        .create_bucket()
        .bucket("tenant-docs")
        .send()
        .await
        .unwrap();
    let policy = loopback_policy();
    let good = creds(s3.access_key(), s3.secret_key());

    probe_s3(
        &egress(policy.clone()),
        &spec(&s3.endpoint(), "tenant-docs"),
        &good,
    )
    .await
    .unwrap();

    let https = s3.endpoint().replacen("http://", "https://", 1);
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let cases = [
        (
            spec(&s3.endpoint(), "tenant-docs"),
            creds(s3.access_key(), "wrong-secret-xyz"),
            "AuthFailed",
            "probe-access",
        ),
        (
            spec(&s3.endpoint(), "tenant-docs"),
            creds("someone-else", "wrong-secret-xyz"),
            "AuthFailed",
            "someone-else",
        ),
        (
            spec(&s3.endpoint(), "no-such-bucket"),
            good.clone(),
            "BucketNotFound",
            "no-such-bucket",
        ),
        (
            spec(&closed, "tenant-docs"),
            good.clone(),
            "Unreachable",
            "127.0.0.1",
        ),
        (
            spec(&https, "tenant-docs"),
            good.clone(),
            "TlsFailed",
            "TLS",
        ),
    ];
    for (server, creds, reason, text) in cases {
        let err = probe_s3(&egress(policy.clone()), &server, &creds)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert_eq!(err.reason(), reason, "{message}");
        assert!(message.contains(text), "{reason}: {message}");
        for secret in [s3.secret_key(), "wrong-secret-xyz"] {
            assert!(
                !message.contains(secret) && !format!("{err:?}").contains(secret),
                "{message}"
            );
        }
    }

    // The default policy allows public addresses only.
    let err = probe_s3(
        &egress(EndpointPolicy::default()),
        &spec(&s3.endpoint(), "tenant-docs"),
        &good,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "PolicyDenied", "{err}");
}

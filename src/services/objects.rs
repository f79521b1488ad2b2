//! Objects of a tenant: in its own bucket, or in the global bucket under `tenants/<id>/`.
//! Keys are relative to that prefix and may not leave it.

use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::error::ServiceError;
use crate::client::{S3Handle, TenantClients, require_tenant};

/// Longest key S3 takes is 1,024 bytes; the global prefix needs room.
const MAX_KEY_BYTES: usize = 900;

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ObjectInfo {
    /// The key, relative to the tenant's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// Object storage of tenants.
#[derive(Clone, Debug)]
pub struct TenantObjects {
    clients: TenantClients,
}

impl TenantObjects {
    /// The service over `clients`.
    pub fn new(clients: TenantClients) -> Self {
        Self { clients }
    }

    /// Stores `body` under `key`.
    pub async fn put(
        &self,
        tenant: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(), ServiceError> {
        let (s3, full) = self.locate(tenant, key).await?;
        let started = Instant::now();
        let sent = s3
            .client
            .put_object()
            .bucket(&s3.bucket)
            .key(full)
            .body(ByteStream::from(body))
            .set_content_type(content_type.map(str::to_owned))
            .send()
            .await;
        observe(&s3, started, &sent);
        sent.map_err(|e| s3_error(tenant, "put", key, &e))?;
        Ok(())
    }

    /// The bytes stored under `key`.
    pub async fn get(&self, tenant: &str, key: &str) -> Result<Vec<u8>, ServiceError> {
        let (s3, full) = self.locate(tenant, key).await?;
        let started = Instant::now();
        let sent = s3
            .client
            .get_object()
            .bucket(&s3.bucket)
            .key(full)
            .send()
            .await;
        observe(&s3, started, &sent);
        let out = sent.map_err(|e| match e.as_service_error() {
            Some(se) if se.is_no_such_key() => ServiceError::NotFound {
                tenant: tenant.to_owned(),
                key: key.to_owned(),
            },
            _ => s3_error(tenant, "get", key, &e),
        })?;
        let bytes = out.body.collect().await.map_err(|e| ServiceError::S3 {
            tenant: tenant.to_owned(),
            operation: "get",
            key: key.to_owned(),
            message: e.to_string(),
            // The body broke off mid-stream.
            retryable: true,
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Every object whose key starts with `prefix` (relative; `""` for all), in key order.
    pub async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ServiceError> {
        let s3 = self.clients.s3(tenant).await?;
        if !prefix.is_empty() {
            check_key(tenant, prefix)?;
        }
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let started = Instant::now();
            let sent = s3
                .client
                .list_objects_v2()
                .bucket(&s3.bucket)
                .prefix(format!("{}{prefix}", s3.prefix))
                .set_continuation_token(token.take())
                .send()
                .await;
            observe(&s3, started, &sent);
            let page = sent.map_err(|e| s3_error(tenant, "list", prefix, &e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&s3.prefix)) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Deletes `key` (no error when it does not exist, as S3).
    pub async fn delete(&self, tenant: &str, key: &str) -> Result<(), ServiceError> {
        let (s3, full) = self.locate(tenant, key).await?;
        let started = Instant::now();
        let sent = s3
            .client
            .delete_object()
            .bucket(&s3.bucket)
            .key(full)
            .send()
            .await;
        observe(&s3, started, &sent);
        sent.map_err(|e| s3_error(tenant, "delete", key, &e))?;
        Ok(())
    }

    /// A URL that downloads `key` without credentials until `expires_in` has passed.
    pub async fn presign_get(
        &self,
        tenant: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, ServiceError> {
        let (s3, full) = self.locate(tenant, key).await?;
        let config = presigning(tenant, key, expires_in)?;
        let request = s3
            .client
            .get_object()
            .bucket(&s3.bucket)
            .key(full)
            .presigned(config)
            .await
            .map_err(|e| s3_error(tenant, "presign", key, &e))?;
        Ok(request.uri().to_owned())
    }

    /// A URL that uploads `key` (HTTP PUT) without credentials until `expires_in` has passed.
    pub async fn presign_put(
        &self,
        tenant: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, ServiceError> {
        let (s3, full) = self.locate(tenant, key).await?;
        let config = presigning(tenant, key, expires_in)?;
        let request = s3
            .client
            .put_object()
            .bucket(&s3.bucket)
            .key(full)
            .presigned(config)
            .await
            .map_err(|e| s3_error(tenant, "presign", key, &e))?;
        Ok(request.uri().to_owned())
    }

    /// [`Self::put`] for the tenant in scope.
    pub async fn put_current(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(), ServiceError> {
        self.put(&require_tenant()?, key, body, content_type).await
    }

    /// [`Self::get`] for the tenant in scope.
    pub async fn get_current(&self, key: &str) -> Result<Vec<u8>, ServiceError> {
        self.get(&require_tenant()?, key).await
    }

    async fn locate(&self, tenant: &str, key: &str) -> Result<(S3Handle, String), ServiceError> {
        check_key(tenant, key)?;
        let s3 = self.clients.s3(tenant).await?;
        let full = format!("{}{key}", s3.prefix);
        Ok((s3, full))
    }
}

/// Refuses keys that could name something outside the tenant's prefix (`..`, an absolute
/// path: some S3 servers normalize them) or that S3 would refuse.
fn check_key(tenant: &str, key: &str) -> Result<(), ServiceError> {
    let invalid = |expected| {
        Err(ServiceError::InvalidKey {
            tenant: tenant.to_owned(),
            key: key.to_owned(),
            expected,
        })
    };
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return invalid("1 to 900 bytes");
    }
    if key.starts_with('/') || key.contains('\\') {
        return invalid("a relative key with `/` separators (no leading `/`, no `\\`)");
    }
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return invalid("no `.` or `..` segments");
    }
    if key.chars().any(char::is_control) {
        return invalid("no control characters");
    }
    Ok(())
}

fn presigning(
    tenant: &str,
    key: &str,
    expires_in: Duration,
) -> Result<PresigningConfig, ServiceError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| ServiceError::S3 {
        tenant: tenant.to_owned(),
        operation: "presign",
        key: key.to_owned(),
        message: format!("expires_in {expires_in:?}: {e} (at most 7 days)"),
        retryable: false,
    })
}

/// Reports one S3 request to the client's observer: an answer from the server (a missing key
/// included) is a success, the first one timing the client's connection; a request that never
/// got an answer failed to connect; a refusal failed as a request.
fn observe<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    s3: &S3Handle,
    started: Instant,
    sent: &Result<T, SdkError<E, HttpResponse>>,
) {
    match sent {
        Ok(_) => s3.observer.succeeded(started.elapsed()),
        Err(e) => match s3_failure(e) {
            Some((stage, reason)) => s3.observer.failed(stage, reason),
            None => s3.observer.succeeded(started.elapsed()),
        },
    }
}

/// The stage and reason of a failed S3 request, `None` when the answer is a normal outcome
/// (the key does not exist).
fn s3_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, HttpResponse>,
) -> Option<(&'static str, &'static str)> {
    if let Some(crate::egress::EgressError::PolicyDenied(_)) = crate::egress::cause(e) {
        return Some(("connect", "PolicyDenied"));
    }
    Some(match e {
        SdkError::TimeoutError(_) => ("connect", "Timeout"),
        SdkError::DispatchFailure(_) => ("connect", "Unreachable"),
        SdkError::ResponseError(_) => ("request", "BadResponse"),
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            // The label has a closed set of values: S3's codes are many.
            let reason = match (status, se.err().code()) {
                (_, Some("NoSuchKey")) => return None,
                (_, Some("SignatureDoesNotMatch" | "InvalidAccessKeyId")) | (401, _) => {
                    "AuthFailed"
                }
                (_, Some("NoSuchBucket")) => "NoSuchBucket",
                (403, _) => "AccessDenied",
                (404, _) => "NotFound",
                (429 | 503, _) => "Throttled",
                (500.., _) => "ServerError",
                _ => "Refused",
            };
            ("request", reason)
        }
        _ => ("request", "Other"),
    })
}

fn s3_error<E: std::error::Error + 'static>(
    tenant: &str,
    operation: &'static str,
    key: &str,
    e: &SdkError<E, HttpResponse>,
) -> ServiceError {
    if let Some(crate::egress::EgressError::PolicyDenied(v)) = crate::egress::cause(e) {
        return ServiceError::PolicyDenied {
            tenant: tenant.to_owned(),
            server: "minio",
            message: v.to_string(),
        };
    }
    // Throttling and server errors pass; a refusal (403, 404, 400…) stays until something
    // changes.
    let retryable = match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            status == 429 || status >= 500
        }
        _ => false,
    };
    ServiceError::S3 {
        tenant: tenant.to_owned(),
        operation,
        key: key.to_owned(),
        message: DisplayErrorContext(e).to_string(),
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_refusals_are_final_and_throttling_or_server_errors_retryable() {
        let with_status = |status: u16| {
            let raw = HttpResponse::new(
                status
                    .try_into()
                    .unwrap_or_else(|_| panic!("status {status}")),
                aws_sdk_s3::primitives::SdkBody::empty(),
            );
            let e = SdkError::service_error(std::io::Error::other("refused"), raw);
            s3_error("t", "get", "k", &e).is_retryable()
        };
        assert!(!with_status(403));
        assert!(!with_status(404));
        assert!(with_status(429));
        assert!(with_status(503));
        let timeout: SdkError<std::io::Error, HttpResponse> =
            SdkError::timeout_error(std::io::Error::other("slow"));
        assert!(s3_error("t", "get", "k", &timeout).is_retryable());
    }

    #[test]
    fn keys_that_could_leave_the_prefix_are_refused() {
        for good in ["a", "docs/2026/report.pdf", "a..b", ".hidden", "x/.y"] {
            assert!(check_key("t", good).is_ok(), "{good}");
        }
        for (bad, expected) in [
            ("", "1 to 900 bytes"),
            ("/etc/passwd", "no leading"),
            ("../other/x", "no `.` or `..`"),
            ("a/../../b", "no `.` or `..`"),
            ("a/./b", "no `.` or `..`"),
            ("a\\b", "no `\\`"),
            ("a\nb", "control"),
        ] {
            let err = check_key("t", bad).map(|()| "accepted".to_owned());
            let text = err.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(expected), "{bad:?}: {text}");
        }
        assert!(check_key("t", &"k".repeat(901)).is_err());
    }
}

//! The S3 probe: `HeadBucket` on the configured bucket with the resolved keys, telling apart
//! an unreachable server, a TLS failure, keys the server does not accept, a missing bucket and
//! keys without access to it.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};

use super::error::ProbeError;
use crate::api::S3Server;
use crate::api::conditions::reason;
use crate::config::S3Credentials;
use crate::egress::Egress;

/// What a passing S3 probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Report {
    /// Round-trip time of `HeadBucket`.
    pub latency: Duration,
}

/// Checks that `server.bucket` exists and that `credentials` may use it, on the checked
/// connector the client library uses (every host it connects to, virtual-host names included,
/// resolved and checked on connect).
pub async fn probe_s3(
    egress: &Egress,
    server: &S3Server,
    credentials: &S3Credentials,
) -> Result<S3Report, ProbeError> {
    let what = format!("S3 {} bucket {:?}", server.endpoint, server.bucket);
    // One attempt: the caller decides when to try again, and a probe must answer quickly.
    let client = egress.s3_client(server, credentials, false)?;
    let started = Instant::now();
    match client.head_bucket().bucket(&server.bucket).send().await {
        Ok(_) => Ok(S3Report {
            latency: started.elapsed(),
        }),
        Err(SdkError::ServiceError(e)) => {
            let status = e.raw().status().as_u16();
            if status == 404 {
                return Err(ProbeError::new(
                    reason::BUCKET_NOT_FOUND,
                    format!("{what} does not exist (create it, or fix spec.servers.minio.bucket)"),
                ));
            }
            // HEAD answers carry no error code; ask again with a GET to learn it.
            let code = error_code(&client, &server.bucket).await;
            Err(classify_code(
                &what,
                status,
                &code,
                &credentials.access_key_id,
            ))
        }
        Err(e) => Err(dispatch_error(&what, &e)),
    }
}

async fn error_code(client: &aws_sdk_s3::Client, bucket: &str) -> String {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    match client.get_bucket_location().bucket(bucket).send().await {
        Ok(_) => String::new(),
        Err(e) => e.code().unwrap_or_default().to_owned(),
    }
}

fn classify_code(what: &str, status: u16, code: &str, access_key_id: &str) -> ProbeError {
    match code {
        "InvalidAccessKeyId"
        | "NotSignedUp"
        | "SignatureDoesNotMatch"
        | "InvalidToken"
        | "ExpiredToken" => ProbeError::new(
            reason::AUTH_FAILED,
            format!(
                "{what}: the server refused access key {access_key_id:?} ({code}): check credentialsSecretRef"
            ),
        ),
        "AccessDenied" | "AllAccessDisabled" => ProbeError::new(
            reason::ACCESS_DENIED,
            format!("{what}: access key {access_key_id:?} may not use this bucket ({code})"),
        ),
        "NoSuchBucket" => {
            ProbeError::new(reason::BUCKET_NOT_FOUND, format!("{what} does not exist"))
        }
        _ if status == 403 => {
            ProbeError::new(reason::ACCESS_DENIED, format!("{what}: HTTP 403 {code}"))
        }
        _ => ProbeError::new(
            reason::PROTOCOL_ERROR,
            format!("{what}: HTTP {status} {code}"),
        ),
    }
}

fn dispatch_error<E, R>(what: &str, error: &SdkError<E, R>) -> ProbeError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(denied) = crate::egress::cause(error) {
        return match denied.clone().into() {
            ProbeError::PolicyDenied(v) => ProbeError::Failed {
                reason: reason::POLICY_DENIED,
                message: format!("{what}: {v}"),
            },
            other => ProbeError::new(other.reason(), format!("{what}: {other}")),
        };
    }
    let detail = DisplayErrorContext(error).to_string();
    let lower = detail.to_ascii_lowercase();
    match error {
        SdkError::TimeoutError(_) => ProbeError::new(reason::TIMEOUT, format!("{what}: timed out")),
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            ProbeError::new(reason::TIMEOUT, format!("{what}: timed out"))
        }
        _ if lower.contains("tls")
            || lower.contains("certificate")
            || lower.contains("handshake") =>
        {
            ProbeError::new(reason::TLS_FAILED, format!("{what}: TLS failed: {detail}"))
        }
        SdkError::DispatchFailure(_) => {
            ProbeError::new(reason::UNREACHABLE, format!("{what}: {detail}"))
        }
        _ => ProbeError::new(reason::PROTOCOL_ERROR, format!("{what}: {detail}")),
    }
}

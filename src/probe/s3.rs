//! The S3 probe: `HeadBucket` on the configured bucket with the resolved keys, telling apart
//! an unreachable server, a TLS failure, keys the server does not accept, a missing bucket and
//! keys without access to it.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};

use super::{ProbeError, reason, resolve_checked};
use crate::api::S3Server;
use crate::config::{EndpointPolicy, S3Credentials};

/// What a passing S3 probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Report {
    /// Round-trip time of `HeadBucket`.
    pub latency: Duration,
}

/// An aws-sdk-s3 client configuration for `server` with `credentials` (path-style as
/// configured, rustls with *ring*).
pub fn s3_config(server: &S3Server, credentials: &S3Credentials) -> aws_sdk_s3::config::Builder {
    let keys = aws_credential_types::Credentials::from_keys(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose().to_owned(),
        None,
    );
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(aws_sdk_s3::config::Region::new(server.region.clone()))
        .credentials_provider(keys)
        .force_path_style(server.force_path_style)
        .http_client(http)
}

/// Checks that `server.bucket` exists and that `credentials` may use it.
pub async fn probe_s3(
    policy: &EndpointPolicy,
    server: &S3Server,
    credentials: &S3Credentials,
) -> Result<S3Report, ProbeError> {
    let url = url::Url::parse(&server.endpoint).map_err(|e| {
        ProbeError::new(
            reason::UNREACHABLE,
            format!("endpoint {:?}: {e}", server.endpoint),
        )
    })?;
    policy.check_scheme(url.scheme())?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    resolve_checked(policy, host, port).await?;
    let what = format!("S3 {} bucket {:?}", server.endpoint, server.bucket);
    // One attempt: the caller decides when to try again, and a probe must answer quickly.
    let config = s3_config(server, credentials)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
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
    R: std::fmt::Debug,
{
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

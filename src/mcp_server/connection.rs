//! The connection tests a config must pass before the tools store it: the controller's probes,
//! with credentials from the call (or from the namespace's Secrets), under the same endpoint
//! policy and time limit.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use schemars::JsonSchema;
use serde::Serialize;

use crate::api::ServersSpec;
use crate::config::candidate::{ServerKey, resolve};
use crate::config::{EndpointPolicy, FieldError, FieldErrors, FieldPath};
use crate::probe::Prober;

/// One server's connection test.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTest {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServers.<name>`.
    pub server: String,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took, when it passed.
    pub latency_ms: Option<u64>,
    /// Why it failed (`AuthFailed`, `Unreachable`, `SecretNotFound`, …).
    pub reason: Option<String>,
    /// What happened; never a credential.
    pub message: Option<String>,
}

/// Tests servers `keys` of `servers` for `tenant`, with Secrets from `secrets` (by name). The
/// results, and a field error per failure (at `servers.<type>`).
pub async fn run(
    prober: &Prober,
    policy: &EndpointPolicy,
    tenant: &str,
    servers: &ServersSpec,
    keys: &[ServerKey],
    secrets: &HashMap<String, Secret>,
    timeout: Duration,
) -> (Vec<ConnectionTest>, FieldErrors) {
    let lookup = |name: &str| secrets.get(name).cloned();
    let runs = keys.iter().map(|key| async {
        let what = key.as_string();
        let result = match resolve(servers, key, &lookup) {
            Err(failure) => Err((failure.reason, failure.message)),
            Ok(candidate) => {
                let probed = prober
                    .test(policy, tenant, &what, &candidate, timeout)
                    .await;
                probed.map_err(|e| (e.reason().to_owned(), e.to_string()))
            }
        };
        (key.clone(), result)
    });
    let mut results = Vec::new();
    let mut errors = FieldErrors::default();
    for (key, result) in futures::future::join_all(runs).await {
        let server = key.as_string();
        match result {
            Ok(latency) => results.push(ConnectionTest {
                server,
                ok: true,
                latency_ms: Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
                reason: None,
                message: None,
            }),
            Err((reason, message)) => {
                let field = key.field();
                let path = FieldPath::new(field.strip_prefix("spec.").unwrap_or(&field));
                errors.push(FieldError::invalid(
                    &path,
                    format!("connection test failed ({reason}): {message}"),
                ));
                results.push(ConnectionTest {
                    server,
                    ok: false,
                    latency_ms: None,
                    reason: Some(reason),
                    message: Some(message),
                });
            }
        }
    }
    (results, errors)
}

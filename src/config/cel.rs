//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated as the API server would, with
//! each CRD's rules compiled once per process.
//!
//! kube's generated `validate_cel()` rebuilds the CRD and compiles every rule on each call:
//! about 14 ms per config in a release build, more than all the other checks together, which
//! made the admission webhook's review CPU-bound. The rules come from the same `crd()`, so the
//! answers are the same.

use std::sync::LazyLock;

use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, ValidationErrors, Validator, compile_schema};
use serde::Serialize;

use crate::api::{GlobalMcpConfig, TenantMcpConfig};

static TENANT: LazyLock<CompiledSchema> = LazyLock::new(compiled::<TenantMcpConfig>);
static GLOBAL: LazyLock<CompiledSchema> = LazyLock::new(compiled::<GlobalMcpConfig>);

thread_local! {
    // A validator holds the Kubernetes CEL function library; built once per thread.
    static VALIDATOR: Validator = Validator::new();
}

/// The schema of `T`'s CRD (its first version, as kube's `validate_cel` takes it), compiled.
fn compiled<T: CustomResourceExt>() -> CompiledSchema {
    let crd = T::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    compile_schema(&schema)
}

fn evaluate<T: Serialize>(schema: &CompiledSchema, object: &T) -> Result<(), ValidationErrors> {
    let Ok(value) = serde_json::to_value(object) else {
        // The generated types always serialize; nothing to evaluate otherwise.
        return Ok(());
    };
    VALIDATOR
        .with(|validator| validator.validate_compiled(schema, &value, None))
        .map_err(|errors| {
            // The compiled tree keeps properties in a hash map: order the failures by field,
            // so a report reads the same on every run.
            let mut failures = errors.into_vec();
            failures.sort_by(|a, b| (&a.field_path, &a.message).cmp(&(&b.field_path, &b.message)));
            failures.into()
        })
}

/// The creation rules of the TenantMcpConfig CRD, against `config`.
pub fn validate_tenant(config: &TenantMcpConfig) -> Result<(), ValidationErrors> {
    evaluate(&TENANT, config)
}

/// The creation rules of the GlobalMcpConfig CRD, against `config`.
pub fn validate_global(config: &GlobalMcpConfig) -> Result<(), ValidationErrors> {
    evaluate(&GLOBAL, config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The compiled rules answer as kube's own `validate_cel` does, on a config that breaks
    /// some and one that breaks none.
    #[test]
    fn compiled_rules_answer_as_kubes_validate_cel() {
        let bad: TenantMcpConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "acme", "namespace": "tenant-acme"},
            "spec": {"tenantId": "acme", "servers": {
                "minio": {"endpoint": "ftp://s3.example.com", "bucket": "docs",
                          "credentialsSecretRef": {"name": "s3"}},
                "aiMcpServer": {"url": "https://ai.example.com/mcp",
                                "tenantRouting": {"mode": "PathPrefix", "pathPrefix": "/t"}}}}
        }))
        .unwrap();
        // kube's order follows its schema walk; ours is by field: compare as sets.
        let messages = |r: Result<(), ValidationErrors>| -> Vec<String> {
            let mut m: Vec<String> = r
                .err()
                .map(|e| e.into_vec().into_iter().map(|f| f.message).collect())
                .unwrap_or_default();
            m.sort();
            m
        };
        let ours = messages(validate_tenant(&bad));
        assert_eq!(ours.len(), 2, "the config breaks two CEL rules: {ours:?}");
        assert_eq!(ours, messages(bad.validate_cel()));
        let mut good = bad.clone();
        good.spec.servers.minio = None;
        good.spec.servers.ai_mcp_server = None;
        assert_eq!(messages(validate_tenant(&good)), Vec::<String>::new());
        let global: GlobalMcpConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
            "metadata": {"name": "global"},
            "spec": {"endpointPolicy": {"allowedPorts": ["443"]}}
        }))
        .unwrap();
        assert_eq!(messages(validate_global(&global)).len(), 1);
        assert_eq!(
            messages(validate_global(&global)),
            messages(global.validate_cel())
        );
    }
}

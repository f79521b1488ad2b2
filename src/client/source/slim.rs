//! What the client's watch caches keep of each object: what routing reads and nothing else.
//! A TenantMcpConfig as the API serves it carries `managedFields` (one entry per writer, often
//! larger than the spec), annotations (`kubectl apply` keeps a whole copy of the object in
//! one) and per-server check details the client never reads; at 10,000 tenants those made up
//! most of the cache.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt as _;
use kube::core::PartialObjectMeta;

use crate::api::conditions;
use crate::api::{GlobalMcpConfig, TenantMcpConfig};
use crate::config::candidate::ServerKey;

/// Drops from a config what routing does not read: `managedFields`, annotations, labels (the
/// watch's label selector ran on the server), the owner references, and from status every
/// condition but `Ready`, the health of every server type that has an active entry, and of
/// the others every field but reason and message.
pub fn config(config: &mut TenantMcpConfig) {
    strip_metadata(config);
    config.labels_mut().clear();
    if let Some(status) = config.status.as_mut() {
        status.conditions.retain(|c| c.type_ == conditions::READY);
        // A server type's health is read only to say why it has no active entry.
        let active = &status.active;
        status.servers.retain(|key, _| {
            ServerKey::parse(key)
                .is_none_or(|k| crate::controller::active::spec(active, &k).is_none())
        });
        for health in status.servers.values_mut() {
            health.last_checked_at = None;
            health.latency_ms = None;
            health.spec_hash = None;
            health.secret_versions.clear();
            health.policy_hash = None;
        }
    }
}

/// Drops from a namespace all but its name and the tenant binding label.
pub fn namespace(namespace: &mut PartialObjectMeta<Namespace>) {
    strip_metadata(namespace);
    if let Some(labels) = namespace.metadata.labels.as_mut() {
        labels.retain(|k, _| k == crate::api::TENANT_LABEL);
    }
}

/// Drops `managedFields` and annotations from the GlobalMcpConfig.
pub fn global(global: &mut GlobalMcpConfig) {
    strip_metadata(global);
}

/// Drops `managedFields`, annotations and labels from a snapshot Secret; its type and owner
/// references stay (they prove which config it belongs to), and its data.
pub fn snapshot(secret: &mut Secret) {
    let meta = &mut secret.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    // Ownership is proven by the type and the owner reference, not by labels.
    meta.labels = None;
}

fn strip_metadata<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::routes;

    /// A config as the API serves it (managed fields, a last-applied annotation, a full
    /// status) routes exactly as its slimmed copy does: the slimming drops nothing routing
    /// reads.
    #[test]
    fn a_slimmed_config_routes_as_the_full_one() {
        let full: TenantMcpConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1",
            "kind": "TenantMcpConfig",
            "metadata": {
                "name": "acme", "namespace": "tenant-acme", "uid": "u1",
                "creationTimestamp": "2026-11-30T00:00:00Z",
                "labels": {"team": "search"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
                "finalizers": ["tenantmcp.dev/cleanup"]
            },
            "spec": {"tenantId": "acme", "servers": {
                "postgres": {"host": "db.acme", "database": "acme", "credentialsSecretRef": {"name": "pg"}},
                "minio": {"endpoint": "https://s3.acme", "bucket": "acme", "credentialsSecretRef": {"name": "s3"}}
            }},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ServersFailing", "message": "m", "lastTransitionTime": "2026-11-30T00:00:00Z"},
                    {"type": "Validated", "status": "True", "reason": "Valid", "message": "ok", "lastTransitionTime": "2026-11-30T00:00:00Z"}
                ],
                "servers": {
                    "postgres": {"state": "Failing", "reason": "AuthFailed", "message": "login refused", "latencyMs": 3, "specHash": "h", "secretVersions": {"pg": "7"}, "policyHash": "p"},
                    "minio": {"state": "Pending"}
                }
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut slim = full.clone();
        config(&mut slim);
        assert!(slim.metadata.managed_fields.is_none() && slim.metadata.annotations.is_none());
        let policy = std::sync::Arc::new(crate::config::EndpointPolicy::default());
        let route = |c: &TenantMcpConfig| {
            let r = routes::from_status(c, &|_| None, &policy);
            format!("{} {} {:?}", r.config, r.enabled, r.servers)
        };
        assert_eq!(route(&full), route(&slim));
        assert!(
            route(&slim).contains("AuthFailed"),
            "the reason survives: {}",
            route(&slim)
        );
        let claims = |c: &TenantMcpConfig| {
            let claim = crate::config::binding::Claim::of(c, None);
            format!("{claim:?}")
        };
        assert_eq!(claims(&full), claims(&slim));
    }
}

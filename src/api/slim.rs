//! What a watch keeps of an object: the fields its readers read, without the two that often
//! outweigh the rest — `managedFields` (server-side apply's bookkeeping, a few hundred bytes
//! per field manager) and `kubectl apply`'s last-applied annotation (a whole second copy of
//! the object as JSON). The controller and the client library strip with these functions
//! before an object enters a cache, as controller-runtime's `DefaultTransform` and kube-rs's
//! `.modify()` examples do.

use kube::api::ObjectMeta;

use super::{GlobalMcpConfig, TenantMcpConfig};

/// The annotation in which `kubectl apply` keeps the last applied object.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops `managedFields` and the last-applied annotation; every other field stays.
pub fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A TenantMcpConfig as the controller caches it: spec, status and metadata, less
/// [`metadata`]'s two (its own annotations, such as the force-delete one, stay).
pub fn config(config: &mut TenantMcpConfig) {
    metadata(&mut config.metadata);
}

/// A GlobalMcpConfig as both caches keep it: spec, status, identity and labels (nothing reads
/// its annotations, owners or finalizers).
pub fn global(global: &mut GlobalMcpConfig) {
    let meta = &mut global.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use std::collections::BTreeMap;

    fn heavy_meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("acme".into()),
            namespace: Some("tenant-acme".into()),
            uid: Some("u1".into()),
            resource_version: Some("42".into()),
            generation: Some(3),
            labels: Some(BTreeMap::from([(
                "tenantmcp.dev/tenant".to_owned(),
                "acme".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([
                (
                    LAST_APPLIED_ANNOTATION.to_owned(),
                    "{\"big\":true}".to_owned(),
                ),
                ("tenantmcp.dev/force-delete".to_owned(), "true".to_owned()),
            ])),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                ..ManagedFieldsEntry::default()
            }]),
            finalizers: Some(vec!["tenantmcp.dev/cleanup".into()]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_config_keeps_what_the_controller_reads_and_loses_the_copies() {
        let mut c = TenantMcpConfig::new(
            "acme",
            serde_json::from_value(serde_json::json!({"tenantId": "acme"})).unwrap(),
        );
        c.metadata = heavy_meta();
        config(&mut c);
        let m = &c.metadata;
        assert_eq!(m.managed_fields, None);
        let annotations = m.annotations.as_ref().unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED_ANNOTATION));
        assert_eq!(annotations["tenantmcp.dev/force-delete"], "true");
        assert_eq!(m.generation, Some(3));
        assert_eq!(
            m.finalizers.as_deref(),
            Some(&["tenantmcp.dev/cleanup".to_owned()][..])
        );
        assert_eq!(c.spec.tenant_id, "acme");
    }

    #[test]
    fn only_the_last_applied_annotation_goes_and_an_emptied_map_is_none() {
        let mut meta = heavy_meta();
        meta.annotations = Some(BTreeMap::from([(
            LAST_APPLIED_ANNOTATION.to_owned(),
            "{}".to_owned(),
        )]));
        metadata(&mut meta);
        assert_eq!(meta.annotations, None);
    }
}

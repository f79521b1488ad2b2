//! The tenant each namespace is bound to, kept from the namespace metadata watch: the binding
//! rule reads a namespace's `tenantmcp.dev/tenant` label and the mirror its resource version,
//! and nothing reads the rest. A reflector store of the namespaces' metadata held about 1.2 KB
//! per namespace at 10,000 (the object, its labels in a B-tree node with room for eleven, and
//! the store's key with its own copies of the strings); this keeps the two fields, about 100
//! bytes.

use std::sync::RwLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

use crate::api::TENANT_LABEL;
use crate::listed::{Applied, Listed};

/// What the index keeps of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    /// Its `tenantmcp.dev/tenant` label.
    tenant: Option<Box<str>>,
    /// Its resource version, as the mirror's version reads it.
    resource_version: Option<i64>,
}

impl Kept {
    fn of(namespace: &PartialObjectMeta<Namespace>) -> Self {
        let meta = &namespace.metadata;
        Self {
            tenant: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(TENANT_LABEL))
                .map(|t| t.as_str().into()),
            resource_version: meta
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// Every namespace's binding, by name.
#[derive(Debug, Default)]
pub struct NamespaceIndex {
    namespaces: RwLock<Listed<Box<str>, Kept>>,
}

impl NamespaceIndex {
    /// Applies one event of the namespace watch; returns whether it was news (`false` while a
    /// re-list is gathered and for a namespace whose binding and version are what they were).
    pub fn observe(&self, event: &Event<PartialObjectMeta<Namespace>>) -> bool {
        let name = |n: &PartialObjectMeta<Namespace>| -> Box<str> {
            n.metadata.name.as_deref().unwrap_or_default().into()
        };
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !matches!(
            namespaces.apply(event, name, |n| Some(Kept::of(n))),
            Applied::Buffered
        )
    }

    /// The tenant `namespace` is bound to (`None`: no binding, or a namespace not known).
    pub fn tenant(&self, namespace: &str) -> Option<Box<str>> {
        self.read(namespace, |k| k.tenant.clone())
    }

    /// The resource version of `namespace`, if it is known.
    pub fn resource_version(&self, namespace: &str) -> Option<i64> {
        self.read(namespace, |k| k.resource_version)
    }

    fn read<R>(&self, namespace: &str, f: impl FnOnce(&Kept) -> Option<R>) -> Option<R> {
        let namespaces = self
            .namespaces
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        namespaces.get(namespace).and_then(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn namespace(name: &str, tenant: Option<&str>, version: &str) -> PartialObjectMeta<Namespace> {
        let mut labels =
            BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), name.to_owned())]);
        if let Some(t) = tenant {
            labels.insert(TENANT_LABEL.to_owned(), t.to_owned());
        }
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(version.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn a_namespace_keeps_its_binding_and_version_and_loses_them_when_it_goes() {
        let index = NamespaceIndex::default();
        assert!(index.observe(&Event::Apply(namespace("tenant-a", Some("a"), "7"))));
        index.observe(&Event::Apply(namespace("plain", None, "8")));
        assert_eq!(index.tenant("tenant-a").as_deref(), Some("a"));
        assert_eq!(index.resource_version("tenant-a"), Some(7));
        // Known but unbound: a version (the mirror's input) and no tenant.
        assert_eq!(index.tenant("plain"), None);
        assert_eq!(index.resource_version("plain"), Some(8));
        // The label moved to another tenant.
        index.observe(&Event::Apply(namespace("tenant-a", Some("b"), "9")));
        assert_eq!(index.tenant("tenant-a").as_deref(), Some("b"));
        index.observe(&Event::Delete(namespace("tenant-a", Some("b"), "9")));
        assert_eq!(index.tenant("tenant-a"), None);
        assert_eq!(index.resource_version("tenant-a"), None);
    }

    #[test]
    fn a_relist_serves_the_old_bindings_until_it_ends_and_drops_what_went_meanwhile() {
        let index = NamespaceIndex::default();
        index.observe(&Event::Apply(namespace("gone", Some("a"), "1")));
        assert!(!index.observe(&Event::Init));
        assert!(!index.observe(&Event::InitApply(namespace("new", Some("b"), "2"))));
        assert_eq!(
            index.tenant("gone").as_deref(),
            Some("a"),
            "until the list ends"
        );
        assert_eq!(index.tenant("new"), None);
        assert!(index.observe(&Event::InitDone));
        assert_eq!(index.tenant("gone"), None);
        assert_eq!(index.tenant("new").as_deref(), Some("b"));
    }
}

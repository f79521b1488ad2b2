//! Who may read a config's snapshot Secrets: a Role per config that grants `get` on exactly
//! the snapshot Secrets it serves (RBAC `resourceNames`), bound to the application service
//! accounts that link the client library (`--snapshot-reader`). An application account thus
//! reads the credentials it serves and nothing else in a tenant's namespace — and nothing at
//! all in the namespaces it has no Role in, such as the controller's own (mirror keys, JWT
//! signing secret, database URL).
//!
//! The Role is written before `status.active` names a new snapshot, so a client never sees a
//! snapshot it may not read yet; both objects are owned by the config and go with it.
//! A Role whose rule had an empty `resourceNames` would grant every Secret: a config without
//! snapshots gets a Role with no rule at all.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Resource as _;
use kube::api::ObjectMeta;

use crate::api::TenantMcpConfig;

/// A service account that reads snapshots (an application pod's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::str::FromStr for ServiceAccount {
    type Err = String;

    /// `namespace/name`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name))
                if crate::config::validate::is_dns_label(namespace)
                    && crate::config::validate::is_dns_subdomain(name) =>
            {
                Ok(Self {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!(
                "expected a service account as namespace/name (e.g. rag/rag-api), got {s:?}"
            )),
        }
    }
}

/// The longest config name kept whole in [`object_name`].
const WHOLE_NAME: usize = 200;

/// The name of the reader Role and RoleBinding of config `config`: the config's name when it
/// is at most 200 characters; else its first 200 and 16 hex digits of the SHA-256 of the whole
/// (an object name holds 253). Distinct configs get distinct names: two long names that share
/// their first 200 characters differ in the hash, and a hashed name is longer than any kept
/// whole, so deleting one config's Role never removes another's.
pub fn object_name(config: &str) -> String {
    use sha2::{Digest as _, Sha256};
    if config.len() <= WHOLE_NAME {
        return format!("tenant-mcp-snapshots-{config}");
    }
    // Object names are ASCII, so this is a character boundary.
    let prefix = config.get(..WHOLE_NAME).unwrap_or(config);
    let digest = hex::encode(Sha256::digest(config.as_bytes()));
    format!("tenant-mcp-snapshots-{prefix}-{}", &digest[..16])
}

/// The Role that lets `readers` get exactly `snapshots` of `config`, and its RoleBinding.
pub fn objects(
    config: &TenantMcpConfig,
    snapshots: &BTreeSet<String>,
    readers: &[ServiceAccount],
) -> (Role, RoleBinding) {
    let name = object_name(config.metadata.name.as_deref().unwrap_or_default());
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: config.metadata.namespace.clone(),
        labels: Some(
            [(
                super::snapshot::MANAGED_BY_LABEL.to_owned(),
                "tenant-mcp".to_owned(),
            )]
            .into(),
        ),
        owner_references: config.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    };
    let rules = (!snapshots.is_empty()).then(|| {
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            resource_names: Some(snapshots.iter().cloned().collect()),
            ..PolicyRule::default()
        }]
    });
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(rules.unwrap_or_default()),
    };
    let binding = RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name,
        },
        subjects: Some(
            readers
                .iter()
                .map(|sa| Subject {
                    kind: "ServiceAccount".into(),
                    name: sa.name.clone(),
                    namespace: Some(sa.namespace.clone()),
                    ..Subject::default()
                })
                .collect(),
        ),
    };
    (role, binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TenantMcpConfig {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "acme", "namespace": "tenant-acme", "uid": "u-1"},
            "spec": {"tenantId": "acme"}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn readers() -> Vec<ServiceAccount> {
        vec!["rag/rag-api".parse().unwrap_or_else(|e| panic!("{e}"))]
    }

    #[test]
    fn the_role_grants_get_on_exactly_the_snapshots() {
        let names: BTreeSet<String> = ["acme-postgres-1".into(), "acme-minio-2".into()].into();
        let (role, binding) = objects(&config(), &names, &readers());
        let rules = role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["secrets".to_owned()][..])
        );
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["acme-minio-2".to_owned(), "acme-postgres-1".to_owned()][..])
        );
        assert_eq!(role.metadata.namespace.as_deref(), Some("tenant-acme"));
        let owner = &role.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("TenantMcpConfig", "u-1")
        );
        assert_eq!(binding.role_ref.name, "tenant-mcp-snapshots-acme");
        let subject = &binding.subjects.unwrap_or_default()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "rag-api", Some("rag"))
        );
    }

    /// An empty `resourceNames` means every name: without snapshots there is no rule at all.
    #[test]
    fn without_snapshots_the_role_grants_nothing() {
        let (role, _) = objects(&config(), &BTreeSet::new(), &readers());
        assert_eq!(role.rules, Some(Vec::new()));
    }

    /// Issue 27, item 8: configs whose names share their first 200 characters got one Role,
    /// and deleting either removed the other's for good.
    #[test]
    fn long_config_names_sharing_a_prefix_get_their_own_roles() {
        // Config names are DNS subdomains: labels of at most 63 characters.
        let prefix = vec!["a".repeat(50); 4].join(".");
        let names = [
            "acme".to_owned(),
            prefix.clone(),
            format!("{prefix}b"),
            format!("{prefix}c"),
            format!("{prefix}.{}", "d".repeat(40)),
        ];
        let objects: BTreeSet<String> = names.iter().map(|n| object_name(n)).collect();
        assert_eq!(objects.len(), names.len(), "{objects:#?}");
        for (name, object) in names.iter().map(|n| (n, object_name(n))) {
            // RBAC object names are path segments: no '/' or '%'; the API's limit is 253.
            assert!(object.len() <= 253, "{name}: {}", object.len());
            assert!(!object.contains(['/', '%']), "{object}");
        }
        assert_eq!(object_name("acme"), "tenant-mcp-snapshots-acme");
    }

    #[test]
    fn readers_are_namespace_slash_name() {
        assert!("rag/rag-api".parse::<ServiceAccount>().is_ok());
        for bad in ["rag", "/x", "rag/", "Rag/x", "a/b/c/"] {
            let err = bad.parse::<ServiceAccount>().unwrap_err();
            assert!(err.contains("namespace/name"), "{bad}: {err}");
        }
    }
}

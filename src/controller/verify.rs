//! `tenant-mcp mirror verify`: every mirror row against what the controller would write from
//! the cluster now. The expected documents come from the controller's own functions (the
//! binding rule, [`plan::gate`], [`mirrored`]); the comparison is pure ([`compare`]).
//!
//! A row can disagree with the cluster for a moment (a promotion the controller has not
//! mirrored yet); a row whose version is ahead of every object it was built from, whose content
//! hash no longer verifies, or that no config serves was changed outside the controller.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};
use serde::Serialize;

use super::mirrored;
use super::plan;
use super::reconcile::resource_version;
use crate::api::{GLOBAL_CONFIG_NAME, GlobalMcpConfig, McpConfigStatus, TenantMcpConfig};
use crate::config::Credential;
use crate::config::binding::{self, Claim};
use crate::config::failure::Failure;
use crate::mirror::{MirrorDocument, MirrorError, MirrorRow, RowSummary};

/// What the controller would write for one tenant now.
#[derive(Debug)]
pub struct Expected {
    /// `namespace/name` of the config that owns the tenant's row.
    pub config: String,
    /// The document, or why the cluster cannot produce one (a snapshot Secret is gone).
    pub document: Result<MirrorDocument<Credential>, Failure>,
    /// The version it would be written with.
    pub version: i64,
}

/// The cluster's side of a verification.
#[derive(Debug)]
pub struct ClusterMirror {
    /// Per tenant whose row a config owns.
    pub expected: BTreeMap<String, Expected>,
    /// The cluster's current `resourceVersion` (of the config list): a tombstone for a row
    /// no config owns.
    pub now: i64,
}

fn source(action: &str, e: kube::Error) -> String {
    format!("{action}: {e}")
}

/// Reads the configs, namespaces, the GlobalMcpConfig and the snapshot Secrets the active
/// entries name, and builds what the controller would mirror for every tenant (the controller
/// running with `--tenant-configs-enabled=controller_flag`).
pub async fn expected(kube: Client, controller_flag: bool) -> Result<ClusterMirror, String> {
    let list = Api::<TenantMcpConfig>::all(kube.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| source("listing TenantMcpConfigs", e))?;
    let now = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let namespaces: HashMap<String, Namespace> = Api::<Namespace>::all(kube.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| source("listing namespaces", e))?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n))
        .collect();
    let global = Api::<GlobalMcpConfig>::all(kube.clone())
        .get_opt(GLOBAL_CONFIG_NAME)
        .await
        .map_err(|e| source("reading the GlobalMcpConfig", e))?;
    let allow_unbound = global
        .as_ref()
        .is_some_and(|g| g.spec.allow_unbound_namespaces);

    let mut by_tenant: BTreeMap<&str, Vec<&TenantMcpConfig>> = BTreeMap::new();
    for config in &list.items {
        by_tenant
            .entry(config.spec.tenant_id.as_str())
            .or_default()
            .push(config);
    }
    let mut expected = BTreeMap::new();
    for (tenant, configs) in by_tenant {
        let labels = |c: &TenantMcpConfig| {
            namespaces
                .get(&c.namespace().unwrap_or_default())
                .and_then(|n| n.metadata.labels.as_ref())
        };
        let claims: Vec<Claim<'_>> = configs.iter().map(|c| Claim::of(c, labels(c))).collect();
        let decision = binding::decide(tenant, &claims, allow_unbound);
        for (config, verdict) in configs.iter().zip(&decision.verdicts) {
            let gate = plan::gate(
                config,
                verdict,
                global.as_ref().map(|g| &g.spec),
                controller_flag,
            );
            let Some(state) = mirrored::state(&gate) else {
                continue;
            };
            let namespace = config.namespace().unwrap_or_default();
            let status = config.status.clone().unwrap_or_default();
            let snapshots = snapshots_of(kube.clone(), &namespace, &status).await?;
            let version = mirrored::version(
                [
                    resource_version(*config),
                    global.as_ref().and_then(resource_version),
                    namespaces.get(&namespace).and_then(resource_version),
                ]
                .into_iter()
                .chain(snapshots.values().map(resource_version)),
            );
            expected.insert(
                tenant.to_owned(),
                Expected {
                    config: format!("{namespace}/{}", config.name_any()),
                    document: mirrored::document(config, &status, state, &snapshots),
                    version,
                },
            );
        }
    }
    Ok(ClusterMirror { expected, now })
}

/// The snapshot Secrets `status.active` names, by name.
async fn snapshots_of(
    kube: Client,
    namespace: &str,
    status: &McpConfigStatus,
) -> Result<HashMap<String, Secret>, String> {
    let api: Api<Secret> = Api::namespaced(kube, namespace);
    let mut found = HashMap::new();
    for name in super::active::snapshots(&status.active) {
        if let Some(secret) = api
            .get_opt(&name)
            .await
            .map_err(|e| source("reading a snapshot Secret", e))?
        {
            found.insert(name, secret);
        }
    }
    Ok(found)
}

/// What is wrong with a row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Problem {
    /// A config owns the tenant but the row has no document.
    Missing,
    /// The row has a document but no config owns the tenant.
    NotServed,
    /// The row does not open with these keys.
    Unreadable {
        /// Why.
        message: String,
    },
    /// The stored content hash does not match the content: a plain field was changed.
    Altered,
    /// The document differs from the cluster's in these parts.
    Differs {
        /// `state`, `source`, `servers.postgres`, `servers.mcpServers.search`…
        parts: Vec<String>,
    },
    /// The row's version is ahead of every object its document comes from: nothing the
    /// controller writes replaces it.
    VersionAhead,
    /// The cluster cannot produce the document (the controller cannot either).
    ClusterIncomplete {
        /// Why.
        message: String,
    },
}

impl Problem {
    /// Whether `--repair` can fix it.
    pub fn repairable(&self) -> bool {
        !matches!(self, Self::ClusterIncomplete { .. })
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Missing => "no document although a config serves the tenant".into(),
            Self::NotServed => "a document although no config serves the tenant".into(),
            Self::Unreadable { message } => format!("does not open: {message}"),
            Self::Altered => {
                "content changed after the controller wrote it (hash does not verify)".into()
            }
            Self::Differs { parts } => format!("differs from the cluster in {}", parts.join(", ")),
            Self::VersionAhead => {
                "version ahead of the cluster: the controller's writes are refused".into()
            }
            Self::ClusterIncomplete { message } => {
                format!("the cluster cannot say what it should hold: {message}")
            }
        }
    }
}

/// One row that disagrees with the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The tenant.
    pub tenant: String,
    /// The config that owns its row, if any.
    pub config: Option<String>,
    /// The row's version.
    pub row_version: Option<i64>,
    /// The version the controller would write.
    pub cluster_version: Option<i64>,
    /// What is wrong.
    pub problems: Vec<Problem>,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// Compares the rows (`rows`, and each opened document in `opened`) with `cluster`: one
/// finding per row that disagrees, in tenant order.
pub fn compare(
    cluster: &ClusterMirror,
    rows: &[RowSummary],
    opened: &HashMap<String, Result<MirrorRow, MirrorError>>,
) -> Vec<Finding> {
    let summaries: HashMap<&str, &RowSummary> =
        rows.iter().map(|r| (r.tenant.as_str(), r)).collect();
    let mut tenants: Vec<&str> = cluster
        .expected
        .keys()
        .map(String::as_str)
        .chain(rows.iter().map(|r| r.tenant.as_str()))
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut findings = Vec::new();
    for tenant in tenants {
        let row = summaries.get(tenant);
        let expected = cluster.expected.get(tenant);
        let has_document = row.is_some_and(|r| r.has_document);
        let mut problems = Vec::new();
        match (expected, has_document) {
            (None, false) => continue,
            (None, true) => problems.push(Problem::NotServed),
            (Some(_), false) => problems.push(Problem::Missing),
            (Some(_), true) => {}
        }
        if let Some(e) = expected {
            if let Err(f) = &e.document {
                problems.push(Problem::ClusterIncomplete {
                    message: f.message.clone(),
                });
            }
            if row.and_then(|r| r.version).is_some_and(|v| v > e.version) {
                problems.push(Problem::VersionAhead);
            }
        }
        if has_document {
            match opened.get(tenant) {
                Some(Ok(stored)) => {
                    if !stored.content_verified {
                        problems.push(Problem::Altered);
                    }
                    if let Some(Ok(document)) = expected.map(|e| &e.document) {
                        let parts = differences(&stored.document, document);
                        if !parts.is_empty() {
                            problems.push(Problem::Differs { parts });
                        }
                    }
                }
                Some(Err(e)) => problems.push(Problem::Unreadable {
                    message: e.to_string(),
                }),
                None => {}
            }
        }
        if problems.is_empty() {
            continue;
        }
        findings.push(Finding {
            tenant: tenant.to_owned(),
            config: expected.map(|e| e.config.clone()),
            row_version: row.and_then(|r| r.version),
            cluster_version: expected.map(|e| e.version),
            problems,
            repaired: false,
        });
    }
    findings
}

/// The parts of `stored` that differ from `wanted`.
fn differences(
    stored: &MirrorDocument<Credential>,
    wanted: &MirrorDocument<Credential>,
) -> Vec<String> {
    let mut parts = Vec::new();
    if stored.tenant_id != wanted.tenant_id {
        parts.push("tenantId".to_owned());
    }
    if stored.state != wanted.state {
        parts.push("state".to_owned());
    }
    if stored.source != wanted.source {
        parts.push("source".to_owned());
    }
    let (a, b) = (&stored.servers, &wanted.servers);
    if a.postgres != b.postgres {
        parts.push("servers.postgres".to_owned());
    }
    if a.minio != b.minio {
        parts.push("servers.minio".to_owned());
    }
    if a.ai_mcp_server != b.ai_mcp_server {
        parts.push("servers.aiMcpServer".to_owned());
    }
    let names: std::collections::BTreeSet<&String> =
        a.mcp_servers.keys().chain(b.mcp_servers.keys()).collect();
    for name in names {
        if a.mcp_servers.get(name) != b.mcp_servers.get(name) {
            parts.push(format!("servers.mcpServers.{name}"));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::mirror::{ConfigSource, MirrorServers, MirrorState};

    fn document(tenant: &str, state: MirrorState) -> MirrorDocument<Credential> {
        MirrorDocument {
            tenant_id: tenant.into(),
            state,
            source: ConfigSource {
                namespace: format!("tenant-{tenant}"),
                name: tenant.into(),
            },
            servers: MirrorServers::default(),
        }
    }

    fn row(tenant: &str, version: i64, document: MirrorDocument<Credential>) -> MirrorRow {
        MirrorRow {
            version,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
            document,
            content_verified: true,
        }
        .with_tenant(tenant)
    }

    trait WithTenant {
        fn with_tenant(self, tenant: &str) -> Self;
    }
    impl WithTenant for MirrorRow {
        fn with_tenant(mut self, tenant: &str) -> Self {
            self.document.tenant_id = tenant.into();
            self
        }
    }

    fn summary(tenant: &str, version: i64, has_document: bool) -> RowSummary {
        RowSummary {
            tenant: tenant.into(),
            version: Some(version),
            has_document,
        }
    }

    #[test]
    fn each_kind_of_disagreement_is_named_and_agreement_is_silent() {
        let expected = |tenant: &str, version| {
            (
                tenant.to_owned(),
                Expected {
                    config: format!("tenant-{tenant}/{tenant}"),
                    document: Ok(document(tenant, MirrorState::Active)),
                    version,
                },
            )
        };
        let cluster = ClusterMirror {
            expected: [
                expected("fine", 10),
                expected("ahead", 10),
                expected("disabled", 10),
                expected("altered", 10),
                expected("missing", 10),
            ]
            .into(),
            now: 20,
        };
        let rows = vec![
            summary("ahead", i64::MAX, true),
            summary("altered", 9, true),
            summary("disabled", 9, true),
            summary("fine", 8, true),
            summary("gone", 3, false),
            summary("orphan", 5, true),
        ];
        let mut altered = row("altered", 9, document("altered", MirrorState::Active));
        altered.content_verified = false;
        let opened: HashMap<String, Result<MirrorRow, MirrorError>> = [
            (
                "ahead",
                Ok(row(
                    "ahead",
                    i64::MAX,
                    document("ahead", MirrorState::Active),
                )),
            ),
            ("altered", Ok(altered)),
            (
                "disabled",
                Ok(row(
                    "disabled",
                    9,
                    document("disabled", MirrorState::Disabled),
                )),
            ),
            (
                "fine",
                Ok(row("fine", 8, document("fine", MirrorState::Active))),
            ),
            (
                "orphan",
                Ok(row("orphan", 5, document("orphan", MirrorState::Active))),
            ),
        ]
        .into_iter()
        .map(|(t, r)| (t.to_owned(), r))
        .collect();
        let findings = compare(&cluster, &rows, &opened);
        let seen: Vec<(&str, &[Problem])> = findings
            .iter()
            .map(|f| (f.tenant.as_str(), f.problems.as_slice()))
            .collect();
        assert_eq!(
            seen,
            [
                ("ahead", &[Problem::VersionAhead][..]),
                ("altered", &[Problem::Altered][..]),
                (
                    "disabled",
                    &[Problem::Differs {
                        parts: vec!["state".into()]
                    }][..]
                ),
                ("missing", &[Problem::Missing][..]),
                ("orphan", &[Problem::NotServed][..]),
            ]
        );
        // A row behind the cluster's version with the same content is what the controller
        // leaves after its own status write: not a finding; neither is a cleared row.
        assert!(
            !findings
                .iter()
                .any(|f| f.tenant == "fine" || f.tenant == "gone")
        );
    }
}

//! What routing keeps of a TenantMcpConfig: the fields the binding rule reads and, per
//! declared server type, the promoted spec and its snapshot's name or why there is none (or,
//! for a directory config without a controller, the spec itself). The sources convert each
//! object as it arrives and drop it: a typed config with its status is 1.7 KiB before any of
//! its strings, and at 10,000 tenants the objects were most of the client's memory.

use std::sync::Arc;

use jiff::Timestamp;

use crate::api::conditions::{self, reason};
use crate::api::{ActiveConfig, McpConfigStatus, McpServer, PostgresServer, S3Server};
use crate::api::{TenantMcpConfig, TenantMcpConfigSpec};
use crate::config::active;
use crate::config::binding::Claim;
use crate::config::candidate::ServerKey;
use crate::config::validate::ServerSpecRef;

/// What routing reads of one TenantMcpConfig.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigRecord {
    /// The config's namespace.
    pub namespace: String,
    /// The config's name.
    pub name: String,
    /// Its uid: snapshot Secrets must name it as their owner.
    pub uid: String,
    /// When it was created (the binding rule prefers the oldest).
    pub created: Option<Timestamp>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// `spec.tenantId`.
    pub tenant: String,
    /// `spec.enabled`.
    pub enabled: bool,
    /// Where its servers come from.
    pub serves: Serves,
}

/// Where a config's servers come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Serves {
    /// `status.active`: each declared server type's promoted entry, or why it has none.
    Active(Box<[(ServerKey, Result<Promoted, Unavailable>)]>),
    /// The spec as written, checked when routes are built (a directory config that no
    /// controller tested; its Secrets and the policy may come later in the directory).
    Spec(Box<TenantMcpConfigSpec>),
}

/// A promoted server: its spec and the snapshot Secret holding the credentials it was tested
/// with (`None` for a server that needs none).
#[derive(Clone, Debug, PartialEq)]
pub struct Promoted {
    /// The promoted spec.
    pub server: PromotedServer,
    /// The snapshot Secret's name, in the config's namespace.
    pub snapshot: Option<String>,
    /// Its uid as the controller recorded it (none for entries promoted before uids were).
    pub snapshot_uid: Option<String>,
}

/// The spec of a promoted server, by type; shared with the endpoints built from it.
#[derive(Clone, Debug, PartialEq)]
pub enum PromotedServer {
    /// A Postgres server.
    Postgres(Arc<PostgresServer>),
    /// An S3 server.
    Minio(Arc<S3Server>),
    /// An MCP server (the AI MCP server or a named one).
    Mcp(Arc<McpServer>),
}

impl ConfigRecord {
    /// The record of a config the controller manages: each declared server type from
    /// `status.active`, or the reason its status gives for having no active entry.
    pub fn from_status(config: &TenantMcpConfig) -> Self {
        let empty = McpConfigStatus::default();
        let status = config.status.as_ref().unwrap_or(&empty);
        let entries = ServerKey::declared(&config.spec.servers)
            .into_iter()
            .map(|key| {
                let entry = promoted(&status.active, &key).ok_or_else(|| not_active(status, &key));
                (key, entry)
            })
            .collect();
        Self::with(config, Serves::Active(entries))
    }

    /// The record of a config served from its spec (no controller tests it).
    pub fn from_spec(config: &TenantMcpConfig) -> Self {
        Self::with(config, Serves::Spec(Box::new(config.spec.clone())))
    }

    fn with(config: &TenantMcpConfig, serves: Serves) -> Self {
        let meta = &config.metadata;
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            tenant: config.spec.tenant_id.clone(),
            enabled: config.spec.enabled,
            serves,
        }
    }

    /// The binding rule's view of this config, its namespace bound to `namespace_tenant`.
    pub fn claim<'a>(&'a self, namespace_tenant: Option<&'a str>) -> Claim<'a> {
        Claim {
            namespace: &self.namespace,
            name: &self.name,
            created: self.created,
            deleting: self.deleting,
            namespace_tenant,
        }
    }

    /// The names of the snapshot Secrets its promoted entries read their credentials from
    /// (in its namespace).
    pub fn snapshots(&self) -> impl Iterator<Item = &str> {
        let entries = match &self.serves {
            Serves::Active(entries) => &entries[..],
            Serves::Spec(_) => &[],
        };
        entries
            .iter()
            .filter_map(|(_, entry)| entry.as_ref().ok()?.snapshot.as_deref())
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The promoted entry of `key` in `active`, if any.
fn promoted(active: &ActiveConfig, key: &ServerKey) -> Option<Promoted> {
    let server = match active::spec(active, key)? {
        ServerSpecRef::Postgres(s) => PromotedServer::Postgres(Arc::new(s.clone())),
        ServerSpecRef::Minio(s) => PromotedServer::Minio(Arc::new(s.clone())),
        ServerSpecRef::Mcp(s) => PromotedServer::Mcp(Arc::new(s.clone())),
    };
    let (_, snapshot) = active::entry(active, key)?;
    Some(Promoted {
        server,
        snapshot,
        snapshot_uid: crate::config::candidate::active_snapshot_uid(active, key),
    })
}

/// The reason a declared server type has no active entry, from `status.servers`.
fn not_active(status: &McpConfigStatus, key: &ServerKey) -> Unavailable {
    let health = status.servers.get(&key.as_string());
    let gate = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY && c.status == "False");
    match (health.and_then(|h| h.reason.clone()), gate) {
        (Some(r), _) => Unavailable {
            message: health
                .and_then(|h| h.message.clone())
                .unwrap_or_else(|| format!("{} has not passed its checks", key.field())),
            reason: r,
        },
        (None, Some(c)) if c.reason != reason::SERVERS_FAILING => Unavailable {
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
        _ => Unavailable {
            reason: reason::PENDING.to_owned(),
            message: format!(
                "{} has not been checked and promoted by the controller yet",
                key.field()
            ),
        },
    }
}

/// Why a declared server type cannot be used right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// A condition reason (`AuthFailed`, `Pending`, `SnapshotNotVisible`, …).
    pub reason: String,
    /// What happened; never a credential.
    pub message: String,
}

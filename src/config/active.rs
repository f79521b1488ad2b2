//! Reading and changing `status.active` by server key: promote a tested candidate, drop server
//! types the spec no longer declares. The controller writes it and the client and the tools
//! read it through these functions, so they live below all three.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::candidate::{Candidate, ServerKey};
use super::validate::ServerSpecRef;
use crate::api::{ActiveConfig, ActiveServer};

pub use super::candidate::active_entry as entry;

/// The spec of the active entry of `key`, if any.
pub fn spec<'a>(active: &'a ActiveConfig, key: &ServerKey) -> Option<ServerSpecRef<'a>> {
    match key {
        ServerKey::Postgres => active
            .postgres
            .as_ref()
            .map(|a| ServerSpecRef::Postgres(&a.spec)),
        ServerKey::Minio => active.minio.as_ref().map(|a| ServerSpecRef::Minio(&a.spec)),
        ServerKey::AiMcp => active
            .ai_mcp_server
            .as_ref()
            .map(|a| ServerSpecRef::Mcp(&a.spec)),
        ServerKey::Mcp(name) => active
            .mcp_servers
            .get(name)
            .map(|a| ServerSpecRef::Mcp(&a.spec)),
    }
}

/// Takes the active entry of `key` out of service (its snapshot is then released by the
/// usual grace rule); whether there was one.
pub fn demote(active: &mut ActiveConfig, key: &ServerKey) -> bool {
    match key {
        ServerKey::Postgres => active.postgres.take().is_some(),
        ServerKey::Minio => active.minio.take().is_some(),
        ServerKey::AiMcp => active.ai_mcp_server.take().is_some(),
        ServerKey::Mcp(name) => active.mcp_servers.remove(name).is_some(),
    }
}

/// Makes `candidate` the active entry of `key`, frozen in `snapshot` (recorded by name and
/// uid).
pub fn promote(
    active: &mut ActiveConfig,
    key: &ServerKey,
    candidate: &Candidate,
    snapshot: Option<&Secret>,
    now: Timestamp,
) {
    fn frozen<T: Clone>(
        spec: &T,
        candidate: &Candidate,
        snapshot: Option<&Secret>,
        now: Timestamp,
    ) -> ActiveServer<T> {
        ActiveServer {
            spec: spec.clone(),
            snapshot_secret: snapshot.and_then(|s| s.metadata.name.clone()),
            snapshot_uid: snapshot.and_then(|s| s.metadata.uid.clone()),
            spec_hash: candidate.spec_hash(),
            promoted_at: Time(now),
        }
    }
    match (key, candidate) {
        (ServerKey::Postgres, Candidate::Postgres { spec, .. }) => {
            active.postgres = Some(Box::new(frozen(spec, candidate, snapshot, now)));
        }
        (ServerKey::Minio, Candidate::Minio { spec, .. }) => {
            active.minio = Some(Box::new(frozen(spec, candidate, snapshot, now)));
        }
        (ServerKey::AiMcp, Candidate::Mcp { spec, .. }) => {
            active.ai_mcp_server = Some(Box::new(frozen(spec, candidate, snapshot, now)));
        }
        (ServerKey::Mcp(name), Candidate::Mcp { spec, .. }) => {
            active
                .mcp_servers
                .insert(name.clone(), frozen(spec, candidate, snapshot, now));
        }
        // resolve() builds the candidate variant from the key, so these never disagree.
        _ => {}
    }
}

/// Drops active entries of server types not in `declared` (they fall back to global); returns
/// the keys dropped.
pub fn retain_declared(active: &mut ActiveConfig, declared: &[ServerKey]) -> Vec<ServerKey> {
    let mut dropped = Vec::new();
    let mut drop_if = |present: bool, key: ServerKey| {
        let gone = present && !declared.contains(&key);
        if gone {
            dropped.push(key);
        }
        gone
    };
    if drop_if(active.postgres.is_some(), ServerKey::Postgres) {
        active.postgres = None;
    }
    if drop_if(active.minio.is_some(), ServerKey::Minio) {
        active.minio = None;
    }
    if drop_if(active.ai_mcp_server.is_some(), ServerKey::AiMcp) {
        active.ai_mcp_server = None;
    }
    let names: Vec<String> = active.mcp_servers.keys().cloned().collect();
    for name in names {
        if drop_if(true, ServerKey::Mcp(name.clone())) {
            active.mcp_servers.remove(&name);
        }
    }
    dropped
}

/// Every snapshot Secret `active` points at.
pub fn snapshots(active: &ActiveConfig) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    names.extend(
        active
            .postgres
            .iter()
            .filter_map(|a| a.snapshot_secret.clone()),
    );
    names.extend(
        active
            .minio
            .iter()
            .filter_map(|a| a.snapshot_secret.clone()),
    );
    names.extend(
        active
            .ai_mcp_server
            .iter()
            .filter_map(|a| a.snapshot_secret.clone()),
    );
    names.extend(
        active
            .mcp_servers
            .values()
            .filter_map(|a| a.snapshot_secret.clone()),
    );
    names
}

/// Records the uid of each snapshot that an entry promoted before uids were recorded points
/// at, from `snapshots` (by name, read and owned by this config): from then on a Secret
/// recreated under that name is refused. Whether any entry changed.
pub fn record_snapshot_uids(
    active: &mut ActiveConfig,
    snapshots: &HashMap<String, Secret>,
) -> bool {
    fn fill<T>(a: &mut ActiveServer<T>, snapshots: &HashMap<String, Secret>) -> bool {
        if a.snapshot_uid.is_some() {
            return false;
        }
        let uid = a
            .snapshot_secret
            .as_ref()
            .and_then(|n| snapshots.get(n))
            .and_then(|s| s.metadata.uid.clone());
        a.snapshot_uid = uid;
        a.snapshot_uid.is_some()
    }
    let mut changed = false;
    if let Some(a) = &mut active.postgres {
        changed |= fill(a, snapshots);
    }
    if let Some(a) = &mut active.minio {
        changed |= fill(a, snapshots);
    }
    if let Some(a) = &mut active.ai_mcp_server {
        changed |= fill(a, snapshots);
    }
    for a in active.mcp_servers.values_mut() {
        changed |= fill(a, snapshots);
    }
    changed
}

/// Every snapshot Secret `active` points at, with its recorded uid.
pub fn snapshot_refs(active: &ActiveConfig) -> Vec<(String, Option<String>)> {
    fn pick<T>(a: &ActiveServer<T>) -> Option<(String, Option<String>)> {
        Some((a.snapshot_secret.clone()?, a.snapshot_uid.clone()))
    }
    let mut refs: Vec<(String, Option<String>)> = Vec::new();
    refs.extend(active.postgres.as_deref().and_then(pick));
    refs.extend(active.minio.as_deref().and_then(pick));
    refs.extend(active.ai_mcp_server.as_deref().and_then(pick));
    refs.extend(active.mcp_servers.values().filter_map(pick));
    refs
}

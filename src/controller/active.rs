//! Reading and changing `status.active` by server key: promote a tested candidate, drop server
//! types the spec no longer declares.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ActiveConfig, ActiveServer};
use crate::config::candidate::{Candidate, ServerKey};
use crate::config::validate::ServerSpecRef;

pub use crate::config::candidate::active_entry as entry;

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

/// Makes `candidate` the active entry of `key`, frozen in `snapshot`.
pub fn promote(
    active: &mut ActiveConfig,
    key: &ServerKey,
    candidate: &Candidate,
    snapshot: Option<String>,
    now: Timestamp,
) {
    fn frozen<T: Clone>(
        spec: &T,
        candidate: &Candidate,
        snapshot: Option<String>,
        now: Timestamp,
    ) -> ActiveServer<T> {
        ActiveServer {
            spec: spec.clone(),
            snapshot_secret: snapshot,
            spec_hash: candidate.spec_hash(),
            promoted_at: Time(now),
        }
    }
    match (key, candidate) {
        (ServerKey::Postgres, Candidate::Postgres { spec, .. }) => {
            active.postgres = Some(frozen(spec, candidate, snapshot, now));
        }
        (ServerKey::Minio, Candidate::Minio { spec, .. }) => {
            active.minio = Some(frozen(spec, candidate, snapshot, now));
        }
        (ServerKey::AiMcp, Candidate::Mcp { spec, .. }) => {
            active.ai_mcp_server = Some(frozen(spec, candidate, snapshot, now));
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

//! What the client's watch of the GlobalMcpConfig keeps of it: the object without
//! `managedFields` and annotations (`kubectl apply` keeps a whole copy of the object in one).
//! The configs, namespaces and snapshot Secrets are not kept as objects at all: each is made
//! into what routing reads ([`crate::client::record`], a namespace's binding, a snapshot's
//! owners and data) as it arrives.

use crate::api::GlobalMcpConfig;

/// Drops `managedFields` and annotations from the GlobalMcpConfig.
pub fn global(global: &mut GlobalMcpConfig) {
    let meta = &mut global.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

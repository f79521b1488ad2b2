//! The Kubernetes API stand-in: enough of the real API server's wire protocol and object
//! semantics for kubectl, kube-rs's watcher and Controller, and tenant-mcp to run unchanged.

pub mod apply;
pub mod discovery;
pub mod errors;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod store;
pub mod table;

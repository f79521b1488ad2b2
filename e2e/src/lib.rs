//! The local stack of tenant-mcp: a Kubernetes API stand-in that real `kubectl` and kube-rs
//! drive, and launchers for the real servers (Postgres, S3, MCP) the scenarios run against.
//!
//! Everything here exists to test tenant-mcp honestly on a machine without a kube-apiserver;
//! every scenario also runs against a real cluster when `E2E_KUBECONFIG` is set.

pub mod apiserver;
pub mod bench;
pub mod controller_process;
pub mod harness;
pub mod mcp_admin;
pub mod rbac;
pub mod scenario;
pub mod stack;

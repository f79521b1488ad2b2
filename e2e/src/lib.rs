//! The local stack of tenant-mcp: launchers for the real servers the scenarios run against —
//! a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager), Postgres, S3 and
//! MCP servers — and the harness that runs each scenario on them.
//!
//! Every scenario also runs against another cluster when `E2E_KUBECONFIG` points at one.

pub mod bench;
pub mod controller_process;
pub mod harness;
pub mod image;
pub mod mcp_admin;
pub mod rbac;
pub mod scenario;
pub mod stack;
pub mod webhook;
pub mod workload;

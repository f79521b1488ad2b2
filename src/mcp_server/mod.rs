//! The management MCP server (`tenant-mcp mcp-server`): tools for Tenant Admins and Uber Admins
//! to register, update, read, list, delete and test tenant configs, over Streamable HTTP or
//! stdio.
//!
//! - [`auth`]: who is calling (bearer JWT) and what they may do;
//! - [`input`]: the tools' arguments, with JSON Schemas from the CRD types;
//! - [`plan`]: what a write will do, decided before anything is stored;
//! - [`connection`]: the controller's connection tests, run before storing;
//! - [`store`]: the Kubernetes reads and server-side-apply writes;
//! - [`management`]: the tools' state; [`tools`]: their MCP faces; [`workflow`]: what they do;
//!   [`view`]: what they answer;
//! - [`http`]: the HTTP front (authentication, size and rate limits) and stdio;
//! - [`schema`]: the tools' JSON Schemas, in terms any validator knows;
//! - [`audit`], [`metrics`], [`limits`], [`error`] (failures as tool results).

pub mod audit;
pub mod auth;
pub mod connection;
pub mod error;
pub mod http;
pub mod input;
pub mod limits;
pub mod management;
pub mod metrics;
pub mod plan;
pub mod schema;
pub mod store;
pub mod tools;
pub mod view;
pub mod workflow;

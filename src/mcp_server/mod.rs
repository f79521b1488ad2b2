//! The management MCP server (issue 7, in progress): tools for Tenant Admins and Uber Admins to
//! register, update, read, list, delete and test tenant configs. So far: [`auth`], who is
//! calling and what they may do.

pub mod auth;

//! HTTPS for the servers the tests run: the library's own serving identities and TLS listener
//! (`tenant_mcp::admission::tls`), which the webhook serves with too.

pub use tenant_mcp::admission::tls::{Identity, TlsListener};

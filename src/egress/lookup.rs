//! Name resolution as the checked resolver uses it: the system's (`getaddrinfo`: `/etc/hosts`,
//! then DNS), or a table a test controls. Nothing here decides what may be connected to.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;

use futures::future::BoxFuture;

/// Resolves a host name to the addresses to try, in order.
pub trait Lookup: fmt::Debug + Send + Sync {
    /// The addresses of `host` (a name, never an IP literal), with `port` filled in.
    fn lookup<'a>(&'a self, host: &'a str, port: u16)
    -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;

    /// The search list this resolver applies to relative names
    /// ([`crate::config::search::searched_names`]); the policy checks every name it may turn
    /// a host into.
    fn search_domains(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The system resolver's configuration (glibc reads it too; `LOCALDOMAIN` is not honoured here
/// and so must not be set in platform pods).
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The system resolver (`getaddrinfo` on a blocking thread, through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }

    /// The `search` list of `/etc/resolv.conf` (none when it cannot be read).
    fn search_domains(&self) -> Vec<String> {
        std::fs::read_to_string(RESOLV_CONF)
            .map(|text| crate::config::search::parse_resolv_conf(&text))
            .unwrap_or_default()
    }
}

/// A resolver whose answers the caller sets (tests: a name that changes its address after a
/// config was promoted). Unknown names do not resolve.
#[derive(Debug, Default)]
pub struct StaticLookup {
    table: RwLock<HashMap<String, Vec<IpAddr>>>,
    search: Vec<String>,
}

impl StaticLookup {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table whose resolver searches `search` (as a Pod's `/etc/resolv.conf` does).
    pub fn with_search(search: &[&str]) -> Self {
        Self {
            search: search.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// From now on, `host` resolves to `addresses`.
    pub fn set(&self, host: &str, addresses: &[IpAddr]) {
        let mut table = self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table.insert(host.to_ascii_lowercase(), addresses.to_vec());
    }
}

impl Lookup for StaticLookup {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let found = self
            .table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&host.to_ascii_lowercase())
            .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        Box::pin(async move {
            found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such host"))
            })
        })
    }

    fn search_domains(&self) -> Vec<String> {
        self.search.clone()
    }
}

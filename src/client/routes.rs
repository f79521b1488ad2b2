//! Which endpoint and credentials serve a (tenant, server) pair: the tenant's active entry, the
//! global one, or an error. Built from the watched objects whenever they change; looked up on
//! every request, so a lookup takes no shared lock word and allocates nothing.
//!
//! Fallback is per server type and only for absence: a tenant that declares a server type but
//! has no working entry for it gets [`ClientError::Unavailable`], never the global server (its
//! data must not land in shared storage).

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;

use k8s_openapi::api::core::v1::Secret;

use super::error::ClientError;
pub use super::origin::Origin;
pub use super::record::Unavailable;
use super::record::{ConfigRecord, Promoted, PromotedServer, Serves};
use super::sharded::ShardedMap;
use crate::api::conditions::reason;
use crate::api::{GlobalMcpConfigSpec, TenantMcpConfig};
use crate::config::binding::{self, Claim};
use crate::config::candidate::{self, Candidate, ServerKey, snapshot_keys};
use crate::config::failure::{SplitErrors, split_errors};
use crate::config::validate::{ServerSpecRef, policy_failure};
use crate::config::{EndpointPolicy, validate_global_spec, validate_tenant_spec};

/// A server with the exact credentials to use, the endpoint policy its connections obey, and
/// a fingerprint that changes whenever any of them does (clients are cached under it).
#[derive(Debug)]
pub struct Endpoint {
    /// Tenant or global.
    pub origin: Origin,
    /// The server spec and its credentials.
    pub server: Candidate,
    /// The endpoint policy every connection to it is checked against.
    pub policy: Arc<EndpointPolicy>,
    /// Hash of origin, spec, credentials and policy; equal fingerprints build equal clients.
    pub fingerprint: u64,
}

impl Endpoint {
    /// An endpoint of `origin` for `server`, connected to under `policy`.
    pub fn new(origin: Origin, server: Candidate, policy: Arc<EndpointPolicy>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        origin.hash(&mut h);
        server.spec_json().to_string().hash(&mut h);
        for (k, v) in server.snapshot_data() {
            k.hash(&mut h);
            v.0.hash(&mut h);
        }
        format!("{policy:?}").hash(&mut h);
        Self {
            origin,
            server,
            policy,
            fingerprint: h.finish(),
        }
    }

    /// Where it points, without credentials (`postgres://host:port/db`, an S3 endpoint and
    /// bucket, an MCP URL).
    pub fn describe(&self) -> String {
        match &self.server {
            Candidate::Postgres { spec, .. } => {
                format!("postgres://{}:{}/{}", spec.host, spec.port, spec.database)
            }
            Candidate::Minio { spec, .. } => format!("{} bucket {}", spec.endpoint, spec.bucket),
            Candidate::Mcp { spec, .. } => spec.url.clone(),
        }
    }
}

/// What serves a (tenant, server type) and why: [`Routes::explain`].
#[derive(Debug)]
pub struct Explanation {
    /// What a request gets: the endpoint, or the error.
    pub outcome: Result<Arc<Endpoint>, ClientError>,
    /// Which branch of the rule decided it.
    pub because: Because,
}

/// Which branch of the routing rule decided where a server type is served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Because {
    /// Tenant configs are switched off: everyone is on the global servers.
    FlagOff {
        /// Which switch.
        by: &'static str,
    },
    /// No config serves the tenant (none claims it, or the binding rule refuses every claim).
    NoConfig,
    /// The tenant's config has `spec.enabled: false`.
    TenantDisabled {
        /// `namespace/name` of the config.
        config: String,
    },
    /// The tenant's config does not declare this server type: the global fallback.
    NotDeclared {
        /// `namespace/name` of the config.
        config: String,
    },
    /// The tenant's active entry.
    TenantActive {
        /// `namespace/name` of the config.
        config: String,
    },
    /// The tenant declares the type but has no usable entry: never the global server.
    TenantUnavailable {
        /// `namespace/name` of the config.
        config: String,
        /// The condition reason.
        reason: String,
    },
}

impl std::fmt::Display for Because {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FlagOff { by } => write!(f, "tenant configs are switched off ({by})"),
            Self::NoConfig => f.write_str("no TenantMcpConfig serves this tenant"),
            Self::TenantDisabled { config } => write!(f, "{config} has spec.enabled: false"),
            Self::NotDeclared { config } => {
                write!(f, "{config} does not declare this server type")
            }
            Self::TenantActive { config } => write!(f, "the active entry of {config}"),
            Self::TenantUnavailable { config, reason } => {
                write!(
                    f,
                    "{config} declares it but it cannot be used now ({reason})"
                )
            }
        }
    }
}

/// A declared server type: usable, or why not.
pub type Route = Result<Arc<Endpoint>, Unavailable>;

/// The routes of the server types a config declares: a boxed slice searched in order. A
/// config declares one to a few; a `BTreeMap` allocated a node of eleven slots for each
/// (some 800 bytes per tenant), and a lookup scans no more entries than a node does.
#[derive(Debug, Default)]
pub struct ServerRoutes(Box<[(ServerKey, Route)]>);

impl ServerRoutes {
    /// The route of `key`, if declared.
    pub fn get(&self, key: &ServerKey) -> Option<&Route> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }
}

impl FromIterator<(ServerKey, Route)> for ServerRoutes {
    /// Ordered by key; of two routes for one key the last wins, as in a map.
    fn from_iter<I: IntoIterator<Item = (ServerKey, Route)>>(iter: I) -> Self {
        let mut all: Vec<(ServerKey, Route)> = iter.into_iter().collect();
        all.reverse();
        // Stable: among equal keys the last given comes first, and dedup keeps the first.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|a, b| a.0 == b.0);
        Self(all.into_boxed_slice())
    }
}

/// The routes of one tenant's config.
#[derive(Debug)]
pub struct TenantRoutes {
    /// `namespace/name` of the config the routes come from.
    pub config: String,
    /// `spec.enabled`: when false the tenant uses the global servers.
    pub enabled: bool,
    /// Every server type the config declares.
    pub servers: ServerRoutes,
}

/// The global servers and the feature flag.
#[derive(Debug, Default)]
pub struct GlobalRoutes {
    /// `spec.tenantConfigsEnabled` (true when no GlobalMcpConfig exists).
    pub tenant_configs_enabled: bool,
    /// Every server type the GlobalMcpConfig declares.
    pub servers: ServerRoutes,
}

/// What serves every tenant, swapped in piecewise as the watched objects change.
#[derive(Debug)]
pub struct Routes {
    tenants: ShardedMap<Arc<TenantRoutes>>,
    // Swapped whole; a lookup's load writes no shared cache line.
    global: ArcSwap<GlobalRoutes>,
    /// A sequence lock: odd while a change is being written, bumped to the next even number
    /// when it is done. A client confirmed at the current (even) generation is current.
    generation: CachePadded<AtomicU64>,
    /// Serializes writers, so odd/even holds.
    writer: std::sync::Mutex<()>,
    /// This process's own switch (Helm value / flag): false sends everyone to global.
    tenant_configs_enabled: bool,
}

impl Routes {
    /// Empty routes; `tenant_configs_enabled` is the process's own feature flag.
    pub fn new(tenant_configs_enabled: bool) -> Self {
        Self {
            tenants: ShardedMap::default(),
            generation: CachePadded::new(AtomicU64::new(0)),
            writer: std::sync::Mutex::new(()),
            global: ArcSwap::from_pointee(GlobalRoutes {
                tenant_configs_enabled: true,
                servers: ServerRoutes::default(),
            }),
            tenant_configs_enabled,
        }
    }

    /// The generation of the routes. Read it before resolving: a client confirmed against
    /// what was resolved is current for as long as the generation stays the same. It is odd
    /// while a change is being written: then nothing confirmed may be trusted (a lookup could
    /// already see the new route while a confirmation still names the old client).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a client confirmed at `generation` is still current.
    pub fn is_settled(generation: u64) -> bool {
        generation.is_multiple_of(2)
    }

    /// Runs the change `write` between the two halves of the sequence lock.
    fn change(&self, write: impl FnOnce()) {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        write();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The endpoint of server `key` for `tenant`.
    pub fn resolve(&self, tenant: &str, key: &ServerKey) -> Result<Arc<Endpoint>, ClientError> {
        self.resolve_with(tenant, key, Arc::clone)
    }

    /// `f` of the endpoint of server `key` for `tenant`, read in place: the lookup path takes
    /// the fingerprint this way without writing the endpoint's reference count.
    pub fn resolve_with<R>(
        &self,
        tenant: &str,
        key: &ServerKey,
        f: impl FnOnce(&Arc<Endpoint>) -> R,
    ) -> Result<R, ClientError> {
        // A guard, not a cloned Arc: both lookup threads would otherwise bounce its
        // reference count between cores on every call.
        let global = self.global.load();
        let mut f = Some(f);
        if global.tenant_configs_enabled && self.tenant_configs_enabled {
            let own = self.tenants.with(tenant, |own| {
                let own = own.filter(|o| o.enabled)?;
                Some(match own.servers.get(key)? {
                    Ok(endpoint) => Ok(f.take().map(|f| f(endpoint))),
                    Err(u) => Err(ClientError::Unavailable {
                        tenant: tenant.to_owned(),
                        server: key.as_string(),
                        origin: Origin::Tenant,
                        reason: u.reason.clone(),
                        message: format!("{} ({})", u.message, own.config),
                    }),
                })
            });
            if let Some(Ok(Some(r))) = own {
                return Ok(r);
            }
            if let Some(Err(e)) = own {
                return Err(e);
            }
        }
        // `f` is still here: it is taken only by a tenant route that returned above.
        match (global.servers.get(key), f) {
            (Some(Ok(endpoint)), Some(f)) => Ok(f(endpoint)),
            (Some(Err(u)), _) => Err(ClientError::Unavailable {
                tenant: tenant.to_owned(),
                server: key.as_string(),
                origin: Origin::Global,
                reason: u.reason.clone(),
                message: u.message.clone(),
            }),
            _ => Err(ClientError::NotConfigured {
                tenant: tenant.to_owned(),
                server: key.as_string(),
            }),
        }
    }

    /// What [`Self::resolve`] answers for server `key` of `tenant`, and which branch of its
    /// rule decided it (for `tenant-mcp route` and `status`: "why is my tenant on the global
    /// database?"). Not for the request path: it allocates.
    pub fn explain(&self, tenant: &str, key: &ServerKey) -> Explanation {
        let outcome = self.resolve(tenant, key);
        let global = self.global.load();
        let because = if !global.tenant_configs_enabled {
            Because::FlagOff {
                by: "the GlobalMcpConfig's spec.tenantConfigsEnabled",
            }
        } else if !self.tenant_configs_enabled {
            Because::FlagOff {
                by: "this process's tenant_configs_enabled setting",
            }
        } else {
            self.tenants.with(tenant, |own| match own {
                None => Because::NoConfig,
                Some(own) if !own.enabled => Because::TenantDisabled {
                    config: own.config.clone(),
                },
                Some(own) => match own.servers.get(key) {
                    None => Because::NotDeclared {
                        config: own.config.clone(),
                    },
                    Some(Ok(_)) => Because::TenantActive {
                        config: own.config.clone(),
                    },
                    Some(Err(u)) => Because::TenantUnavailable {
                        config: own.config.clone(),
                        reason: u.reason.clone(),
                    },
                },
            })
        };
        Explanation { outcome, because }
    }

    /// Replaces the routes of `tenant` (`None`: it has no config any more).
    pub fn set_tenant(&self, tenant: &str, routes: Option<TenantRoutes>) {
        self.change(|| match routes {
            Some(r) => {
                self.tenants.insert(tenant, Arc::new(r));
            }
            None => {
                self.tenants.remove(tenant);
            }
        });
    }

    /// Replaces every tenant's routes at once (a full resync); of two routes for one tenant
    /// the last wins.
    pub fn set_all_tenants(&self, all: impl IntoIterator<Item = (String, TenantRoutes)>) {
        self.change(|| {
            self.tenants
                .replace_all(all.into_iter().map(|(k, v)| (k, Arc::new(v))));
        });
    }

    /// Replaces the global routes.
    pub fn set_global(&self, global: GlobalRoutes) {
        self.change(|| self.global.store(Arc::new(global)));
    }
}

/// A config that claims a tenant, with the tenant its namespace is bound to (`None`: the
/// namespace is unknown or carries no binding).
pub type Claimed<'a> = (&'a ConfigRecord, Option<&'a str>);

/// The config that serves `tenant` among `claims` (every config claiming it, each with its
/// namespace's binding), by the binding rule the controller and the management tools apply
/// ([`binding::decide`]). `None` when none serves: the tenant then uses the global servers,
/// exactly as if the configs that claim it without serving did not exist.
pub fn serving_config<'a>(
    tenant: &str,
    claims: &[Claimed<'a>],
    allow_unbound: bool,
) -> Option<&'a ConfigRecord> {
    let rule: Vec<Claim<'_>> = claims.iter().map(|(c, t)| c.claim(*t)).collect();
    binding::decide(tenant, &rule, allow_unbound)
        .serving
        .map(|i| claims[i].0)
}

/// The routes of `tenant` from every config that claims it (with its namespace's binding):
/// the config the binding rule says serves it, with `find` finding a Secret of that config by
/// name (its snapshot Secrets; for a config served from its spec, the Secrets it references);
/// `None` when no config serves the tenant. The client library's sources and the `status` /
/// `route` commands build routes this way.
pub fn tenant_routes_of(
    tenant: &str,
    claims: &[Claimed<'_>],
    allow_unbound: bool,
    policy: &Arc<EndpointPolicy>,
    find: &dyn Fn(&ConfigRecord, &str) -> Option<Secret>,
) -> Option<TenantRoutes> {
    let config = serving_config(tenant, claims, allow_unbound)?;
    Some(record_routes(config, &|name| find(config, name), policy))
}

/// The routes of a config the controller manages: each declared server type from
/// `status.active` and its snapshot Secret (found by `snapshot`, by name in the config's
/// namespace). An active entry the current `policy` denies (it was tightened, or
/// `requireTls` set, after promotion) is unavailable with `PolicyDenied` at once, before the
/// controller demotes it.
pub fn from_status(
    config: &TenantMcpConfig,
    snapshot: &dyn Fn(&str) -> Option<Secret>,
    policy: &Arc<EndpointPolicy>,
) -> TenantRoutes {
    record_routes(&ConfigRecord::from_status(config), snapshot, policy)
}

/// The routes of `record`, `find` finding a Secret by name in its namespace: from its
/// promoted entries ([`from_status`]) or, for a directory config without a controller, from
/// its spec, checked statically and against `policy`.
pub fn record_routes(
    record: &ConfigRecord,
    find: &dyn Fn(&str) -> Option<Secret>,
    policy: &Arc<EndpointPolicy>,
) -> TenantRoutes {
    let servers = match &record.serves {
        Serves::Active(entries) => entries
            .iter()
            .map(|(key, entry)| {
                let route = entry.as_ref().map_err(Clone::clone).and_then(|p| {
                    let c = active_candidate(p, key, &record.namespace, find)?;
                    recheck(&c, key, policy)?;
                    Ok(Arc::new(Endpoint::new(Origin::Tenant, c, policy.clone())))
                });
                (key.clone(), route)
            })
            .collect(),
        Serves::Spec(spec) => {
            let errors = split_errors(&validate_tenant_spec(spec, policy), &spec.servers);
            declared_routes(&spec.servers, |key| {
                route_from_spec(&spec.servers, key, &errors, find, Origin::Tenant, policy)
            })
        }
    };
    TenantRoutes {
        config: record.key(),
        enabled: record.enabled,
        servers,
    }
}

/// Checks an active server against the current policy, statically (the rule the controller
/// demotes by); its resolved addresses are checked on every connect.
fn recheck(
    candidate: &Candidate,
    key: &ServerKey,
    policy: &EndpointPolicy,
) -> Result<(), Unavailable> {
    let server = match candidate {
        Candidate::Postgres { spec, .. } => ServerSpecRef::Postgres(spec),
        Candidate::Minio { spec, .. } => ServerSpecRef::Minio(spec),
        Candidate::Mcp { spec, .. } => ServerSpecRef::Mcp(spec),
    };
    match policy_failure(server, policy) {
        Some(f) => Err(Unavailable {
            reason: f.reason,
            message: format!(
                "the active {} is refused by the current endpoint policy: {}",
                key.field(),
                f.message
            ),
        }),
        None => Ok(()),
    }
}

/// `route` of every server type `servers` declares.
fn declared_routes(
    servers: &crate::api::ServersSpec,
    route: impl Fn(&ServerKey) -> Route,
) -> ServerRoutes {
    ServerKey::declared(servers)
        .into_iter()
        .map(|key| {
            let r = route(&key);
            (key, r)
        })
        .collect()
}

/// The global routes: the GlobalMcpConfig's servers with credentials from the Secrets `lookup`
/// finds in its credentials namespace. No GlobalMcpConfig: no global servers, flag on.
pub fn global_routes(
    spec: Option<&GlobalMcpConfigSpec>,
    lookup: &dyn Fn(&str) -> Option<Secret>,
) -> GlobalRoutes {
    let Some(spec) = spec else {
        return GlobalRoutes {
            tenant_configs_enabled: true,
            servers: ServerRoutes::default(),
        };
    };
    // The global servers are checked against the global policy, as the controller would.
    let (errors, policy) = validate_global_spec(spec);
    let policy = Arc::new(policy.unwrap_or_default());
    let errors = split_errors(&errors, &spec.servers);
    let servers = declared_routes(&spec.servers, |key| {
        route_from_spec(&spec.servers, key, &errors, lookup, Origin::Global, &policy)
    });
    GlobalRoutes {
        tenant_configs_enabled: spec.tenant_configs_enabled,
        servers,
    }
}

fn route_from_spec(
    servers: &crate::api::ServersSpec,
    key: &ServerKey,
    errors: &SplitErrors,
    lookup: &dyn Fn(&str) -> Option<Secret>,
    origin: Origin,
    policy: &Arc<EndpointPolicy>,
) -> Route {
    if let Some(line) = errors.config_wide.first() {
        return Err(Unavailable {
            reason: reason::INVALID_SPEC.to_owned(),
            message: line.clone(),
        });
    }
    if let Some(f) = errors.per_server.get(key) {
        return Err(Unavailable {
            reason: f.reason.clone(),
            message: f.message.clone(),
        });
    }
    candidate::resolve(servers, key, lookup)
        .map(|c| Arc::new(Endpoint::new(origin, c, policy.clone())))
        .map_err(|f| Unavailable {
            reason: f.reason,
            message: f.message,
        })
}

/// The promoted entry `p` of `key` with the credentials of its snapshot.
fn active_candidate(
    p: &Promoted,
    key: &ServerKey,
    namespace: &str,
    snapshot: &dyn Fn(&str) -> Option<Secret>,
) -> Result<Candidate, Unavailable> {
    let secret = match &p.snapshot {
        None => None,
        Some(name) => {
            let found = snapshot(name).ok_or_else(|| Unavailable {
                reason: "SnapshotNotVisible".to_owned(),
                message: format!(
                    "snapshot Secret {namespace}/{name} is not visible to this client (yet): it \
                     may still be arriving, or the client's Role cannot read Secrets labelled \
                     app.kubernetes.io/managed-by=tenant-mcp"
                ),
            })?;
            if !candidate::is_recorded_snapshot(&found, p.snapshot_uid.as_deref()) {
                return Err(Unavailable {
                    reason: "SnapshotReplaced".to_owned(),
                    message: format!(
                        "snapshot Secret {namespace}/{name} is not the one the controller made \
                         (its uid is not the one status.active recorded: it was deleted and \
                         recreated); the controller checks the server again and writes a new \
                         snapshot"
                    ),
                });
            }
            Some(found)
        }
    };
    let damaged = || Unavailable {
        reason: reason::SECRET_KEY_MISSING.to_owned(),
        message: format!(
            "snapshot Secret of {} lacks a credential key",
            key.as_string()
        ),
    };
    Ok(match &p.server {
        PromotedServer::Postgres(spec) => {
            let secret = secret.ok_or_else(damaged)?;
            let credentials = candidate::postgres_from_snapshot(&secret).ok_or_else(damaged)?;
            let ca_pem = secret
                .data
                .as_ref()
                .and_then(|d| d.get(snapshot_keys::CA_CERT))
                .map(|b| b.0.clone());
            Candidate::Postgres {
                spec: spec.clone(),
                credentials,
                ca_pem,
            }
        }
        PromotedServer::Minio(spec) => {
            let secret = secret.ok_or_else(damaged)?;
            Candidate::Minio {
                spec: spec.clone(),
                credentials: candidate::s3_from_snapshot(&secret).ok_or_else(damaged)?,
            }
        }
        PromotedServer::Mcp(spec) => Candidate::Mcp {
            spec: spec.clone(),
            credentials: secret
                .as_ref()
                .map(candidate::mcp_from_snapshot)
                .unwrap_or_default(),
        },
    })
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;

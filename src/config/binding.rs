//! The binding rule: which of the `TenantMcpConfig`s that claim a tenant serves it.
//!
//! A config serves tenant T only if its namespace is bound to T (label
//! `tenantmcp.dev/tenant=T`), or — where the GlobalMcpConfig allows unbound namespaces — its
//! namespace carries no binding and no bound namespace holds a config for T. Among the configs
//! that may serve, the oldest wins; the others are in conflict. A config being deleted takes no
//! part.
//!
//! The controller's gate, the management tools and the client library's routing all call
//! [`decide`], so the three can never disagree about who serves a tenant. A config that does not
//! serve changes nothing for the tenant it claims: it is never a tool's write target and never
//! replaces the tenant's routes, so the tenant keeps its global fallback.
//!
//! Pure: no I/O; callers pass the namespaces' labels they read.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{TENANT_LABEL, TenantMcpConfig};

/// One config that claims a tenant, as the rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The config's namespace.
    pub namespace: &'a str,
    /// The config's name.
    pub name: &'a str,
    /// When it was created (older wins).
    pub created: Option<Timestamp>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// The tenant its namespace is bound to (the namespace's `tenantmcp.dev/tenant` label);
    /// `None` when the namespace carries no binding or is not known.
    pub namespace_tenant: Option<&'a str>,
}

impl<'a> Claim<'a> {
    /// The claim of `config`, whose namespace has `labels` (`None`: not known).
    pub fn of(config: &'a TenantMcpConfig, labels: Option<&'a BTreeMap<String, String>>) -> Self {
        Self::bound(
            config,
            labels.and_then(|l| l.get(TENANT_LABEL)).map(String::as_str),
        )
    }

    /// The claim of `config`, whose namespace is bound to `namespace_tenant` (`None`: no
    /// binding, or the namespace is not known).
    pub fn bound(config: &'a TenantMcpConfig, namespace_tenant: Option<&'a str>) -> Self {
        Self {
            namespace: config.metadata.namespace.as_deref().unwrap_or_default(),
            name: config.metadata.name.as_deref().unwrap_or_default(),
            created: config.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleting: config.metadata.deletion_timestamp.is_some(),
            namespace_tenant,
        }
    }

    fn rank(&self) -> (Option<Timestamp>, &str, &str) {
        (self.created, self.namespace, self.name)
    }
}

/// Why a namespace cannot hold the config of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotBound {
    /// The namespace is bound to another tenant.
    BoundToOther {
        /// The namespace.
        namespace: String,
        /// The tenant it is bound to.
        bound: String,
    },
    /// The namespace carries no binding and unbound namespaces are not allowed.
    Unlabelled {
        /// The namespace.
        namespace: String,
    },
    /// Unbound namespaces are allowed, but a bound namespace holds a config for the tenant.
    ShadowedByBound {
        /// The namespace.
        namespace: String,
    },
}

impl NotBound {
    /// What happened and how to fix it, for a condition or an error (`tenant`: the claimed one).
    pub fn message(&self, tenant: &str) -> String {
        match self {
            Self::BoundToOther { namespace, bound } => format!(
                "namespace {namespace:?} is bound to tenant {bound:?} (label {TENANT_LABEL}), not to {tenant:?}"
            ),
            Self::Unlabelled { namespace } => format!(
                "namespace {namespace:?} has no {TENANT_LABEL} label: bind it with `kubectl label namespace {namespace} {TENANT_LABEL}={tenant}` (or set allowUnboundNamespaces in the GlobalMcpConfig)"
            ),
            Self::ShadowedByBound { namespace } => format!(
                "namespace {namespace:?} is not bound to tenant {tenant:?}, and a namespace bound to it holds a config for it: that one serves the tenant"
            ),
        }
    }
}

/// What the rule says of one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This config serves the tenant.
    Serves,
    /// Its namespace may not serve the tenant.
    NotBound(NotBound),
    /// Another config (`namespace/name`) serves the tenant; this one is older-loses.
    Conflict {
        /// `namespace/name` of the config that serves.
        winner: String,
    },
    /// Being deleted: it serves nothing and competes with nothing.
    Deleting,
}

impl Verdict {
    /// Whether the config serves its tenant.
    pub fn serves(&self) -> bool {
        matches!(self, Self::Serves)
    }

    /// What happened, for a condition or an error (`tenant`: the claimed one).
    pub fn message(&self, tenant: &str) -> String {
        match self {
            Self::Serves => format!("serves tenant {tenant:?}"),
            Self::NotBound(n) => n.message(tenant),
            Self::Conflict { winner } => format!(
                "TenantMcpConfig {winner} already serves this tenant (the oldest config wins); delete one of them"
            ),
            Self::Deleting => "being deleted".to_owned(),
        }
    }
}

/// Whether a namespace bound to `namespace_tenant` (its label; `None` when it has none) may
/// hold a config of `tenant`, before other configs are considered.
pub fn namespace_allows(
    namespace: &str,
    namespace_tenant: Option<&str>,
    tenant: &str,
    allow_unbound: bool,
) -> Result<(), NotBound> {
    match namespace_tenant {
        Some(bound) if bound == tenant => Ok(()),
        Some(bound) => Err(NotBound::BoundToOther {
            namespace: namespace.to_owned(),
            bound: bound.to_owned(),
        }),
        None if allow_unbound => Ok(()),
        None => Err(NotBound::Unlabelled {
            namespace: namespace.to_owned(),
        }),
    }
}

/// The rule's answer for every claim of one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// One verdict per claim, in the order of the claims.
    pub verdicts: Vec<Verdict>,
    /// The index of the claim that serves, if any.
    pub serving: Option<usize>,
}

/// Decides which of `claims` (every config that claims `tenant`) serves it.
pub fn decide(tenant: &str, claims: &[Claim<'_>], allow_unbound: bool) -> Decision {
    let bound = |c: &Claim<'_>| c.namespace_tenant == Some(tenant);
    let any_bound = claims.iter().any(|c| !c.deleting && bound(c));
    let mut verdicts: Vec<Verdict> = claims
        .iter()
        .map(|c| {
            if c.deleting {
                return Verdict::Deleting;
            }
            match namespace_allows(c.namespace, c.namespace_tenant, tenant, allow_unbound) {
                Err(e) => Verdict::NotBound(e),
                Ok(()) if any_bound && !bound(c) => Verdict::NotBound(NotBound::ShadowedByBound {
                    namespace: c.namespace.to_owned(),
                }),
                Ok(()) => Verdict::Serves,
            }
        })
        .collect();
    let serving = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| v.serves())
        .map(|(i, _)| i)
        .min_by(|a, b| claims[*a].rank().cmp(&claims[*b].rank()));
    if let Some(winner) = serving {
        let name = format!("{}/{}", claims[winner].namespace, claims[winner].name);
        for (i, v) in verdicts.iter_mut().enumerate() {
            if i != winner && v.serves() {
                *v = Verdict::Conflict {
                    winner: name.clone(),
                };
            }
        }
    }
    Decision { verdicts, serving }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(ns: &'a str, created: i64, bound: Option<&'a str>) -> Claim<'a> {
        Claim {
            namespace: ns,
            name: "default",
            created: Some(Timestamp::from_second(created).unwrap()),
            deleting: false,
            namespace_tenant: bound,
        }
    }

    #[test]
    fn a_config_in_a_namespace_bound_to_another_tenant_never_serves() {
        // evil's admin claims acme from evil's own namespace, before acme registers.
        let impostor = claim("tenant-evil", 1, Some("evil"));
        for allow_unbound in [false, true] {
            let alone = decide("acme", std::slice::from_ref(&impostor), allow_unbound);
            assert_eq!(alone.serving, None);
            assert_eq!(
                alone.verdicts,
                [Verdict::NotBound(NotBound::BoundToOther {
                    namespace: "tenant-evil".into(),
                    bound: "evil".into()
                })]
            );
            // acme's own config, newer than the impostor, serves; the impostor changes nothing.
            let own = claim("tenant-acme", 2, Some("acme"));
            let both = decide("acme", &[impostor.clone(), own.clone()], allow_unbound);
            assert_eq!(both.serving, Some(1));
            assert!(matches!(both.verdicts[0], Verdict::NotBound(_)));
            assert_eq!(decide("acme", &[own], allow_unbound).serving, Some(0));
        }
    }

    #[test]
    fn unbound_namespaces_serve_only_when_allowed_and_no_bound_config_exists() {
        let unbound = claim("shared", 1, None);
        let strict = decide("acme", std::slice::from_ref(&unbound), false);
        assert_eq!(strict.serving, None);
        assert!(
            strict.verdicts[0]
                .message("acme")
                .contains("kubectl label namespace shared tenantmcp.dev/tenant=acme"),
            "{:?}",
            strict.verdicts[0]
        );
        assert_eq!(
            decide("acme", std::slice::from_ref(&unbound), true).serving,
            Some(0)
        );
        // A bound config wins although it is newer; the unbound one is shadowed, not in conflict.
        let bound = claim("tenant-acme", 5, Some("acme"));
        let both = decide("acme", &[unbound, bound], true);
        assert_eq!(both.serving, Some(1));
        assert_eq!(
            both.verdicts[0],
            Verdict::NotBound(NotBound::ShadowedByBound {
                namespace: "shared".into()
            })
        );
    }

    #[test]
    fn among_configs_that_may_serve_the_oldest_wins() {
        let claims = [
            claim("tenant-acme", 3, Some("acme")),
            claim("tenant-acme-2", 1, Some("acme")),
            claim("tenant-evil", 0, Some("evil")),
        ];
        let d = decide("acme", &claims, false);
        assert_eq!(d.serving, Some(1));
        assert_eq!(
            d.verdicts[0],
            Verdict::Conflict {
                winner: "tenant-acme-2/default".into()
            }
        );
        assert!(
            d.verdicts[0]
                .message("acme")
                .contains("tenant-acme-2/default")
        );
        // Same creation time: namespace, then name decide, so every caller agrees.
        let tie = [
            claim("tenant-b", 1, Some("acme")),
            claim("tenant-a", 1, Some("acme")),
        ];
        assert_eq!(decide("acme", &tie, false).serving, Some(1));
    }

    #[test]
    fn a_config_being_deleted_neither_serves_nor_competes() {
        let mut going = claim("tenant-acme", 1, Some("acme"));
        going.deleting = true;
        let next = claim("tenant-acme-2", 2, Some("acme"));
        let d = decide("acme", &[going.clone(), next], false);
        assert_eq!(d.verdicts[0], Verdict::Deleting);
        assert_eq!(d.serving, Some(1));
        // An unbound config is not shadowed by a bound one that is going away.
        let unbound = claim("shared", 3, None);
        assert_eq!(decide("acme", &[going, unbound], true).serving, Some(1));
    }

    #[test]
    fn claims_are_read_from_the_config_and_its_namespace_labels() {
        let config: TenantMcpConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "c", "namespace": "tenant-acme",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"tenantId": "acme"}
        }))
        .unwrap();
        let labels: BTreeMap<String, String> =
            [(TENANT_LABEL.to_owned(), "acme".to_owned())].into();
        let c = Claim::of(&config, Some(&labels));
        assert_eq!(
            (c.namespace, c.name, c.namespace_tenant, c.deleting),
            ("tenant-acme", "c", Some("acme"), false)
        );
        assert_eq!(Claim::of(&config, None).namespace_tenant, None);
    }
}

//! The checked resolver: resolves a host and checks the name and every address it resolves to
//! against the endpoint policy; only checked addresses are ever handed to a connector. It runs
//! for every new connection — the S3 connector and the MCP HTTP client ask it on each connect,
//! and the Postgres relay on each accepted connection — so a DNS answer that changes after a
//! config was promoted is checked again before anything connects to it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use url::Host;

use super::error::EgressError;
use super::lookup::Lookup;
use crate::config::EndpointPolicy;

/// Resolves names and lets only addresses the policy allows through.
#[derive(Clone, Debug)]
pub struct CheckedResolver {
    policy: Arc<EndpointPolicy>,
    lookup: Arc<dyn Lookup>,
    /// The lookup's search list, read once: every name a relative host may become is checked.
    search: Arc<[String]>,
}

impl CheckedResolver {
    /// A resolver under `policy`, asking `lookup`.
    pub fn new(policy: Arc<EndpointPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        let search = lookup.search_domains().into();
        Self {
            policy,
            lookup,
            search,
        }
    }

    /// The policy it checks against.
    pub fn policy(&self) -> &EndpointPolicy {
        &self.policy
    }

    /// The addresses of `host` to connect to on `port`, every one allowed by the policy (and
    /// the host name and port themselves); an IP literal is checked as it is.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        self.policy.check_port(port)?;
        Ok(self
            .resolve_ips(host)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// [`Self::resolve`] without a port (connectors that know the port themselves check it
    /// with [`super::Egress::check_url`]).
    pub async fn resolve_ips(&self, host: &str) -> Result<Vec<IpAddr>, EgressError> {
        // URLs write IPv6 hosts in brackets; a Postgres host may be written either way.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let literal = bare.parse::<std::net::Ipv6Addr>().map(Host::Ipv6);
        let parsed = literal
            .or_else(|_| Host::parse(bare))
            .or_else(|_| Host::parse(host))
            .map_err(|e| EgressError::Unresolved {
                host: host.to_owned(),
                message: e.to_string(),
            })?;
        self.policy.check_host_searched(&parsed, &self.search)?;
        let ips: Vec<IpAddr> = match parsed {
            Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            Host::Domain(name) => self
                .lookup
                .lookup(&name, 0)
                .await
                .map_err(|e| EgressError::Unresolved {
                    host: name.clone(),
                    message: e.to_string(),
                })?
                .into_iter()
                .map(|a| a.ip())
                .collect(),
        };
        if ips.is_empty() {
            return Err(EgressError::Unresolved {
                host: host.to_owned(),
                message: "no address".into(),
            });
        }
        // One denied address refuses the name: connectors try addresses in turn, and a name
        // that resolves partly inside the platform is not one to connect to at all.
        for ip in &ips {
            self.policy.check_ip(*ip)?;
        }
        Ok(ips)
    }
}

/// For the S3 connector (aws-smithy's hyper client): asked on every new connection, including
/// the virtual-host names (`<bucket>.<endpoint host>`) no other check sees.
impl ResolveDns for CheckedResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move { self.resolve_ips(name).await.map_err(ResolveDnsError::new) })
    }
}

/// For the MCP HTTP client (reqwest): asked on every new connection.
impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let ips = this.resolve_ips(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::api::EndpointPolicySpec;
    use crate::config::{FieldPath, PolicyViolation};
    use crate::egress::StaticLookup;

    fn resolver(spec: EndpointPolicySpec, table: &[(&str, IpAddr)]) -> CheckedResolver {
        let lookup = StaticLookup::new();
        for (name, ip) in table {
            lookup.set(name, &[*ip]);
        }
        let policy = EndpointPolicy::compile(&spec, &FieldPath::default()).0;
        CheckedResolver::new(Arc::new(policy), Arc::new(lookup))
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(
            text.parse::<Ipv6Addr>()
                .unwrap_or_else(|e| panic!("{text}: {e}")),
        )
    }

    /// Every address class the default policy denies, reached through a harmless-looking name
    /// (a tenant controls its endpoint's DNS), is refused; a public one passes.
    #[tokio::test]
    async fn every_denied_address_class_is_refused_behind_a_name() {
        let cases = [
            ("loopback", v4(127, 0, 0, 1)),
            ("loopback v6", v6("::1")),
            ("link-local", v4(169, 254, 1, 1)),
            ("link-local v6", v6("fe80::1")),
            ("AWS/GCP/Azure metadata", v4(169, 254, 169, 254)),
            ("ECS metadata", v4(169, 254, 170, 2)),
            ("AWS metadata v6", v6("fd00:ec2::254")),
            ("Alibaba metadata", v4(100, 100, 100, 200)),
            ("private 10/8", v4(10, 1, 2, 3)),
            ("private 172.16/12", v4(172, 16, 0, 1)),
            ("private 192.168/16", v4(192, 168, 1, 1)),
            ("CGNAT", v4(100, 64, 0, 1)),
            ("unique local v6", v6("fd12:3456::1")),
            ("unspecified", v4(0, 0, 0, 0)),
            ("unspecified v6", v6("::")),
            ("IPv4-mapped loopback", v6("::ffff:127.0.0.1")),
            ("IPv4-mapped metadata", v6("::ffff:169.254.169.254")),
            ("NAT64 metadata", v6("64:ff9b::a9fe:a9fe")),
            ("NAT64 private", v6("64:ff9b::a00:1")),
            ("multicast", v4(224, 0, 0, 1)),
            ("broadcast", v4(255, 255, 255, 255)),
        ];
        let table: Vec<(String, IpAddr)> = cases
            .iter()
            .enumerate()
            .map(|(i, (_, ip))| (format!("h{i}.tenant.example.com"), *ip))
            .collect();
        let refs: Vec<(&str, IpAddr)> = table.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
        let r = resolver(EndpointPolicySpec::default(), &refs);
        for (i, (what, ip)) in cases.iter().enumerate() {
            let name = format!("h{i}.tenant.example.com");
            let err = r.resolve(&name, 443).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    EgressError::PolicyDenied(PolicyViolation::AddressDenied { .. })
                ),
                "{what} ({ip}) through {name}: {err:?}"
            );
            assert_eq!(err.reason(), "PolicyDenied");
            // The literal address is refused as well.
            let literal = match ip {
                IpAddr::V4(v) => v.to_string(),
                IpAddr::V6(v) => format!("[{v}]"),
            };
            assert!(r.resolve(&literal, 443).await.is_err(), "{what} literal");
        }
        let public = resolver(
            EndpointPolicySpec::default(),
            &[("db.tenant.example.com", v4(93, 184, 216, 34))],
        );
        let ok = public.resolve("db.tenant.example.com", 5432).await.unwrap();
        assert_eq!(ok, [SocketAddr::new(v4(93, 184, 216, 34), 5432)]);
    }

    /// Issue 34, item 6 (threat model: no connection to what the policy denies, through DNS):
    /// in a Pod, `kubernetes.default` resolves through the search list to the API server the
    /// policy denies as `kubernetes.default.svc`. The name is refused before it is looked up,
    /// whatever address it would get — the probe and the client share this resolver.
    #[tokio::test]
    async fn a_denied_name_is_refused_under_the_names_the_search_list_makes_of_it() {
        let lookup = StaticLookup::with_search(&[
            "tenant-acme.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]);
        // Public addresses, so only the name can refuse them.
        for name in ["kubernetes.default", "kubernetes.default.svc.cluster.local"] {
            lookup.set(name, &[v4(93, 184, 216, 34)]);
        }
        lookup.set("db.tenant.example.com", &[v4(93, 184, 216, 35)]);
        let spec = EndpointPolicySpec {
            denied_hosts: vec!["kubernetes.default.svc".into()],
            ..EndpointPolicySpec::default()
        };
        let policy = EndpointPolicy::compile(&spec, &FieldPath::default()).0;
        let r = CheckedResolver::new(Arc::new(policy), Arc::new(lookup));
        for name in [
            "kubernetes.default",
            "kubernetes.default.svc.cluster.local",
            "kubernetes.default.svc.cluster.local.",
        ] {
            let err = r.resolve(name, 443).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    EgressError::PolicyDenied(PolicyViolation::HostDenied { .. })
                ),
                "{name}: {err}"
            );
        }
        assert!(r.resolve("db.tenant.example.com", 443).await.is_ok());
    }

    /// Issue 27, items 1 and 2 (threat model: a tenant controls its endpoint's DNS): an AAAA
    /// record that spells a denied IPv4 address another way is refused at connect time —
    /// in probes and clients alike, which all resolve through this resolver — and so are the
    /// cloud metadata addresses the list missed, under every allow flag.
    #[tokio::test]
    async fn a_denied_address_behind_a_name_is_refused_under_every_spelling() {
        let spec = EndpointPolicySpec {
            allow_private_networks: true,
            allow_link_local: true,
            denied_cidrs: vec!["10.96.0.0/12".into()],
            denied_hosts: vec!["10.0.0.53".into()],
            ..EndpointPolicySpec::default()
        };
        let cases = [
            v6("::ffff:10.96.0.1"),
            v6("64:ff9b::a60:1"),
            v6("64:ff9b:1::a60:1"),
            v6("2002:a60:1::1"),
            v6("::ffff:10.0.0.53"),
            v6("fd20:ce::254"),
            v6("fd00:ec2::23"),
            v6("::ffff:168.63.129.16"),
            v4(168, 63, 129, 16),
            v4(169, 254, 170, 23),
        ];
        let table: Vec<(String, IpAddr)> = cases
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("h{i}.tenant.example.com"), *ip))
            .collect();
        let refs: Vec<(&str, IpAddr)> = table.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
        let r = resolver(spec, &refs);
        for (name, ip) in &refs {
            let err = r.resolve(name, 443).await.unwrap_err();
            assert_eq!(err.reason(), "PolicyDenied", "{ip} behind {name}: {err}");
        }
        assert!(
            r.resolve("[::ffff:10.1.0.1]", 443).await.is_ok(),
            "a private address outside the denied range stays allowed"
        );
    }

    /// Issue 27, item 10: an IPv6 Postgres host is accepted by `validate` bare or bracketed,
    /// so the resolver takes both.
    #[tokio::test]
    async fn ipv6_literals_resolve_bare_or_bracketed() {
        let spec = EndpointPolicySpec {
            allow_loopback: true,
            ..EndpointPolicySpec::default()
        };
        let r = resolver(spec, &[]);
        for host in ["::1", "[::1]"] {
            assert_eq!(
                r.resolve(host, 5432).await.unwrap(),
                [SocketAddr::new(v6("::1"), 5432)],
                "{host}"
            );
        }
    }

    /// A name with one allowed and one denied address is refused whole: a connector would try
    /// the second after the first fails.
    #[tokio::test]
    async fn one_denied_address_refuses_the_name() {
        let lookup = StaticLookup::new();
        lookup.set(
            "mixed.example.com",
            &[v4(93, 184, 216, 34), v4(10, 0, 0, 1)],
        );
        let policy = EndpointPolicy::default();
        let r = CheckedResolver::new(Arc::new(policy), Arc::new(lookup));
        let err = r.resolve("mixed.example.com", 443).await.unwrap_err();
        assert!(err.to_string().contains("10.0.0.1"), "{err}");
    }

    #[tokio::test]
    async fn allow_rules_and_names_apply_before_resolution() {
        let spec = EndpointPolicySpec {
            allow_loopback: true,
            denied_cidrs: vec!["127.0.0.2/32".into()],
            allowed_ports: vec!["5432".into()],
            ..EndpointPolicySpec::default()
        };
        let r = resolver(
            spec,
            &[
                ("db.test", v4(127, 0, 0, 1)),
                ("evil.test", v4(127, 0, 0, 2)),
            ],
        );
        assert!(r.resolve("db.test", 5432).await.is_ok());
        let denied = r.resolve("evil.test", 5432).await.unwrap_err();
        assert!(denied.to_string().contains("127.0.0.2"), "{denied}");
        let port = r.resolve("db.test", 6432).await.unwrap_err();
        assert_eq!(port.reason(), "PolicyDenied");
        // A metadata host name is refused by name, without asking DNS.
        let by_name = r
            .resolve("metadata.google.internal", 5432)
            .await
            .unwrap_err();
        assert_eq!(by_name.reason(), "PolicyDenied");
        let unknown = r.resolve("nowhere.test", 5432).await.unwrap_err();
        assert_eq!(unknown.reason(), "Unreachable");
    }
}

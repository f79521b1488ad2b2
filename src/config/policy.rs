//! The endpoint policy: which schemes, ports, hosts and addresses a config may point at.
//!
//! This is the SSRF guard. Literal hosts are checked here when a spec is validated; host names
//! must be checked again with [`EndpointPolicy::check_ip`] on every address they resolve to, right
//! before connecting (DNS can change between the two). Deny rules always win over allow rules,
//! and cloud metadata addresses stay denied even inside an allowed range unless explicitly allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use ipnet::IpNet;
use url::Host;

use super::field::{FieldError, FieldErrors, FieldPath};
use crate::api::EndpointPolicySpec;
use crate::api::global::UrlScheme;

/// Host names that reach cloud instance-metadata services.
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
];

/// A checked, ready-to-use endpoint policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPolicy {
    schemes: Vec<UrlScheme>,
    ports: Vec<RangeInclusive<u16>>,
    allowed_hosts: Vec<HostPattern>,
    denied_hosts: Vec<HostPattern>,
    allowed_cidrs: Vec<IpNet>,
    denied_cidrs: Vec<IpNet>,
    allow_private: bool,
    allow_loopback: bool,
    allow_link_local: bool,
    allow_cloud_metadata: bool,
    require_tls: bool,
}

impl Default for EndpointPolicy {
    /// The policy used when no `GlobalMcpConfig` says otherwise: http and https, any port,
    /// public addresses only.
    fn default() -> Self {
        // The default spec has no patterns or ranges, so compiling it reports no errors.
        Self::compile(&EndpointPolicySpec::default(), &FieldPath::default()).0
    }
}

/// Why the endpoint policy refused an endpoint. Never contains a credential: only scheme, host,
/// address and port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// The URL scheme is not in `allowedSchemes`.
    #[error("scheme {scheme:?} is not allowed by the endpoint policy (allowed: {allowed})")]
    SchemeNotAllowed {
        /// The scheme used.
        scheme: String,
        /// The allowed schemes, comma separated.
        allowed: String,
    },
    /// The port is not in `allowedPorts`.
    #[error("port {port} is not allowed by the endpoint policy (allowed: {allowed})")]
    PortNotAllowed {
        /// The port used.
        port: u16,
        /// The allowed ports, comma separated.
        allowed: String,
    },
    /// The host matches a `deniedHosts` pattern.
    #[error("host {host:?} is denied by the endpoint policy (deniedHosts: {pattern:?})")]
    HostDenied {
        /// The host.
        host: String,
        /// The pattern it matched.
        pattern: String,
    },
    /// `allowedHosts` is set and the host matches none of its patterns.
    #[error("host {host:?} matches none of the endpoint policy's allowedHosts")]
    HostNotAllowed {
        /// The host.
        host: String,
    },
    /// The host name itself names a denied class (`localhost`, a metadata service).
    #[error("host {host:?} names {class}, which the endpoint policy denies{hint}")]
    HostClassDenied {
        /// The host.
        host: String,
        /// Its class.
        class: AddressClass,
        /// How to allow it, if it can be.
        hint: &'static str,
    },
    /// The address falls in a denied class or range.
    #[error("address {ip} is {class}, which the endpoint policy denies{hint}")]
    AddressDenied {
        /// The address.
        ip: IpAddr,
        /// Its class.
        class: AddressClass,
        /// How to allow it, if it can be.
        hint: &'static str,
    },
    /// `requireTls` is set and the endpoint would connect without verified TLS.
    #[error("the endpoint policy requires verified TLS (requireTls): {what}")]
    TlsRequired {
        /// What falls short and what is expected.
        what: String,
    },
    /// The address is in `deniedCidrs`.
    #[error("address {ip} is in the endpoint policy's deniedCidrs ({cidr})")]
    AddressInDeniedRange {
        /// The address.
        ip: IpAddr,
        /// The range it is in.
        cidr: IpNet,
    },
}

impl PolicyViolation {
    /// The condition reason for every policy violation.
    pub fn reason(&self) -> &'static str {
        crate::api::conditions::reason::POLICY_DENIED
    }
}

/// What kind of address (or host name) an endpoint is, for the policy's decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// An ordinary public address.
    Public,
    /// A private range (RFC 1918, CGNAT 100.64/10, IPv6 unique local fc00::/7).
    Private,
    /// Loopback (127/8, ::1, `localhost`).
    Loopback,
    /// Link-local (169.254/16, fe80::/10).
    LinkLocal,
    /// A cloud instance-metadata service.
    CloudMetadata,
    /// 0.0.0.0 or ::.
    Unspecified,
    /// Multicast or broadcast.
    Multicast,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "a public address",
            Self::Private => "a private address",
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address",
            Self::CloudMetadata => "a cloud metadata endpoint",
            Self::Unspecified => "an unspecified address",
            Self::Multicast => "a multicast or broadcast address",
        })
    }
}

/// Classifies an address. An IPv6 address that carries an IPv4 one (see [`spellings`]) is
/// classified by the IPv4 address it carries, so `::ffff:127.0.0.1` is loopback.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6).first() {
            Some(v4) => classify_v4(*v4),
            None => classify_v6(v6),
        },
    }
}

/// Every address that `ip` is: itself and, for an IPv6 address that carries an IPv4 one, each
/// IPv4 address it may reach — IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::/96`, and the local-use `64:ff9b:1::/48` read both as a /96 and as a /48
/// prefix, a reading in 0.0.0.0/8 being the other prefix's padding) and 6to4 (`2002:aabb:ccdd::/48`). Every rule of the policy judges all of them, so a
/// denied address cannot come back under another spelling.
pub fn spellings(ip: IpAddr) -> Vec<IpAddr> {
    let mut out = vec![ip];
    if let IpAddr::V6(v6) = ip {
        out.extend(embedded_v4(v6).into_iter().map(IpAddr::V4));
    }
    out
}

/// Cloud metadata services: AWS IMDS (also `fd00:ec2::254`), GCP, Azure and OpenStack at
/// 169.254.169.254; ECS task metadata 169.254.170.2; EKS Pod Identity 169.254.170.23 and
/// `fd00:ec2::23`; Azure WireServer 168.63.129.16; Alibaba Cloud 100.100.100.200; GCP's IPv6
/// metadata server `fd20:ce::254`.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(168, 63, 129, 16),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
    Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254),
];

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if METADATA_V4.contains(&ip) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() || a == 0 {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        AddressClass::Multicast
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if METADATA_V6.contains(&ip) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_unicast_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_unique_local() || (first & 0xffc0) == 0xfec0 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The IPv4 addresses an IPv6 address carries (see [`spellings`]); the first is the one it is
/// classified by.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return vec![v4];
    }
    // IPv4-compatible (deprecated, still routed by some stacks); `::` and `::1` are not.
    if s[..6] == [0; 6] && !matches!(u32::from(last), 0 | 1) {
        return vec![last];
    }
    match s[..3] {
        [0x64, 0xff9b, 0] if s[3..6] == [0; 3] => vec![last],
        // Local-use NAT64 (RFC 8215): the prefix inside it may be a /96 or the /48 itself, whose
        // IPv4 address sits in octets 6-7 and 9-10 (octet 8 is reserved, RFC 6052). A reading
        // in 0.0.0.0/8 ("this network", never a destination) is the other prefix's padding:
        // keeping it would deny every address of the range as unspecified.
        [0x64, 0xff9b, 1] => [last, Ipv4Addr::new(o[6], o[7], o[9], o[10])]
            .into_iter()
            .filter(|v4| v4.octets()[0] != 0)
            .collect(),
        _ if s[0] == 0x2002 => vec![Ipv4Addr::new(o[2], o[3], o[4], o[5])],
        _ => Vec::new(),
    }
}

/// A host pattern: an exact host (`db.example.com`) or a wildcard for subdomains
/// (`*.example.com`, which does not match `example.com` itself).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    text: String,
    suffix: Option<String>,
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (suffix, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (Some(format!(".{rest}")), rest),
            None => (None, lower.as_str()),
        };
        let valid = !rest.is_empty()
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
            });
        if !valid {
            return Err(format!(
                "must be a host name, an IP address or `*.` followed by a domain, got {text:?}"
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            suffix,
        })
    }

    /// The address this pattern names, when it is an IP literal (`10.0.0.1`, `::1`, `[::1]`).
    fn ip(&self) -> Option<IpAddr> {
        let text = self.text.trim();
        let text = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        self.suffix.is_none().then(|| text.parse().ok()).flatten()
    }

    /// Whether this pattern names `ip` under any spelling of either.
    fn matches_ip(&self, ip: IpAddr) -> bool {
        self.ip().is_some_and(|named| {
            let named = spellings(named);
            spellings(ip).iter().any(|form| named.contains(form))
        })
    }

    fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match &self.suffix {
            Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
            None => host == self.text.to_ascii_lowercase(),
        }
    }

    /// Whether a host the resolver may look up as any of `names` (its
    /// [`super::search::searched_names`]) meets this pattern, itself read under `search`:
    /// `kubernetes.default` and `kubernetes.default.svc` both become
    /// `kubernetes.default.svc.cluster.local` in a Pod.
    fn matches_searched(&self, names: &[String], search: &[String]) -> bool {
        match &self.suffix {
            Some(suffix) => {
                let domains = super::search::searched_names(&suffix[1..], search);
                names.iter().any(|n| {
                    domains
                        .iter()
                        .any(|d| n.len() > d.len() + 1 && n.ends_with(&format!(".{d}")))
                })
            }
            None => {
                let named = super::search::searched_names(self.text.trim(), search);
                names.iter().any(|n| named.contains(n))
            }
        }
    }
}

fn parse_port_range(text: &str) -> Option<RangeInclusive<u16>> {
    let (from, to) = match text.split_once('-') {
        Some((from, to)) => (from.trim(), to.trim()),
        None => (text.trim(), text.trim()),
    };
    let from: u16 = from.parse().ok()?;
    let to: u16 = to.parse().ok()?;
    (from >= 1 && from <= to).then_some(from..=to)
}

impl EndpointPolicy {
    /// Compiles a policy spec for use; a malformed policy gives the strict default rather than
    /// allowing more (its errors are reported where the GlobalMcpConfig is validated).
    pub fn compile_or_strict(spec: &EndpointPolicySpec) -> Self {
        let (policy, errors) = Self::compile(spec, &FieldPath::new("endpointPolicy"));
        if errors.is_empty() {
            policy
        } else {
            Self::default()
        }
    }

    /// Compiles a policy spec, reporting every malformed entry under `path`
    /// (e.g. `spec.endpointPolicy`). Malformed entries are left out of the compiled policy;
    /// callers must not use a policy whose errors are non-empty.
    pub fn compile(spec: &EndpointPolicySpec, path: &FieldPath) -> (Self, FieldErrors) {
        let mut errors = FieldErrors::default();
        let mut ports = Vec::new();
        for (i, text) in spec.allowed_ports.iter().enumerate() {
            match parse_port_range(text) {
                Some(range) => ports.push(range),
                None => errors.push(FieldError::invalid(
                    &path.child("allowedPorts").index(i),
                    format!("must be a port (1..=65535) or a range like 9000-9001, got {text:?}"),
                )),
            }
        }
        let mut hosts = |list: &[String], field: &str| {
            let mut out = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match HostPattern::parse(text) {
                    Ok(p) => out.push(p),
                    Err(msg) => {
                        errors.push(FieldError::invalid(&path.child(field).index(i), msg));
                    }
                }
            }
            out
        };
        let allowed_hosts = hosts(&spec.allowed_hosts, "allowedHosts");
        let denied_hosts = hosts(&spec.denied_hosts, "deniedHosts");
        let mut cidrs = |list: &[String], field: &str| {
            let mut out = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match text.trim().parse::<IpNet>() {
                    Ok(net) => out.push(net),
                    Err(_) => errors.push(FieldError::invalid(
                        &path.child(field).index(i),
                        format!("must be a CIDR range like 10.96.0.0/12 or fd00::/8, got {text:?}"),
                    )),
                }
            }
            out
        };
        let allowed_cidrs = cidrs(&spec.allowed_cidrs, "allowedCidrs");
        let denied_cidrs = cidrs(&spec.denied_cidrs, "deniedCidrs");
        let mut schemes = spec.allowed_schemes.clone();
        schemes.dedup();
        if schemes.is_empty() {
            errors.push(FieldError::required(
                &path.child("allowedSchemes"),
                "at least one of https, http",
            ));
        }
        let policy = Self {
            schemes,
            ports,
            allowed_hosts,
            denied_hosts,
            allowed_cidrs,
            denied_cidrs,
            allow_private: spec.allow_private_networks,
            allow_loopback: spec.allow_loopback,
            allow_link_local: spec.allow_link_local,
            allow_cloud_metadata: spec.allow_cloud_metadata,
            require_tls: spec.require_tls,
        };
        (policy, errors)
    }

    /// The policy in one line, for `tenant-mcp status`.
    pub fn summary(&self) -> String {
        let schemes: Vec<&str> = self.schemes.iter().map(|s| s.as_str()).collect();
        let mut allowed = Vec::new();
        for (on, what) in [
            (self.allow_private, "private"),
            (self.allow_loopback, "loopback"),
            (self.allow_link_local, "link-local"),
            (self.allow_cloud_metadata, "cloud metadata"),
        ] {
            if on {
                allowed.push(what);
            }
        }
        let mut parts = vec![format!("schemes {}", schemes.join("/"))];
        parts.push(if self.ports.is_empty() {
            "any port".to_owned()
        } else {
            format!("{} port ranges", self.ports.len())
        });
        parts.push(if allowed.is_empty() {
            "public addresses only".to_owned()
        } else {
            format!("public and {} addresses", allowed.join(", "))
        });
        if !self.allowed_hosts.is_empty() || !self.denied_hosts.is_empty() {
            parts.push(format!(
                "{} allowed / {} denied host patterns",
                self.allowed_hosts.len(),
                self.denied_hosts.len()
            ));
        }
        if !self.allowed_cidrs.is_empty() || !self.denied_cidrs.is_empty() {
            parts.push(format!(
                "{} allowed / {} denied ranges",
                self.allowed_cidrs.len(),
                self.denied_cidrs.len()
            ));
        }
        parts.push(if self.require_tls {
            "TLS required".to_owned()
        } else {
            "TLS not required".to_owned()
        });
        parts.join(", ")
    }

    /// Whether `requireTls` is set.
    pub fn requires_tls(&self) -> bool {
        self.require_tls
    }

    /// Checks a Postgres `sslMode` against `requireTls` (`verify-ca` or `verify-full`).
    pub fn check_ssl_mode(&self, mode: crate::api::SslMode) -> Result<(), PolicyViolation> {
        use crate::api::SslMode;
        if !self.require_tls || matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
            return Ok(());
        }
        Err(PolicyViolation::TlsRequired {
            what: format!(
                "sslMode {} does not verify the server; use verify-full (or verify-ca)",
                mode.as_str()
            ),
        })
    }

    /// Checks a URL scheme (`http`, `https`).
    pub fn check_scheme(&self, scheme: &str) -> Result<(), PolicyViolation> {
        if self.require_tls && scheme != "https" {
            return Err(PolicyViolation::TlsRequired {
                what: format!("scheme {scheme:?}; expected https"),
            });
        }
        if self.schemes.iter().any(|s| s.as_str() == scheme) {
            return Ok(());
        }
        Err(PolicyViolation::SchemeNotAllowed {
            scheme: scheme.to_owned(),
            allowed: self
                .schemes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Checks a port.
    pub fn check_port(&self, port: u16) -> Result<(), PolicyViolation> {
        if self.ports.is_empty() || self.ports.iter().any(|r| r.contains(&port)) {
            return Ok(());
        }
        Err(PolicyViolation::PortNotAllowed {
            port,
            allowed: self
                .ports
                .iter()
                .map(|r| {
                    if r.start() == r.end() {
                        r.start().to_string()
                    } else {
                        format!("{}-{}", r.start(), r.end())
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Checks a host as written in a spec: host patterns, then the class of a literal address
    /// or of a special name (`localhost`, metadata services). Resolved addresses of a host
    /// name must be checked with [`Self::check_ip`] before connecting.
    pub fn check_host(&self, host: &Host<String>) -> Result<(), PolicyViolation> {
        self.check_host_searched(host, &[])
    }

    /// [`Self::check_host`] for a resolver whose search list is `search`: a name is denied
    /// when any name the resolver may look it up as ([`super::search::searched_names`])
    /// meets a `deniedHosts` pattern read under the same list, or names localhost or a
    /// metadata service. `allowedHosts` still needs the name as written.
    pub fn check_host_searched(
        &self,
        host: &Host<String>,
        search: &[String],
    ) -> Result<(), PolicyViolation> {
        let text = match host {
            Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let literal = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
            Host::Domain(_) => None,
        };
        let names = match host {
            Host::Domain(d) => super::search::searched_names(d, search),
            _ => vec![text.clone()],
        };
        let matches =
            |p: &HostPattern| p.matches(&text) || literal.is_some_and(|ip| p.matches_ip(ip));
        if let Some(p) = self
            .denied_hosts
            .iter()
            .find(|p| matches(p) || (literal.is_none() && p.matches_searched(&names, search)))
        {
            return Err(PolicyViolation::HostDenied {
                host: text,
                pattern: p.text.clone(),
            });
        }
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.iter().any(matches) {
            return Err(PolicyViolation::HostNotAllowed { host: text });
        }
        match host {
            Host::Ipv4(ip) => self.check_ip(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => self.check_ip(IpAddr::V6(*ip)),
            Host::Domain(_) => {
                let localhost = names
                    .iter()
                    .any(|n| n == "localhost" || n.ends_with(".localhost"));
                if localhost && !self.allow_loopback {
                    return Err(PolicyViolation::HostClassDenied {
                        host: text,
                        class: AddressClass::Loopback,
                        hint: " (set endpointPolicy.allowLoopback for local development)",
                    });
                }
                let metadata = names.iter().any(|n| METADATA_HOSTS.contains(&n.as_str()));
                if metadata && !self.allow_cloud_metadata {
                    return Err(PolicyViolation::HostClassDenied {
                        host: text,
                        class: AddressClass::CloudMetadata,
                        hint: "",
                    });
                }
                Ok(())
            }
        }
    }

    /// Checks one address, literal or resolved, under every one of its [`spellings`]: deny
    /// rules (`deniedCidrs`, IP entries of `deniedHosts`) refuse it if any spelling matches;
    /// the class rules judge each IPv4 address it carries (or the address itself), and an
    /// `allowedCidrs` range opens a class for it when it holds that address or the one written.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), PolicyViolation> {
        let forms = spellings(ip);
        for form in &forms {
            if let Some(cidr) = self.denied_cidrs.iter().find(|n| n.contains(form)) {
                return Err(PolicyViolation::AddressInDeniedRange { ip, cidr: *cidr });
            }
        }
        if let Some(p) = self.denied_hosts.iter().find(|p| p.matches_ip(ip)) {
            return Err(PolicyViolation::HostDenied {
                host: ip.to_string(),
                pattern: p.text.clone(),
            });
        }
        let carried = if forms.len() > 1 {
            &forms[1..]
        } else {
            &forms[..]
        };
        for form in carried {
            let allowed_range = self
                .allowed_cidrs
                .iter()
                .any(|n| n.contains(form) || n.contains(&ip));
            self.check_class(ip, classify(*form), allowed_range)?;
        }
        Ok(())
    }

    /// The class rules for `ip` of class `class`.
    fn check_class(
        &self,
        ip: IpAddr,
        class: AddressClass,
        allowed_range: bool,
    ) -> Result<(), PolicyViolation> {
        let deny = |hint| Err(PolicyViolation::AddressDenied { ip, class, hint });
        match class {
            AddressClass::CloudMetadata if !self.allow_cloud_metadata => deny(""),
            AddressClass::Unspecified | AddressClass::Multicast => deny(""),
            _ if allowed_range => Ok(()),
            AddressClass::Loopback if !self.allow_loopback => {
                deny(" (set endpointPolicy.allowLoopback for local development)")
            }
            AddressClass::LinkLocal if !self.allow_link_local => {
                deny(" (set endpointPolicy.allowLinkLocal or add the range to allowedCidrs)")
            }
            AddressClass::Private if !self.allow_private => {
                deny(" (add the range to endpointPolicy.allowedCidrs or set allowPrivateNetworks)")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

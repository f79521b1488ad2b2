//! Tests of `config::policy`.

use super::*;

fn policy(spec: EndpointPolicySpec) -> EndpointPolicy {
    let (p, errors) = EndpointPolicy::compile(&spec, &FieldPath::new("spec.endpointPolicy"));
    assert!(errors.is_empty(), "{errors}");
    p
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn classifies_special_ranges() {
    let cases = [
        ("8.8.8.8", AddressClass::Public),
        ("10.1.2.3", AddressClass::Private),
        ("172.16.0.1", AddressClass::Private),
        ("192.168.1.1", AddressClass::Private),
        ("100.64.0.1", AddressClass::Private),
        ("127.0.0.1", AddressClass::Loopback),
        ("127.8.9.10", AddressClass::Loopback),
        ("169.254.1.1", AddressClass::LinkLocal),
        ("169.254.169.254", AddressClass::CloudMetadata),
        ("0.0.0.0", AddressClass::Unspecified),
        ("224.0.0.1", AddressClass::Multicast),
        ("255.255.255.255", AddressClass::Multicast),
        ("::1", AddressClass::Loopback),
        ("::", AddressClass::Unspecified),
        ("fe80::1", AddressClass::LinkLocal),
        ("fd00:ec2::254", AddressClass::CloudMetadata),
        ("fd12::1", AddressClass::Private),
        ("2001:4860:4860::8888", AddressClass::Public),
        ("::ffff:127.0.0.1", AddressClass::Loopback),
        ("::ffff:169.254.169.254", AddressClass::CloudMetadata),
        ("64:ff9b::10.0.0.1", AddressClass::Private),
    ];
    for (addr, class) in cases {
        assert_eq!(classify(ip(addr)), class, "{addr}");
    }
}

#[test]
fn default_policy_allows_only_public_addresses() {
    let p = EndpointPolicy::default();
    assert!(p.check_ip(ip("93.184.216.34")).is_ok());
    for denied in [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "fe80::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(p.check_ip(ip(denied)).is_err(), "{denied} should be denied");
    }
}

#[test]
fn switches_and_allowed_cidrs_open_ranges_but_never_metadata() {
    let p = policy(EndpointPolicySpec {
        allow_loopback: true,
        allow_link_local: true,
        allowed_cidrs: vec!["10.96.0.0/12".into(), "169.254.0.0/16".into()],
        ..Default::default()
    });
    assert!(p.check_ip(ip("127.0.0.1")).is_ok());
    assert!(p.check_ip(ip("169.254.3.3")).is_ok());
    assert!(p.check_ip(ip("10.96.0.10")).is_ok());
    assert!(p.check_ip(ip("10.0.0.1")).is_err(), "outside allowedCidrs");
    let err = p.check_ip(ip("169.254.169.254")).unwrap_err();
    assert!(err.to_string().contains("cloud metadata"), "{err}");
}

#[test]
fn denied_cidrs_win_over_everything() {
    let p = policy(EndpointPolicySpec {
        allow_private_networks: true,
        allowed_cidrs: vec!["10.0.0.0/8".into()],
        denied_cidrs: vec!["10.1.0.0/16".into()],
        ..Default::default()
    });
    assert!(p.check_ip(ip("10.2.0.1")).is_ok());
    assert!(matches!(
        p.check_ip(ip("10.1.0.1")),
        Err(PolicyViolation::AddressInDeniedRange { .. })
    ));
}

#[test]
fn host_patterns() {
    let p = policy(EndpointPolicySpec {
        allowed_hosts: vec!["*.svc.cluster.local".into(), "db.example.com".into()],
        denied_hosts: vec!["secret.svc.cluster.local".into()],
        ..Default::default()
    });
    let host = |s: &str| Host::Domain(s.to_owned());
    assert!(p.check_host(&host("pg.acme.svc.cluster.local")).is_ok());
    assert!(p.check_host(&host("DB.Example.com")).is_ok());
    assert!(
        p.check_host(&host("svc.cluster.local")).is_err(),
        "wildcard needs a label"
    );
    assert!(p.check_host(&host("evil.com")).is_err());
    assert!(matches!(
        p.check_host(&host("secret.svc.cluster.local")),
        Err(PolicyViolation::HostDenied { .. })
    ));
    assert!(
        p.check_host(&Host::Ipv4(Ipv4Addr::new(8, 8, 8, 8)))
            .is_err()
    );
}

/// Issue 34, item 6 (threat model: a tenant admin must never make platform pods connect to
/// an address the policy denies, through DNS): the shipped example denies the API server
/// as `kubernetes.default.svc`, and a Pod's resolver turns `kubernetes.default`, the bare
/// `kubernetes` and the full name into the same host. Each spelling is denied.
#[test]
fn a_denied_name_is_denied_under_every_name_the_resolver_would_turn_it_into() {
    let p = policy(EndpointPolicySpec {
        denied_hosts: vec![
            "kubernetes.default.svc".into(),
            "*.internal.svc.cluster.local".into(),
        ],
        ..Default::default()
    });
    let search: Vec<String> = [
        "tenant-acme.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ]
    .map(String::from)
    .to_vec();
    let host = |s: &str| Host::Domain(s.to_owned());
    for name in [
        "kubernetes.default.svc",
        "kubernetes.default.svc.",
        "KUBERNETES.default",
        "kubernetes.default.svc.cluster.local",
        "kubernetes.default.svc.cluster.local.",
        "vault.internal",
        "vault.internal.svc",
        "vault.internal.svc.cluster.local.",
    ] {
        assert!(
            matches!(
                p.check_host_searched(&host(name), &search),
                Err(PolicyViolation::HostDenied { .. })
            ),
            "{name} passed"
        );
    }
    // `kubernetes` alone becomes kubernetes.tenant-acme.svc.cluster.local and so on, never
    // the default namespace's Service: allowed by name (its address is checked on connect).
    for name in [
        "kubernetes",
        "kubernetes.default.",
        "db.tenant-acme",
        "kubernetes.default.svc.evil.example.",
    ] {
        assert!(
            p.check_host_searched(&host(name), &search).is_ok(),
            "{name} was refused"
        );
    }
    // Names that become localhost or a metadata service under the search list.
    let loopback = policy(EndpointPolicySpec::default());
    let local = ["localhost".to_owned()];
    assert!(loopback.check_host_searched(&host("db"), &local).is_err());
    let google = ["google.internal".to_owned()];
    assert!(
        loopback
            .check_host_searched(&host("metadata"), &google)
            .is_err()
    );
    assert!(
        loopback
            .check_host_searched(&host("metadata.google"), &["internal".to_owned()])
            .is_err()
    );
}

#[test]
fn special_host_names() {
    let p = EndpointPolicy::default();
    for name in ["localhost", "foo.localhost", "metadata.google.internal"] {
        assert!(p.check_host(&Host::Domain(name.into())).is_err(), "{name}");
    }
    let local = policy(EndpointPolicySpec {
        allow_loopback: true,
        ..Default::default()
    });
    assert!(local.check_host(&Host::Domain("localhost".into())).is_ok());
}

#[test]
fn schemes_and_ports() {
    let p = policy(EndpointPolicySpec {
        allowed_schemes: vec![UrlScheme::Https],
        allowed_ports: vec!["443".into(), "9000-9001".into()],
        ..Default::default()
    });
    assert!(p.check_scheme("https").is_ok());
    let err = p.check_scheme("http").unwrap_err();
    assert_eq!(
        err.to_string(),
        "scheme \"http\" is not allowed by the endpoint policy (allowed: https)"
    );
    assert!(p.check_port(9001).is_ok());
    let err = p.check_port(5432).unwrap_err();
    assert_eq!(
        err.to_string(),
        "port 5432 is not allowed by the endpoint policy (allowed: 443, 9000-9001)"
    );
}

#[test]
fn malformed_policy_entries_are_reported_with_paths() {
    let (_, errors) = EndpointPolicy::compile(
        &EndpointPolicySpec {
            allowed_ports: vec!["0".into(), "9-1".into(), "http".into()],
            allowed_hosts: vec!["*".into(), "a..b".into()],
            allowed_cidrs: vec!["10.0.0.0/33".into()],
            allowed_schemes: vec![],
            ..Default::default()
        },
        &FieldPath::new("spec.endpointPolicy"),
    );
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.endpointPolicy.allowedPorts[0]",
            "spec.endpointPolicy.allowedPorts[1]",
            "spec.endpointPolicy.allowedPorts[2]",
            "spec.endpointPolicy.allowedHosts[0]",
            "spec.endpointPolicy.allowedHosts[1]",
            "spec.endpointPolicy.allowedCidrs[0]",
            "spec.endpointPolicy.allowedSchemes",
        ]
    );
}

/// Every way of writing IPv4 address `v4` as IPv6 that reaches it (`suffix` fills the
/// bits a spelling leaves free).
fn spelled(v4: Ipv4Addr, suffix: u16) -> Vec<IpAddr> {
    let [a, b, c, d] = v4.octets();
    let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    let mut out = vec![
        IpAddr::V6(v4.to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
        IpAddr::V6(Ipv6Addr::new(0x2002, hi, lo, suffix, 0, 0, 0, suffix)),
    ];
    // The local-use NAT64 range carries no address in 0.0.0.0/8 (see `embedded_v4`).
    if a != 0 {
        out.push(IpAddr::V6(Ipv6Addr::new(
            0x64, 0xff9b, 1, suffix, 0, 0, hi, lo,
        )));
        out.push(IpAddr::V6(Ipv6Addr::new(
            0x64,
            0xff9b,
            1,
            hi,
            u16::from(c),
            u16::from(d) << 8,
            0,
            suffix,
        )));
    }
    if u32::from(v4) > 1 {
        out.push(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo)));
    }
    out
}

proptest::proptest! {
    /// Threat model, "a hostile tenant admin points a server at an internal address": a
    /// range or address the policy denies stays denied under every spelling (issue 27,
    /// item 1: `[::ffff:10.96.0.1]` passed `deniedCidrs: [10.96.0.0/12]`).
    #[test]
    fn a_denied_address_is_denied_under_every_spelling(
        bits: u32, prefix in 8u8..=32, suffix: u16
    ) {
        let v4 = Ipv4Addr::from(bits);
        let net = ipnet::Ipv4Net::new(v4, prefix).unwrap().trunc();
        let cidr = policy(EndpointPolicySpec {
            allow_private_networks: true,
            allow_loopback: true,
            allow_link_local: true,
            denied_cidrs: vec![net.to_string()],
            ..EndpointPolicySpec::default()
        });
        let host = policy(EndpointPolicySpec {
            allow_private_networks: true,
            allow_loopback: true,
            allow_link_local: true,
            denied_hosts: vec![v4.to_string()],
            ..EndpointPolicySpec::default()
        });
        for form in spelled(v4, suffix) {
            proptest::prop_assert!(cidr.check_ip(form).is_err(), "{form} passed deniedCidrs {net}");
            proptest::prop_assert!(host.check_ip(form).is_err(), "{form} passed deniedHosts {v4}");
            let literal = match form {
                IpAddr::V6(v6) => Host::Ipv6(v6),
                IpAddr::V4(v4) => Host::Ipv4(v4),
            };
            proptest::prop_assert!(cidr.check_host(&literal).is_err());
            proptest::prop_assert!(host.check_host(&literal).is_err(), "{form} as a literal host passed deniedHosts {v4}");
        }
    }

    /// Every spelling of an address has its class, and is allowed by the same rules: an
    /// `allowedCidrs` range opens it in every spelling, the class rules close it in every
    /// spelling.
    #[test]
    fn every_spelling_is_judged_as_the_address(bits: u32, suffix: u16) {
        let v4 = Ipv4Addr::from(bits);
        let strict = EndpointPolicy::default();
        let opened = policy(EndpointPolicySpec {
            allowed_cidrs: vec![format!("{v4}/32")],
            ..EndpointPolicySpec::default()
        });
        for form in spelled(v4, suffix) {
            // The /48 local-use reading of a /96 spelling carries a second address; the
            // verdict may only get stricter for it.
            let carried = spellings(form);
            proptest::prop_assert!(carried.contains(&IpAddr::V4(v4)), "{form} does not carry {v4}");
            if strict.check_ip(IpAddr::V4(v4)).is_err() {
                proptest::prop_assert!(strict.check_ip(form).is_err(), "{form} passed where {v4} is denied");
            }
            if opened.check_ip(form).is_ok() {
                proptest::prop_assert!(opened.check_ip(IpAddr::V4(v4)).is_ok());
            }
            if carried.len() == 2 {
                proptest::prop_assert_eq!(
                    opened.check_ip(form).is_ok(),
                    opened.check_ip(IpAddr::V4(v4)).is_ok(),
                    "{} under allowedCidrs {}/32", form, v4
                );
            }
        }
    }
}

/// Issue 27, item 2: the metadata services missing from the list, each denied under every
/// allow flag but `allowCloudMetadata`, in every spelling.
#[test]
fn every_cloud_metadata_address_needs_allow_cloud_metadata() {
    let open = EndpointPolicySpec {
        allow_private_networks: true,
        allow_loopback: true,
        allow_link_local: true,
        allowed_cidrs: vec!["0.0.0.0/0".into(), "::/0".into()],
        ..EndpointPolicySpec::default()
    };
    let everything_but_metadata = policy(open.clone());
    let with_metadata = policy(EndpointPolicySpec {
        allow_cloud_metadata: true,
        ..open
    });
    let mut addresses: Vec<IpAddr> = METADATA_V6.iter().map(|a| IpAddr::V6(*a)).collect();
    for v4 in METADATA_V4 {
        addresses.extend(spelled(*v4, 7));
        addresses.push(IpAddr::V4(*v4));
    }
    for name in [
        "fd20:ce::254",
        "168.63.129.16",
        "169.254.170.23",
        "fd00:ec2::23",
    ] {
        assert!(addresses.contains(&ip(name)), "{name} is not in the list");
    }
    for a in addresses {
        let err = everything_but_metadata.check_ip(a).unwrap_err();
        assert!(err.to_string().contains("cloud metadata"), "{a}: {err}");
        assert!(with_metadata.check_ip(a).is_ok(), "{a}");
    }
}

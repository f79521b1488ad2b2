//! Tests of `client::routes`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::api::GlobalMcpConfig;

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

fn global(enabled: bool, with_postgres: bool) -> GlobalRoutes {
    let mut servers = serde_json::json!({});
    if with_postgres {
        servers = serde_json::json!({"postgres": {
            "host": "global-db.example.com", "database": "rag",
            "credentialsSecretRef": {"name": "global-pg"}
        }});
    }
    let g: GlobalMcpConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {"tenantConfigsEnabled": enabled, "servers": servers}
    }))
    .unwrap();
    let pg = secret(
        "global-pg",
        &[("username", "platform"), ("password", "pw-g")],
    );
    global_routes(Some(&g.spec), &|n| (n == "global-pg").then(|| pg.clone()))
}

/// A tenant config that declares Postgres (promoted, or failing before any promotion)
/// or nothing, enabled or not.
fn tenant(declares: bool, promoted: bool, enabled: bool) -> TenantRoutes {
    let mut servers = serde_json::json!({});
    let mut status = serde_json::json!({});
    if declares {
        let pg = serde_json::json!({
            "host": "acme-db.example.com", "database": "acme",
            "credentialsSecretRef": {"name": "acme-pg"}
        });
        servers = serde_json::json!({"postgres": pg.clone()});
        status = if promoted {
            serde_json::json!({"active": {"postgres": {
                "spec": pg, "snapshotSecret": "config-postgres-1", "specHash": "h",
                "promotedAt": "2026-11-24T00:00:00Z"
            }}})
        } else {
            serde_json::json!({"servers": {"postgres": {
                "state": "Failing", "reason": "AuthFailed",
                "message": "password authentication failed for user \"acme\""
            }}})
        };
    }
    let c: TenantMcpConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "config", "namespace": "acme"},
        "spec": {"tenantId": "acme", "enabled": enabled, "servers": servers},
        "status": status
    }))
    .unwrap();
    let snap = secret(
        "config-postgres-1",
        &[("username", "acme"), ("password", "pw-a")],
    );
    from_status(
        &c,
        &|n| (n == "config-postgres-1").then(|| snap.clone()),
        &Arc::new(EndpointPolicy::default()),
    )
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Tenant,
    Global,
    NotConfigured,
    Unavailable(String),
}

fn outcome(r: Result<Arc<Endpoint>, ClientError>) -> Outcome {
    match r {
        Ok(e) if e.origin == Origin::Tenant => Outcome::Tenant,
        Ok(_) => Outcome::Global,
        Err(ClientError::NotConfigured { .. }) => Outcome::NotConfigured,
        Err(ClientError::Unavailable { reason, .. }) => Outcome::Unavailable(reason),
        Err(e) => panic!("unexpected {e}"),
    }
}

/// Every combination of: the tenant has a working / failing / no Postgres entry (or no
/// config) × global has / has not × the cluster flag × the process flag × tenant
/// enabled.
#[test]
fn the_generation_is_even_between_changes_and_advances_with_each() {
    let routes = Routes::new(true);
    let g0 = routes.generation();
    assert!(Routes::is_settled(g0));
    routes.set_tenant("acme", None);
    let g1 = routes.generation();
    routes.set_global(GlobalRoutes::default());
    let g2 = routes.generation();
    routes.set_all_tenants(Vec::new());
    let g3 = routes.generation();
    assert!([g1, g2, g3].iter().all(|g| Routes::is_settled(*g)));
    assert!(g0 < g1 && g1 < g2 && g2 < g3);
}

#[test]
fn the_fallback_matrix() {
    use Outcome::*;
    #[derive(Clone, Copy, Debug)]
    enum T {
        NoConfig,
        Undeclared,
        Working,
        Failing,
    }
    for t in [T::NoConfig, T::Undeclared, T::Working, T::Failing] {
        for global_has in [true, false] {
            for cluster_flag in [true, false] {
                for process_flag in [true, false] {
                    for enabled in [true, false] {
                        let routes = Routes::new(process_flag);
                        routes.set_global(global(cluster_flag, global_has));
                        match t {
                            T::NoConfig => {}
                            T::Undeclared => {
                                routes.set_tenant("acme", Some(tenant(false, false, enabled)));
                            }
                            T::Working => {
                                routes.set_tenant("acme", Some(tenant(true, true, enabled)));
                            }
                            T::Failing => {
                                routes.set_tenant("acme", Some(tenant(true, false, enabled)));
                            }
                        }
                        let tenant_counts = cluster_flag
                            && process_flag
                            && enabled
                            && matches!(t, T::Working | T::Failing);
                        let expected = match (tenant_counts, t, global_has) {
                            (true, T::Working, _) => Tenant,
                            // Failing: an error, never the global server.
                            (true, _, _) => Unavailable("AuthFailed".into()),
                            (false, _, true) => Global,
                            (false, _, false) => NotConfigured,
                        };
                        let got = outcome(routes.resolve("acme", &ServerKey::Postgres));
                        assert_eq!(
                            got, expected,
                            "tenant {t:?}, global has {global_has}, cluster flag {cluster_flag}, process flag {process_flag}, enabled {enabled}"
                        );
                        // Another tenant is never served acme's server.
                        let other = outcome(routes.resolve("other", &ServerKey::Postgres));
                        assert_eq!(other, if global_has { Global } else { NotConfigured });
                    }
                }
            }
        }
    }
}

#[test]
fn the_tenant_routes_carry_the_snapshot_credentials_and_a_missing_snapshot_is_unavailable() {
    let routes = tenant(true, true, true);
    let Some(Ok(endpoint)) = routes.servers.get(&ServerKey::Postgres) else {
        panic!("no route: {routes:?}");
    };
    match &endpoint.server {
        Candidate::Postgres { credentials, .. } => {
            assert_eq!(credentials.username, "acme");
            assert_eq!(credentials.password.expose(), "pw-a");
        }
        other => panic!("{other:?}"),
    }
    // The same config before the snapshot Secret arrived in the watch.
    let c: TenantMcpConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "config", "namespace": "acme"},
        "spec": {"tenantId": "acme", "servers": {"postgres": {
            "host": "h", "database": "d", "credentialsSecretRef": {"name": "acme-pg"}}}},
        "status": {"active": {"postgres": {
            "spec": {"host": "h", "database": "d", "credentialsSecretRef": {"name": "acme-pg"}},
            "snapshotSecret": "gone", "specHash": "h", "promotedAt": "2026-11-24T00:00:00Z"}}}
    }))
    .unwrap();
    let r = from_status(&c, &|_| None, &Arc::new(EndpointPolicy::default()));
    let Some(Err(u)) = r.servers.get(&ServerKey::Postgres) else {
        panic!("{r:?}");
    };
    assert_eq!(u.reason, "SnapshotNotVisible");
    assert!(u.message.contains("acme/gone"), "{}", u.message);
}

#[test]
fn fingerprints_change_with_credentials_and_not_otherwise() {
    let a = tenant(true, true, true);
    let b = tenant(true, true, true);
    let fp = |r: &TenantRoutes| match r.servers.get(&ServerKey::Postgres) {
        Some(Ok(e)) => e.fingerprint,
        other => panic!("{other:?}"),
    };
    assert_eq!(fp(&a), fp(&b));
    let spec = match a.servers.get(&ServerKey::Postgres).expect("declared") {
        Ok(e) => e.server.clone(),
        Err(e) => panic!("{e:?}"),
    };
    let Candidate::Postgres {
        spec,
        mut credentials,
        ca_pem,
    } = spec
    else {
        panic!()
    };
    let same = |credentials, policy| {
        Endpoint::new(
            Origin::Tenant,
            Candidate::Postgres {
                spec: spec.clone(),
                credentials,
                ca_pem: ca_pem.clone(),
            },
            policy,
        )
    };
    assert_eq!(
        same(credentials.clone(), Arc::new(EndpointPolicy::default())).fingerprint,
        fp(&a)
    );
    // Another policy: the clients are built anew, on connectors that obey it.
    let strict = crate::api::EndpointPolicySpec {
        allowed_ports: vec!["5432".into()],
        ..Default::default()
    };
    let strict = Arc::new(EndpointPolicy::compile_or_strict(&strict));
    assert_ne!(same(credentials.clone(), strict).fingerprint, fp(&a));
    credentials.password = crate::config::Credential::new("rotated");
    let rotated = same(credentials, Arc::new(EndpointPolicy::default()));
    assert_ne!(rotated.fingerprint, fp(&a));
}

/// A policy tightened after promotion takes the active entry out of service in the client
/// at once: `PolicyDenied`, not the old server, and not the global one.
#[test]
fn an_active_entry_the_current_policy_denies_is_unavailable() {
    let promoted = |policy: crate::api::EndpointPolicySpec| {
        let c: TenantMcpConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "config", "namespace": "acme"},
            "spec": {"tenantId": "acme", "servers": {"postgres": {
                "host": "db.acme.example.com", "database": "d", "sslMode": "prefer",
                "credentialsSecretRef": {"name": "acme-pg"}}}},
            "status": {"active": {"postgres": {
                "spec": {"host": "db.acme.example.com", "database": "d", "sslMode": "prefer",
                         "credentialsSecretRef": {"name": "acme-pg"}},
                "snapshotSecret": "snap", "specHash": "h",
                "promotedAt": "2026-11-24T00:00:00Z"}}}
        }))
        .unwrap();
        let snap = secret("snap", &[("username", "acme"), ("password", "pw")]);
        let policy = Arc::new(EndpointPolicy::compile_or_strict(&policy));
        from_status(&c, &|_| Some(snap.clone()), &policy)
    };
    let route = |r: &TenantRoutes| {
        r.servers
            .get(&ServerKey::Postgres)
            .expect("declared")
            .clone()
    };
    assert!(route(&promoted(Default::default())).is_ok());
    for (what, policy) in [
        (
            "a denied host",
            crate::api::EndpointPolicySpec {
                denied_hosts: vec!["*.acme.example.com".into()],
                ..Default::default()
            },
        ),
        (
            "requireTls with sslMode prefer",
            crate::api::EndpointPolicySpec {
                require_tls: true,
                ..Default::default()
            },
        ),
    ] {
        let err = route(&promoted(policy)).unwrap_err();
        assert_eq!(err.reason, "PolicyDenied", "{what}: {err:?}");
        assert!(
            err.message.contains("current endpoint policy"),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn the_serving_config_follows_the_binding_rule_not_the_status() {
    let make = |ns: &str, created: &str, reason: Option<&str>| -> TenantMcpConfig {
        let conditions = reason.map_or_else(Vec::new, |r| {
            vec![
                serde_json::json!({"type": "Ready", "status": "True", "reason": r,
                "message": "", "lastTransitionTime": created}),
            ]
        });
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "config", "namespace": ns, "creationTimestamp": created},
            "spec": {"tenantId": "acme"},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    };
    let (acme, evil) = ("acme", "evil");
    // The impostor is older and its status even claims health: it still never serves.
    let impostor = make(
        "tenant-evil",
        "2025-01-01T00:00:00Z",
        Some("AllServersHealthy"),
    );
    let own = make("tenant-acme", "2026-02-01T00:00:00Z", None);
    let pick = |cs: &[(&TenantMcpConfig, Option<&str>)], unbound| {
        let records: Vec<ConfigRecord> = cs
            .iter()
            .map(|(c, _)| ConfigRecord::from_status(c))
            .collect();
        let claims: Vec<Claimed<'_>> = records.iter().zip(cs).map(|(r, (_, t))| (r, *t)).collect();
        serving_config("acme", &claims, unbound).map(|c| c.namespace.clone())
    };
    assert_eq!(pick(&[(&impostor, Some(evil))], false), None);
    assert_eq!(pick(&[(&impostor, Some(evil))], true), None);
    assert_eq!(
        pick(&[(&impostor, Some(evil)), (&own, Some(acme))], false),
        Some("tenant-acme".into())
    );
    // Two bound configs: the oldest, as the controller decides.
    let older = make("tenant-acme-2", "2026-01-01T00:00:00Z", None);
    assert_eq!(
        pick(&[(&own, Some(acme)), (&older, Some(acme))], false),
        Some("tenant-acme-2".into())
    );
    // Unbound: only when allowed, and never over a bound one.
    let unbound = make("shared", "2024-01-01T00:00:00Z", None);
    assert_eq!(pick(&[(&unbound, None)], false), None);
    assert_eq!(pick(&[(&unbound, None)], true), Some("shared".into()));
    assert_eq!(
        pick(&[(&unbound, None), (&own, Some(acme))], true),
        Some("tenant-acme".into())
    );
}

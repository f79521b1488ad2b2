//! The pure reconcile decisions, from YAML fixtures: what a platform team applies and what the
//! controller decides for it, without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use super::plan::*;
use super::snapshot::{self, Cleanup};
use crate::api::{EndpointPolicySpec, McpConfigStatus, ServerHealth, ServerState, TenantMcpConfig};
use crate::config::candidate::{self, Candidate, ServerKey};
use crate::config::{EndpointPolicy, FieldPath, validate_tenant_spec};

fn config(yaml: &str) -> TenantMcpConfig {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn secret(yaml: &str) -> Secret {
    serde_yaml_ng::from_str(yaml).unwrap()
}

const ACME: &str = r#"
apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata: {name: acme, namespace: team-acme, uid: 1111-2222, generation: 3}
spec:
  tenantId: acme
  servers:
    postgres:
      host: 10.0.0.5
      database: rag
      credentialsSecretRef: {name: acme-pg}
    minio:
      endpoint: http://169.254.169.254:9000
      bucket: acme-docs
      credentialsSecretRef: {name: acme-s3}
    mcpServers:
      - name: search
        url: https://search.example.com/mcp
        headers:
          - {name: X-Api-Key, valueFrom: {name: search, key: api-key}}
"#;

fn private_policy() -> EndpointPolicy {
    let spec = EndpointPolicySpec {
        allow_private_networks: true,
        ..EndpointPolicySpec::default()
    };
    EndpointPolicy::compile(&spec, &FieldPath::default()).0
}

fn now() -> Timestamp {
    "2026-11-24T10:00:00Z".parse().unwrap()
}

#[test]
fn validation_errors_block_only_their_own_server_type() {
    let cfg = config(ACME);
    let errors = validate_tenant_spec(&cfg.spec, &private_policy());
    let split = split_errors(&errors, &cfg.spec.servers);
    assert!(split.config_wide.is_empty(), "{:?}", split.config_wide);
    // The cloud metadata address is denied; Postgres on a private address is allowed here.
    let minio = &split.per_server[&ServerKey::Minio];
    assert_eq!(minio.reason, "PolicyDenied", "{minio:?}");
    assert!(
        minio.message.starts_with("spec.servers.minio.endpoint"),
        "{minio:?}"
    );
    assert!(!split.per_server.contains_key(&ServerKey::Postgres));
    assert!(
        !split
            .per_server
            .contains_key(&ServerKey::Mcp("search".into()))
    );

    // With the default (public only) policy Postgres is denied too; a bad tenant id blocks all.
    let errors = validate_tenant_spec(&cfg.spec, &EndpointPolicy::default());
    let split = split_errors(&errors, &cfg.spec.servers);
    assert!(split.per_server.contains_key(&ServerKey::Postgres));
    let mut bad = cfg.clone();
    bad.spec.tenant_id = "Not_A_Label".into();
    let split = split_errors(
        &validate_tenant_spec(&bad.spec, &private_policy()),
        &bad.spec.servers,
    );
    assert_eq!(split.config_wide.len(), 1, "{:?}", split.config_wide);
    assert!(split.config_wide[0].starts_with("spec.tenantId"));
}

#[test]
fn missing_secrets_and_keys_are_named_with_their_field() {
    let cfg = config(ACME);
    let pg =
        secret("metadata: {name: acme-pg, resourceVersion: '7'}\ndata: {username: YWNtZQ==}\n");
    let lookup = |name: &str| (name == "acme-pg").then(|| pg.clone());
    let err = candidate::resolve(&cfg.spec.servers, &ServerKey::Postgres, &lookup).unwrap_err();
    assert_eq!(err.reason, "SecretKeyMissing");
    assert_eq!(
        err.message,
        "spec.servers.postgres.credentialsSecretRef: Secret \"acme-pg\" has no key \"password\" (named by passwordKey); it has [\"username\"]"
    );
    let err = candidate::resolve(&cfg.spec.servers, &ServerKey::Mcp("search".into()), &lookup)
        .unwrap_err();
    assert_eq!(err.reason, "SecretNotFound");
    assert!(
        err.message.starts_with(
            "spec.servers.mcpServers[search].headers[0].valueFrom: Secret \"search\" does not exist"
        ),
        "{}",
        err.message
    );
    assert!(!err.retryable);
}

#[test]
fn snapshots_freeze_exactly_the_tested_credentials() {
    let cfg = config(ACME);
    let pg =
        secret("metadata: {name: acme-pg}\nstringData: {username: acme, password: s3cret-pw}\n");
    let lookup = |_: &str| Some(pg.clone());
    let cand = candidate::resolve(&cfg.spec.servers, &ServerKey::Postgres, &lookup).unwrap();
    let snap = snapshot::build(&cfg, &ServerKey::Postgres, &cand);
    assert_eq!(snap.immutable, Some(true));
    let name = snap.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("acme-postgres-") && name.len() == "acme-postgres-".len() + 10,
        "{name}"
    );
    let labels = snap.metadata.labels.clone().unwrap();
    assert_eq!(labels["tenantmcp.dev/config-uid"], "1111-2222");
    assert_eq!(labels["tenantmcp.dev/tenant"], "acme");
    let owner = &snap.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("TenantMcpConfig", Some(true))
    );
    assert!(snapshot::holds(&snap, &cand));
    let back = candidate::postgres_from_snapshot(&snap).unwrap();
    assert_eq!(back.password.expose(), "s3cret-pw");
    // Another password is another candidate; the spec hash never depends on credentials.
    let other =
        secret("metadata: {name: acme-pg}\nstringData: {username: acme, password: other}\n");
    let cand2 = candidate::resolve(&cfg.spec.servers, &ServerKey::Postgres, &|_| {
        Some(other.clone())
    })
    .unwrap();
    assert!(!snapshot::holds(&snap, &cand2));
    assert_eq!(cand.spec_hash(), cand2.spec_hash());
    assert!(matches!(cand, Candidate::Postgres { .. }));
}

#[test]
fn superseded_snapshots_are_marked_then_deleted_after_the_grace_period() {
    let owned: Vec<kube::api::ObjectMeta> = [
        "metadata: {name: current}",
        "metadata: {name: fresh-old}",
        "metadata: {name: marked, annotations: {tenantmcp.dev/superseded-at: '2026-11-24T09:59:00Z'}}",
        "metadata: {name: expired, annotations: {tenantmcp.dev/superseded-at: '2026-11-24T09:50:00Z'}}",
    ]
    .iter()
    .map(|y| secret(y).metadata)
    .collect();
    let actions = snapshot::cleanup(&owned, &["current".into()], now(), Duration::from_secs(300));
    assert_eq!(
        actions,
        [
            Cleanup::MarkSuperseded("fresh-old".into()),
            Cleanup::Wait(Duration::from_secs(240)),
            Cleanup::Delete("expired".into()),
        ]
    );
}

fn health(state: ServerState, reason: Option<&str>, checked: &str) -> ServerHealth {
    ServerHealth {
        state,
        reason: reason.map(Into::into),
        message: None,
        last_checked_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            checked.parse().unwrap(),
        )),
        latency_ms: None,
        spec_hash: Some("h1".into()),
        secret_versions: BTreeMap::from([("pg".into(), "7".into())]).into(),
        policy_hash: Some("p1".into()),
    }
}

#[test]
fn checks_repeat_on_change_on_retry_and_on_revalidation_only() {
    let intervals = Intervals {
        revalidate: Some(Duration::from_secs(300)),
        retry: Duration::from_secs(30),
    };
    let v7 = BTreeMap::from([("pg".to_owned(), "7".to_owned())]);
    let v8 = BTreeMap::from([("pg".to_owned(), "8".to_owned())]);
    let healthy = health(ServerState::Healthy, None, "2026-11-24T09:58:00Z");
    assert_eq!(due(None, "h1", &v7, "p1", now(), intervals), Due::Now);
    assert_eq!(
        due(Some(&healthy), "h1", &v7, "p1", now(), intervals),
        Due::In(Duration::from_secs(180))
    );
    assert_eq!(
        due(Some(&healthy), "h2", &v7, "p1", now(), intervals),
        Due::Now,
        "spec changed"
    );
    assert_eq!(
        due(Some(&healthy), "h1", &v8, "p1", now(), intervals),
        Due::Now,
        "Secret changed"
    );
    // Down servers are retried soon; a wrong password waits for a change or revalidation.
    let down = health(
        ServerState::Failing,
        Some("Unreachable"),
        "2026-11-24T09:59:50Z",
    );
    assert_eq!(
        due(Some(&down), "h1", &v7, "p1", now(), intervals),
        Due::In(Duration::from_secs(20))
    );
    let auth = health(
        ServerState::Failing,
        Some("AuthFailed"),
        "2026-11-24T09:59:50Z",
    );
    assert_eq!(
        due(Some(&auth), "h1", &v7, "p1", now(), intervals),
        Due::In(Duration::from_secs(290))
    );
    let off = Intervals {
        revalidate: None,
        ..intervals
    };
    assert_eq!(due(Some(&auth), "h1", &v7, "p1", now(), off), Due::OnChange);
    // A changed endpoint policy re-checks at once, even with re-validation off.
    assert_eq!(
        due(Some(&healthy), "h1", &v7, "p2", now(), intervals),
        Due::Now,
        "policy changed"
    );
    assert_eq!(due(Some(&auth), "h1", &v7, "p2", now(), off), Due::Now);
}

#[test]
fn a_failing_server_degrades_but_the_last_known_good_config_keeps_serving() {
    let mut status: McpConfigStatus = serde_yaml_ng::from_str(
        r#"
active:
  postgres:
    spec: {host: 10.0.0.5, database: rag, credentialsSecretRef: {name: acme-pg}}
    snapshotSecret: acme-postgres-aaaa
    specHash: h1
    promotedAt: "2026-11-24T09:00:00Z"
servers:
  postgres: {state: Failing, reason: AuthFailed, message: "password authentication failed for user \"acme\""}
  minio: {state: Healthy}
conditions:
  - {type: Ready, status: "True", reason: AllServersHealthy, message: ok, lastTransitionTime: "2026-11-24T09:00:00Z"}
"#,
    )
    .unwrap();
    let declared = [ServerKey::Postgres, ServerKey::Minio];
    let in_sync = BTreeSet::from([ServerKey::Postgres, ServerKey::Minio]);
    let inputs = ConditionInputs {
        gate: &Gate::Served,
        declared: &declared,
        config_wide: &[],
        invalid: &BTreeMap::new(),
        in_sync: &in_sync,
        mirror: Some(&Ok(())),
        generation: Some(3),
        now: now(),
    };
    update_conditions(&mut status, &inputs);
    let get = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .clone()
    };
    let ready = get("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AuthFailed")
    );
    assert!(
        ready
            .message
            .contains("the last-known-good config of postgres keeps serving"),
        "{}",
        ready.message
    );
    assert_eq!(ready.last_transition_time.0, now(), "moved on the flip");
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(get("Degraded").status, "True");
    assert_eq!(get("Validated").status, "True");
    assert_eq!(get("Mirrored").status, "True");
    assert_eq!(status.observed_generation, Some(3));

    // Healthy again: Ready flips back; the same status twice does not move the time again.
    status.servers.get_mut("postgres").unwrap().state = ServerState::Healthy;
    let later: Timestamp = "2026-11-24T10:05:00Z".parse().unwrap();
    update_conditions(
        &mut status,
        &ConditionInputs {
            now: later,
            ..inputs.clone()
        },
    );
    assert_eq!(get_status(&status, "Ready"), ("True".into(), later));
    update_conditions(
        &mut status,
        &ConditionInputs {
            now: "2026-11-24T10:09:00Z".parse().unwrap(),
            ..inputs.clone()
        },
    );
    assert_eq!(get_status(&status, "Ready"), ("True".into(), later));

    // Switched off: Ready=False Disabled, nothing degraded, the active config untouched.
    let disabled = Gate::Disabled("spec.enabled is false".into());
    update_conditions(
        &mut status,
        &ConditionInputs {
            gate: &disabled,
            ..inputs.clone()
        },
    );
    assert_eq!(get_status(&status, "Ready").0, "False");
    assert!(status.active.postgres.is_some());
    assert!(!disabled.clears_active() && Gate::Conflict(String::new()).clears_active());
}

fn get_status(status: &McpConfigStatus, t: &str) -> (String, Timestamp) {
    let c = status.conditions.iter().find(|c| c.type_ == t).unwrap();
    (c.status.clone(), c.last_transition_time.0)
}

#[test]
fn a_new_config_is_pending_until_checked_and_an_empty_one_is_ready() {
    let mut status = McpConfigStatus::default();
    let declared = [ServerKey::Postgres];
    let inputs = ConditionInputs {
        gate: &Gate::Served,
        declared: &declared,
        config_wide: &[],
        invalid: &BTreeMap::new(),
        in_sync: &BTreeSet::new(),
        mirror: None,
        generation: Some(1),
        now: now(),
    };
    update_conditions(&mut status, &inputs);
    assert_eq!(get_status(&status, "Ready").0, "False");
    assert_eq!(
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .reason,
        "Pending"
    );
    assert!(status.conditions.iter().all(|c| c.type_ != "Mirrored"));
    let mut empty = McpConfigStatus::default();
    update_conditions(
        &mut empty,
        &ConditionInputs {
            declared: &[],
            ..inputs
        },
    );
    assert_eq!(get_status(&empty, "Ready").0, "True");
}

//! Resolve → probe → promote: validate the spec, read its Secrets and snapshots, connection-test
//! the server types that are due, and promote those that pass into snapshots and
//! `status.active`. The per-type decisions are in [`super::phases`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PostParams;

use super::active;
use super::context::{Context, Run, fence};
use super::error::Error;
use super::phases::{self, Assessment, Resolved};
use super::plan::{self};
use super::snapshot::{self};
use super::snapshot_store::read_snapshots;
use crate::api::conditions::reason;
use crate::config::candidate::{Candidate, ServerKey};
use crate::config::failure::Failure;
use crate::config::validate::policy_failure;
use crate::config::{EndpointPolicy, validate_tenant_spec};

/// Resolve: validates the spec, takes out of service an active entry the policy now denies,
/// reads the Secrets and snapshots, and decides per server type whether it is due for a
/// check now; returns those that are.
pub(super) async fn resolve(run: &mut Run<'_>) -> Result<Vec<(ServerKey, Resolved)>, Error> {
    let spec = &run.config.spec;
    let now = run.now;
    run.split = plan::split_errors(
        &validate_tenant_spec(spec, &run.global.policy),
        &spec.servers,
    );
    // An active entry the policy in force denies leaves service now (a policy tightened,
    // `requireTls` set): its tenant gets PolicyDenied, never the old server.
    for key in &run.declared {
        let denied = active::spec(&run.status.active, key)
            .and_then(|server| policy_failure(server, &run.global.policy))
            .filter(|f| f.reason == reason::POLICY_DENIED);
        if let Some(f) = denied
            && active::demote(&mut run.status.active, key)
        {
            run.demoted.push((key.as_string(), f.message));
        }
    }
    let mut fetched: HashMap<String, Option<Secret>> = HashMap::new();
    for (_, secret) in &run.uses {
        if fetched.contains_key(secret) {
            continue;
        }
        let found = run
            .secrets_api
            .get_opt(secret)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {}/{secret}", run.ns), e))?;
        fetched.insert(secret.clone(), found);
    }
    read_snapshots(&run.secrets_api, &run.status, &mut run.snapshots).await?;
    active::record_snapshot_uids(&mut run.status.active, &run.snapshots);
    let lookup = |n: &str| fetched.get(n).cloned().flatten();
    let mut due_now: Vec<(ServerKey, Resolved)> = Vec::new();
    for key in run.declared.clone() {
        let assessment = phases::assess(
            &key,
            &phases::Inputs {
                servers: &spec.servers,
                split: &run.split,
                uses: &run.uses,
                secret: &lookup,
                status: &run.status,
                snapshots: &run.snapshots,
                checking: phases::Checking {
                    policy_hash: &run.global.policy_hash,
                    now,
                    intervals: run.intervals,
                },
            },
        );
        match assessment {
            Assessment::Failing(health) => {
                run.status.servers.insert(key.as_string(), health);
            }
            Assessment::Due(resolved) => {
                if resolved.in_sync {
                    run.in_sync.insert(key.clone());
                }
                due_now.push((key, resolved));
            }
            Assessment::Current { in_sync, again } => {
                if in_sync {
                    run.in_sync.insert(key);
                }
                if let Some(after) = again {
                    run.check_again_in(after);
                }
            }
        }
    }
    Ok(due_now)
}

/// Probe: connection-tests everything due at once; the global cap bounds the concurrency.
pub(super) async fn probe_due(
    run: &mut Run<'_>,
    ctx: &Context,
    due: &[(ServerKey, Resolved)],
) -> Vec<Result<Duration, Failure>> {
    let started = Instant::now();
    let timeout = Duration::from_secs(
        u64::try_from(run.config.spec.validation.connect_timeout_seconds).unwrap_or(5),
    );
    let outcomes = futures::future::join_all(due.iter().map(|(key, r)| {
        probe(
            ctx,
            &run.global.policy,
            &run.config.spec.tenant_id,
            key,
            &r.candidate,
            timeout,
        )
    }))
    .await;
    if !outcomes.is_empty() {
        run.probing = started.elapsed();
    }
    outcomes
}

/// Promote: a passing server not yet active gets a snapshot Secret and becomes the active
/// entry; every probed server's health is recorded; an active entry that now connects where
/// the policy denies is taken out of service; entries of undeclared types go.
pub(super) async fn promote(
    run: &mut Run<'_>,
    ctx: &Context,
    due: Vec<(ServerKey, Resolved)>,
    outcomes: Vec<Result<Duration, Failure>>,
) -> Result<(), Error> {
    for ((key, resolved), outcome) in due.into_iter().zip(outcomes) {
        let snapshot = if phases::needs_snapshot(&resolved, &outcome) {
            let secret = snapshot::build(run.config, &key, &resolved.candidate);
            fence(ctx)?;
            let created = run
                .secrets_api
                .create(&PostParams::default(), &secret)
                .await
                .map_err(|e| {
                    Error::kube(
                        format!("creating a snapshot Secret for {}", key.as_string()),
                        e,
                    )
                })?;
            ctx.snapshots.record(&created.metadata);
            run.snapshots.insert(created.name_any(), created.clone());
            Some(created)
        } else {
            None
        };
        let recorded = phases::record_check(
            &mut run.status,
            &key,
            resolved,
            outcome,
            snapshot.as_ref(),
            &phases::Checking {
                policy_hash: &run.global.policy_hash,
                now: run.now,
                intervals: run.intervals,
            },
        );
        if recorded.promoted {
            run.promoted.push(key.as_string());
            run.in_sync.insert(key.clone());
        }
        if let Some(why) = recorded.demoted {
            run.in_sync.remove(&key);
            run.demoted.push((key.as_string(), why));
        }
        if let Some(after) = recorded.again {
            run.check_again_in(after);
        }
    }
    active::retain_declared(&mut run.status.active, &run.declared);
    let declared = &run.declared;
    run.status
        .servers
        .retain(|k, _| ServerKey::parse(k).is_some_and(|k| declared.contains(&k)));
    Ok(())
}

pub(super) async fn probe(
    ctx: &Context,
    policy: &EndpointPolicy,
    tenant: &str,
    key: &ServerKey,
    candidate: &Candidate,
    timeout: Duration,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let result = ctx
        .prober
        .test(policy, tenant, &key.as_string(), candidate, timeout)
        .await;
    let label = match &result {
        Ok(_) => "Healthy",
        Err(e) => e.reason(),
    };
    ctx.metrics
        .probe(key.server_type(), label, started.elapsed());
    result.map_err(Failure::from)
}

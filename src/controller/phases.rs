//! The decisions of the reconcile's resolve and promote phases ([`super::reconcile`]), one
//! declared server type at a time and without I/O: the phases read the Secrets and snapshots,
//! probe, and create snapshot Secrets around them, so each decision is tested on its own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::active;
use super::plan::{self, Due, Intervals};
use super::snapshot;
use crate::api::conditions::reason;
use crate::api::{McpConfigStatus, ServerHealth, ServerState, ServersSpec};
use crate::config::candidate::{self, Candidate, ServerKey};
use crate::config::failure::Failure;

/// A server ready to be checked: its candidate, the Secret versions it was read from, and
/// whether it is already the active entry.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The spec with its credentials.
    pub candidate: Candidate,
    /// `resourceVersion` of each Secret it was read from.
    pub versions: BTreeMap<String, String>,
    /// Whether the active entry is this spec, with these credentials in its snapshot.
    pub in_sync: bool,
}

/// What the resolve phase found for one declared server type.
#[derive(Debug)]
pub(super) enum Assessment {
    /// It cannot be checked (an invalid spec, a missing Secret or key): this health says why.
    Failing(ServerHealth),
    /// A check is due now.
    Due(Resolved),
    /// Checked and current: look again after `again`, or only on a change.
    Current {
        /// Whether the active entry is the spec as it is now.
        in_sync: bool,
        /// When the next check is due.
        again: Option<Duration>,
    },
}

/// When and under which policy a reconcile checks its servers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Checking<'a> {
    /// The hash of the endpoint policy in force.
    pub policy_hash: &'a str,
    /// The reconcile's clock.
    pub now: Timestamp,
    /// Revalidation and retry intervals.
    pub intervals: Intervals,
}

/// What the resolve phase decides from, for one config.
pub(super) struct Inputs<'a> {
    /// The declared servers.
    pub servers: &'a ServersSpec,
    /// The spec's validation errors.
    pub split: &'a plan::SplitErrors,
    /// Each Secret the spec reads, with the server type that reads it.
    pub uses: &'a [(Option<ServerKey>, String)],
    /// The Secrets of the config's namespace, by name, as read for this reconcile.
    pub secret: &'a dyn Fn(&str) -> Option<Secret>,
    /// The status as it stands (after a policy demotion, if any).
    pub status: &'a McpConfigStatus,
    /// The snapshot Secrets `status.active` points at, by name.
    pub snapshots: &'a HashMap<String, Secret>,
    /// The policy's hash and the clock.
    pub checking: Checking<'a>,
}

/// Resolve, for server type `key`: fails it when the spec or its Secrets do not allow a
/// check, else says whether its active entry is current and whether it is due for a check.
pub(super) fn assess(key: &ServerKey, i: &Inputs<'_>) -> Assessment {
    let failure = if i.split.config_wide.is_empty() {
        i.split.per_server.get(key).cloned()
    } else {
        Some(Failure::new(
            reason::INVALID_SPEC,
            i.split.config_wide.join("; "),
            false,
        ))
    };
    if let Some(failure) = failure {
        return Assessment::Failing(failing(
            &failure,
            None,
            BTreeMap::new(),
            i.checking.policy_hash,
            i.checking.now,
        ));
    }
    let versions: BTreeMap<String, String> = i
        .uses
        .iter()
        .filter(|(k, _)| k.as_ref() == Some(key))
        .filter_map(|(_, name)| {
            let s = (i.secret)(name)?;
            Some((
                name.clone(),
                s.metadata.resource_version.clone().unwrap_or_default(),
            ))
        })
        .collect();
    let candidate = match candidate::resolve(i.servers, key, i.secret) {
        Ok(c) => c,
        Err(failure) => {
            return Assessment::Failing(failing(
                &failure,
                None,
                versions,
                i.checking.policy_hash,
                i.checking.now,
            ));
        }
    };
    let spec_hash = candidate.spec_hash();
    let in_sync = match active::entry(&i.status.active, key) {
        Some((hash, snap)) if hash == spec_hash => match snap {
            Some(snap) => i
                .snapshots
                .get(&snap)
                .is_some_and(|s| snapshot::holds(s, &candidate)),
            None => candidate.snapshot_data().is_empty(),
        },
        _ => false,
    };
    let last = i.status.servers.get(&key.as_string());
    let checked_as_is = last.is_some_and(|h| h.spec_hash.as_deref() == Some(&spec_hash));
    // Healthy as it is, yet not what the active entry froze: its snapshot went, or was
    // recreated by someone else (`read_snapshots` leaves out a Secret whose uid is not the
    // recorded one). Checked again at once, not at the next revalidation, so a new snapshot
    // replaces it.
    let snapshot_lost =
        !in_sync && last.is_some_and(|h| checked_as_is && h.state == ServerState::Healthy);
    let due = if (in_sync || checked_as_is) && !snapshot_lost {
        plan::due(
            last,
            &spec_hash,
            &versions,
            i.checking.policy_hash,
            i.checking.now,
            i.checking.intervals,
        )
    } else {
        Due::Now
    };
    match due {
        Due::Now => Assessment::Due(Resolved {
            candidate,
            versions,
            in_sync,
        }),
        Due::In(after) => Assessment::Current {
            in_sync,
            again: Some(after),
        },
        Due::OnChange => Assessment::Current {
            in_sync,
            again: None,
        },
    }
}

/// Whether a check of `resolved` with `outcome` is promoted with a new snapshot Secret (the
/// promote phase creates it before [`record_check`]).
pub(super) fn needs_snapshot(resolved: &Resolved, outcome: &Result<Duration, Failure>) -> bool {
    outcome.is_ok() && !resolved.in_sync && !resolved.candidate.snapshot_data().is_empty()
}

/// What one check did to the status.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Recorded {
    /// The server became the active entry.
    pub promoted: bool,
    /// The active entry was taken out of service, with why.
    pub demoted: Option<String>,
    /// When the server is next due for a check.
    pub again: Option<Duration>,
}

/// Promote, for server type `key`: records the check's `outcome` in `status`. A passing
/// server that is not the active entry becomes it (with `snapshot`, the Secret created for
/// it); a failing one keeps the last-known-good entry serving, unless the entry itself now
/// connects where the policy denies.
pub(super) fn record_check(
    status: &mut McpConfigStatus,
    key: &ServerKey,
    resolved: Resolved,
    outcome: Result<Duration, Failure>,
    snapshot: Option<&Secret>,
    checking: &Checking<'_>,
) -> Recorded {
    let Checking {
        policy_hash,
        now,
        intervals,
    } = *checking;
    let key_name = key.as_string();
    let spec_hash = resolved.candidate.spec_hash();
    let mut recorded = Recorded::default();
    let health = match outcome {
        Ok(latency) => {
            if !resolved.in_sync {
                active::promote(&mut status.active, key, &resolved.candidate, snapshot, now);
                recorded.promoted = true;
            }
            ServerHealth {
                state: ServerState::Healthy,
                reason: None,
                message: None,
                last_checked_at: Some(Time(now)),
                latency_ms: i64::try_from(latency.as_millis()).ok(),
                spec_hash: Some(spec_hash),
                secret_versions: resolved.versions.into(),
                policy_hash: Some(policy_hash.to_owned()),
            }
        }
        Err(failure) => {
            // A server that is merely down keeps serving as last-known-good; one whose name
            // now resolves where the policy denies does not.
            if resolved.in_sync
                && failure.reason == reason::POLICY_DENIED
                && active::demote(&mut status.active, key)
            {
                recorded.demoted = Some(failure.message.clone());
            }
            failing(
                &failure,
                Some(spec_hash),
                resolved.versions,
                policy_hash,
                now,
            )
        }
    };
    let again = plan::due(
        Some(&health),
        health.spec_hash.as_deref().unwrap_or_default(),
        &health.secret_versions,
        policy_hash,
        now,
        intervals,
    );
    if let Due::In(after) = again {
        recorded.again = Some(after);
    }
    status.servers.insert(key_name, health);
    recorded
}

/// The health of a server that failed with `failure`.
pub(super) fn failing(
    failure: &Failure,
    spec_hash: Option<String>,
    versions: BTreeMap<String, String>,
    policy_hash: &str,
    now: Timestamp,
) -> ServerHealth {
    ServerHealth {
        state: ServerState::Failing,
        reason: Some(failure.reason.clone()),
        message: Some(failure.message.clone()),
        last_checked_at: Some(Time(now)),
        latency_ms: None,
        spec_hash,
        secret_versions: versions.into(),
        policy_hash: Some(policy_hash.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EndpointPolicySpec, TenantMcpConfig};
    use crate::config::{EndpointPolicy, FieldPath, validate_tenant_spec};

    const ACME: &str = r#"
apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata: {name: acme, namespace: team-acme, uid: 1111-2222, generation: 1}
spec:
  tenantId: acme
  servers:
    postgres:
      host: 10.0.0.5
      database: rag
      credentialsSecretRef: {name: acme-pg}
"#;

    const INTERVALS: Intervals = Intervals {
        revalidate: Some(Duration::from_secs(300)),
        retry: Duration::from_secs(10),
    };

    fn now() -> Timestamp {
        "2026-11-30T10:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn pg_secret(password: &str, version: &str) -> Secret {
        serde_yaml_ng::from_str(&format!(
            "metadata: {{name: acme-pg, namespace: team-acme, resourceVersion: '{version}'}}\n\
             stringData: {{username: acme, password: {password}}}"
        ))
        .map(|mut s: Secret| {
            // What the API server does with stringData.
            s.data = Some(
                s.string_data
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                    .collect(),
            );
            s
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What the resolve phase reads for acme: its config, the Secrets of its namespace, its
    /// status and the snapshots it points at, under a policy.
    struct World {
        config: TenantMcpConfig,
        secrets: HashMap<String, Secret>,
        status: McpConfigStatus,
        snapshots: HashMap<String, Secret>,
        policy: EndpointPolicy,
        key: ServerKey,
    }

    impl World {
        fn new(private_networks: bool) -> Self {
            let spec = EndpointPolicySpec {
                allow_private_networks: private_networks,
                ..EndpointPolicySpec::default()
            };
            Self {
                config: serde_yaml_ng::from_str(ACME).unwrap_or_else(|e| panic!("{e}")),
                secrets: HashMap::from([("acme-pg".to_owned(), pg_secret("one", "1"))]),
                status: McpConfigStatus::default(),
                snapshots: HashMap::new(),
                policy: EndpointPolicy::compile(&spec, &FieldPath::default()).0,
                key: ServerKey::Postgres,
            }
        }

        fn assess(&self, at: Timestamp) -> Assessment {
            let servers = &self.config.spec.servers;
            let split = plan::split_errors(
                &validate_tenant_spec(&self.config.spec, &self.policy),
                servers,
            );
            let uses: Vec<(Option<ServerKey>, String)> = servers
                .secret_uses()
                .into_iter()
                .map(|u| {
                    let path = format!("spec.servers.{}", u.field);
                    (plan::key_of_path(&path, servers), u.name.to_owned())
                })
                .collect();
            let secret = |n: &str| self.secrets.get(n).cloned();
            assess(
                &self.key,
                &Inputs {
                    servers,
                    split: &split,
                    uses: &uses,
                    secret: &secret,
                    status: &self.status,
                    snapshots: &self.snapshots,
                    checking: Checking {
                        policy_hash: "policy-1",
                        now: at,
                        intervals: INTERVALS,
                    },
                },
            )
        }

        fn due(&self, at: Timestamp) -> Resolved {
            match self.assess(at) {
                Assessment::Due(r) => r,
                other => panic!("not due: {other:?}"),
            }
        }

        /// The promote phase after a check with `outcome`, creating the snapshot `snap-N`
        /// when one is needed.
        fn promote(&mut self, r: Resolved, outcome: Result<Duration, Failure>) -> Recorded {
            let snapshot = needs_snapshot(&r, &outcome).then(|| {
                let name = format!("snap-{}", self.snapshots.len() + 1);
                let mut s = snapshot::build(&self.config, &self.key, &r.candidate);
                s.metadata.name = Some(name.clone());
                s.metadata.uid = Some(format!("uid-of-{name}"));
                self.snapshots.insert(name, s.clone());
                s
            });
            record_check(
                &mut self.status,
                &self.key,
                r,
                outcome,
                snapshot.as_ref(),
                &Checking {
                    policy_hash: "policy-1",
                    now: now(),
                    intervals: INTERVALS,
                },
            )
        }

        fn active_password(&self) -> Option<String> {
            let (_, snap) = active::entry(&self.status.active, &ServerKey::Postgres)?;
            let data = self.snapshots.get(&snap?)?.data.clone()?;
            String::from_utf8(data.get("password")?.0.clone()).ok()
        }
    }

    #[test]
    fn resolve_fails_a_server_that_cannot_be_checked_and_names_why() {
        // The strict default policy refuses the private address: not checked at all.
        let denied = World::new(false);
        let Assessment::Failing(h) = denied.assess(now()) else {
            panic!("a denied address was due for a probe");
        };
        assert_eq!(h.reason.as_deref(), Some(reason::POLICY_DENIED), "{h:?}");
        assert_eq!(h.state, ServerState::Failing);

        let mut missing = World::new(true);
        missing.secrets.clear();
        let Assessment::Failing(h) = missing.assess(now()) else {
            panic!("a server without its Secret was due for a probe");
        };
        assert_eq!(h.reason.as_deref(), Some(reason::SECRET_NOT_FOUND), "{h:?}");
        assert!(
            h.message.as_deref().is_some_and(|m| m.contains("acme-pg")),
            "{h:?}"
        );
    }

    /// Issue 27, item 7: a snapshot that went, or was recreated under its name (which the
    /// read phase leaves out), is not waited out until the next revalidation.
    #[test]
    fn a_lost_snapshot_is_checked_again_at_once() {
        let mut w = World::new(true);
        let first = w.due(now());
        assert!(w.promote(first, Ok(Duration::from_millis(3))).promoted);
        assert!(matches!(
            w.assess(now()),
            Assessment::Current { in_sync: true, .. }
        ));
        w.snapshots.clear();
        let again = w.due(now());
        assert!(!again.in_sync);
        let recorded = w.promote(again, Ok(Duration::from_millis(3)));
        assert!(recorded.promoted, "{recorded:?}");
        assert_eq!(w.active_password().as_deref(), Some("one"));
        assert!(matches!(
            w.assess(now()),
            Assessment::Current { in_sync: true, .. }
        ));
    }

    #[test]
    fn resolve_checks_a_new_or_changed_server_now_and_a_current_one_at_revalidation() {
        let mut w = World::new(true);
        let first = w.due(now());
        assert!(!first.in_sync, "nothing is active yet");
        assert_eq!(first.versions.get("acme-pg").map(String::as_str), Some("1"));
        let recorded = w.promote(first, Ok(Duration::from_millis(3)));
        assert!(
            recorded.promoted && recorded.demoted.is_none(),
            "{recorded:?}"
        );
        assert_eq!(recorded.again, Some(Duration::from_secs(300)));
        assert_eq!(w.active_password().as_deref(), Some("one"));

        // Current: not probed again before the revalidation interval.
        match w.assess(now()) {
            Assessment::Current { in_sync, again } => {
                assert!(in_sync);
                assert_eq!(again, Some(Duration::from_secs(300)));
            }
            other => panic!("checked just now, yet {other:?}"),
        }
        let later = now() + jiff::SignedDuration::from_secs(301);
        assert!(
            w.due(later).in_sync,
            "revalidation re-checks the active entry"
        );

        // A rotated password: due now, and the active entry no longer matches it.
        w.secrets
            .insert("acme-pg".to_owned(), pg_secret("two", "2"));
        let rotated = w.due(now());
        assert!(!rotated.in_sync);
        assert!(w.promote(rotated, Ok(Duration::from_millis(3))).promoted);
        assert_eq!(w.active_password().as_deref(), Some("two"));
        assert_eq!(
            w.snapshots.len(),
            2,
            "a new snapshot, the old one kept for collection"
        );
    }

    #[test]
    fn promote_keeps_the_last_known_good_when_a_check_fails_and_demotes_only_for_the_policy() {
        let mut w = World::new(true);
        let first = w.due(now());
        w.promote(first, Ok(Duration::from_millis(3)));

        // Down: the health says so, the active entry keeps serving, a retry is scheduled.
        let again = w.due(now() + jiff::SignedDuration::from_secs(301));
        assert!(!needs_snapshot(
            &again,
            &Err(Failure::new(reason::UNREACHABLE, "refused", true))
        ));
        let down = w.promote(
            again,
            Err(Failure::new(reason::UNREACHABLE, "refused", true)),
        );
        assert_eq!(
            down,
            Recorded {
                promoted: false,
                demoted: None,
                again: Some(Duration::from_secs(10)),
            }
        );
        assert_eq!(w.active_password().as_deref(), Some("one"));
        let health = &w.status.servers["postgres"];
        assert_eq!(health.reason.as_deref(), Some(reason::UNREACHABLE));

        // Its name now resolves where the policy denies: out of service at once.
        let again = w.due(now() + jiff::SignedDuration::from_secs(301));
        let denied = w.promote(
            again,
            Err(Failure::new(
                reason::POLICY_DENIED,
                "resolves to 169.254.169.254",
                false,
            )),
        );
        assert_eq!(
            denied.demoted.as_deref(),
            Some("resolves to 169.254.169.254")
        );
        assert!(!denied.promoted);
        assert_eq!(w.active_password(), None, "the denied entry still serves");
    }

    #[test]
    fn a_server_without_credentials_is_promoted_without_a_snapshot() {
        let mut w = World::new(true);
        w.config = serde_yaml_ng::from_str(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\n\
             metadata: {name: acme, namespace: team-acme, uid: u}\n\
             spec: {tenantId: acme, servers: {aiMcpServer: {url: 'https://10.0.0.5/mcp'}}}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        w.key = ServerKey::AiMcp;
        let r = w.due(now());
        assert!(
            !needs_snapshot(&r, &Ok(Duration::ZERO)),
            "nothing to freeze"
        );
        assert!(w.promote(r, Ok(Duration::ZERO)).promoted);
        assert!(w.snapshots.is_empty());
        assert!(matches!(
            w.assess(now()),
            Assessment::Current { in_sync: true, .. }
        ));
    }
}

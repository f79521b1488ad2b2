//! The pure decisions of a reconcile: whether a config may be served at all (tenant binding,
//! conflicts, feature flags), which validation errors block which server type, when a server is
//! due for a check, and the conditions that follow from the servers' health. No I/O: every
//! function here is tested from YAML fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::conditions::{self, reason};
use crate::api::{
    GlobalMcpConfigSpec, McpConfigStatus, ServerHealth, ServerState, TenantMcpConfig,
};
use crate::config::binding::Verdict;
use crate::config::candidate::ServerKey;
use crate::config::failure::Failure;

/// Whether a config may be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Check and promote its servers.
    Served,
    /// Switched off (its own `enabled: false` or the global flag): nothing checked, nothing
    /// removed, everyone uses the global servers.
    Disabled(String),
    /// Another config serves this tenant.
    Conflict(String),
    /// The namespace is not bound to this tenant.
    NotBound(String),
}

impl Gate {
    /// The condition reason, for anything but `Served`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Served => reason::ALL_SERVERS_HEALTHY,
            Self::Disabled(_) => reason::DISABLED,
            Self::Conflict(_) => reason::CONFLICT,
            Self::NotBound(_) => reason::TENANT_NOT_BOUND,
        }
    }

    /// Whether the config must not be served by clients (its `status.active` is cleared).
    pub fn clears_active(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::NotBound(_))
    }
}

/// Whether `config` may be served, given the binding rule's `verdict`, the GlobalMcpConfig's
/// flag and the controller's own `--tenant-configs-enabled`.
pub fn gate(
    config: &TenantMcpConfig,
    verdict: &Verdict,
    global: Option<&GlobalMcpConfigSpec>,
    controller_flag: bool,
) -> Gate {
    let tenant = &config.spec.tenant_id;
    match verdict {
        Verdict::NotBound(_) | Verdict::Deleting => {
            return Gate::NotBound(verdict.message(tenant));
        }
        Verdict::Conflict { .. } => return Gate::Conflict(verdict.message(tenant)),
        Verdict::Serves => {}
    }
    if !config.spec.enabled {
        return Gate::Disabled(
            "spec.enabled is false: this tenant uses the global servers; nothing was deleted"
                .into(),
        );
    }
    let global_flag = global.is_none_or(|g| g.tenant_configs_enabled);
    if !global_flag || !controller_flag {
        let which = if global_flag {
            "the controller's --tenant-configs-enabled=false"
        } else {
            "GlobalMcpConfig default spec.tenantConfigsEnabled=false"
        };
        return Gate::Disabled(format!(
            "tenant configs are switched off ({which}): every tenant uses the global servers; nothing was deleted"
        ));
    }
    Gate::Served
}

pub use crate::config::failure::{SplitErrors, key_of_path, split_errors};

/// How often checks repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervals {
    /// Between re-checks of a healthy or non-retryably failing server; `None` turns them off.
    pub revalidate: Option<Duration>,
    /// Between re-checks of a server that failed for a passing reason (down, slow).
    pub retry: Duration,
}

/// When a server is next due for a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Check it now.
    Now,
    /// Check it after this long.
    In(Duration),
    /// Only a change triggers a check.
    OnChange,
}

/// Whether the server with `spec_hash` and Secret `versions` needs a check now under the
/// endpoint policy with `policy_hash`, given its last check `last`. A changed policy is a
/// changed input: every server is checked again at once.
pub fn due(
    last: Option<&ServerHealth>,
    spec_hash: &str,
    versions: &BTreeMap<String, String>,
    policy_hash: &str,
    now: Timestamp,
    intervals: Intervals,
) -> Due {
    let Some(last) = last else { return Due::Now };
    let same_input = last.spec_hash.as_deref() == Some(spec_hash)
        && &last.secret_versions == versions
        && last.policy_hash.as_deref() == Some(policy_hash);
    let Some(checked) = last.last_checked_at.as_ref().map(|t| t.0) else {
        return Due::Now;
    };
    if !same_input || last.state == ServerState::Pending {
        return Due::Now;
    }
    let every = match (last.state, last.reason.as_deref()) {
        (ServerState::Failing, Some(r)) if crate::config::failure::is_retryable_reason(r) => Some(
            intervals
                .retry
                .min(intervals.revalidate.unwrap_or(intervals.retry)),
        ),
        _ => intervals.revalidate,
    };
    let Some(every) = every else {
        return Due::OnChange;
    };
    let elapsed = now.duration_since(checked).unsigned_abs();
    if elapsed >= every {
        Due::Now
    } else {
        Due::In(every - elapsed)
    }
}

/// Sets condition `type_` in `conditions`, moving `lastTransitionTime` only when the status
/// flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let message: String = message.into();
    // Kubernetes caps condition messages at 32768 bytes.
    let message = truncate(&message, 4096);
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.last_transition_time = Time(now);
        }
        existing.status = status.into();
        existing.reason = reason.into();
        existing.message = message;
        existing.observed_generation = generation;
        return;
    }
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    });
}

/// Removes condition `type_`.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What the conditions are computed from.
#[derive(Clone, Debug)]
pub struct ConditionInputs<'a> {
    /// Whether the config is served.
    pub gate: &'a Gate,
    /// Every declared server.
    pub declared: &'a [ServerKey],
    /// Errors that block the whole config.
    pub config_wide: &'a [String],
    /// Static (validation) failures per server.
    pub invalid: &'a BTreeMap<ServerKey, Failure>,
    /// Servers whose active entry is exactly the declared spec and credentials.
    pub in_sync: &'a BTreeSet<ServerKey>,
    /// The mirror's outcome; `None` when no mirror is configured.
    pub mirror: Option<&'a Result<(), Failure>>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
}

/// Sets `observedGeneration` and the `Ready`, `Validated`, `Degraded` and `Mirrored`
/// conditions of `status` from its server health and `inputs`.
pub fn update_conditions(status: &mut McpConfigStatus, inputs: &ConditionInputs<'_>) {
    let (generation, now) = (inputs.generation, inputs.now);
    status.observed_generation = generation;
    let conds = &mut status.conditions;

    // Validated.
    let mut invalid_lines: Vec<String> = inputs.config_wide.to_vec();
    invalid_lines.extend(inputs.invalid.values().map(|f| f.message.clone()));
    let policy_denied = inputs
        .invalid
        .values()
        .any(|f| f.reason == reason::POLICY_DENIED);
    if invalid_lines.is_empty() {
        set_condition(
            conds,
            conditions::VALIDATED,
            true,
            reason::VALID,
            "the spec is valid",
            generation,
            now,
        );
    } else {
        let r = if policy_denied && inputs.config_wide.is_empty() {
            reason::POLICY_DENIED
        } else {
            reason::INVALID_SPEC
        };
        set_condition(
            conds,
            conditions::VALIDATED,
            false,
            r,
            invalid_lines.join("; "),
            generation,
            now,
        );
    }

    // Ready and Degraded.
    let failing: Vec<(String, &ServerHealth)> = inputs
        .declared
        .iter()
        .filter_map(|k| {
            let h = status.servers.get(&k.as_string())?;
            (h.state == ServerState::Failing).then(|| (k.as_string(), h))
        })
        .collect();
    let failing_text = failing
        .iter()
        .map(|(k, h)| {
            format!(
                "{k}: {}: {}",
                h.reason.as_deref().unwrap_or("Failing"),
                h.message.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let first_reason = failing
        .first()
        .and_then(|(_, h)| h.reason.clone())
        .unwrap_or_else(|| reason::SERVERS_FAILING.into());
    match inputs.gate {
        Gate::Served if !inputs.config_wide.is_empty() => {
            set_condition(
                conds,
                conditions::READY,
                false,
                reason::INVALID_SPEC,
                inputs.config_wide.join("; "),
                generation,
                now,
            );
        }
        Gate::Served if !failing.is_empty() => {
            let serving = failing
                .iter()
                .filter(|(k, _)| active_has(&status.active, k))
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>();
            let note = if serving.is_empty() {
                String::new()
            } else {
                format!(
                    " (the last-known-good config of {} keeps serving)",
                    serving.join(", ")
                )
            };
            set_condition(
                conds,
                conditions::READY,
                false,
                &first_reason,
                format!("{failing_text}{note}"),
                generation,
                now,
            );
        }
        Gate::Served => {
            let pending: Vec<String> = inputs
                .declared
                .iter()
                .filter(|k| !inputs.in_sync.contains(k))
                .map(ServerKey::as_string)
                .collect();
            if pending.is_empty() {
                let msg = if inputs.declared.is_empty() {
                    "no servers declared: every type uses the global servers".to_owned()
                } else {
                    format!(
                        "{} active and healthy",
                        inputs
                            .declared
                            .iter()
                            .map(ServerKey::as_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                set_condition(
                    conds,
                    conditions::READY,
                    true,
                    reason::ALL_SERVERS_HEALTHY,
                    msg,
                    generation,
                    now,
                );
            } else {
                set_condition(
                    conds,
                    conditions::READY,
                    false,
                    reason::PENDING,
                    format!("not checked yet: {}", pending.join(", ")),
                    generation,
                    now,
                );
            }
        }
        Gate::Disabled(m) | Gate::Conflict(m) | Gate::NotBound(m) => {
            set_condition(
                conds,
                conditions::READY,
                false,
                inputs.gate.reason(),
                m.clone(),
                generation,
                now,
            );
        }
    }
    if failing.is_empty() || *inputs.gate != Gate::Served {
        set_condition(
            conds,
            conditions::DEGRADED,
            false,
            reason::ALL_SERVERS_HEALTHY,
            "no declared server is failing",
            generation,
            now,
        );
    } else {
        set_condition(
            conds,
            conditions::DEGRADED,
            true,
            &first_reason,
            failing_text,
            generation,
            now,
        );
    }

    // Mirrored.
    match inputs.mirror {
        None => remove_condition(conds, conditions::MIRRORED),
        Some(Ok(())) => set_condition(
            conds,
            conditions::MIRRORED,
            true,
            reason::MIRRORED,
            "the active config is mirrored into tenant_configs",
            generation,
            now,
        ),
        Some(Err(f)) => set_condition(
            conds,
            conditions::MIRRORED,
            false,
            &f.reason,
            f.message.clone(),
            generation,
            now,
        ),
    }
}

fn active_has(active: &crate::api::ActiveConfig, key: &str) -> bool {
    match ServerKey::parse(key) {
        Some(ServerKey::Postgres) => active.postgres.is_some(),
        Some(ServerKey::Minio) => active.minio.is_some(),
        Some(ServerKey::AiMcp) => active.ai_mcp_server.is_some(),
        Some(ServerKey::Mcp(name)) => active.mcp_servers.contains_key(&name),
        None => false,
    }
}

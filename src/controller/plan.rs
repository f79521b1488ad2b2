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
pub fn due<'v, V>(
    last: Option<&ServerHealth>,
    spec_hash: &str,
    versions: &'v V,
    policy_hash: &str,
    now: Timestamp,
    intervals: Intervals,
) -> Due
where
    &'v V: IntoIterator<Item = (&'v String, &'v String)>,
{
    let Some(last) = last else { return Due::Now };
    let same_input = last.spec_hash.as_deref() == Some(spec_hash)
        && last
            .secret_versions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .eq(versions.into_iter().map(|(k, v)| (k.as_str(), v.as_str())))
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
    let failing = Failing::of(status, inputs.declared);
    let said = [
        (conditions::VALIDATED, validated(inputs)),
        (conditions::READY, ready(status, inputs, &failing)),
        (conditions::DEGRADED, degraded(inputs, &failing)),
    ];
    let conds = &mut status.conditions;
    for (type_, said) in said {
        set_condition(
            conds,
            type_,
            said.holds,
            &said.reason,
            said.message,
            generation,
            now,
        );
    }
    match mirrored(inputs) {
        None => remove_condition(conds, conditions::MIRRORED),
        Some(said) => set_condition(
            conds,
            conditions::MIRRORED,
            said.holds,
            &said.reason,
            said.message,
            generation,
            now,
        ),
    }
}

/// What one condition says: whether it holds, why, and what to tell a person.
struct Said {
    holds: bool,
    reason: String,
    message: String,
}

impl Said {
    fn new(holds: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            holds,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// The declared servers that are failing, by key, with their health.
struct Failing<'s> {
    servers: Vec<(String, &'s ServerHealth)>,
}

impl<'s> Failing<'s> {
    fn of(status: &'s McpConfigStatus, declared: &[ServerKey]) -> Self {
        let servers = declared
            .iter()
            .filter_map(|k| {
                let h: &ServerHealth = status.servers.get(&k.as_string())?;
                (h.state == ServerState::Failing).then(|| (k.as_string(), h))
            })
            .collect();
        Self { servers }
    }

    /// `key: Reason: message` of each, joined.
    fn text(&self) -> String {
        self.servers
            .iter()
            .map(|(k, h)| {
                format!(
                    "{k}: {}: {}",
                    h.reason.as_deref().unwrap_or("Failing"),
                    h.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The reason of the first one (the condition's reason).
    fn first_reason(&self) -> String {
        self.servers
            .first()
            .and_then(|(_, h)| h.reason.clone())
            .unwrap_or_else(|| reason::SERVERS_FAILING.into())
    }
}

/// `Validated`: every config-wide and per-server validation failure, or valid.
fn validated(inputs: &ConditionInputs<'_>) -> Said {
    let mut invalid_lines: Vec<String> = inputs.config_wide.to_vec();
    invalid_lines.extend(inputs.invalid.values().map(|f| f.message.clone()));
    if invalid_lines.is_empty() {
        return Said::new(true, reason::VALID, "the spec is valid");
    }
    let policy_denied = inputs
        .invalid
        .values()
        .any(|f| f.reason == reason::POLICY_DENIED);
    let r = if policy_denied && inputs.config_wide.is_empty() {
        reason::POLICY_DENIED
    } else {
        reason::INVALID_SPEC
    };
    Said::new(false, r, invalid_lines.join("; "))
}

/// `Ready`: served with every declared server active and healthy, or why not.
fn ready(status: &McpConfigStatus, inputs: &ConditionInputs<'_>, failing: &Failing<'_>) -> Said {
    match inputs.gate {
        Gate::Served if !inputs.config_wide.is_empty() => {
            Said::new(false, reason::INVALID_SPEC, inputs.config_wide.join("; "))
        }
        Gate::Served if !failing.servers.is_empty() => {
            let serving = failing
                .servers
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
            Said::new(
                false,
                &failing.first_reason(),
                format!("{}{note}", failing.text()),
            )
        }
        Gate::Served => served_ready(inputs),
        Gate::Disabled(m) | Gate::Conflict(m) | Gate::NotBound(m) => {
            Said::new(false, inputs.gate.reason(), m.clone())
        }
    }
}

/// `Ready` of a served config without failures: ready once every declared server was checked.
fn served_ready(inputs: &ConditionInputs<'_>) -> Said {
    let pending: Vec<String> = inputs
        .declared
        .iter()
        .filter(|k| !inputs.in_sync.contains(k))
        .map(ServerKey::as_string)
        .collect();
    if !pending.is_empty() {
        return Said::new(
            false,
            reason::PENDING,
            format!("not checked yet: {}", pending.join(", ")),
        );
    }
    let msg = if inputs.declared.is_empty() {
        "no servers declared: every type uses the global servers".to_owned()
    } else {
        let names: Vec<String> = inputs.declared.iter().map(ServerKey::as_string).collect();
        format!("{} active and healthy", names.join(", "))
    };
    Said::new(true, reason::ALL_SERVERS_HEALTHY, msg)
}

/// `Degraded`: a declared server of a served config is failing.
fn degraded(inputs: &ConditionInputs<'_>, failing: &Failing<'_>) -> Said {
    if failing.servers.is_empty() || *inputs.gate != Gate::Served {
        Said::new(
            false,
            reason::ALL_SERVERS_HEALTHY,
            "no declared server is failing",
        )
    } else {
        Said::new(true, &failing.first_reason(), failing.text())
    }
}

/// `Mirrored`: the mirror's outcome; none when no mirror is configured.
fn mirrored(inputs: &ConditionInputs<'_>) -> Option<Said> {
    Some(match inputs.mirror? {
        Ok(()) => Said::new(
            true,
            reason::MIRRORED,
            "the active config is mirrored into tenant_configs",
        ),
        Err(f) => Said::new(false, &f.reason, f.message.clone()),
    })
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

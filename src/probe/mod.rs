//! Connection tests of the servers a config declares: can we reach it, with these credentials,
//! and does it answer as expected. Used by the controller before promoting a config and by the
//! management MCP server before storing one.
//!
//! Every probe connects through [`crate::egress`] exactly as the client library will: the
//! endpoint's name and every address it resolves to are checked against the
//! [`EndpointPolicy`] on the connection itself (a name may resolve to a denied address however
//! harmless it looks). Each runs under a time limit and under a global cap on concurrent
//! probes, and fails with a [`ProbeError`] whose [`reason`](ProbeError::reason) a person can act
//! on and whose message never contains a credential.
//!
//! Probes know endpoints, not Kubernetes: credentials come in already resolved.

mod error;
pub mod mcp;
pub mod postgres;
pub mod s3;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::EndpointPolicy;
use crate::config::candidate::Candidate;
use crate::egress::{EgressCache, Lookup};

/// The reasons a probe reports: part of the one condition vocabulary in
/// [`crate::api::conditions::reason`].
pub use crate::api::conditions::reason;
pub use crate::egress::install_crypto_provider;
pub use error::ProbeError;

/// The global cap on concurrent probes, each tenant's share of it, the time limit of each,
/// and the connectors of the policy probes run under (shared between probes while the policy
/// stays the same).
#[derive(Clone, Debug)]
pub struct Prober {
    permits: Arc<Semaphore>,
    per_tenant: usize,
    tenants: Arc<Mutex<HashMap<String, Weak<Semaphore>>>>,
    egress: Arc<EgressCache>,
}

/// How many tenants' semaphores are kept before the unused ones are dropped.
const TENANT_SLOTS_KEPT: usize = 1024;

impl Prober {
    /// At most `max_concurrent` probes run at once, across all tenants, and at most a quarter
    /// of them (at least one) for any one tenant; names resolve with the system resolver.
    pub fn new(max_concurrent: usize) -> Self {
        Self::with_lookup(max_concurrent, Arc::new(crate::egress::SystemLookup))
    }

    /// As [`Self::new`], resolving names with `lookup`.
    pub fn with_lookup(max_concurrent: usize, lookup: Arc<dyn Lookup>) -> Self {
        let max = max_concurrent.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            per_tenant: (max / 4).max(1),
            tenants: Arc::default(),
            egress: Arc::new(EgressCache::new(lookup)),
        }
    }

    /// How many probes of one tenant run at once, at most.
    pub fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    /// Tenant `tenant`'s share: a config with many servers that never answer (a tarpit) holds
    /// at most this many of the global slots, so every other tenant's tests still run.
    fn tenant_permits(&self, tenant: &str) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(permits) = tenants.get(tenant).and_then(Weak::upgrade) {
            return permits;
        }
        if tenants.len() >= TENANT_SLOTS_KEPT {
            tenants.retain(|_, p| p.strong_count() > 0);
        }
        let permits = Arc::new(Semaphore::new(self.per_tenant));
        tenants.insert(tenant.to_owned(), Arc::downgrade(&permits));
        permits
    }

    /// Runs `probe` once a slot is free, failing with `Timeout` when it takes longer than
    /// `timeout` (waiting for a slot does not count).
    pub async fn run<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        // The semaphore is never closed.
        let _permit = self.permits.acquire().await;
        match tokio::time::timeout(timeout, probe).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::new(
                reason::TIMEOUT,
                format!("{what} did not answer within {}s", timeout.as_secs_f32()),
            )),
        }
    }
}

impl Prober {
    /// Connection-tests `candidate` (server `what` of `tenant`) under `policy`, within
    /// `timeout`: how long it took to answer.
    pub async fn test(
        &self,
        policy: &EndpointPolicy,
        tenant: &str,
        what: &str,
        candidate: &Candidate,
        timeout: Duration,
    ) -> Result<Duration, ProbeError> {
        let own = self.tenant_permits(tenant);
        // Never closed; held until this probe ends, and taken before a global slot so a
        // tenant's waiting probes queue behind its own, not everyone's.
        let _own = own.acquire().await;
        let egress = self
            .egress
            .get(policy)
            .map_err(|e| ProbeError::new(reason::PROTOCOL_ERROR, format!("{what}: {e}")))?;
        match candidate {
            Candidate::Postgres {
                spec,
                credentials,
                ca_pem,
            } => self
                .run(
                    what,
                    timeout,
                    postgres::probe_postgres(&egress, spec, credentials, ca_pem.as_deref()),
                )
                .await
                .map(|r| r.latency),
            Candidate::Minio { spec, credentials } => self
                .run(what, timeout, s3::probe_s3(&egress, spec, credentials))
                .await
                .map(|r| r.latency),
            Candidate::Mcp { spec, credentials } => self
                .run(
                    what,
                    timeout,
                    mcp::probe_mcp(&egress, spec, Some(tenant), credentials),
                )
                .await
                .map(|r| r.latency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_probes_time_out_and_the_cap_holds() {
        let prober = Prober::new(1);
        let err = prober
            .run("server x", Duration::from_millis(10), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, ProbeError>(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "Timeout");
        assert!(err.is_retryable());
        // With one slot, a second probe waits for the first instead of running beside it.
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let probe = || {
            let (running, most, prober) = (running.clone(), most.clone(), prober.clone());
            async move {
                prober
                    .run("s", Duration::from_secs(5), async {
                        let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, ProbeError>(())
                    })
                    .await
            }
        };
        let (a, b, c) = tokio::join!(probe(), probe(), probe());
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Issue 27, item 5 (threat model: a tenant admin must not make the platform unusable for
    /// other tenants): one tenant's config full of servers that accept and never answer holds
    /// at most its share of the slots; another tenant's test runs meanwhile, and is done
    /// before the first of the tarpit's probes times out.
    #[tokio::test]
    async fn one_tenants_tarpit_does_not_hold_every_probe_slot() {
        let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tarpit_port = tarpit.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = tarpit.accept().await {
                held.push(socket);
            }
        });
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let (policy, errors) = EndpointPolicy::compile(
            &crate::api::EndpointPolicySpec {
                allow_loopback: true,
                ..Default::default()
            },
            &crate::config::FieldPath::new("policy"),
        );
        assert!(errors.is_empty());
        let mcp = |port: u16| Candidate::Mcp {
            spec: serde_json::from_value(
                serde_json::json!({"url": format!("http://127.0.0.1:{port}/mcp")}),
            )
            .unwrap(),
            credentials: crate::config::McpCredentials::default(),
        };
        let prober = Prober::new(4);
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tarpits = Vec::new();
        for i in 0..12 {
            let (prober, policy, finished, candidate) = (
                prober.clone(),
                policy.clone(),
                finished.clone(),
                mcp(tarpit_port),
            );
            tarpits.push(tokio::spawn(async move {
                let result = prober
                    .test(
                        &policy,
                        "evil",
                        &format!("mcpServers.t{i}"),
                        &candidate,
                        Duration::from_secs(3),
                    )
                    .await;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                result
            }));
        }
        // Let the tarpit's probes take their slots.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let other = prober
            .test(
                &policy,
                "acme",
                "aiMcpServer",
                &mcp(closed_port),
                Duration::from_secs(3),
            )
            .await
            .unwrap_err();
        assert_eq!(other.reason(), "Unreachable", "{other}");
        assert_eq!(
            finished.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "acme's test waited for the tarpit's probes"
        );
        for t in tarpits.drain(..3) {
            assert_eq!(t.await.unwrap().unwrap_err().reason(), "Timeout");
        }
        for t in tarpits {
            t.abort();
        }
    }
}

//! Holding a write in flight at a real API server: a validating admission webhook, served by
//! the test over HTTPS, that the API server calls for the resources a test names, and that
//! answers a matching request only when the test releases it — allowed (the write lands late)
//! or denied (it never lands, as if the connection had dropped). Requests no hold matches are
//! allowed at once.
//!
//! This is how a fault test catches a process between two of its writes: the write is sent
//! and waiting at the API server, the test kills or freezes its sender, then decides the
//! write's fate. The API server waits for a webhook at most 30 s (`timeoutSeconds`); a hold
//! not released by then fails the request (`failurePolicy: Fail`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::tls::{Identity, TlsListener};

/// The name of the webhook configuration a hold installs.
pub const WEBHOOK_CONFIGURATION: &str = "e2e-admission-hold";
const CANARY_LABEL: &str = "e2e-admission-hold";

/// What a held request is told when it is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Admitted: the write goes on to storage, late.
    Allow,
    /// Refused: the write never lands (the sender, if still alive, gets an error).
    Deny,
}

/// Which admission requests a hold catches. Empty fields match anything.
#[derive(Clone, Debug, Default)]
pub struct HoldRule {
    /// The resource, e.g. `tenantmcpconfigs`.
    pub resource: String,
    /// The subresource, e.g. `status`; empty for the object itself.
    pub subresource: String,
    /// The namespace.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// The requesting user (e.g. `system:serviceaccount:ns:name`).
    pub user: Option<String>,
}

impl HoldRule {
    /// Writes to `resource` (`subresource`, or `""` for the object) named `name` in
    /// `namespace`.
    pub fn object(resource: &str, subresource: &str, namespace: &str, name: &str) -> Self {
        Self {
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            user: None,
        }
    }

    /// The same rule, for requests of `user` only.
    pub fn from_user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }

    fn matches(&self, request: &Value) -> bool {
        let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        request["resource"]["resource"].as_str() == Some(self.resource.as_str())
            && field(&request["subResource"]) == self.subresource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| field(&request["namespace"]) == *ns)
            && self
                .name
                .as_ref()
                .is_none_or(|n| field(&request["name"]) == *n)
            && self
                .user
                .as_ref()
                .is_none_or(|u| field(&request["userInfo"]["username"]) == *u)
    }
}

struct Hold {
    rule: HoldRule,
    held: watch::Sender<usize>,
    release: watch::Sender<Option<Release>>,
}

#[derive(Default)]
struct Shared {
    holds: Mutex<Vec<Arc<Hold>>>,
    canaries: watch::Sender<usize>,
}

/// A hold on matching requests; see [`AdmissionHold::hold`].
pub struct HoldHandle {
    hold: Arc<Hold>,
    shared: Arc<Shared>,
}

impl HoldHandle {
    /// How many requests are held now or were held and released.
    pub fn held(&self) -> usize {
        *self.hold.held.borrow()
    }

    /// Waits until `n` requests were held; panics after `timeout`.
    pub async fn wait_held(&self, n: usize, timeout: Duration) {
        let mut held = self.hold.held.subscribe();
        let reached = tokio::time::timeout(timeout, held.wait_for(|h| *h >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "fewer than {n} requests matching {:?} reached the API server within {timeout:?}",
            self.hold.rule
        );
    }

    /// Answers every request held with `release`; later matches are no longer held.
    pub fn release(&self, release: Release) {
        if let Ok(mut holds) = self.shared.holds.lock() {
            holds.retain(|h| !Arc::ptr_eq(h, &self.hold));
        }
        self.hold.release.send_replace(Some(release));
    }
}

/// A running hold webhook, registered with the API server; unregistered when dropped.
pub struct AdmissionHold {
    shared: Arc<Shared>,
    client: kube::Client,
    server: tokio::task::JoinHandle<()>,
}

impl AdmissionHold {
    /// Serves the webhook and registers it for writes (create, update, delete) to
    /// `resources` (e.g. `["tenantmcpconfigs", "tenantmcpconfigs/status"]`) of any API group;
    /// returns once the API server calls it.
    pub async fn install(client: &kube::Client, resources: &[&str]) -> anyhow::Result<Self> {
        let identity = Identity::generate("e2e-admission-hold", &[])?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address: SocketAddr = listener.local_addr()?;
        let tls = TlsListener::new(
            listener,
            identity.server_config().map_err(anyhow::Error::msg)?,
        )?;
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/validate", axum::routing::post(review))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(tls, app).await;
        });
        let ca = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            identity.ca_pem.as_bytes(),
        );
        let client_config = json!({"url": format!("https://{address}/validate"), "caBundle": ca});
        let webhook = |name: &str, resources: Value, selector: Value| {
            json!({
                "name": name,
                "clientConfig": client_config,
                "rules": [{"apiGroups": ["*"], "apiVersions": ["*"],
                           "operations": ["CREATE", "UPDATE", "DELETE"],
                           "resources": resources, "scope": "*"}],
                "objectSelector": selector,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": 30,
                "failurePolicy": "Fail",
            })
        };
        let configuration: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": WEBHOOK_CONFIGURATION},
            "webhooks": [
                webhook("hold.e2e.tenantmcp.dev", json!(resources), json!({})),
                webhook("canary.e2e.tenantmcp.dev", json!(["configmaps"]),
                        json!({"matchLabels": {CANARY_LABEL: "canary"}})),
            ],
        }))?;
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &configuration)
            .await?;
        let hold = Self {
            shared,
            client: client.clone(),
            server,
        };
        hold.wait_until_called().await?;
        Ok(hold)
    }

    /// Holds every request matching `rule` from now until [`HoldHandle::release`].
    pub fn hold(&self, rule: HoldRule) -> HoldHandle {
        let hold = Arc::new(Hold {
            rule,
            held: watch::channel(0).0,
            release: watch::channel(None).0,
        });
        if let Ok(mut holds) = self.shared.holds.lock() {
            holds.push(hold.clone());
        }
        HoldHandle {
            hold,
            shared: self.shared.clone(),
        }
    }

    /// The API server picks up a new webhook configuration from its own watch: dry-run creates
    /// of a labelled ConfigMap until one reaches the webhook.
    async fn wait_until_called(&self) -> anyhow::Result<()> {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), "default");
        let canary: ConfigMap = serde_json::from_value(json!({
            "metadata": {"generateName": "admission-hold-canary-",
                         "labels": {CANARY_LABEL: "canary"}}
        }))?;
        let mut called = self.shared.canaries.subscribe();
        for _ in 0..100 {
            api.create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &canary,
            )
            .await?;
            if *called.borrow_and_update() > 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the API server never called the admission hold webhook")
    }
}

impl Drop for AdmissionHold {
    fn drop(&mut self) {
        if let Ok(holds) = self.shared.holds.lock() {
            for hold in holds.iter() {
                hold.release.send_replace(Some(Release::Allow));
            }
        }
        self.server.abort();
        let api = Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = api
                    .delete(WEBHOOK_CONFIGURATION, &DeleteParams::default())
                    .await;
            });
        }
    }
}

async fn review(State(shared): State<Arc<Shared>>, Json(review): Json<Value>) -> Json<Value> {
    let request = &review["request"];
    let uid = request["uid"].clone();
    if request["resource"]["resource"].as_str() == Some("configmaps") {
        shared.canaries.send_modify(|n| *n += 1);
        return answer(uid, true);
    }
    let hold = shared
        .holds
        .lock()
        .ok()
        .and_then(|holds| holds.iter().find(|h| h.rule.matches(request)).cloned());
    let Some(hold) = hold else {
        return answer(uid, true);
    };
    hold.held.send_modify(|n| *n += 1);
    let mut release = hold.release.subscribe();
    // Answer before the API server gives up on the webhook (30 s), so the test decides.
    let released = tokio::time::timeout(Duration::from_secs(28), release.wait_for(Option::is_some))
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|r| *r));
    answer(uid, released == Some(Release::Allow))
}

fn answer(uid: Value, allowed: bool) -> Json<Value> {
    let mut response = json!({"uid": uid, "allowed": allowed});
    if !allowed {
        response["status"] =
            json!({"code": 503, "message": "dropped by the test's admission hold"});
    }
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

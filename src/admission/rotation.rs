//! Keeps the webhook's self-made serving certificate current: reads the Secret and the
//! `ValidatingWebhookConfiguration`, stores what [`certificate::renew`] decides (with the
//! Secret's resourceVersion as precondition, so replicas that renew at once store one
//! result), sets `caBundle` to the stored CAs, and serves the stored certificate. Every
//! replica runs it; all converge on what the Secret holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingWebhook, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

use super::certificate::{self, CertificateError, Lifetimes, Material, Renewal, keys};
use super::tls::ServingCert;

/// Where the certificate lives and who trusts it.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The webhook's namespace (the Secret's and the Service's).
    pub namespace: String,
    /// The Secret holding the CA and the serving certificate.
    pub secret: String,
    /// The `ValidatingWebhookConfiguration` whose `caBundle` is set.
    pub webhook_configuration: String,
    /// The Service the API server calls (its DNS names go in the certificate).
    pub service: String,
    /// How long the CA and the serving certificate live.
    pub lifetimes: Lifetimes,
}

impl SelfSigned {
    /// How often to look again: often enough that a renewal is picked up well inside the third
    /// of a certificate's life left when it is due, at most a minute.
    pub fn interval(&self) -> Duration {
        let seconds = self.lifetimes.interval_seconds();
        Duration::from_secs(u64::try_from(seconds).unwrap_or(60))
    }
}

/// What went wrong keeping the certificate.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Reading or writing the Secret or the webhook configuration.
    #[error("{what}: {source}")]
    Kube {
        /// Which object and what was done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// Making or reading a certificate.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The stored certificate could not be served.
    #[error("serving the stored certificate: {0}")]
    Serve(String),
}

/// Keeps the certificate current until the task is dropped; a failed round is logged and
/// retried at the next interval (the certificate served so far stays).
pub async fn run(kube: kube::Client, settings: SelfSigned, serving: Arc<ServingCert>) {
    loop {
        if let Err(e) = round(&kube, &settings, &serving).await {
            warn!(error = %e, secret = %settings.secret, "webhook certificate: will retry");
        }
        tokio::time::sleep(settings.interval()).await;
    }
}

/// One round: renew what is due (a step at a time), trust what is stored, serve it.
pub async fn round(
    kube: &kube::Client,
    settings: &SelfSigned,
    serving: &ServingCert,
) -> Result<(), RotationError> {
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &settings.namespace);
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(kube.clone());
    let hosts = certificate::service_hosts(&settings.service, &settings.namespace);
    let secret_err = |what: &str| {
        let what = format!("{what} Secret {}/{}", settings.namespace, settings.secret);
        move |source| RotationError::Kube { what, source }
    };
    // A CA renewal takes three steps (store the CA, trust it, sign with it); a few more
    // allow for a replica's write landing in between.
    for _ in 0..6 {
        let stored = secrets
            .get_opt(&settings.secret)
            .await
            .map_err(secret_err("reading"))?;
        let material = stored.as_ref().map(material_of);
        let configuration = configurations
            .get_opt(&settings.webhook_configuration)
            .await
            .map_err(|source| RotationError::Kube {
                what: format!(
                    "reading ValidatingWebhookConfiguration {}",
                    settings.webhook_configuration
                ),
                source,
            })?;
        let trusted = configuration
            .as_ref()
            .map(|c| trusted_bundle(c, &settings.service))
            .unwrap_or_default();
        let now = jiff::Timestamp::now().as_second();
        match certificate::renew(material.as_ref(), &trusted, &hosts, settings.lifetimes, now)? {
            Renewal::Store(next, why) => {
                let written = store(&secrets, stored, &next, &settings.secret).await;
                match written {
                    Ok(()) => {
                        info!(secret = %settings.secret, reason = why, "webhook certificate renewed")
                    }
                    // Another replica wrote first: start over from what it stored.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(secret_err("writing")(e)),
                }
            }
            Renewal::Current => {
                let material = material.unwrap_or_default();
                let configuration_missing = configuration.is_none();
                if let Some(configuration) = configuration
                    && trusted != material.ca_bundle
                {
                    let patched = trust(
                        &configurations,
                        configuration,
                        &settings.service,
                        &material.ca_bundle,
                    )
                    .await;
                    match patched {
                        Ok(()) => info!(
                            configuration = %settings.webhook_configuration,
                            "webhook caBundle set to the stored CAs"
                        ),
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(source) => {
                            return Err(RotationError::Kube {
                                what: format!(
                                    "setting caBundle of ValidatingWebhookConfiguration {}",
                                    settings.webhook_configuration
                                ),
                                source,
                            });
                        }
                    }
                    // With the new CA trusted, a certificate it signs may be due now.
                    continue;
                }
                if configuration_missing {
                    warn!(
                        configuration = %settings.webhook_configuration,
                        "no ValidatingWebhookConfiguration of that name: the API server will not call this webhook"
                    );
                }
                if serving
                    .set(&material.cert, &material.key)
                    .map_err(RotationError::Serve)?
                {
                    info!(secret = %settings.secret, "serving the stored webhook certificate");
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

fn material_of(secret: &Secret) -> Material {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .unwrap_or_default()
    };
    Material {
        ca_bundle: text(keys::CA_BUNDLE),
        ca_key: text(keys::CA_KEY),
        cert: text(keys::CERT),
        key: text(keys::KEY),
        ca_trusted_at: text(keys::CA_TRUSTED_AT).trim().parse().ok(),
    }
}

/// Writes `material`: creates the Secret, or replaces the one read (its resourceVersion as
/// precondition; a 409 means another replica wrote since).
async fn store(
    secrets: &Api<Secret>,
    read: Option<Secret>,
    material: &Material,
    name: &str,
) -> Result<(), kube::Error> {
    let trusted_at = material.ca_trusted_at.map(|at| at.to_string());
    let data: BTreeMap<String, ByteString> = [
        (keys::CERT, Some(&material.cert)),
        (keys::KEY, Some(&material.key)),
        (keys::CA_BUNDLE, Some(&material.ca_bundle)),
        (keys::CA_KEY, Some(&material.ca_key)),
        (keys::CA_TRUSTED_AT, trusted_at.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), ByteString(v?.clone().into_bytes()))))
    .collect();
    match read {
        Some(mut secret) => {
            secret.data = Some(data);
            secret.string_data = None;
            secrets
                .replace(name, &PostParams::default(), &secret)
                .await
                .map(|_| ())
        }
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "tenant-mcp".to_owned(),
                        )]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(data),
                ..Secret::default()
            };
            // A 409 here too when another replica created it first.
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map(|_| ())
        }
    }
}

/// The `caBundle` the API server uses for this webhook's Service: the one shared by every
/// webhook of the configuration that calls it (empty when they disagree or none is set, so
/// the next round sets them all).
fn trusted_bundle(configuration: &ValidatingWebhookConfiguration, service: &str) -> String {
    let mut bundles = ours(configuration, service).map(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    });
    let first = bundles.next().unwrap_or_default();
    if bundles.all(|b| b == first) {
        first
    } else {
        String::new()
    }
}

fn ours<'a>(
    configuration: &'a ValidatingWebhookConfiguration,
    service: &'a str,
) -> impl Iterator<Item = &'a ValidatingWebhook> + 'a {
    configuration
        .webhooks
        .iter()
        .flatten()
        .filter(move |w| calls(w, service))
}

/// Whether `webhook` calls the Service named `service`.
fn calls(webhook: &ValidatingWebhook, service: &str) -> bool {
    webhook
        .client_config
        .service
        .as_ref()
        .is_some_and(|s| s.name == service)
}

/// Sets `caBundle` of every webhook calling `service` to `bundle` (the configuration's
/// resourceVersion as precondition).
async fn trust(
    configurations: &Api<ValidatingWebhookConfiguration>,
    mut configuration: ValidatingWebhookConfiguration,
    service: &str,
    bundle: &str,
) -> Result<(), kube::Error> {
    for webhook in configuration.webhooks.iter_mut().flatten() {
        if calls(webhook, service) {
            webhook.client_config.ca_bundle = Some(ByteString(bundle.as_bytes().to_vec()));
        }
    }
    let name = configuration.metadata.name.clone().unwrap_or_default();
    configurations
        .replace(&name, &PostParams::default(), &configuration)
        .await
        .map(|_| ())
}

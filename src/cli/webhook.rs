//! `tenant-mcp webhook`: the validating admission webhook for TenantMcpConfig and
//! GlobalMcpConfig, over HTTPS on `/validate`, with a serving certificate it makes and renews
//! itself (`--certificate-secret`) or reads from files another issuer keeps current
//! (`--tls-cert-file`, e.g. cert-manager's Secret mounted as a volume).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tenant_mcp::admission::certificate::Lifetimes;
use tenant_mcp::admission::rotation::{self, SelfSigned};
use tenant_mcp::admission::{server, tls};

use super::controller::wait_for_signal;
use super::database::block_on;

/// Arguments of `webhook`.
#[derive(Debug, Args)]
// One of the two ways to a certificate, and the usage error names both.
#[command(group(
    clap::ArgGroup::new("certificate")
        .required(true)
        .args(["tls_cert_file", "certificate_secret"])
))]
pub struct WebhookArgs {
    /// Address to serve HTTPS on (`/validate`).
    #[arg(
        long,
        env = "TENANT_MCP_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:9443"
    )]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve, read again when it changes (cert-manager's `tls.crt`).
    #[arg(long, env = "TENANT_MCP_WEBHOOK_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "TENANT_MCP_WEBHOOK_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Make and renew the serving certificate in this Secret (with the CA that signs it),
    /// and keep the webhook configuration's caBundle set to that CA.
    #[arg(
        long,
        env = "TENANT_MCP_WEBHOOK_CERT_SECRET",
        requires_all = ["webhook_configuration", "service"]
    )]
    pub certificate_secret: Option<String>,
    /// The ValidatingWebhookConfiguration whose caBundle is kept (with --certificate-secret).
    #[arg(long, env = "TENANT_MCP_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// The Service the API server calls; the certificate names `<service>.<namespace>.svc`.
    #[arg(long, env = "TENANT_MCP_WEBHOOK_SERVICE")]
    pub service: Option<String>,
    /// The namespace of the Secret and the Service.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tenant-mcp-system")]
    pub namespace: String,
    /// How long a serving certificate lives (renewed with a third left), e.g. `2160h`.
    #[arg(long, env = "TENANT_MCP_WEBHOOK_CERT_LIFETIME", default_value = "2160h", value_parser = parse_lifetime)]
    pub certificate_lifetime: Duration,
    /// How long the CA lives (renewed with a third left; the old one stays trusted until it
    /// expires), e.g. `43800h`.
    #[arg(long, env = "TENANT_MCP_WEBHOOK_CA_LIFETIME", default_value = "43800h", value_parser = parse_lifetime)]
    pub ca_lifetime: Duration,
}

fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let span: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?}: expected a duration like 2160h or 90m ({e})"))?;
    let duration = Duration::try_from(span).map_err(|_| format!("{text:?}: must be positive"))?;
    if duration < Duration::from_secs(3) {
        return Err(format!("{text:?}: must be at least 3s"));
    }
    Ok(duration)
}

/// How often the certificate files are read again (a kubelet updates a mounted Secret within
/// about a minute).
const FILE_RELOAD: Duration = Duration::from_secs(10);

/// Serves the webhook until SIGTERM or Ctrl-C.
pub fn run(args: &WebhookArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        tenant_mcp::probe::install_crypto_provider();
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster, KUBECONFIG or ~/.kube/config)")?;
        let serving = tls::ServingCert::empty();
        if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
            load_files(&serving, cert, key)?;
            tokio::spawn(reload_files(serving.clone(), cert.clone(), key.clone()));
        } else if let Some(secret) = &args.certificate_secret {
            let lifetime = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let settings = SelfSigned {
                namespace: args.namespace.clone(),
                secret: secret.clone(),
                webhook_configuration: args.webhook_configuration.clone().unwrap_or_default(),
                service: args.service.clone().unwrap_or_default(),
                lifetimes: Lifetimes {
                    ca_seconds: lifetime(args.ca_lifetime),
                    serving_seconds: lifetime(args.certificate_lifetime),
                },
            };
            anyhow::ensure!(
                settings.lifetimes.ca_seconds > settings.lifetimes.serving_seconds,
                "--ca-lifetime must be longer than --certificate-lifetime"
            );
            // Serve only with a certificate: the first round must succeed (with retries, as
            // the API server may still be starting).
            let mut attempt = 0;
            while let Err(e) = rotation::round(&client, &settings, &serving).await {
                attempt += 1;
                anyhow::ensure!(attempt < 30, "making the webhook certificate: {e}");
                tracing::warn!(error = %e, "making the webhook certificate; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            tokio::spawn(rotation::run(client.clone(), settings, serving.clone()));
        }
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let listener =
            tls::TlsListener::new(tcp, serving.server_config()).context("starting TLS")?;
        tracing::info!(address = %args.listen, path = server::PATH, "admission webhook");
        axum::serve(listener, server::router(client))
            .with_graceful_shutdown(wait_for_signal())
            .await
            .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })?
}

fn load_files(
    serving: &Arc<tls::ServingCert>,
    cert: &PathBuf,
    key: &PathBuf,
) -> anyhow::Result<bool> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    serving
        .set(&read(cert)?, &read(key)?)
        .map_err(anyhow::Error::msg)
}

async fn reload_files(serving: Arc<tls::ServingCert>, cert: PathBuf, key: PathBuf) {
    loop {
        tokio::time::sleep(FILE_RELOAD).await;
        match load_files(&serving, &cert, &key) {
            Ok(true) => tracing::info!(file = %cert.display(), "serving the renewed certificate"),
            Ok(false) => {}
            // Mid-update (certificate written, key not yet): keep the current pair.
            Err(e) => {
                tracing::warn!(error = %e, "reading the certificate files; keeping the current one")
            }
        }
    }
}

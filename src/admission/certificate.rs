//! The webhook's serving certificate when the webhook makes its own (the chart's default): a
//! CA and a serving certificate it signed, kept in one Secret, and the rule for when each is
//! renewed. Pure: [`renew`] takes what is stored and what the API server trusts and returns
//! what to store next; `admission::rotation` does the reading and writing.
//!
//! Renewal never leaves the API server without a trusted certificate to talk to: a new CA is
//! first added to the trusted bundle beside the old one, and only a full interval after the
//! `ValidatingWebhookConfiguration`'s `caBundle` was seen holding it is a serving certificate
//! signed by it (every API server of a cluster must have seen the new bundle by then); the
//! old CA stays in the bundle until it expires.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::Digest as _;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The Secret keys (`kubernetes.io/tls`, plus the CA's key so the next serving certificate can
/// be signed by the same CA).
pub mod keys {
    /// The serving certificate (PEM).
    pub const CERT: &str = "tls.crt";
    /// The serving certificate's key (PEM).
    pub const KEY: &str = "tls.key";
    /// The CAs the API server is to trust (PEM, the current one first).
    pub const CA_BUNDLE: &str = "ca.crt";
    /// The current CA's key (PEM).
    pub const CA_KEY: &str = "ca.key";
    /// When the current CA was first seen in `caBundle` (Unix seconds, decimal).
    pub const CA_TRUSTED_AT: &str = "ca-trusted-at";
}

/// What went wrong making or reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen could not make or sign a certificate.
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A stored PEM block is not a certificate this module can read.
    #[error("reading {what}: {detail}")]
    Parse {
        /// Which part (`ca.crt`, `tls.crt`).
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
}

/// How long each certificate lives; each is renewed when a third of its life is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// The CA's lifetime, in seconds.
    pub ca_seconds: i64,
    /// The serving certificate's lifetime, in seconds (capped at the CA's remaining life).
    pub serving_seconds: i64,
}

impl Lifetimes {
    /// How often the webhook looks at its certificate: often enough that a renewal is picked
    /// up well inside the third of a certificate's life left when it is due, at most a minute.
    /// Also how long a CA must have been in `caBundle` before it signs the served certificate.
    pub fn interval_seconds(&self) -> i64 {
        (self.serving_seconds / 12).clamp(1, 60)
    }
}

impl Default for Lifetimes {
    /// A CA for five years, serving certificates for 90 days.
    fn default() -> Self {
        Self {
            ca_seconds: 5 * 365 * 24 * 3600,
            serving_seconds: 90 * 24 * 3600,
        }
    }
}

/// What the Secret holds, as PEM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Material {
    /// The CAs to trust, the current (signing) one first.
    pub ca_bundle: String,
    /// The current CA's private key.
    pub ca_key: String,
    /// The serving certificate.
    pub cert: String,
    /// The serving certificate's private key.
    pub key: String,
    /// When the current CA was first seen in the API server's `caBundle` (Unix seconds);
    /// `None` until then.
    pub ca_trusted_at: Option<i64>,
}

/// What [`renew`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Nothing to store now: the material is current, or the API server must first trust the
    /// current CA (the caller sets `caBundle` to the stored bundle, then asks again).
    Current,
    /// Store this, then call again (one step at a time: a new CA is stored before a
    /// certificate it signed is).
    Store(Material, &'static str),
}

/// One certificate's facts, from its DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's DER, to match issuers.
    pub subject: Vec<u8>,
    /// The issuer's DER.
    pub issuer: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The DNS names it is valid for.
    pub dns_names: Vec<String>,
}

/// Every certificate in `pem`, in order.
pub fn inspect(pem: &str, what: &'static str) -> Result<Vec<CertInfo>, CertificateError> {
    let parse = |detail: String| CertificateError::Parse { what, detail };
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| parse(e.to_string()))?;
        let cert = block.parse_x509().map_err(|e| parse(e.to_string()))?;
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(CertInfo {
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            dns_names,
        });
    }
    if out.is_empty() {
        return Err(parse("no certificate in it".into()));
    }
    Ok(out)
}

/// A certificate is due for renewal when less than a third of its life is left (cert-manager's
/// default), or it is not valid yet.
pub fn due(info: &CertInfo, now: i64) -> bool {
    let life = info.not_after - info.not_before;
    now < info.not_before || info.not_after - now < life / 3
}

/// The next step for the stored `material` (None: nothing stored yet, or unreadable), given
/// `trusted` (the `caBundle` the API server uses now), the DNS names the serving certificate
/// must cover, and `now` (Unix seconds).
pub fn renew(
    material: Option<&Material>,
    trusted: &str,
    hosts: &[String],
    lifetimes: Lifetimes,
    now: i64,
) -> Result<Renewal, CertificateError> {
    let Some(material) = material.filter(|m| readable(m)) else {
        // Nothing anyone trusts yet: a CA and its serving certificate at once.
        let (ca_cert, ca_key) = new_ca(lifetimes, now)?;
        let (cert, key) = new_serving(&ca_cert, &ca_key, hosts, lifetimes, now)?;
        return Ok(Renewal::Store(
            Material {
                ca_bundle: ca_cert,
                ca_key,
                cert,
                key,
                ca_trusted_at: None,
            },
            "no serving certificate stored yet",
        ));
    };
    let cas = inspect(&material.ca_bundle, keys::CA_BUNDLE)?;
    let current = &cas[0];
    let first_trusted = trusted_first_ca(&material.ca_bundle);
    // The API server this replica reads must trust the current CA (else the caller updates
    // `caBundle` first); others (several API servers, each with its own watch) may see it
    // later, so it signs only a full interval after it was first seen there.
    let in_bundle = trusted.contains(first_trusted.trim());
    let settled = in_bundle
        && material
            .ca_trusted_at
            .is_some_and(|at| now >= at.saturating_add(lifetimes.interval_seconds()));
    let leaf = &inspect(&material.cert, keys::CERT)?[0];
    let leaf_reason = serving_renewal(leaf, current, hosts, now);
    let sign = |reason| -> Result<Renewal, CertificateError> {
        let (cert, key) = new_serving(first_trusted, &material.ca_key, hosts, lifetimes, now)?;
        Ok(Renewal::Store(
            Material {
                cert,
                key,
                ..material.clone()
            },
            reason,
        ))
    };

    if due(current, now) {
        // A serving certificate that is due as well, or would not outlast the new CA's wait
        // (an interval after it is trusted, plus the rounds around it), is renewed by the
        // current CA first, while that one may still sign.
        let wait = now.saturating_add(3 * lifetimes.interval_seconds());
        let outlasts = leaf.not_after > wait;
        let reason = leaf_reason
            .or((!outlasts)
                .then_some("the serving certificate would expire before a new CA may sign"));
        // Only when the current CA itself outlasts the wait (a certificate it signs ends
        // with it); otherwise nothing better than a new CA at once is left.
        if let Some(reason) = reason
            && settled
            && now >= current.not_before
            && current.not_after > wait
        {
            return sign(reason);
        }
        let (ca_cert, ca_key) = new_ca(lifetimes, now)?;
        let mut bundle = ca_cert;
        bundle.push_str(&still_valid(&material.ca_bundle, now));
        return Ok(Renewal::Store(
            Material {
                ca_bundle: bundle,
                ca_key,
                ca_trusted_at: None,
                ..material.clone()
            },
            "the CA is due for renewal; the new one is trusted before it signs",
        ));
    }
    let pruned = still_valid(&material.ca_bundle, now);
    if pruned != material.ca_bundle {
        return Ok(Renewal::Store(
            Material {
                ca_bundle: pruned,
                ..material.clone()
            },
            "an expired CA leaves the bundle",
        ));
    }
    // Note when the current CA is first seen in caBundle.
    if in_bundle && material.ca_trusted_at.is_none() {
        return Ok(Renewal::Store(
            Material {
                ca_trusted_at: Some(now),
                ..material.clone()
            },
            "the current CA is in caBundle; it signs once every API server had an interval to see it",
        ));
    }
    match leaf_reason {
        Some(reason) if settled => sign(reason),
        _ => Ok(Renewal::Current),
    }
}

/// Why the serving certificate `leaf` must be made again under `current` (the CA that signs
/// now), if it must.
fn serving_renewal(
    leaf: &CertInfo,
    current: &CertInfo,
    hosts: &[String],
    now: i64,
) -> Option<&'static str> {
    if due(leaf, now) {
        Some("the serving certificate is due for renewal")
    } else if leaf.issuer != current.subject {
        Some("the serving certificate was not signed by the current CA")
    } else if hosts.iter().any(|h| !leaf.dns_names.contains(h)) {
        Some("the serving certificate does not name the webhook Service")
    } else {
        None
    }
}

fn readable(material: &Material) -> bool {
    inspect(&material.ca_bundle, keys::CA_BUNDLE).is_ok()
        && inspect(&material.cert, keys::CERT).is_ok()
        && KeyPair::from_pem(&material.ca_key).is_ok()
        && KeyPair::from_pem(&material.key).is_ok()
}

/// The bundle's first certificate, as PEM.
fn trusted_first_ca(bundle: &str) -> &str {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .find(END)
        .map_or(bundle, |i| &bundle[..i + END.len()])
}

/// The certificates of `bundle` that have not expired, as PEM (each ending in a newline).
fn still_valid(bundle: &str, now: i64) -> String {
    let mut out = String::new();
    for block in Pem::iter_from_buffer(bundle.as_bytes()).flatten() {
        let Ok(cert) = block.parse_x509() else {
            continue;
        };
        if cert.validity().not_after.timestamp() > now {
            out.push_str(&pem_of(&block.contents));
        }
    }
    out
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn validity(
    params: &mut CertificateParams,
    now: i64,
    seconds: i64,
    cap: i64,
) -> Result<(), CertificateError> {
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| CertificateError::Parse {
            what: "validity",
            detail: e.to_string(),
        })
    };
    // Slack for clocks a little behind ours: a minute, less for short lifetimes, so a third
    // of the life counted by `due` is a third of the life asked for.
    params.not_before = at(now - (seconds / 10).min(60))?;
    params.not_after = at((now + seconds).min(cap))?;
    Ok(())
}

fn new_ca(lifetimes: Lifetimes, now: i64) -> Result<(String, String), CertificateError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = KeyPair::generate()?;
    // A name of its own (from its key), so a serving certificate's issuer says which CA signed
    // it, even for two CAs made in the same second.
    let id = hex::encode(&sha2::Sha256::digest(key.public_key_raw())[..6]);
    params.distinguished_name.push(
        DnType::CommonName,
        format!("tenant-mcp webhook CA {now} {id}"),
    );
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, lifetimes.ca_seconds, i64::MAX / 2)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_serving(
    ca_cert: &str,
    ca_key: &str,
    hosts: &[String],
    lifetimes: Lifetimes,
    now: i64,
) -> Result<(String, String), CertificateError> {
    let ca_info = inspect(ca_cert, keys::CA_BUNDLE)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key)?)?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(
        &mut params,
        now,
        lifetimes.serving_seconds,
        ca_info[0].not_after,
    )?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The DNS names the API server uses for a webhook Service (`<service>.<namespace>.svc`, the
/// name it verifies), plus the cluster-local long form.
pub fn service_hosts(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

#[cfg(test)]
#[path = "certificate_tests.rs"]
mod tests;

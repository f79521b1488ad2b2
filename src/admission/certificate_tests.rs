use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 24 * 3600;

fn hosts() -> Vec<String> {
    service_hosts("t-tenant-mcp-webhook", "tenant-mcp-system")
}

fn stored(step: Result<Renewal, CertificateError>) -> Material {
    match step.expect("renew") {
        Renewal::Store(material, _) => material,
        Renewal::Current => panic!("expected something to store"),
    }
}

/// [`renew`] with the service's hosts and the default lifetimes.
fn renew_at(m: &Material, trusted: &str, now: i64) -> Result<Renewal, CertificateError> {
    renew(Some(m), trusted, &hosts(), Lifetimes::default(), now)
}

/// A CA and certificate made at `NOW`, their CA in `caBundle` since a day before.
fn fresh() -> Material {
    Material {
        ca_trusted_at: Some(NOW - DAY),
        ..stored(renew(None, "", &hosts(), Lifetimes::default(), NOW))
    }
}

/// Whether a TLS client trusting `bundle` (as the API server trusts `caBundle`) accepts the
/// serving certificate for the Service's name at `now`: rustls's webpki verifier, the same
/// checks Go's crypto/x509 makes (chain, validity, name).
fn accepted(material: &Material, bundle: &str, now: i64) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let leaf =
        CertificateDer::from_pem_slice(material.cert.as_bytes()).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(hosts()[0].clone()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(now).unwrap_or_default(),
            )),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn the_first_step_makes_a_ca_and_a_serving_certificate_for_the_service_name() {
    let m = fresh();
    accepted(&m, &m.ca_bundle, NOW).expect("the API server accepts it");
    let leaf = &inspect(&m.cert, keys::CERT).unwrap()[0];
    assert_eq!(leaf.dns_names, hosts());
    assert_eq!(leaf.not_after, NOW + 90 * DAY);
    let ca = &inspect(&m.ca_bundle, keys::CA_BUNDLE).unwrap();
    assert_eq!(ca.len(), 1);
    assert_eq!(ca[0].not_after, NOW + 5 * 365 * DAY);
}

#[test]
fn current_material_is_left_alone() {
    let m = fresh();
    let step = renew_at(&m, &m.ca_bundle, NOW + 59 * DAY);
    assert_eq!(step.unwrap(), Renewal::Current);
}

#[test]
fn a_serving_certificate_with_a_third_of_its_life_left_is_renewed_by_the_same_ca() {
    let m = fresh();
    let later = NOW + 61 * DAY;
    let next = stored(renew_at(&m, &m.ca_bundle, later));
    assert_eq!(
        next.ca_bundle, m.ca_bundle,
        "the CA stays: caBundle needs no change"
    );
    assert_ne!(next.cert, m.cert);
    accepted(&next, &m.ca_bundle, later).expect("trusted through the unchanged caBundle");
    assert_eq!(
        renew_at(&next, &m.ca_bundle, later).unwrap(),
        Renewal::Current
    );
}

#[test]
fn a_new_ca_is_trusted_beside_the_old_one_before_it_signs_anything() {
    let fresh = fresh();
    let later = NOW + 4 * 365 * DAY; // the CA has less than a third of its life left
    // The serving certificate is long expired by then too: the current CA, which may still
    // sign, renews it first (to its own end), so it outlasts the new CA's wait.
    let m = stored(renew_at(&fresh, &fresh.ca_bundle, later));
    assert_eq!(m.ca_bundle, fresh.ca_bundle);
    accepted(&m, &m.ca_bundle, later).expect("signed by the CA caBundle holds");
    // Then the CA.
    let with_new_ca = stored(renew_at(&m, &m.ca_bundle, later));
    let cas = inspect(&with_new_ca.ca_bundle, keys::CA_BUNDLE).unwrap();
    assert_eq!(
        cas.len(),
        2,
        "new CA first, the old one kept until it expires"
    );
    assert_eq!(inspect(&m.ca_bundle, keys::CA_BUNDLE).unwrap()[0], cas[1]);
    assert_eq!(
        with_new_ca.cert, m.cert,
        "no certificate signed by an untrusted CA yet"
    );

    // While the API server still trusts only the old bundle, nothing new is signed.
    assert_eq!(
        renew_at(&with_new_ca, &m.ca_bundle, later).unwrap(),
        Renewal::Current
    );
    // Once caBundle holds the new bundle, when that was first seen is recorded, and the
    // serving certificate is signed by the new CA only a full interval later (issue 34,
    // item 9: other API servers may see the new bundle later than the one read here).
    let seen = stored(renew_at(&with_new_ca, &with_new_ca.ca_bundle, later));
    assert_eq!(seen.ca_trusted_at, Some(later));
    assert_eq!(seen.cert, m.cert);
    let interval = Lifetimes::default().interval_seconds();
    assert_eq!(
        renew_at(&seen, &with_new_ca.ca_bundle, later + interval - 1).unwrap(),
        Renewal::Current
    );
    let renewed = stored(renew_at(&seen, &with_new_ca.ca_bundle, later + interval));
    let leaf = &inspect(&renewed.cert, keys::CERT).unwrap()[0];
    assert_eq!(leaf.issuer, cas[0].subject);
    accepted(&renewed, &with_new_ca.ca_bundle, later).expect("trusted through the new bundle");
    assert!(
        accepted(&renewed, &m.ca_bundle, later).is_err(),
        "the old bundle alone must not be what trusts it (the test would prove nothing)"
    );
}

#[test]
fn an_expired_ca_leaves_the_bundle() {
    let lifetimes = Lifetimes {
        ca_seconds: 30 * DAY,
        serving_seconds: 3 * DAY,
    };
    let m = stored(renew(None, "", &hosts(), lifetimes, NOW));
    let day_21 = NOW + 21 * DAY;
    let rotated = stored(renew(Some(&m), &m.ca_bundle, &hosts(), lifetimes, day_21));
    assert_eq!(
        inspect(&rotated.ca_bundle, keys::CA_BUNDLE).unwrap().len(),
        2
    );
    let after_old_expiry = NOW + 31 * DAY;
    let pruned = stored(renew(
        Some(&Material {
            cert: fresh_leaf(&rotated, lifetimes, after_old_expiry - DAY),
            ..rotated.clone()
        }),
        &rotated.ca_bundle,
        &hosts(),
        lifetimes,
        after_old_expiry,
    ));
    assert_eq!(
        inspect(&pruned.ca_bundle, keys::CA_BUNDLE).unwrap().len(),
        1
    );
}

fn fresh_leaf(m: &Material, lifetimes: Lifetimes, now: i64) -> String {
    let first = trusted_first_ca(&m.ca_bundle);
    new_serving(first, &m.ca_key, &hosts(), lifetimes, now)
        .unwrap()
        .0
}

#[test]
fn a_serving_certificate_never_outlives_its_ca() {
    let lifetimes = Lifetimes {
        ca_seconds: 10 * DAY,
        serving_seconds: 90 * DAY,
    };
    let m = stored(renew(None, "", &hosts(), lifetimes, NOW));
    let leaf = &inspect(&m.cert, keys::CERT).unwrap()[0];
    assert_eq!(leaf.not_after, NOW + 10 * DAY);
}

#[test]
fn a_certificate_for_another_service_name_is_reissued() {
    let m = fresh();
    let other = service_hosts("renamed-webhook", "tenant-mcp-system");
    let next = stored(renew(
        Some(&m),
        &m.ca_bundle,
        &other,
        Lifetimes::default(),
        NOW,
    ));
    assert_eq!(inspect(&next.cert, keys::CERT).unwrap()[0].dns_names, other);
}

#[test]
fn unreadable_material_is_replaced_by_a_new_ca_and_certificate() {
    let mut m = fresh();
    m.cert = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into();
    let next = stored(renew_at(&m, &m.ca_bundle, NOW));
    assert_ne!(next.ca_bundle, m.ca_bundle);
    accepted(&next, &next.ca_bundle, NOW).expect("a working pair");
    let mut keyless = fresh();
    keyless.ca_key.clear();
    assert!(matches!(
        renew_at(&keyless, &keyless.ca_bundle, NOW).unwrap(),
        Renewal::Store(..)
    ));
}

#[test]
fn a_serving_certificate_signed_by_a_foreign_ca_is_replaced() {
    let m = fresh();
    let foreign = fresh();
    let mixed = Material {
        cert: foreign.cert.clone(),
        key: foreign.key.clone(),
        ..m.clone()
    };
    let next = stored(renew_at(&mixed, &m.ca_bundle, NOW));
    accepted(&next, &m.ca_bundle, NOW).expect("signed by the stored CA again");
}

/// Issue 34, item 9 (threat model: the webhook must keep answering the API server): a cluster
/// with two API servers, the second seeing each `caBundle` write `LAG` seconds after the
/// first (its own watch), under `failurePolicy: Fail`. The webhook's rounds run as
/// `admission::rotation::round` runs them, against the first; every second of a CA renewal,
/// the certificate served must be one the second API server's bundle trusts. Signing with a
/// new CA in the round that wrote it into `caBundle` fails here.
#[test]
fn a_second_api_server_that_sees_the_new_bundle_late_never_meets_an_untrusted_certificate() {
    let lifetimes = Lifetimes {
        ca_seconds: 30 * DAY,
        serving_seconds: 3 * DAY,
    };
    let interval = lifetimes.interval_seconds();
    const LAG: i64 = 45;
    assert!(LAG < interval, "a lag the interval is meant to cover");
    let start = NOW + 20 * DAY - 2 * interval; // the CA falls due within the run
    let mut material = stored(renew(None, "", &hosts(), lifetimes, NOW));
    material.cert = fresh_leaf(&material, lifetimes, start - DAY);
    // (when written, bundle) of each caBundle write, as the first API server holds them.
    let mut writes: Vec<(i64, String)> = vec![(NOW, material.ca_bundle.clone())];
    let mut served = material.clone();
    let mut checked = 0;
    for now in start..start + 20 * interval {
        if (now - start) % interval == 0 {
            // One round: renew a step at a time, trust what is stored, serve it.
            for _ in 0..6 {
                let trusted = writes.last().map(|w| w.1.clone()).unwrap_or_default();
                match renew(Some(&material), &trusted, &hosts(), lifetimes, now).unwrap() {
                    Renewal::Store(next, _) => material = next,
                    Renewal::Current if trusted != material.ca_bundle => {
                        writes.push((now, material.ca_bundle.clone()));
                    }
                    Renewal::Current => {
                        served = material.clone();
                        break;
                    }
                }
            }
        }
        let second_sees = writes
            .iter()
            .rev()
            .find(|(at, _)| *at + LAG <= now)
            .map(|w| w.1.clone())
            .unwrap_or_default();
        accepted(&served, &second_sees, now).unwrap_or_else(|e| {
            panic!(
                "at +{}s the second API server refuses the webhook: {e}",
                now - start
            )
        });
        checked += 1;
    }
    let cas = inspect(&served.ca_bundle, keys::CA_BUNDLE).unwrap();
    assert_eq!(cas.len(), 2, "the run renewed the CA");
    assert_eq!(
        inspect(&served.cert, keys::CERT).unwrap()[0].issuer,
        cas[0].subject,
        "and served a certificate of the new CA by its end"
    );
    assert!(checked > 0);
}

/// A CA that falls due while the serving certificate has only a little life left: the current
/// CA renews the serving certificate first, so it outlasts the new CA's wait; a CA too close
/// to its own end for that is replaced at once (no loop of re-signing).
#[test]
fn a_serving_certificate_close_to_its_end_is_renewed_before_the_ca_is() {
    let lifetimes = Lifetimes {
        ca_seconds: 30 * DAY,
        serving_seconds: 3 * DAY,
    };
    let interval = lifetimes.interval_seconds();
    let at = NOW + 20 * DAY + 1; // the CA is due
    let mut m = stored(renew(None, "", &hosts(), lifetimes, NOW));
    m.ca_trusted_at = Some(NOW);
    // Signed 3 days minus 2 intervals ago: not due (a third of its life is a day), but it
    // ends within the new CA's wait.
    m.cert = fresh_leaf(&m, lifetimes, at - 3 * DAY + 2 * interval);
    let step = renew(Some(&m), &m.ca_bundle, &hosts(), lifetimes, at).unwrap();
    let Renewal::Store(renewed, why) = step else {
        panic!("expected a new serving certificate");
    };
    assert_eq!(renewed.ca_bundle, m.ca_bundle, "{why}");
    assert!(inspect(&renewed.cert, keys::CERT).unwrap()[0].not_after > at + 3 * interval);
    let next = stored(renew(Some(&renewed), &m.ca_bundle, &hosts(), lifetimes, at));
    assert_eq!(inspect(&next.ca_bundle, keys::CA_BUNDLE).unwrap().len(), 2);

    // A CA with less than the wait left: replaced at once.
    let end = NOW + 30 * DAY - interval;
    let late = stored(renew(Some(&m), &m.ca_bundle, &hosts(), lifetimes, end));
    assert_eq!(inspect(&late.ca_bundle, keys::CA_BUNDLE).unwrap().len(), 2);
}

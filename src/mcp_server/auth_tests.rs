#![allow(clippy::unwrap_used)] // tests fail loudly by design

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const SECRET: &[u8] = b"a-shared-secret-of-at-least-32-bytes!";

fn settings() -> AuthSettings {
    AuthSettings {
        issuer: Some("https://issuer.example".into()),
        audience: Some("tenant-mcp".into()),
        ..AuthSettings::default()
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims(roles: Value, tenant: Option<&str>) -> Value {
    json!({
        "sub": "alice", "iss": "https://issuer.example", "aud": "tenant-mcp",
        "exp": now() + 600, "roles": roles, "tenant": tenant,
    })
}

fn hs(claims: &Value) -> String {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    format!("Bearer {token}")
}

fn outcome(auth: &Authenticator, header: Option<&str>, access: Access<'_>) -> &'static str {
    match auth.authenticate(header).and_then(|c| c.authorize(access)) {
        Ok(()) => "ok",
        Err(AuthError::MissingToken) => "missing",
        Err(AuthError::InvalidToken(_)) => "invalid",
        Err(AuthError::Forbidden { .. }) => "forbidden",
    }
}

#[test]
fn the_authorization_matrix() {
    let auth = Authenticator::hs256(SECRET, settings()).unwrap();
    let uber = hs(&claims(json!(["uber_admin"]), None));
    let acme_admin = hs(&claims(json!(["tenant_admin"]), Some("acme")));
    let acme_admin_spaces = hs(&claims(json!("viewer tenant_admin"), Some("acme")));
    let admin_without_tenant = hs(&claims(json!(["tenant_admin"]), None));
    let no_role = hs(&claims(json!(["viewer"]), Some("acme")));
    let mut expired = claims(json!(["uber_admin"]), None);
    expired["exp"] = json!(now() - 3600);
    let mut wrong_issuer = claims(json!(["uber_admin"]), None);
    wrong_issuer["iss"] = json!("https://evil.example");
    let mut wrong_audience = claims(json!(["uber_admin"]), None);
    wrong_audience["aud"] = json!("another-service");
    let mut no_exp = claims(json!(["uber_admin"]), None);
    no_exp.as_object_mut().unwrap().remove("exp");
    let other_key = format!(
        "Bearer {}",
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!(["uber_admin"]), None),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!"),
        )
        .unwrap()
    );
    // alg "none": a header and claims with an empty signature.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "Bearer {}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!(["uber_admin"]), None))
    );

    let rows: &[(&str, Option<&str>, [&str; 3])] = &[
        // caller, header, [acme, globex, all tenants]
        ("uber admin", Some(&uber), ["ok", "ok", "ok"]),
        (
            "acme's tenant admin",
            Some(&acme_admin),
            ["ok", "forbidden", "forbidden"],
        ),
        (
            "roles as a string",
            Some(&acme_admin_spaces),
            ["ok", "forbidden", "forbidden"],
        ),
        (
            "tenant admin, no tenant",
            Some(&admin_without_tenant),
            ["forbidden"; 3],
        ),
        ("no known role", Some(&no_role), ["forbidden"; 3]),
        ("no token", None, ["missing"; 3]),
        ("not bearer", Some("Basic YWxpY2U6cHc="), ["missing"; 3]),
        ("expired", Some(&hs(&expired)), ["invalid"; 3]),
        ("wrong issuer", Some(&hs(&wrong_issuer)), ["invalid"; 3]),
        ("wrong audience", Some(&hs(&wrong_audience)), ["invalid"; 3]),
        ("no exp", Some(&hs(&no_exp)), ["invalid"; 3]),
        ("another key", Some(&other_key), ["invalid"; 3]),
        ("unsigned (alg none)", Some(&unsigned), ["invalid"; 3]),
        ("garbage", Some("Bearer not.a.jwt"), ["invalid"; 3]),
    ];
    for (who, header, expected) in rows {
        let got = [
            outcome(&auth, *header, Access::Tenant("acme")),
            outcome(&auth, *header, Access::Tenant("globex")),
            outcome(&auth, *header, Access::AllTenants),
        ];
        assert_eq!(&got, expected, "{who}");
    }
}

#[test]
fn refusals_say_why_without_repeating_the_token() {
    let auth = Authenticator::hs256(SECRET, settings()).unwrap();
    let header = hs(&claims(json!(["tenant_admin"]), Some("acme")));
    let caller = auth.authenticate(Some(&header)).unwrap();
    assert_eq!(caller.subject, "alice");
    let err = caller.authorize(Access::Tenant("globex")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "forbidden for \"alice\": a tenant_admin of \"acme\" may not act on tenant \"globex\""
    );
    let mut expired = claims(json!(["uber_admin"]), None);
    expired["exp"] = json!(now() - 3600);
    let header = hs(&expired);
    let err = auth.authenticate(Some(&header)).unwrap_err().to_string();
    assert!(err.contains("ExpiredSignature"), "{err}");
    assert!(!err.contains(header.trim_start_matches("Bearer ")), "{err}");
}

#[test]
fn a_short_hs256_secret_is_refused_at_startup() {
    let err = Authenticator::hs256(b"short", settings()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "HS256 secret: 5 bytes; expected at least 32"
    );
}

/// An ES256 key pair and its JWKS entry.
fn es256(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    // Uncompressed point: 0x04, x, y.
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
    });
    (encoding, jwk)
}

#[test]
fn es256_tokens_verify_against_the_jwks_key_named_by_kid() {
    let (key_a, jwk_a) = es256("a");
    let (key_b, jwk_b) = es256("b");
    let jwks = json!({"keys": [jwk_a, jwk_b]}).to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, &jwks).unwrap();
    let auth = Authenticator::from_jwks_file(&path, settings()).unwrap();
    let sign = |key: &EncodingKey, kid: Option<&str>| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        let token =
            jsonwebtoken::encode(&header, &claims(json!(["uber_admin"]), None), key).unwrap();
        format!("Bearer {token}")
    };
    assert_eq!(
        outcome(&auth, Some(&sign(&key_a, Some("a"))), Access::AllTenants),
        "ok"
    );
    assert_eq!(
        outcome(&auth, Some(&sign(&key_b, Some("b"))), Access::AllTenants),
        "ok"
    );
    // Signed by a, claiming b's kid; no kid with two keys; an unknown kid.
    for (header, why) in [
        (sign(&key_a, Some("b")), "InvalidSignature"),
        (sign(&key_a, None), "names no key"),
        (
            sign(&key_a, Some("c")),
            "no verification key with kid \"c\"",
        ),
    ] {
        let err = auth.authenticate(Some(&header)).unwrap_err().to_string();
        assert!(err.contains(why), "expected {why:?} in {err}");
    }
    // An HS256 token whose secret is the public key's JSON: algorithm confusion is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(json!(["uber_admin"]), None),
        &EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    let err = auth
        .authenticate(Some(&format!("Bearer {forged}")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("algorithm HS256; expected ES256"), "{err}");
}

#[test]
fn a_jwks_with_an_hmac_or_unknown_key_is_refused_at_startup() {
    let oct = json!({"keys": [{"kty": "oct", "alg": "HS256", "k": "c2VjcmV0"}]}).to_string();
    let err = Authenticator::from_jwks(&oct, settings())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keys[0].alg: Some(HS256); expected RS256 or ES256"),
        "{err}"
    );
    let err = Authenticator::from_jwks("{\"keys\": []}", settings())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no keys"), "{err}");
    let err = Authenticator::from_jwks_file(Path::new("/nonexistent/jwks.json"), settings())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("JWKS /nonexistent/jwks.json: "), "{err}");
}

/// With a JWKS (an identity provider that signs tokens for many services), a token is
/// accepted only for this server's issuer and audience: one minted by the same provider for
/// another service, or with no audience at all, is refused.
#[test]
fn a_jwks_token_for_another_audience_or_issuer_is_refused() {
    let (key, jwk) = es256("idp");
    let jwks = json!({"keys": [jwk]}).to_string();
    let auth = Authenticator::from_jwks(&jwks, settings()).unwrap();
    let sign = |claims: &Value| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("idp".into());
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, claims, &key).unwrap()
        )
    };
    let good = claims(json!(["uber_admin"]), None);
    assert_eq!(outcome(&auth, Some(&sign(&good)), Access::AllTenants), "ok");
    let mut other_audience = good.clone();
    other_audience["aud"] = json!("billing-service");
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://another-idp.example");
    let mut no_audience = good.clone();
    no_audience.as_object_mut().unwrap().remove("aud");
    let mut no_issuer = good.clone();
    no_issuer.as_object_mut().unwrap().remove("iss");
    for (what, claims) in [
        ("another audience", other_audience),
        ("another issuer", other_issuer),
        ("no audience", no_audience),
        ("no issuer", no_issuer),
    ] {
        assert_eq!(
            outcome(&auth, Some(&sign(&claims)), Access::AllTenants),
            "invalid",
            "{what}"
        );
    }
}

/// A JWKS server without an issuer and an audience would accept any token its identity
/// provider ever minted, for any service: it refuses to start.
#[test]
fn a_jwks_without_issuer_or_audience_is_refused_at_startup() {
    let (_, jwk) = es256("idp");
    let jwks = json!({"keys": [jwk]}).to_string();
    for (issuer, audience, missing) in [
        (None, Some("tenant-mcp"), "issuer"),
        (Some("https://issuer.example"), None, "audience"),
        (None, None, "issuer"),
    ] {
        let settings = AuthSettings {
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            ..AuthSettings::default()
        };
        let err = Authenticator::from_jwks(&jwks, settings)
            .unwrap_err()
            .to_string();
        assert!(err.contains(missing), "{err}");
        assert!(err.contains("required with a JWKS"), "{err}");
    }
}

/// HS256 keeps checking issuer and audience whenever they are set.
#[test]
fn hs256_checks_issuer_and_audience_when_set() {
    let auth = Authenticator::hs256(SECRET, settings()).unwrap();
    let mut other_audience = claims(json!(["uber_admin"]), None);
    other_audience["aud"] = json!("billing-service");
    let mut no_audience = claims(json!(["uber_admin"]), None);
    no_audience.as_object_mut().unwrap().remove("aud");
    for claims in [other_audience, no_audience] {
        assert_eq!(
            outcome(&auth, Some(&hs(&claims)), Access::AllTenants),
            "invalid"
        );
    }
}

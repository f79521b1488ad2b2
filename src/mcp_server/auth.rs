//! Who is calling the management server and what they may do.
//!
//! Callers present a bearer JWT: HS256 with a shared secret, or RS256/ES256 verified against a
//! JWKS file. With a JWKS the issuer and audience are required settings (the identity provider
//! signs tokens for other services too); with HS256 they are checked whenever set. A checked
//! claim must be present in the token. Expiry is always required. The tenant
//! comes from a configurable claim (default `tenant`), the roles from another (default
//! `roles`: an array, or a space-separated string). `uber_admin` may act on every tenant,
//! `tenant_admin` only on its own; anyone else is refused.

use std::collections::BTreeSet;
use std::path::Path;

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// An HS256 secret shorter than this is refused: it could be brute-forced offline.
pub const MIN_SECRET_BYTES: usize = 32;

/// What the tokens must say.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of), when set.
    pub audience: Option<String>,
    /// The claim holding the caller's tenant.
    pub tenant_claim: String,
    /// The claim holding the caller's roles.
    pub roles_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            tenant_claim: "tenant".into(),
            roles_claim: "roles".into(),
            leeway_seconds: 30,
        }
    }
}

/// A role the server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Every tenant.
    UberAdmin,
    /// The caller's own tenant.
    TenantAdmin,
}

impl Role {
    /// The claim value: `uber_admin` or `tenant_admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UberAdmin => "uber_admin",
            Self::TenantAdmin => "tenant_admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "uber_admin" => Some(Self::UberAdmin),
            "tenant_admin" => Some(Self::TenantAdmin),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `sub` (empty when the token has none).
    pub subject: String,
    /// The tenant claim, if present.
    pub tenant: Option<String>,
    /// The known roles among the roles claim.
    pub roles: BTreeSet<Role>,
}

/// What a call touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// One tenant's config.
    Tenant(&'a str),
    /// Every tenant's (a list without a tenant filter).
    AllTenants,
}

/// Why a caller was refused. Messages never repeat the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("authentication required: send `Authorization: Bearer <JWT>`")]
    MissingToken,
    /// The token failed verification.
    #[error("invalid bearer token: {0}")]
    InvalidToken(String),
    /// Authenticated, but not allowed.
    #[error("forbidden for {subject:?}: {reason}")]
    Forbidden {
        /// Who asked.
        subject: String,
        /// Why not.
        reason: String,
    },
}

/// A problem with the authentication settings themselves (found at startup).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The HS256 secret is too short.
    #[error("HS256 secret: {got} bytes; expected at least {MIN_SECRET_BYTES}")]
    ShortSecret {
        /// Its length.
        got: usize,
    },
    /// A JWKS (an identity provider that signs for many services) without the issuer and
    /// audience that pin tokens to this server.
    #[error(
        "--{0} is required with a JWKS: without it, any token the identity provider signed (for any service) would be accepted"
    )]
    MissingClaimCheck(&'static str),
    /// The JWKS file could not be read or parsed.
    #[error("JWKS {path}: {message}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// One verification key and the algorithm it is for.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    keys: Vec<Key>,
    settings: AuthSettings,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Authenticator {
    /// Tokens signed with HS256 and `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn hs256(secret: &[u8], settings: AuthSettings) -> Result<Self, AuthConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthConfigError::ShortSecret { got: secret.len() });
        }
        Ok(Self {
            keys: vec![Key {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            }],
            settings,
        })
    }

    /// Tokens signed with RS256 or ES256 by a key of the JWKS at `path`.
    pub fn from_jwks_file(path: &Path, settings: AuthSettings) -> Result<Self, AuthConfigError> {
        let err = |message: String| AuthConfigError::Jwks {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::from_jwks(&text, settings).map_err(|e| match e {
            AuthConfigError::Jwks { message, .. } => err(message),
            other => other,
        })
    }

    /// Tokens signed with RS256 or ES256 by a key of the JWKS document `json`. Keys for other
    /// algorithms (HMAC in particular) are refused: a public key must never verify a token
    /// that claims to be HMAC-signed with it.
    pub fn from_jwks(json: &str, settings: AuthSettings) -> Result<Self, AuthConfigError> {
        if settings.issuer.is_none() {
            return Err(AuthConfigError::MissingClaimCheck("issuer"));
        }
        if settings.audience.is_none() {
            return Err(AuthConfigError::MissingClaimCheck("audience"));
        }
        let err = |message: String| AuthConfigError::Jwks {
            path: "(inline)".into(),
            message,
        };
        let set: JwkSet = serde_json::from_str(json).map_err(|e| err(e.to_string()))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let algorithm = match jwk.common.key_algorithm {
                Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                Some(KeyAlgorithm::ES256) => Algorithm::ES256,
                other => {
                    return Err(err(format!(
                        "keys[{i}].alg: {other:?}; expected RS256 or ES256"
                    )));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| err(format!("keys[{i}]: {e}")))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(err("no keys".into()));
        }
        Ok(Self { keys, settings })
    }

    /// The caller of a request with this `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let invalid = |m: String| AuthError::InvalidToken(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        let key = self.key_for(header.kid.as_deref(), header.alg)?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present in the token, not merely equal
        // when present: jsonwebtoken checks only the claims it is told are required.
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| invalid(e.to_string()))?;
        let claims = data.claims;
        let tenant = match claims.get(&self.settings.tenant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(invalid(format!(
                    "claim {:?} must be a string",
                    self.settings.tenant_claim
                )));
            }
        };
        let roles = match claims.get(&self.settings.roles_claim) {
            None | Some(Value::Null) => BTreeSet::new(),
            Some(Value::String(s)) => s.split_whitespace().filter_map(Role::parse).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Role::parse)
                .collect(),
            Some(_) => {
                return Err(invalid(format!(
                    "claim {:?} must be an array of strings or a space-separated string",
                    self.settings.roles_claim
                )));
            }
        };
        Ok(Caller {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            tenant,
            roles,
        })
    }

    fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, AuthError> {
        let key = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or_else(|| {
            AuthError::InvalidToken(match kid {
                Some(kid) => format!("no verification key with kid {kid:?}"),
                None => "the token names no key (kid) and several keys are configured".into(),
            })
        })?;
        if key.algorithm != alg {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {alg:?}; expected {:?}",
                key.algorithm
            )));
        }
        Ok(key)
    }
}

impl Caller {
    /// Whether the caller may touch `access`: an uber admin anything, a tenant admin only its
    /// own tenant.
    pub fn authorize(&self, access: Access<'_>) -> Result<(), AuthError> {
        if self.roles.contains(&Role::UberAdmin) {
            return Ok(());
        }
        let forbidden = |reason: String| AuthError::Forbidden {
            subject: self.subject.clone(),
            reason,
        };
        if !self.roles.contains(&Role::TenantAdmin) {
            return Err(forbidden(
                "the token has neither the uber_admin nor the tenant_admin role".into(),
            ));
        }
        match (access, self.tenant.as_deref()) {
            (_, None) => Err(forbidden(
                "a tenant_admin token must name its tenant in the tenant claim".into(),
            )),
            (Access::Tenant(t), Some(own)) if t == own => Ok(()),
            (Access::Tenant(t), Some(own)) => Err(forbidden(format!(
                "a tenant_admin of {own:?} may not act on tenant {t:?}"
            ))),
            (Access::AllTenants, Some(own)) => Err(forbidden(format!(
                "a tenant_admin of {own:?} may only list its own tenant"
            ))),
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

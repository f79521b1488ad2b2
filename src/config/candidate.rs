//! A declared server with its credentials resolved from Secrets: what a probe tests and what a
//! snapshot Secret freezes. Pure: Secrets come in through a lookup function.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::failure::Failure;
pub use super::server_key::ServerKey;
use crate::api::{McpServer, PostgresServer, S3Server, ServersSpec};
use crate::config::{Credential, McpCredentials, PostgresCredentials, S3Credentials};

/// A server spec with the credentials it references, resolved. The spec is shared (`Arc`): the
/// client library keeps one copy per promoted server for its record and every endpoint built
/// from it, instead of one each (at 10,000 tenants the copies were a fifth of its heap).
#[derive(Clone, Debug, PartialEq)]
pub enum Candidate {
    /// A Postgres server, its login and the CA bundle of `caCertSecretRef`.
    Postgres {
        /// The spec.
        spec: Arc<PostgresServer>,
        /// The login.
        credentials: PostgresCredentials,
        /// PEM CA bundle, if referenced.
        ca_pem: Option<Vec<u8>>,
    },
    /// An S3 server and its keys.
    Minio {
        /// The spec.
        spec: Arc<S3Server>,
        /// The keys.
        credentials: S3Credentials,
    },
    /// An MCP server and its token and secret headers.
    Mcp {
        /// The spec.
        spec: Arc<McpServer>,
        /// Token and secret headers.
        credentials: McpCredentials,
    },
}

/// Snapshot Secret keys.
pub mod snapshot_keys {
    /// Postgres user name.
    pub const USERNAME: &str = "username";
    /// Postgres password.
    pub const PASSWORD: &str = "password";
    /// Postgres CA bundle.
    pub const CA_CERT: &str = "ca.crt";
    /// S3 access key id.
    pub const ACCESS_KEY_ID: &str = "accessKeyId";
    /// S3 secret access key.
    pub const SECRET_ACCESS_KEY: &str = "secretAccessKey";
    /// MCP bearer token.
    pub const BEARER_TOKEN: &str = "bearerToken";
    /// Prefix of MCP secret header values (`header.X-Api-Key`).
    pub const HEADER_PREFIX: &str = "header.";
}

impl Candidate {
    /// The hash of the spec alone (never of credentials), as in `status.active.*.specHash`.
    pub fn spec_hash(&self) -> String {
        let hash = match self {
            Self::Postgres { spec, .. } => crate::config::spec_hash(spec),
            Self::Minio { spec, .. } => crate::config::spec_hash(spec),
            Self::Mcp { spec, .. } => crate::config::spec_hash(spec),
        };
        // Serializing these plain structs cannot fail; an empty hash would only force a probe.
        hash.unwrap_or_default()
    }

    /// The spec as JSON, for `status.active`.
    pub fn spec_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Postgres { spec, .. } => serde_json::to_value(&**spec),
            Self::Minio { spec, .. } => serde_json::to_value(&**spec),
            Self::Mcp { spec, .. } => serde_json::to_value(&**spec),
        };
        value.unwrap_or_default()
    }

    /// The data of the snapshot Secret that freezes these credentials.
    pub fn snapshot_data(&self) -> BTreeMap<String, ByteString> {
        use snapshot_keys::*;
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &[u8]| {
            data.insert(k.to_owned(), ByteString(v.to_vec()));
        };
        match self {
            Self::Postgres {
                credentials,
                ca_pem,
                ..
            } => {
                put(USERNAME, credentials.username.as_bytes());
                put(PASSWORD, credentials.password.expose().as_bytes());
                if let Some(ca) = ca_pem {
                    put(CA_CERT, ca);
                }
            }
            Self::Minio { credentials, .. } => {
                put(ACCESS_KEY_ID, credentials.access_key_id.as_bytes());
                put(
                    SECRET_ACCESS_KEY,
                    credentials.secret_access_key.expose().as_bytes(),
                );
            }
            Self::Mcp { credentials, .. } => {
                if let Some(token) = &credentials.bearer_token {
                    put(BEARER_TOKEN, token.expose().as_bytes());
                }
                for (name, value) in &credentials.headers {
                    put(&format!("{HEADER_PREFIX}{name}"), value.expose().as_bytes());
                }
            }
        }
        data
    }
}

/// Reads the credentials a snapshot Secret froze (the inverse of [`Candidate::snapshot_data`]).
pub fn postgres_from_snapshot(secret: &Secret) -> Option<PostgresCredentials> {
    Some(PostgresCredentials {
        username: text(secret, snapshot_keys::USERNAME)?,
        password: Credential::new(text(secret, snapshot_keys::PASSWORD)?),
    })
}

/// See [`postgres_from_snapshot`].
pub fn s3_from_snapshot(secret: &Secret) -> Option<S3Credentials> {
    Some(S3Credentials {
        access_key_id: text(secret, snapshot_keys::ACCESS_KEY_ID)?,
        secret_access_key: Credential::new(text(secret, snapshot_keys::SECRET_ACCESS_KEY)?),
    })
}

/// See [`postgres_from_snapshot`].
pub fn mcp_from_snapshot(secret: &Secret) -> McpCredentials {
    let mut credentials = McpCredentials {
        bearer_token: text(secret, snapshot_keys::BEARER_TOKEN).map(Credential::new),
        ..McpCredentials::default()
    };
    for (key, value) in secret.data.iter().flatten() {
        // The controller writes only validated names; a key it did not write (a Secret
        // recreated under the snapshot's name) must not set a header the client manages.
        if let Some(name) = key.strip_prefix(snapshot_keys::HEADER_PREFIX)
            && super::validate::is_settable_header(name)
            && let Ok(v) = String::from_utf8(value.0.clone())
        {
            credentials
                .headers
                .insert(name.to_owned(), Credential::new(v));
        }
    }
    credentials
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Resolves the credentials of server `key` of `servers` from the Secrets `lookup` finds by
/// name (in the config's own namespace).
pub fn resolve(
    servers: &ServersSpec,
    key: &ServerKey,
    lookup: &dyn Fn(&str) -> Option<Secret>,
) -> Result<Candidate, Failure> {
    let reader = Reader { key, lookup };
    match key {
        ServerKey::Postgres => {
            let spec = servers
                .postgres
                .as_deref()
                .cloned()
                .ok_or_else(|| missing_server(key))?;
            let r = &spec.credentials_secret_ref;
            let field = "credentialsSecretRef";
            let username = reader.text(field, &r.name, "usernameKey", &r.username_key)?;
            let password = reader.text(field, &r.name, "passwordKey", &r.password_key)?;
            let ca_pem = match &spec.ca_cert_secret_ref {
                Some(ca) => Some(reader.bytes("caCertSecretRef", &ca.name, "key", &ca.key)?),
                None => None,
            };
            Ok(Candidate::Postgres {
                credentials: PostgresCredentials {
                    username,
                    password: Credential::new(password),
                },
                ca_pem,
                spec: Arc::new(spec),
            })
        }
        ServerKey::Minio => {
            let spec = servers
                .minio
                .as_deref()
                .cloned()
                .ok_or_else(|| missing_server(key))?;
            let r = &spec.credentials_secret_ref;
            let field = "credentialsSecretRef";
            let access_key_id =
                reader.text(field, &r.name, "accessKeyIdKey", &r.access_key_id_key)?;
            let secret = reader.text(
                field,
                &r.name,
                "secretAccessKeyKey",
                &r.secret_access_key_key,
            )?;
            Ok(Candidate::Minio {
                credentials: S3Credentials {
                    access_key_id,
                    secret_access_key: Credential::new(secret),
                },
                spec: Arc::new(spec),
            })
        }
        ServerKey::AiMcp | ServerKey::Mcp(_) => {
            let spec = match key {
                ServerKey::AiMcp => servers.ai_mcp_server.as_deref().cloned(),
                ServerKey::Mcp(name) => servers
                    .mcp_servers
                    .iter()
                    .find(|n| &n.name == name)
                    .map(|n| n.server.clone()),
                _ => None,
            }
            .ok_or_else(|| missing_server(key))?;
            let mut credentials = McpCredentials::default();
            if let Some(t) = &spec.bearer_token_secret_ref {
                let token = reader.text("bearerTokenSecretRef", &t.name, "key", &t.key)?;
                credentials.bearer_token = Some(Credential::new(token));
            }
            for (i, header) in spec.headers.iter().enumerate() {
                if let Some(from) = &header.value_from {
                    let field = format!("headers[{i}].valueFrom");
                    let value = reader.text(&field, &from.name, "key", &from.key)?;
                    credentials
                        .headers
                        .insert(header.name.clone(), Credential::new(value));
                }
            }
            Ok(Candidate::Mcp {
                spec: Arc::new(spec),
                credentials,
            })
        }
    }
}

fn missing_server(key: &ServerKey) -> Failure {
    Failure::new(
        crate::api::conditions::reason::INVALID_SPEC,
        format!("{} is not declared", key.field()),
        false,
    )
}

struct Reader<'a> {
    key: &'a ServerKey,
    lookup: &'a dyn Fn(&str) -> Option<Secret>,
}

impl Reader<'_> {
    fn bytes(
        &self,
        field: &str,
        name: &str,
        key_field: &str,
        key: &str,
    ) -> Result<Vec<u8>, Failure> {
        let path = format!("{}.{field}", self.key.field());
        let secret = (self.lookup)(name).ok_or_else(|| {
            Failure::new(
                crate::api::conditions::reason::SECRET_NOT_FOUND,
                format!("{path}: Secret {name:?} does not exist in this namespace"),
                false,
            )
        })?;
        let from_data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone());
        let from_string = || {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.as_bytes().to_vec())
        };
        from_data.or_else(from_string).ok_or_else(|| {
            let mut keys: Vec<&str> = secret
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k.as_str())
                .collect();
            keys.sort_unstable();
            Failure::new(
                crate::api::conditions::reason::SECRET_KEY_MISSING,
                format!(
                    "{path}: Secret {name:?} has no key {key:?} (named by {key_field}); it has {keys:?}"
                ),
                false,
            )
        })
    }

    fn text(&self, field: &str, name: &str, key_field: &str, key: &str) -> Result<String, Failure> {
        let bytes = self.bytes(field, name, key_field, key)?;
        String::from_utf8(bytes).map_err(|_| {
            Failure::new(
                crate::api::conditions::reason::SECRET_KEY_MISSING,
                format!(
                    "{}.{field}: key {key:?} of Secret {name:?} is not UTF-8 text",
                    self.key.field()
                ),
                false,
            )
        })
    }
}

/// Whether `secret` is the snapshot Secret an active entry recorded: the one with uid
/// `recorded_uid`. A Secret deleted and recreated under the snapshot's name (same type, same
/// owner reference) has another uid and is not. Entries promoted before uids were recorded
/// carry none and match by name, as they did.
pub fn is_recorded_snapshot(secret: &Secret, recorded_uid: Option<&str>) -> bool {
    recorded_uid.is_none_or(|uid| secret.metadata.uid.as_deref() == Some(uid))
}

/// The uid of the snapshot Secret of the active entry of `key` in `active`, if recorded.
pub fn active_snapshot_uid(active: &crate::api::ActiveConfig, key: &ServerKey) -> Option<String> {
    fn pick<T>(a: &crate::api::ActiveServer<T>) -> Option<String> {
        a.snapshot_uid.clone()
    }
    match key {
        ServerKey::Postgres => active.postgres.as_deref().and_then(pick),
        ServerKey::Minio => active.minio.as_deref().and_then(pick),
        ServerKey::AiMcp => active.ai_mcp_server.as_deref().and_then(pick),
        ServerKey::Mcp(name) => active.mcp_servers.get(name).and_then(pick),
    }
}

/// The spec hash and snapshot Secret of the active entry of `key` in `active`, if any.
pub fn active_entry(
    active: &crate::api::ActiveConfig,
    key: &ServerKey,
) -> Option<(String, Option<String>)> {
    fn pick<T>(a: &crate::api::ActiveServer<T>) -> (String, Option<String>) {
        (a.spec_hash.clone(), a.snapshot_secret.clone())
    }
    match key {
        ServerKey::Postgres => active.postgres.as_deref().map(pick),
        ServerKey::Minio => active.minio.as_deref().map(pick),
        ServerKey::AiMcp => active.ai_mcp_server.as_deref().map(pick),
        ServerKey::Mcp(name) => active.mcp_servers.get(name).map(pick),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(uid: Option<&str>, data: &[(&str, &str)]) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.uid = uid.map(str::to_owned);
        secret.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        secret
    }

    /// Issue 27, item 7: a Secret recreated under a snapshot's name has another uid.
    #[test]
    fn only_the_recorded_snapshot_is_the_snapshot() {
        let genuine = secret(Some("uid-1"), &[]);
        assert!(is_recorded_snapshot(&genuine, Some("uid-1")));
        assert!(!is_recorded_snapshot(&genuine, Some("uid-2")));
        assert!(!is_recorded_snapshot(&secret(None, &[]), Some("uid-1")));
        // Entries promoted before uids were recorded match by name, as before.
        assert!(is_recorded_snapshot(&genuine, None));
    }

    /// Issue 27, item 7: `header.*` keys of a snapshot pass the same header rule as a spec's
    /// `headers`, so a Secret the controller did not write cannot set `Host` and the like.
    #[test]
    fn a_snapshot_cannot_set_a_header_the_client_manages() {
        let snap = secret(
            None,
            &[
                ("bearerToken", "t"),
                ("header.X-Team", "rag"),
                ("header.Host", "internal.example"),
                ("header.transfer-encoding", "chunked"),
                ("header.Mcp-Session-Id", "stolen"),
                ("header.Bad Name", "x"),
            ],
        );
        let credentials = mcp_from_snapshot(&snap);
        let names: Vec<&str> = credentials.headers.keys().map(String::as_str).collect();
        assert_eq!(names, ["X-Team"]);
    }
}

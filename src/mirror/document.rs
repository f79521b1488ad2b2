//! The document mirrored into `tenant_configs.mcp_server_config`: a tenant's active config per
//! server type, as in `status.active`, plus the credentials that were tested, each sealed in an
//! [`Envelope`]. Non-secret fields stay plain JSON so operators can query endpoints.
//!
//! A [`MirrorDocument`] is generic over how a credential is held: [`Credential`] in memory
//! (never serializable), [`Envelope`] at rest. [`MirrorDocument::seal`] and
//! [`SealedDocument::open`] convert between the two; the envelope of each credential is bound
//! to the tenant and to its JSON path in the document (e.g.
//! `servers.postgres.credentials.password`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MirrorError;
use crate::api::{ActiveServer, McpServer, PostgresServer, S3Server};
use crate::config::Credential;
use crate::crypto::{Envelope, Keyring};

/// The `format` of every document this version writes.
pub const DOCUMENT_FORMAT: &str = "tenant-mcp.mirror.v1";

/// Whether the platform should use a mirrored config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MirrorState {
    /// The tenant's config is in use.
    #[default]
    Active,
    /// Tenant configs are switched off (the tenant's `enabled: false` or the global feature
    /// flag): the data is kept, but everyone uses the global servers.
    Disabled,
}

/// The custom resource a document was built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSource {
    /// Namespace of the `TenantMcpConfig`.
    pub namespace: String,
    /// Name of the `TenantMcpConfig`.
    pub name: String,
}

/// A tenant's mirrored config, with credentials held as `S`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorDocument<S> {
    /// The tenant, equal to the row's `tenant_id`.
    pub tenant_id: String,
    /// Whether the config is in use.
    pub state: MirrorState,
    /// Where the config came from.
    pub source: ConfigSource,
    /// The active servers with their credentials.
    pub servers: MirrorServers<S>,
}

/// The active servers of a tenant, by type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "S: Deserialize<'de>"))]
pub struct MirrorServers<S> {
    /// The active Postgres server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<MirroredServer<PostgresServer, PostgresSecrets<S>>>,
    /// The active MinIO/S3 server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Option<MirroredServer<S3Server, S3Secrets<S>>>,
    /// The active AI MCP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_mcp_server: Option<MirroredServer<McpServer, McpSecrets<S>>>,
    /// The further active MCP servers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, MirroredServer<McpServer, McpSecrets<S>>>,
}

// Derived `Default` would demand `S: Default`.
impl<S> Default for MirrorServers<S> {
    fn default() -> Self {
        Self {
            postgres: None,
            minio: None,
            ai_mcp_server: None,
            mcp_servers: BTreeMap::new(),
        }
    }
}

/// One active server (as `status.active` has it) and the credentials that were tested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirroredServer<T, C> {
    /// The promoted spec, its hash, snapshot Secret and promotion time.
    #[serde(flatten)]
    pub active: ActiveServer<T>,
    /// The credentials.
    pub credentials: C,
}

/// Postgres credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSecrets<S> {
    /// User name (not secret).
    pub username: String,
    /// Password.
    pub password: S,
}

/// S3 credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Secrets<S> {
    /// Access key id (not secret).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: S,
}

/// MCP server credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "S: Deserialize<'de>"))]
pub struct McpSecrets<S> {
    /// The bearer token, if the server takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<S>,
    /// Values of headers read from Secrets (`headers[].valueFrom`), by header name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, S>,
}

// Derived `Default` would demand `S: Default`.
impl<S> Default for McpSecrets<S> {
    fn default() -> Self {
        Self {
            bearer_token: None,
            headers: BTreeMap::new(),
        }
    }
}

/// A document as stored: credentials sealed, with its format and a keyed content hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedDocument {
    /// Always [`DOCUMENT_FORMAT`].
    pub format: String,
    /// [`Keyring::content_mac`] of the plaintext document: equal hashes mean equal content
    /// (under the same key).
    pub content_hash: String,
    /// The document.
    #[serde(flatten)]
    pub document: MirrorDocument<Envelope>,
}

impl<S> MirrorDocument<S> {
    /// Converts every credential with `f(path, credential)`, where `path` is the credential's
    /// JSON path in the document.
    pub fn try_map<T, E>(
        &self,
        mut f: impl FnMut(&[&str], &S) -> Result<T, E>,
    ) -> Result<MirrorDocument<T>, E> {
        let s = &self.servers;
        let postgres = s
            .postgres
            .as_ref()
            .map(|pg| {
                let path = ["servers", "postgres", "credentials", "password"];
                Ok(MirroredServer {
                    active: pg.active.clone(),
                    credentials: PostgresSecrets {
                        username: pg.credentials.username.clone(),
                        password: f(&path, &pg.credentials.password)?,
                    },
                })
            })
            .transpose()?;
        let minio = s
            .minio
            .as_ref()
            .map(|s3| {
                let path = ["servers", "minio", "credentials", "secretAccessKey"];
                Ok(MirroredServer {
                    active: s3.active.clone(),
                    credentials: S3Secrets {
                        access_key_id: s3.credentials.access_key_id.clone(),
                        secret_access_key: f(&path, &s3.credentials.secret_access_key)?,
                    },
                })
            })
            .transpose()?;
        let ai_mcp_server = s
            .ai_mcp_server
            .as_ref()
            .map(|mcp| map_mcp(&["servers", "aiMcpServer"], mcp, &mut f))
            .transpose()?;
        let mut mcp_servers = BTreeMap::new();
        for (name, mcp) in &s.mcp_servers {
            let server = map_mcp(&["servers", "mcpServers", name], mcp, &mut f)?;
            mcp_servers.insert(name.clone(), server);
        }
        Ok(MirrorDocument {
            tenant_id: self.tenant_id.clone(),
            state: self.state,
            source: self.source.clone(),
            servers: MirrorServers {
                postgres,
                minio,
                ai_mcp_server,
                mcp_servers,
            },
        })
    }
}

fn map_mcp<S, T, E>(
    prefix: &[&str],
    server: &MirroredServer<McpServer, McpSecrets<S>>,
    f: &mut impl FnMut(&[&str], &S) -> Result<T, E>,
) -> Result<MirroredServer<McpServer, McpSecrets<T>>, E> {
    let mut path: Vec<&str> = prefix.to_vec();
    path.push("credentials");
    let bearer_token = match &server.credentials.bearer_token {
        Some(token) => {
            let mut p = path.clone();
            p.push("bearerToken");
            Some(f(&p, token)?)
        }
        None => None,
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &server.credentials.headers {
        let mut p = path.clone();
        p.extend(["headers", name.as_str()]);
        headers.insert(name.clone(), f(&p, value)?);
    }
    Ok(MirroredServer {
        active: server.active.clone(),
        credentials: McpSecrets {
            bearer_token,
            headers,
        },
    })
}

impl MirrorDocument<Credential> {
    /// Seals every credential under the keyring's active key, bound to this tenant and to the
    /// credential's path, and hashes the plaintext content.
    pub fn seal(&self, keyring: &Keyring) -> SealedDocument {
        let tenant = self.tenant_id.as_str();
        let document = self
            .try_map::<_, std::convert::Infallible>(|path, secret| {
                Ok(keyring.seal(secret, tenant, path))
            })
            .unwrap_or_else(|never| match never {});
        SealedDocument {
            format: DOCUMENT_FORMAT.to_owned(),
            content_hash: self.content_hash(keyring),
            document,
        }
    }

    /// The keyed hash of this document's content under the keyring's active key.
    pub fn content_hash(&self, keyring: &Keyring) -> String {
        self.content_hash_under(keyring, keyring.active_id())
            .unwrap_or_default()
    }

    /// The keyed hash of this document's content under key `kid`, `None` when the keyring
    /// lacks it.
    pub fn content_hash_under(&self, keyring: &Keyring, kid: &str) -> Option<String> {
        // The plaintext exists only inside this function, to be hashed.
        let exposed = self
            .try_map::<_, std::convert::Infallible>(|_, secret| {
                Ok(Exposed(zeroize::Zeroizing::new(secret.expose().to_owned())))
            })
            .unwrap_or_else(|never| match never {});
        // These types always serialize (string map keys only).
        let canonical = zeroize::Zeroizing::new(
            serde_json::to_value(&exposed)
                .map(|v| crate::config::hash::canonical_json(&v))
                .unwrap_or_default(),
        );
        keyring.content_mac_with(kid, canonical.as_bytes())
    }
}

/// A credential's value, serializable only inside [`MirrorDocument::content_hash`].
struct Exposed(zeroize::Zeroizing<String>);

impl Serialize for Exposed {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl SealedDocument {
    /// Opens every credential of the document stored in `row_tenant`'s row. The envelopes are
    /// bound to the row's tenant, not to the `tenantId` the document claims, so a whole
    /// document copied into another row does not open either. Fails on the first envelope that
    /// does not open, naming it.
    pub fn open(
        &self,
        row_tenant: &str,
        keyring: &Keyring,
    ) -> Result<MirrorDocument<Credential>, MirrorError> {
        if self.format != DOCUMENT_FORMAT {
            return Err(MirrorError::Corrupt {
                tenant: row_tenant.to_owned(),
                problem: format!("format is {:?}", self.format),
            });
        }
        if self.document.tenant_id != row_tenant {
            return Err(MirrorError::WrongRow {
                row_tenant: row_tenant.to_owned(),
                document_tenant: self.document.tenant_id.clone(),
            });
        }
        Ok(self
            .document
            .try_map(|path, envelope| keyring.open(envelope, row_tenant, path))?)
    }

    /// Ids of the keys that sealed this document's credentials.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let _ = self
            .document
            .try_map::<_, std::convert::Infallible>(|_, envelope| {
                if !ids.contains(&envelope.kid) {
                    ids.push(envelope.kid.clone());
                }
                Ok(())
            });
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CryptoError;

    /// A document with every kind of credential.
    fn full_document(tenant: &str) -> MirrorDocument<Credential> {
        let active = |spec: serde_json::Value, credentials: serde_json::Value| {
            serde_json::json!({"spec": spec, "snapshotSecret": "snap", "specHash": "sha256:00",
                               "promotedAt": "2026-11-24T10:00:00Z", "credentials": credentials})
        };
        let plain: MirrorDocument<String> = serde_json::from_value(serde_json::json!({
            "tenantId": tenant, "state": "active",
            "source": {"namespace": format!("tenant-{tenant}"), "name": tenant},
            "servers": {
                "postgres": active(
                    serde_json::json!({"host": "db.acme.internal", "database": "rag",
                                       "credentialsSecretRef": {"name": "acme-postgres"}}),
                    serde_json::json!({"username": "app", "password": "pg-password"})),
                "minio": active(
                    serde_json::json!({"endpoint": "https://minio.acme.internal", "bucket": "acme-docs",
                                       "credentialsSecretRef": {"name": "acme-minio"}}),
                    serde_json::json!({"accessKeyId": "AKIDACME", "secretAccessKey": "s3-secret-key"})),
                "aiMcpServer": active(
                    serde_json::json!({"url": "https://ai.acme.internal/mcp",
                        "bearerTokenSecretRef": {"name": "acme-ai", "key": "token"},
                        "headers": [{"name": "X-Api-Key", "valueFrom": {"name": "acme-ai", "key": "api-key"}},
                                    {"name": "X-Team", "value": "search"}]}),
                    serde_json::json!({"bearerToken": "ai-token", "headers": {"X-Api-Key": "ai-api-key"}})),
                "mcpServers": {"search": active(
                    serde_json::json!({"name": "search", "url": "https://search.acme.internal/mcp"}),
                    serde_json::json!({"bearerToken": "search-token"}))}
            }
        }))
        .unwrap();
        plain
            .try_map::<_, std::convert::Infallible>(|_, s| Ok(Credential::new(s.clone())))
            .unwrap()
    }

    fn keyring(active: &str) -> Keyring {
        Keyring::from_entries([
            ("k1", [1u8; 32].as_slice()),
            ("k2", [2u8; 32].as_slice()),
            ("active", active.as_bytes()),
        ])
        .unwrap()
    }

    #[test]
    fn sealed_json_keeps_endpoints_plain_and_credentials_sealed() {
        let sealed = full_document("acme").seal(&keyring("k1"));
        let json = serde_json::to_value(&sealed).unwrap();
        let text = json.to_string();
        for secret in [
            "pg-password",
            "s3-secret-key",
            "ai-token",
            "ai-api-key",
            "search-token",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(json["format"], DOCUMENT_FORMAT);
        assert_eq!(json["tenantId"], "acme");
        assert_eq!(json["state"], "active");
        assert_eq!(
            json["servers"]["postgres"]["spec"]["host"],
            "db.acme.internal"
        );
        assert_eq!(
            json["servers"]["postgres"]["credentials"]["username"],
            "app"
        );
        assert_eq!(
            json["servers"]["postgres"]["credentials"]["password"]["enc"],
            "aes-256-gcm.v1"
        );
        assert_eq!(
            json["servers"]["minio"]["credentials"]["accessKeyId"],
            "AKIDACME"
        );
        assert_eq!(
            json["servers"]["aiMcpServer"]["credentials"]["headers"]["X-Api-Key"]["kid"],
            "k1"
        );
        assert_eq!(
            json["servers"]["mcpServers"]["search"]["credentials"]["bearerToken"]["kid"],
            "k1"
        );
        let back: SealedDocument = serde_json::from_value(json).unwrap();
        assert_eq!(back, sealed);
    }

    #[test]
    fn open_restores_every_credential() {
        let doc = full_document("acme");
        let sealed = doc.seal(&keyring("k1"));
        assert_eq!(sealed.open("acme", &keyring("k2")).unwrap(), doc);
        // The whole document moved to another tenant's row.
        let err = sealed.open("globex", &keyring("k1")).unwrap_err();
        assert!(matches!(err, MirrorError::WrongRow { .. }), "{err}");
        let mut relabelled = sealed.clone();
        relabelled.document.tenant_id = "globex".into();
        let err = relabelled.open("globex", &keyring("k1")).unwrap_err();
        assert!(
            matches!(err, MirrorError::Crypto(CryptoError::Tampered { .. })),
            "{err}"
        );
        assert_eq!(sealed.key_ids(), ["k1"]);
    }

    #[test]
    fn content_hash_changes_with_content_only() {
        let ring = keyring("k1");
        let doc = full_document("acme");
        // Sealing twice gives new nonces but the same content hash.
        let (a, b) = (doc.seal(&ring), doc.seal(&ring));
        assert_ne!(a.document, b.document);
        assert_eq!(a.content_hash, b.content_hash);
        let mut changed = doc.clone();
        if let Some(pg) = changed.servers.postgres.as_mut() {
            pg.credentials.password = Credential::new("new-password");
        }
        assert_ne!(changed.content_hash(&ring), a.content_hash);
        let mut disabled = doc;
        disabled.state = MirrorState::Disabled;
        assert_ne!(disabled.content_hash(&ring), a.content_hash);
    }

    #[test]
    fn envelope_moved_between_fields_does_not_open() {
        let ring = keyring("k1");
        let mut sealed = full_document("acme").seal(&ring);
        let token = sealed
            .document
            .servers
            .ai_mcp_server
            .as_ref()
            .and_then(|s| s.credentials.bearer_token.clone())
            .unwrap();
        if let Some(pg) = sealed.document.servers.postgres.as_mut() {
            pg.credentials.password = token;
        }
        let err = sealed.open("acme", &ring).unwrap_err();
        assert!(
            matches!(err, MirrorError::Crypto(CryptoError::Tampered { .. })),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("servers.postgres.credentials.password"),
            "{err}"
        );
    }
}

//! What a write will do, decided before anything is stored (pure): which Secrets get which
//! credentials, which server types a change touches, which field managers own what it removes.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::input::CredentialsInput;
use crate::api::{ServersSpec, TenantMcpConfig};
use crate::config::candidate::ServerKey;
use crate::config::credential_reuse::{has_secret_headers, moves_credentials};
use crate::config::{Credential, FieldError, FieldErrors, FieldPath};

/// The field manager of every write the management server makes.
pub const FIELD_MANAGER: &str = "tenant-mcp-mcp-server";

/// The label naming the config whose credentials a Secret holds; the tool writes only Secrets
/// that carry it (never one it did not create).
pub const CREDENTIALS_OF_LABEL: &str = "tenantmcp.dev/credentials-of";

/// `app.kubernetes.io/managed-by` of those Secrets (not `tenant-mcp`, which marks the
/// controller's snapshots).
pub const MANAGED_BY: &str = "tenant-mcp-mcp-server";

/// Credentials for one Secret, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretWrite {
    /// The Secret, in the config's namespace.
    pub name: String,
    /// Key → value.
    pub data: BTreeMap<String, Credential>,
}

/// The Secret writes that store `credentials` where `servers` reference them. Every problem is
/// reported by the field of `credentials` it concerns.
pub fn secret_writes(
    servers: &ServersSpec,
    credentials: &CredentialsInput,
) -> Result<Vec<SecretWrite>, FieldErrors> {
    let root = FieldPath::new("credentials");
    let mut writes = Writes::default();
    if let Some(login) = &credentials.postgres {
        let at = root.child("postgres");
        match &servers.postgres {
            Some(pg) => {
                let r = &pg.credentials_secret_ref;
                let username = Credential::new(login.username.clone());
                writes.put(&r.name, &r.username_key, username, at.child("username"));
                writes.put(
                    &r.name,
                    &r.password_key,
                    login.password.clone(),
                    at.child("password"),
                );
            }
            None => writes.errors.push(undeclared(&at, "servers.postgres")),
        }
    }
    if let Some(keys) = &credentials.minio {
        let at = root.child("minio");
        match &servers.minio {
            Some(s3) => {
                let r = &s3.credentials_secret_ref;
                let id = Credential::new(keys.access_key_id.clone());
                writes.put(&r.name, &r.access_key_id_key, id, at.child("accessKeyId"));
                let secret = keys.secret_access_key.clone();
                writes.put(
                    &r.name,
                    &r.secret_access_key_key,
                    secret,
                    at.child("secretAccessKey"),
                );
            }
            None => writes.errors.push(undeclared(&at, "servers.minio")),
        }
    }
    mcp_token_writes(servers, credentials, &root, &mut writes);
    writes.errors.into_result()?;
    Ok(writes
        .keys
        .into_iter()
        .map(|(name, keys)| SecretWrite {
            name,
            data: keys.into_iter().map(|(k, (v, _))| (k, v)).collect(),
        })
        .collect())
}

/// Values by Secret and key, each with the field it came from, and the problems found.
#[derive(Default)]
struct Writes {
    keys: BTreeMap<String, BTreeMap<String, (Credential, FieldPath)>>,
    errors: FieldErrors,
}

impl Writes {
    /// `value` (from field `at`) into key `key` of Secret `name`; refused when another field
    /// sets that key to a different value.
    fn put(&mut self, name: &str, key: &str, value: Credential, at: FieldPath) {
        let keys = self.keys.entry(name.to_owned()).or_default();
        match keys.get(key) {
            Some((other, other_at)) if other != &value => self.errors.push(FieldError::invalid(
                &at,
                format!(
                    "goes to key {key:?} of Secret {name:?}, which {other_at} also sets to a \
                     different value: reference different keys or Secrets"
                ),
            )),
            _ => {
                keys.insert(key.to_owned(), (value, at));
            }
        }
    }
}

/// The bearer tokens of the AI MCP server and the named MCP servers, into the Secrets their
/// `bearerTokenSecretRef`s name.
fn mcp_token_writes(
    servers: &ServersSpec,
    credentials: &CredentialsInput,
    root: &FieldPath,
    writes: &mut Writes,
) {
    let named = credentials.mcp_servers.iter().map(|(name, token)| {
        let server = servers
            .mcp_servers
            .iter()
            .find(|n| &n.name == name)
            .map(|n| &n.server);
        (
            root.child("mcpServers").child(name),
            format!("servers.mcpServers[{name}]"),
            server,
            token,
        )
    });
    let ai = credentials.ai_mcp_server.iter().map(|token| {
        (
            root.child("aiMcpServer"),
            "servers.aiMcpServer".to_owned(),
            servers.ai_mcp_server.as_deref(),
            token,
        )
    });
    for (at, field, server, token) in ai.chain(named) {
        match server {
            Some(server) => match &server.bearer_token_secret_ref {
                Some(r) => writes.put(&r.name, &r.key, token.bearer_token.clone(), at.child("bearerToken")),
                None => writes.errors.push(FieldError::required(
                    &at.child("bearerToken"),
                    &format!("{field}.bearerTokenSecretRef naming the Secret and key to keep the token in"),
                )),
            },
            None => writes.errors.push(undeclared(&at, &field)),
        }
    }
}

/// The credentials a write or test must bring itself: those of every server whose stored
/// credentials would go somewhere `before` (the config as stored, if any) did not send them
/// ([`moves_credentials`]). One error per server, at `credentials.<type>`; an MCP server that
/// takes header values from Secrets cannot move through the tools at all.
pub fn credentials_required(
    before: Option<&ServersSpec>,
    after: &ServersSpec,
    credentials: &CredentialsInput,
) -> FieldErrors {
    let mut errors = FieldErrors::default();
    for key in ServerKey::declared(after) {
        if !moves_credentials(before, after, &key) {
            continue;
        }
        let field = key.field();
        let field = field.strip_prefix("spec.").unwrap_or(&field);
        if has_secret_headers(after, &key) {
            errors.push(FieldError::forbidden(
                &FieldPath::new(field).child("headers"),
                format!(
                    "{field} takes header values from Secrets and would send them to a new \
                     destination; the tools cannot supply those values: change it with kubectl \
                     or GitOps, or drop the headers here"
                ),
            ));
            continue;
        }
        let root = FieldPath::new("credentials");
        let (path, supplied) = match &key {
            ServerKey::Postgres => (root.child("postgres"), credentials.postgres.is_some()),
            ServerKey::Minio => (root.child("minio"), credentials.minio.is_some()),
            ServerKey::AiMcp => (
                root.child("aiMcpServer"),
                credentials.ai_mcp_server.is_some(),
            ),
            ServerKey::Mcp(name) => (
                root.child("mcpServers").child(name),
                credentials.mcp_servers.contains_key(name),
            ),
        };
        if supplied {
            continue;
        }
        let why = if before.is_some_and(|b| ServerKey::declared(b).contains(&key)) {
            "changes where its credentials go (endpoint, TLS settings or Secret reference)"
        } else {
            "is not in the stored config"
        };
        errors.push(FieldError::required(
            &path,
            &format!(
                "{field} {why}, and credentials already stored in a Secret never follow a \
                 server to a new destination: give them in this call"
            ),
        ));
    }
    errors
}

fn undeclared(at: &FieldPath, field: &str) -> FieldError {
    FieldError::invalid(
        at,
        format!("{field} is not declared: declare the server or leave out its credentials"),
    )
}

/// `existing` (if any) with `write`'s keys set: what the Secret will hold, for connection tests
/// before anything is written.
pub fn overlay(existing: Option<&Secret>, write: &SecretWrite) -> Secret {
    let mut secret = existing.cloned().unwrap_or_default();
    secret.metadata.name = Some(write.name.clone());
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in &write.data {
        data.insert(key.clone(), ByteString(value.expose().as_bytes().to_vec()));
    }
    secret
}

/// `existing` Secrets by name with `writes` laid over them: what the Secrets will hold.
pub fn with_writes(
    existing: &HashMap<String, Secret>,
    writes: &[SecretWrite],
) -> HashMap<String, Secret> {
    let mut planned = existing.clone();
    for write in writes {
        planned.insert(
            write.name.clone(),
            overlay(existing.get(&write.name), write),
        );
    }
    planned
}

/// Whether the tool may write `secret`: only Secrets it made for config `config`.
pub fn writable(secret: &Secret, config: &str) -> bool {
    let labels = secret.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(CREDENTIALS_OF_LABEL))
        .map(String::as_str)
        == Some(config)
        && labels
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str)
            == Some(MANAGED_BY)
}

/// The server types an update changes: those its patch names and those it gives credentials
/// for. Only these are connection-tested (the controller keeps testing the rest).
pub fn touched(patch: Option<&Value>, credentials: &CredentialsInput) -> Vec<ServerKey> {
    let mut keys = Vec::new();
    if let Some(patch) = patch.and_then(Value::as_object) {
        for (kind, value) in patch {
            match (kind.as_str(), value.as_object()) {
                ("postgres", _) => keys.push(ServerKey::Postgres),
                ("minio", _) => keys.push(ServerKey::Minio),
                ("aiMcpServer", _) => keys.push(ServerKey::AiMcp),
                ("mcpServers", Some(named)) => {
                    keys.extend(named.keys().map(|n| ServerKey::Mcp(n.clone())));
                }
                _ => {}
            }
        }
    }
    if credentials.postgres.is_some() {
        keys.push(ServerKey::Postgres);
    }
    if credentials.minio.is_some() {
        keys.push(ServerKey::Minio);
    }
    if credentials.ai_mcp_server.is_some() {
        keys.push(ServerKey::AiMcp);
    }
    keys.extend(
        credentials
            .mcp_servers
            .keys()
            .map(|n| ServerKey::Mcp(n.clone())),
    );
    keys.sort();
    keys.dedup();
    keys
}

/// The field managers other than this server's that own fields of server `key` in `config`:
/// server-side apply would keep those fields, so removing the server must be refused instead.
pub fn other_owners(config: &TenantMcpConfig, key: &ServerKey) -> Vec<String> {
    let step: Vec<String> = match key {
        ServerKey::Mcp(name) => vec![
            "f:mcpServers".into(),
            format!("k:{}", serde_json::json!({ "name": name })),
        ],
        other => vec![format!("f:{}", other.as_string())],
    };
    let mut owners: Vec<String> = config
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| {
            let fields = m.fields_v1.as_ref().map(|f| &f.0);
            let servers = fields
                .and_then(|f| f.get("f:spec"))
                .and_then(|s| s.get("f:servers"));
            step.iter()
                .try_fold(servers, |at, s| Some(at?.get(s.as_str())))
                .flatten()
                .is_some()
        })
        .filter_map(|m| m.manager.clone())
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

/// Field errors of `validate_tenant_spec` (paths from `spec.`) as paths of the tool's
/// arguments (`servers.…`, `validation.…`, `tenantId`).
pub fn as_arguments(errors: FieldErrors) -> FieldErrors {
    FieldErrors(
        errors
            .0
            .into_iter()
            .map(|mut e| {
                if let Some(rest) = e.path.strip_prefix("spec.") {
                    e.path = rest.to_owned();
                }
                e
            })
            .collect(),
    )
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

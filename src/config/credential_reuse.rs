//! Where stored credentials may go: only where they went before. A change that sends a
//! server's stored credentials to another destination — another host, port, URL, bucket host,
//! a weaker TLS setting, or credentials from another Secret — must bring the credentials with
//! it, or someone allowed to change a config but not to read its Secrets (an uber admin through
//! the tools) could have them sent to a server of their choosing and read them there.

use crate::api::{HttpHeader, PostgresCredentialsRef, S3CredentialsRef, SecretKeyRef, SslMode};
use crate::api::{McpServer, ServersSpec};
use crate::config::candidate::ServerKey;

/// What decides where a server's stored credentials are sent, and which ones.
#[derive(Debug, PartialEq)]
enum Destination<'a> {
    Postgres {
        host: &'a str,
        port: i32,
        ssl_mode: SslMode,
        ca: Option<&'a SecretKeyRef>,
        login: &'a PostgresCredentialsRef,
    },
    S3 {
        endpoint: &'a str,
        // With virtual-hosted style the bucket is part of the host name.
        bucket: &'a str,
        path_style: bool,
        keys: &'a S3CredentialsRef,
    },
    Mcp {
        url: &'a str,
        token: Option<&'a SecretKeyRef>,
        headers: &'a [HttpHeader],
    },
}

fn mcp(server: &McpServer) -> Destination<'_> {
    Destination::Mcp {
        url: &server.url,
        token: server.bearer_token_secret_ref.as_ref(),
        headers: &server.headers,
    }
}

fn destination<'a>(servers: &'a ServersSpec, key: &ServerKey) -> Option<Destination<'a>> {
    match key {
        ServerKey::Postgres => servers.postgres.as_ref().map(|pg| Destination::Postgres {
            host: &pg.host,
            port: pg.port,
            ssl_mode: pg.ssl_mode,
            ca: pg.ca_cert_secret_ref.as_ref(),
            login: &pg.credentials_secret_ref,
        }),
        ServerKey::Minio => servers.minio.as_ref().map(|s3| Destination::S3 {
            endpoint: &s3.endpoint,
            bucket: &s3.bucket,
            path_style: s3.force_path_style,
            keys: &s3.credentials_secret_ref,
        }),
        ServerKey::AiMcp => servers.ai_mcp_server.as_deref().map(mcp),
        ServerKey::Mcp(name) => servers
            .mcp_servers
            .iter()
            .find(|n| &n.name == name)
            .map(|n| mcp(&n.server)),
    }
}

/// Whether server `key` of `after` uses credentials kept in Secrets at all (an MCP server
/// without a token or header from a Secret does not).
pub fn uses_stored_credentials(after: &ServersSpec, key: &ServerKey) -> bool {
    match destination(after, key) {
        Some(Destination::Mcp { token, headers, .. }) => {
            token.is_some() || headers.iter().any(|h| h.value_from.is_some())
        }
        Some(_) => true,
        None => false,
    }
}

/// Whether server `key` of `after` would send stored credentials somewhere `before` (the
/// config as stored, `None` when there is none) did not send them: a new server, or one whose
/// endpoint, TLS settings or credential references differ. Such a server may only use
/// credentials that the same change supplies.
pub fn moves_credentials(
    before: Option<&ServersSpec>,
    after: &ServersSpec,
    key: &ServerKey,
) -> bool {
    uses_stored_credentials(after, key)
        && before.and_then(|b| destination(b, key)) != destination(after, key)
}

/// Whether MCP server `key` of `after` takes header values from Secrets: the tools cannot
/// supply those, so such a server cannot move through them.
pub fn has_secret_headers(after: &ServersSpec, key: &ServerKey) -> bool {
    matches!(destination(after, key), Some(Destination::Mcp { headers, .. }) if headers.iter().any(|h| h.value_from.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(yaml: &str) -> ServersSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const STORED: &str = "
postgres: {host: db.acme.example.com, database: rag, credentialsSecretRef: {name: pg}}
minio: {endpoint: 'https://s3.acme.example.com', bucket: acme, credentialsSecretRef: {name: s3}}
aiMcpServer: {url: 'https://ai.acme.example.com/mcp', bearerTokenSecretRef: {name: ai, key: token}}
mcpServers:
- {name: open, url: 'https://open.example.com/mcp'}
";

    #[test]
    fn unchanged_destinations_keep_their_credentials() {
        let before = servers(STORED);
        let mut after = before.clone();
        after.postgres.as_mut().unwrap().database = "other".into();
        after.postgres.as_mut().unwrap().pool.max_connections = 3;
        after.minio.as_mut().unwrap().timeout_seconds = 9;
        after.ai_mcp_server.as_mut().unwrap().timeout_seconds = 9;
        for key in ServerKey::declared(&after) {
            assert!(!moves_credentials(Some(&before), &after, &key), "{key}");
        }
    }

    /// Threat model, uber admin: "never read credentials back through the tools". Every way
    /// of sending a stored credential elsewhere counts as a move.
    #[test]
    fn every_change_of_destination_moves_the_credentials() {
        let before = servers(STORED);
        type Change = (ServerKey, fn(&mut ServersSpec));
        let changes: Vec<Change> = vec![
            (ServerKey::Postgres, |s| {
                s.postgres.as_mut().unwrap().host = "evil.example.com".into()
            }),
            (ServerKey::Postgres, |s| {
                s.postgres.as_mut().unwrap().port = 6543
            }),
            (ServerKey::Postgres, |s| {
                s.postgres.as_mut().unwrap().ssl_mode = SslMode::Disable
            }),
            (ServerKey::Postgres, |s| {
                s.postgres.as_mut().unwrap().credentials_secret_ref.name = "other".into()
            }),
            (ServerKey::Minio, |s| {
                s.minio.as_mut().unwrap().endpoint = "https://evil.example.com".into()
            }),
            (ServerKey::Minio, |s| {
                s.minio.as_mut().unwrap().bucket = "evil".into()
            }),
            (ServerKey::Minio, |s| {
                s.minio
                    .as_mut()
                    .unwrap()
                    .credentials_secret_ref
                    .access_key_id_key = "k".into()
            }),
            (ServerKey::AiMcp, |s| {
                s.ai_mcp_server.as_mut().unwrap().url = "https://evil.example.com/mcp".into()
            }),
            (ServerKey::AiMcp, |s| {
                s.ai_mcp_server
                    .as_mut()
                    .unwrap()
                    .bearer_token_secret_ref
                    .as_mut()
                    .unwrap()
                    .name = "pg".into()
            }),
        ];
        for (i, (key, change)) in changes.into_iter().enumerate() {
            let mut after = before.clone();
            change(&mut after);
            assert!(
                moves_credentials(Some(&before), &after, &key),
                "change {i} of {key}"
            );
        }
        // A new config, or a server new to it, has nowhere its credentials went before.
        assert!(moves_credentials(None, &before, &ServerKey::Postgres));
        let mut after = before.clone();
        after.mcp_servers[0].server.bearer_token_secret_ref = Some(SecretKeyRef {
            name: "ai".into(),
            key: "token".into(),
        });
        assert!(moves_credentials(
            Some(&before),
            &after,
            &ServerKey::Mcp("open".into())
        ));
    }

    #[test]
    fn a_server_without_stored_credentials_moves_freely() {
        let before = servers(STORED);
        let mut after = before.clone();
        after.mcp_servers[0].server.url = "https://elsewhere.example.com/mcp".into();
        assert!(!moves_credentials(
            Some(&before),
            &after,
            &ServerKey::Mcp("open".into())
        ));
        assert!(!moves_credentials(
            None,
            &after,
            &ServerKey::Mcp("open".into())
        ));
    }
}

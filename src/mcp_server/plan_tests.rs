#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::json;

use super::*;

fn servers(value: Value) -> ServersSpec {
    serde_json::from_value(value).unwrap()
}

fn credentials(value: Value) -> CredentialsInput {
    serde_json::from_value(value).unwrap()
}

fn full() -> ServersSpec {
    servers(json!({
        "postgres": {"host": "db.example.com", "database": "rag",
                     "credentialsSecretRef": {"name": "acme-db", "usernameKey": "user"}},
        "minio": {"endpoint": "https://s3.example.com", "bucket": "docs",
                  "credentialsSecretRef": {"name": "acme-db"}},
        "aiMcpServer": {"url": "https://ai.example.com/mcp",
                        "bearerTokenSecretRef": {"name": "acme-ai", "key": "token"}},
        "mcpServers": [{"name": "search", "url": "https://search.example.com/mcp"}]
    }))
}

#[test]
fn credentials_go_to_the_secrets_and_keys_the_servers_reference() {
    let writes = secret_writes(
        &full(),
        &credentials(json!({
            "postgres": {"username": "acme", "password": "pw"},
            "minio": {"accessKeyId": "AK", "secretAccessKey": "SK"},
            "aiMcpServer": {"bearerToken": "tok"}
        })),
    )
    .unwrap();
    let shown: Vec<(String, Vec<(String, String)>)> = writes
        .iter()
        .map(|w| {
            let keys = w
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect();
            (w.name.clone(), keys)
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "acme-ai".to_owned(),
                vec![("token".to_owned(), "tok".to_owned())]
            ),
            (
                "acme-db".to_owned(),
                vec![
                    ("accessKeyId".to_owned(), "AK".to_owned()),
                    ("password".to_owned(), "pw".to_owned()),
                    ("secretAccessKey".to_owned(), "SK".to_owned()),
                    ("user".to_owned(), "acme".to_owned()),
                ]
            ),
        ]
    );
    // Nothing of a value reaches Debug.
    assert!(!format!("{writes:?}").contains("pw"));
}

#[test]
fn credentials_without_a_place_to_go_are_refused_by_field() {
    let errors = secret_writes(
        &servers(json!({"mcpServers": [{"name": "search", "url": "https://s.example.com"}]})),
        &credentials(json!({
            "postgres": {"username": "acme", "password": "pw"},
            "mcpServers": {"search": {"bearerToken": "t"}, "other": {"bearerToken": "t"}}
        })),
    )
    .unwrap_err();
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "credentials.postgres: servers.postgres is not declared: declare the server or leave out its credentials",
            "credentials.mcpServers.other: servers.mcpServers[other] is not declared: declare the server or leave out its credentials",
            "credentials.mcpServers.search.bearerToken: is required: servers.mcpServers[search].bearerTokenSecretRef naming the Secret and key to keep the token in",
        ]
    );
}

#[test]
fn two_values_for_one_secret_key_are_refused() {
    let spec = servers(json!({
        "postgres": {"host": "db.example.com", "database": "rag", "credentialsSecretRef": {"name": "shared"}},
        "minio": {"endpoint": "https://s3.example.com", "bucket": "docs",
                  "credentialsSecretRef": {"name": "shared", "secretAccessKeyKey": "password"}}
    }));
    let errors = secret_writes(
        &spec,
        &credentials(json!({
            "postgres": {"username": "u", "password": "one"},
            "minio": {"accessKeyId": "AK", "secretAccessKey": "two"}
        })),
    )
    .unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors:?}");
    assert_eq!(errors.0[0].path, "credentials.minio.secretAccessKey");
    assert!(
        errors.0[0]
            .message
            .contains("credentials.postgres.password"),
        "{errors:?}"
    );
}

#[test]
fn only_secrets_made_for_the_config_are_writable_and_overlays_keep_other_keys() {
    let mut secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "acme-db", "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY, CREDENTIALS_OF_LABEL: "tenant-mcp"}},
        "data": {"other": "eA=="}
    }))
    .unwrap();
    assert!(writable(&secret, "tenant-mcp"));
    assert!(!writable(&secret, "another-config"));
    let write = SecretWrite {
        name: "acme-db".into(),
        data: BTreeMap::from([("password".into(), Credential::new("pw"))]),
    };
    let merged = overlay(Some(&secret), &write);
    let data = merged.data.unwrap();
    assert_eq!(data["other"].0, b"x");
    assert_eq!(data["password"].0, b"pw");
    secret.metadata.labels = None;
    assert!(
        !writable(&secret, "tenant-mcp"),
        "a Secret someone else made"
    );
}

#[test]
fn an_update_touches_the_types_it_patches_or_gives_credentials_for() {
    let keys = touched(
        Some(&json!({"minio": null, "mcpServers": {"search": {"url": "https://x.example.com"}}})),
        &credentials(json!({"postgres": {"username": "u", "password": "p"}})),
    );
    assert_eq!(
        keys,
        [
            ServerKey::Postgres,
            ServerKey::Minio,
            ServerKey::Mcp("search".into())
        ]
    );
    assert!(touched(None, &CredentialsInput::default()).is_empty());
}

#[test]
fn other_managers_owning_a_server_are_found() {
    let config: TenantMcpConfig = serde_json::from_value(json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "c", "namespace": "n", "managedFields": [
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:servers": {"f:minio": {"f:bucket": {}}}}}},
            {"manager": "argocd-controller", "operation": "Apply", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:servers": {
                 "f:postgres": {"f:host": {}},
                 "f:mcpServers": {"k:{\"name\":\"search\"}": {"f:url": {}}}}}}}
        ]},
        "spec": {"tenantId": "acme"}
    }))
    .unwrap();
    assert_eq!(
        other_owners(&config, &ServerKey::Postgres),
        ["argocd-controller"]
    );
    assert_eq!(
        other_owners(&config, &ServerKey::Mcp("search".into())),
        ["argocd-controller"]
    );
    assert!(other_owners(&config, &ServerKey::Minio).is_empty());
    assert!(other_owners(&config, &ServerKey::AiMcp).is_empty());
}

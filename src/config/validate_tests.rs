//! One test per validation rule, each from a YAML fixture: the rule's error when broken, and
//! silence when the same spec is fixed.

use super::*;
use crate::api::EndpointPolicySpec;

fn spec(yaml: &str) -> TenantMcpConfigSpec {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{yaml}"))
}

fn errors_with(yaml: &str, policy: &EndpointPolicy) -> Vec<String> {
    validate_tenant_spec(&spec(yaml), policy)
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

fn errors(yaml: &str) -> Vec<String> {
    errors_with(yaml, &EndpointPolicy::default())
}

/// Asserts that `yaml` yields exactly one error, starting with `expected`.
#[track_caller]
fn assert_one(yaml: &str, expected: &str) {
    let found = errors(yaml);
    assert!(
        found.len() == 1 && found[0].starts_with(expected),
        "expected exactly one error starting with\n  {expected}\ngot\n  {found:#?}"
    );
}

#[track_caller]
fn assert_valid(yaml: &str) {
    let found = errors(yaml);
    assert!(found.is_empty(), "expected no errors, got {found:#?}");
}

const PG: &str = "
tenantId: acme
servers:
  postgres:
    host: db.example.com
    database: rag
    credentialsSecretRef: {name: acme-pg}
";

/// The `PG` baseline with `extra` (YAML) merged into `servers.postgres`, overriding its fields.
fn pg_with(extra: &str) -> String {
    let mut base: serde_json::Value = serde_yaml_ng::from_str(PG).unwrap();
    let extra: serde_json::Value = serde_yaml_ng::from_str(extra).unwrap();
    json_patch::merge(&mut base["servers"]["postgres"], &extra);
    serde_json::to_string(&base).unwrap()
}

fn mcp_with(extra: &str) -> String {
    format!(
        "tenantId: acme\nservers:\n  aiMcpServer:\n    url: https://ai.example.com/mcp\n    {}\n",
        extra.trim().replace('\n', "\n    ")
    )
}

fn s3_with(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "tenantId: acme\nservers:\n  minio:\n    endpoint: {endpoint}\n    bucket: {bucket}\n    \
         credentialsSecretRef: {{name: acme-s3}}\n    {}\n",
        extra.trim().replace('\n', "\n    ")
    )
}

#[test]
fn the_baselines_are_valid() {
    assert_valid(PG);
    assert_valid(&mcp_with("timeoutSeconds: 30"));
    assert_valid(&s3_with("https://s3.example.com", "acme-docs", ""));
    assert_valid("tenantId: a");
    assert_valid(&pg_with("host: 2001:db8::1"));
    assert_valid(&pg_with(
        "sslMode: verify-full\ncaCertSecretRef: {name: ca, key: ca.crt}",
    ));
}

#[test]
fn tenant_id_must_be_a_dns_label() {
    for bad in ["Acme", "acme_corp", "-acme", "acme-", "", &"a".repeat(64)] {
        assert_one(
            &format!("tenantId: {bad:?}"),
            "spec.tenantId: must be a DNS label",
        );
    }
}

#[test]
fn postgres_port_range() {
    assert_one(
        &pg_with("port: 70000"),
        "spec.servers.postgres.port: must be 1..=65535, got 70000",
    );
    assert_one(
        &pg_with("port: 0"),
        "spec.servers.postgres.port: must be 1..=65535, got 0",
    );
    assert_valid(&pg_with("port: 65535"));
}

#[test]
fn postgres_host_must_be_bare() {
    for bad in [
        "postgres://db.example.com",
        "user@db.example.com",
        "db.example.com/rag",
        "db .example.com",
        "-db.example.com",
    ] {
        assert_one(
            &pg_with(&format!("host: {bad:?}")),
            "spec.servers.postgres.host: must be a host name or IP address",
        );
    }
}

#[test]
fn postgres_database_name() {
    assert_one(
        &pg_with(&format!("database: {:?}", "d".repeat(64))),
        "spec.servers.postgres.database: must be 1 to 63 bytes",
    );
    assert_one(
        &pg_with("database: \"a\\nb\""),
        "spec.servers.postgres.database: must be 1 to 63 bytes",
    );
}

#[test]
fn ca_cert_needs_tls() {
    assert_one(
        &pg_with("sslMode: disable\ncaCertSecretRef: {name: ca, key: ca.crt}"),
        "spec.servers.postgres.caCertSecretRef: has no effect with sslMode disable",
    );
}

#[test]
fn pool_ranges_and_order() {
    assert_one(
        &pg_with("pool: {maxConnections: 0}"),
        "spec.servers.postgres.pool.maxConnections: must be 1..=1000, got 0",
    );
    assert_one(
        &pg_with("pool: {acquireTimeoutSeconds: 301}"),
        "spec.servers.postgres.pool.acquireTimeoutSeconds: must be 1..=300, got 301",
    );
    assert_one(
        &pg_with("pool: {idleTimeoutSeconds: 0}"),
        "spec.servers.postgres.pool.idleTimeoutSeconds: must be 1..=86400, got 0",
    );
    assert_one(
        &pg_with("pool: {maxLifetimeSeconds: 90000}"),
        "spec.servers.postgres.pool.maxLifetimeSeconds: must be 1..=86400, got 90000",
    );
    assert_one(
        &pg_with("pool: {maxConnections: 2, minConnections: 3}"),
        "spec.servers.postgres.pool.minConnections: must be at most maxConnections (2), got 3",
    );
}

#[test]
fn secret_references() {
    let with_ref = |r: &str| {
        format!(
            "tenantId: acme\nservers:\n  postgres:\n    host: db.example.com\n    database: rag\n    credentialsSecretRef: {r}\n"
        )
    };
    assert_one(
        &with_ref("{name: Bad_Name}"),
        "spec.servers.postgres.credentialsSecretRef.name: must be a Secret name",
    );
    assert_one(
        &with_ref("{name: pg, passwordKey: \"pass word\"}"),
        "spec.servers.postgres.credentialsSecretRef.passwordKey: must be a Secret data key",
    );
    assert_one(
        &with_ref("{name: pg, usernameKey: k, passwordKey: k}"),
        "spec.servers.postgres.credentialsSecretRef.passwordKey: must differ from usernameKey",
    );
    assert_one(
        &s3_with("https://s3.example.com", "docs", "").replace(
            "{name: acme-s3}",
            "{name: s3, accessKeyIdKey: k, secretAccessKeyKey: k}",
        ),
        "spec.servers.minio.credentialsSecretRef.secretAccessKeyKey: must differ from accessKeyIdKey",
    );
    assert_one(
        &mcp_with("bearerTokenSecretRef: {name: tok, key: \"\"}"),
        "spec.servers.aiMcpServer.bearerTokenSecretRef.key: must be a Secret data key",
    );
}

#[test]
fn s3_endpoint_bucket_and_region() {
    assert_one(
        &s3_with("ftp://s3.example.com", "docs", ""),
        "spec.servers.minio.endpoint: scheme must be http or https",
    );
    assert_one(
        &s3_with("not a url", "docs", ""),
        "spec.servers.minio.endpoint: must be an absolute http:// or https:// URL",
    );
    assert_one(
        &s3_with("https://s3.example.com/docs", "docs", ""),
        "spec.servers.minio.endpoint: must be a bare endpoint",
    );
    assert_one(
        &s3_with("https://s3.example.com?x=1", "docs", ""),
        "spec.servers.minio.endpoint: must be a bare endpoint",
    );
    assert_one(
        &s3_with("https://s3.example.com#f", "docs", ""),
        "spec.servers.minio.endpoint: must not have a #fragment",
    );
    for bad in [
        "ab",
        "Docs",
        "my_docs",
        "docs.",
        "my..docs",
        "192.168.1.1",
        "xn--docs",
        "docs-s3alias",
        &"d".repeat(64),
    ] {
        assert_one(
            &s3_with("https://s3.example.com", bad, ""),
            "spec.servers.minio.bucket: must be an S3 bucket name",
        );
    }
    assert_valid(&s3_with("https://s3.example.com", "my.docs-2024", ""));
    assert_one(
        &s3_with("https://s3.example.com", "docs", "region: US_EAST"),
        "spec.servers.minio.region: must be 1 to 64 lowercase",
    );
}

#[test]
fn mcp_url_rules() {
    let url = |u: &str| format!("tenantId: acme\nservers:\n  aiMcpServer:\n    url: {u:?}\n");
    assert_one(
        &url("ws://ai.example.com"),
        "spec.servers.aiMcpServer.url: scheme must be http or https",
    );
    assert_one(
        &url("https://ai.example.com/mcp#x"),
        "spec.servers.aiMcpServer.url: must not have a #fragment",
    );
    assert_one(
        &url("https://ai.example.com/mcp?token=abc"),
        "spec.servers.aiMcpServer.url: query parameter \"token\" looks like a credential",
    );
    assert_valid(&url("https://ai.example.com/mcp?region=eu"));
    assert_one(
        &mcp_with("timeoutSeconds: 601"),
        "spec.servers.aiMcpServer.timeoutSeconds: must be 1..=600, got 601",
    );
}

#[test]
fn header_rules() {
    assert_one(
        &mcp_with("headers: [{name: \"X Team\", value: a}]"),
        "spec.servers.aiMcpServer.headers[0].name: must be an HTTP header name",
    );
    assert_one(
        &mcp_with("headers: [{name: Content-Type, value: a}]"),
        "spec.servers.aiMcpServer.headers[0].name: \"Content-Type\" is managed by the MCP client",
    );
    assert_one(
        &mcp_with("headers: [{name: X-Api-Key, value: k}]"),
        "spec.servers.aiMcpServer.headers[0].value: inline credentials are not allowed",
    );
    assert_valid(&mcp_with(
        "headers: [{name: X-Api-Key, valueFrom: {name: s, key: k}}]",
    ));
    assert_one(
        &mcp_with("headers: [{name: X-Team}]"),
        "spec.servers.aiMcpServer.headers[0].value: is required",
    );
    assert_one(
        &mcp_with("headers: [{name: X-Team, value: \"a\\r\\nInjected: 1\"}]"),
        "spec.servers.aiMcpServer.headers[0].value: must not contain control characters",
    );
    assert_one(
        &mcp_with(
            "bearerTokenSecretRef: {name: t, key: token}\nheaders: [{name: Authorization, valueFrom: {name: s, key: k}}]",
        ),
        "spec.servers.aiMcpServer.headers[0].name: Authorization is already set by bearerTokenSecretRef",
    );
    assert_one(
        &mcp_with("headers: [{name: A, value: x}, {name: a, value: y}]"),
        "spec.servers.aiMcpServer.headers[1].name: must be unique",
    );
}

#[test]
fn tenant_routing_rules() {
    assert_valid(&mcp_with("tenantRouting: {mode: Header}"));
    assert_valid(&mcp_with(
        "tenantRouting: {mode: Header, headerName: X-Org}",
    ));
    assert_valid(&mcp_with("tenantRouting: {mode: PathPrefix}"));
    assert_valid(&mcp_with(
        "tenantRouting: {mode: PathPrefix, pathPrefix: \"/t/{tenantId}/v1\"}",
    ));
    assert_one(
        &mcp_with("tenantRouting: {mode: PathPrefix, pathPrefix: \"t/{tenantId}\"}"),
        "spec.servers.aiMcpServer.tenantRouting.pathPrefix: must start with '/'",
    );
    assert_one(
        &mcp_with("tenantRouting: {mode: PathPrefix, pathPrefix: \"/{tenantId}/{tenantId}\"}"),
        "spec.servers.aiMcpServer.tenantRouting.pathPrefix: must start with '/'",
    );
    assert_one(
        &mcp_with("tenantRouting: {mode: PathPrefix, pathPrefix: \"/t/{tenantId}?x\"}"),
        "spec.servers.aiMcpServer.tenantRouting.pathPrefix: must start with '/'",
    );
    assert_one(
        &mcp_with("tenantRouting: {mode: Header, pathPrefix: \"/t/{tenantId}\"}"),
        "spec.servers.aiMcpServer.tenantRouting.pathPrefix: is only used with mode PathPrefix",
    );
    assert_one(
        &mcp_with("tenantRouting: {headerName: X-T}"),
        "spec.servers.aiMcpServer.tenantRouting.headerName: is only used with mode Header",
    );
    assert_one(
        &mcp_with("tenantRouting: {mode: Header, headerName: \"X T\"}"),
        "spec.servers.aiMcpServer.tenantRouting.headerName: must be an HTTP header name",
    );
    assert_one(
        &mcp_with("tenantRouting: {mode: Header, headerName: Cookie}"),
        "spec.servers.aiMcpServer.tenantRouting.headerName: \"Cookie\" is managed by the client or carries credentials",
    );
    assert_one(
        &mcp_with("headers: [{name: X-Tenant-Id, value: x}]\ntenantRouting: {mode: Header}"),
        "spec.servers.aiMcpServer.tenantRouting.headerName: \"X-Tenant-Id\" is also set in headers",
    );
}

#[test]
fn named_mcp_servers() {
    let two = |a: &str, b: &str| {
        format!(
            "tenantId: acme\nservers:\n  mcpServers:\n  - name: {a}\n    url: https://a.example.com\n  - name: {b}\n    url: https://b.example.com\n"
        )
    };
    assert_valid(&two("search", "tools"));
    assert_one(
        &two("search", "search"),
        "spec.servers.mcpServers[1].name: must be unique, got \"search\" twice",
    );
    assert_one(
        &two("search", "Tools"),
        "spec.servers.mcpServers[1].name: must be a DNS label",
    );
    let many: String = (0..33)
        .map(|i| format!("  - name: s{i}\n    url: https://s.example.com\n"))
        .collect();
    assert_one(
        &format!("tenantId: acme\nservers:\n  mcpServers:\n{many}"),
        "spec.servers.mcpServers: must have at most 32 items, got 33",
    );
    // Errors inside a named server are addressed by its name.
    assert_one(
        "tenantId: acme\nservers:\n  mcpServers:\n  - name: search\n    url: https://s.example.com\n    timeoutSeconds: 0\n",
        "spec.servers.mcpServers[search].timeoutSeconds: must be 1..=600, got 0",
    );
}

#[test]
fn validation_settings() {
    assert_one(
        "tenantId: a\nvalidation: {connectTimeoutSeconds: 0}",
        "spec.validation.connectTimeoutSeconds: must be 1..=60, got 0",
    );
    assert_one(
        "tenantId: a\nvalidation: {revalidateIntervalSeconds: 29}",
        "spec.validation.revalidateIntervalSeconds: must be 0 (off) or 30..=86400, got 29",
    );
    assert_valid("tenantId: a\nvalidation: {revalidateIntervalSeconds: 0}");
}

#[test]
fn endpoint_policy_is_applied_to_every_endpoint() {
    let spec = "
tenantId: acme
servers:
  postgres: {host: 10.1.2.3, database: rag, credentialsSecretRef: {name: pg}}
  minio: {endpoint: 'http://[::1]:9000', bucket: docs, credentialsSecretRef: {name: s3}}
  aiMcpServer: {url: 'http://metadata.google.internal/'}
  mcpServers:
  - {name: search, url: 'http://2130706433/mcp'}
";
    let found = errors(spec);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with("spec.servers.postgres.host: address 10.1.2.3 is a private address")
    );
    assert!(found[1].starts_with("spec.servers.minio.endpoint: address ::1 is a loopback address"));
    assert!(found[2].starts_with("spec.servers.aiMcpServer.url: host \"metadata.google.internal\" names a cloud metadata endpoint, which the endpoint policy denies"));
    assert!(found[3].starts_with(
        "spec.servers.mcpServers[search].url: address 127.0.0.1 is a loopback address"
    ));

    let (strict, policy_errors) = EndpointPolicy::compile(
        &EndpointPolicySpec {
            allowed_schemes: vec![crate::api::global::UrlScheme::Https],
            allowed_ports: vec!["443".into()],
            allowed_hosts: vec!["*.example.com".into()],
            ..Default::default()
        },
        &FieldPath::new("spec.endpointPolicy"),
    );
    assert!(policy_errors.is_empty());
    let found = errors_with(
        "tenantId: a\nservers:\n  aiMcpServer: {url: 'http://ai.example.com:8080/mcp'}\n  mcpServers: [{name: x, url: 'https://evil.test/'}]\n",
        &strict,
    );
    assert_eq!(
        found,
        [
            "spec.servers.aiMcpServer.url: scheme \"http\" is not allowed by the endpoint policy (allowed: https)",
            "spec.servers.aiMcpServer.url: port 8080 is not allowed by the endpoint policy (allowed: 443)",
            "spec.servers.mcpServers[x].url: host \"evil.test\" matches none of the endpoint policy's allowedHosts",
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let spec = "
tenantId: Bad
servers:
  postgres: {host: db.example.com, port: 0, database: rag, credentialsSecretRef: {name: pg}, pool: {maxConnections: 0}}
  minio: {endpoint: 'https://s3.example.com', bucket: B, credentialsSecretRef: {name: s3}}
validation: {connectTimeoutSeconds: 99}
";
    let found = errors(spec);
    let paths: Vec<&str> = found
        .iter()
        .map(|e| e.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        [
            "spec.tenantId",
            "spec.servers.postgres.port",
            "spec.servers.postgres.pool.maxConnections",
            "spec.servers.minio.bucket",
            "spec.validation.connectTimeoutSeconds",
        ]
    );
}

#[test]
fn tenant_id_is_immutable_on_update() {
    let old = spec("tenantId: acme");
    let new = spec("tenantId: acme2");
    let found: Vec<String> = validate_tenant_update(&old, &new, &EndpointPolicy::default())
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        found,
        [
            "spec.tenantId: is immutable: was \"acme\", got \"acme2\"; create a new config for another tenant"
        ]
    );
    assert!(validate_tenant_update(&old, &old, &EndpointPolicy::default()).is_empty());
}

#[test]
fn global_spec_uses_its_own_policy() {
    let global: GlobalMcpConfigSpec = serde_yaml_ng::from_str(
        "
credentialsNamespace: Platform
endpointPolicy: {allowLoopback: true, allowedPorts: ['5432']}
servers:
  postgres: {host: 127.0.0.1, port: 6432, database: rag, credentialsSecretRef: {name: pg}}
",
    )
    .unwrap();
    let (found, policy) = validate_global_spec(&global);
    let found: Vec<String> = found.into_iter().map(|e| e.to_string()).collect();
    assert!(policy.is_some());
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("spec.credentialsNamespace: must be a DNS label"));
    assert_eq!(
        found[1],
        "spec.servers.postgres.port: port 6432 is not allowed by the endpoint policy (allowed: 5432)"
    );
}

/// Issue 27, item 1 (threat model: a hostile tenant admin points a server at a platform
/// address the policy denies): other spellings of a denied address, in every endpoint field.
#[test]
fn a_denied_address_is_refused_under_every_spelling_in_every_field() {
    let (policy, policy_errors) = EndpointPolicy::compile(
        &EndpointPolicySpec {
            allow_private_networks: true,
            denied_cidrs: vec!["10.96.0.0/12".into()],
            denied_hosts: vec!["10.0.0.53".into()],
            ..Default::default()
        },
        &FieldPath::new("spec.endpointPolicy"),
    );
    assert!(policy_errors.is_empty());
    for (host, rule) in [
        ("::ffff:10.96.0.1", "deniedCidrs"),
        ("64:ff9b::a60:1", "deniedCidrs"),
        ("64:ff9b:1::a60:1", "deniedCidrs"),
        ("2002:a60:1::1", "deniedCidrs"),
        ("::10.96.0.1", "deniedCidrs"),
        ("::ffff:10.0.0.53", "deniedHosts"),
        ("64:ff9b::a00:35", "deniedHosts"),
    ] {
        let yaml = format!(
            "tenantId: acme\nservers:\n  postgres: {{host: '{host}', database: rag, credentialsSecretRef: {{name: pg}}}}\n  aiMcpServer: {{url: 'http://[{host}]/mcp'}}\n  mcpServers: [{{name: s, url: 'https://[{host}]:8443/'}}]\n"
        );
        let found = errors_with(&yaml, &policy);
        let fields: Vec<&str> = found
            .iter()
            .filter(|e| e.contains(rule))
            .filter_map(|e| e.split(':').next())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.servers.postgres.host",
                "spec.servers.aiMcpServer.url",
                "spec.servers.mcpServers[s].url"
            ],
            "{host}: {found:#?}"
        );
    }
    // The address itself, written plainly, is allowed: only the denied range is refused.
    let found = errors_with(
        "tenantId: acme\nservers:\n  aiMcpServer: {url: 'http://[::ffff:10.1.0.1]/mcp'}\n",
        &policy,
    );
    assert!(found.is_empty(), "{found:#?}");
}

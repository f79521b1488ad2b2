//! Semantic validation of specs: every rule the API server cannot express, plus the endpoint
//! policy. Returns every problem at once, each with its field path and what was expected.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use url::{Host, Url};

use super::failure::Failure;
use super::field::{ErrorKind, FieldError, FieldErrors, FieldPath};
use super::policy::EndpointPolicy;
use super::redact::is_credential_name;
use crate::api::servers::{HttpHeader, McpServer, PostgresServer, RoutingMode, S3Server, SslMode};
use crate::api::{
    GlobalMcpConfigSpec, PostgresCredentialsRef, S3CredentialsRef, SecretKeyRef, ServersSpec,
    TenantMcpConfigSpec, ValidationSettings,
};

/// Headers the MCP client manages itself; a config may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// Validates a `TenantMcpConfig` spec against the endpoint policy. Paths start at `spec`.
pub fn validate_tenant_spec(spec: &TenantMcpConfigSpec, policy: &EndpointPolicy) -> FieldErrors {
    let path = FieldPath::new("spec");
    let mut errors = FieldErrors::default();
    check_dns_label(&spec.tenant_id, &path.child("tenantId"), &mut errors);
    errors.extend(validate_servers(
        &spec.servers,
        &path.child("servers"),
        policy,
    ));
    validate_settings(&spec.validation, &path.child("validation"), &mut errors);
    errors
}

/// Validates an update of a `TenantMcpConfig` spec: the new spec on its own, plus the rules
/// that compare it with the stored one (the tenant id never changes).
pub fn validate_tenant_update(
    old: &TenantMcpConfigSpec,
    new: &TenantMcpConfigSpec,
    policy: &EndpointPolicy,
) -> FieldErrors {
    let mut errors = validate_tenant_spec(new, policy);
    if old.tenant_id != new.tenant_id {
        errors.push(FieldError::invalid(
            &FieldPath::new("spec.tenantId"),
            format!(
                "is immutable: was {:?}, got {:?}; create a new config for another tenant",
                old.tenant_id, new.tenant_id
            ),
        ));
    }
    errors
}

/// Validates a `GlobalMcpConfig` spec and compiles its endpoint policy, which also applies to
/// its own servers. The policy is `None` when the policy itself is malformed.
pub fn validate_global_spec(spec: &GlobalMcpConfigSpec) -> (FieldErrors, Option<EndpointPolicy>) {
    let path = FieldPath::new("spec");
    let mut errors = FieldErrors::default();
    check_dns_label(
        &spec.credentials_namespace,
        &path.child("credentialsNamespace"),
        &mut errors,
    );
    let (policy, policy_errors) =
        EndpointPolicy::compile(&spec.endpoint_policy, &path.child("endpointPolicy"));
    let policy_ok = policy_errors.is_empty();
    errors.extend(policy_errors);
    errors.extend(validate_servers(
        &spec.servers,
        &path.child("servers"),
        &policy,
    ));
    validate_settings(&spec.validation, &path.child("validation"), &mut errors);
    (errors, policy_ok.then_some(policy))
}

/// One server's spec, whatever its type.
#[derive(Clone, Copy, Debug)]
pub enum ServerSpecRef<'a> {
    /// A Postgres server.
    Postgres(&'a PostgresServer),
    /// An S3 server.
    Minio(&'a S3Server),
    /// An MCP server (the AI MCP server or a named one).
    Mcp(&'a McpServer),
}

impl<'a> ServerSpecRef<'a> {
    /// The spec of `key` among `servers`, if declared.
    pub fn of(servers: &'a ServersSpec, key: &super::candidate::ServerKey) -> Option<Self> {
        use super::server_key::ServerKey;
        match key {
            ServerKey::Postgres => servers.postgres.as_deref().map(Self::Postgres),
            ServerKey::Minio => servers.minio.as_deref().map(Self::Minio),
            ServerKey::AiMcp => servers.ai_mcp_server.as_deref().map(Self::Mcp),
            ServerKey::Mcp(name) => servers
                .mcp_servers
                .iter()
                .find(|n| &n.name == name)
                .map(|n| Self::Mcp(&n.server)),
        }
    }

    /// The hash the controller records for this spec (`specHash`).
    pub fn spec_hash(self) -> String {
        let hash = match self {
            Self::Postgres(s) => super::spec_hash(s),
            Self::Minio(s) => super::spec_hash(s),
            Self::Mcp(s) => super::spec_hash(s),
        };
        hash.unwrap_or_default()
    }
}

/// Whether `policy` still allows `server` as far as it can tell without resolving it (scheme,
/// port, host name, IP literal, virtual-host name, `requireTls`): `None`, or the failure. The
/// controller demotes an active entry it fails, and the client library refuses it; its
/// resolved addresses are checked on every connect.
pub fn policy_failure(server: ServerSpecRef<'_>, policy: &EndpointPolicy) -> Option<Failure> {
    let mut servers = ServersSpec::default();
    match server {
        ServerSpecRef::Postgres(s) => servers.postgres = Some(Box::new(s.clone())),
        ServerSpecRef::Minio(s) => servers.minio = Some(Box::new(s.clone())),
        ServerSpecRef::Mcp(s) => servers.ai_mcp_server = Some(Box::new(s.clone())),
    }
    let errors = validate_servers(&servers, &FieldPath::new("spec.servers"), policy);
    super::failure::split_errors(&errors, &servers)
        .per_server
        .into_values()
        .next()
}

/// Validates a set of servers (tenant or global) at `path`.
pub fn validate_servers(
    servers: &ServersSpec,
    path: &FieldPath,
    policy: &EndpointPolicy,
) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if let Some(pg) = &servers.postgres {
        validate_postgres(pg, &path.child("postgres"), policy, &mut errors);
    }
    if let Some(s3) = &servers.minio {
        validate_s3(s3, &path.child("minio"), policy, &mut errors);
    }
    if let Some(mcp) = &servers.ai_mcp_server {
        validate_mcp(mcp, &path.child("aiMcpServer"), policy, &mut errors);
    }
    let list = path.child("mcpServers");
    if servers.mcp_servers.len() > 32 {
        errors.push(FieldError::new(
            &list,
            ErrorKind::TooMany,
            format!(
                "must have at most 32 items, got {}",
                servers.mcp_servers.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, named) in servers.mcp_servers.iter().enumerate() {
        let item = list.index(i);
        check_dns_label(&named.name, &item.child("name"), &mut errors);
        if !seen.insert(named.name.as_str()) {
            errors.push(FieldError::new(
                &item.child("name"),
                ErrorKind::Duplicate,
                format!("must be unique, got {:?} twice", named.name),
            ));
        }
        validate_mcp(&named.server, &list.key(&named.name), policy, &mut errors);
    }
    errors
}

fn validate_postgres(
    pg: &PostgresServer,
    path: &FieldPath,
    policy: &EndpointPolicy,
    errors: &mut FieldErrors,
) {
    let host_path = path.child("host");
    match parse_plain_host(&pg.host) {
        Ok(host) => {
            if let Err(v) = policy.check_host(&host) {
                errors.push(FieldError::forbidden(&host_path, v.to_string()));
            }
        }
        Err(msg) => errors.push(FieldError::invalid(&host_path, msg)),
    }
    if let Some(port) = check_port(pg.port, &path.child("port"), errors)
        && let Err(v) = policy.check_port(port)
    {
        errors.push(FieldError::forbidden(&path.child("port"), v.to_string()));
    }
    if let Err(v) = policy.check_ssl_mode(pg.ssl_mode) {
        errors.push(FieldError::forbidden(&path.child("sslMode"), v.to_string()));
    }
    let db = &pg.database;
    if db.is_empty() || db.len() > 63 || db.chars().any(char::is_control) {
        errors.push(FieldError::invalid(
            &path.child("database"),
            format!("must be 1 to 63 bytes without control characters, got {db:?}"),
        ));
    }
    if let Some(ca) = &pg.ca_cert_secret_ref {
        check_secret_key_ref(ca, &path.child("caCertSecretRef"), errors);
        if pg.ssl_mode == SslMode::Disable {
            errors.push(FieldError::invalid(
                &path.child("caCertSecretRef"),
                "has no effect with sslMode disable: remove it or use verify-ca / verify-full",
            ));
        }
    }
    let pool = &pg.pool;
    let pool_path = path.child("pool");
    check_range(
        pool.max_connections,
        1,
        1000,
        &pool_path.child("maxConnections"),
        errors,
    );
    check_range(
        pool.min_connections,
        0,
        1000,
        &pool_path.child("minConnections"),
        errors,
    );
    if pool.min_connections > pool.max_connections {
        errors.push(FieldError::invalid(
            &pool_path.child("minConnections"),
            format!(
                "must be at most maxConnections ({}), got {}",
                pool.max_connections, pool.min_connections
            ),
        ));
    }
    check_range(
        pool.acquire_timeout_seconds,
        1,
        300,
        &pool_path.child("acquireTimeoutSeconds"),
        errors,
    );
    check_range(
        pool.idle_timeout_seconds,
        1,
        86400,
        &pool_path.child("idleTimeoutSeconds"),
        errors,
    );
    check_range(
        pool.max_lifetime_seconds,
        1,
        86400,
        &pool_path.child("maxLifetimeSeconds"),
        errors,
    );
    check_postgres_credentials(
        &pg.credentials_secret_ref,
        &path.child("credentialsSecretRef"),
        errors,
    );
}

fn validate_s3(s3: &S3Server, path: &FieldPath, policy: &EndpointPolicy, errors: &mut FieldErrors) {
    let endpoint_path = path.child("endpoint");
    let url = check_url(&s3.endpoint, &endpoint_path, policy, errors);
    if let Some(url) = &url
        && (!matches!(url.path(), "" | "/") || url.query().is_some())
    {
        errors.push(FieldError::invalid(
            &endpoint_path,
            format!(
                "must be a bare endpoint like https://minio.example.com:9000 without path or \
                     query (put the bucket in `bucket`), got {:?}",
                s3.endpoint
            ),
        ));
    }
    // Virtual-host addressing connects to `<bucket>.<endpoint host>`: a name no other field
    // shows, checked here as any host is (and again, resolved, on every connect).
    if !s3.force_path_style
        && let Some(host) = url.as_ref().and_then(Url::host)
    {
        match host {
            Host::Domain(domain) => {
                let name = format!("{}.{domain}", s3.bucket);
                if let Ok(vhost) = Host::parse(&name)
                    && let Err(v) = policy.check_host(&vhost)
                {
                    errors.push(FieldError::forbidden(
                        &path.child("bucket"),
                        format!("virtual-host name {name:?}: {v}"),
                    ));
                }
            }
            Host::Ipv4(_) | Host::Ipv6(_) => errors.push(FieldError::invalid(
                &path.child("forcePathStyle"),
                "must be true with an IP address endpoint: virtual-host addressing needs a host name",
            )),
        }
    }
    let region = &s3.region;
    if region.is_empty()
        || region.len() > 64
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errors.push(FieldError::invalid(
            &path.child("region"),
            format!(
                "must be 1 to 64 lowercase letters, digits and '-' (e.g. us-east-1), got {region:?}"
            ),
        ));
    }
    if let Err(msg) = check_bucket_name(&s3.bucket) {
        errors.push(FieldError::invalid(&path.child("bucket"), msg));
    }
    check_s3_credentials(
        &s3.credentials_secret_ref,
        &path.child("credentialsSecretRef"),
        errors,
    );
}

fn validate_mcp(
    mcp: &McpServer,
    path: &FieldPath,
    policy: &EndpointPolicy,
    errors: &mut FieldErrors,
) {
    let url_path = path.child("url");
    if let Some(url) = check_url(&mcp.url, &url_path, policy, errors)
        && let Some((name, _)) = url.query_pairs().find(|(name, _)| is_credential_name(name))
    {
        errors.push(FieldError::forbidden(
            &url_path,
            format!(
                "query parameter {name:?} looks like a credential: send it as a header with \
                     headers[].valueFrom or use bearerTokenSecretRef"
            ),
        ));
    }
    if let Some(token) = &mcp.bearer_token_secret_ref {
        check_secret_key_ref(token, &path.child("bearerTokenSecretRef"), errors);
    }
    let headers_path = path.child("headers");
    let mut seen = HashSet::new();
    for (i, header) in mcp.headers.iter().enumerate() {
        let item = headers_path.index(i);
        validate_header(header, &item, mcp.bearer_token_secret_ref.is_some(), errors);
        if !seen.insert(header.name.to_ascii_lowercase()) {
            errors.push(FieldError::new(
                &item.child("name"),
                ErrorKind::Duplicate,
                format!(
                    "must be unique (case-insensitive), got {:?} twice",
                    header.name
                ),
            ));
        }
    }
    check_range(
        mcp.timeout_seconds,
        1,
        600,
        &path.child("timeoutSeconds"),
        errors,
    );

    let routing = &mcp.tenant_routing;
    let routing_path = path.child("tenantRouting");
    if routing.mode != RoutingMode::Header && routing.header_name.is_some() {
        errors.push(FieldError::invalid(
            &routing_path.child("headerName"),
            format!("is only used with mode Header, got mode {:?}", routing.mode),
        ));
    }
    if routing.mode != RoutingMode::PathPrefix && routing.path_prefix.is_some() {
        errors.push(FieldError::invalid(
            &routing_path.child("pathPrefix"),
            format!(
                "is only used with mode PathPrefix, got mode {:?}",
                routing.mode
            ),
        ));
    }
    match routing.mode {
        RoutingMode::None => {}
        RoutingMode::Header => {
            let name = routing.header_name();
            let name_path = routing_path.child("headerName");
            if !is_http_token(name) {
                errors.push(FieldError::invalid(
                    &name_path,
                    format!("must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got {name:?}"),
                ));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                || is_credential_name(name)
            {
                errors.push(FieldError::forbidden(
                    &name_path,
                    format!("{name:?} is managed by the client or carries credentials; pick another header such as X-Tenant-Id"),
                ));
            } else if seen.contains(&name.to_ascii_lowercase()) {
                errors.push(FieldError::new(
                    &name_path,
                    ErrorKind::Duplicate,
                    format!(
                        "{name:?} is also set in headers; the routing header is set per tenant"
                    ),
                ));
            }
        }
        RoutingMode::PathPrefix => {
            let prefix = routing.path_prefix();
            let valid = prefix.starts_with('/')
                && prefix.matches("{tenantId}").count() == 1
                && prefix
                    .replace("{tenantId}", "t")
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'))
                && !prefix.contains("//");
            if !valid {
                errors.push(FieldError::invalid(
                    &routing_path.child("pathPrefix"),
                    format!(
                        "must start with '/', contain {{tenantId}} exactly once and otherwise only \
                         letters, digits and /-_.~ (e.g. /tenants/{{tenantId}}), got {prefix:?}"
                    ),
                ));
            }
        }
    }
}

fn validate_header(
    header: &HttpHeader,
    path: &FieldPath,
    has_bearer: bool,
    errors: &mut FieldErrors,
) {
    let name = &header.name;
    let lower = name.to_ascii_lowercase();
    if !is_http_token(name) {
        errors.push(FieldError::invalid(
            &path.child("name"),
            format!(
                "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got {name:?}"
            ),
        ));
    } else if RESERVED_HEADERS.contains(&lower.as_str()) {
        errors.push(FieldError::forbidden(
            &path.child("name"),
            format!("{name:?} is managed by the MCP client and cannot be set"),
        ));
    } else if lower == "authorization" && has_bearer {
        errors.push(FieldError::forbidden(
            &path.child("name"),
            "Authorization is already set by bearerTokenSecretRef; use one or the other",
        ));
    }
    match (&header.value, &header.value_from) {
        (Some(_), Some(_)) => errors.push(FieldError::invalid(
            path,
            "set either value or valueFrom, not both",
        )),
        (None, None) => errors.push(FieldError::required(
            &path.child("value"),
            "a literal value, or valueFrom naming a Secret key",
        )),
        (Some(value), None) => {
            if is_credential_name(name) {
                errors.push(FieldError::forbidden(
                    &path.child("value"),
                    format!(
                        "inline credentials are not allowed: {name:?} carries a credential, so \
                         read it from a Secret with valueFrom (name and key)"
                    ),
                ));
            } else if value.chars().any(|c| c.is_control() && c != '\t') {
                errors.push(FieldError::invalid(
                    &path.child("value"),
                    "must not contain control characters such as CR or LF",
                ));
            }
        }
        (None, Some(from)) => check_secret_key_ref(from, &path.child("valueFrom"), errors),
    }
}

fn validate_settings(settings: &ValidationSettings, path: &FieldPath, errors: &mut FieldErrors) {
    check_range(
        settings.connect_timeout_seconds,
        1,
        60,
        &path.child("connectTimeoutSeconds"),
        errors,
    );
    let interval = settings.revalidate_interval_seconds;
    if interval != 0 && !(30..=86400).contains(&interval) {
        errors.push(FieldError::invalid(
            &path.child("revalidateIntervalSeconds"),
            format!("must be 0 (off) or 30..=86400, got {interval}"),
        ));
    }
}

/// Parses and checks a URL endpoint: http(s), no credentials or fragment, host and port allowed
/// by the policy. Returns the URL when it parsed.
fn check_url(
    text: &str,
    path: &FieldPath,
    policy: &EndpointPolicy,
    errors: &mut FieldErrors,
) -> Option<Url> {
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(e) => {
            errors.push(FieldError::invalid(
                path,
                format!("must be an absolute http:// or https:// URL ({e}), got {text:?}"),
            ));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        errors.push(FieldError::new(
            path,
            ErrorKind::NotSupported,
            format!("scheme must be http or https, got {:?}", url.scheme()),
        ));
        return None;
    }
    if let Err(v) = policy.check_scheme(url.scheme()) {
        errors.push(FieldError::forbidden(path, v.to_string()));
    }
    // Credentials in the URL are reported by the inline-credential scan, with the right hint.
    if url.fragment().is_some() {
        errors.push(FieldError::invalid(path, "must not have a #fragment"));
    }
    match url.host() {
        Some(host) => {
            if let Err(v) = policy.check_host(&host.to_owned()) {
                errors.push(FieldError::forbidden(path, v.to_string()));
            }
        }
        None => errors.push(FieldError::invalid(path, "must have a host")),
    }
    if let Some(port) = url.port_or_known_default()
        && let Err(v) = policy.check_port(port)
    {
        errors.push(FieldError::forbidden(path, v.to_string()));
    }
    Some(url)
}

/// Parses a bare host (name, IPv4 or IPv6, bracketed or not) as the URL parser would, so
/// that odd IPv4 spellings (`0x7f.1`, `2130706433`) are normalized before the policy sees them.
pub fn parse_plain_host(text: &str) -> Result<Host<String>, String> {
    let expected = "must be a host name or IP address without scheme, port or credentials";
    if text.contains("://") || text.contains('@') || text.contains('/') {
        return Err(format!("{expected}, got {text:?}"));
    }
    if let Ok(v6) = text.parse::<Ipv6Addr>() {
        return Ok(Host::Ipv6(v6));
    }
    let host = Host::parse(text).map_err(|e| format!("{expected} ({e}), got {text:?}"))?;
    if let Host::Domain(name) = &host {
        let name = name.trim_end_matches('.');
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!("{expected}, got {text:?}"));
        }
    }
    Ok(host)
}

fn check_port(port: i32, path: &FieldPath, errors: &mut FieldErrors) -> Option<u16> {
    match u16::try_from(port) {
        Ok(p) if p >= 1 => Some(p),
        _ => {
            errors.push(FieldError::invalid(
                path,
                format!("must be 1..=65535, got {port}"),
            ));
            None
        }
    }
}

fn check_range(value: i32, min: i32, max: i32, path: &FieldPath, errors: &mut FieldErrors) {
    if !(min..=max).contains(&value) {
        errors.push(FieldError::invalid(
            path,
            format!("must be {min}..={max}, got {value}"),
        ));
    }
}

/// A DNS-1123 label: what tenant ids, server names and namespaces must be.
fn check_dns_label(value: &str, path: &FieldPath, errors: &mut FieldErrors) {
    if !is_dns_label(value) {
        errors.push(FieldError::invalid(
            path,
            format!(
                "must be a DNS label: 1 to 63 lowercase letters, digits or '-', starting and \
                 ending with a letter or digit, got {value:?}"
            ),
        ));
    }
}

/// Checks a tenant id as every entry point takes it: a DNS label, since it ends up in label
/// values, S3 prefixes, MCP paths and `app.tenant_id`. The error quotes at most 64 characters
/// of what was given.
pub fn check_tenant_id(tenant: &str) -> Result<(), String> {
    if is_dns_label(tenant) {
        return Ok(());
    }
    let shown: String = tenant.chars().take(64).collect();
    let more = if tenant.chars().count() > 64 {
        "…"
    } else {
        ""
    };
    Err(format!(
        "tenant id {shown:?}{more} is not a DNS label: expected 1 to 63 lowercase letters, digits \
         or '-', starting and ending with a letter or digit"
    ))
}

/// True for a DNS-1123 label.
pub fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// True for a DNS-1123 subdomain: what Secret and object names must be.
pub fn is_dns_subdomain(value: &str) -> bool {
    !value.is_empty() && value.len() <= 253 && value.split('.').all(is_dns_label)
}

fn check_secret_name(name: &str, path: &FieldPath, errors: &mut FieldErrors) {
    if !is_dns_subdomain(name) {
        errors.push(FieldError::invalid(
            path,
            format!(
                "must be a Secret name (a DNS subdomain: lowercase letters, digits, '-' and '.', \
                 at most 253 characters) in this namespace, got {name:?}"
            ),
        ));
    }
}

fn check_secret_key(key: &str, path: &FieldPath, errors: &mut FieldErrors) {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        errors.push(FieldError::invalid(
            path,
            format!("must be a Secret data key (letters, digits, '-', '_' and '.'), got {key:?}"),
        ));
    }
}

fn check_secret_key_ref(r: &SecretKeyRef, path: &FieldPath, errors: &mut FieldErrors) {
    check_secret_name(&r.name, &path.child("name"), errors);
    check_secret_key(&r.key, &path.child("key"), errors);
}

fn check_postgres_credentials(
    r: &PostgresCredentialsRef,
    path: &FieldPath,
    errors: &mut FieldErrors,
) {
    check_secret_name(&r.name, &path.child("name"), errors);
    check_secret_key(&r.username_key, &path.child("usernameKey"), errors);
    check_secret_key(&r.password_key, &path.child("passwordKey"), errors);
    if r.username_key == r.password_key {
        errors.push(FieldError::new(
            &path.child("passwordKey"),
            ErrorKind::Duplicate,
            format!(
                "must differ from usernameKey, got {:?} for both",
                r.password_key
            ),
        ));
    }
}

fn check_s3_credentials(r: &S3CredentialsRef, path: &FieldPath, errors: &mut FieldErrors) {
    check_secret_name(&r.name, &path.child("name"), errors);
    check_secret_key(&r.access_key_id_key, &path.child("accessKeyIdKey"), errors);
    check_secret_key(
        &r.secret_access_key_key,
        &path.child("secretAccessKeyKey"),
        errors,
    );
    if r.access_key_id_key == r.secret_access_key_key {
        errors.push(FieldError::new(
            &path.child("secretAccessKeyKey"),
            ErrorKind::Duplicate,
            format!(
                "must differ from accessKeyIdKey, got {:?} for both",
                r.secret_access_key_key
            ),
        ));
    }
}

/// S3 bucket naming rules (the general-purpose bucket rules AWS and MinIO share).
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let rules = "must be an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', \
                 starting and ending with a letter or digit, not an IP address";
    let chars_ok = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    let looks_like_ip = bucket.parse::<std::net::Ipv4Addr>().is_ok();
    let reserved = bucket.starts_with("xn--")
        || bucket.starts_with("sthree-")
        || bucket.ends_with("-s3alias")
        || bucket.ends_with("--ol-s3");
    if (3..=63).contains(&bucket.len())
        && chars_ok
        && ends_ok
        && !looks_like_ip
        && !bucket.contains("..")
        && !bucket.contains(".-")
        && !bucket.contains("-.")
        && !reserved
    {
        Ok(())
    } else {
        Err(format!("{rules}, got {bucket:?}"))
    }
}

/// RFC 9110 token characters: what header names are made of.
/// Whether a config may set header `name` from a value or a Secret: an HTTP token that the
/// MCP client does not manage itself (`Host`, `Transfer-Encoding`, …). The same rule for
/// `headers[].name` in a spec and for the `header.*` keys of a snapshot Secret.
pub fn is_settable_header(name: &str) -> bool {
    is_http_token(name) && !RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

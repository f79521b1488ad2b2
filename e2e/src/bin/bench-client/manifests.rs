//! The directory of manifests the directory-source measurements load: N tenants, each in a
//! namespace bound to it, declaring its own Postgres, S3 and AI MCP server with a credentials
//! Secret, and a GlobalMcpConfig whose servers serve every tenant without a config.

use std::io::Write as _;

/// Where the tenants' servers are: the local stack's for the connection set-up, unused
/// loopback addresses for everything else (pools are lazy, MCP sessions open on first call).
pub struct Servers {
    /// Postgres host and port.
    pub postgres: (String, u16),
    /// The database every tenant's login opens.
    pub database: Option<String>,
    /// Postgres login and password (one per tenant when `None`: `u<i>` / `p<i>`).
    pub login: Option<(String, String)>,
    /// S3 endpoint URL.
    pub s3: String,
    /// S3 access key and secret (one per tenant when `None`).
    pub s3_keys: Option<(String, String)>,
    /// AI MCP URL.
    pub ai_mcp: String,
}

impl Servers {
    /// Loopback addresses nothing listens on.
    pub fn unused() -> Self {
        Self {
            postgres: ("127.0.0.1".into(), 5432),
            database: None,
            login: None,
            s3: "http://127.0.0.1:9000".into(),
            s3_keys: None,
            ai_mcp: "http://127.0.0.1:8080/mcp".into(),
        }
    }
}

/// The name of tenant `i` of a run (`prefix` tells the runs apart).
pub fn tenant(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:05}")
}

/// Writes `tenants.yaml` into `dir`: the GlobalMcpConfig with global servers on `servers`, and
/// `n` tenants named with `prefix`.
pub fn write(
    dir: &std::path::Path,
    prefix: &str,
    n: usize,
    servers: &Servers,
) -> anyhow::Result<()> {
    let (pg_host, pg_port) = &servers.postgres;
    // Streamed to the file, not built as one string: freeing a string of tens of megabytes
    // raises glibc's mmap threshold, and the memory measured next would then find the
    // directory's text on its heap instead of in a mapping returned when it is dropped.
    let mut text = std::io::BufWriter::new(std::fs::File::create(dir.join("tenants.yaml"))?);
    write!(
        text,
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata:\n  name: default\nspec:\n  endpointPolicy:\n    allowLoopback: true\n  servers:\n    postgres:\n      host: {pg_host}\n      port: {pg_port}\n      database: global\n      sslMode: disable\n      credentialsSecretRef:\n        name: global\n    minio:\n      endpoint: {}\n      bucket: global\n      credentialsSecretRef:\n        name: global\n    aiMcpServer:\n      url: {}\n      bearerTokenSecretRef:\n        name: global\n        key: token\n\
---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: global\n  namespace: tenant-mcp-credentials\nstringData:\n  username: platform\n  password: platform\n  accessKeyId: platform\n  secretAccessKey: platform\n  token: platform\n",
        servers.s3, servers.ai_mcp
    )?;
    for i in 0..n {
        let t = tenant(prefix, i);
        let (user, password) = servers
            .login
            .clone()
            .unwrap_or_else(|| (format!("u{i}"), format!("p{i}")));
        let (ak, sk) = servers
            .s3_keys
            .clone()
            .unwrap_or_else(|| (format!("a{i}"), format!("s{i}")));
        let database = servers.database.clone().unwrap_or_else(|| format!("db{i}"));
        write!(
            text,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {t}\n  labels:\n    tenantmcp.dev/tenant: {t}\n\
---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: {t}\nstringData:\n  username: {user}\n  password: {password}\n  accessKeyId: {ak}\n  secretAccessKey: {sk}\n  token: tok{i}\n\
---\napiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata:\n  name: config\n  namespace: {t}\nspec:\n  tenantId: {t}\n  servers:\n    postgres:\n      host: {pg_host}\n      port: {pg_port}\n      database: {database}\n      sslMode: disable\n      credentialsSecretRef:\n        name: creds\n    minio:\n      endpoint: {}\n      bucket: {}\n      credentialsSecretRef:\n        name: creds\n    aiMcpServer:\n      url: {}\n      bearerTokenSecretRef:\n        name: creds\n        key: token\n",
            servers.s3,
            bucket(&t),
            servers.ai_mcp,
        )?;
    }
    text.flush()?;
    Ok(())
}

/// Tenant `t`'s bucket.
pub fn bucket(t: &str) -> String {
    format!("bucket-{t}")
}

//! Driving the management MCP server in tests: tokens for each kind of caller, the server on a
//! local port, and a tool call through rmcp's Streamable HTTP client.

use axum::serve::ListenerExt as _;
use std::sync::Arc;

use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tenant_mcp::mcp_server::auth::{AuthSettings, Authenticator};
use tenant_mcp::mcp_server::http::router;
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp::mcp_server::tools::ManagementTools;
use tenant_mcp::probe::Prober;
use tokio_util::sync::CancellationToken;

/// The HS256 secret test tokens are signed with.
pub const SECRET: &[u8] = b"management-secret-of-32-bytes-or-more";
/// The issuer test tokens carry and the server requires.
pub const ISSUER: &str = "https://issuer.tenant-mcp.test";
/// The audience test tokens carry and the server requires.
pub const AUDIENCE: &str = "tenant-mcp";

/// A token signed with `key` for `claims` (HS256).
pub fn sign(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap_or_default()
}

/// The claims of a valid token for `roles` (and `tenant`), expiring in `exp_offset` seconds.
pub fn claims(roles: &[&str], tenant: Option<&str>, exp_offset: i64) -> Value {
    json!({
        "sub": format!("{}@{}", roles.join("+"), tenant.unwrap_or("platform")),
        "iss": ISSUER, "aud": AUDIENCE,
        "roles": roles, "tenant": tenant,
        "exp": jiff::Timestamp::now().as_second() + exp_offset,
    })
}

/// A valid token for `roles` (and `tenant`).
pub fn token(roles: &[&str], tenant: Option<&str>) -> String {
    sign(&claims(roles, tenant, 600), SECRET)
}

/// The management server on a local port, until dropped.
pub struct AdminServer {
    /// `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    stop: CancellationToken,
}

impl AdminServer {
    /// Serves the tools over `kube` with `limits`, verifying tokens as [`token`] makes them.
    pub async fn start(kube: kube::Client, limits: Limits) -> std::io::Result<Self> {
        Self::start_with(kube, limits, Prober::new(8)).await
    }

    /// As [`Self::start`], with connection tests by `prober` (e.g. one with a test resolver).
    pub async fn start_with(
        kube: kube::Client,
        limits: Limits,
        prober: Prober,
    ) -> std::io::Result<Self> {
        let settings = AuthSettings {
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..AuthSettings::default()
        };
        let auth = Authenticator::hs256(SECRET, settings).map_err(std::io::Error::other)?;
        let limits = Arc::new(limits);
        let tools = ManagementTools::new(kube, prober, limits.clone());
        let stop = CancellationToken::new();
        let app = router(tools, Arc::new(auth), &limits, &[], stop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/mcp", listener.local_addr()?);
        let until = stop.clone();
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
        });
        Ok(Self { url, stop })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the SDK tests register against: a tenant (`acme-<suffix>`) with its own Postgres
/// database and login (`acme_<suffix>`, password `acme-pass`), its namespace bound to it, and
/// the GlobalMcpConfig allowing loopback endpoints (everything here runs on this machine),
/// with the platform's credentials in a namespace of the same suffix.
pub struct SdkTenant {
    /// The tenant id.
    pub tenant: String,
    /// Its Postgres login.
    pub user: String,
    /// Its Postgres database.
    pub database: String,
    /// The namespace bound to it.
    pub namespace: String,
    /// The suffix every name carries.
    pub suffix: String,
}

impl SdkTenant {
    /// Creates the tenant's database, login and namespace on `pg` and `cluster`, and applies
    /// the GlobalMcpConfig.
    pub async fn create(
        cluster: &crate::harness::Cluster,
        pg: &crate::stack::postgres::Postgres,
    ) -> anyhow::Result<Self> {
        use kube::api::{Api, Patch, PatchParams};
        let database = pg.create_database("acme").await?;
        let suffix = database[database.len() - 6..].to_owned();
        let (tenant, user) = (format!("acme-{suffix}"), format!("acme_{suffix}"));
        crate::stack::postgres::execute(
            &pg.admin_url("postgres"),
            &format!("CREATE ROLE {user} LOGIN PASSWORD 'acme-pass'"),
        )
        .await?;
        let creds_ns = format!("tenant-mcp-system-{suffix}");
        let namespace = format!("tenant-{tenant}");
        cluster.create_namespace(&creds_ns, None).await?;
        cluster.create_namespace(&namespace, Some(&tenant)).await?;
        Api::<tenant_mcp::api::GlobalMcpConfig>::all(cluster.client())
            .patch(
                "default",
                &PatchParams::apply("platform-team").force(),
                &Patch::Apply(json!({
                    "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
                    "metadata": {"name": "default"},
                    "spec": {"credentialsNamespace": creds_ns,
                             "endpointPolicy": {"allowLoopback": true}}
                })),
            )
            .await?;
        Ok(Self {
            tenant,
            user,
            database,
            namespace,
            suffix,
        })
    }
}

/// A failed call: a tool result flagged `isError` (its `structuredContent`: `reason`,
/// `message`, field `errors`), a JSON-RPC error (its message and `data`), or a transport
/// failure (e.g. a refused token) with `data` null.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The message.
    pub message: String,
    /// The failure's structured content, or the JSON-RPC error's data.
    pub data: Value,
    /// True for a tool result flagged `isError` (what a client hands to the model), false
    /// for a JSON-RPC error or a transport failure.
    pub is_tool_result: bool,
}

impl CallError {
    /// `data.reason` (`Forbidden`, `Invalid`, `Conflict`…), or `""`.
    pub fn reason(&self) -> &str {
        self.data["reason"].as_str().unwrap_or_default()
    }

    /// The paths of `data.errors`.
    pub fn paths(&self) -> Vec<String> {
        self.data["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["path"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.message, self.data)
    }
}

/// Calls `tool` with `arguments` as the holder of `bearer`, in a session of its own: the
/// structured result, or the error.
pub async fn call(
    url: &str,
    bearer: &str,
    tool: &str,
    arguments: Value,
) -> Result<Value, CallError> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(bearer),
    );
    let failed = |message: String| CallError {
        message,
        data: Value::Null,
        is_tool_result: false,
    };
    let client = ().serve(transport).await.map_err(|e| failed(e.to_string()))?;
    let result = client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
        )
        .await;
    let _ = client.cancel().await;
    match result {
        Ok(result) if result.is_error == Some(true) => {
            let data = result.structured_content.unwrap_or(Value::Null);
            let message = data["message"]
                .as_str()
                .map_or_else(|| format!("{:?}", result.content), str::to_owned);
            Err(CallError {
                message,
                data,
                is_tool_result: true,
            })
        }
        Ok(result) => result
            .structured_content
            .ok_or_else(|| failed(format!("no structured content: {:?}", result.content))),
        Err(ServiceError::McpError(e)) => Err(CallError {
            message: e.message.to_string(),
            data: e.data.unwrap_or(Value::Null),
            is_tool_result: false,
        }),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// Runs the official MCP Python SDK client (`e2e/python/admin_client.py`, in `.tools/python`
/// or `$TENANT_MCP_PYTHON`) with `args` (a URL, or `stdio` and a command) and extra `env` on
/// `steps`; its JSON report. Panics when the client fails.
pub fn python_client(args: &[&str], env: &[(&str, &str)], steps: &Value) -> Value {
    python_script("admin_client.py", args, env, steps)
}

/// Runs `e2e/python/load_client.py args` (the SDK at full speed: `burst` or `fuzz`, see the
/// script) with `input` on its standard input, and returns its report.
pub fn load_client(args: &[&str], input: &Value) -> Value {
    python_script("load_client.py", args, &[], input)
}

/// Runs the official MCP TypeScript SDK client (`e2e/node/admin_client.mjs`, its packages
/// installed into `e2e/node/node_modules` by `scripts/test`) against `url` on `steps`; its
/// JSON report. Panics when the client fails.
#[allow(clippy::expect_used)] // a test helper: fails loudly
pub fn typescript_client(url: &str, steps: &Value) -> Value {
    let dir = crate::stack::repo_root().join("e2e/node");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "{}/node_modules is missing: run scripts/test, or `source scripts/lib.sh && ensure_node_mcp`",
        dir.display()
    );
    let mut command = std::process::Command::new("node");
    command.arg(dir.join("admin_client.mjs")).arg(url);
    run_json_client("TypeScript", command, steps)
}

/// Runs the Python script `name` of `e2e/python/` with the SDK's interpreter.
#[allow(clippy::expect_used)] // a test helper: fails loudly
fn python_script(name: &str, args: &[&str], env: &[(&str, &str)], input: &Value) -> Value {
    let python = std::env::var_os("TENANT_MCP_PYTHON").map_or_else(
        || crate::stack::repo_root().join(".tools/python/bin/python"),
        Into::into,
    );
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, or `source scripts/lib.sh && ensure_python_mcp`",
        python.display()
    );
    let mut command = std::process::Command::new(&python);
    command
        .arg(crate::stack::repo_root().join("e2e/python").join(name))
        .args(args)
        .envs(env.iter().copied());
    run_json_client("Python", command, input)
}

/// Runs `command` with `input` as JSON on its standard input; the JSON it prints.
#[allow(clippy::expect_used)] // a test helper: fails loudly
fn run_json_client(what: &str, mut command: std::process::Command, input: &Value) -> Value {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the {what} client: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("writing the steps");
    }
    let output = child.wait_with_output().expect("running the client");
    assert!(
        output.status.success(),
        "the {what} client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the {what} client's report: {e}"))
}

//! The MCP probe: `initialize` then one page of `tools/list` over Streamable HTTP (rmcp) with
//! the bearer token, the configured headers and the tenant's routing, reporting the server's
//! name, version and tool count; every message read is bounded ([`MAX_MESSAGE_BYTES`]). Tells apart an unreachable server, a TLS failure, a refused token, a token
//! without access, and something that is not an MCP server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rmcp::ServiceExt as _;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};

use super::error::ProbeError;
use crate::api::McpServer;
use crate::api::conditions::reason;
use crate::config::{McpCredentials, mcp_target};
use crate::egress::Egress;

/// The largest MCP message read from a server, as one JSON body or one SSE event (rmcp's own
/// default is 16 MiB): a tenant's server must not exhaust the controller's, the management
/// server's or an application's memory (threat model: a tenant's own servers). Tool results
/// larger than this are refused with `ProtocolError`.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The most `tools/list` pages the client library follows (the probe reads one).
pub const MAX_TOOL_PAGES: usize = 16;

/// The most tools the client library accepts from one server, over all pages.
pub const MAX_TOOLS: usize = 4096;

/// What a passing MCP probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpReport {
    /// `serverInfo.name` from the `initialize` answer.
    pub server_name: String,
    /// `serverInfo.version` from the `initialize` answer.
    pub server_version: String,
    /// The number of tools on the first page of `tools/list` (the probe reads one page: a
    /// server that answers it speaks MCP).
    pub tool_count: usize,
    /// Time from connecting to the end of `tools/list`.
    pub latency: Duration,
}

/// Initializes an MCP session with `server` as `tenant` would reach it (its routing applied;
/// `None` for a check of a global server itself) and lists its tools, on the checked HTTP
/// client the client library uses (the name resolved and checked on connect, no redirect, no
/// proxy).
pub async fn probe_mcp(
    egress: &Egress,
    server: &McpServer,
    tenant: Option<&str>,
    credentials: &McpCredentials,
) -> Result<McpReport, ProbeError> {
    let target = mcp_target(server, tenant)
        .map_err(|e| ProbeError::new(reason::UNREACHABLE, e.to_string()))?;
    let url = &target.url;
    let what = format!("MCP server {url}");
    egress.check_url(url)?;
    let http = egress.mcp_http();
    let config = transport_config(&target, credentials)
        .map_err(|message| ProbeError::new(reason::PROTOCOL_ERROR, format!("{what}: {message}")))?;
    let transport = StreamableHttpClientTransport::with_client(http, config);
    let client_info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("tenant-mcp-probe", env!("CARGO_PKG_VERSION")),
    );
    let scrub = |text: String| scrub(text, credentials);
    let started = Instant::now();
    let session = client_info
        .serve(transport)
        .await
        .map_err(|e| classify(&what, &e, scrub))?;
    let info = session
        .peer_info()
        .and_then(|p| p.server_info.clone())
        .unwrap_or_else(|| Implementation::new("", ""));
    let page = session.list_tools(None).await;
    let latency = started.elapsed();
    // Ending the session is a courtesy to the server; the result is known already.
    let _ = session.cancel().await;
    let page = page.map_err(|e| classify(&format!("{what} tools/list"), &e, scrub))?;
    Ok(McpReport {
        server_name: info.name,
        server_version: info.version,
        tool_count: page.tools.len(),
        latency,
    })
}

/// The transport settings of requests to `target` with `credentials`: plain headers, secret
/// headers (marked sensitive so they never appear in debug output) and the bearer token.
/// Shared with the client library so both reach a server the same way.
pub(crate) fn transport_config(
    target: &crate::config::McpTarget,
    credentials: &McpCredentials,
) -> Result<StreamableHttpClientTransportConfig, String> {
    let url = &target.url;
    let mut headers = HashMap::new();
    let plain = target
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str(), false));
    let secret = credentials
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose(), true));
    for (name, value, sensitive) in plain.chain(secret) {
        let header_name = http::HeaderName::try_from(name)
            .map_err(|_| format!("header name {name:?} is not valid"))?;
        let mut header_value = http::HeaderValue::try_from(value)
            .map_err(|_| format!("the value of header {name:?} is not a valid header value"))?;
        header_value.set_sensitive(sensitive);
        headers.insert(header_name, header_value);
    }
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
        .custom_headers(headers)
        .max_json_response_size(MAX_MESSAGE_BYTES)
        .max_sse_event_size(MAX_MESSAGE_BYTES);
    if let Some(token) = &credentials.bearer_token {
        config = config.auth_header(token.expose());
    }
    Ok(config)
}

/// Replaces every credential value in text a server sent back (an error body may echo a
/// header).
pub(crate) fn scrub(mut text: String, credentials: &McpCredentials) -> String {
    for value in credentials.values().filter(|v| v.len() >= 4) {
        text = text.replace(value, crate::config::redact::REDACTED);
    }
    text
}

/// The condition reason of an rmcp error, named as connection tests name it (the client
/// library's metrics use it, so an alert and a config's condition agree).
pub(crate) fn reason_of(error: &(dyn std::error::Error + 'static)) -> &'static str {
    classify("", error, |text| text).reason()
}

/// Maps an rmcp error to a reason by what it is made of: the transport's own error variants
/// first, then the HTTP status rmcp reports in text for unchallenged 401/403/404 answers.
fn classify(
    what: &str,
    error: &(dyn std::error::Error + 'static),
    scrub: impl Fn(String) -> String,
) -> ProbeError {
    if let Some(refused) = egress_cause(error) {
        let reason = refused.reason();
        return ProbeError::new(reason, format!("{what}: {refused}"));
    }
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(http) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            match http {
                StreamableHttpError::AuthRequired(_) => {
                    return ProbeError::new(
                        reason::AUTH_FAILED,
                        format!(
                            "{what} refused the bearer token (HTTP 401): check bearerTokenSecretRef"
                        ),
                    );
                }
                StreamableHttpError::InsufficientScope(_) => {
                    return ProbeError::new(
                        reason::ACCESS_DENIED,
                        format!("{what}: the token lacks a required scope (HTTP 403)"),
                    );
                }
                _ => {}
            }
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && r.is_timeout()
        {
            return ProbeError::new(reason::TIMEOUT, format!("{what}: timed out"));
        }
        chain.push(e.to_string());
        if e.downcast_ref::<rustls::Error>().is_some() {
            let detail = scrub(e.to_string());
            return ProbeError::new(reason::TLS_FAILED, format!("{what}: TLS failed: {detail}"));
        }
        next = source_of(e);
    }
    let lower = chain.join(": ").to_ascii_lowercase();
    // Outer levels repeat their sources' text; the innermost two say what happened.
    chain.dedup();
    let start = chain.len().saturating_sub(2);
    let detail = scrub(chain[start..].join(": "));
    let has = |s: &str| lower.contains(s);
    if has("http 401") {
        ProbeError::new(
            reason::AUTH_FAILED,
            format!(
                "{what} refused the request (HTTP 401): check bearerTokenSecretRef and headers"
            ),
        )
    } else if has("http 403") {
        ProbeError::new(
            reason::ACCESS_DENIED,
            format!("{what}: access denied (HTTP 403): {detail}"),
        )
    } else if has("http 404") || has("http 405") {
        ProbeError::new(
            reason::PROTOCOL_ERROR,
            format!("{what}: no MCP endpoint at this URL (check url and tenantRouting): {detail}"),
        )
    } else if has("certificate") || has("tls") || has("handshake") || has("invalid peer") {
        ProbeError::new(reason::TLS_FAILED, format!("{what}: TLS failed: {detail}"))
    } else if has("connection refused")
        || has("error sending request")
        || has("connection reset")
        || has("dns error")
        || has("tcp connect")
        || has("client error (connect)")
    {
        ProbeError::new(reason::UNREACHABLE, format!("{what}: {detail}"))
    } else {
        ProbeError::new(reason::PROTOCOL_ERROR, format!("{what}: {detail}"))
    }
}

/// The checked resolver's refusal behind an rmcp error, if that is what failed (rmcp keeps
/// transport errors in fields that are not marked as sources, so the chain is walked here).
pub(crate) fn egress_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::egress::EgressError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<crate::egress::EgressError>() {
            return Some(found);
        }
        next = source_of(e);
    }
    None
}

/// The next error down the chain, including where rmcp keeps it in a field that is not marked
/// as the source.
fn source_of<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(rmcp::service::ClientInitializeError::TransportError { error, .. }) =
        error.downcast_ref()
    {
        return Some(error);
    }
    if let Some(StreamableHttpError::Client(error)) =
        error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return Some(error);
    }
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
    {
        return Some(inner);
    }
    error.source()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credential;

    #[test]
    fn scrub_removes_every_credential_value() {
        let creds = McpCredentials {
            bearer_token: Some(Credential::new("tok-123456")),
            headers: [("X-Api-Key".to_owned(), Credential::new("key-abcdef"))].into(),
        };
        let text = scrub("got tok-123456 and key-abcdef and ok".into(), &creds);
        assert_eq!(text, "got *** and *** and ok");
    }
}

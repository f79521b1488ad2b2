//! Where a request to an MCP server goes for a tenant: the URL with the tenant's path prefix,
//! and the non-secret headers (literal ones plus the tenant header). Shared by the probe and the
//! client library so both reach a shared server exactly the same way.

use url::Url;

use crate::api::servers::{McpServer, RoutingMode};

/// The URL and plain headers of requests to one MCP server for one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpTarget {
    /// The endpoint, with the tenant's path prefix applied.
    pub url: Url,
    /// Literal headers of the config, then the tenant header when routing by header. Headers
    /// read from Secrets are not here: they travel as credentials.
    pub headers: Vec<(String, String)>,
}

/// Why a target could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// `url` is not a URL.
    #[error("url {url:?} is not a valid URL: {reason}")]
    InvalidUrl {
        /// The configured URL.
        url: String,
        /// What the parser said.
        reason: String,
    },
}

/// The target of `server` for `tenant`. With no tenant (a check of the global server itself),
/// routing adds nothing.
pub fn mcp_target(server: &McpServer, tenant: Option<&str>) -> Result<McpTarget, RoutingError> {
    let mut url = Url::parse(&server.url).map_err(|e| RoutingError::InvalidUrl {
        url: server.url.clone(),
        reason: e.to_string(),
    })?;
    let mut headers: Vec<(String, String)> = server
        .headers
        .iter()
        .filter_map(|h| Some((h.name.clone(), h.value.clone()?)))
        .collect();
    let routing = &server.tenant_routing;
    match (routing.mode, tenant) {
        (RoutingMode::Header, Some(tenant)) => {
            headers.push((routing.header_name().to_owned(), tenant.to_owned()));
        }
        (RoutingMode::PathPrefix, Some(tenant)) => {
            let prefix = routing.path_prefix().replace("{tenantId}", tenant);
            let rest = url.path().trim_start_matches('/').to_owned();
            let joined = if rest.is_empty() {
                prefix
            } else {
                format!("{}/{rest}", prefix.trim_end_matches('/'))
            };
            url.set_path(&joined);
        }
        _ => {}
    }
    Ok(McpTarget { url, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(routing: serde_json::Value) -> McpServer {
        serde_json::from_value(serde_json::json!({
            "url": "https://ai.example.com/mcp?x=1",
            "headers": [{"name": "X-Team", "value": "rag"},
                        {"name": "X-Api-Key", "valueFrom": {"name": "s", "key": "k"}}],
            "tenantRouting": routing,
        }))
        .unwrap()
    }

    #[test]
    fn header_routing_adds_the_tenant_header_after_the_literal_ones() {
        let target =
            mcp_target(&server(serde_json::json!({"mode": "Header"})), Some("acme")).unwrap();
        assert_eq!(target.url.as_str(), "https://ai.example.com/mcp?x=1");
        assert_eq!(
            target.headers,
            [
                ("X-Team".into(), "rag".into()),
                ("X-Tenant-Id".into(), "acme".into())
            ]
        );
        let custom = serde_json::json!({"mode": "Header", "headerName": "X-Org"});
        let target = mcp_target(&server(custom), Some("acme")).unwrap();
        assert_eq!(target.headers[1], ("X-Org".into(), "acme".into()));
    }

    #[test]
    fn path_routing_puts_the_prefix_before_the_path() {
        let target = mcp_target(
            &server(serde_json::json!({"mode": "PathPrefix"})),
            Some("acme"),
        )
        .unwrap();
        assert_eq!(
            target.url.as_str(),
            "https://ai.example.com/tenants/acme/mcp?x=1"
        );
        assert_eq!(target.headers, [("X-Team".into(), "rag".into())]);
        let custom = serde_json::json!({"mode": "PathPrefix", "pathPrefix": "/t/{tenantId}/"});
        let mut s = server(custom);
        s.url = "http://10.0.0.1:8080".into();
        let target = mcp_target(&s, Some("acme")).unwrap();
        assert_eq!(target.url.as_str(), "http://10.0.0.1:8080/t/acme/");
    }

    #[test]
    fn no_tenant_or_no_routing_leaves_the_url_alone() {
        for (routing, tenant) in [
            (serde_json::json!({"mode": "PathPrefix"}), None),
            (serde_json::json!({"mode": "Header"}), None),
            (serde_json::json!({"mode": "None"}), Some("acme")),
        ] {
            let target = mcp_target(&server(routing), tenant).unwrap();
            assert_eq!(target.url.as_str(), "https://ai.example.com/mcp?x=1");
            assert_eq!(target.headers.len(), 1);
        }
        let mut bad = server(serde_json::json!({}));
        bad.url = "not a url".into();
        let err = mcp_target(&bad, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("url \"not a url\" is not a valid URL"),
            "{err}"
        );
    }
}

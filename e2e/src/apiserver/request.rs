//! Parsing a resource request: which type, namespace, name and subresource a path names, and
//! the query parameters the verbs read.

use std::collections::HashMap;

use super::errors::ApiError;
use super::resources::ResourceType;

/// A request for a resource (or collection, or subresource).
#[derive(Clone, Debug)]
pub struct Target {
    /// The resource type.
    pub rt: ResourceType,
    /// Namespace from the path (empty for cluster-scoped requests and all-namespace lists).
    pub namespace: String,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource (`status`), if any.
    pub subresource: Option<String>,
}

/// Query parameters.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a URL query string.
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`, `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A numeric parameter.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

/// Resolves `segments` (what follows `/api/v1` or `/apis/{group}/{version}`) to a target.
pub fn resolve(
    types: &[ResourceType],
    group: &str,
    version: &str,
    segments: &[&str],
) -> Result<Target, ApiError> {
    let served = |plural: &str| {
        types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    };
    let not_found = || ApiError::no_route(&format!("{group}/{version}/{}", segments.join("/")));
    let (namespace, rest) = match segments {
        ["namespaces", ns, plural, rest @ ..]
            if !matches!(*plural, "status" | "finalize")
                && served(plural).is_some_and(|t| t.namespaced) =>
        {
            (
                (*ns).to_owned(),
                std::iter::once(*plural)
                    .chain(rest.iter().copied())
                    .collect::<Vec<_>>(),
            )
        }
        _ => (String::new(), segments.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some((*name).to_owned()), None),
        [plural, name, sub] => (*plural, Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return Err(not_found()),
    };
    let rt = served(plural).ok_or_else(not_found)?.clone();
    if !namespace.is_empty() && !rt.namespaced {
        return Err(not_found());
    }
    if let Some(sub) = &subresource
        && !(sub == "status" && rt.status_subresource)
    {
        return Err(not_found());
    }
    Ok(Target {
        rt,
        namespace,
        name,
        subresource,
    })
}

//! Small building blocks the fault scenarios share: objects applied server-side, a tenant's
//! namespace bound to it, its Secrets, reading a config's conditions, and tenants as YAML for
//! a directory source.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tenant_mcp::api::{McpConfigStatus, TenantMcpConfig};

/// Tenant `tenant`'s namespace (`tenant`, bound to it), Secret `pg` with `login` and
/// `password`, and a config on its own Postgres database `database` at 127.0.0.1:`port` with
/// the pool settings `pool` (a YAML flow mapping): three YAML documents, each starting with
/// `---`, for a directory source.
pub fn postgres_tenant_yaml(
    tenant: &str,
    login: &str,
    password: &str,
    (port, database): (u16, &str),
    pool: &str,
) -> String {
    format!(
        "---
apiVersion: v1
kind: Namespace
metadata: {{name: {tenant}, labels: {{tenantmcp.dev/tenant: {tenant}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pg, namespace: {tenant}}}
stringData: {{username: {login}, password: {password}}}
---
apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata: {{name: config, namespace: {tenant}}}
spec:
  tenantId: {tenant}
  servers:
    postgres:
      host: 127.0.0.1
      port: {port}
      database: {database}
      sslMode: disable
      pool: {pool}
      credentialsSecretRef: {{name: pg}}
"
    )
}

/// Writes `tenants.yaml` into `dir`: a GlobalMcpConfig allowing loopback and `n` tenants named
/// `prefix` + index ([`postgres_tenant_yaml`]), each with the pool settings `pool` on database
/// `database` of the server at 127.0.0.1:`port`, all with one login.
pub fn write_postgres_tenants(
    dir: &std::path::Path,
    (port, database): (u16, &str),
    (login, password): (&str, &str),
    (prefix, n): (&str, usize),
    pool: &str,
) -> std::io::Result<()> {
    let mut text = String::from(
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {name: default}\nspec:\n  endpointPolicy: {allowLoopback: true}\n",
    );
    for i in 0..n {
        text.push_str(&postgres_tenant_yaml(
            &format!("{prefix}{i}"),
            login,
            password,
            (port, database),
            pool,
        ));
    }
    // Written aside and renamed: a directory source polling meanwhile never reads half a file.
    let part = dir.join(".tenants.yaml.part");
    std::fs::write(&part, text)?;
    std::fs::rename(part, dir.join("tenants.yaml"))
}

/// The field manager the scenarios apply with.
pub const MANAGER: &str = "e2e-scenario";

/// Applies `object` (a full manifest as JSON) server-side, forcing ownership.
pub async fn apply(client: &kube::Client, object: &Value) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use kube::api::{DynamicObject, GroupVersionKind};
    use kube::discovery::{Scope, pinned_kind};
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (resource, capabilities) =
        pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
            .await
            .with_context(|| format!("apply: discovering {api_version} {kind}"))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// A Namespace bound to `tenant` (or unbound).
pub fn namespace(name: &str, tenant: Option<&str>) -> Value {
    let labels = tenant.map_or_else(|| json!({}), |t| json!({"tenantmcp.dev/tenant": t}));
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A Secret with `pairs` as its string data.
pub fn secret(namespace: &str, name: &str, pairs: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": namespace}, "stringData": data})
}

/// A TenantMcpConfig `name` in `namespace` for `tenant` with `spec_extra` merged into its spec.
pub fn config(
    namespace: &str,
    name: &str,
    tenant: &str,
    servers: Value,
    spec_extra: Value,
) -> Value {
    let mut spec = json!({"tenantId": tenant, "servers": servers});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// The GlobalMcpConfig `default` with loopback allowed (every local server listens there).
pub fn global(credentials_namespace: &str, servers: Value) -> Value {
    json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
           "metadata": {"name": "default"},
           "spec": {"credentialsNamespace": credentials_namespace,
                    "endpointPolicy": {"allowLoopback": true}, "servers": servers}})
}

/// The config's status (empty when it has none or is gone).
pub async fn status(api: &Api<TenantMcpConfig>, name: &str) -> McpConfigStatus {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.status)
        .unwrap_or_default()
}

/// A condition's status and reason.
pub fn condition(status: &McpConfigStatus, type_: &str) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

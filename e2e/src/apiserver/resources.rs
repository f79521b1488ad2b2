//! The resource types the stand-in serves: the built-in kinds tenant-mcp and kubectl need, and
//! every custom resource registered through a CustomResourceDefinition.

use serde_json::Value;

/// One served resource type (one group/version/plural).
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Secret`.
    pub kind: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl (`tmc`).
    pub short_names: Vec<String>,
    /// Categories (`all`, `tenantmcp`).
    pub categories: Vec<String>,
    /// Whether a `/status` subresource exists (status is then ignored on the main resource).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained (custom resources and spec-carrying kinds).
    pub has_generation: bool,
    /// The `openAPIV3Schema` objects are validated against (custom resources only).
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` (custom resources only).
    pub printer_columns: Vec<Value>,
    /// Name of the CustomResourceDefinition that registered this type.
    pub crd: Option<String>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            has_generation: false,
            schema: None,
            printer_columns: Vec::new(),
            crd: None,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// `apiVersion` of objects of this type.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `group/plural` (or `plural` for core): identifies the stored collection across versions.
    pub fn collection(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}/{}", self.group, self.plural)
        }
    }

    /// The resource name as kubectl prints it: `secrets` or `tenantmcpconfigs.tenantmcp.dev`.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Registers every served version of a CustomResourceDefinition.
    pub fn from_crd(crd: &Value) -> Result<Vec<Self>, String> {
        let spec = crd.get("spec").ok_or("spec is required")?;
        let text = |v: Option<&Value>, what: &str| {
            v.and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{what} is required"))
        };
        let group = text(spec.get("group"), "spec.group")?;
        let names = spec.get("names").ok_or("spec.names is required")?;
        let kind = text(names.get("kind"), "spec.names.kind")?;
        let plural = text(names.get("plural"), "spec.names.plural")?;
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| kind.to_ascii_lowercase());
        let list = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let namespaced = match spec.get("scope").and_then(Value::as_str) {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => {
                return Err(format!(
                    "spec.scope must be Namespaced or Cluster, got {other:?}"
                ));
            }
        };
        let expected_name = format!("{plural}.{group}");
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name != expected_name {
            return Err(format!(
                "metadata.name must be spec.names.plural+\".\"+spec.group ({expected_name:?}), got {name:?}"
            ));
        }
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
            .ok_or("spec.versions must list at least one version")?;
        let mut out = Vec::new();
        for v in versions {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            out.push(Self {
                group: group.clone(),
                version: text(v.get("name"), "spec.versions[].name")?,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: list(names.get("shortNames")),
                categories: list(names.get("categories")),
                status_subresource: v.pointer("/subresources/status").is_some(),
                has_generation: true,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                crd: Some(name.to_owned()),
            });
        }
        Ok(out)
    }
}

/// The built-in types: what tenant-mcp, its chart, kubectl and kube-rs touch.
pub fn builtin_types() -> Vec<ResourceType> {
    use ResourceType as R;
    vec![
        R::builtin("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .with_status(),
        R::builtin("", "v1", "Secret", "secrets", true),
        R::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        R::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        R::builtin("", "v1", "Service", "services", true).short(&["svc"]),
        R::builtin("apps", "v1", "Deployment", "deployments", true).short(&["deploy"]),
        R::builtin("batch", "v1", "Job", "jobs", true),
        R::builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        )
        .short(&["netpol"]),
        R::builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .short(&["pdb"]),
        R::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        R::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .with_status(),
        R::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        R::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        R::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        R::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
    ]
}

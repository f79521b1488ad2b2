//! Offline checks of whole manifests, as `tenant-mcp validate` runs them in a GitOps pipeline:
//! schema (types, unknown fields), inline credentials, the CRDs' CEL rules, semantic rules, the
//! endpoint policy of a `GlobalMcpConfig` in the same input, Secret references against Secrets
//! in the same input, and one config per tenant.
//!
//! Pure: the caller reads the files and hands over their text.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::binding::namespace_allows;
use super::decode::decode;
use super::field::{ErrorKind, FieldError, FieldErrors, FieldPath};
use super::inline_credentials::find_inline_credentials;
use super::policy::EndpointPolicy;
use super::validate::{is_dns_label, is_dns_subdomain, validate_global_spec, validate_tenant_spec};
use crate::api::servers::SecretUse;
use crate::api::{
    API_VERSION, GLOBAL_CONFIG_NAME, GROUP, GlobalMcpConfig, ServersSpec, TENANT_LABEL,
    TenantMcpConfig,
};

/// One YAML or JSON document of an input file.
#[derive(Clone, Debug)]
pub struct SourceDocument {
    /// Where it came from (a file path).
    pub source: String,
    /// Its position in the file, from 1 (items of a `kind: List` share their list's position);
    /// 0 for an object that is not from a file (read from a cluster).
    pub position: usize,
    /// The document, or why it could not be parsed.
    pub content: Result<Value, String>,
}

/// Splits a file's text into documents (`---` separated YAML, or JSON), expanding `kind: List`.
/// Empty documents are dropped.
pub fn parse_documents(source: &str, text: &str) -> Vec<SourceDocument> {
    documents(source, text).collect()
}

/// The documents of a file one at a time, as [`parse_documents`] returns them: a caller that
/// converts each and drops it holds one parsed document at a time, not the whole file's (a
/// directory of 10,000 tenants is tens of megabytes of parsed values).
pub fn documents<'a>(source: &'a str, text: &'a str) -> impl Iterator<Item = SourceDocument> + 'a {
    let mut stopped = false;
    serde_yaml_ng::Deserializer::from_str(text)
        .enumerate()
        .map_while(move |(i, doc)| {
            if stopped {
                return None;
            }
            let position = i + 1;
            // Through YAML's own value first: it refuses a key given twice in one mapping,
            // which kubectl refuses too and which tools would read differently (first or last
            // wins).
            let content = serde_yaml_ng::Value::deserialize(doc)
                .and_then(Value::deserialize)
                .map_err(|e| match duplicate_key(text, &e) {
                    Some(message) => message,
                    None => format!("not valid YAML: {e}"),
                });
            let docs = match content {
                Ok(Value::Null) => Vec::new(),
                Ok(Value::Object(map))
                    if map.get("kind").and_then(Value::as_str) == Some("List")
                        && map.get("items").is_some_and(Value::is_array) =>
                {
                    match map.get("items") {
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|item| SourceDocument {
                                source: source.to_owned(),
                                position,
                                content: Ok(item.clone()),
                            })
                            .collect(),
                        _ => Vec::new(),
                    }
                }
                content => {
                    // The YAML stream cannot continue past a syntax error.
                    stopped = content.is_err();
                    vec![SourceDocument {
                        source: source.to_owned(),
                        position,
                        content,
                    }]
                }
            };
            Some(docs)
        })
        .flatten()
}

/// Describes a duplicate-key error of the YAML parser with the lines of both entries (the
/// parser reports only where the mapping starts).
fn duplicate_key(text: &str, error: &serde_yaml_ng::Error) -> Option<String> {
    let message = error.to_string();
    let (path, rest) = message.split_once(": duplicate entry with key ")?;
    let key: String = serde_json::from_str(rest.split(" at line ").next()?).ok()?;
    let location = error.location()?;
    let lines: Vec<&str> = text.lines().collect();
    let start = location.line().checked_sub(1)?;
    let column = location.column().checked_sub(1)?;
    let first = lines.get(start)?;
    let found: Vec<usize> = if first.get(column..)?.starts_with('{') {
        Vec::new()
    } else {
        let names_key = |content: &str| {
            [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ]
            .iter()
            .any(|k| {
                content
                    .strip_prefix(k.as_str())
                    .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\t']))
            })
        };
        let mut found = Vec::new();
        for (n, line) in lines.iter().enumerate().skip(start) {
            let (indent, content) = if n == start {
                (column, line.get(column..).unwrap_or_default())
            } else {
                let content = line.trim_start_matches(' ');
                if content.is_empty() || content.starts_with('#') {
                    continue;
                }
                (line.len() - content.len(), content)
            };
            if indent < column {
                break;
            }
            if indent == column && names_key(content) {
                found.push(n + 1);
            }
        }
        found
    };
    let at = match found.as_slice() {
        [a, b, ..] => format!("on lines {a} and {b}"),
        _ => format!("in the mapping at line {}", start + 1),
    };
    let field = if path == "." || path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    Some(format!(
        "{field}duplicate key {key:?} {at}: kubectl refuses such a file, and tools may read different values from it; keep one"
    ))
}

/// What was found in one object.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    /// The file.
    pub source: String,
    /// The document's position in the file, from 1.
    pub position: usize,
    /// `kind` of the object (empty if it has none).
    pub kind: String,
    /// `metadata.namespace`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the object was checked (`false` for kinds tenant-mcp does not own).
    pub checked: bool,
    /// Every problem; empty when the object is valid.
    pub errors: FieldErrors,
    /// Things worth a look that do not make the object invalid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ObjectReport {
    /// `Kind namespace/name` for messages.
    pub fn display_name(&self) -> String {
        let kind = if self.kind.is_empty() {
            "object"
        } else {
            &self.kind
        };
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
            (None, Some(name)) => format!("{kind} {name}"),
            _ => format!("{kind} (document {})", self.position),
        }
    }

    /// True when checked and nothing is wrong.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The result of checking a set of documents.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One entry per object, in input order.
    pub objects: Vec<ObjectReport>,
    /// Facts about the run as a whole (e.g. which endpoint policy was used).
    pub notes: Vec<String>,
}

impl Report {
    /// Objects with at least one error.
    pub fn invalid(&self) -> usize {
        self.objects.iter().filter(|o| !o.is_valid()).count()
    }

    /// Checked objects without errors.
    pub fn valid(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.checked && o.is_valid())
            .count()
    }

    /// Objects of kinds tenant-mcp does not check.
    pub fn skipped(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| !o.checked && o.is_valid())
            .count()
    }
}

/// A config decoded far enough to cross-check it with the other documents.
enum Parsed {
    Tenant(Box<TenantMcpConfig>),
    Global(Box<GlobalMcpConfig>),
    Other,
}

/// Checks every document, then the rules that span documents.
pub fn check_documents(documents: &[SourceDocument]) -> Report {
    let mut reports = Vec::with_capacity(documents.len());
    let mut parsed = Vec::with_capacity(documents.len());
    let mut secrets: Secrets = HashMap::new();
    // Namespaces declared in the input, with the tenant each is bound to.
    let mut namespaces: HashMap<String, Option<String>> = HashMap::new();

    for doc in documents {
        let (report, object) = check_one(doc, &mut secrets, &mut namespaces);
        reports.push(report);
        parsed.push(object);
    }
    let (policy, global_seen, notes) = check_globals(&parsed, &mut reports, &secrets);
    let allow_unbound = global_seen
        .and_then(|i| match &parsed[i] {
            Parsed::Global(g) => Some(g.spec.allow_unbound_namespaces),
            _ => None,
        })
        .unwrap_or(false);
    let input = Input {
        secrets: &secrets,
        namespaces: &namespaces,
        policy: &policy,
        allow_unbound,
    };
    check_tenants(&parsed, &mut reports, &input);
    for report in &mut reports {
        dedupe(&mut report.errors);
    }
    Report {
        objects: reports,
        notes,
    }
}

/// The Secret keys the input declares, by namespace and name.
type Secrets = HashMap<(Option<String>, String), BTreeSet<String>>;

/// What the tenant checks need from the whole input.
struct Input<'a> {
    secrets: &'a Secrets,
    namespaces: &'a HashMap<String, Option<String>>,
    policy: &'a EndpointPolicy,
    allow_unbound: bool,
}

/// Checks the GlobalMcpConfigs (one at most): the endpoint policy the tenants are checked
/// against (from the one named `default`, else the default policy), which document holds it,
/// and notes saying where the policy came from.
fn check_globals(
    parsed: &[Parsed],
    reports: &mut [ObjectReport],
    secrets: &Secrets,
) -> (EndpointPolicy, Option<usize>, Vec<String>) {
    let mut notes = Vec::new();
    let mut policy = EndpointPolicy::default();
    let mut global_seen = None;
    for (i, object) in parsed.iter().enumerate() {
        let Parsed::Global(global) = object else {
            continue;
        };
        let name = global.metadata.name.as_deref().unwrap_or_default();
        if let Some(first) = global_seen {
            let message = format!(
                "a second GlobalMcpConfig; the first is in {}",
                location(&reports[first])
            );
            reports[i].errors.push(FieldError::new(
                &FieldPath::new("metadata.name"),
                ErrorKind::Duplicate,
                message,
            ));
            continue;
        }
        global_seen = Some(i);
        let (errors, compiled) = validate_global_spec(&global.spec);
        let policy_ok = compiled.is_some();
        if let Some(compiled) = compiled.filter(|_| name == GLOBAL_CONFIG_NAME) {
            policy = compiled;
            notes.push(format!(
                "endpoint policy: from GlobalMcpConfig {name} in {}",
                reports[i].source
            ));
        } else if !policy_ok {
            notes.push(
                "endpoint policy: the input's GlobalMcpConfig has an invalid policy; \
                        tenants were checked against the default policy"
                    .into(),
            );
        }
        reports[i].errors.extend(errors);
        cel_errors(super::cel::validate_global(global), &mut reports[i].errors);
        let namespace = Some(global.spec.credentials_namespace.clone());
        check_secret_refs(&global.spec.servers, &namespace, secrets, &mut reports[i]);
    }
    if global_seen.is_none() {
        notes.push(
            "endpoint policy: no GlobalMcpConfig in the input; checked against the default \
             policy (http and https, any port, public addresses only)"
                .into(),
        );
    }

    (policy, global_seen, notes)
}

/// Checks each TenantMcpConfig against the policy, the Secrets and namespaces the input
/// declares, and the others (a tenant has exactly one config).
fn check_tenants(parsed: &[Parsed], reports: &mut [ObjectReport], input: &Input<'_>) {
    let mut tenants: BTreeMap<String, usize> = BTreeMap::new();
    for (i, object) in parsed.iter().enumerate() {
        let Parsed::Tenant(tenant) = object else {
            continue;
        };
        let errors = validate_tenant_spec(&tenant.spec, input.policy);
        reports[i].errors.extend(errors);
        cel_errors(super::cel::validate_tenant(tenant), &mut reports[i].errors);
        let namespace = tenant.metadata.namespace.clone();
        check_secret_refs(
            &tenant.spec.servers,
            &namespace,
            input.secrets,
            &mut reports[i],
        );
        // The binding rule, where the input declares the config's namespace: a config its
        // namespace may not serve would be refused by the controller and ignored by clients.
        if let Some(ns) = &namespace
            && let Some(bound) = input.namespaces.get(ns)
            && let Err(not_bound) = namespace_allows(
                ns,
                bound.as_deref(),
                &tenant.spec.tenant_id,
                input.allow_unbound,
            )
        {
            reports[i].errors.push(FieldError::invalid(
                &FieldPath::new("metadata.namespace"),
                format!(
                    "{}: this config would never serve the tenant",
                    not_bound.message(&tenant.spec.tenant_id)
                ),
            ));
        }
        match tenants.get(&tenant.spec.tenant_id) {
            Some(&first) => {
                let message = format!(
                    "tenant {:?} already has a config ({} in {}); a tenant has exactly one",
                    tenant.spec.tenant_id,
                    reports[first].display_name(),
                    location(&reports[first])
                );
                reports[i].errors.push(FieldError::new(
                    &FieldPath::new("spec.tenantId"),
                    ErrorKind::Duplicate,
                    message,
                ));
            }
            None => {
                tenants.insert(tenant.spec.tenant_id.clone(), i);
            }
        }
    }
}

fn location(report: &ObjectReport) -> String {
    match report.position {
        0 => report.source.clone(),
        position => format!("{} (document {position})", report.source),
    }
}

/// Checks one document on its own, recording any Secret it declares.
fn check_one(
    doc: &SourceDocument,
    secrets: &mut Secrets,
    namespaces: &mut HashMap<String, Option<String>>,
) -> (ObjectReport, Parsed) {
    let mut report = ObjectReport {
        source: doc.source.clone(),
        position: doc.position,
        kind: String::new(),
        namespace: None,
        name: None,
        checked: false,
        errors: FieldErrors::default(),
        warnings: Vec::new(),
    };
    let value = match &doc.content {
        Ok(value) => value,
        Err(message) => {
            report.checked = true;
            report
                .errors
                .push(FieldError::invalid(&FieldPath::default(), message.clone()));
            return (report, Parsed::Other);
        }
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let api_version = text(value.get("apiVersion")).unwrap_or_default();
    report.kind = text(value.get("kind")).unwrap_or_default();
    report.namespace = text(value.pointer("/metadata/namespace"));
    report.name = text(value.pointer("/metadata/name"));

    if api_version == "v1" && report.kind == "Namespace" {
        if let Some(name) = &report.name {
            let bound = text(value.pointer(&format!(
                "/metadata/labels/{}",
                TENANT_LABEL.replace('/', "~1")
            )));
            namespaces.insert(name.clone(), bound);
        }
        return (report, Parsed::Other);
    }
    if api_version == "v1" && report.kind == "Secret" {
        let mut keys = BTreeSet::new();
        for field in ["data", "stringData"] {
            if let Some(map) = value.get(field).and_then(Value::as_object) {
                keys.extend(map.keys().cloned());
            }
        }
        if let Some(name) = &report.name {
            secrets.insert((report.namespace.clone(), name.clone()), keys);
        }
        return (report, Parsed::Other);
    }
    let group = api_version.split('/').next().unwrap_or_default();
    if group != GROUP {
        return (report, Parsed::Other);
    }
    report.checked = true;
    if api_version != API_VERSION {
        report.errors.push(FieldError::new(
            &FieldPath::new("apiVersion"),
            ErrorKind::NotSupported,
            format!("must be {API_VERSION:?}, got {api_version:?}"),
        ));
        return (report, Parsed::Other);
    }
    let cluster_scoped = match report.kind.as_str() {
        "TenantMcpConfig" => false,
        "GlobalMcpConfig" => true,
        other => {
            report.errors.push(FieldError::new(
                &FieldPath::new("kind"),
                ErrorKind::NotSupported,
                format!("must be TenantMcpConfig or GlobalMcpConfig, got {other:?}"),
            ));
            return (report, Parsed::Other);
        }
    };
    check_metadata(&mut report, cluster_scoped);
    report.errors.extend(find_inline_credentials(
        value.get("spec").unwrap_or(&Value::Null),
        &FieldPath::new("spec"),
    ));

    // apiVersion and kind were checked above; the generated types do not read them.
    let mut body = value.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    let parsed = if cluster_scoped {
        decode::<GlobalMcpConfig>(body, &FieldPath::default()).map(|g| Parsed::Global(Box::new(g)))
    } else {
        decode::<TenantMcpConfig>(body, &FieldPath::default()).map(|t| Parsed::Tenant(Box::new(t)))
    };
    match parsed {
        Ok(object) => (report, object),
        Err(errors) => {
            // An inline credential is also an unknown field: keep only the precise message.
            for e in errors {
                if !report.errors.iter().any(|known| known.path == e.path) {
                    report.errors.push(e);
                }
            }
            (report, Parsed::Other)
        }
    }
}

fn check_metadata(report: &mut ObjectReport, cluster_scoped: bool) {
    match &report.name {
        None => report.errors.push(FieldError::required(
            &FieldPath::new("metadata.name"),
            "every object needs a name",
        )),
        Some(name) if !is_dns_subdomain(name) => report.errors.push(FieldError::invalid(
            &FieldPath::new("metadata.name"),
            format!(
                "must be a DNS subdomain (lowercase letters, digits, '-' and '.'), got {name:?}"
            ),
        )),
        Some(name) if cluster_scoped && name != GLOBAL_CONFIG_NAME => {
            report.errors.push(FieldError::invalid(
                &FieldPath::new("metadata.name"),
                format!("the GlobalMcpConfig must be named {GLOBAL_CONFIG_NAME:?}, got {name:?}"),
            ));
        }
        Some(_) => {}
    }
    match (&report.namespace, cluster_scoped) {
        (Some(_), true) => report
            .warnings
            .push("metadata.namespace is ignored: GlobalMcpConfig is cluster-scoped".into()),
        (Some(ns), false) if !is_dns_label(ns) => report.errors.push(FieldError::invalid(
            &FieldPath::new("metadata.namespace"),
            format!("must be a DNS label, got {ns:?}"),
        )),
        (None, false) => report.warnings.push(
            "metadata.namespace is not set: the config lands in the namespace kubectl or your \
             GitOps tool applies it to, and its Secrets must be there too"
                .into(),
        ),
        _ => {}
    }
}

/// Adds the CEL rule failures, except where the failing field (or anything under it) already
/// has a more precise error: the CEL rules mirror checks made in Rust, and are reported here only
/// for anything those checks would miss.
fn cel_errors(result: Result<(), kube::core::cel::ValidationErrors>, errors: &mut FieldErrors) {
    let Err(failures) = result else { return };
    for failure in failures.into_vec() {
        let path = failure.field_path.trim_start_matches('.').to_owned();
        if errors.iter().any(|e| e.path.starts_with(&path)) {
            continue;
        }
        errors.push(FieldError::invalid(&FieldPath::new(&path), failure.message));
    }
}

/// Checks each Secret reference against the Secrets declared in the input: a missing key is an
/// error, a Secret absent from the input only a warning (it may come from elsewhere).
fn check_secret_refs(
    servers: &ServersSpec,
    namespace: &Option<String>,
    secrets: &Secrets,
    report: &mut ObjectReport,
) {
    for SecretUse { field, name, keys } in servers.secret_uses() {
        let path = format!("spec.servers.{field}");
        match secrets.get(&(namespace.clone(), name.to_owned())) {
            None => report.warnings.push(format!(
                "{path}: Secret {name:?} is not in the input; make sure it exists in namespace {}",
                namespace.as_deref().unwrap_or("(the target namespace)")
            )),
            Some(present) => {
                for (field, key) in keys {
                    if !present.contains(key) {
                        report.errors.push(FieldError::invalid(
                            &FieldPath::new(&path).child(field),
                            format!(
                                "Secret {name:?} has no key {key:?} (it has: {})",
                                present.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
}

fn dedupe(errors: &mut FieldErrors) {
    let mut seen = std::collections::HashSet::new();
    errors
        .0
        .retain(|e| seen.insert((e.path.clone(), e.message.clone())));
}

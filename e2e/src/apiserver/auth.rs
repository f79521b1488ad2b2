//! Authentication by static bearer tokens (kube-apiserver's `--token-auth-file` format) and
//! RBAC authorization from the Role, ClusterRole, RoleBinding and ClusterRoleBinding objects in
//! the store, so the chart's RBAC and "only Tenant Admin and Uber Admin" can be tested with
//! `kubectl auth can-i` and real requests.
//!
//! Without a token file everyone is `system:admin` (group `system:masters`). Impersonation
//! (`Impersonate-User`, `Impersonate-Group`) is honoured for `system:masters` only.

use std::collections::HashMap;
use std::path::Path;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::request::Target;
use super::store::Store;

/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
}

impl User {
    fn admin() -> Self {
        Self {
            name: "system:admin".into(),
            groups: vec![MASTERS.into(), "system:authenticated".into()],
        }
    }

    fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// Who may call, by token.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    tokens: Option<HashMap<String, User>>,
}

impl Authenticator {
    /// Everyone is an administrator.
    pub fn allow_all() -> Self {
        Self { tokens: None }
    }

    /// Reads a token file: one `token,user,uid,"group1,group2"` line per user.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::from_csv(&text)
    }

    /// Parses token-file text.
    pub fn from_csv(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (head, groups) = match line.split_once(",\"") {
                Some((head, rest)) => (head, rest.trim_end_matches('"')),
                None => (line, ""),
            };
            let fields: Vec<&str> = head.split(',').map(str::trim).collect();
            if fields.len() < 2 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(format!(
                    "token file line {}: expected token,user,uid[,\"groups\"]",
                    i + 1
                ));
            }
            let mut groups: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            groups.push("system:authenticated".into());
            tokens.insert(
                fields[0].to_owned(),
                User {
                    name: fields[1].to_owned(),
                    groups,
                },
            );
        }
        Ok(Self {
            tokens: Some(tokens),
        })
    }

    /// The caller of a request (after impersonation).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<User, ApiError> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let caller = match (&self.tokens, token) {
            (None, _) => User::admin(),
            (Some(tokens), Some(token)) => tokens
                .get(token)
                .cloned()
                .ok_or_else(ApiError::unauthorized)?,
            (Some(_), None) => return Err(ApiError::unauthorized()),
        };
        let Some(as_user) = headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(caller);
        };
        if !caller.is_master() {
            return Err(ApiError::forbidden(format!(
                "users \"{as_user}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                caller.name
            )));
        }
        let mut groups: Vec<String> = headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        groups.push("system:authenticated".into());
        Ok(User {
            name: as_user.to_owned(),
            groups,
        })
    }

    /// Fails unless the caller is in `system:masters`.
    pub fn require_admin(&self, user: &User) -> Result<(), ApiError> {
        if user.is_master() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "User \"{}\" is not an administrator",
                user.name
            )))
        }
    }

    /// Fails with the API server's Forbidden message unless RBAC allows the request.
    pub fn authorize(
        &self,
        store: &Store,
        user: &User,
        verb: &str,
        target: &Target,
    ) -> Result<(), ApiError> {
        let resource = match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.rt.plural),
            None => target.rt.plural.clone(),
        };
        let attrs = Attributes {
            verb,
            group: &target.rt.group,
            resource: &resource,
            namespace: &target.namespace,
            name: target.name.as_deref().unwrap_or_default(),
        };
        if allowed(store, user, &attrs) {
            return Ok(());
        }
        let object = match target.name.as_deref() {
            Some(name) => format!("{} \"{name}\"", target.rt.qualified_name()),
            None => target.rt.qualified_name(),
        };
        let scope = if target.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace \"{}\"", target.namespace)
        };
        Err(ApiError::forbidden(format!(
            "{object} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, target.rt.group
        )))
    }

    /// Answers a SelfSubjectAccessReview (or, for administrators, a SubjectAccessReview).
    pub fn review(
        &self,
        store: &Store,
        user: &User,
        kind: &str,
        mut review: Value,
    ) -> Result<Value, ApiError> {
        let subject = if kind == "subjectaccessreviews" {
            self.require_admin(user)?;
            let spec = review.get("spec").cloned().unwrap_or_default();
            let mut groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            groups.push("system:authenticated".into());
            User {
                name: spec
                    .get("user")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                groups,
            }
        } else {
            user.clone()
        };
        let ra = review
            .pointer("/spec/resourceAttributes")
            .cloned()
            .unwrap_or_default();
        let text = |k: &str| {
            ra.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let sub = text("subresource");
        let resource = if sub.is_empty() {
            text("resource")
        } else {
            format!("{}/{sub}", text("resource"))
        };
        let (verb, group, namespace, name) =
            (text("verb"), text("group"), text("namespace"), text("name"));
        let attrs = Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            namespace: &namespace,
            name: &name,
        };
        let allowed = ra.is_object() && allowed(store, &subject, &attrs);
        review["status"] =
            json!({"allowed": allowed, "reason": if allowed { "allowed by RBAC" } else { "" }});
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!(if kind == "subjectaccessreviews" {
            "SubjectAccessReview"
        } else {
            "SelfSubjectAccessReview"
        });
        Ok(review)
    }
}

/// What a request does, as RBAC sees it.
struct Attributes<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let has = |field: &str, want: &str| {
        strings(rule.get(field))
            .iter()
            .any(|x| *x == "*" || *x == want)
    };
    let names = strings(rule.get("resourceNames"));
    has("verbs", a.verb)
        && has("apiGroups", a.group)
        && (has("resources", a.resource)
            || a.resource.split_once('/').is_some_and(|(r, sub)| {
                strings(rule.get("resources")).contains(&format!("{r}/*").as_str())
                    || (sub.is_empty() && has("resources", r))
            }))
        && (names.is_empty() || (!a.name.is_empty() && names.contains(&a.name)))
}

fn subject_matches(binding: &Value, user: &User) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            match s.get("kind").and_then(Value::as_str) {
                Some("User") => name == user.name,
                Some("Group") => user.groups.iter().any(|g| g == name),
                Some("ServiceAccount") => {
                    let ns = s
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    user.name == format!("system:serviceaccount:{ns}:{name}")
                }
                _ => false,
            }
        })
}

fn allowed(store: &Store, user: &User, a: &Attributes<'_>) -> bool {
    if user.is_master() {
        return true;
    }
    let rules_of = |kind: &str, name: &str, namespace: &str| -> Vec<Value> {
        let collection = if kind == "ClusterRole" {
            "rbac.authorization.k8s.io/clusterroles"
        } else {
            "rbac.authorization.k8s.io/roles"
        };
        store
            .list_collection(collection)
            .into_iter()
            .filter(|r| {
                r.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
                    && (kind == "ClusterRole"
                        || r.pointer("/metadata/namespace").and_then(Value::as_str)
                            == Some(namespace))
            })
            .flat_map(|r| {
                r.get("rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    let role_ref = |b: &Value| {
        (
            b.pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            b.pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let cluster_wide = store
        .list_collection("rbac.authorization.k8s.io/clusterrolebindings")
        .into_iter()
        .filter(|b| subject_matches(b, user))
        .any(|b| {
            let (kind, name) = role_ref(&b);
            kind == "ClusterRole" && rules_of(&kind, &name, "").iter().any(|r| rule_allows(r, a))
        });
    if cluster_wide || a.namespace.is_empty() {
        return cluster_wide;
    }
    store
        .list_collection("rbac.authorization.k8s.io/rolebindings")
        .into_iter()
        .filter(|b| {
            b.pointer("/metadata/namespace").and_then(Value::as_str) == Some(a.namespace)
                && subject_matches(b, user)
        })
        .any(|b| {
            let (kind, name) = role_ref(&b);
            rules_of(&kind, &name, a.namespace)
                .iter()
                .any(|r| rule_allows(r, a))
        })
}

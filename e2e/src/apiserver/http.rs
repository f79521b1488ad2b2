//! The HTTP front: routes every path to discovery or a verb on the store, negotiates tables,
//! and streams watches.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::apply;
use super::auth::{Authenticator, User};
use super::discovery;
use super::errors::ApiError;
use super::openapi;
use super::request::{Query, Target, resolve};
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Deleted, EventType, Store, WatchEvent};
use super::table::to_table;

/// Groups served without stored objects.
const VIRTUAL_GROUPS: &[(&str, &str)] = &[("authorization.k8s.io", "v1")];

/// Shared state of the HTTP front.
pub struct App {
    /// The objects.
    pub store: Arc<Store>,
    /// Who is calling.
    pub auth: Authenticator,
    /// The URL clients use, for `/api`'s server address.
    pub server_address: String,
    /// Becomes `true` when the server stops: open watches end so clients reconnect.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Requests held back and writes recorded, for fault tests.
    pub faults: Arc<super::faults::Faults>,
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// Whether the client asked for a server-side table (kubectl get).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

/// Entry point for every request.
pub async fn handle(
    app: Arc<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match app.auth.authenticate(&headers) {
        Ok(user) => user,
        Err(e) => return error_response(&e),
    };
    let protobuf = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/vnd.kubernetes.protobuf"))
    };
    let is_review = uri.path().ends_with("accessreviews");
    let body = match (
        protobuf(header::CONTENT_TYPE) && !body.is_empty(),
        is_review,
    ) {
        // kubectl sends access reviews as protobuf whatever the server prefers.
        (true, true) => match super::protobuf::decode_access_review(&body) {
            Some(review) => Bytes::from(review.to_string()),
            None => {
                return error_response(&ApiError::bad_request(
                    "could not decode the protobuf access review",
                ));
            }
        },
        // kubectl's typed clients (`kubectl create namespace`, `create secret`, ...) too.
        (true, false) => match super::protobuf::decode_object(&body) {
            Ok(object) => Bytes::from(object.to_string()),
            Err(why) => {
                tracing::debug!(%uri, why, "protobuf body refused");
                return error_response(&ApiError::unsupported_media_type(
                    "application/vnd.kubernetes.protobuf",
                ));
            }
        },
        (false, _) => body,
    };
    if app
        .faults
        .pass(&user.name, method.as_str(), uri.path())
        .await
        == super::faults::Release::Drop
    {
        return error_response(&ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: "the request was dropped (fault test)".into(),
            details: None,
        });
    }
    let response = match route(&app, &user, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code, reason = e.reason, "request failed");
            error_response(&e)
        }
    };
    if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        app.faults.record(super::faults::Write {
            user: user.name.clone(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            code: response.status().as_u16(),
            at: std::time::Instant::now(),
        });
    }
    response
}

async fn route(
    app: &Arc<App>,
    user: &User,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path().trim_matches('/');
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let types = app.store.types();
    let query = Query::parse(uri.query());
    match segments.as_slice() {
        ["version"] => Ok(json_response(200, &discovery::version())),
        ["healthz" | "readyz" | "livez"] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => Ok(json_response(
            200,
            &discovery::core_versions(&app.server_address),
        )),
        ["apis"] => Ok(json_response(
            200,
            &discovery::group_list(&types, VIRTUAL_GROUPS),
        )),
        ["api", "v1"] => discovery::resource_list(&types, "", "v1", Vec::new())
            .map(|l| json_response(200, &l))
            .ok_or_else(|| ApiError::no_route(path)),
        ["apis", group] => discovery::group(&types, VIRTUAL_GROUPS, group)
            .map(|g| json_response(200, &g))
            .ok_or_else(|| ApiError::no_route(path)),
        ["apis", "authorization.k8s.io", "v1"] => Ok(json_response(
            200,
            &json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1",
                "resources": [
                    {"name": "selfsubjectaccessreviews", "singularName": "", "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]},
                    {"name": "subjectaccessreviews", "singularName": "", "namespaced": false, "kind": "SubjectAccessReview", "verbs": ["create"]},
                ],
            }),
        )),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            review @ ("selfsubjectaccessreviews" | "subjectaccessreviews"),
        ] if method == Method::POST => {
            let review_body: Value = parse_body(&body)?;
            Ok(json_response(
                201,
                &app.auth.review(&app.store, user, review, review_body)?,
            ))
        }
        ["apis", group, version] => discovery::resource_list(&types, group, version, Vec::new())
            .map(|l| json_response(200, &l))
            .ok_or_else(|| ApiError::no_route(path)),
        ["openapi", "v3"] => Ok(json_response(
            200,
            &openapi::index(&types, app.store.resource_version()),
        )),
        ["openapi", "v3", "api", "v1"] => openapi::document(&types, "", "v1")
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::no_route(path)),
        ["openapi", "v3", "apis", group, version] => openapi::document(&types, group, version)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::no_route(path)),
        ["stand-in", "compact"] if method == Method::POST => {
            app.auth.require_admin(user)?;
            let rv = app.store.compact();
            Ok(json_response(
                200,
                &json!({"compactedThrough": rv.to_string()}),
            ))
        }
        ["api", "v1", rest @ ..] => {
            let target = resolve(&types, "", "v1", rest)?;
            resource(app, user, method, headers, &query, target, body).await
        }
        ["apis", group, version, rest @ ..] => {
            let target = resolve(&types, group, version, rest)?;
            resource(app, user, method, headers, &query, target, body).await
        }
        _ => Err(ApiError::no_route(path)),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    // YAML is a superset of JSON: apply patches may come as either.
    serde_yaml_ng::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the request body could not be decoded: {e}")))
}

fn verb(method: &Method, target: &Target, query: &Query) -> &'static str {
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

async fn resource(
    app: &Arc<App>,
    user: &User,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    target: Target,
    body: Bytes,
) -> Result<Response, ApiError> {
    let verb = verb(method, &target, query);
    // As kube-apiserver's RequestInfo does: a list or watch that selects one object by
    // `metadata.name` is authorized as a request for that name, so RBAC `resourceNames` can
    // grant watching exactly one object.
    let mut named = target.clone();
    if matches!(verb, "list" | "watch")
        && let Ok(fields) = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        && let Some(name) = fields.requires_exact("metadata.name")
    {
        named.name = Some(name.to_owned());
    }
    app.auth.authorize(&app.store, user, verb, &named)?;
    let store = &app.store;
    let rt = &target.rt;
    let ns = target.namespace.as_str();
    if query.get("dryRun").is_some() {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the API stand-in",
        ));
    }
    let manager = query
        .get("fieldManager")
        .map(str::to_owned)
        .unwrap_or_else(|| {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .unwrap_or("unknown")
                .to_owned()
        });
    let status_only = target.subresource.as_deref() == Some("status");
    let subresource = if status_only { "status" } else { "" };
    match (verb, target.name.clone()) {
        ("get", Some(name)) => {
            let obj = store.get(rt, ns, &name)?;
            if wants_table(headers) {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                return Ok(json_response(
                    200,
                    &to_table(
                        rt,
                        &[obj],
                        &rv,
                        query.get("includeObject").unwrap_or("Metadata"),
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        ("list", None) => list(store, rt, ns, query, headers),
        ("watch", None) => watch(
            store,
            rt,
            ns,
            query,
            wants_table(headers),
            app.stopping.clone(),
        ),
        ("create", None) => {
            if ns.is_empty() && rt.namespaced {
                return Err(ApiError::method_not_allowed(format!(
                    "create {} requires a namespace",
                    rt.plural
                )));
            }
            let mut obj = parse_body(&body)?;
            check_body_namespace(&obj, rt, ns)?;
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let warnings = admit(rt, &name, &mut obj, None, query)?;
            apply::record_update(rt, None, &mut obj, &manager, "");
            let created = store.create(rt, ns, obj)?;
            Ok(with_warnings(json_response(201, &created), &warnings))
        }
        ("update", Some(name)) => {
            let mut obj = parse_body(&body)?;
            check_body_namespace(&obj, rt, ns)?;
            let mut warnings = Vec::new();
            let updated = store.update(rt, ns, &name, status_only, |old| {
                warnings = admit(rt, &name, &mut obj, Some(old), query)?;
                let mut new = obj;
                apply::record_update(rt, Some(old), &mut new, &manager, subresource);
                Ok(new)
            })?;
            Ok(with_warnings(json_response(200, &updated), &warnings))
        }
        ("patch", Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch = parse_body(&body)?;
            if content_type.starts_with("application/apply-patch") {
                return server_side_apply(
                    store,
                    rt,
                    ns,
                    &name,
                    patch,
                    query,
                    &manager,
                    status_only,
                )
                .await;
            }
            let mut warnings = Vec::new();
            let patched = store.update(rt, ns, &name, status_only, |old| {
                let mut new = old.clone();
                match content_type.split(';').next().unwrap_or_default() {
                    "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                        json_patch::merge(&mut new, &patch)
                    }
                    "application/json-patch+json" => {
                        let mut ops: json_patch::Patch = serde_json::from_value(patch.clone())
                            .map_err(|e| {
                                ApiError::bad_request(format!("invalid JSON patch: {e}"))
                            })?;
                        // The API server (evanphx/json-patch) lets `test` of a null value pass on
                        // a missing path; kube-rs's finalizer helper relies on it.
                        ops.0.retain(|op| match op {
                            json_patch::PatchOperation::Test(t) => {
                                !(t.value.is_null() && new.pointer(t.path.as_str()).is_none())
                            }
                            _ => true,
                        });
                        json_patch::patch(&mut new, &ops).map_err(|e| {
                            ApiError::new_unprocessable(
                                rt,
                                &name,
                                format!("the JSON patch could not be applied: {e}"),
                            )
                        })?;
                    }
                    other => return Err(ApiError::unsupported_media_type(other)),
                }
                warnings = admit(rt, &name, &mut new, Some(old), query)?;
                apply::record_update(rt, Some(old), &mut new, &manager, subresource);
                Ok(new)
            })?;
            Ok(with_warnings(json_response(200, &patched), &warnings))
        }
        ("delete", Some(name)) => {
            let options = if body.is_empty() {
                json!({})
            } else {
                parse_body(&body)?
            };
            let uid = options
                .pointer("/preconditions/uid")
                .and_then(Value::as_str);
            let rv = options
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str);
            match store.delete(rt, ns, &name, uid, rv)? {
                Deleted::Gone(obj) => Ok(json_response(200, &obj)),
                Deleted::Pending(obj) => Ok(json_response(202, &obj)),
            }
        }
        ("deletecollection", None) => {
            let (items, _) = store.list(rt, if ns.is_empty() { None } else { Some(ns) });
            let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?;
            // As the API server does, answer with the list of what was deleted (objects
            // held by finalizers appear with their deletionTimestamp).
            let mut deleted = Vec::new();
            for item in items
                .iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
            {
                let item_ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let item_name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match store.delete(rt, item_ns, item_name, None, None) {
                    Ok(Deleted::Gone(obj) | Deleted::Pending(obj)) => deleted.push(obj),
                    Err(ApiError { code: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": deleted,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on this path"
        ))),
    }
}

#[allow(clippy::too_many_arguments)] // the parts of one apply request
async fn server_side_apply(
    store: &Arc<Store>,
    rt: &super::resources::ResourceType,
    ns: &str,
    name: &str,
    patch: Value,
    query: &Query,
    manager: &str,
    status_only: bool,
) -> Result<Response, ApiError> {
    if query.get("fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH with apply must specify a fieldManager",
        ));
    }
    check_body_namespace(&patch, rt, ns)?;
    let force = query.flag("force");
    let subresource = if status_only { "status" } else { "" };
    match store.get(rt, ns, name) {
        Err(ApiError { code: 404, .. }) if !status_only => {
            let mut obj = apply::apply(rt, name, None, &patch, manager, force, "")?;
            if obj.pointer("/metadata/name").is_none() {
                obj["metadata"]["name"] = json!(name);
            }
            admit(rt, name, &mut obj, None, query)?;
            let created = store.create(rt, ns, obj)?;
            Ok(json_response(201, &created))
        }
        Err(e) => Err(e),
        Ok(_) => {
            let mut warnings = Vec::new();
            let updated = store.update(rt, ns, name, status_only, |old| {
                // As the real API server: a resourceVersion in the applied object is a
                // precondition (optimistic concurrency), never a value to store.
                if let Some(expected) = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                    && old.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(expected)
                {
                    return Err(ApiError::conflict(
                        rt,
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                let mut new =
                    apply::apply(rt, name, Some(old), &patch, manager, force, subresource)?;
                if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                warnings = admit(rt, name, &mut new, Some(old), query)?;
                Ok(new)
            })?;
            Ok(with_warnings(json_response(200, &updated), &warnings))
        }
    }
}

fn check_body_namespace(
    obj: &Value,
    rt: &super::resources::ResourceType,
    ns: &str,
) -> Result<(), ApiError> {
    if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
        && rt.namespaced
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Admission for a write: built-in normalization (Secret `stringData`), then, for custom
/// resources, pruning (or strict refusal of) unknown fields, defaulting, the schema and the
/// CEL rules. Returns warnings for the `Warning` header.
fn admit(
    rt: &super::resources::ResourceType,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
    query: &Query,
) -> Result<Vec<String>, ApiError> {
    if rt.kind == "Secret" {
        fold_string_data(obj)?;
    }
    check_name(rt, name, obj)?;
    let Some(schema) = rt.schema.as_ref() else {
        return Ok(Vec::new());
    };
    let unknown = schema::prune(schema, obj);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match query.get("fieldValidation").unwrap_or("Warn") {
            "Strict" => {
                let listed: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    rt.kind,
                    rt.version,
                    rt.kind,
                    listed.join(", ")
                )));
            }
            "Ignore" => {}
            _ => warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
        }
    }
    schema::apply_defaults(schema, obj);
    let mut causes = schema::validate(schema, obj);
    if causes.is_empty() {
        causes = schema::validate_cel(schema, obj, old);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(rt, name, causes));
    }
    Ok(warnings)
}

fn check_name(
    rt: &super::resources::ResourceType,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let name = if name.is_empty() {
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    } else {
        name
    };
    if name.is_empty() {
        return Ok(()); // generateName, or the store reports it missing
    }
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && !s.starts_with('-')
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let valid = if rt.kind == "Namespace" {
        label(name)
    } else {
        name.len() <= 253 && name.split('.').all(label)
    };
    if !valid {
        let what = if rt.kind == "Namespace" {
            "a lowercase RFC 1123 label"
        } else {
            "a lowercase RFC 1123 subdomain"
        };
        return Err(ApiError::invalid(
            rt,
            name,
            vec![(
                "metadata.name".into(),
                "FieldValueInvalid".into(),
                format!(
                    "Invalid value: \"{name}\": must be {what} (lowercase letters, digits, '-' and '.')"
                ),
            )],
        ));
    }
    Ok(())
}

/// Folds a Secret's `stringData` into base64 `data`, checks `data` is base64, and defaults
/// `type` to `Opaque`.
fn fold_string_data(obj: &mut Value) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    if obj
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj["type"] = json!("Opaque");
    }
    if let Some(Value::Object(plain)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        for (k, v) in plain {
            let text = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            obj["data"][k] = json!(engine.encode(text));
        }
    }
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            if v.as_str().is_none_or(|s| engine.decode(s).is_err()) {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at key {k:?}"
                )));
            }
        }
    }
    Ok(())
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(value) = format!("299 - \"{}\"", w.replace('"', "\\\"")).parse() {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// For an Event list, the other Event API's events in this one's shape (see `events`).
fn other_event_api(
    store: &Store,
    rt: &super::resources::ResourceType,
    namespace: Option<&str>,
) -> Vec<Value> {
    if rt.kind != "Event" {
        return Vec::new();
    }
    let other_group = if rt.group.is_empty() {
        "events.k8s.io"
    } else {
        ""
    };
    let Some(other) = store
        .types()
        .into_iter()
        .find(|t| t.kind == "Event" && t.group == other_group)
    else {
        return Vec::new();
    };
    let (items, _) = store.list(&other, namespace);
    let convert = if rt.group.is_empty() {
        super::events::to_core
    } else {
        super::events::to_events_v1
    };
    items.iter().map(convert).collect()
}

fn list(
    store: &Store,
    rt: &super::resources::ResourceType,
    ns: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?;
    let namespace = if ns.is_empty() { None } else { Some(ns) };
    let (mut items, rv) = store.list(rt, namespace);
    items.extend(other_event_api(store, rt, namespace));
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    let offset = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?,
        None => 0,
    };
    items.drain(..offset.min(items.len()));
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = query.number("limit").filter(|l| *l > 0).map(|l| l as usize)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        metadata["continue"] = json!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode((offset + limit).to_string())
        );
        metadata["remainingItemCount"] = json!(remaining);
    }
    if wants_table(headers) {
        let mut table = to_table(
            rt,
            &items,
            &rv.to_string(),
            query.get("includeObject").unwrap_or("Metadata"),
        );
        table["metadata"] = metadata;
        return Ok(json_response(200, &table));
    }
    Ok(json_response(
        200,
        &json!({
            "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
            "metadata": metadata, "items": items,
        }),
    ))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(
    store: &Arc<Store>,
    rt: &super::resources::ResourceType,
    ns: &str,
    query: &Query,
    table: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?;
    let namespace = ns.to_owned();
    let collection = rt.collection();
    let rt = rt.clone();
    let send_initial = query.flag("sendInitialEvents")
        || matches!(query.get("resourceVersion"), None | Some("" | "0"));
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = Duration::from_secs(query.number("timeoutSeconds").unwrap_or(1800));
    let render = {
        let rt = rt.clone();
        move |object: &Value| {
            if table {
                to_table(&rt, std::slice::from_ref(object), "", "Object")
            } else {
                object.clone()
            }
        }
    };
    let matches = {
        let namespace = namespace.clone();
        move |e: &WatchEvent| {
            (namespace.is_empty() || e.namespace == namespace)
                && labels.matches(&e.object)
                && fields.matches(&e.object)
        }
    };

    let mut initial: Vec<Bytes> = Vec::new();
    let start_rv = if send_initial {
        let (items, rv) = store.list(
            &rt,
            if namespace.is_empty() {
                None
            } else {
                Some(&namespace)
            },
        );
        for item in &items {
            let event = WatchEvent {
                rv,
                collection: collection.clone(),
                namespace: item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                kind: EventType::Added,
                object: item.clone(),
            };
            if matches(&event) {
                initial.push(event_line("ADDED", &render(item)));
            }
        }
        if query.flag("sendInitialEvents") {
            initial.push(event_line("BOOKMARK", &json!({
                "kind": rt.kind, "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
            })));
        }
        rv
    } else {
        query
            .number("resourceVersion")
            .ok_or_else(|| ApiError::bad_request("resourceVersion must be a number"))?
    };
    let (backlog, receiver) = match store.watch_from(&collection, start_rv) {
        Ok(start) => start,
        Err(gone) => {
            let body = Body::from(event_line("ERROR", &gone.to_status()));
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response());
        }
    };
    let store = store.clone();
    let stream = async_stream(
        initial, backlog, receiver, start_rv, matches, render, bookmarks, timeout, store, rt,
        stopping,
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[allow(clippy::too_many_arguments)] // the state of one watch
fn async_stream(
    initial: Vec<Bytes>,
    backlog: Vec<Arc<WatchEvent>>,
    receiver: tokio::sync::broadcast::Receiver<Arc<WatchEvent>>,
    start_rv: u64,
    matches: impl Fn(&WatchEvent) -> bool + Send + 'static,
    render: impl Fn(&Value) -> Value + Send + 'static,
    bookmarks: bool,
    timeout: Duration,
    store: Arc<Store>,
    rt: super::resources::ResourceType,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    struct S<M, R> {
        initial: std::vec::IntoIter<Bytes>,
        backlog: std::vec::IntoIter<Arc<WatchEvent>>,
        receiver: tokio::sync::broadcast::Receiver<Arc<WatchEvent>>,
        last_rv: u64,
        matches: M,
        render: R,
        deadline: tokio::time::Instant,
        done: bool,
        stopping: tokio::sync::watch::Receiver<bool>,
    }
    let state = S {
        initial: initial.into_iter(),
        backlog: backlog.into_iter(),
        receiver,
        last_rv: start_rv,
        matches,
        render,
        deadline: tokio::time::Instant::now() + timeout,
        done: false,
        stopping,
    };
    let collection = rt.collection();
    futures::stream::unfold(state, move |mut s| {
        let store = store.clone();
        let rt = rt.clone();
        let collection = collection.clone();
        async move {
            if s.done || *s.stopping.borrow() {
                return None;
            }
            if let Some(line) = s.initial.next() {
                return Some((Ok(line), s));
            }
            for e in s.backlog.by_ref() {
                s.last_rv = s.last_rv.max(e.rv);
                if (s.matches)(&e) {
                    let line = event_line(e.kind.as_str(), &(s.render)(&e.object));
                    return Some((Ok(line), s));
                }
            }
            loop {
                let tick = tokio::time::sleep(Duration::from_secs(if bookmarks { 15 } else { 3600 }));
                tokio::select! {
                    _ = tokio::time::sleep_until(s.deadline) => return None,
                    _ = s.stopping.changed() => return None,
                    _ = tick, if bookmarks => {
                        let rv = store.resource_version();
                        let line = event_line("BOOKMARK", &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}}));
                        return Some((Ok(line), s));
                    }
                    received = s.receiver.recv() => match received {
                        Ok(e) if e.collection == collection && e.rv > s.last_rv => {
                            s.last_rv = e.rv;
                            if (s.matches)(&e) {
                                let line = event_line(e.kind.as_str(), &(s.render)(&e.object));
                                return Some((Ok(line), s));
                            }
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => {
                            s.done = true;
                            let gone = ApiError::gone("the watch fell behind; relist");
                            return Some((Ok(event_line("ERROR", &gone.to_status())), s));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
        }
    })
    .boxed()
}

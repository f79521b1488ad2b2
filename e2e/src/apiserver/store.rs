//! The object store: every object, one monotonic resourceVersion, the watch log, and the
//! object semantics of the real API server (uid, generation, finalizers, owner-reference
//! garbage collection, namespace termination, CRD registration).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::errors::ApiError;
use super::resources::{ResourceType, builtin_types};

/// How many watch events are kept for watches that resume from an older resourceVersion.
const LOG_CAPACITY: usize = 200_000;

/// The kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object is gone.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// The collection (`group/plural`).
    pub collection: String,
    /// The object's namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (before it, for deletions).
    pub object: Value,
}

/// The events a watch replays, and the receiver for what comes after them.
pub type WatchStart = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ObjKey {
    collection: String,
    namespace: String,
    name: String,
}

struct State {
    rv: u64,
    types: Vec<ResourceType>,
    objects: BTreeMap<ObjKey, Value>,
    log: VecDeque<Arc<WatchEvent>>,
    /// Watches may resume from any resourceVersion at or above this one.
    oldest_resumable: u64,
    dirty: bool,
}

/// The stand-in's storage, shared by every request.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    persist_to: Option<PathBuf>,
}

/// What a delete did.
pub enum Deleted {
    /// The object is gone; this is its last state.
    Gone(Value),
    /// The object has finalizers: it now has a deletionTimestamp and waits for them.
    Pending(Value),
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")?.get(field)?.as_str().map(str::to_owned)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // safe: the line above made metadata an object; this arm cannot be reached.
        _ => unreachable!("metadata was just set to an object"),
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Everything but metadata and status: what `generation` tracks.
fn desired_state(obj: &Value) -> Value {
    let mut rest = obj.clone();
    if let Some(map) = rest.as_object_mut() {
        for key in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(key);
        }
    }
    rest
}

impl Store {
    /// An empty store with the built-in types, optionally persisted to (and loaded from) a file.
    pub fn new(persist_to: Option<PathBuf>) -> Result<Arc<Self>, String> {
        let (events, _) = broadcast::channel(65_536);
        let mut state = State {
            rv: 1,
            types: builtin_types(),
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            oldest_resumable: 1,
            dirty: false,
        };
        if let Some(path) = persist_to.as_ref().filter(|p| p.exists()) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let saved: Value = serde_json::from_str(&text)
                .map_err(|e| format!("parsing {}: {e}", path.display()))?;
            state.rv = saved
                .get("resourceVersion")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            // Nothing from before the restart can be replayed: older watches must relist.
            state.oldest_resumable = state.rv;
            for item in saved
                .get("objects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = ObjKey {
                    collection: item["collection"].as_str().unwrap_or_default().to_owned(),
                    namespace: item["namespace"].as_str().unwrap_or_default().to_owned(),
                    name: item["name"].as_str().unwrap_or_default().to_owned(),
                };
                state.objects.insert(key, item["object"].clone());
            }
            let crds: Vec<Value> = state
                .objects
                .iter()
                .filter(|(k, _)| k.collection == "apiextensions.k8s.io/customresourcedefinitions")
                .map(|(_, v)| v.clone())
                .collect();
            for crd in crds {
                register_crd(&mut state, &crd).map_err(|e| format!("restoring a CRD: {e}"))?;
            }
        }
        let store = Arc::new(Self {
            state: Mutex::new(state),
            events,
            persist_to,
        });
        if let Some(rt) = store.types().into_iter().find(|t| t.kind == "Namespace") {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                match store.create(&rt, "", json!({"metadata": {"name": ns}})) {
                    Ok(_) | Err(ApiError { code: 409, .. }) => {}
                    Err(e) => return Err(format!("creating namespace {ns}: {}", e.message)),
                }
            }
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The served types.
    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Subscribes to changes, and returns the events after `after` still in the log
    /// (or `Err` when `after` is older than the log: the watch must relist, 410 Gone).
    pub fn watch_from(&self, collection: &str, after: u64) -> Result<WatchStart, ApiError> {
        let state = self.lock();
        if after + 1 < state.oldest_resumable {
            return Err(ApiError::gone(format!(
                "too old resource version: {after} ({})",
                state.oldest_resumable.saturating_sub(1)
            )));
        }
        let receiver = self.events.subscribe();
        let backlog = state
            .log
            .iter()
            .filter(|e| e.rv > after && e.collection == collection)
            .cloned()
            .collect();
        Ok((backlog, receiver))
    }

    /// Forgets the watch log up to now, as etcd compaction does: watches resuming from an
    /// older resourceVersion get 410 Gone. For tests of watch recovery.
    pub fn compact(&self) -> u64 {
        let mut state = self.lock();
        state.log.clear();
        state.oldest_resumable = state.rv + 1;
        state.rv
    }

    /// One object.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.lock();
        state
            .objects
            .get(&key(rt, namespace, name))
            .map(|o| with_type(o, rt))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Every object of a type, in one namespace or all, with the list's resourceVersion.
    pub fn list(&self, rt: &ResourceType, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let state = self.lock();
        let collection = rt.collection();
        // A range of the ordered keys, as etcd reads a key prefix: scanning every object made
        // each namespaced list O(all objects), and 10,000 tenants' reconciles quadratic.
        let start = ObjKey {
            collection: collection.clone(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: String::new(),
        };
        let items = state
            .objects
            .range(start..)
            .take_while(|(k, _)| {
                k.collection == collection && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(_, o)| with_type(o, rt))
            .collect();
        (items, state.rv)
    }

    /// Every stored object of a collection (`group/plural`), for internal readers such as
    /// RBAC.
    pub fn list_collection(&self, collection: &str) -> Vec<Value> {
        let state = self.lock();
        let start = ObjKey {
            collection: collection.to_owned(),
            namespace: String::new(),
            name: String::new(),
        };
        state
            .objects
            .range(start..)
            .take_while(|(k, _)| k.collection == collection)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Creates an object.
    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let name = match meta(&obj, "name") {
            Some(name) if !name.is_empty() => name,
            _ => match meta(&obj, "generateName") {
                Some(prefix) => format!(
                    "{prefix}{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..5]
                ),
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        vec![(
                            "metadata.name".into(),
                            "FieldValueRequired".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            },
        };
        if rt.namespaced {
            check_namespace_accepts_content(&state, namespace)?;
        }
        let k = key(rt, namespace, &name);
        if state.objects.contains_key(&k) {
            return Err(ApiError::already_exists(rt, &name));
        }
        if rt.status_subresource && rt.crd.is_some() {
            // Status is written only through the status subresource.
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            if rt.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now()));
            m.remove("deletionTimestamp");
            m.remove("resourceVersion");
            if rt.has_generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if rt.kind == "Namespace" {
            obj["status"] = json!({"phase": "Active"});
        }
        if rt.kind == "CustomResourceDefinition" {
            register_crd(&mut state, &obj).map_err(|e| {
                ApiError::invalid(
                    rt,
                    &name,
                    vec![("spec".into(), "FieldValueInvalid".into(), e)],
                )
            })?;
            obj["status"] = crd_status(&obj);
        }
        let stored = self.commit(&mut state, rt, k, obj, EventType::Added);
        Ok(with_type(&stored, rt))
    }

    /// Replaces an object (or only its status, for the status subresource), failing with 409
    /// when `expected_rv` is given and stale. `transform` computes the new object from the
    /// current one under the store's lock, so read-modify-write is atomic (patches use this).
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        status_only: bool,
        transform: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let k = key(rt, namespace, name);
        let Some(old) = state.objects.get(&k).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        let mut new = transform(&with_type(&old, rt))?;
        let old_rv = meta(&old, "resourceVersion").unwrap_or_default();
        match meta(&new, "resourceVersion") {
            Some(rv) if !rv.is_empty() && rv != old_rv => {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            None if rt.crd.is_some() && !status_only => {}
            _ => {}
        }
        if meta(&new, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta(&new, "name").unwrap_or_default()
            )));
        }
        let managed_fields = new.pointer("/metadata/managedFields").cloned();
        if status_only {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        } else if rt.status_subresource && rt.crd.is_some() {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        // Fields only the server sets.
        let old_meta = old.get("metadata").cloned().unwrap_or_default();
        {
            let m = meta_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
            if status_only {
                // Everything but the status comes from the stored object, except the field
                // ownership the write itself recorded (its `status` subresource entry): without
                // it, the next apply would not know which status fields its manager owns, and
                // could never remove one.
                match managed_fields {
                    Some(fields) => m.insert("managedFields".into(), fields),
                    None => m.remove("managedFields"),
                };
            }
        }
        if rt.has_generation {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let bumped = if desired_state(&old) != desired_state(&new) {
                generation + 1
            } else {
                generation
            };
            meta_mut(&mut new).insert("generation".into(), json!(bumped));
        }
        if rt.kind == "CustomResourceDefinition" && !status_only {
            register_crd(&mut state, &new).map_err(|e| {
                ApiError::invalid(
                    rt,
                    name,
                    vec![("spec".into(), "FieldValueInvalid".into(), e)],
                )
            })?;
            new["status"] = crd_status(&new);
        }
        // Nothing changed: no new resourceVersion, no event (as the real server does).
        let mut unchanged = new.clone();
        meta_mut(&mut unchanged).insert("resourceVersion".into(), json!(old_rv));
        if strip_type(&unchanged) == strip_type(&old) {
            return Ok(with_type(&old, rt));
        }
        let finished =
            old.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty();
        let stored = self.commit(&mut state, rt, k.clone(), new, EventType::Modified);
        if finished {
            let gone = self.remove(&mut state, rt, &k);
            return Ok(with_type(&gone.unwrap_or(stored), rt));
        }
        Ok(with_type(&stored, rt))
    }

    /// Deletes an object: at once, or — when it has finalizers — by setting its
    /// deletionTimestamp and waiting for them to be removed. `precondition_uid` /
    /// `precondition_rv` fail the delete with 409 when they do not match.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Deleted, ApiError> {
        let mut state = self.lock();
        let k = key(rt, namespace, name);
        let Some(obj) = state.objects.get(&k).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(uid) = precondition_uid
            && meta(&obj, "uid").as_deref() != Some(uid)
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "Precondition failed: UID in precondition does not match the object",
            ));
        }
        if let Some(rv) = precondition_rv
            && meta(&obj, "resourceVersion").as_deref() != Some(rv)
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "Precondition failed: ResourceVersion in precondition does not match the object",
            ));
        }
        self.delete_locked(&mut state, rt, k, obj)
    }

    fn delete_locked(
        &self,
        state: &mut State,
        rt: &ResourceType,
        k: ObjKey,
        obj: Value,
    ) -> Result<Deleted, ApiError> {
        if rt.kind == "Namespace" {
            return Ok(self.terminate_namespace(state, rt, k, obj));
        }
        if !finalizers(&obj).is_empty() {
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Deleted::Pending(with_type(&obj, rt)));
            }
            let mut marked = obj;
            let m = meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            let stored = self.commit(state, rt, k, marked, EventType::Modified);
            return Ok(Deleted::Pending(with_type(&stored, rt)));
        }
        let gone = self.remove(state, rt, &k).unwrap_or(obj);
        Ok(Deleted::Gone(with_type(&gone, rt)))
    }

    /// Removes an object for good, then what depended on it: objects it owned, the objects
    /// of a CRD, the namespace it was the last content of.
    fn remove(&self, state: &mut State, rt: &ResourceType, k: &ObjKey) -> Option<Value> {
        let obj = state.objects.remove(k)?;
        state.rv += 1;
        let rv = state.rv;
        let mut last = obj.clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(state, rt, k, EventType::Deleted, with_type(&last, rt));

        if rt.kind == "CustomResourceDefinition" {
            let removed: Vec<ResourceType> = state
                .types
                .iter()
                .filter(|t| t.crd.as_deref() == Some(&k.name))
                .cloned()
                .collect();
            state.types.retain(|t| t.crd.as_deref() != Some(&k.name));
            if let Some(t) = removed.first() {
                let keys: Vec<ObjKey> = state
                    .objects
                    .keys()
                    .filter(|o| o.collection == t.collection())
                    .cloned()
                    .collect();
                for key in keys {
                    self.remove(state, t, &key);
                }
            }
        }
        if let Some(uid) = meta(&obj, "uid") {
            self.collect_garbage(state, &uid);
        }
        if rt.namespaced {
            self.finish_namespace_if_empty(state, &k.namespace);
        }
        Some(obj)
    }

    /// Deletes the objects all of whose owners are gone (background propagation).
    fn collect_garbage(&self, state: &mut State, deleted_uid: &str) {
        let live_uids: std::collections::HashSet<String> = state
            .objects
            .values()
            .filter_map(|o| meta(o, "uid"))
            .collect();
        let orphans: Vec<(ObjKey, Value)> = state
            .objects
            .iter()
            .filter(|(_, o)| {
                let owners: Vec<&str> = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .map(|refs| refs.iter().filter_map(|r| r.get("uid")?.as_str()).collect())
                    .unwrap_or_default();
                owners.contains(&deleted_uid) && owners.iter().all(|u| !live_uids.contains(*u))
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (k, obj) in orphans {
            if let Some(rt) = type_of(state, &k.collection) {
                let _ = self.delete_locked(state, &rt, k, obj);
            }
        }
    }

    fn terminate_namespace(
        &self,
        state: &mut State,
        rt: &ResourceType,
        k: ObjKey,
        obj: Value,
    ) -> Deleted {
        let mut terminating = obj;
        if terminating.pointer("/metadata/deletionTimestamp").is_none() {
            meta_mut(&mut terminating).insert("deletionTimestamp".into(), json!(now()));
            terminating["status"] = json!({"phase": "Terminating"});
            terminating = self.commit(state, rt, k.clone(), terminating, EventType::Modified);
        }
        let contents: Vec<(ObjKey, Value)> = state
            .objects
            .iter()
            .filter(|(key, _)| {
                key.namespace == k.name
                    && type_of(state, &key.collection).is_some_and(|t| t.namespaced)
            })
            .map(|(key, o)| (key.clone(), o.clone()))
            .collect();
        for (key, o) in contents {
            if let Some(t) = type_of(state, &key.collection) {
                let _ = self.delete_locked(state, &t, key, o);
            }
        }
        match state.objects.contains_key(&k) {
            false => Deleted::Gone(with_type(&terminating, rt)),
            true => {
                self.finish_namespace_if_empty(state, &k.name);
                match state.objects.get(&k) {
                    Some(o) => Deleted::Pending(with_type(o, rt)),
                    None => Deleted::Gone(with_type(&terminating, rt)),
                }
            }
        }
    }

    fn finish_namespace_if_empty(&self, state: &mut State, namespace: &str) {
        let ns_key = ObjKey {
            collection: "namespaces".into(),
            namespace: String::new(),
            name: namespace.into(),
        };
        let terminating = state
            .objects
            .get(&ns_key)
            .is_some_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_some());
        if !terminating {
            return;
        }
        let empty = !state.objects.keys().any(|key| {
            key.namespace == namespace
                && type_of(state, &key.collection).is_some_and(|t| t.namespaced)
        });
        if empty && let Some(rt) = type_of(state, "namespaces") {
            self.remove(state, &rt, &ns_key);
        }
    }

    /// Stores `obj` under a new resourceVersion and tells the watches.
    fn commit(
        &self,
        state: &mut State,
        rt: &ResourceType,
        k: ObjKey,
        mut obj: Value,
        kind: EventType,
    ) -> Value {
        state.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(state.rv.to_string()));
        let stored = strip_type(&obj);
        state.objects.insert(k.clone(), stored.clone());
        self.emit(state, rt, &k, kind, with_type(&stored, rt));
        stored
    }

    fn emit(
        &self,
        state: &mut State,
        _rt: &ResourceType,
        k: &ObjKey,
        kind: EventType,
        object: Value,
    ) {
        let event = Arc::new(WatchEvent {
            rv: state.rv,
            collection: k.collection.clone(),
            namespace: k.namespace.clone(),
            kind,
            object,
        });
        state.log.push_back(event.clone());
        while state.log.len() > LOG_CAPACITY {
            if let Some(old) = state.log.pop_front() {
                state.oldest_resumable = old.rv + 1;
            }
        }
        state.dirty = true;
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Writes the store to its file if anything changed since the last call.
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(path) = &self.persist_to else {
            return Ok(());
        };
        let snapshot = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            let objects: Vec<Value> = state
                .objects
                .iter()
                .map(|(k, o)| json!({"collection": k.collection, "namespace": k.namespace, "name": k.name, "object": o}))
                .collect();
            json!({"resourceVersion": state.rv, "objects": objects})
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&snapshot)?)?;
        std::fs::rename(tmp, path)
    }
}

fn key(rt: &ResourceType, namespace: &str, name: &str) -> ObjKey {
    ObjKey {
        collection: rt.collection(),
        namespace: if rt.namespaced {
            namespace.to_owned()
        } else {
            String::new()
        },
        name: name.to_owned(),
    }
}

fn type_of(state: &State, collection: &str) -> Option<ResourceType> {
    state
        .types
        .iter()
        .find(|t| t.collection() == collection)
        .cloned()
}

fn check_namespace_accepts_content(state: &State, namespace: &str) -> Result<(), ApiError> {
    let ns_key = ObjKey {
        collection: "namespaces".into(),
        namespace: String::new(),
        name: namespace.into(),
    };
    let Some(ns) = state.objects.get(&ns_key) else {
        let rt = type_of(state, "namespaces")
            .ok_or_else(|| ApiError::bad_request("namespaces are not served"))?;
        return Err(ApiError::not_found(&rt, namespace));
    };
    if ns.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )));
    }
    Ok(())
}

/// The object as stored: without apiVersion and kind, which depend on the version asked for.
fn strip_type(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    out
}

/// The stored object as served at `rt`'s version.
pub fn with_type(obj: &Value, rt: &ResourceType) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(rt.api_version()));
    out.insert("kind".into(), json!(rt.kind));
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if k != "apiVersion" && k != "kind" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn register_crd(state: &mut State, crd: &Value) -> Result<(), String> {
    let types = ResourceType::from_crd(crd)?;
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(clash) = state.types.iter().find(|t| {
        t.crd.as_deref() != Some(name) && types.iter().any(|n| n.collection() == t.collection())
    }) {
        return Err(format!("{} is already served", clash.qualified_name()));
    }
    state.types.retain(|t| t.crd.as_deref() != Some(name));
    state.types.extend(types);
    Ok(())
}

fn crd_status(crd: &Value) -> Value {
    let now = now();
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now});
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_default(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>(),
    })
}

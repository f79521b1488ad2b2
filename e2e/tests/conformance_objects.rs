//! The object semantics tenant-mcp relies on, checked on a real API server with kube-rs
//! (resource versions, generations, finalizers, server-side apply and its conflicts, status
//! subresource, strict field validation); they run against any cluster with `E2E_KUBECONFIG`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, Status};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp_e2e::harness::Cluster;

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

fn tenant(name: &str, tenant_id: &str) -> TenantMcpConfig {
    serde_json::from_value(json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": name},
        "spec": {"tenantId": tenant_id, "servers": {"postgres": {"host": "db.example.com", "database": "rag", "credentialsSecretRef": {"name": "pg"}}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn create_get_list_and_the_error_reasons() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("crud").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "one", "labels": {"app": "a"}}, "data": {"k": "v"}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );

    let again = api_error(api.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "configmaps \"one\" already exists");

    let missing = api_error(api.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    let two: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "two", "labels": {"app": "b"}}}))
            .unwrap();
    api.create(&PostParams::default(), &two).await.unwrap();
    let only_a = api
        .list(&ListParams::default().labels("app=a"))
        .await
        .unwrap();
    assert_eq!(only_a.items.len(), 1);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=two"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].metadata.name.as_deref(), Some("two"));

    // Pagination: limit + continue.
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].metadata.name, page.items[0].metadata.name);
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("conflict").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "1"}})).unwrap();
    let first = api.create(&PostParams::default(), &cm).await.unwrap();
    let mut newer = first.clone();
    newer.data = Some([("k".to_owned(), "2".to_owned())].into());
    let newer = api
        .replace("c", &PostParams::default(), &newer)
        .await
        .unwrap();
    assert_ne!(
        newer.metadata.resource_version,
        first.metadata.resource_version
    );
    let stale = api_error(
        api.replace("c", &PostParams::default(), &first)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );
    // A resourceVersion in a server-side-applied object is a precondition too.
    let apply = |version: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "resourceVersion": version}, "data": {"k": value}})
    };
    let stale_version = first.metadata.resource_version.clone().unwrap();
    let stale = api_error(
        api.patch(
            "c",
            &PatchParams::apply("t"),
            &Patch::Apply(apply(&stale_version, "3")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(stale.code, 409, "{}", stale.message);
    let current = newer.metadata.resource_version.clone().unwrap();
    let applied = api
        .patch(
            "c",
            &PatchParams::apply("t").force(),
            &Patch::Apply(apply(&current, "3")),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "3");
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn secrets_fold_string_data_into_base64_data() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("secret").await.unwrap();
    let api: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &secret).await.unwrap();
    assert!(created.string_data.is_none());
    assert_eq!(created.data.unwrap()["password"].0, b"hunter2");
    cluster.delete_namespace(&ns).await;
}

/// kube-rs's finalizer helper adds the first finalizer with a JSON patch that tests
/// `/metadata/finalizers` for null: the API server lets that pass on a missing path.
#[tokio::test]
async fn json_patch_test_of_null_passes_on_a_missing_path() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("jsonpatch").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/keep"]}
    ]))
    .unwrap();
    let patched = api
        .patch("c", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.metadata.finalizers.unwrap(), ["example.com/keep"]);
    // A test of null on a path that is there still fails.
    let again: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null}
    ]))
    .unwrap();
    let err = api
        .patch("c", &PatchParams::default(), &Patch::<()>::Json(again))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );
    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("c", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .unwrap();
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn generation_moves_with_spec_only_and_status_is_a_subresource() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("gen").await.unwrap();
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    let created = api
        .create(&PostParams::default(), &tenant("t", "acme"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    // Defaults from the CRD schema are applied by the server.
    let stored = api.get("t").await.unwrap();
    assert_eq!(stored.spec.servers.postgres.as_ref().unwrap().port, 5432);

    let labelled = api
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );

    let status = json!({"status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "AllServersHealthy", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let with_status = api
        .patch_status("t", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status changes do not bump generation"
    );
    assert_eq!(
        with_status.status.as_ref().unwrap().observed_generation,
        Some(1)
    );

    // A status write through the main resource is ignored; a spec write bumps generation.
    let main = api
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"enabled": false}, "status": {"observedGeneration": 99}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(main.metadata.generation, Some(2));
    assert_eq!(main.status.unwrap().observed_generation, Some(1));
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn invalid_custom_resources_get_422_with_causes() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("invalid").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        &ns,
        &kube::core::ApiResource::erase::<TenantMcpConfig>(&()),
    );
    let bad = json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig", "metadata": {"name": "bad"},
        "spec": {"tenantId": "acme", "servers": {"postgres": {"host": "db", "port": 70000, "database": "rag", "credentialsSecretRef": {"name": "pg"}}}}});
    let err = api_error(
        api.create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message.contains("spec.servers.postgres.port"),
        "{}",
        err.message
    );

    // CEL transition rule: tenantId is immutable.
    let ok = tenant("t", "acme");
    let typed: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    typed.create(&PostParams::default(), &ok).await.unwrap();
    let renamed = typed
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tenantId": "other"}})),
        )
        .await
        .unwrap_err();
    let renamed = api_error(renamed);
    assert_eq!(renamed.code, 422);
    assert!(
        renamed.message.contains("tenantId is immutable"),
        "{}",
        renamed.message
    );
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("final").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "f", "finalizers": ["tenantmcp.dev/cleanup"]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = api.get("f").await.unwrap();
    assert!(
        pending.metadata.deletion_timestamp.is_some(),
        "still there, marked for deletion"
    );
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let gone = api_error(api.get("f").await.unwrap_err());
    assert_eq!(gone.code, 404);
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("gc").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let owned: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owned", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap()}]}}))
    .unwrap();
    api.create(&PostParams::default(), &owned).await.unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    // Garbage collection is asynchronous on a real cluster.
    let mut gone = false;
    for _ in 0..100 {
        if api.get_opt("owned").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the owned object should be collected");
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn server_side_apply_tracks_managers_and_conflicts() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("ssa").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"owner": "gitops", "shared": "1"}});
    let created = api
        .patch("a", &PatchParams::apply("gitops"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["owner"], "gitops");
    let managers: Vec<String> = created
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["gitops"]);

    let takeover = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"owner": "mcp-tools"}});
    let conflict = api_error(
        api.patch(
            "a",
            &PatchParams::apply("mcp-tools"),
            &Patch::Apply(&takeover),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("conflict with \"gitops\""),
        "{}",
        conflict.message
    );

    let forced = api
        .patch(
            "a",
            &PatchParams::apply("mcp-tools").force(),
            &Patch::Apply(&takeover),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["owner"], "mcp-tools");
    assert_eq!(
        forced.data.as_ref().unwrap()["shared"],
        "1",
        "fields still applied by gitops stay"
    );

    // gitops stops applying `shared`: it is removed, since nobody else owns it.
    let trimmed =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}});
    let after = api
        .patch("a", &PatchParams::apply("gitops"), &Patch::Apply(&trimmed))
        .await
        .unwrap();
    assert!(!after.data.unwrap_or_default().contains_key("shared"));
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("nsdel").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
    )
    .await
    .unwrap();
    cluster.delete_namespace(&ns).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client());
    let mut gone = false;
    for _ in 0..300 {
        if namespaces.get_opt(&ns).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "namespace {ns} should finish terminating");
    let err = api_error(
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "y"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.code, 404,
        "no content in a namespace that does not exist"
    );
}

#[tokio::test]
async fn json_and_strategic_merge_patches_and_deletecollection() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("patch").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {"keep": "1"}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/data/added", "value": "2"},
        {"op": "replace", "path": "/data/keep", "value": "one"},
    ]))
    .unwrap();
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!(
        (data["keep"].as_str(), data["added"].as_str()),
        ("one", "2")
    );

    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"more": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap().len(),
        3,
        "a strategic merge patch merges maps"
    );

    // A JSON patch that does not apply is refused, and nothing changes.
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/data/absent"}])).unwrap();
    let err = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(bad))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );
    assert_eq!(api.get("a").await.unwrap().data.unwrap().len(), 3);

    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await
        .unwrap();
    assert!(
        deleted.is_left(),
        "deletecollection returns the deleted list"
    );
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(
        left.contains(&"c".to_owned())
            && !left.contains(&"a".to_owned())
            && !left.contains(&"b".to_owned()),
        "{left:?}"
    );
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn leases_hold_leader_election_state() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("lease").await.unwrap();
    let api: Api<Lease> = Api::namespaced(cluster.client(), &ns);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "tenant-mcp-controller"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15, "acquireTime": "2026-11-24T09:00:00.000000Z", "renewTime": "2026-11-24T09:00:00.000000Z"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    // Two candidates race to take over with the same resourceVersion: one wins, one conflicts.
    let take = |holder: &str| {
        let mut l = created.clone();
        l.spec.as_mut().unwrap().holder_identity = Some(holder.to_owned());
        l
    };
    let (b, c) = (take("pod-b"), take("pod-c"));
    api.replace("tenant-mcp-controller", &PostParams::default(), &b)
        .await
        .unwrap();
    let lost = api_error(
        api.replace("tenant-mcp-controller", &PostParams::default(), &c)
            .await
            .unwrap_err(),
    );
    assert_eq!((lost.code, lost.reason.as_str()), (409, "Conflict"));
    let now = api.get("tenant-mcp-controller").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("pod-b"));
    cluster.delete_namespace(&ns).await;
}

/// A status written with server-side apply is owned by its manager like any other field: the
/// next apply that leaves an entry out removes it (how the controller takes an active entry
/// out of service).
#[tokio::test]
async fn a_status_apply_that_leaves_a_field_out_removes_it() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("status-apply").await.unwrap();
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    api.create(&PostParams::default(), &tenant("c", "acme"))
        .await
        .unwrap();
    // Every field written out, as the controller writes it (a field left to server-side
    // defaulting would not be the manager's, and would stay).
    let spec = serde_json::to_value(&tenant("c", "acme").spec.servers.postgres).unwrap();
    let active = json!({"postgres": {"spec": spec, "specHash": "h", "snapshotSecret": "s",
        "promotedAt": "2026-11-29T00:00:00Z"}});
    let status = |active: serde_json::Value| {
        json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
               "status": {"active": active, "observedGeneration": 1}})
    };
    let params = PatchParams::apply("controller").force();
    let first = api
        .patch_status("c", &params, &Patch::Apply(status(active)))
        .await
        .unwrap();
    assert!(first.status.unwrap().active.postgres.is_some());
    let second = api
        .patch_status("c", &params, &Patch::Apply(status(json!({}))))
        .await
        .unwrap();
    assert!(
        second.status.unwrap().active.postgres.is_none(),
        "the entry the manager no longer applies stays"
    );
    cluster.delete_namespace(&ns).await;
}

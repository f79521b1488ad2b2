//! The control plane the scenarios run on (`e2e/src/stack/kube.rs`) is a real one: the RBAC
//! authorizer decides for a ServiceAccount's TokenRequest token and for an impersonated person,
//! the garbage collector removes what an owner leaves behind, and a deleted namespace goes with
//! everything in it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::scenario::apply;
use tenant_mcp_e2e::stack::kube::User;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_tokens_garbage_collection_and_namespace_deletion_are_real() {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("plane").await.unwrap();
    let admin = cluster.client();

    // A ServiceAccount allowed to read ConfigMaps in this namespace, and nothing else.
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "reader", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "reader", "namespace": ns},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "reader", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}),
    ] {
        apply(&admin, &object).await.unwrap();
    }
    let token = cluster.service_account_token(&ns, "reader").await.unwrap();
    let reader = cluster.client_as(&User::Token(token)).await.unwrap();
    let as_reader: Api<ConfigMap> = Api::namespaced(reader, &ns);
    as_reader.list(&Default::default()).await.unwrap();
    let refused = as_reader
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403),
        "{refused}"
    );
    // A person the administrator impersonates gets only what is bound to them: nothing here.
    let nobody = cluster
        .client_as(&User::person("mallory", &["nobody"]))
        .await
        .unwrap();
    let refused = Api::<ConfigMap>::namespaced(nobody, &ns)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403),
        "{refused}"
    );

    // The garbage collector (kube-controller-manager) removes a dependent once its owner goes.
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let owner = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "dependent", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
             "uid": owner.metadata.uid.unwrap()}]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    maps.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the dependent collected",
        Duration::from_secs(60),
        async || {
            maps.get_opt("dependent")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;

    // A deleted namespace goes, with what is in it.
    Api::<Namespace>::all(admin.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the namespace gone", Duration::from_secs(60), async || {
        Api::<Namespace>::all(admin.clone())
            .get_opt(&ns)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

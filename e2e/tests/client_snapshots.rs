//! The client library's snapshot reads on a real control plane (or `E2E_KUBECONFIG`'s cluster),
//! without a controller: configs whose `status.active` names snapshot Secrets as the
//! controller would write it. More tenants than reads run at once, snapshots arriving only
//! after the client saw their config (read again after a backoff), and one Secret that
//! carries a snapshot's name without being one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tenant_mcp::api::{SNAPSHOT_TYPE, TenantMcpConfig};
use tenant_mcp::client::{ClientError, ClientSettings, Origin, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp_e2e::harness::{Cluster, create_global_config, create_namespace, wait_for};

/// More than the client reads at once (16).
const TENANTS: usize = 40;

/// Creates tenant `t`'s config with a promoted Postgres entry naming snapshot `snap`; returns
/// the config's uid.
async fn promoted_config(client: &kube::Client, t: &str) -> String {
    create_namespace(client, t, Some(t)).await.unwrap();
    let spec = serde_json::json!({"host": "127.0.0.1", "database": t, "sslMode": "disable",
        "credentialsSecretRef": {"name": "pg"}});
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), t);
    let created = configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "config", "namespace": t},
                "spec": {"tenantId": t, "servers": {"postgres": spec}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    configs
        .patch_status(
            "config",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"active": {"postgres": {
                "spec": spec, "snapshotSecret": "snap", "specHash": "h",
                "promotedAt": "2026-11-30T00:00:00Z"}}}})),
        )
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

/// Secret `snap` in `t`: a snapshot owned by `owner`, or (`None`) an ordinary Secret that only
/// carries the name.
async fn snapshot(client: &kube::Client, t: &str, owner: Option<&str>) {
    let mut secret = serde_json::json!({
        "metadata": {"name": "snap", "namespace": t},
        "type": "Opaque",
        "stringData": {"username": format!("user-{t}"), "password": "p"}
    });
    if let Some(uid) = owner {
        secret["type"] = SNAPSHOT_TYPE.into();
        secret["metadata"]["ownerReferences"] = serde_json::json!([{
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "name": "config", "uid": uid, "controller": true}]);
    }
    Api::<Secret>::namespaced(client.clone(), t)
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).unwrap(),
        )
        .await
        .unwrap();
}

fn username(clients: &TenantClients, t: &str) -> Result<String, ClientError> {
    let endpoint = clients.endpoint(t, &ServerKey::Postgres)?;
    assert_eq!(endpoint.origin, Origin::Tenant, "{t} left its own server");
    match &endpoint.server {
        tenant_mcp::config::candidate::Candidate::Postgres { credentials, .. } => {
            Ok(credentials.username.clone())
        }
        other => panic!("{t}: not Postgres: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_read_for_every_tenant_late_ones_on_a_retry_and_never_from_a_forged_secret() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    create_global_config(
        &client,
        serde_json::json!({"endpointPolicy": {"allowLoopback": true}, "servers": {"postgres": {
            "host": "127.0.0.1", "database": "global", "sslMode": "disable",
            "credentialsSecretRef": {"name": "global"}}}}),
    )
    .await
    .unwrap();
    let suffix = std::process::id();
    let names: Vec<String> = (0..TENANTS).map(|i| format!("snap-{suffix}-{i}")).collect();
    // Every tenant has its snapshot before the client starts (so no read fails and is
    // retried: the reads queued behind the first 16 start only as earlier ones finish), but
    // the last one has a Secret with the snapshot's name that the controller did not make.
    let forged = names.last().unwrap();
    for t in &names {
        let uid = promoted_config(&client, t).await;
        snapshot(&client, t, (t != forged).then_some(uid.as_str())).await;
    }
    let clients = TenantClients::from_kube(
        client.clone(),
        ClientSettings {
            sync_timeout: Duration::from_secs(30),
            ..ClientSettings::default()
        },
    )
    .await
    .unwrap();
    for t in names.iter().filter(|t| *t != forged) {
        assert_eq!(username(&clients, t).unwrap(), format!("user-{t}"));
    }
    let not_visible = |t: &str| match username(&clients, t) {
        Err(ClientError::Unavailable { reason, .. }) => reason == "SnapshotNotVisible",
        other => panic!("{t} has no snapshot of its own, and got {other:?}"),
    };
    assert!(not_visible(forged));

    // Tenants promoted after the client started, whose snapshots arrive later still: read
    // again after a backoff.
    let late: Vec<String> = (0..4).map(|i| format!("late-{suffix}-{i}")).collect();
    let mut uids = Vec::new();
    for t in &late {
        uids.push(promoted_config(&client, t).await);
    }
    for t in &late {
        // Its config is first seen without a status (Pending), then promoted.
        wait_for(
            "the late tenant's promoted route, its snapshot not there",
            Duration::from_secs(30),
            async || match clients.endpoint(t, &ServerKey::Postgres) {
                Err(ClientError::Unavailable { reason, .. }) => {
                    (reason == "SnapshotNotVisible").then_some(())
                }
                _ => None,
            },
        )
        .await;
    }
    for (t, uid) in late.iter().zip(&uids) {
        snapshot(&client, t, Some(uid)).await;
    }
    wait_for(
        "every late snapshot read on a retry",
        Duration::from_secs(30),
        async || {
            late.iter()
                .all(|t| username(&clients, t).is_ok_and(|u| u == format!("user-{t}")))
                .then_some(())
        },
    )
    .await;
    // The forged Secret is still never taken (nor the global login).
    assert!(not_visible(forged));
    clients.shutdown().await;
}

/// Issue 27, item 7. Threat model, namespace admin: "never make an application use credentials
/// the controller did not test". The admin deletes a snapshot (immutable, so it cannot be
/// edited) and recreates it under the same name, type and owner reference with credentials of
/// their own. `status.active` recorded the snapshot's uid, so a new client — a pod started
/// after the swap — refuses the recreated Secret instead of taking it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_recreated_under_its_name_is_refused_by_a_new_client() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    create_global_config(
        &client,
        serde_json::json!({"endpointPolicy": {"allowLoopback": true}}),
    )
    .await
    .unwrap();
    let t = "swapped";
    let owner = promoted_config(&client, t).await;
    snapshot(&client, t, Some(&owner)).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), t);
    let genuine = secrets.get("snap").await.unwrap().metadata.uid.unwrap();
    Api::<TenantMcpConfig>::namespaced(client.clone(), t)
        .patch_status(
            "config",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"active": {"postgres": {
                "snapshotUid": genuine}}}})),
        )
        .await
        .unwrap();
    let settings = || ClientSettings {
        sync_timeout: Duration::from_secs(30),
        ..ClientSettings::default()
    };
    let before = TenantClients::from_kube(client.clone(), settings())
        .await
        .unwrap();
    assert_eq!(username(&before, t).unwrap(), format!("user-{t}"));
    before.shutdown().await;

    secrets.delete("snap", &Default::default()).await.unwrap();
    let mut forged: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "snap", "namespace": t, "ownerReferences": [{
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "name": "config", "uid": owner, "controller": true}]},
        "type": SNAPSHOT_TYPE, "immutable": true,
        "stringData": {"username": "attacker", "password": "attackers-own"}
    }))
    .unwrap();
    forged = secrets
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    assert_ne!(forged.metadata.uid.as_deref(), Some(genuine.as_str()));

    let after = TenantClients::from_kube(client.clone(), settings())
        .await
        .unwrap();
    match username(&after, t) {
        Err(ClientError::Unavailable {
            reason, message, ..
        }) => {
            assert_eq!(reason, "SnapshotReplaced", "{message}");
            assert!(message.contains("recreated"), "{message}");
        }
        other => panic!("the recreated snapshot was not refused: {other:?}"),
    }
    after.shutdown().await;
}

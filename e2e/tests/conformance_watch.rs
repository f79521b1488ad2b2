//! What tenant-mcp relies on from the API server's watches, checked on a real one: kube-rs's
//! watcher and a trivial Controller see every change, across a kube-apiserver restart, and a
//! compacted resourceVersion is `410 Gone`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::kube::{Component, ControlPlaneOptions};
use tokio::sync::mpsc;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap()
}

/// Collects `(event, name, value)` from a kube-rs watcher into a channel.
fn spawn_watcher(
    api: Api<ConfigMap>,
    streaming: bool,
) -> mpsc::UnboundedReceiver<(String, String, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = if streaming {
        watcher::Config::default().streaming_lists()
    } else {
        watcher::Config::default()
    };
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let (kind, cm) = match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => ("apply", cm),
                Ok(Event::Delete(cm)) => ("delete", cm),
                _ => continue,
            };
            let value = cm
                .data
                .and_then(|d| d.get("v").cloned())
                .unwrap_or_default();
            if tx
                .send((kind.to_owned(), cm.metadata.name.unwrap_or_default(), value))
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

async fn expect(
    rx: &mut mpsc::UnboundedReceiver<(String, String, String)>,
    kind: &str,
    name: &str,
    value: &str,
) {
    let want = (kind.to_owned(), name.to_owned(), value.to_owned());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Ok(Some(got)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if got == want {
            return;
        }
        seen.push(got);
    }
    panic!("watcher never saw {want:?}; saw {seen:?}");
}

async fn watcher_sees_every_change(streaming: bool) {
    let cluster = Cluster::start().await.unwrap();
    let ns = cluster.namespace("watch").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    api.create(&PostParams::default(), &config_map("before", "0"))
        .await
        .unwrap();
    let mut rx = spawn_watcher(api.clone(), streaming);
    expect(&mut rx, "apply", "before", "0").await;
    api.create(&PostParams::default(), &config_map("w", "1"))
        .await
        .unwrap();
    expect(&mut rx, "apply", "w", "1").await;
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    expect(&mut rx, "apply", "w", "2").await;
    api.delete("w", &DeleteParams::default()).await.unwrap();
    expect(&mut rx, "delete", "w", "2").await;
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
async fn the_watcher_sees_every_change_with_list_then_watch() {
    watcher_sees_every_change(false).await;
}

#[tokio::test]
async fn the_watcher_sees_every_change_with_streaming_lists() {
    watcher_sees_every_change(true).await;
}

#[tokio::test]
async fn a_watch_resumes_from_a_resource_version_and_gets_410_once_compacted() {
    // etcd compacted every second, and watches served by etcd itself (no watch cache, whose
    // window would keep old versions a while longer).
    let cluster = Cluster::local(ControlPlaneOptions {
        compaction_interval: Duration::from_secs(1),
        watch_cache: false,
        ..ControlPlaneOptions::default()
    })
    .await
    .unwrap();
    let ns = cluster.namespace("gone").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let first = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let from = first.metadata.resource_version.unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();

    // Resuming replays what happened after `from`.
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &from)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Modified(cm))) => assert_eq!(cm.data.unwrap()["v"], "2"),
        other => panic!("expected the modification, got {other:?}"),
    }

    // The compactor compacts up to the revision it saw on its previous run: a few intervals.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": uuid::Uuid::new_v4().to_string()}})),
        )
        .await
        .unwrap();
        let gone = match api.watch(&WatchParams::default().timeout(2), &from).await {
            Ok(stream) => match stream.boxed().next().await {
                Some(Ok(WatchEvent::Error(status))) => {
                    assert_eq!(status.code, 410, "{status:?}");
                    assert_eq!(status.reason, "Expired", "{status:?}");
                    true
                }
                _ => false,
            },
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 410, "{status:?}");
                true
            }
            Err(e) => panic!("watch: {e}"),
        };
        if gone {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resourceVersion {from} was never compacted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_survives_a_restart_and_sees_later_changes() {
    let mut cluster = Cluster::local(ControlPlaneOptions::default())
        .await
        .unwrap();
    let ns = cluster.namespace("restart").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    api.create(&PostParams::default(), &config_map("r", "1"))
        .await
        .unwrap();
    let mut rx = spawn_watcher(api.clone(), false);
    expect(&mut rx, "apply", "r", "1").await;

    restart_apiserver(&mut cluster).await;

    // Objects survived the restart, and the watcher reconnected on its own.
    assert_eq!(api.get("r").await.unwrap().data.unwrap()["v"], "1");
    api.patch(
        "r",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    expect(&mut rx, "apply", "r", "2").await;
    api.create(&PostParams::default(), &config_map("s", "3"))
        .await
        .unwrap();
    expect(&mut rx, "apply", "s", "3").await;
}

/// Stops kube-apiserver (SIGTERM: its graceful shutdown closes every watch) and starts it again
/// on the same port, with the same certificate and etcd.
async fn restart_apiserver(cluster: &mut Cluster) {
    let plane = cluster.control_plane_mut().unwrap();
    tokio::task::block_in_place(|| {
        plane.stop_component(Component::ApiServer, Duration::from_secs(20));
        plane.start_component(Component::ApiServer).unwrap();
    });
}

/// A trivial controller: it records each config's generation in `status.observedGeneration`.
async fn reconcile(
    obj: Arc<TenantMcpConfig>,
    api: Arc<Api<TenantMcpConfig>>,
) -> Result<Action, kube::Error> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let status = json!({"apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "status": {"observedGeneration": obj.metadata.generation}});
    api.patch_status(
        &name,
        &PatchParams::apply("e2e-controller").force(),
        &Patch::Apply(status),
    )
    .await?;
    Ok(Action::await_change())
}

async fn observed(api: &Api<TenantMcpConfig>, name: &str, generation: i64) {
    for _ in 0..200 {
        let obj = api.get(name).await;
        if let Ok(obj) = obj
            && obj.status.and_then(|s| s.observed_generation) == Some(generation)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller never observed generation {generation} of {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reconciles_every_change_across_a_restart() {
    let mut cluster = Cluster::local(ControlPlaneOptions::default())
        .await
        .unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("ctrl").await.unwrap();
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    let controller_api = Arc::new(api.clone());
    let controller = tokio::spawn(
        Controller::new(api.clone(), watcher::Config::default())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_millis(200)),
                controller_api,
            )
            .for_each(|_| async {}),
    );
    let tenant: TenantMcpConfig = serde_json::from_value(json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
        "metadata": {"name": "t"}, "spec": {"tenantId": "acme"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &tenant).await.unwrap();
    observed(&api, "t", 1).await;
    api.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"enabled": false}})),
    )
    .await
    .unwrap();
    observed(&api, "t", 2).await;

    restart_apiserver(&mut cluster).await;
    api.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"enabled": true}})),
    )
    .await
    .unwrap();
    observed(&api, "t", 3).await;
    controller.abort();
}

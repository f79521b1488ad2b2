//! The chart installed with `helm install` on a real control plane, whose RBAC authorizer
//! decides: each identity can do what it needs and no more. Beyond `kubectl auth
//! can-i`, the identities do their real jobs: the controller (as its service account) promotes
//! a tenant config against a real Postgres, the management server (as its) registers and
//! deletes one, an application's sample app (as its account) reads configs through the client
//! library and cannot write, and a tenant admin is refused another tenant's namespace.
//!
//! The workloads run as local processes under their ServiceAccounts' tokens
//! (`tenant_mcp_e2e::workload`), not as Pods, for speed: what is tested is what each account
//! may do, on the API-only control plane that starts in a few seconds; the chart as real Pods
//! on a kubelet is `pods.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp_e2e::harness::wait_for;
use tenant_mcp_e2e::mcp_admin::{call, claims, sign};
use tenant_mcp_e2e::rbac::{self, CREDENTIALS_NS, Identity, NS, RbacWorld};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tenant_mcp_e2e::stack::process::free_port;
use tenant_mcp_e2e::workload::{LocalPod, PodOptions};

async fn world() -> RbacWorld {
    rbac::start(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_can_do_its_job_and_no_more() {
    let w = world().await;
    let all = "--all-namespaces";
    let tmc = "tenantmcpconfigs.tenantmcp.dev";
    let gmc = "globalmcpconfigs.tenantmcp.dev";
    let one_tmc = format!("{tmc}/x");
    // (who, what, allowed)
    let matrix: Vec<(Identity, Vec<&str>, bool)> = vec![
        // The controller: what docs/controller.md lists.
        (Identity::Controller, vec!["watch", tmc, all], true),
        (
            Identity::Controller,
            vec!["patch", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Controller,
            vec![
                "patch",
                &one_tmc,
                "--subresource",
                "status",
                "-n",
                "tenant-acme",
            ],
            true,
        ),
        (Identity::Controller, vec!["watch", gmc], true),
        (Identity::Controller, vec!["watch", "namespaces"], true),
        (
            Identity::Controller,
            vec!["create", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Controller,
            vec!["delete", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Controller,
            vec!["create", "events.events.k8s.io", "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Controller,
            vec!["update", "leases.coordination.k8s.io", "-n", NS],
            true,
        ),
        // … and no more.
        (
            Identity::Controller,
            vec!["create", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Controller,
            vec!["delete", tmc, "-n", "tenant-acme"],
            false,
        ),
        (Identity::Controller, vec!["update", gmc], false),
        (
            Identity::Controller,
            vec!["update", "leases.coordination.k8s.io", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Controller,
            vec!["create", "pods", "-n", NS],
            false,
        ),
        (Identity::Controller, vec!["delete", "namespaces"], false),
        (
            Identity::Controller,
            vec!["get", "configmaps", "-n", NS],
            false,
        ),
        (
            Identity::Controller,
            vec!["create", "clusterrolebindings.rbac.authorization.k8s.io"],
            false,
        ),
        // The per-config snapshot reader Roles.
        (
            Identity::Controller,
            vec![
                "patch",
                "roles.rbac.authorization.k8s.io",
                "-n",
                "tenant-acme",
            ],
            true,
        ),
        (
            Identity::Controller,
            vec![
                "patch",
                "rolebindings.rbac.authorization.k8s.io",
                "-n",
                "tenant-acme",
            ],
            true,
        ),
        (
            Identity::Controller,
            vec!["create", "clusterroles.rbac.authorization.k8s.io"],
            false,
        ),
        // The webhook: reads what it judges a write by, keeps its own certificate Secret and
        // its own configuration's caBundle …
        (Identity::Webhook, vec!["list", tmc, all], true),
        (Identity::Webhook, vec!["get", gmc], true),
        (Identity::Webhook, vec!["get", "namespaces"], true),
        // No Secret outside its own certificate's (issue 34, item 3).
        (
            Identity::Webhook,
            vec!["get", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Webhook,
            vec!["get", "secrets", "-n", CREDENTIALS_NS],
            false,
        ),
        (Identity::Webhook, vec!["create", "secrets", "-n", NS], true),
        (
            Identity::Webhook,
            vec!["update", "secrets/t-tenant-mcp-webhook-tls", "-n", NS],
            true,
        ),
        (
            Identity::Webhook,
            vec![
                "update",
                "validatingwebhookconfigurations.admissionregistration.k8s.io/t-tenant-mcp",
            ],
            true,
        ),
        // … and no more: no other Secret written, no Secret listed (values of a whole
        // namespace), no other webhook configuration (it could switch another webhook off),
        // no config written.
        (
            Identity::Webhook,
            vec!["update", "secrets/t-tenant-mcp-mcp-jwt", "-n", NS],
            false,
        ),
        (
            Identity::Webhook,
            vec!["create", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Webhook,
            vec!["list", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Webhook,
            vec!["delete", "secrets/t-tenant-mcp-webhook-tls", "-n", NS],
            false,
        ),
        (
            Identity::Webhook,
            vec![
                "update",
                "validatingwebhookconfigurations.admissionregistration.k8s.io/other",
            ],
            false,
        ),
        (
            Identity::Webhook,
            vec![
                "delete",
                "validatingwebhookconfigurations.admissionregistration.k8s.io/t-tenant-mcp",
            ],
            false,
        ),
        (
            Identity::Webhook,
            vec!["create", tmc, "-n", "tenant-acme"],
            false,
        ),
        (Identity::Webhook, vec!["update", gmc], false),
        (Identity::Webhook, vec!["watch", tmc, all], false),
        // The management server: configs and Secrets, never status or the global config.
        (
            Identity::McpServer,
            vec!["create", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::McpServer,
            vec!["patch", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::McpServer,
            vec!["delete", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::McpServer,
            vec!["patch", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (Identity::McpServer, vec!["get", gmc], true),
        (
            Identity::McpServer,
            vec![
                "patch",
                &one_tmc,
                "--subresource",
                "status",
                "-n",
                "tenant-acme",
            ],
            false,
        ),
        (Identity::McpServer, vec!["update", gmc], false),
        (
            Identity::McpServer,
            vec!["create", "leases.coordination.k8s.io", "-n", NS],
            false,
        ),
        (Identity::McpServer, vec!["create", "pods", "-n", NS], false),
        // A tenant admin: its own namespace only.
        (
            Identity::Alice,
            vec!["create", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Alice,
            vec!["create", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Alice,
            vec!["create", tmc, "-n", "tenant-globex"],
            false,
        ),
        (
            Identity::Alice,
            vec!["get", "secrets", "-n", "tenant-globex"],
            false,
        ),
        (Identity::Alice, vec!["list", tmc, all], false),
        (Identity::Alice, vec!["update", gmc], false),
        (
            Identity::Alice,
            vec![
                "patch",
                &one_tmc,
                "--subresource",
                "status",
                "-n",
                "tenant-acme",
            ],
            false,
        ),
        // An uber admin: every tenant and the global config, not the cluster.
        (
            Identity::Carol,
            vec!["create", tmc, "-n", "tenant-globex"],
            true,
        ),
        (Identity::Carol, vec!["update", gmc], true),
        (
            Identity::Carol,
            vec!["create", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Carol,
            vec!["create", "pods", "-n", "tenant-acme"],
            false,
        ),
        (Identity::Carol, vec!["delete", "namespaces"], false),
        // An application pod: reads configs and namespaces, never writes; Secrets only by
        // name: the global credentials it uses (and, through Roles the controller keeps per
        // config, the snapshots it serves). Nothing of the control plane.
        (Identity::App, vec!["watch", tmc, all], true),
        (Identity::App, vec!["watch", gmc], true),
        (Identity::App, vec!["watch", "namespaces"], true),
        (
            Identity::App,
            vec!["create", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::App,
            vec!["patch", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::App,
            vec!["delete", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::App,
            vec!["create", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::App,
            vec!["patch", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (Identity::App, vec!["update", gmc], false),
        (
            Identity::App,
            vec!["get", "secrets/global-postgres", "-n", CREDENTIALS_NS],
            true,
        ),
        (
            Identity::App,
            vec!["watch", "secrets/global-postgres", "-n", CREDENTIALS_NS],
            true,
        ),
        (
            Identity::App,
            vec![
                "get",
                "secrets/not-a-global-credential",
                "-n",
                CREDENTIALS_NS,
            ],
            false,
        ),
        (
            Identity::App,
            vec!["list", "secrets", "-n", CREDENTIALS_NS],
            false,
        ),
        (Identity::App, vec!["watch", "secrets", all], false),
        (
            Identity::App,
            vec!["list", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (Identity::App, vec!["list", "secrets", "-n", NS], false),
        // The control plane's own Secrets: mirror keys, the JWT signing secret, the
        // controller's database URL, Helm's release records.
        (
            Identity::App,
            vec!["get", "secrets/t-tenant-mcp-keys", "-n", NS],
            false,
        ),
        (
            Identity::App,
            vec!["get", "secrets/t-tenant-mcp-mcp-jwt", "-n", NS],
            false,
        ),
        (
            Identity::App,
            vec!["get", "secrets/controller-database", "-n", NS],
            false,
        ),
        (
            Identity::App,
            vec!["get", "secrets/sh.helm.release.v1.t.v1", "-n", NS],
            false,
        ),
        // An application pod whose client watches one namespace: configs there, Secrets there
        // by name, the global credentials it uses; nothing else.
        (
            Identity::Worker,
            vec!["watch", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/acme-snapshot", "-n", "tenant-acme"],
            true,
        ),
        (
            Identity::Worker,
            vec!["list", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/global-postgres", "-n", CREDENTIALS_NS],
            true,
        ),
        (Identity::Worker, vec!["watch", gmc], true),
        (
            Identity::Worker,
            vec!["watch", "namespaces/tenant-acme"],
            true,
        ),
        (
            Identity::Worker,
            vec!["get", "namespaces/tenant-globex"],
            false,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/x", "-n", "tenant-globex"],
            false,
        ),
        (Identity::Worker, vec!["watch", "secrets", all], false),
        (Identity::Worker, vec!["watch", tmc, all], false),
        (
            Identity::Worker,
            vec!["create", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Worker,
            vec!["patch", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/t-tenant-mcp-keys", "-n", NS],
            false,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/t-tenant-mcp-mcp-jwt", "-n", NS],
            false,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/controller-database", "-n", NS],
            false,
        ),
        (
            Identity::Worker,
            vec!["get", "secrets/sh.helm.release.v1.t.v1", "-n", NS],
            false,
        ),
    ];
    let wrong: Vec<String> = matrix
        .iter()
        .filter(|(who, args, allowed)| w.can(*who, args) != *allowed)
        .map(|(who, args, allowed)| format!("{who:?} {args:?}: expected {allowed}"))
        .collect();
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));

    // The API server lets the controller write Roles that grant only what it holds itself
    // (RBAC's escalation check): the snapshot readers' `get` on Secrets passes, anything more
    // is refused, whatever the controller's own `create roles` says.
    let as_controller = Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(
        w.client(Identity::Controller).await,
        "tenant-acme",
    );
    // Each Role grants a snapshot name of the config it is named after.
    let role = |name: &str, resource: &str, verb: &str| {
        let config = name.trim_start_matches("tenant-mcp-snapshots-");
        serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "tenant-mcp"}},
            "rules": [{"apiGroups": [""], "resources": [resource], "verbs": [verb],
                       "resourceNames": [format!("{config}-postgres-0123456789")]}]
        }))
        .unwrap()
    };
    as_controller
        .create(
            &PostParams::default(),
            &role("tenant-mcp-snapshots-readers", "secrets", "get"),
        )
        .await
        .unwrap();
    let escalation = as_controller
        .create(
            &PostParams::default(),
            &role("tenant-mcp-snapshots-escalation", "pods", "delete"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&escalation, kube::Error::Api(s) if s.code == 403 && s.message.contains("escalat")),
        "{escalation}"
    );

    // Issue 27, item 8 (threat model: a compromised controller pod): what RBAC alone allows it
    // — granting what it holds (every Secret's `get`) to anyone, in any namespace, or changing
    // Roles it did not make — the chart's ValidatingAdmissionPolicy refuses.
    let controller_client = w.client(Identity::Controller).await;
    let binding = |name: &str, role: &str, subject: Value| {
        serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "tenant-mcp"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [subject]
        }))
        .unwrap()
    };
    let app = json!({"kind": "ServiceAccount", "name": "rag-api", "namespace": "rag"});
    let alice = json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"});
    let bindings = Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(
        controller_client.clone(),
        "tenant-acme",
    );
    let mut every_secret = role("tenant-mcp-snapshots-all", "secrets", "get");
    every_secret.rules.as_mut().unwrap()[0].resource_names = None;
    let mut unlabelled = role("tenant-mcp-snapshots-x", "secrets", "get");
    unlabelled.metadata.labels = None;
    let refused_roles = [
        role("readers", "secrets", "get"),
        unlabelled,
        every_secret,
        role("tenant-mcp-snapshots-list", "secrets", "list"),
    ];
    for bad in refused_roles {
        let name = bad.metadata.name.clone().unwrap();
        let err = as_controller
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 403 || s.code == 422)
                && err.to_string().contains("controller-rbac-writes"),
            "Role {name}: {err}"
        );
    }
    // Issue 34, item 2 (threat model: the controller's account, compromised, must never grant
    // what it holds to anyone): a Role shaped like its own but granting the release
    // namespace's key Secrets, a tenant's credential Secret, or another config's snapshots.
    let granting = |name: &str, names: &[&str]| {
        serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "tenant-mcp"}},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                       "resourceNames": names}]
        }))
        .unwrap()
    };
    let in_release = Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(
        w.client(Identity::Controller).await,
        NS,
    );
    for (api, role) in [
        (
            &in_release,
            granting(
                "tenant-mcp-snapshots-evil",
                &["t-tenant-mcp-keys", "t-tenant-mcp-mcp-jwt"],
            ),
        ),
        (
            &in_release,
            granting("tenant-mcp-snapshots-evil", &["evil-postgres-0123456789"]),
        ),
        (
            &as_controller,
            granting("tenant-mcp-snapshots-acme", &["pg"]),
        ),
        (
            &as_controller,
            granting("tenant-mcp-snapshots-acme", &["globex-postgres-0123456789"]),
        ),
        (
            &as_controller,
            granting(
                "tenant-mcp-snapshots-acme",
                &["acme-postgres-0123456789", "acme-credentials"],
            ),
        ),
    ] {
        let rules = serde_json::to_string(&role.rules).unwrap();
        let err = api
            .create(&PostParams::default(), &role)
            .await
            .err()
            .unwrap_or_else(|| panic!("Role granting {rules} was accepted"));
        assert!(
            err.to_string().contains("controller-rbac-writes"),
            "Role granting {rules}: {err}"
        );
    }
    let stranger = json!({"kind": "ServiceAccount", "name": "default", "namespace": "tenant-evil"});
    for (name, role_name, subject) in [
        (
            "tenant-mcp-snapshots-readers",
            "tenant-mcp-snapshots-readers",
            stranger,
        ),
        (
            "tenant-mcp-snapshots-readers",
            "tenant-mcp-snapshots-readers",
            alice.clone(),
        ),
        (
            "tenant-mcp-snapshots-other",
            "tenant-mcp-snapshots-readers",
            app.clone(),
        ),
        ("app-binding", "tenant-mcp-snapshots-readers", app.clone()),
    ] {
        let err = bindings
            .create(&PostParams::default(), &binding(name, role_name, subject))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("controller-rbac-writes"),
            "RoleBinding {name} of {role_name}: {err}"
        );
    }
    bindings
        .create(
            &PostParams::default(),
            &binding(
                "tenant-mcp-snapshots-readers",
                "tenant-mcp-snapshots-readers",
                app,
            ),
        )
        .await
        .unwrap();
    // Roles it did not make stay out of its reach, in any namespace.
    let leader = Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(controller_client, NS)
        .delete("t-tenant-mcp-leader-election", &Default::default())
        .await
        .unwrap_err();
    assert!(
        leader.to_string().contains("controller-rbac-writes"),
        "{leader}"
    );

    // A tenant admin's kubectl is refused in another tenant's namespace.
    let foreign = w.dir.path().join("foreign.yaml");
    std::fs::write(
        &foreign,
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: x, namespace: tenant-globex}\nspec: {tenantId: globex}\n",
    )
    .unwrap();
    let out = w.kubectl(Identity::Alice, &["apply", "-f", foreign.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );
}

/// Issue 34, items 1 and 3 (threat model: a tenant admin must never obtain a token of any
/// ServiceAccount; the controller, management server and webhook accounts, if compromised,
/// must never become another account, write Secrets they do not make, or widen what the
/// webhook intercepts). Every write here is one RBAC allows: the chart's admission policies
/// are what refuse them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_account_of_ours_mints_a_token_or_writes_what_it_does_not_make() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;
    let w = world().await;
    let secret = |name: &str, extra: Value| {
        let mut body = json!({"metadata": {"name": name}, "stringData": {"k": "v"}});
        json_patch::merge(&mut body, &extra);
        serde_json::from_value::<Secret>(body).unwrap()
    };
    let token_for = |account: &str| {
        json!({"type": "kubernetes.io/service-account-token",
               "metadata": {"annotations": {"kubernetes.io/service-account.name": account}},
               "stringData": null})
    };
    let annotated_only = |account: &str| json!({"metadata": {"annotations": {"kubernetes.io/service-account.name": account}}});
    // Refused by one of `policies` (our accounts' token Secrets meet two policies; the API
    // server names the first that denies).
    let refused = async |who: Identity, ns: &str, s: Secret, policies: &[&str]| {
        let name = s.metadata.name.clone().unwrap();
        let err = Api::<Secret>::namespaced(w.client(who).await, ns)
            .create(&PostParams::default(), &s)
            .await
            .err()
            .unwrap_or_else(|| panic!("{who:?} created Secret {ns}/{name}"));
        assert!(
            policies.iter().any(|p| err.to_string().contains(p)),
            "{who:?} Secret {ns}/{name}: {err}"
        );
    };

    // Item 1: acme's tenant admin may create Secrets in its namespace, but no token Secret —
    // of its namespace's accounts or any other — and no Secret carrying the annotation.
    Api::<Secret>::namespaced(w.client(Identity::Alice).await, "tenant-acme")
        .create(&PostParams::default(), &secret("plain", json!({})))
        .await
        .unwrap();
    let no_token: &[&str] = &["no-token-secrets"];
    refused(
        Identity::Alice,
        "tenant-acme",
        secret("mint", token_for("default")),
        no_token,
    )
    .await;
    refused(
        Identity::Alice,
        "tenant-acme",
        secret("mint-annotated", annotated_only("default")),
        no_token,
    )
    .await;
    refused(
        Identity::Carol,
        NS,
        secret("mint", token_for("t-tenant-mcp-controller")),
        no_token,
    )
    .await;
    // … nor may our own accounts become the controller.
    for who in [Identity::Controller, Identity::McpServer, Identity::Webhook] {
        refused(
            who,
            NS,
            secret("mint", token_for("t-tenant-mcp-controller")),
            &["no-token-secrets", "own-secret-writes"],
        )
        .await;
    }
    // Nor turn an existing Secret into one by annotating it.
    let plain = Api::<Secret>::namespaced(w.client(Identity::Alice).await, "tenant-acme");
    let err = plain
        .patch(
            "plain",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(annotated_only("default")),
        )
        .await
        .expect_err("the annotation was added");
    assert!(err.to_string().contains(no_token[0]), "{err}");

    // Item 3: each of our accounts writes only the Secrets it makes.
    let own: &[&str] = &["own-secret-writes"];
    let snapshot = json!({"type": "tenantmcp.dev/snapshot", "immutable": true,
        "metadata": {"labels": {"app.kubernetes.io/managed-by": "tenant-mcp"}}});
    refused(
        Identity::Controller,
        "tenant-acme",
        secret("not-a-snapshot", json!({})),
        own,
    )
    .await;
    refused(
        Identity::Controller,
        NS,
        secret("acme-postgres-0123456789", snapshot.clone()),
        own,
    )
    .await;
    Api::<Secret>::namespaced(w.client(Identity::Controller).await, "tenant-acme")
        .create(
            &PostParams::default(),
            &secret("acme-postgres-0123456789", snapshot),
        )
        .await
        .unwrap();
    let tool_made = json!({"type": "Opaque", "metadata": {"labels": {
        "app.kubernetes.io/managed-by": "tenant-mcp-mcp-server",
        "tenantmcp.dev/credentials-of": "acme"}}});
    refused(
        Identity::McpServer,
        "tenant-acme",
        secret("unlabelled", json!({})),
        own,
    )
    .await;
    refused(
        Identity::McpServer,
        CREDENTIALS_NS,
        secret("global-postgres", tool_made.clone()),
        own,
    )
    .await;
    Api::<Secret>::namespaced(w.client(Identity::McpServer).await, "tenant-acme")
        .create(
            &PostParams::default(),
            &secret("acme-pg", tool_made.clone()),
        )
        .await
        .unwrap();
    // The management server may not take over a Secret it did not make by labelling it.
    let err = Api::<Secret>::namespaced(w.client(Identity::McpServer).await, "tenant-acme")
        .patch(
            "plain",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(tool_made),
        )
        .await
        .expect_err("the management server took over a tenant's Secret");
    assert!(err.to_string().contains(own[0]), "{err}");
    refused(
        Identity::Webhook,
        NS,
        secret("t-tenant-mcp-keys-2", json!({})),
        own,
    )
    .await;

    // The webhook may set its configuration's caBundle, and change nothing else of it.
    let configurations =
        Api::<ValidatingWebhookConfiguration>::all(w.client(Identity::Webhook).await);
    let name = "t-tenant-mcp";
    let mut ours = configurations.get(name).await.unwrap();
    // A new bundle the running webhook still accepts: its CA twice.
    let bundle = &mut ours.webhooks.as_mut().unwrap()[0].client_config.ca_bundle;
    let mut twice = bundle.clone().unwrap().0;
    twice.extend_from_slice(&twice.clone());
    *bundle = Some(k8s_openapi::ByteString(twice));
    configurations
        .replace(name, &Default::default(), &ours)
        .await
        .unwrap();
    let mut widened = configurations.get(name).await.unwrap();
    let hook = &mut widened.webhooks.as_mut().unwrap()[0];
    hook.failure_policy = Some("Ignore".into());
    let err = configurations
        .replace(name, &Default::default(), &widened)
        .await
        .expect_err("the webhook changed its failure policy");
    assert!(
        err.to_string().contains("webhook-configuration-writes"),
        "{err}"
    );
    let mut narrowed = configurations.get(name).await.unwrap();
    narrowed.webhooks.as_mut().unwrap()[0].rules = Some(Vec::new());
    let err = configurations
        .replace(name, &Default::default(), &narrowed)
        .await
        .expect_err("the webhook changed what it intercepts");
    assert!(
        err.to_string().contains("webhook-configuration-writes"),
        "{err}"
    );
}

/// The chart's controller and management server Deployments, and an application's sample-app
/// Deployment, each run as its pod would (`tenant_mcp_e2e::workload`): under its
/// ServiceAccount's token, configured by the environment and mounted Secrets `helm install`
/// put there. The real authorizer decides every request, including its escalation check on the
/// snapshot readers' Role the controller writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_accounts_do_their_real_jobs_with_the_charts_rbac() {
    let w = world().await;
    let admin = w.client(Identity::Admin).await;
    let binary = tenant_mcp_e2e::stack::tenant_mcp_binary().unwrap();

    // A tenant with its own Postgres login, applied by the platform team; the mirror database
    // whose URL the chart's controller reads from the Secret `database.urlSecret` names.
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    execute(
        &pg.admin_url("postgres"),
        &format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
    )
    .await
    .unwrap();
    let mirror = MirrorDatabase::create(&pg, "mirror").await.unwrap();
    for (ns, secret) in [
        (
            "tenant-acme",
            json!({"metadata": {"name": "pg"},
            "stringData": {"username": user, "password": "pw"}}),
        ),
        (
            NS,
            json!({"metadata": {"name": "controller-database"},
            "stringData": {"url": mirror.controller_url}}),
        ),
    ] {
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), ns)
            .create(
                &PostParams::default(),
                &serde_json::from_value(secret).unwrap(),
            )
            .await
            .unwrap();
    }
    Api::<TenantMcpConfig>::namespaced(admin.clone(), "tenant-acme")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "acme"}, "spec": {"tenantId": "acme",
                "servers": {"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                    "sslMode": "disable", "credentialsSecretRef": {"name": "pg"}}}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    // The chart's controller, as its pod: the Lease in the release namespace, the snapshot
    // reader Role for rag/rag-api, the mirror with the keys from the mounted Secret.
    let port = |()| free_port().unwrap();
    let controller = LocalPod::start(
        &w.cluster,
        &PodOptions {
            namespace: NS,
            deployment: "t-tenant-mcp-controller",
            program: &binary,
            publish: &[],
            env_overrides: &[
                (
                    "TENANT_MCP_METRICS_ADDRESS",
                    format!("127.0.0.1:{}", port(())),
                ),
                ("TENANT_MCP_LOG_FORMAT", "text".into()),
            ],
        },
    )
    .await
    .unwrap();
    let configs: Api<TenantMcpConfig> = Api::namespaced(admin.clone(), "tenant-acme");
    wait_for(
        "acme promoted and mirrored by the chart's controller",
        Duration::from_secs(90),
        async || {
            let status = configs.get("acme").await.ok()?.status?;
            let is_true = |t: &str| {
                status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == t && c.status == "True")
            };
            (is_true("Ready") && is_true("Mirrored") && status.active.postgres.is_some())
                .then_some(())
        },
    )
    .await;
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin.clone(), NS)
        .get("t-tenant-mcp-controller")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(controller.name.as_str())
    );

    // The application's own Deployment of the sample app, under rag/rag-api: the client
    // library reads the config, the global fallback and acme's snapshot by name.
    let app_port = port(());
    tenant_mcp_e2e::scenario::apply(
        &admin,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sample-app", "namespace": "rag"},
            "spec": {"selector": {"matchLabels": {"app": "sample-app"}},
                "template": {"metadata": {"labels": {"app": "sample-app"}},
                    "spec": {"serviceAccountName": "rag-api", "containers": [{
                        "name": "app", "image": "sample-app",
                        "env": [{"name": "SAMPLE_APP_LISTEN", "value": "0.0.0.0:8088"}]}]}}}}),
    )
    .await
    .unwrap();
    let sample_app = tenant_mcp_e2e::stack::workspace_binary("tenant-mcp-sample-app").unwrap();
    let _app = LocalPod::start(
        &w.cluster,
        &PodOptions {
            namespace: "rag",
            deployment: "sample-app",
            program: &sample_app,
            publish: &[],
            env_overrides: &[("SAMPLE_APP_LISTEN", format!("127.0.0.1:{app_port}"))],
        },
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let endpoints: serde_json::Value = wait_for(
        "the sample app serving acme from its own server",
        Duration::from_secs(60),
        async || {
            let rows: serde_json::Value = http
                .get(format!("http://127.0.0.1:{app_port}/endpoints"))
                .header("x-tenant-id", "acme")
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let postgres = rows
                .as_array()?
                .iter()
                .find(|r| r["server"] == "postgres")?
                .clone();
            (postgres["origin"] == "tenant").then_some(postgres)
        },
    )
    .await;
    assert!(
        endpoints["endpoint"]["Ok"]
            .as_str()
            .is_some_and(|e| e.contains(&db)),
        "{endpoints}"
    );
    // The application's account cannot write.
    let refused = Api::<TenantMcpConfig>::namespaced(w.client(Identity::App).await, "tenant-acme")
        .delete("acme", &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403),
        "{refused}"
    );
    // An account scoped to tenant-acme reads through a client that watches that namespace.
    let scoped = tenant_mcp::client::TenantClients::from_kube(
        w.client(Identity::Worker).await,
        tenant_mcp::client::ClientSettings {
            kube: tenant_mcp::client::KubeSource {
                namespace: Some("tenant-acme".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pool = wait_for(
        "acme's pool for the scoped app",
        Duration::from_secs(30),
        async || scoped.postgres("acme").await.ok(),
    )
    .await;
    let current: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, user);

    // The chart's management server, as its pod, with the JWT secret from its mounted Secret:
    // an uber admin registers and deletes a config with credentials.
    let mcp_port = port(());
    let _mcp = LocalPod::start(
        &w.cluster,
        &PodOptions {
            namespace: NS,
            deployment: "t-tenant-mcp-mcp-server",
            program: &binary,
            publish: &[],
            env_overrides: &[("TENANT_MCP_MCP_LISTEN", format!("127.0.0.1:{mcp_port}"))],
        },
    )
    .await
    .unwrap();
    let jwt = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), NS)
        .get("t-tenant-mcp-mcp-jwt")
        .await
        .unwrap()
        .data
        .unwrap()["jwt-secret"]
        .0
        .clone();
    let bearer = sign(&claims(&["uber_admin"], None, 600), &jwt);
    let url = format!("http://127.0.0.1:{mcp_port}/mcp");
    wait_for(
        "the management server",
        Duration::from_secs(30),
        async || {
            http.get(format!("http://127.0.0.1:{mcp_port}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;
    let registered = call(
        &url,
        &bearer,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": "globex", "connectionTest": false,
               "servers": {"postgres": {"host": "db.example.com", "database": "rag",
                                        "credentialsSecretRef": {"name": "globex-pg"}}},
               "credentials": {"postgres": {"username": "g", "password": "p"}}}),
    )
    .await
    .unwrap();
    assert_eq!(registered["secretsWritten"], json!(["globex-pg"]));
    let deleted = call(
        &url,
        &bearer,
        "rag_delete_tenant_mcp_config",
        json!({"tenantId": "globex"}),
    )
    .await
    .unwrap();
    assert_eq!(deleted["secretsDeleted"], json!(["globex-pg"]));
    drop(controller);
}

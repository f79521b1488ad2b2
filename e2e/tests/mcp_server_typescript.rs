//! The management MCP server driven by a second client nobody here wrote: the official MCP
//! TypeScript SDK (`e2e/node/admin_client.mjs`, `@modelcontextprotocol/sdk` from npm as
//! `e2e/node/package-lock.json` pins it), over Streamable HTTP, against a real control plane
//! and a real Postgres whose login the connection tests try.
//!
//! What an agent's client meets: every tool with a title and truthful annotations; schemas
//! that Ajv's JSON Schema 2020-12 validator compiles in strict mode (no format it does not
//! know); every result, failed ones included, valid against the tool's declared
//! `outputSchema` (checked by the SDK and again by the script); and each failure an agent could
//! act on — wrong arguments, a refused password, a stale `expectedVersion`, another tenant's
//! config, a config that is gone — as a tool result flagged `isError` with its reason and
//! field paths, not a JSON-RPC error the client would keep from the model.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::mcp_admin::{AdminServer, SdkTenant, token, typescript_client};
use tenant_mcp_e2e::stack::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_registers_updates_reads_and_is_refused_with_results_it_can_read() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();

    let pg = Postgres::start().unwrap();
    let SdkTenant {
        tenant,
        user,
        database: db,
        ..
    } = SdkTenant::create(&cluster, &pg).await.unwrap();
    let server = AdminServer::start(client.clone(), Limits::default())
        .await
        .unwrap();

    let admin = token(&["tenant_admin"], Some(&tenant));
    let stranger = token(&["tenant_admin"], Some("globex"));
    let postgres = json!({"host": "127.0.0.1", "port": pg.port(), "database": db, "sslMode": "disable",
                          "credentialsSecretRef": {"name": "acme-postgres"}});
    let login = |password: &str| json!({"postgres": {"username": user, "password": password}});
    let step = |bearer: &str, tool: &str, arguments: Value| json!({"token": bearer, "tool": tool, "arguments": arguments});
    let register = "rag_register_tenant_mcp_config";
    let update = "rag_update_tenant_mcp_config";
    let get = "rag_get_tenant_mcp_config";
    let steps = json!([
        {"token": admin},
        // 0: a wrong type, found while decoding the arguments.
        step(&admin, register, json!({"tenantId": tenant,
            "servers": {"postgres": {"host": "127.0.0.1", "port": "5432x"}}})),
        // 1: a wrong password, found by the connection test.
        step(&admin, register, json!({"tenantId": tenant, "servers": {"postgres": postgres},
            "credentials": login("wrong-pass")})),
        // 2
        step(&admin, register, json!({"tenantId": tenant, "servers": {"postgres": postgres},
            "credentials": login("acme-pass")})),
        // 3
        step(&admin, update, json!({"tenantId": tenant, "credentials": login("acme-pass")})),
        // 4
        step(&admin, get, json!({"tenantId": tenant})),
        // 5: a stale expectedVersion.
        step(&admin, update, json!({"tenantId": tenant, "expectedVersion": "1",
            "servers": {"postgres": {"database": "other"}}, "connectionTest": false})),
        // 6: another tenant's admin.
        step(&stranger, get, json!({"tenantId": tenant})),
        // 7
        step(&admin, "rag_list_tenant_mcp_configs", json!({})),
        // 8
        step(&admin, "rag_test_tenant_mcp_config", json!({"tenantId": tenant,
            "servers": {"postgres": postgres}, "credentials": login("acme-pass")})),
        // 9
        step(&admin, "rag_delete_tenant_mcp_config", json!({"tenantId": tenant})),
        // 10: gone.
        step(&admin, "rag_delete_tenant_mcp_config", json!({"tenantId": tenant})),
    ]);
    let url = server.url.clone();
    let report = tokio::task::spawn_blocking(move || typescript_client(&url, &steps))
        .await
        .unwrap();

    // The session speaks the version the SDK asks for, the 2025-11-25 specification.
    assert_eq!(report["protocolVersion"], "2025-11-25", "{report}");

    // Titles and annotations, as each tool truly behaves.
    let tools: BTreeMap<&str, &Value> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t))
        .collect();
    assert_eq!(tools.len(), 6, "{report}");
    let hint = |tool: &str, name: &str| tools[tool]["annotations"][name].as_bool();
    for (tool, read_only, destructive, idempotent) in [
        (register, false, Some(false), Some(true)),
        (update, false, Some(true), Some(true)),
        (get, true, None, None),
        ("rag_list_tenant_mcp_configs", true, None, None),
        ("rag_test_tenant_mcp_config", true, None, None),
        (
            "rag_delete_tenant_mcp_config",
            false,
            Some(true),
            Some(true),
        ),
    ] {
        let t = tools[tool];
        assert!(
            t["title"].as_str().is_some_and(|s| !s.is_empty()),
            "{tool}: {t}"
        );
        assert_eq!(t["annotations"]["title"], t["title"], "{tool}: {t}");
        assert_eq!(hint(tool, "readOnlyHint"), Some(read_only), "{tool}: {t}");
        assert_eq!(hint(tool, "destructiveHint"), destructive, "{tool}: {t}");
        assert_eq!(hint(tool, "idempotentHint"), idempotent, "{tool}: {t}");
    }

    // Schemas any validator reads.
    assert_eq!(report["schemaProblems"], json!([]), "{report}");
    let warnings = report["warnings"].to_string();
    assert!(!warnings.contains("unknown format"), "{warnings}");

    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 11, "{report}");
    // docs/mcp-server.md shows these two (run with --no-capture to see them).
    eprintln!("a failed call: {:#}", results[0]);
    eprintln!("a structured result: {:#}", results[4]);
    for (i, r) in results.iter().enumerate() {
        // Every result, failures included, matches the tool's declared outputSchema.
        assert_eq!(r["valid"], true, "result {i} against its outputSchema: {r}");
        assert!(
            r.get("code").is_none(),
            "result {i} is a JSON-RPC error: {r}"
        );
    }
    let failure = |i: usize, reason: &str| {
        let r = &results[i];
        assert_eq!(
            (&r["ok"], &r["isError"]),
            (&json!(false), &json!(true)),
            "result {i}: {r}"
        );
        assert_eq!(r["data"]["reason"], reason, "result {i}: {r}");
        // The text an agent reads says the reason and the message.
        let text = r["message"].as_str().unwrap();
        assert!(text.starts_with(&format!("{reason}: ")), "result {i}: {r}");
        assert!(
            text.contains(r["data"]["message"].as_str().unwrap()),
            "result {i}: {r}"
        );
        r
    };
    let wrong_type = failure(0, "Invalid");
    assert_eq!(
        wrong_type["data"]["errors"][0]["path"], "servers.postgres.port",
        "{wrong_type}"
    );
    assert!(
        wrong_type["message"]
            .as_str()
            .unwrap()
            .contains("servers.postgres.port: "),
        "{wrong_type}"
    );
    let wrong_password = failure(1, "Invalid");
    assert_eq!(
        wrong_password["data"]["errors"][0]["path"], "servers.postgres",
        "{wrong_password}"
    );
    assert!(
        wrong_password["message"]
            .as_str()
            .unwrap()
            .contains("AuthFailed"),
        "{wrong_password}"
    );
    assert!(!report.to_string().contains("wrong-pass"));

    for i in [2, 3, 4, 7, 8, 9] {
        assert_eq!(results[i]["ok"], true, "result {i}: {}", results[i]);
    }
    assert_eq!(results[2]["value"]["connectionTests"][0]["ok"], true);
    assert_eq!(results[4]["value"]["tenantId"], tenant.as_str());
    assert_eq!(
        results[7]["value"]["configs"][0]["tenantId"],
        tenant.as_str()
    );
    assert_eq!(results[8]["value"]["passed"], true, "{}", results[8]);
    failure(5, "Conflict");
    let forbidden = failure(6, "Forbidden");
    assert!(
        forbidden["message"].as_str().unwrap().contains("globex"),
        "{forbidden}"
    );
    failure(10, "NotFound");
}

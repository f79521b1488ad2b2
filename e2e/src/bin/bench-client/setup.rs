//! Connection set-up on real servers: a tenant's first Postgres query (connect, login,
//! `SELECT 1`), first S3 request and first MCP call (`initialize` and `tools/list`), each timed
//! cold (a tenant the library has not served yet: routing, building the client, and the new
//! connection or session) and warm (the same tenant again: the cached client, an open
//! connection or session). What "initialization overhead" means for an application: the
//! difference between the two.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp_e2e::bench::{ms, quantile};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::s3::S3Server;

use super::manifests::{self, Servers};

/// Timings of one kind of first request, cold and warm.
pub struct Timed {
    what: &'static str,
    cold: Vec<Duration>,
    warm: Vec<Duration>,
}

/// Runs `n` tenants through their first and second request of each kind.
pub async fn measure(n: usize) -> anyhow::Result<Vec<Timed>> {
    let pg = Postgres::start()?;
    let database = pg.create_database("bench").await?;
    pg.set_login("bench_tenant", "bench-password").await?;
    let s3 = S3Server::start("bench-access", "bench-secret")?;
    let tokens = (0..n)
        .map(|i| Token {
            token: format!("tok{i}"),
            tenant: None,
        })
        .chain([Token {
            token: "platform".into(),
            tenant: None,
        }])
        .collect();
    let ai = AiMcpServer::start(AiMcpConfig::new("bench", tokens))?;
    let dir = tempfile::tempdir()?;
    manifests::write(
        dir.path(),
        "s",
        n,
        &Servers {
            postgres: ("127.0.0.1".into(), pg.port()),
            database: Some(database),
            login: Some(("bench_tenant".into(), "bench-password".into())),
            s3: s3.endpoint(),
            s3_keys: Some((s3.access_key().into(), s3.secret_key().into())),
            ai_mcp: ai.url(),
        },
    )?;
    let names: Vec<String> = (0..n).map(|i| manifests::tenant("s", i)).collect();
    for name in &names {
        std::fs::create_dir_all(s3.dir().join("data").join(manifests::bucket(name)))?;
    }
    let clients = TenantClients::from_directory(
        dir.path(),
        ClientSettings {
            max_cached_tenants: n * 2,
            idle_ttl: Duration::from_secs(3600),
            // Room for one connection per tenant: under the default cap of 100, tenants past
            // the hundredth would take their connection from another's pool, and "warm"
            // would measure reconnects.
            max_postgres_connections: u32::try_from(n).unwrap_or(u32::MAX).saturating_add(50),
            ..ClientSettings::default()
        },
    )?;
    let mut postgres = Timed::new("Postgres: connect + login + `SELECT 1`");
    let mut s3_first = Timed::new("S3: `ListObjectsV2` on the tenant's bucket");
    let mut mcp = Timed::new("AI MCP: `initialize` + `tools/list`");
    for pass in [Pass::Cold, Pass::Warm] {
        for name in &names {
            let started = Instant::now();
            let pool = clients.postgres(name).await?;
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .with_context(|| format!("{name}: SELECT 1"))?;
            postgres.push(pass, started.elapsed());

            let started = Instant::now();
            let handle = clients.s3(name).await?;
            handle
                .client
                .list_objects_v2()
                .bucket(&handle.bucket)
                .send()
                .await
                .with_context(|| format!("{name}: ListObjectsV2"))?;
            s3_first.push(pass, started.elapsed());

            let started = Instant::now();
            let client = clients.ai_mcp(name).await?;
            client
                .list_tools()
                .await
                .with_context(|| format!("{name}: tools/list"))?;
            mcp.push(pass, started.elapsed());
        }
    }
    clients.shutdown().await;
    Ok(vec![postgres, s3_first, mcp])
}

#[derive(Clone, Copy)]
enum Pass {
    Cold,
    Warm,
}

impl Timed {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            cold: Vec::new(),
            warm: Vec::new(),
        }
    }

    fn push(&mut self, pass: Pass, d: Duration) {
        match pass {
            Pass::Cold => self.cold.push(d),
            Pass::Warm => self.warm.push(d),
        }
    }
}

/// The table: cold and warm p50/p99 per kind, and what the first request adds at p50.
pub fn render(timed: &mut [Timed]) -> String {
    let mut out = String::from(
        "\n| first request of a tenant | tenants | cold p50 | cold p99 | warm p50 | warm p99 | added by the first (p50) |\n|---|---|---|---|---|---|---|\n",
    );
    for t in timed.iter_mut() {
        t.cold.sort_unstable();
        t.warm.sort_unstable();
        let (c50, w50) = (quantile(&t.cold, 0.5), quantile(&t.warm, 0.5));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            t.what,
            t.cold.len(),
            ms(c50),
            ms(quantile(&t.cold, 0.99)),
            ms(w50),
            ms(quantile(&t.warm, 0.99)),
            ms(c50.saturating_sub(w50)),
        ));
    }
    out
}

//! A throwaway PostgreSQL cluster from Debian's `postgresql` package: `initdb` into a temp
//! dir (as the `postgres` user when running as root, since the server refuses root), then the
//! server on a random loopback port with password authentication for TCP clients.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{Service, Workdir, free_port};
use super::{START_TIMEOUT, StackError};

const HINT: &str = "scripts/test installs Debian's postgresql package";

/// A running PostgreSQL server.
pub struct Postgres {
    service: Service,
    port: u16,
    password: String,
    // Last, so the server stops before its directory goes.
    dir: Workdir,
}

/// The directory holding `initdb`, `postgres` and `pg_isready`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else wherever `initdb` is on `PATH`.
pub fn bin_dir() -> Result<PathBuf, StackError> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    super::find_on_path("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| StackError::Missing {
            program: "initdb".into(),
            hint: HINT.into(),
        })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` run as the `postgres` user when we are root, else as ourselves.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// How a server is started beyond the defaults.
#[derive(Default)]
pub struct PostgresOptions<'a> {
    /// Serve TLS with this certificate (its SANs: `localhost`, `127.0.0.1`, `::1`), and listen
    /// on `::1` too.
    pub tls: Option<&'a super::tls::Identity>,
    /// Logins that authenticate with the password in cleartext (`password` in `pg_hba.conf`)
    /// instead of SCRAM: members of this role.
    pub cleartext_role: Option<&'a str>,
    /// Also listen on this address and let clients from this network (a CIDR) log in with
    /// SCRAM: for the Pods of a [`NodeCluster`](super::node::NodeCluster), which reach this host
    /// at its `HOST_IP` from their own addresses.
    pub pod_access: Option<(std::net::IpAddr, &'a str)>,
}

impl Postgres {
    /// The superuser's name.
    pub const SUPERUSER: &'static str = "postgres";

    /// initdb and start a server; blocks until it accepts connections (a second or two).
    pub fn start() -> Result<Self, StackError> {
        Self::start_with(&PostgresOptions::default())
    }

    /// [`Self::start`] with `options`.
    pub fn start_with(options: &PostgresOptions<'_>) -> Result<Self, StackError> {
        let bin = bin_dir()?;
        let root = running_as_root();
        let dir = Workdir::new("postgres")?;
        let data = dir.path().join("data");
        let password = uuid::Uuid::new_v4().simple().to_string();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| StackError::Io {
            what: format!("writing {}", pwfile.display()),
            source: e,
        })?;
        if root {
            // The server runs as `postgres`: it must own its directory.
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .output();
            check("postgres", "chown of the data directory", chown)?;
        }
        let mut initdb = as_server_user(&bin.join("initdb"), root);
        initdb.arg("-D").arg(&data).args([
            "--username",
            Self::SUPERUSER,
            "--pwfile",
            pwfile.to_str().unwrap_or_default(),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        check("postgres", "initdb", initdb.output())?;
        let mut extra: Vec<String> = Vec::new();
        let write = |name: &str, text: &str| -> Result<PathBuf, StackError> {
            use std::os::unix::fs::PermissionsExt as _;
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(|e| StackError::Io {
                    what: format!("writing {}", path.display()),
                    source: e,
                })?;
            Ok(path)
        };
        let mut files = Vec::new();
        let mut listen = "127.0.0.1".to_owned();
        if let Some(identity) = options.tls {
            let cert = write("server.crt", identity.cert_pem())?;
            let key = write("server.key", identity.key_pem())?;
            extra.extend([
                "ssl=on".into(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ]);
            files.extend([cert, key]);
            listen.push_str(",::1");
        }
        if options.cleartext_role.is_some() || options.pod_access.is_some() {
            let mut hba = String::from("local all all trust\n");
            if let Some(role) = options.cleartext_role {
                hba.push_str(&format!(
                    "host all +{role} 127.0.0.1/32 password\nhost all +{role} ::1/128 password\n"
                ));
            }
            hba.push_str(
                "host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
            );
            if let Some((address, network)) = options.pod_access {
                listen.push_str(&format!(",{address}"));
                // The Pods, and this host itself at that address.
                hba.push_str(&format!(
                    "host all all {network} scram-sha-256\nhost all all {address}/32 scram-sha-256\n"
                ));
            }
            let hba = write("pg_hba.conf", &hba)?;
            extra.push(format!("hba_file={}", hba.display()));
            files.push(hba);
        }
        if root && !files.is_empty() {
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .args(&files)
                .output();
            check("postgres", "chown of the TLS and hba files", chown)?;
        }

        let mut last = None;
        // The port was free a moment ago; another process may take it first, so retry.
        for _ in 0..3 {
            let port = free_port()?;
            let mut server = as_server_user(&bin.join("postgres"), root);
            server.arg("-D").arg(&data).args([
                "-p",
                &port.to_string(),
                "-c",
                &format!("listen_addresses={listen}"),
                "-c",
            ]);
            server.arg(format!("unix_socket_directories={}", dir.path().display()));
            for setting in &extra {
                server.args(["-c", setting]);
            }
            // A throwaway cluster: durability is not wanted, speed is.
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
                "max_connections=300",
                "log_min_messages=warning",
            ] {
                server.args(["-c", setting]);
            }
            let mut service = Service::start("postgres", &dir, server)?;
            let isready = bin.join("pg_isready");
            let ready = service.wait_until(START_TIMEOUT, || {
                Command::new(&isready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            });
            match ready {
                Ok(()) => {
                    return Ok(Self {
                        service,
                        port,
                        password,
                        dir,
                    });
                }
                Err(e @ StackError::Exited { .. }) if e.to_string().contains("in use") => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StackError::Setup {
            service: "postgres".into(),
            step: "finding a free port".into(),
            output: String::new(),
        }))
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A URL for `database` as the superuser.
    pub fn admin_url(&self, database: &str) -> String {
        self.url(Self::SUPERUSER, &self.password, database)
    }

    /// A URL for `database` as `user` with `password`.
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// [`Self::url`] at `host` instead of loopback (the `HOST_IP` a Pod reaches this host at,
    /// with [`PostgresOptions::pod_access`]).
    pub fn url_at(
        &self,
        host: std::net::IpAddr,
        user: &str,
        password: &str,
        database: &str,
    ) -> String {
        format!(
            "postgres://{user}:{password}@{host}:{}/{database}",
            self.port
        )
    }

    /// Creates a database named `<prefix>_<random>` and returns its name. The prefix must
    /// be lowercase letters, digits and `_`.
    pub async fn create_database(&self, prefix: &str) -> Result<String, sqlx::Error> {
        use sqlx::Connection as _;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(sqlx::Error::Protocol(format!(
                "database prefix {prefix:?}: expected lowercase letters, digits and _"
            )));
        }
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut conn = sqlx::PgConnection::connect(&self.admin_url("postgres")).await?;
        // The name is checked above: letters, digits and _ only.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(name)
    }

    /// Makes `name` a login with `password`: created, or its password changed if it exists
    /// (a credential rotation). `name` and `password` are test-chosen identifiers.
    pub async fn set_login(&self, name: &str, password: &str) -> Result<(), sqlx::Error> {
        execute(
            &self.admin_url("postgres"),
            &format!(
                "DO $$ BEGIN CREATE ROLE {name} LOGIN PASSWORD '{password}'; \
                 EXCEPTION WHEN duplicate_object THEN ALTER ROLE {name} PASSWORD '{password}'; END $$"
            ),
        )
        .await
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        self.service.log_file()
    }

    /// The directory with the cluster's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (fast shutdown).
    pub fn stop(mut self) {
        self.service.stop(Duration::from_secs(10));
    }
}

fn check(
    service: &str,
    step: &str,
    output: std::io::Result<std::process::Output>,
) -> Result<(), StackError> {
    match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(StackError::Setup {
            service: service.into(),
            step: step.into(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }),
        Err(e) => Err(StackError::Missing {
            program: step.into(),
            hint: format!("{e}; {HINT}"),
        }),
    }
}

/// Runs one SQL statement on its own connection to `url` (test setup: roles, passwords).
pub async fn execute(url: &str, statement: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

//! A server process the harness started: its output goes to a log file, it is stopped when
//! dropped, and its logs are kept (and their path printed) when the test using it failed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::StackError;

/// A loopback port that was free a moment ago. Servers that cannot listen on port 0 and
/// report the port get one of these; [`Service::start`] retries when another process took
/// it in between.
pub fn free_port() -> Result<u16, StackError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| StackError::Io {
        what: "finding a free loopback port".into(),
        source: e,
    })?;
    Ok(listener
        .local_addr()
        .map_err(|e| StackError::Io {
            what: "finding a free loopback port".into(),
            source: e,
        })?
        .port())
}

/// Keep the log directories of every service, even after passing tests.
const KEEP_LOGS: &str = "E2E_KEEP_LOGS";

/// A directory for a service's files (data, sockets, logs), removed when dropped unless the
/// test is failing (a panic is unwinding) or `E2E_KEEP_LOGS` is set: then it is kept and its
/// path printed. Declare it after the [`Service`]s using it, so they stop first.
pub struct Workdir {
    name: String,
    dir: Option<tempfile::TempDir>,
}

impl Workdir {
    /// A new directory named after `name`.
    pub fn new(name: &str) -> Result<Self, StackError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tenant-mcp-{name}-"))
            .tempdir()
            .map_err(|e| StackError::Io {
                what: format!("creating the directory of {name}"),
                source: e,
            })?;
        Ok(Self {
            name: name.to_owned(),
            dir: Some(dir),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("."), tempfile::TempDir::path)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if (std::thread::panicking() || std::env::var_os(KEEP_LOGS).is_some())
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("{} files and logs kept in {}", self.name, kept.display());
        }
    }
}

/// A loopback server that accepts connections and never says a word, for timeout tests; it
/// stops when the handle is aborted or dropped with its runtime. Returns its port.
pub async fn silent_server() -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    Ok((port, held))
}

/// Kills the process group of a child if the process that started it goes away without
/// stopping it (a test killed by its timeout, a benchmark interrupted): `Drop` never runs then,
/// and a control plane or Postgres left behind would hold CPU and memory for the rest of the
/// suite. A shell polls once a second whether it still has the test process as its parent
/// (when that process dies, even before it is reaped, its children are re-parented) and whether
/// the child still runs; dropping the guard stops it. The shell leads its own process group,
/// so killing the test's group (what cargo-nextest does at a timeout) does not kill it.
#[derive(Debug)]
pub struct Reaper {
    shell: Option<Child>,
}

impl Reaper {
    /// Watches `child`, which must lead its own process group (`Command::process_group(0)`).
    pub fn watch(child: u32) -> Self {
        use std::os::unix::process::CommandExt as _;
        let parent = std::process::id();
        let script = format!(
            "parent() {{ cut -d' ' -f4 /proc/$$/stat; }}; \
             while [ \"$(parent)\" = {parent} ] && kill -0 {child} 2>/dev/null; do sleep 1; done; \
             [ \"$(parent)\" = {parent} ] || kill -KILL -{child} 2>/dev/null"
        );
        // A group of its own: cargo-nextest ends a timed-out test by killing the test's
        // process group, which would take the reaper with it and leave the child running.
        let shell = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok();
        Self { shell }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut shell) = self.shell.take() {
            let _ = shell.kill();
            let _ = shell.wait();
        }
    }
}

/// A running server process, stopped (SIGTERM, then SIGKILL) when dropped, and killed with
/// its whole process group if the test process dies first ([`Reaper`]).
pub struct Service {
    name: String,
    child: Option<Child>,
    log_file: PathBuf,
    _reaper: Option<Reaper>,
}

impl Service {
    /// Starts `command` in `dir`, its stdout and stderr going to `<name>.log` there.
    pub fn start(name: &str, dir: &Workdir, mut command: Command) -> Result<Self, StackError> {
        let log_file = dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_file).map_err(|e| StackError::Io {
            what: format!("creating {}", log_file.display()),
            source: e,
        })?;
        let err_log = log.try_clone().map_err(|e| StackError::Io {
            what: format!("opening {}", log_file.display()),
            source: e,
        })?;
        let program = command.get_program().to_string_lossy().into_owned();
        use std::os::unix::process::CommandExt as _;
        let child = command
            .current_dir(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| StackError::Spawn {
                service: name.to_owned(),
                program,
                source: e,
            })?;
        let reaper = Reaper::watch(child.id());
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log_file,
            _reaper: Some(reaper),
        })
    }

    /// The log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The log so far (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until `addr` accepts TCP connections, failing early if the process exits.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), StackError> {
        self.wait_until(timeout, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
    }

    /// Waits until `ready` says so, failing early if the process exits.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), StackError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(StackError::Exited {
                    service: self.name.clone(),
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StackError::NotReady {
                    service: self.name.clone(),
                    after: timeout,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process at once (SIGKILL): it stops wherever it was, as a crashed pod does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SIGTERM lets servers (Postgres) shut down cleanly.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_bytes(&status, "VmHWM")
        .ok_or_else(|| std::io::Error::other(format!("no VmHWM in /proc/{pid}/status")))
}

/// A memory field (`VmRSS`, `VmHWM`, `RssAnon`, …) of the text of a `/proc/PID/status`, in
/// bytes.
pub fn status_bytes(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

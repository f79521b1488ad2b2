//! A `tenant-mcp controller` process for scenarios: started against a kubeconfig with short
//! Lease and retry times, stopped, paused, resumed or killed like a pod would be, its log
//! printed when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::stack::process::free_port;
use crate::stack::tenant_mcp_binary;

/// A running controller, killed when dropped.
pub struct ControllerProcess {
    child: Child,
    _reaper: crate::stack::process::Reaper,
    /// Its log file (stderr).
    pub log: PathBuf,
    metrics: u16,
}

/// How to start one.
#[derive(Clone, Debug)]
pub struct ControllerOptions<'a> {
    /// The kubeconfig it uses.
    pub kubeconfig: &'a Path,
    /// Where its log goes.
    pub dir: &'a Path,
    /// Its Lease identity.
    pub identity: &'a str,
    /// The namespace of its Lease.
    pub lease_namespace: &'a str,
    /// The mirror database URL and keys directory, if it mirrors.
    pub mirror: Option<(&'a str, &'a Path)>,
    /// Seconds a Lease lasts.
    pub lease_seconds: u32,
}

impl ControllerProcess {
    /// Starts one with `options`, logging at debug level.
    pub fn start(options: &ControllerOptions<'_>) -> Self {
        Self::start_logging(
            options,
            &std::env::var("E2E_CONTROLLER_LOG")
                .unwrap_or_else(|_| "info,tenant_mcp=debug,kube=warn".into()),
        )
    }

    /// As [`Self::start`], with the log filter `filter` (a long run's log at debug level
    /// would fill a disk).
    pub fn start_logging(options: &ControllerOptions<'_>, filter: &str) -> Self {
        let log = options
            .dir
            .join(format!("controller-{}.log", options.identity));
        let metrics = free_port().unwrap_or_else(|e| panic!("a free port: {e}"));
        let mut cmd = Command::new(tenant_mcp_binary().unwrap_or_else(|e| panic!("{e}")));
        let allocator = crate::bench::chart_allocator_env().unwrap_or_else(|e| panic!("{e}"));
        cmd.envs(allocator)
            .env("KUBECONFIG", options.kubeconfig)
            .env("TENANT_MCP_LOG", filter)
            .args(["controller", "--identity", options.identity])
            .args(["--lease-namespace", options.lease_namespace])
            .args([
                "--lease-duration-seconds",
                &options.lease_seconds.to_string(),
            ])
            .args(["--snapshot-grace-seconds", "2", "--retry-seconds", "1"])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics}")])
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating the log: {e}")),
            );
        if let Some((url, keys)) = options.mirror {
            cmd.env("TENANT_MCP_DATABASE_URL", url)
                .env("TENANT_MCP_KEYS_DIR", keys)
                .env("TENANT_MCP_KEYS_RELOAD_SECONDS", "1");
        }
        use std::os::unix::process::CommandExt as _;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting the controller: {e}"));
        Self {
            _reaper: crate::stack::process::Reaper::watch(child.id()),
            child,
            log,
            metrics,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the controller did not stop on SIGTERM"))
    }

    /// SIGKILL: dies wherever it was.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: frozen wherever it was (a paused VM, a starved node).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its `/metrics` text (empty when it does not answer).
    pub fn metrics(&self) -> String {
        Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}/metrics", self.metrics)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- controller log {} (last lines) ---", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

//! A one-node Kubernetes cluster that runs Pods: `../shared/kube/cluster-up` (kube-apiserver,
//! kube-controller-manager, kube-scheduler, and a kubelet with Debian's containerd, runc and
//! CNI bridge plugin) in a network namespace of its own, stopped when dropped.
//!
//! What it lacks against a managed cluster (its README): no registry (images are imported,
//! [`NodeCluster::import`]), no kube-proxy (only the `kubernetes` Service routes; reach a Pod
//! by its IP, the API server resolves webhook Services itself), no cluster DNS, and
//! NetworkPolicy is stored but not enforced. Pods reach this host at [`NodeCluster::host_ip`]:
//! a server they use binds there.
//!
//! It needs root (network namespaces, containerd). A test process killed before it drops the
//! cluster leaves the [`Reaper`](super::process::Reaper) to kill `cluster-up`, and that leaves
//! the node's Pods running (the README says so): such a leftover is cleaned up by the next
//! `cluster-up` of the same directory only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::StackError;
use super::process::{Service, Workdir};
use crate::image::PackedImage;

/// How long the first `cluster-up` may take: it installs containerd from Debian when missing.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `cluster-up` may take to stop its Pods and processes.
const CLUSTER_STOP_GRACE: Duration = Duration::from_secs(60);

/// A running one-node cluster.
pub struct NodeCluster {
    service: Service,
    env: BTreeMap<String, String>,
    state: PathBuf,
    // Last, so the cluster stops before its files go.
    _dir: Workdir,
}

impl NodeCluster {
    /// Starts `cluster-up` and waits until the node is Ready.
    pub fn start() -> Result<Self, StackError> {
        let script = super::repo_root().join("../shared/kube/cluster-up");
        if !script.is_file() {
            return Err(StackError::Missing {
                program: "cluster-up".into(),
                hint: "check out ../shared beside this repository".into(),
            });
        }
        let dir = Workdir::new("node")?;
        let state = dir.path().join("state");
        let mut command = Command::new(&script);
        command.arg(&state);
        if let Ok(bin) = super::kube::binaries() {
            command.env("KUBEBUILDER_ASSETS", bin);
        }
        let mut service = Service::start("cluster-up", &dir, command)?;
        let ready = state.join("ready");
        service.wait_until(CLUSTER_START_TIMEOUT, || ready.is_file())?;
        let text = std::fs::read_to_string(state.join("env")).map_err(|e| StackError::Io {
            what: "reading cluster-up's env file".into(),
            source: e,
        })?;
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Self {
            service,
            env,
            state,
            _dir: dir,
        })
    }

    fn var(&self, name: &str) -> &str {
        self.env.get(name).map_or("", String::as_str)
    }

    /// The cluster administrator's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    /// This host's address as Pods reach it: servers that Pods use listen here.
    pub fn host_ip(&self) -> IpAddr {
        self.var("HOST_IP")
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// The Pods' network (`10.202.N.0/24`), routed from this host. The node does not
    /// masquerade: a Pod's connection to this host comes from its own address in here (what a
    /// server's access list, `pg_hba.conf`, must allow).
    pub fn pod_cidr(&self) -> &str {
        self.var("POD_CIDR")
    }

    /// The directory of the cluster's logs (`kube-apiserver.log`, `kubelet.log`, …).
    pub fn log_dir(&self) -> PathBuf {
        self.state.join("log")
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command.args(["--address", self.var("CONTAINERD_ADDRESS"), "-n", "k8s.io"]);
        command
    }

    /// Imports `image` into the node's containerd (no registry here): Pods then run it with
    /// `imagePullPolicy: IfNotPresent` or `Never`.
    pub fn import(&self, image: &PackedImage) -> Result<(), StackError> {
        let output = self
            .ctr()
            .args(["images", "import"])
            .arg(&image.archive)
            .output()
            .map_err(|e| StackError::Io {
                what: "running ctr images import".into(),
                source: e,
            })?;
        if !output.status.success() {
            return Err(StackError::Setup {
                service: "cluster-up".into(),
                step: format!("importing {}", image.archive.display()),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// The host process id of a running container, from its Pod status's `containerID`
    /// (`containerd://…`): to look at it as the node does (`/proc/PID/status`, its mounts).
    pub fn container_pid(&self, container_id: &str) -> Option<u32> {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        let output = self.ctr().args(["tasks", "ls"]).output().ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(id)).then(|| fields.next()?.parse().ok())?
            })
    }

    /// Whether `cluster-up` still runs.
    pub fn is_running(&mut self) -> bool {
        self.service.is_running()
    }

    /// Where `cluster-up`'s own output went.
    pub fn log_file(&self) -> &Path {
        self.service.log_file()
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // cluster-up kills the Pods, stops its processes newest first and removes the network
        // namespace on SIGTERM; the Service's own drop would give it five seconds only.
        self.service.stop(CLUSTER_STOP_GRACE);
    }
}

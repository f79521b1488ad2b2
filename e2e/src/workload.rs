//! Runs a Deployment's container as a local process, as the kubelet would start its pod: from
//! the pod template the API server holds (as `helm install` put it there), with the token of
//! the pod's ServiceAccount from the TokenRequest API, its environment resolved (literal values,
//! `fieldRef` to the pod's name and namespace, `secretKeyRef` and `configMapKeyRef`) and its
//! Secret and ConfigMap volumes written to a directory, their mount paths mapped there.
//!
//! The RBAC tests (`tests/chart_rbac.rs`) use this instead of Pods on a node, for speed: they
//! drive many identities against the API server's authorizer on the API-only control plane
//! (about 3 s and 450 MB to start, against about 10 s and a kubelet, containerd and an image
//! import for `cluster-up`), and what they test is what each workload's ServiceAccount may
//! do, which a local process under the same token shows. The chart running as real Pods is
//! `tests/pods.rs` and the demo. The image is replaced by a local binary (the project's
//! `tenant-mcp` for the chart's workloads), and the process shares the host's network, so
//! listening addresses may be overridden.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::api::Api;

use crate::harness::Cluster;
use crate::stack::kube::User;
use crate::stack::process::{Service, Workdir};

/// A Deployment's container running locally.
pub struct LocalPod {
    /// The process.
    pub service: Service,
    /// The pod's kubeconfig (its ServiceAccount's token).
    pub kubeconfig: PathBuf,
    /// The pod's name (what `fieldRef: metadata.name` gave it).
    pub name: String,
    // Last: the files go after the process.
    _dir: Workdir,
}

/// How to run one.
#[derive(Clone, Debug)]
pub struct PodOptions<'a> {
    /// The Deployment's namespace.
    pub namespace: &'a str,
    /// The Deployment's name.
    pub deployment: &'a str,
    /// The binary that stands for the container's image (its entrypoint).
    pub program: &'a Path,
    /// Environment variables set after the pod's own (listening addresses, log levels).
    pub env_overrides: &'a [(&'a str, String)],
    /// Container ports the process listens on, by name, with the local port it uses: each
    /// Service selecting the pod gets an EndpointSlice pointing there, as the EndpointSlice
    /// controller would make for a running pod (at the host's address; see [`host_address`]).
    pub publish: &'a [(&'a str, u16)],
}

impl LocalPod {
    /// Starts the first container of `options.deployment`'s pod template.
    pub async fn start(cluster: &Cluster, options: &PodOptions<'_>) -> anyhow::Result<Self> {
        let client = cluster.client();
        let ns = options.namespace;
        let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
            .get(options.deployment)
            .await
            .with_context(|| format!("reading Deployment {ns}/{}", options.deployment))?;
        let template = deployment
            .spec
            .clone()
            .map(|s| s.template)
            .context("the Deployment has no pod template")?;
        let pod_labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        let pod: PodSpec = template
            .spec
            .context("the Deployment has no pod template")?;
        let container = pod
            .containers
            .first()
            .context("the pod template has no container")?
            .clone();
        let name = format!("{}-local", options.deployment);
        let dir = Workdir::new(&name)?;

        let account = pod
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let token = cluster.service_account_token(ns, &account).await?;
        let kubeconfig = cluster.kubeconfig_for(&User::Token(token))?;

        let mounts = write_volumes(&client, ns, &pod, &container, dir.path()).await?;
        // A path under a mount goes to that mount's directory: the longest mount that holds it,
        // once (the local directories are under /tmp, which the chart also mounts).
        let map = |value: &str| {
            mounts
                .iter()
                .find_map(|(from, to)| {
                    let rest = value.strip_prefix(from.as_str())?;
                    (rest.is_empty() || rest.starts_with('/'))
                        .then(|| format!("{}{rest}", to.display()))
                })
                .unwrap_or_else(|| value.to_owned())
        };
        let env = resolve_env(&client, ns, &name, &container).await?;

        let mut command = Command::new(options.program);
        command
            .args(container.command.iter().flatten().skip(1).map(|a| map(a)))
            .args(container.args.iter().flatten().map(|a| map(a)))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig);
        for (key, value) in &env {
            command.env(key, map(value));
        }
        for (key, value) in options.env_overrides {
            command.env(key, value);
        }
        let service = Service::start(&container.name, &dir, command)?;
        if !options.publish.is_empty() {
            let labels = deployment
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(pod_labels)
                .collect();
            publish(&client, ns, &name, &labels, &container, options.publish).await?;
        }
        Ok(Self {
            service,
            kubeconfig,
            name,
            _dir: dir,
        })
    }
}

/// The container's environment, as the kubelet resolves it.
async fn resolve_env(
    client: &kube::Client,
    ns: &str,
    pod_name: &str,
    container: &Container,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => pod_name.to_owned(),
                        "metadata.namespace" => ns.to_owned(),
                        other => {
                            anyhow::bail!("env {}: fieldRef {other} is not supported", var.name)
                        }
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(client.clone(), ns)
                        .get(&key.name)
                        .await
                        .with_context(|| format!("env {}: Secret {ns}/{}", var.name, key.name))?;
                    let bytes = secret
                        .data
                        .and_then(|d| d.get(&key.key).cloned())
                        .with_context(|| {
                            format!(
                                "env {}: no key {} in Secret {}",
                                var.name, key.key, key.name
                            )
                        })?;
                    String::from_utf8(bytes.0)?
                } else if let Some(key) = &from.config_map_key_ref {
                    Api::<ConfigMap>::namespaced(client.clone(), ns)
                        .get(&key.name)
                        .await?
                        .data
                        .and_then(|d| d.get(&key.key).cloned())
                        .with_context(|| {
                            format!(
                                "env {}: no key {} in ConfigMap {}",
                                var.name, key.key, key.name
                            )
                        })?
                } else {
                    anyhow::bail!("env {}: this kind of valueFrom is not supported", var.name);
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// Writes the Secret and ConfigMap volumes the container mounts under `dir`; returns each mount
/// path with the directory that stands for it.
async fn write_volumes(
    client: &kube::Client,
    ns: &str,
    pod: &PodSpec,
    container: &Container,
    dir: &Path,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = pod.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            anyhow::bail!("volume {} is mounted but not declared", mount.name);
        };
        let files: BTreeMap<String, Vec<u8>> = if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            Api::<Secret>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .with_context(|| format!("volume {}: Secret {ns}/{name}", mount.name))?
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        } else if let Some(map) = &volume.config_map {
            Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&map.name)
                .await
                .with_context(|| format!("volume {}: ConfigMap {ns}/{}", mount.name, map.name))?
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect()
        } else {
            // emptyDir and the like: an empty directory.
            BTreeMap::new()
        };
        let local = dir.join("volumes").join(&mount.name);
        std::fs::create_dir_all(&local)?;
        for (key, bytes) in files {
            std::fs::write(local.join(key), bytes)?;
        }
        let target = match &mount.sub_path {
            Some(sub) if !sub.is_empty() => local.join(sub),
            _ => local,
        };
        mounts.push((mount.mount_path.clone(), target));
    }
    // Longest mount path first, so `/etc/a/b` is mapped before `/etc/a`.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    Ok(mounts)
}

/// The host's address on its default route: what a Service's endpoints point at for a process
/// run here (an endpoint may not be a loopback address). No packet is sent.
pub fn host_address() -> anyhow::Result<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket
        .connect("192.0.2.255:9")
        .or_else(|_| socket.connect("10.255.255.255:9"))
        .context("this machine has no route off loopback, so no address for an endpoint")?;
    let ip = socket.local_addr()?.ip();
    anyhow::ensure!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "no non-loopback address: {ip}"
    );
    Ok(ip)
}

/// An EndpointSlice for each Service in `ns` whose selector picks `labels`, with the local
/// ports of the container ports its ports target.
async fn publish(
    client: &kube::Client,
    ns: &str,
    pod_name: &str,
    labels: &BTreeMap<String, String>,
    container: &Container,
    ports: &[(&str, u16)],
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Service as KubeService;
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use kube::api::{ListParams, Patch, PatchParams};

    let address = host_address()?.to_string();
    let services = Api::<KubeService>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns);
    for service in services {
        let name = service.metadata.name.clone().unwrap_or_default();
        let spec = service.spec.unwrap_or_default();
        let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
            continue;
        };
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let mut endpoint_ports = Vec::new();
        for port in spec.ports.unwrap_or_default() {
            let target = match port.target_port {
                Some(IntOrString::String(named)) => named,
                Some(IntOrString::Int(number)) => container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.container_port == number)
                    .and_then(|p| p.name.clone())
                    .unwrap_or_default(),
                None => continue,
            };
            if let Some((_, local)) = ports.iter().find(|(n, _)| *n == target) {
                endpoint_ports.push(EndpointPort {
                    name: port.name.clone(),
                    port: Some(i32::from(*local)),
                    protocol: Some("TCP".into()),
                    ..EndpointPort::default()
                });
            }
        }
        if endpoint_ports.is_empty() {
            continue;
        }
        let slice = EndpointSlice {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{name}-{pod_name}")),
                labels: Some(
                    [
                        ("kubernetes.io/service-name".to_owned(), name.clone()),
                        (
                            "endpointslice.kubernetes.io/managed-by".to_owned(),
                            "run-pod.tenant-mcp.dev".to_owned(),
                        ),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            address_type: if address.contains(':') {
                "IPv6"
            } else {
                "IPv4"
            }
            .into(),
            endpoints: vec![Endpoint {
                addresses: vec![address.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Endpoint::default()
            }],
            ports: Some(endpoint_ports),
        };
        slices
            .patch(
                &format!("{name}-{pod_name}"),
                &PatchParams::apply("run-pod").force(),
                &Patch::Apply(&slice),
            )
            .await
            .with_context(|| format!("publishing Service {ns}/{name}'s endpoint"))?;
    }
    Ok(())
}

/// The chart's webhook Deployment `deployment` in `namespace`, run as its pod, listening at
/// the host's address with its Service's endpoint pointing there; returns once the API server
/// calls it through the Service (the webhook made its certificate and set `caBundle`, and a
/// dry run of an invalid config is refused by it).
pub async fn start_webhook(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
) -> anyhow::Result<LocalPod> {
    let program = crate::stack::tenant_mcp_binary()?;
    let port = crate::stack::process::free_port()?;
    let address = host_address()?;
    let pod = LocalPod::start(
        cluster,
        &PodOptions {
            namespace,
            deployment,
            program: &program,
            env_overrides: &[
                (
                    "TENANT_MCP_WEBHOOK_LISTEN",
                    std::net::SocketAddr::new(address, port).to_string(),
                ),
                ("TENANT_MCP_LOG_FORMAT", "text".into()),
            ],
            publish: &[("webhook", port)],
        },
    )
    .await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = cluster.kubectl_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            crate::webhook::CANARY,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("denied the request") {
            return Ok(pod);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the API server did not call the webhook {namespace}/{deployment} within 60 s: \
             last kubectl said {stderr}; its log:\n{}",
            std::fs::read_to_string(pod.service.log_file()).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

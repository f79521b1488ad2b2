//! Runs a Deployment's container as a local process, as the kubelet would start its pod: from
//! the pod template the API server holds (as `helm install` put it there), with the token of
//! the pod's ServiceAccount from the TokenRequest API, its environment resolved (literal values,
//! `fieldRef` to the pod's name and namespace, `secretKeyRef` and `configMapKeyRef`) and its
//! Secret and ConfigMap volumes written to a directory, their mount paths mapped there.
//!
//! There is no kubelet or container runtime on the machines this project is tested on; this is
//! the part of one that decides what a workload may do and how it is configured. The image is
//! replaced by a local binary (the project's `tenant-mcp` for the chart's workloads), and the
//! process shares the host's network, so listening addresses may be overridden.

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
        let pod: PodSpec = deployment
            .spec
            .and_then(|s| s.template.spec)
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
        let map = |value: &str| {
            mounts.iter().fold(value.to_owned(), |v, (from, to)| {
                v.replace(from.as_str(), &to.display().to_string())
            })
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

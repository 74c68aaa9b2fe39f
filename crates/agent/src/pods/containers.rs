//! Starting one container instance: its environment (Service links, ConfigMaps, Secrets, the downward API), its
//! image resolved through the catalog, its bind mounts (the pod's /etc files and its volumes), and the
//! supervised process (`skiff-runtime`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use skiff_runtime::{ContainerSpec, Mount};

use super::{PodRuntime, netns_name, uid};
use crate::environment::{self, Sources};
use crate::pod_files;

pub(crate) enum StartError {
    Image(skiff_images::ResolveError),
    Other(String),
}

pub(crate) async fn start_container(
    rt: &PodRuntime,
    pod: &Pod,
    container: &Container,
    dir: &Path,
    ip: &str,
    attempt: u32,
) -> Result<(), StartError> {
    let other = |e: &dyn std::fmt::Display| StartError::Other(e.to_string());
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let (links, sources_cms, sources_secrets) = gather(rt, &ns).await.map_err(|e| other(&e))?;
    let sources = Sources {
        config_maps: sources_cms.iter().map(|c| (c.metadata.name.clone().unwrap_or_default(), c)).collect(),
        secrets: sources_secrets.iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), s)).collect(),
        pod_ip: ip.to_string(),
        host_ip: rt.node_ip.clone(),
    };
    let links = environment::service_links(pod, &links);
    let env = environment::container_env(pod, container, &links, &sources).map_err(|e| other(&e))?;
    let vars: std::collections::HashMap<String, String> = env.iter().cloned().collect();
    let (command, args) = skiff_images::expand_command_args(
        &container.command.clone().unwrap_or_default(),
        &container.args.clone().unwrap_or_default(),
        &vars,
    );
    let image = container.image.clone().unwrap_or_default();
    let resolved = rt.catalog.resolve(&image, &command, &args).map_err(StartError::Image)?;
    let mut full_env = resolved.env.clone();
    full_env.retain(|(k, _)| !vars.contains_key(k));
    full_env.extend(env);
    let etc = dir.join("etc");
    let mut mounts = vec![
        Mount { source: etc.join("resolv.conf"), target: "/etc/resolv.conf".into(), read_only: false },
        Mount { source: etc.join("hosts"), target: "/etc/hosts".into(), read_only: false },
        Mount { source: etc.join("hostname"), target: "/etc/hostname".into(), read_only: false },
    ];
    mounts.extend(volume_mounts(pod, container, dir, &sources).map_err(|e| other(&e))?);
    let state_dir = dir.join("containers").join(&container.name).join(attempt.to_string());
    let spec = ContainerSpec {
        id: format!("{}-{}-{attempt}", uid(pod), container.name),
        argv: resolved.argv,
        env: full_env,
        working_dir: container.working_dir.clone().or(resolved.working_dir).map(PathBuf::from),
        netns: Some(PathBuf::from("/run/netns").join(netns_name(&uid(pod)))),
        hostname: pod_files::hostname(pod),
        mounts,
        log_path: skiff_runtime::container_log_path(&dir.join("logs"), &container.name, attempt),
        state_dir,
        stdin: false,
        tty: false,
    };
    skiff_runtime::start(&spec, &rt.shim_exe).await.map(|_| ()).map_err(|e| other(&e))
}

/// The Services, ConfigMaps and Secrets a container's environment may read.
async fn gather(rt: &PodRuntime, ns: &str) -> Result<(Vec<Service>, Vec<ConfigMap>, Vec<Secret>), kube::Error> {
    let lp = ListParams::default();
    let mut services = Api::<Service>::namespaced(rt.client.clone(), ns).list(&lp).await?.items;
    if ns != "default" {
        services.extend(Api::<Service>::namespaced(rt.client.clone(), "default").list(&lp).await?.items);
    }
    let cms = Api::<ConfigMap>::namespaced(rt.client.clone(), ns).list(&lp).await?.items;
    let secrets = Api::<Secret>::namespaced(rt.client.clone(), ns).list(&lp).await?.items;
    Ok((services, cms, secrets))
}

/// emptyDir, configMap, secret and hostPath volumes, as bind mounts.
fn volume_mounts(pod: &Pod, container: &Container, dir: &Path, sources: &Sources) -> std::io::Result<Vec<Mount>> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for vm in container.volume_mounts.clone().unwrap_or_default() {
        let Some(volume) = volumes.iter().find(|v| v.name == vm.name) else { continue };
        let vdir = dir.join("volumes").join(&volume.name);
        let source = if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else {
            std::fs::create_dir_all(&vdir)?;
            let files: BTreeMap<String, Vec<u8>> = if let Some(cm) = &volume.config_map {
                sources
                    .config_maps
                    .get(&cm.name)
                    .and_then(|m| m.data.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect()
            } else if let Some(secret) = &volume.secret {
                let name = secret.secret_name.clone().unwrap_or_default();
                sources
                    .secrets
                    .get(&name)
                    .and_then(|s| s.data.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            } else {
                BTreeMap::new()
            };
            for (k, v) in files {
                if !k.contains('/') {
                    std::fs::write(vdir.join(k), v)?;
                }
            }
            vdir
        };
        let source = match &vm.sub_path {
            Some(sub) if !sub.is_empty() && !sub.contains("..") => source.join(sub),
            _ => source,
        };
        out.push(Mount { source, target: PathBuf::from(&vm.mount_path), read_only: vm.read_only.unwrap_or(false) });
    }
    Ok(out)
}

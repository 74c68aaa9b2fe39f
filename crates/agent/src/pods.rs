//! The pod sync loop: every pod bound to this node gets a sandbox (a network namespace wired by CNI, and its
//! resolv.conf / hosts / hostname files) and its containers run as supervised processes (`skiff-runtime`);
//! exited containers restart by `restartPolicy` with upstream's backoff; the pod's status (phase, IP,
//! conditions, containerStatuses) is reported whenever it changes; a deleted pod's containers are stopped with its
//! grace period, its IP released (CNI DEL) and its namespace removed before the pod object is finally removed.
//!
//! State lives in `<agent dir>/pods/<uid>/` so that an agent restart re-adopts running pods: containers keep
//! running under their supervisors, and the sandbox's IP comes back from the CNI result cache.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use skiff_runtime::{ContainerSpec, Mount, State};
use tokio_util::sync::CancellationToken;

use crate::environment::{self, Sources};
use crate::pod_files::{self, ClusterDns, Resolver};

/// How often every pod is looked at even without an event (to notice exited containers).
const RESYNC: Duration = Duration::from_secs(1);
/// Upstream's crash-loop backoff: 10 s doubling to 5 minutes.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const MANAGER: &str = "skiff-agent";

/// Everything the pod loop needs.
pub struct PodRuntime {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: String,
    /// `<agent dir>`: pods/, the CNI cache and IPAM files.
    pub dir: PathBuf,
    pub cni: skiff_cni::Cni,
    pub catalog: skiff_images::Catalog,
    /// The executable that supervises containers (`skiff shim …`).
    pub shim_exe: PathBuf,
    pub dns: ClusterDns,
    pub node_resolver: Resolver,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn netns_name(uid: &str) -> String {
    format!("skp-{}", uid.replace('-', "").chars().take(12).collect::<String>())
}

impl PodRuntime {
    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.dir.join("pods").join(uid)
    }
}

/// Runs until `shutdown` fires.
pub async fn run(rt: Arc<PodRuntime>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(rt.client.clone());
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", rt.node_name));
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let feeder =
        tokio::spawn(watcher(pods, cfg).default_backoff().reflect(writer).applied_objects().for_each(move |_| {
            notify.notify_one();
            futures::future::ready(())
        }));
    tokio::select! {
        _ = shutdown.cancelled() => { feeder.abort(); return Ok(()) }
        ready = store.wait_until_ready() => ready?,
    }
    let mut restarts: HashMap<String, Backoff> = HashMap::new();
    loop {
        let current: Vec<Arc<Pod>> = store.state();
        let live: Vec<String> = current.iter().map(|p| uid(p)).collect();
        for pod in &current {
            if let Err(e) = sync_pod(&rt, pod, &mut restarts).await {
                tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), error = %e, "pod sync failed");
            }
        }
        // Pods that vanished from the API (force-deleted): tear their sandboxes down.
        if let Ok(entries) = std::fs::read_dir(rt.dir.join("pods")) {
            for entry in entries.flatten() {
                let gone = entry.file_name().to_string_lossy().to_string();
                if !live.contains(&gone) {
                    teardown_pod(&rt.dir, &rt.cni, &gone, Duration::from_secs(2)).await;
                    restarts.retain(|k, _| !k.starts_with(&gone));
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => { feeder.abort(); return Ok(()) }
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// Restart bookkeeping of one container.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    not_before: tokio::time::Instant,
}

async fn sync_pod(rt: &PodRuntime, pod: &Pod, restarts: &mut HashMap<String, Backoff>) -> anyhow::Result<()> {
    let uid = uid(pod);
    let dir = rt.pod_dir(&uid);
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
        teardown_pod(&rt.dir, &rt.cni, &uid, Duration::from_secs(grace)).await;
        let pods: Api<Pod> = Api::namespaced(rt.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        match pods.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if matches!(phase.as_str(), "Succeeded" | "Failed") {
        return Ok(());
    }
    let ip = ensure_sandbox(rt, pod, &dir).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    let mut statuses = Vec::new();
    for container in &spec.containers {
        let status = sync_container(rt, pod, container, &dir, &ip, &policy, restarts).await;
        statuses.push(status);
    }
    report_status(rt, pod, &ip, &policy, statuses).await
}

/// Creates (or re-adopts) the pod's network namespace and files; returns its IP.
async fn ensure_sandbox(rt: &PodRuntime, pod: &Pod, dir: &Path) -> anyhow::Result<String> {
    let uid = uid(pod);
    let netns = PathBuf::from("/run/netns").join(netns_name(&uid));
    let ip = match rt.cni.cached_result(&uid)? {
        Some(result) if skiff_cni::netns_exists(&netns) => result.pod_ip().to_string(),
        _ => {
            std::fs::create_dir_all(dir)?;
            if !skiff_cni::netns_exists(&netns) {
                skiff_cni::create_netns(&netns_name(&uid))?;
            }
            let ports: Vec<skiff_cni::PortMapping> = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.clone().unwrap_or_default())
                .filter_map(|p| {
                    let host = u16::try_from(p.host_port?).ok()?;
                    Some(skiff_cni::PortMapping::tcp(host, u16::try_from(p.container_port).ok()?))
                })
                .collect();
            rt.cni.add(&uid, &netns, &ports).await?.pod_ip().to_string()
        }
    };
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    write_if_changed(&etc.join("resolv.conf"), &pod_files::resolv_conf(pod, &rt.dns, &rt.node_resolver))?;
    write_if_changed(&etc.join("hosts"), &pod_files::hosts(pod, &ip, &rt.dns.domain))?;
    write_if_changed(&etc.join("hostname"), &format!("{}\n", pod_files::hostname(pod)))?;
    Ok(ip)
}

fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// The attempts of a container so far: `<pod dir>/containers/<name>/<n>/`.
fn attempts(dir: &Path, name: &str) -> Vec<(u32, PathBuf)> {
    let base = dir.join("containers").join(name);
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    out.sort();
    out
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn state_json(state: &State) -> Value {
    match state {
        State::Running { started_at, .. } => json!({"running": {"startedAt": rfc3339(*started_at)}}),
        State::Exited { code, started_at, finished_at, signal, .. } => json!({"terminated": {
            "exitCode": code,
            "signal": signal,
            "reason": if *code == 0 { "Completed" } else { "Error" },
            "startedAt": rfc3339(*started_at),
            "finishedAt": rfc3339(*finished_at),
        }}),
        State::Unknown => json!({"waiting": {"reason": "ContainerCreating"}}),
    }
}

/// Starts, restarts or leaves one container; returns its `containerStatuses` entry.
async fn sync_container(
    rt: &PodRuntime,
    pod: &Pod,
    container: &Container,
    dir: &Path,
    ip: &str,
    policy: &str,
    restarts: &mut HashMap<String, Backoff>,
) -> Value {
    let name = &container.name;
    let image = container.image.clone().unwrap_or_default();
    let tries = attempts(dir, name);
    let latest = tries.last().map(|(n, p)| (*n, skiff_runtime::inspect(p).unwrap_or(State::Unknown)));
    let last_state = tries
        .len()
        .checked_sub(2)
        .and_then(|i| skiff_runtime::inspect(&tries[i].1).ok())
        .map(|s| state_json(&s))
        .unwrap_or_else(|| json!({}));
    let restart_count = tries.len().saturating_sub(1) as u32;
    let base =
        json!({"name": name, "image": image, "imageID": "", "containerID": format!("skiff://{}-{name}", uid(pod))});
    let with = |state: Value, ready: bool, count: u32, last: Value| {
        let mut s = base.clone();
        s["state"] = state;
        s["ready"] = json!(ready);
        s["started"] = json!(ready);
        s["restartCount"] = json!(count);
        s["lastState"] = last;
        s
    };
    let key = format!("{}/{name}", uid(pod));
    let start_next = match &latest {
        None => true,
        Some((_, State::Running { .. })) => {
            return with(
                state_json(&latest.as_ref().map(|l| l.1.clone()).unwrap_or(State::Unknown)),
                true,
                restart_count,
                last_state,
            );
        }
        Some((_, State::Exited { code, .. })) => {
            let wants = policy == "Always" || (policy == "OnFailure" && *code != 0);
            if !wants {
                let state = latest.as_ref().map(|l| state_json(&l.1)).unwrap_or_default();
                return with(state, false, restart_count, last_state);
            }
            let now = tokio::time::Instant::now();
            let backoff = restarts
                .entry(key.clone())
                .or_insert(Backoff { delay: BACKOFF_START, not_before: now + BACKOFF_START });
            if now < backoff.not_before {
                let state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off {}s restarting failed container={name} pod={}", backoff.delay.as_secs(),
                    pod.metadata.name.as_deref().unwrap_or_default())}});
                let last = latest.as_ref().map(|l| state_json(&l.1)).unwrap_or_default();
                return with(state, false, restart_count, last);
            }
            backoff.delay = (backoff.delay * 2).min(BACKOFF_MAX);
            backoff.not_before = now + backoff.delay;
            true
        }
        Some((_, State::Unknown)) => false,
    };
    if !start_next {
        return with(json!({"waiting": {"reason": "ContainerCreating"}}), false, restart_count, last_state);
    }
    let attempt = latest.map_or(0, |(n, _)| n + 1);
    match start_container(rt, pod, container, dir, ip, attempt).await {
        Ok(()) => with(json!({"waiting": {"reason": "ContainerCreating"}}), false, attempt, last_state),
        Err(StartError::Image(e)) => {
            let reason = if tries.is_empty() { e.reason() } else { "ImagePullBackOff" };
            with(json!({"waiting": {"reason": reason, "message": e.to_string()}}), false, restart_count, last_state)
        }
        Err(StartError::Other(message)) => with(
            json!({"waiting": {"reason": "CreateContainerError", "message": message}}),
            false,
            restart_count,
            last_state,
        ),
    }
}

enum StartError {
    Image(skiff_images::ResolveError),
    Other(String),
}

async fn start_container(
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

/// Stops a pod's containers, releases its IP and removes its namespace and files (`agent_dir`/pods/`uid`).
pub async fn teardown_pod(agent_dir: &Path, cni: &skiff_cni::Cni, uid: &str, grace: Duration) {
    let dir = agent_dir.join("pods").join(uid);
    if let Ok(names) = std::fs::read_dir(dir.join("containers")) {
        for name in names.flatten() {
            for (_, attempt) in attempts(&dir, &name.file_name().to_string_lossy()) {
                if let Ok(State::Running { .. }) = skiff_runtime::inspect(&attempt) {
                    let _ = skiff_runtime::stop(&attempt, grace).await;
                }
            }
        }
    }
    let netns = PathBuf::from("/run/netns").join(netns_name(uid));
    if let Err(e) = cni.del(uid, Some(&netns)).await {
        tracing::warn!(uid, error = %e, "CNI DEL failed");
    }
    let _ = skiff_cni::delete_netns(&netns_name(uid));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reports the pod's status when it differs from what the API has.
async fn report_status(rt: &PodRuntime, pod: &Pod, ip: &str, policy: &str, statuses: Vec<Value>) -> anyhow::Result<()> {
    let running = statuses.iter().filter(|s| s["state"].get("running").is_some()).count();
    let terminated: Vec<i64> = statuses.iter().filter_map(|s| s["state"]["terminated"]["exitCode"].as_i64()).collect();
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == true);
    let phase = if running > 0 || policy == "Always" && terminated.len() < statuses.len() {
        if running > 0 { "Running" } else { "Pending" }
    } else if !statuses.is_empty() && terminated.len() == statuses.len() {
        if terminated.iter().all(|c| *c == 0) {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    };
    let old = pod.status.clone().unwrap_or_default();
    let now = rfc3339(chrono::Utc::now());
    let flag = |b: bool| if b { "True" } else { "False" };
    let condition = |kind: &str, value: &str| {
        let since = old
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == value))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now.clone());
        json!({"type": kind, "status": value, "lastProbeTime": null, "lastTransitionTime": since})
    };
    let status = json!({
        "phase": phase,
        "hostIP": rt.node_ip,
        "hostIPs": [{"ip": rt.node_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": old.start_time.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| now.clone()),
        "qosClass": old.qos_class.clone().unwrap_or_else(|| "BestEffort".into()),
        "conditions": [
            condition("PodReadyToStartContainers", "True"),
            condition("Initialized", "True"),
            condition("Ready", flag(all_ready)),
            condition("ContainersReady", flag(all_ready)),
            condition("PodScheduled", "True"),
        ],
        "containerStatuses": statuses,
    });
    let current = serde_json::to_value(&old)?;
    let differs = ["phase", "podIP", "conditions", "containerStatuses"].iter().any(|k| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(list) = v.as_array_mut() {
                for item in list {
                    if let Some(m) = item.as_object_mut() {
                        m.remove("lastTransitionTime");
                        m.remove("lastProbeTime");
                    }
                }
            }
            v
        };
        strip(&current[*k]) != strip(&status[*k])
    });
    if differs {
        let pods: Api<Pod> = Api::namespaced(rt.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let name = pod.metadata.name.clone().unwrap_or_default();
        pods.patch_status(&name, &PatchParams::apply(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    }
    Ok(())
}

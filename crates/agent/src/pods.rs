//! The pod sync loop: every pod bound to this node gets a sandbox (a network namespace wired by CNI, and its
//! resolv.conf / hosts / hostname files) and its containers run as supervised processes (`skiff-runtime`);
//! probes ([`crate::probes`]) decide whether a running container is started and ready; exited containers restart
//! by `restartPolicy` with upstream's backoff; the pod's status (phase, IP, conditions, containerStatuses) is
//! reported whenever it changes ([`status`]); a deleted pod's containers are stopped with its grace period, its
//! IP released (CNI DEL) and its namespace removed before the pod object is finally removed.
//!
//! Pods sync concurrently, and a pod's graceful termination runs in a task of its own, so one slow pod never holds
//! up the others. State lives in `<agent dir>/pods/<uid>/` so that an agent restart re-adopts running pods:
//! containers keep running under their supervisors, and the sandbox's IP comes back from the CNI result cache.

mod containers;
mod status;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kube::Resource;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use skiff_runtime::State;
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Events};
use crate::pod_files::{self, ClusterDns, Resolver};
use crate::probes::{self, Probes};
use containers::{StartError, start_container};
use status::{report_status, state_json};

/// How often every pod is looked at even without an event (to notice exited containers).
const RESYNC: Duration = Duration::from_secs(1);
/// Upstream's crash-loop backoff: the first restart is immediate, then 10 s doubling to 5 minutes; a container
/// that ran for twice the maximum starts over.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Pods synced at once.
const SYNC_CONCURRENCY: usize = 8;
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
    /// The kubelet's events (Pulled, Created, Started, Killing, Unhealthy, BackOff, Failed).
    pub events: Events,
    /// Wakes the loop: pod events and probe results.
    pub changed: Arc<tokio::sync::Notify>,
    pub probes: Probes,
    /// Restart backoff per `<uid>/<container>`.
    restarts: Mutex<HashMap<String, Backoff>>,
    /// Pods whose termination is under way.
    terminating: Mutex<HashSet<String>>,
}

impl PodRuntime {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        node_name: String,
        node_ip: String,
        dir: PathBuf,
        cni: skiff_cni::Cni,
        catalog: skiff_images::Catalog,
        shim_exe: PathBuf,
        dns: ClusterDns,
        node_resolver: Resolver,
    ) -> PodRuntime {
        let events = Events::new(client.clone(), node_name.clone());
        let changed = Arc::new(tokio::sync::Notify::new());
        PodRuntime {
            probes: Probes::new(events.clone(), changed.clone()),
            events,
            changed,
            client,
            node_name,
            node_ip,
            dir,
            cni,
            catalog,
            shim_exe,
            dns,
            node_resolver,
            restarts: Mutex::new(HashMap::new()),
            terminating: Mutex::new(HashSet::new()),
        }
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.dir.join("pods").join(uid)
    }

    /// Marks a pod's termination as under way; false when it already is.
    fn begin_termination(&self, uid: &str) -> bool {
        self.terminating.lock().unwrap_or_else(PoisonError::into_inner).insert(uid.to_string())
    }

    fn end_termination(&self, uid: &str) {
        self.terminating.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
        self.restarts.lock().unwrap_or_else(PoisonError::into_inner).retain(|k, _| !k.starts_with(uid));
        self.probes.forget_pod(uid);
    }

    /// Publishes an event about one of `pod`'s containers without holding up the caller.
    fn event(&self, pod: &Pod, container: &str, type_: EventType, reason: &str, note: String) {
        let events = self.events.clone();
        let regarding = container_ref(pod, container);
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = events.publish(&regarding, type_, &reason, note).await {
                tracing::debug!(error = %e, "publishing a pod event failed");
            }
        });
    }
}

/// A reference to one container of `pod`, as the kubelet's events carry it (`fieldPath: spec.containers{name}`),
/// so that events about different containers stay apart.
fn container_ref(pod: &Pod, container: &str) -> ObjectReference {
    ObjectReference { field_path: Some(format!("spec.containers{{{container}}}")), ..pod.object_ref(&()) }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn netns_name(uid: &str) -> String {
    format!("skp-{}", uid.replace('-', "").chars().take(12).collect::<String>())
}

fn grace_period(pod: &Pod) -> Duration {
    Duration::from_secs(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64)
}

/// Runs until `shutdown` fires.
pub async fn run(rt: Arc<PodRuntime>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(rt.client.clone());
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", rt.node_name));
    let notify = rt.changed.clone();
    let feeder =
        tokio::spawn(watcher(pods, cfg).default_backoff().reflect(writer).applied_objects().for_each(move |_| {
            notify.notify_one();
            futures::future::ready(())
        }));
    tokio::select! {
        _ = shutdown.cancelled() => { feeder.abort(); return Ok(()) }
        ready = store.wait_until_ready() => ready?,
    }
    loop {
        let current: Vec<Arc<Pod>> = store.state();
        let live: HashSet<String> = current.iter().map(|p| uid(p)).collect();
        futures::stream::iter(current)
            .for_each_concurrent(SYNC_CONCURRENCY, |pod| {
                let rt = rt.clone();
                async move {
                    if let Err(e) = sync_pod(&rt, &pod).await {
                        let name = pod.metadata.name.as_deref().unwrap_or_default();
                        tracing::warn!(pod = name, error = %e, "pod sync failed");
                    }
                }
            })
            .await;
        // Pods that vanished from the API (force-deleted): tear their sandboxes down.
        if let Ok(entries) = std::fs::read_dir(rt.dir.join("pods")) {
            for entry in entries.flatten() {
                let gone = entry.file_name().to_string_lossy().to_string();
                if !live.contains(&gone) && rt.begin_termination(&gone) {
                    let rt = rt.clone();
                    tokio::spawn(async move {
                        teardown_pod(&rt.dir, &rt.cni, &gone, Duration::from_secs(2)).await;
                        rt.end_termination(&gone);
                    });
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => { feeder.abort(); return Ok(()) }
            _ = rt.changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// Restart bookkeeping of one container, as upstream's: the delay to wait after the next exit, counted from the
/// exit that set it.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    since: chrono::DateTime<chrono::Utc>,
}

/// What the restart policy says of an exited container now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    Now,
    /// Still backing off, for this long (the current delay).
    Wait(Duration),
}

impl PodRuntime {
    fn restart_decision(&self, key: &str, finished_at: chrono::DateTime<chrono::Utc>) -> Restart {
        let mut restarts = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
        decide(&mut restarts, key, finished_at, chrono::Utc::now())
    }
}

fn decide(
    restarts: &mut HashMap<String, Backoff>,
    key: &str,
    finished_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Restart {
    let fresh = Backoff { delay: BACKOFF_START, since: finished_at };
    let Some(backoff) = restarts.get_mut(key) else {
        restarts.insert(key.to_string(), fresh);
        return Restart::Now;
    };
    if backoff.since == finished_at {
        // This exit already restarted the container once (a start that failed): keep its slot.
        return Restart::Now;
    }
    let expired = (finished_at - backoff.since).to_std().is_ok_and(|d| d > BACKOFF_MAX * 2);
    if expired {
        *backoff = fresh;
        return Restart::Now;
    }
    let until = finished_at + chrono::Duration::from_std(backoff.delay).unwrap_or_default();
    if now < until {
        return Restart::Wait(backoff.delay);
    }
    backoff.delay = (backoff.delay * 2).min(BACKOFF_MAX);
    backoff.since = finished_at;
    Restart::Now
}

async fn sync_pod(rt: &Arc<PodRuntime>, pod: &Pod) -> anyhow::Result<()> {
    let uid = uid(pod);
    let dir = rt.pod_dir(&uid);
    if pod.metadata.deletion_timestamp.is_some() {
        if rt.begin_termination(&uid) {
            let rt = rt.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                if let Err(e) = terminate(&rt, &pod).await {
                    tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), error = %e, "pod termination failed");
                }
                rt.end_termination(&uid);
            });
        }
        return Ok(());
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if matches!(phase.as_str(), "Succeeded" | "Failed") {
        rt.probes.forget_pod(&uid);
        return Ok(());
    }
    let ip = ensure_sandbox(rt, pod, &dir).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    let mut statuses = Vec::new();
    for container in &spec.containers {
        statuses.push(sync_container(rt, pod, container, &dir, &ip, &policy).await);
    }
    report_status(rt, pod, &ip, &policy, statuses).await
}

/// A deleted pod: stop its containers within its grace period, release its sandbox, remove the object.
async fn terminate(rt: &PodRuntime, pod: &Pod) -> anyhow::Result<()> {
    let uid = uid(pod);
    rt.probes.forget_pod(&uid);
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
    for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        rt.event(pod, &container.name, EventType::Normal, "Killing", format!("Stopping container {}", container.name));
    }
    teardown_pod(&rt.dir, &rt.cni, &uid, Duration::from_secs(grace)).await;
    let pods: Api<Pod> = Api::namespaced(rt.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    match pods.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
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

/// The attempts of a container so far, oldest first: `<pod dir>/containers/<name>/<n>/`.
pub(crate) fn attempts(dir: &Path, name: &str) -> Vec<(u32, PathBuf)> {
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

/// One `containerStatuses` entry.
fn container_status(
    pod: &Pod,
    container: &Container,
    state: Value,
    health: probes::Health,
    count: u32,
    last: Value,
) -> Value {
    json!({
        "name": container.name,
        "image": container.image.clone().unwrap_or_default(),
        "imageID": "",
        "containerID": format!("skiff://{}-{}", uid(pod), container.name),
        "state": state,
        "ready": health.ready,
        "started": health.started,
        "restartCount": count,
        "lastState": last,
    })
}

/// The reason the API has for a waiting container, if any.
fn waiting_reason(pod: &Pod, container: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

const NOT_STARTED: probes::Health = probes::Health { started: false, ready: false };

/// Starts, restarts or leaves one container; returns its `containerStatuses` entry.
async fn sync_container(
    rt: &PodRuntime,
    pod: &Pod,
    container: &Container,
    dir: &Path,
    ip: &str,
    policy: &str,
) -> Value {
    let name = &container.name;
    let key = format!("{}/{name}", uid(pod));
    let tries = attempts(dir, name);
    let latest = tries.last().map(|(n, p)| (*n, p.clone(), skiff_runtime::inspect(p).unwrap_or(State::Unknown)));
    let last_state = tries
        .len()
        .checked_sub(2)
        .and_then(|i| skiff_runtime::inspect(&tries[i].1).ok())
        .map(|s| state_json(&s))
        .unwrap_or_else(|| json!({}));
    let restart_count = tries.len().saturating_sub(1) as u32;
    let status = |state: Value, health, count, last| container_status(pod, container, state, health, count, last);
    match &latest {
        None => {}
        Some((attempt, state_dir, state @ State::Running { started_at, .. })) => {
            let health = rt.probes.observe(probes::Instance {
                key,
                attempt: *attempt,
                target: probes::check::Target {
                    pod_ip: ip.to_string(),
                    container: container.clone(),
                    state_dir: state_dir.clone(),
                },
                started_at: *started_at,
                pod: container_ref(pod, name),
                grace: grace_period(pod),
            });
            return status(state_json(state), health, restart_count, last_state);
        }
        Some((_, _, state @ State::Exited { code, finished_at, .. })) => {
            rt.probes.forget(&key);
            let wants = policy == "Always" || (policy == "OnFailure" && *code != 0);
            if !wants {
                return status(state_json(state), NOT_STARTED, restart_count, last_state);
            }
            if let Restart::Wait(delay) = rt.restart_decision(&key, *finished_at) {
                let waiting = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off {}s restarting failed container={name} pod={}_{}({})", delay.as_secs(),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(), uid(pod))}});
                return status(waiting, NOT_STARTED, restart_count, state_json(state));
            }
        }
        Some((_, _, State::Unknown)) => {
            return status(json!({"waiting": {"reason": "ContainerCreating"}}), NOT_STARTED, restart_count, last_state);
        }
    }
    let attempt = latest.as_ref().map_or(0, |(n, _, _)| n + 1);
    let last_state = latest.as_ref().map_or(last_state, |(_, _, s)| state_json(s));
    match start_container(rt, pod, container, dir, ip, attempt).await {
        Ok(()) => {
            let image = container.image.clone().unwrap_or_default();
            rt.event(
                pod,
                name,
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            rt.event(pod, name, EventType::Normal, "Created", format!("Created container: {name}"));
            rt.event(pod, name, EventType::Normal, "Started", format!("Started container {name}"));
            // Report the running instance at once rather than on the next pass.
            let started = attempts(dir, name).pop();
            if let Some((n, state_dir)) = started
                && n == attempt
                && let Ok(State::Running { started_at, .. }) = skiff_runtime::inspect(&state_dir)
            {
                let state = State::Running { pid: 0, started_at };
                let health = rt.probes.observe(probes::Instance {
                    key,
                    attempt,
                    target: probes::check::Target { pod_ip: ip.to_string(), container: container.clone(), state_dir },
                    started_at,
                    pod: container_ref(pod, name),
                    grace: grace_period(pod),
                });
                return status(state_json(&state), health, attempt, last_state);
            }
            status(json!({"waiting": {"reason": "ContainerCreating"}}), NOT_STARTED, attempt, last_state)
        }
        Err(StartError::Image(e)) => {
            let reason = if tries.is_empty() { e.reason() } else { "ImagePullBackOff" };
            if tries.is_empty() && waiting_reason(pod, name).as_deref() != Some(reason) {
                rt.event(pod, name, EventType::Warning, "Failed", format!("Error: {reason}: {e}"));
            }
            status(
                json!({"waiting": {"reason": reason, "message": e.to_string()}}),
                NOT_STARTED,
                restart_count,
                last_state,
            )
        }
        Err(StartError::Other(message)) => status(
            json!({"waiting": {"reason": "CreateContainerError", "message": message}}),
            NOT_STARTED,
            restart_count,
            last_state,
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_restarts_at_once_then_waits_ten_seconds_doubling() {
        let mut restarts = HashMap::new();
        let t0 = chrono::Utc::now();
        let secs = |s: i64| chrono::Duration::seconds(s);
        assert_eq!(decide(&mut restarts, "c", t0, t0), Restart::Now, "the first restart is immediate");
        assert_eq!(
            decide(&mut restarts, "c", t0, t0 + secs(1)),
            Restart::Now,
            "a failed start of that restart retries"
        );
        let t1 = t0 + secs(2);
        assert_eq!(decide(&mut restarts, "c", t1, t1 + secs(1)), Restart::Wait(BACKOFF_START));
        assert_eq!(decide(&mut restarts, "c", t1, t1 + secs(10)), Restart::Now);
        let t2 = t1 + secs(11);
        assert_eq!(decide(&mut restarts, "c", t2, t2 + secs(15)), Restart::Wait(Duration::from_secs(20)));
        assert_eq!(decide(&mut restarts, "c", t2, t2 + secs(20)), Restart::Now);
        // After a run of more than ten minutes the backoff starts over.
        let t3 = t2 + secs(700);
        assert_eq!(decide(&mut restarts, "c", t3, t3), Restart::Now);
        let t4 = t3 + secs(1);
        assert_eq!(decide(&mut restarts, "c", t4, t4), Restart::Wait(BACKOFF_START));
    }
}

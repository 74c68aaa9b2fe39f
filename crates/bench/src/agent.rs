//! The node agent scenario, on SQLite: `skiff server --disable-agent` plus a separate `skiff agent` process (so the
//! agent's memory is measured alone), both inside the network namespace the benchmark made for itself
//! ([`enter_private_network`]), so the pod bridge, veths and pod IPs never touch the host's network.
//!
//! A run creates pods of the catalog's `agnhost pause` image one at a time and times each from just before its
//! create request until a watcher on its own connection sees the pod's Ready condition turn true ([`ready`]);
//! then it fills the node to the density target at once and waits until every pod is Ready. It reads the agent's
//! RSS idle (node registered, no pods) and at full density, and the proportional set size (PSS) of every
//! container supervisor and container process the agent started — the node's memory per pod beyond the agent.
//! Afterwards `skiff teardown` removes every pod, namespace, link and CNI allocation.

pub mod ready;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};

use crate::BenchError;
use crate::process::helper::Helper;
use crate::process::{Skiff, free_port};
use crate::run::mib;
use crate::stats::percentile;

/// The Node the agent registers.
const NODE: &str = "bench-node";
/// The namespace the pods go in.
const NAMESPACE: &str = "default";
/// How long one pod may take to become Ready in the latency phase.
const POD_DEADLINE: Duration = Duration::from_secs(60);
/// How long the density phase may take to get every pod Ready.
const FILL_DEADLINE: Duration = Duration::from_secs(300);

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub skiff: PathBuf,
    pub work_dir: PathBuf,
    pub runs: usize,
    /// Pods created one at a time, each timed until Ready.
    pub latency_pods: usize,
    /// Pods on the node at the end of a run (the latency pods included).
    pub density_pods: usize,
    /// How long the processes idle before an RSS reading.
    pub settle: Duration,
}

/// One run of the scenario.
#[derive(Clone, Debug)]
pub struct AgentSample {
    pub ready_p50_ms: f64,
    pub ready_p99_ms: f64,
    pub ready_max_ms: f64,
    /// From the first create of the density phase until every pod was Ready.
    pub fill_ms: f64,
    /// Pods Ready at the end.
    pub pods_ready: usize,
    pub agent_idle_rss_kib: u64,
    pub agent_full_rss_kib: u64,
    pub agent_peak_rss_kib: u64,
    /// PSS of the supervisors and container processes, summed, divided by the pods.
    pub node_pss_per_pod_kib: f64,
    pub server_full_rss_kib: u64,
}

impl AgentSample {
    /// The agent's growth per pod from idle to full density.
    pub fn agent_rss_per_pod_kib(&self) -> f64 {
        (self.agent_full_rss_kib as f64 - self.agent_idle_rss_kib as f64) / self.pods_ready.max(1) as f64
    }
}

/// Moves the whole benchmark process into a fresh network namespace of its own with only `lo` up, before any
/// thread exists (every thread and child made afterwards inherits it); it disappears when the process exits.
pub fn enter_private_network() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unsharing the network namespace (the agent scenario needs root): {e}"))?;
    let status = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("bringing up lo in the benchmark's network namespace: {other:?}")),
    }
}

/// Runs the scenario `settings.runs` times, each on a fresh server and agent.
pub async fn bench_agent(settings: &AgentSettings) -> Result<Vec<AgentSample>, BenchError> {
    let mut samples = Vec::with_capacity(settings.runs);
    for run in 1..=settings.runs {
        let s = one_run(settings).await?;
        eprintln!(
            "[agent] run {run}/{}: create → Ready p50 {:.1} ms p99 {:.1} ms; {} pods Ready ({:.1} s to fill); agent \
             RSS {:.1} → {:.1} MiB; {:.0} KiB PSS per pod beyond the agent",
            settings.runs,
            s.ready_p50_ms,
            s.ready_p99_ms,
            s.pods_ready,
            s.fill_ms / 1000.0,
            mib(s.agent_idle_rss_kib),
            mib(s.agent_full_rss_kib),
            s.node_pss_per_pod_kib
        );
        samples.push(s);
    }
    Ok(samples)
}

async fn one_run(settings: &AgentSettings) -> Result<AgentSample, BenchError> {
    let (server, _) = Skiff::start_with(&settings.skiff, &settings.work_dir, None, &[]).await?;
    let data_dir = server.dir().join("data");
    let mut agent = Helper::agent(
        &settings.skiff,
        &server.kubeconfig(),
        &data_dir,
        NODE,
        free_port()?,
        &server.dir().join("agent.log"),
        "warn",
        &[],
    )?;
    let result = drive_run(settings, &server, &mut agent, &data_dir.join("agent")).await;
    let result = result.map_err(|e| match agent.check_running() {
        Err(exited) => exited,
        Ok(()) => e,
    });
    agent.stop();
    let teardown = crate::process::teardown(&settings.skiff, &data_dir);
    server.stop();
    teardown.and(result)
}

async fn drive_run(
    settings: &AgentSettings,
    server: &Skiff,
    agent: &mut Helper,
    agent_dir: &Path,
) -> Result<AgentSample, BenchError> {
    let admin = server.client().await?;
    wait_for_node(&admin, agent).await?;
    tokio::time::sleep(settings.settle).await;
    agent.check_running()?;
    let agent_idle_rss_kib = agent.rss_kib()?;

    let mut watch = ready::watch(server.client().await?, NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let mut latencies = Vec::with_capacity(settings.latency_pods);
    for i in 0..settings.latency_pods {
        let name = format!("lat-{i}");
        let sent = Instant::now();
        pods.create(&PostParams::default(), &pause_pod(&name)).await?;
        let ready = watch.wait_for(&name, sent + POD_DEADLINE).await?;
        latencies.push(crate::load::signed_ms(sent, ready));
    }

    let fill = settings.density_pods.saturating_sub(settings.latency_pods);
    let started = Instant::now();
    for i in 0..fill {
        pods.create(&PostParams::default(), &pause_pod(&format!("fill-{i}"))).await?;
    }
    let mut last = started;
    for i in 0..fill {
        // A pod that never gets Ready ends the fill: the density is what was Ready by then.
        match watch.wait_for(&format!("fill-{i}"), started + FILL_DEADLINE).await {
            Ok(at) => last = last.max(at),
            Err(BenchError::Check(why)) => {
                eprintln!("[agent] filling the node stopped: {why}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let pods_ready = watch.ready_count();
    watch.stop();
    tokio::time::sleep(settings.settle).await;
    agent.check_running()?;
    let node_pss = supervised_pss_kib(agent_dir);
    let p = |q: f64| percentile(&latencies, q).unwrap_or(f64::NAN);
    Ok(AgentSample {
        ready_p50_ms: p(50.0),
        ready_p99_ms: p(99.0),
        ready_max_ms: p(100.0),
        fill_ms: crate::load::signed_ms(started, last),
        pods_ready,
        agent_idle_rss_kib,
        agent_full_rss_kib: agent.rss_kib()?,
        agent_peak_rss_kib: agent.peak_rss_kib()?,
        node_pss_per_pod_kib: node_pss as f64 / pods_ready.max(1) as f64,
        server_full_rss_kib: server.rss_kib()?,
    })
}

/// Waits until the agent's Node is Ready (it has registered, got a pod CIDR and heartbeats).
async fn wait_for_node(client: &kube::Client, agent: &mut Helper) -> Result<(), BenchError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        agent.check_running()?;
        if let Some(node) = nodes.get_opt(NODE).await? {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && node.spec.and_then(|s| s.pod_cidr).is_some() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::NotReady { what: "the agent's Node", secs: 30, log: agent.log_tail() });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pause_pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "pause", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53", "args": ["pause"]}]
        }
    }))
    .unwrap_or_default()
}

/// The summed PSS (KiB) of every container supervisor (`skiff shim supervise <dir under agent_dir>`) and of
/// their children, the container processes.
fn supervised_pss_kib(agent_dir: &Path) -> u64 {
    let needle = agent_dir.to_string_lossy().into_owned();
    let processes: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The parent pid is the second field after the parenthesised command name.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, cmdline))
        })
        .collect();
    let supervisors: Vec<u32> = processes
        .iter()
        .filter(|(_, _, cmd)| cmd.contains(" shim supervise ") && cmd.contains(&needle))
        .map(|(pid, _, _)| *pid)
        .collect();
    processes
        .iter()
        .filter(|(pid, ppid, _)| supervisors.contains(pid) || supervisors.contains(ppid))
        .filter_map(|(pid, _, _)| {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            crate::process::parse_status_kib(&rollup, "Pss:")
        })
        .sum()
}

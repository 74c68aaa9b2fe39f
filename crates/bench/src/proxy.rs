//! The proxy scenario, on SQLite: `skiff server --disable-agent` plus a separate `skiff agent` (whose proxy
//! programs the nftables table), inside the benchmark's private network namespace, with every endpoint inside a
//! second namespace of the benchmark's own ([`network`]). For each size (Services × endpoints each):
//!
//! 1. the Services and their EndpointSlices are written first ([`objects`]); then the agent starts, and the time
//!    from its spawn until a connection to the last Service's ClusterIP is answered is the **full sync** from an
//!    empty table (the agent's own log gives the `nft` apply time of that sync);
//! 2. **programming latency**: one endpoint of a random Service is replaced by a new address (one EndpointSlice
//!    write, as a pod replacement makes); the time from just before that write until a connection to the
//!    ClusterIP is answered by the new endpoint ([`probe::until_reached`]);
//! 3. **first-packet latency**: TCP handshakes to random ClusterIPs against handshakes straight to endpoint
//!    addresses;
//! 4. at the smallest size, **data plane throughput**: `wrk` against an agnhost `netexec` pod through its
//!    ClusterIP and straight to its pod IP, alternating.
//!
//! The agent's RSS is read after the full sync and at the end. Afterwards `skiff teardown` removes the table.

pub mod network;
pub mod objects;
pub mod probe;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use rand::{Rng, SeedableRng};

use crate::BenchError;
use crate::process::helper::Helper;
use crate::process::{Skiff, free_port};
use crate::stats::{median, percentile};

/// The Node the agent registers.
const NODE: &str = "bench-node";
/// The server's default Service CIDR.
const SERVICE_CIDR: &str = "10.43.0.0/16";
/// Replacement endpoints are numbered from here in [`network::ENDPOINTS`] (10.203.0.0), past every initial one.
const REPLACEMENTS: u32 = 3 << 16;
/// How long one change may take to reach its new endpoint.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// How long the agent may take to program a full table.
const FULL_SYNC_DEADLINE: Duration = Duration::from_secs(300);

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub skiff: PathBuf,
    pub work_dir: PathBuf,
    /// Service counts, one fresh server and agent each.
    pub sizes: Vec<usize>,
    pub endpoints_per_service: usize,
    /// Endpoint changes timed per size.
    pub changes: usize,
    /// TCP handshakes timed per size and path.
    pub handshakes: usize,
    /// Seconds per `wrk` run (three per path); 0 skips the throughput step.
    pub wrk_seconds: u64,
    pub concurrency: usize,
    pub settle: Duration,
    pub seed: u64,
}

/// What one size measured.
#[derive(Clone, Debug, Default)]
pub struct ProxySample {
    pub services: usize,
    /// Writing every Service and slice (before the agent starts).
    pub populate_ms: f64,
    /// Agent spawn until the last Service's ClusterIP answered.
    pub full_sync_ms: f64,
    /// The agent's own account of applying that first, full sync (`nft -f`), when its log had it.
    pub full_apply_ms: Option<f64>,
    /// The agent's account of applying each partial sync after that (`nft -f`), in ms.
    pub partial_apply_ms: Vec<f64>,
    /// EndpointSlice write → the new endpoint answered through the ClusterIP.
    pub programming_ms: Vec<f64>,
    pub handshake_cluster_ip_ms: Vec<f64>,
    pub handshake_direct_ms: Vec<f64>,
    pub agent_rss_kib: u64,
    /// After the endpoint changes.
    pub agent_rss_after_changes_kib: u64,
    pub agent_peak_rss_kib: u64,
    /// Per alternating run: (direct, ClusterIP).
    pub wrk: Vec<(probe::Wrk, probe::Wrk)>,
}

impl ProxySample {
    pub fn programming(&self, p: f64) -> f64 {
        percentile(&self.programming_ms, p).unwrap_or(f64::NAN)
    }

    pub fn partial_apply(&self, p: f64) -> f64 {
        percentile(&self.partial_apply_ms, p).unwrap_or(f64::NAN)
    }

    pub fn handshake_cluster_ip(&self, p: f64) -> f64 {
        percentile(&self.handshake_cluster_ip_ms, p).unwrap_or(f64::NAN)
    }

    pub fn handshake_direct(&self, p: f64) -> f64 {
        percentile(&self.handshake_direct_ms, p).unwrap_or(f64::NAN)
    }

    /// Medians over the wrk runs: (direct, ClusterIP) requests/s and p99.
    pub fn wrk_medians(&self) -> Option<(probe::Wrk, probe::Wrk)> {
        let m = |f: fn(&(probe::Wrk, probe::Wrk)) -> f64| median(&self.wrk.iter().map(f).collect::<Vec<_>>());
        Some((
            probe::Wrk { requests_per_sec: m(|w| w.0.requests_per_sec)?, p99_ms: m(|w| w.0.p99_ms)? },
            probe::Wrk { requests_per_sec: m(|w| w.1.requests_per_sec)?, p99_ms: m(|w| w.1.p99_ms)? },
        ))
    }
}

/// Runs every size, each on a fresh server and agent. Must run in the benchmark's private network namespace.
pub async fn bench_proxy(settings: &ProxySettings) -> Result<Vec<ProxySample>, BenchError> {
    let _network = network::EndpointNetwork::create(SERVICE_CIDR)?;
    let mut samples = Vec::with_capacity(settings.sizes.len());
    // The per-packet path does not depend on the table's size (one verdict map lookup; the handshakes show it), so
    // throughput is measured where the proxy's own syncs disturb it least: at the smallest size.
    let smallest = settings.sizes.iter().copied().min().unwrap_or(0);
    for &services in &settings.sizes {
        let s = one_size(settings, services, services == smallest && settings.wrk_seconds > 0).await?;
        eprintln!(
            "[proxy] {services} Services: full sync {:.0} ms (nft apply {}); change → new endpoint p50 {:.1} ms p99 \
             {:.1} ms; handshake ClusterIP p50 {:.3} ms p99 {:.3} ms (direct {:.3}/{:.3}); agent RSS {:.1} MiB",
            s.full_sync_ms,
            s.full_apply_ms.map_or("?".to_string(), |ms| format!("{ms:.0} ms")),
            s.programming(50.0),
            s.programming(99.0),
            s.handshake_cluster_ip(50.0),
            s.handshake_cluster_ip(99.0),
            s.handshake_direct(50.0),
            s.handshake_direct(99.0),
            crate::run::mib(s.agent_rss_kib),
        );
        samples.push(s);
    }
    Ok(samples)
}

async fn one_size(settings: &ProxySettings, services: usize, throughput: bool) -> Result<ProxySample, BenchError> {
    let (server, _) = Skiff::start_with(&settings.skiff, &settings.work_dir, None, &[]).await?;
    let data_dir = server.dir().join("data");
    let result = async {
        let mut clients = Vec::with_capacity(settings.concurrency);
        for _ in 0..settings.concurrency {
            clients.push(server.client().await?);
        }
        let started = Instant::now();
        let ips = objects::create_all(clients, services, settings.endpoints_per_service).await?;
        let populate_ms = started.elapsed().as_secs_f64() * 1000.0;
        let log = server.dir().join("agent.log");
        let spawned = Instant::now();
        let port = free_port()?;
        let mut agent = Helper::agent(
            &settings.skiff,
            &server.kubeconfig(),
            &data_dir,
            NODE,
            port,
            &log,
            "warn,skiff_proxy=debug",
            &[],
        )?;
        let outcome = drive(settings, &server, &mut agent, &ips, throughput, spawned).await;
        let outcome = outcome.map_err(|e| match agent.check_running() {
            Err(exited) => exited,
            Ok(()) => e,
        });
        agent.stop();
        let (full_apply_ms, partial_apply_ms) =
            std::fs::read_to_string(&log).map(|l| apply_times_ms(&l)).unwrap_or_default();
        outcome.map(|s| ProxySample { populate_ms, full_apply_ms, partial_apply_ms, ..s })
    }
    .await;
    let teardown = crate::process::teardown(&settings.skiff, &data_dir);
    server.stop();
    teardown.and(result)
}

async fn drive(
    settings: &ProxySettings,
    server: &Skiff,
    agent: &mut Helper,
    ips: &[Ipv4Addr],
    throughput: bool,
    spawned: Instant,
) -> Result<ProxySample, BenchError> {
    let n = ips.len();
    let per = settings.endpoints_per_service;
    // Full sync: every rule goes in one transaction, so the last Service answering means all of them do.
    let last = SocketAddr::from((ips[n - 1], 80));
    let any_of_last: Vec<Ipv4Addr> = (0..per).map(|j| objects::initial_endpoint(n - 1, j, per)).collect();
    let deadline = spawned + FULL_SYNC_DEADLINE;
    let full_at = loop {
        agent.check_running()?;
        let round = futures::future::join_all((0..4).map(|_| probe::reached(last))).await;
        if round.iter().flatten().any(|ip| any_of_last.contains(ip)) {
            break Instant::now();
        }
        if Instant::now() > deadline {
            return Err(BenchError::NotReady { what: "the full sync", secs: 300, log: agent.log_tail() });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let full_sync_ms = full_at.duration_since(spawned).as_secs_f64() * 1000.0;
    tokio::time::sleep(settings.settle).await;
    let agent_rss_kib = agent.rss_kib()?;

    // Programming latency: one endpoint of a random Service replaced, until the new one answers.
    let client = server.client().await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let mut current: HashMap<usize, Vec<Ipv4Addr>> = HashMap::new();
    let mut programming_ms = Vec::with_capacity(settings.changes);
    for k in 0..settings.changes {
        let i = rng.random_range(0..n);
        let addresses =
            current.entry(i).or_insert_with(|| (0..per).map(|j| objects::initial_endpoint(i, j, per)).collect());
        let new = network::endpoint(REPLACEMENTS + u32::try_from(k).unwrap_or(0));
        addresses[rng.random_range(0..per)] = new;
        let sent = Instant::now();
        objects::set_endpoints(&client, i, addresses).await?;
        let reached = probe::until_reached(SocketAddr::from((ips[i], 80)), new, sent + CHANGE_DEADLINE).await;
        let at = reached.ok_or_else(|| {
            BenchError::Check(format!("{new} never answered for {} within 10 s", objects::service_name(i)))
        })?;
        programming_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0);
        // Far enough apart that no two changes share a sync.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let agent_rss_after_changes_kib = agent.rss_kib()?;

    // First packets: handshakes through random ClusterIPs, then straight to random endpoint addresses.
    let picks: Vec<usize> = (0..settings.handshakes).map(|_| rng.random_range(0..n)).collect();
    let targets: Vec<SocketAddr> = picks.iter().map(|i| SocketAddr::from((ips[*i], 80))).collect();
    let direct: Vec<SocketAddr> = picks
        .iter()
        .map(|i| SocketAddr::from((objects::initial_endpoint(*i, rng.random_range(0..per), per), network::PORT)))
        .collect();
    let (handshake_cluster_ip_ms, handshake_direct_ms) = tokio::task::spawn_blocking(move || {
        Ok::<_, BenchError>((
            probe::handshake_times(targets.len(), |k| targets[k])?,
            probe::handshake_times(direct.len(), |k| direct[k])?,
        ))
    })
    .await??;

    let wrk = if throughput { throughput_runs(settings, server, agent).await? } else { Vec::new() };
    Ok(ProxySample {
        services: n,
        full_sync_ms,
        programming_ms,
        handshake_cluster_ip_ms,
        handshake_direct_ms,
        agent_rss_kib,
        agent_rss_after_changes_kib,
        agent_peak_rss_kib: agent.peak_rss_kib()?,
        wrk,
        ..Default::default()
    })
}

/// An agnhost `netexec` pod behind a Service, measured with wrk straight to its pod IP and through its ClusterIP,
/// alternating, three times each.
async fn throughput_runs(
    settings: &ProxySettings,
    server: &Skiff,
    agent: &mut Helper,
) -> Result<Vec<(probe::Wrk, probe::Wrk)>, BenchError> {
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), objects::NAMESPACE);
    let services: Api<Service> = Api::namespaced(client, objects::NAMESPACE);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            // Thousands of Services would be thousands of environment variables, past what exec takes.
            "enableServiceLinks": false,
            "containers": [{
                "name": "netexec",
                "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                "args": ["netexec", "--http-port=8080"],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
            }]
        }
    }))?;
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 8080}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let created = services.create(&PostParams::default(), &service).await?;
    let cluster_ip = created.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(300);
    let pod_ip = loop {
        agent.check_running()?;
        let pod = pods.get("web").await?;
        let status = pod.status.unwrap_or_default();
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if let (true, Some(ip)) = (ready, status.pod_ip) {
            break ip;
        }
        if Instant::now() > deadline {
            return Err(BenchError::NotReady { what: "the netexec pod", secs: 300, log: agent.log_tail() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The Service's rules follow the pod's readiness; give them a moment before the first run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seconds = settings.wrk_seconds;
    tokio::task::spawn_blocking(move || {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let direct = probe::wrk(&format!("http://{pod_ip}:8080/hostname"), seconds, 16)?;
            let through = probe::wrk(&format!("http://{cluster_ip}:8080/hostname"), seconds, 16)?;
            runs.push((direct, through));
        }
        Ok(runs)
    })
    .await?
}

/// The `elapsed` the proxy logged for each sync (`service rules applied elapsed=… full=…`), in ms: the first full
/// one, and every partial one.
pub fn apply_times_ms(log: &str) -> (Option<f64>, Vec<f64>) {
    let mut full = None;
    let mut partial = Vec::new();
    for line in log.lines().map(strip_ansi).filter(|l| l.contains("service rules applied")) {
        let Some(ms) =
            line.split("elapsed=").nth(1).and_then(|v| v.split_whitespace().next()).and_then(debug_duration_ms)
        else {
            continue;
        };
        if line.contains("full=true") {
            full = full.or(Some(ms));
        } else {
            partial.push(ms);
        }
    }
    (full, partial)
}

/// `line` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `Duration`'s Debug form (`812.3µs`, `1.5ms`, `2.1s`, `900ns`) in ms.
fn debug_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "ns" => 1e-6,
        "µs" | "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1000.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_apply_times_are_read_from_the_agent_log() {
        let log = "2026-12-07T02:00:00Z DEBUG skiff_proxy::sync: service rules applied elapsed=1.25s full=true \
                   counts=(10000, 110000, 20003)\n\
                   2026-12-07T02:00:02Z DEBUG skiff_proxy::sync: service rules applied elapsed=3.1ms full=false";
        assert_eq!(apply_times_ms(log), (Some(1250.0), vec![3.1]));
        assert_eq!(debug_duration_ms("812.5µs"), Some(0.8125));
        assert_eq!(apply_times_ms("nothing here"), (None, vec![]));
        let coloured = "\u{1b}[2mskiff_proxy::sync\u{1b}[0m service rules applied \u{1b}[3melapsed\u{1b}[0m\u{1b}[2m=\u{1b}[0m2ms \
                        \u{1b}[3mfull\u{1b}[0m\u{1b}[2m=\u{1b}[0mtrue";
        assert_eq!(apply_times_ms(coloured), (Some(2.0), vec![]));
    }
}

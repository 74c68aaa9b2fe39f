//! The DNS scenario, on SQLite: `skiff server --disable-agent` plus a separate `skiff agent --disable-proxy`
//! (so that its memory is the cluster DNS's and the node's, not the proxy's), inside the benchmark's private
//! network namespace, where the agent's DNS server listens on 127.0.0.1:53. Side by side, on 127.0.0.2 and
//! 127.0.0.3, Knot DNS and Unbound from Debian hold the same records ([`servers`]). For each size:
//!
//! 1. that many ClusterIP Services (port `http`, one endpoint each) are written; the agent starts, and the time
//!    until its DNS answers the last Service's name is its **sync**;
//! 2. **change visibility**: a Service is created, and the time from just before the write until its name
//!    resolves to its ClusterIP is taken; it is deleted, and the time until the name is NXDOMAIN; repeated;
//! 3. **throughput**: `dnsperf` (16 clients, as fast as it goes) asks every server the A, SRV and PTR questions of
//!    every Service in a shuffled order, alternating between servers, `runs` times each;
//! 4. **latency at half load**: `dnsperf -v` at half of Skiff's median throughput, for every server, gives each
//!    question's latency;
//! 5. **memory**: each server's anonymous RSS (`RssAnon`: heap and stacks, not the file-backed pages of its
//!    program, which a larger load pages in once whatever the number of records) after the load, less the same
//!    with no Services (a baseline run), per record; the whole RSS is reported beside it. Skiff's is read once it
//!    stops falling (its allocator returns freed pages over about a second), with its live heap from
//!    `skiff_allocator_allocated_bytes`.

pub mod probe;
pub mod servers;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::BenchError;
use crate::process::helper::Helper;
use crate::process::{Skiff, free_port};
use crate::stats::median;
use servers::{CServer, Kind, RECORDS_PER_SERVICE, ServiceRecords};

/// The Node the agent registers.
const NODE: &str = "bench-dns-node";
/// Where the agent's DNS server listens (the agent's `--node-ip` is 127.0.0.1).
const SKIFF_DNS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 53);
/// Where the agent's metrics listen.
const SKIFF_METRICS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9153);
/// How long a change may take to become visible.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    pub skiff: PathBuf,
    pub work_dir: PathBuf,
    /// Service counts, one fresh server and agent each.
    pub sizes: Vec<usize>,
    /// dnsperf runs per server and size.
    pub runs: usize,
    /// Seconds per dnsperf run.
    pub seconds: u64,
    /// Seconds of the half-load latency run.
    pub half_load_seconds: u64,
    /// Services created and deleted per size, each timed until visible.
    pub changes: usize,
    pub concurrency: usize,
    pub settle: Duration,
    pub seed: u64,
}

/// One server at one size.
#[derive(Clone, Debug, Default)]
pub struct ServerResult {
    pub name: String,
    pub queries_per_sec: Vec<f64>,
    pub lost_percent: Vec<f64>,
    /// Each question's latency at half of Skiff's throughput, in ms.
    pub half_load_latencies_ms: Vec<f64>,
    pub half_load_rate: u64,
    /// After the load.
    pub memory: Memory,
    /// With no Services, after a short load.
    pub baseline: Memory,
}

/// A process's resident memory, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// All of it (`VmRSS`).
    pub rss_kib: u64,
    /// Its anonymous part (`RssAnon`): heap and stacks, without the program's file-backed pages (the code a
    /// larger load runs for the first time is paged in once, whatever the number of records).
    pub anon_kib: u64,
}

impl Memory {
    /// Both, from one reading of `/proc/PID/status`.
    pub fn of(pid: u32) -> Result<Memory, BenchError> {
        let status = crate::process::proc_status(pid)?;
        let field = |key| crate::process::parse_status_kib(&status, key).ok_or(BenchError::NoRss { pid });
        Ok(Memory { rss_kib: field("VmRSS:")?, anon_kib: field("RssAnon:")? })
    }
}

impl ServerResult {
    pub fn qps(&self) -> f64 {
        median(&self.queries_per_sec).unwrap_or(f64::NAN)
    }

    pub fn latency(&self, p: f64) -> f64 {
        crate::stats::percentile(&self.half_load_latencies_ms, p).unwrap_or(f64::NAN)
    }

    /// Bytes of anonymous RSS per record, over the baseline.
    pub fn bytes_per_record(&self, records: usize) -> f64 {
        (self.memory.anon_kib as f64 - self.baseline.anon_kib as f64) * 1024.0 / records.max(1) as f64
    }
}

/// What one size measured.
#[derive(Clone, Debug, Default)]
pub struct DnsSample {
    pub services: usize,
    pub records: usize,
    pub populate_ms: f64,
    /// Agent spawn until its DNS answered the last Service.
    pub sync_ms: f64,
    /// Service create → its name resolves, in ms.
    pub create_visible_ms: Vec<f64>,
    /// Service delete → its name is NXDOMAIN, in ms.
    pub delete_visible_ms: Vec<f64>,
    /// The agent's memory after its sync, before any question.
    pub skiff_synced: Memory,
    /// The agent's heap after its sync and after the load (zeros when unread).
    pub skiff_heap: (probe::Heap, probe::Heap),
    /// Skiff first, then the C servers that are installed.
    pub servers: Vec<ServerResult>,
}

/// The baselines: every server with no Services, after a short load.
struct Baselines {
    skiff: Memory,
    c: Vec<(Kind, Memory)>,
}

/// The C servers to compare with (those installed).
fn c_servers() -> Vec<Kind> {
    [Kind::Knot, Kind::Unbound].into_iter().filter(|k| k.installed()).collect()
}

/// Worker threads per server: one per core, as Skiff's UDP listener has.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every size. Must run in the benchmark's private network namespace.
pub async fn bench_dns(settings: &DnsSettings) -> Result<Vec<DnsSample>, BenchError> {
    for kind in [Kind::Knot, Kind::Unbound] {
        if !kind.installed() {
            eprintln!("[dns] {} is not installed (apt-get install knot unbound); it is left out", kind.name());
        }
    }
    let baselines = baselines(settings).await?;
    let mut samples = Vec::with_capacity(settings.sizes.len());
    for &services in &settings.sizes {
        let s = one_size(settings, services, &baselines).await?;
        let line: Vec<String> = s
            .servers
            .iter()
            .map(|r| {
                format!(
                    "{} {:.0} q/s, p99 {:.3} ms at {} q/s, {:.0} B/record",
                    r.name,
                    r.qps(),
                    r.latency(99.0),
                    r.half_load_rate,
                    r.bytes_per_record(s.records)
                )
            })
            .collect();
        eprintln!(
            "[dns] {services} Services: sync {:.0} ms, Skiff's heap {} synced, {} loaded; create visible p50 {:.1} ms, delete p50 {:.1} ms; {}",
            s.sync_ms,
            s.skiff_heap.0,
            s.skiff_heap.1,
            median(&s.create_visible_ms).unwrap_or(f64::NAN),
            median(&s.delete_visible_ms).unwrap_or(f64::NAN),
            line.join("; ")
        );
        samples.push(s);
    }
    Ok(samples)
}

/// The agent's memory once it has stopped falling: read every 250 ms until two readings of its anonymous RSS a
/// second apart differ by less than 1 % (at most 10 s), since the allocator returns freed pages to the system
/// over about a second.
async fn settled_memory(agent: &Helper) -> Result<Memory, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut readings = vec![Memory::of(agent.pid())?];
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Memory::of(agent.pid())?;
        readings.push(now);
        let second_ago = readings[readings.len().saturating_sub(5)].anon_kib as f64;
        let settled = readings.len() >= 5 && (second_ago - now.anon_kib as f64).abs() < second_ago * 0.01;
        if settled || Instant::now() > deadline {
            return Ok(now);
        }
    }
}

/// A file of dnsperf questions.
fn questions_file(dir: &Path, name: &str, lines: &[String]) -> Result<PathBuf, BenchError> {
    let path = dir.join(name);
    let mut text = String::with_capacity(lines.len() * 48);
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    std::fs::write(&path, text).map_err(|source| BenchError::Io { what: "writing", path: path.clone(), source })?;
    Ok(path)
}

/// The agent of a run, with no proxy and no upstream resolvers.
fn start_agent(settings: &DnsSettings, server: &Skiff) -> Result<Helper, BenchError> {
    let resolv_conf = server.dir().join("resolv.conf");
    std::fs::write(&resolv_conf, "# skiff-bench: no upstream resolvers\n").map_err(|source| BenchError::Io {
        what: "writing",
        path: resolv_conf.clone(),
        source,
    })?;
    let resolv_conf = resolv_conf.to_string_lossy().into_owned();
    Helper::agent(
        &settings.skiff,
        &server.kubeconfig(),
        &server.dir().join("data"),
        NODE,
        free_port()?,
        &server.dir().join("agent.log"),
        "warn",
        &["--disable-proxy", "--resolv-conf", &resolv_conf],
    )
}

/// Waits until `check` holds for the answer to `name` from `server`; the moment it did.
async fn until_answer(
    server: SocketAddr,
    name: String,
    deadline: Instant,
    check: impl Fn(&probe::Answer) -> bool + Send + 'static,
) -> Option<Instant> {
    tokio::task::spawn_blocking(move || {
        loop {
            if probe::ask(server, &name).as_ref().is_some_and(&check) {
                return Some(Instant::now());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    })
    .await
    .ok()
    .flatten()
}

/// Stops the agent and the server, removing whatever the agent made; `result` unless the teardown failed.
fn finish<T>(
    settings: &DnsSettings,
    server: Skiff,
    agent: Helper,
    result: Result<T, BenchError>,
) -> Result<T, BenchError> {
    agent.stop();
    let teardown = crate::process::teardown(&settings.skiff, &server.dir().join("data"));
    server.stop();
    teardown.and(result)
}

async fn baselines(settings: &DnsSettings) -> Result<Baselines, BenchError> {
    let (server, _) = Skiff::start_with(&settings.skiff, &settings.work_dir, None, &[]).await?;
    let mut agent = start_agent(settings, &server)?;
    let name = "kubernetes.default.svc.cluster.local".to_string();
    let answered =
        until_answer(SKIFF_DNS, name.clone(), Instant::now() + Duration::from_secs(60), |a| !a.addresses.is_empty())
            .await;
    let result = async {
        if answered.is_none() {
            agent.check_running()?;
            return Err(BenchError::NotReady { what: "the agent's DNS", secs: 60, log: agent.log_tail() });
        }
        let file = questions_file(server.dir(), "baseline.txt", &[format!("{name} A")])?;
        let short = settings.seconds.min(3);
        probe::dnsperf(SKIFF_DNS, &file, short, None, false)?;
        tokio::time::sleep(settings.settle).await;
        let skiff = settled_memory(&agent).await?;
        let heap = probe::heap(SKIFF_METRICS).unwrap_or_default();
        eprintln!(
            "[dns] no Services: Skiff's RSS {} KiB ({} KiB anonymous), heap {heap}",
            skiff.rss_kib, skiff.anon_kib
        );
        let apex = questions_file(server.dir(), "apex.txt", &["cluster.local SOA".to_string()])?;
        let mut c = Vec::new();
        for kind in c_servers() {
            let running = CServer::start(kind, &settings.work_dir, &[], threads())?;
            probe::dnsperf(kind.address(), &apex, short, None, false)?;
            c.push((kind, running.memory()?));
        }
        Ok(Baselines { skiff, c })
    }
    .await;
    finish(settings, server, agent, result)
}

async fn one_size(settings: &DnsSettings, services: usize, baselines: &Baselines) -> Result<DnsSample, BenchError> {
    let (server, _) = Skiff::start_with(&settings.skiff, &settings.work_dir, None, &[]).await?;
    let mut clients = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency {
        clients.push(server.client().await?);
    }
    let started = Instant::now();
    let ips = crate::proxy::objects::create_all(clients, services, 1).await?;
    let populate_ms = started.elapsed().as_secs_f64() * 1000.0;
    let records: Vec<ServiceRecords> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| ServiceRecords {
            name: format!("{}.{}.svc.cluster.local", crate::proxy::objects::service_name(i), "default"),
            cluster_ip: *ip,
        })
        .collect();
    let spawned = Instant::now();
    let mut agent = start_agent(settings, &server)?;
    let result = async {
        let last = records.last().cloned().ok_or_else(|| BenchError::Check("no Services".into()))?;
        let want = last.cluster_ip;
        let synced = until_answer(SKIFF_DNS, last.name.clone(), spawned + Duration::from_secs(300), move |a| {
            a.addresses.contains(&want)
        })
        .await;
        let Some(synced) = synced else {
            agent.check_running()?;
            return Err(BenchError::NotReady { what: "the agent's DNS", secs: 300, log: agent.log_tail() });
        };
        let sync_ms = synced.duration_since(spawned).as_secs_f64() * 1000.0;
        tokio::time::sleep(settings.settle).await;
        let skiff_synced = settled_memory(&agent).await?;
        let synced_heap = probe::heap(SKIFF_METRICS).unwrap_or_default();
        let (create_visible_ms, delete_visible_ms) = changes(settings, &server).await?;

        let mut lines: Vec<String> = records
            .iter()
            .flat_map(|r| [format!("{} A", r.name), format!("{} SRV", r.srv_name()), format!("{} PTR", r.ptr_name())])
            .collect();
        lines.shuffle(&mut rand::rngs::StdRng::seed_from_u64(settings.seed));
        let file = questions_file(server.dir(), "questions.txt", &lines)?;
        let mut running = Vec::new();
        for kind in c_servers() {
            running.push(CServer::start(kind, &settings.work_dir, &records, threads())?);
        }
        let mut targets: Vec<(String, SocketAddr)> = vec![("skiff".into(), SKIFF_DNS)];
        targets.extend(running.iter().map(|c| (c.kind.name().to_string(), c.kind.address())));
        let mut results: Vec<ServerResult> =
            targets.iter().map(|(name, _)| ServerResult { name: name.clone(), ..Default::default() }).collect();
        let seconds = settings.seconds;
        for _ in 0..settings.runs.max(1) {
            for ((_, address), result) in targets.iter().zip(results.iter_mut()) {
                let (address, file) = (*address, file.clone());
                let run =
                    tokio::task::spawn_blocking(move || probe::dnsperf(address, &file, seconds, None, false)).await??;
                result.queries_per_sec.push(run.queries_per_sec);
                result.lost_percent.push(run.lost_percent);
            }
        }
        let rate = (results[0].qps() / 2.0).max(1.0) as u64;
        for ((_, address), result) in targets.iter().zip(results.iter_mut()) {
            let (address, file, seconds) = (*address, file.clone(), settings.half_load_seconds);
            let run = tokio::task::spawn_blocking(move || probe::dnsperf(address, &file, seconds, Some(rate), true))
                .await??;
            result.half_load_latencies_ms = run.latencies_ms;
            result.half_load_rate = rate;
        }
        results[0].memory = settled_memory(&agent).await?;
        let loaded_heap = probe::heap(SKIFF_METRICS).unwrap_or_default();
        results[0].baseline = baselines.skiff;
        for (result, c) in results.iter_mut().skip(1).zip(&running) {
            result.memory = c.memory()?;
            result.baseline = baselines.c.iter().find(|(k, _)| *k == c.kind).map_or_else(Memory::default, |(_, m)| *m);
        }
        Ok(DnsSample {
            services,
            records: services * RECORDS_PER_SERVICE,
            populate_ms,
            sync_ms,
            create_visible_ms,
            delete_visible_ms,
            skiff_synced,
            skiff_heap: (synced_heap, loaded_heap),
            servers: results,
        })
    }
    .await;
    let result = result.map_err(|e| match agent.check_running() {
        Err(exited) => exited,
        Ok(()) => e,
    });
    finish(settings, server, agent, result)
}

/// Creates and deletes Services one at a time, timing each until Skiff's DNS shows it.
async fn changes(settings: &DnsSettings, server: &Skiff) -> Result<(Vec<f64>, Vec<f64>), BenchError> {
    let api: Api<Service> = Api::namespaced(server.client().await?, crate::proxy::objects::NAMESPACE);
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    for k in 0..settings.changes {
        let name = format!("dns-change-{k}");
        let fqdn = format!("{name}.default.svc.cluster.local");
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80}]}
        }))?;
        let sent = Instant::now();
        let made = api.create(&PostParams::default(), &service).await?;
        let ip: std::net::Ipv4Addr = made
            .spec
            .and_then(|s| s.cluster_ip)
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| BenchError::Check(format!("{name} got no ClusterIP")))?;
        let seen = until_answer(SKIFF_DNS, fqdn.clone(), sent + CHANGE_DEADLINE, move |a| a.addresses.contains(&ip))
            .await
            .ok_or_else(|| BenchError::Check(format!("{fqdn} did not resolve within 10 s")))?;
        created.push(seen.duration_since(sent).as_secs_f64() * 1000.0);
        let sent = Instant::now();
        api.delete(&name, &DeleteParams::default()).await?;
        let gone = until_answer(SKIFF_DNS, fqdn.clone(), sent + CHANGE_DEADLINE, |a| {
            a.code == hickory_proto::op::ResponseCode::NXDomain
        })
        .await
        .ok_or_else(|| BenchError::Check(format!("{fqdn} still resolved 10 s after its delete")))?;
        deleted.push(gone.duration_since(sent).as_secs_f64() * 1000.0);
    }
    Ok((created, deleted))
}

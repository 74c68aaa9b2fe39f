//! `skiff-bench`: starts the release `skiff` binary on SQLite and on an etcd of its own, drives it through kube-rs
//! and prints a table of medians next to the targets. It prints numbers; it is not a pass/fail test.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-bench
//! target/release/skiff-bench --services 10000 --runs 5 --load-runs 3
//! target/release/skiff-bench --scenarios controllers --ctl-services 1000 --ctl-pods 10 --ctl-runs 3
//! target/release/skiff-bench --scenarios agent --agent-runs 3
//! target/release/skiff-bench --scenarios proxy --proxy-sizes 100,1000,10000
//! target/release/skiff-bench --scenarios dns --dns-sizes 1000,10000
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use skiff_bench::agent::{self, AgentSettings};
use skiff_bench::controllers::{self, CtlSettings};
use skiff_bench::dns::{self, DnsSettings};
use skiff_bench::proxy::{self, ProxySettings};
use skiff_bench::report;
use skiff_bench::run::{self, Datastore, Settings};

/// `EX_USAGE` from sysexits.h.
const EXIT_USAGE: u8 = 64;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// The API server: start-up, creates, LISTs, watch delivery (on every datastore).
    Api,
    /// The controllers in a separate process: EndpointSlice convergence and readiness latency (on SQLite).
    Controllers,
    /// The node agent in a separate process, in a network namespace of the benchmark's own: pod create → Ready
    /// latency, density and memory.
    Agent,
    /// The node agent's proxy, in network namespaces of the benchmark's own: full sync, programming latency,
    /// first-packet latency and throughput through ClusterIPs.
    Proxy,
    /// The node agent's cluster DNS beside Knot DNS and Unbound with the same records: dnsperf throughput and
    /// latency, memory per record, change visibility.
    Dns,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    match s.trim() {
        "api" => Ok(Scenario::Api),
        "controllers" => Ok(Scenario::Controllers),
        "agent" => Ok(Scenario::Agent),
        "proxy" => Ok(Scenario::Proxy),
        "dns" => Ok(Scenario::Dns),
        other => Err(format!("unknown scenario {other:?} (expected api, controllers, agent, proxy or dns)")),
    }
}

#[derive(Parser, Debug)]
#[command(name = "skiff-bench", about = "Benchmark skiff server on SQLite and etcd; prints a table of numbers")]
struct Args {
    /// The skiff binary to measure.
    #[arg(long, default_value = "target/release/skiff")]
    skiff: PathBuf,
    /// The etcd binary for the etcd runs.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Scenarios to run, comma-separated, in this order: api, controllers, agent, proxy, dns (agent, proxy and
    /// dns need root).
    #[arg(long, default_value = "api,controllers", value_delimiter = ',', value_parser = parse_scenario)]
    scenarios: Vec<Scenario>,
    /// Datastores the api scenario measures, comma-separated: sqlite, etcd.
    #[arg(long, default_value = "sqlite,etcd", value_delimiter = ',', value_parser = Datastore::parse)]
    datastores: Vec<Datastore>,
    /// Start-up runs per datastore (fresh data dir each; every load run adds one more start-up sample).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Load runs per datastore (a fresh server each).
    #[arg(long, default_value_t = 1)]
    load_runs: usize,
    /// Services to create per load run (half of them land in the namespace that is LISTed).
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Concurrent clients creating Services (one connection each).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// LISTs per load run (the p50 is reported).
    #[arg(long, default_value_t = 5)]
    lists: usize,
    /// Services created one by one under a watch, for the delivery latency.
    #[arg(long, default_value_t = 500)]
    watch_events: usize,
    /// Milliseconds a server idles before its RSS is read.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Agent scenario: runs (a fresh server and agent each).
    #[arg(long, default_value_t = 3)]
    agent_runs: usize,
    /// Agent scenario: pods created one at a time, each timed until Ready.
    #[arg(long, default_value_t = 100)]
    agent_latency_pods: usize,
    /// Agent scenario: pods on the node at the end of a run (upstream's default limit is 110).
    #[arg(long, default_value_t = 110)]
    agent_density_pods: usize,
    /// Controllers scenario: runs (a fresh server and controllers process each).
    #[arg(long, default_value_t = 1)]
    ctl_runs: usize,
    /// Controllers scenario: Services (each selecting its own pods).
    #[arg(long, default_value_t = 1000)]
    ctl_services: usize,
    /// Controllers scenario: pods per Service.
    #[arg(long, default_value_t = 10)]
    ctl_pods: usize,
    /// Controllers scenario: readiness flips of random pods, one at a time.
    #[arg(long, default_value_t = 500)]
    ctl_flips: usize,
    /// Controllers scenario: seed of the random choice of pods to flip.
    #[arg(long, default_value_t = 1)]
    ctl_seed: u64,
    /// Proxy scenario: Service counts, comma-separated (a fresh server and agent each).
    #[arg(long, default_value = "100,1000,10000", value_delimiter = ',')]
    proxy_sizes: Vec<usize>,
    /// Proxy scenario: endpoints per Service.
    #[arg(long, default_value_t = 10)]
    proxy_endpoints: usize,
    /// Proxy scenario: endpoint changes timed per size.
    #[arg(long, default_value_t = 200)]
    proxy_changes: usize,
    /// Proxy scenario: TCP handshakes timed per size and path.
    #[arg(long, default_value_t = 2000)]
    proxy_handshakes: usize,
    /// Proxy scenario: seconds per wrk run at the smallest size (0 skips wrk).
    #[arg(long, default_value_t = 5)]
    proxy_wrk_seconds: u64,
    /// DNS scenario: Service counts, comma-separated (a fresh server and agent each).
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    dns_sizes: Vec<usize>,
    /// DNS scenario: dnsperf runs per server and size (alternating between servers).
    #[arg(long, default_value_t = 3)]
    dns_runs: usize,
    /// DNS scenario: seconds per dnsperf run.
    #[arg(long, default_value_t = 10)]
    dns_seconds: u64,
    /// DNS scenario: seconds of the half-load latency run per server.
    #[arg(long, default_value_t = 4)]
    dns_half_load_seconds: u64,
    /// DNS scenario: Services created and deleted per size, each timed until the DNS shows it.
    #[arg(long, default_value_t = 50)]
    dns_changes: usize,
    /// Parent directory of the temporary data dirs (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let reason = e.to_string();
            let line = reason.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("skiff-bench: {}", line.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !args.skiff.exists() {
        eprintln!("skiff-bench: {} does not exist (cargo build --release -p skiff)", args.skiff.display());
        return ExitCode::from(EXIT_USAGE);
    }
    if args.scenarios.contains(&Scenario::Api) && args.datastores.contains(&Datastore::Etcd) && !args.etcd.exists() {
        eprintln!(
            "skiff-bench: {} does not exist (apt-get install etcd-server, or --datastores sqlite)",
            args.etcd.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if args.scenarios.iter().any(|s| matches!(s, Scenario::Agent | Scenario::Proxy | Scenario::Dns))
        && let Err(e) = agent::enter_private_network()
    {
        eprintln!("skiff-bench: {e}");
        return ExitCode::FAILURE;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("skiff-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> anyhow::Result<String> {
    let skiff = std::fs::canonicalize(&args.skiff)?;
    let work_dir = args.work_dir.unwrap_or_else(std::env::temp_dir);
    let settings = Settings {
        skiff: skiff.clone(),
        etcd: args.etcd,
        work_dir: work_dir.clone(),
        start_runs: args.runs,
        load_runs: args.load_runs,
        services: args.services,
        concurrency: args.concurrency.max(1),
        lists: args.lists.max(1),
        watch_events: args.watch_events.max(1),
        settle: Duration::from_millis(args.settle_ms),
    };
    let node = AgentSettings {
        skiff: skiff.clone(),
        work_dir: work_dir.clone(),
        runs: args.agent_runs.max(1),
        latency_pods: args.agent_latency_pods,
        density_pods: args.agent_density_pods.max(args.agent_latency_pods),
        settle: Duration::from_millis(args.settle_ms),
    };
    let proxy = ProxySettings {
        skiff: skiff.clone(),
        work_dir: work_dir.clone(),
        sizes: args.proxy_sizes.iter().copied().filter(|n| *n > 0).collect(),
        endpoints_per_service: args.proxy_endpoints.max(1),
        changes: args.proxy_changes,
        handshakes: args.proxy_handshakes,
        wrk_seconds: args.proxy_wrk_seconds,
        concurrency: args.concurrency.max(1),
        settle: Duration::from_millis(args.settle_ms),
        seed: args.ctl_seed,
    };
    let dns = DnsSettings {
        skiff: skiff.clone(),
        work_dir: work_dir.clone(),
        sizes: args.dns_sizes.iter().copied().filter(|n| *n > 0).collect(),
        runs: args.dns_runs.max(1),
        seconds: args.dns_seconds.max(1),
        half_load_seconds: args.dns_half_load_seconds.max(1),
        changes: args.dns_changes,
        concurrency: args.concurrency.max(1),
        settle: Duration::from_millis(args.settle_ms),
        seed: args.ctl_seed,
    };
    let ctl = CtlSettings {
        skiff,
        work_dir,
        runs: args.ctl_runs,
        services: args.ctl_services,
        pods: args.ctl_pods.max(1),
        flips: args.ctl_flips,
        concurrency: args.concurrency.max(1),
        settle: Duration::from_millis(args.settle_ms),
        seed: args.ctl_seed,
    };
    let mut out = Vec::new();
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Api => {
                let mut results = Vec::new();
                for datastore in &args.datastores {
                    let r = run::bench_datastore(&settings, *datastore)
                        .await
                        .map_err(|e| anyhow::anyhow!(e).context(format!("benchmarking on {}", datastore.name())))?;
                    results.push(r);
                }
                out.push(report::render(&settings, &results));
            }
            Scenario::Controllers => {
                let samples = controllers::bench_controllers(&ctl)
                    .await
                    .map_err(|e| anyhow::anyhow!(e).context("benchmarking the controllers"))?;
                out.push(report::controllers::render(&ctl, &samples));
            }
            Scenario::Agent => {
                let samples = agent::bench_agent(&node)
                    .await
                    .map_err(|e| anyhow::anyhow!(e).context("benchmarking the agent"))?;
                out.push(report::agent::render(&node, &samples));
            }
            Scenario::Proxy => {
                let samples = proxy::bench_proxy(&proxy)
                    .await
                    .map_err(|e| anyhow::anyhow!(e).context("benchmarking the proxy"))?;
                out.push(report::proxy::render(&proxy, &samples));
            }
            Scenario::Dns => {
                let samples =
                    dns::bench_dns(&dns).await.map_err(|e| anyhow::anyhow!(e).context("benchmarking the DNS"))?;
                out.push(report::dns::render(&dns, &samples));
            }
        }
    }
    Ok(out.join("\n"))
}

//! One datastore's benchmark: start-up runs (fresh server, time to `/readyz`, idle RSS) and load runs (a fresh
//! server each, then creates, LISTs and watch latency, then RSS again), with an etcd of its own per server for the
//! etcd datastore. Progress goes to stderr; the samples come back as [`DatastoreResults`].

use std::path::PathBuf;
use std::time::Duration;

use crate::BenchError;
use crate::load;
use crate::process::Skiff;
use crate::process::etcd::Etcd;
use crate::stats::percentile;

/// Where the API server keeps its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datastore {
    /// Embedded SQLite in the data dir (the default).
    Sqlite,
    /// An etcd v3 started by the benchmark.
    Etcd,
}

impl Datastore {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Etcd => "etcd",
        }
    }

    /// Parses `sqlite` or `etcd`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "sqlite" => Ok(Self::Sqlite),
            "etcd" => Ok(Self::Etcd),
            other => Err(format!("unknown datastore {other:?} (expected sqlite or etcd)")),
        }
    }
}

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct Settings {
    pub skiff: PathBuf,
    pub etcd: PathBuf,
    /// Parent of the temporary data dirs.
    pub work_dir: PathBuf,
    /// Start-up-only runs (each load run adds one more start-up sample).
    pub start_runs: usize,
    pub load_runs: usize,
    pub services: usize,
    pub concurrency: usize,
    pub lists: usize,
    pub watch_events: usize,
    /// How long a server idles before its RSS is read.
    pub settle: Duration,
}

/// One server start.
#[derive(Clone, Debug)]
pub struct StartSample {
    pub ready_ms: f64,
    pub idle_rss_kib: u64,
}

/// One load run, already reduced to its percentiles.
#[derive(Clone, Debug)]
pub struct LoadSample {
    pub creates_per_s: f64,
    pub create_p50_ms: f64,
    pub create_p99_ms: f64,
    pub create_max_ms: f64,
    pub list_p50_ms: f64,
    pub list_items: usize,
    pub list_bytes: usize,
    pub watch_p50_ms: f64,
    pub watch_p99_ms: f64,
    pub watch_from_request_p50_ms: f64,
    pub watch_from_request_p99_ms: f64,
    pub rss_after_kib: u64,
    pub etcd_rss_kib: Option<u64>,
}

/// Everything measured on one datastore.
#[derive(Clone, Debug)]
pub struct DatastoreResults {
    pub datastore: Datastore,
    pub starts: Vec<StartSample>,
    pub loads: Vec<LoadSample>,
}

/// Runs all start-up and load runs on `datastore`.
pub async fn bench_datastore(settings: &Settings, datastore: Datastore) -> Result<DatastoreResults, BenchError> {
    let mut results = DatastoreResults { datastore, starts: Vec::new(), loads: Vec::new() };
    for run in 1..=settings.start_runs {
        let etcd = start_etcd(settings, datastore).await?;
        let (server, ready) = start_skiff(settings, etcd.as_ref()).await?;
        let sample = settle_and_sample(settings, &server, ready).await?;
        eprintln!(
            "[{}] start-up run {run}/{}: /readyz after {:.1} ms, idle RSS {:.1} MiB",
            datastore.name(),
            settings.start_runs,
            sample.ready_ms,
            mib(sample.idle_rss_kib)
        );
        results.starts.push(sample);
        server.stop();
    }
    for run in 1..=settings.load_runs {
        let etcd = start_etcd(settings, datastore).await?;
        let (server, ready) = start_skiff(settings, etcd.as_ref()).await?;
        results.starts.push(settle_and_sample(settings, &server, ready).await?);
        let sample = load_run(settings, &server, etcd.as_ref()).await?;
        eprintln!(
            "[{}] load run {run}/{}: {:.0} creates/s, p50 {:.2} ms, p99 {:.2} ms; LIST {} in {:.1} ms; \
             watch p50 {:.2} ms p99 {:.2} ms; RSS after {:.1} MiB",
            datastore.name(),
            settings.load_runs,
            sample.creates_per_s,
            sample.create_p50_ms,
            sample.create_p99_ms,
            sample.list_items,
            sample.list_p50_ms,
            sample.watch_p50_ms,
            sample.watch_p99_ms,
            mib(sample.rss_after_kib)
        );
        results.loads.push(sample);
        server.stop();
    }
    Ok(results)
}

async fn start_etcd(settings: &Settings, datastore: Datastore) -> Result<Option<Etcd>, BenchError> {
    match datastore {
        Datastore::Sqlite => Ok(None),
        Datastore::Etcd => Ok(Some(Etcd::start(&settings.etcd, &settings.work_dir).await?)),
    }
}

async fn start_skiff(settings: &Settings, etcd: Option<&Etcd>) -> Result<(Skiff, Duration), BenchError> {
    let endpoint = etcd.map(Etcd::endpoint);
    Skiff::start(&settings.skiff, &settings.work_dir, endpoint.as_deref()).await
}

async fn settle_and_sample(settings: &Settings, server: &Skiff, ready: Duration) -> Result<StartSample, BenchError> {
    tokio::time::sleep(settings.settle).await;
    Ok(StartSample { ready_ms: ready.as_secs_f64() * 1000.0, idle_rss_kib: server.rss_kib()? })
}

async fn load_run(settings: &Settings, server: &Skiff, etcd: Option<&Etcd>) -> Result<LoadSample, BenchError> {
    let admin = server.client().await?;
    load::create_namespaces(&admin).await?;

    let mut clients = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency.max(1) {
        clients.push(server.client().await?);
    }
    let creates = load::create_services(clients, settings.services).await?;
    let lat = &creates.latencies_ms;
    let pct = |p| percentile(lat, p).unwrap_or(f64::NAN);

    let lists = load::list_services(&admin, load::LOAD_NAMESPACES[0], settings.lists.max(1)).await?;
    let expected = load::listed_count(settings.services);
    if lists.items != expected {
        return Err(BenchError::Check(format!("LIST returned {} Services, expected {expected}", lists.items)));
    }

    let watch = load::watch_latency(server.client().await?, admin.clone(), settings.watch_events.max(1)).await?;
    drop(admin);
    tokio::time::sleep(settings.settle).await;
    Ok(LoadSample {
        creates_per_s: settings.services as f64 / creates.wall.as_secs_f64().max(1e-9),
        create_p50_ms: pct(50.0),
        create_p99_ms: pct(99.0),
        create_max_ms: pct(100.0),
        list_p50_ms: percentile(&lists.latencies_ms, 50.0).unwrap_or(f64::NAN),
        list_items: lists.items,
        list_bytes: lists.bytes,
        watch_p50_ms: percentile(&watch.after_response_ms, 50.0).unwrap_or(f64::NAN),
        watch_p99_ms: percentile(&watch.after_response_ms, 99.0).unwrap_or(f64::NAN),
        watch_from_request_p50_ms: percentile(&watch.after_request_ms, 50.0).unwrap_or(f64::NAN),
        watch_from_request_p99_ms: percentile(&watch.after_request_ms, 99.0).unwrap_or(f64::NAN),
        rss_after_kib: server.rss_kib()?,
        etcd_rss_kib: etcd.map(Etcd::rss_kib).transpose()?,
    })
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_names_round_trip() {
        for ds in [Datastore::Sqlite, Datastore::Etcd] {
            assert_eq!(Datastore::parse(ds.name()), Ok(ds));
        }
        assert!(Datastore::parse("postgres").is_err());
        assert_eq!(mib(2048), 2.0);
    }
}

//! The controllers scenario, on SQLite: `skiff server --disable-controllers` plus a separate `skiff controllers`
//! process (so the controllers' memory is measured alone). The benchmark creates a Ready Node, Services and pods
//! bound to it, and plays the kubelet by patching pod status ([`drive`]); a watcher on its own connection follows
//! the EndpointSlices ([`slices`]). A run reports how long until every Service's slices list all its pods as
//! ready, then the latency from a pod's readiness patch until its slice shows the change, and the RSS of both
//! processes before and after.

pub mod drive;
pub mod objects;
pub mod slices;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::process::Skiff;
use crate::process::helper::Helper;
use crate::run::mib;
use crate::stats::percentile;
use drive::Step;
use slices::Readiness;

/// How long the Services may take to converge after the last write before the run fails.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(180);

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct CtlSettings {
    pub skiff: PathBuf,
    pub work_dir: PathBuf,
    pub runs: usize,
    pub services: usize,
    /// Pods per Service.
    pub pods: usize,
    pub flips: usize,
    /// Concurrent writers in the load phase.
    pub concurrency: usize,
    /// How long the processes idle before an RSS reading.
    pub settle: Duration,
    pub seed: u64,
}

/// One run of the scenario.
#[derive(Clone, Debug)]
pub struct CtlSample {
    /// Creating the Services and pods and patching every pod Ready (wall time of the writes).
    pub writes_ms: f64,
    /// From the first Service create until every Service's slices list all its pods as ready.
    pub converged_ms: f64,
    /// From the last Ready patch's response until then.
    pub converged_after_writes_ms: f64,
    pub flip_p50_ms: f64,
    pub flip_p99_ms: f64,
    pub flip_max_ms: f64,
    pub flip_after_response_p50_ms: f64,
    pub flip_after_response_p99_ms: f64,
    pub ctl_idle_rss_kib: u64,
    pub ctl_rss_after_kib: u64,
    pub ctl_peak_rss_kib: u64,
    pub server_idle_rss_kib: u64,
    pub server_rss_after_kib: u64,
}

/// Runs the scenario `settings.runs` times, each on a fresh server and controllers process.
pub async fn bench_controllers(settings: &CtlSettings) -> Result<Vec<CtlSample>, BenchError> {
    let mut samples = Vec::with_capacity(settings.runs);
    for run in 1..=settings.runs {
        let s = one_run(settings).await?;
        eprintln!(
            "[controllers] run {run}/{}: {} Services × {} pods ready {:.0} ms after the first create ({:.0} ms after \
             the last write); flips p50 {:.2} ms p99 {:.2} ms; controllers RSS {:.1} → {:.1} MiB (peak {:.1}), \
             server {:.1} MiB",
            settings.runs,
            settings.services,
            settings.pods,
            s.converged_ms,
            s.converged_after_writes_ms,
            s.flip_p50_ms,
            s.flip_p99_ms,
            mib(s.ctl_idle_rss_kib),
            mib(s.ctl_rss_after_kib),
            mib(s.ctl_peak_rss_kib),
            mib(s.server_rss_after_kib)
        );
        samples.push(s);
    }
    Ok(samples)
}

async fn one_run(settings: &CtlSettings) -> Result<CtlSample, BenchError> {
    let (server, _) = Skiff::start_with(&settings.skiff, &settings.work_dir, None, &["--disable-controllers"]).await?;
    let mut controllers =
        Helper::controllers(&settings.skiff, &server.kubeconfig(), &server.dir().join("controllers.log"))?;
    let result = drive_run(settings, &server, &mut controllers).await;
    let result = result.map_err(|e| match controllers.check_running() {
        Err(exited) => exited,
        Ok(()) => e,
    });
    controllers.stop();
    server.stop();
    result
}

async fn drive_run(settings: &CtlSettings, server: &Skiff, controllers: &mut Helper) -> Result<CtlSample, BenchError> {
    tokio::time::sleep(settings.settle).await;
    controllers.check_running()?;
    let ctl_idle_rss_kib = controllers.rss_kib()?;
    let server_idle_rss_kib = server.rss_kib()?;

    let admin = server.client().await?;
    drive::create_namespace_and_node(&admin).await?;
    let (mut rx, watcher) = slices::watch(server.client().await?, objects::NAMESPACE).await?;
    let mut clients = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency.max(1) {
        clients.push(server.client().await?);
    }
    let (services, pods) = (settings.services, settings.pods.max(1));
    let started = Instant::now();
    drive::run_step(&clients, Step::Service, services, pods).await?;
    drive::run_step(&clients, Step::Pod, services * pods, pods).await?;
    drive::run_step(&clients, Step::Ready, services * pods, pods).await?;
    let written = Instant::now();
    drop(clients);

    let mut readiness = Readiness::new(pods);
    let deadline = written + CONVERGE_DEADLINE;
    let mut converged = started;
    while readiness.services_at_target() < services {
        let waiting =
            format!("{services} Services with {pods} ready endpoints each ({} so far)", readiness.services_at_target());
        let (arrived, update) = slices::next(&mut rx, deadline, &waiting).await?;
        readiness.apply(&update);
        converged = arrived;
    }

    let flips = drive::flip(&admin, &mut rx, services, pods, settings.flips, settings.seed).await?;
    watcher.abort();
    drop(admin);
    tokio::time::sleep(settings.settle).await;
    controllers.check_running()?;
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    Ok(CtlSample {
        writes_ms: ms(written - started),
        converged_ms: crate::load::signed_ms(started, converged),
        converged_after_writes_ms: crate::load::signed_ms(written, converged),
        flip_p50_ms: p(&flips.after_request_ms, 50.0),
        flip_p99_ms: p(&flips.after_request_ms, 99.0),
        flip_max_ms: p(&flips.after_request_ms, 100.0),
        flip_after_response_p50_ms: p(&flips.after_response_ms, 50.0),
        flip_after_response_p99_ms: p(&flips.after_response_ms, 99.0),
        ctl_idle_rss_kib,
        ctl_rss_after_kib: controllers.rss_kib()?,
        ctl_peak_rss_kib: controllers.peak_rss_kib()?,
        server_idle_rss_kib,
        server_rss_after_kib: server.rss_kib()?,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

//! Prints SQLite timings (not assertions): sequential create latency, concurrent create throughput, list of
//! 5,000 keys. Run with `cargo test -p skiff-store --release --test sqlite_timings -- --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::{ListOptions, SqliteStore, Store};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark that prints numbers; run with `cargo test --release -- --ignored --nocapture`"]
async fn sqlite_timings() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"))?);
    let value = vec![b'x'; 1024];

    let n = 10_000;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let ns = if i % 2 == 0 { "default" } else { "kube-system" };
        store.create(&format!("/registry/configmaps/{ns}/cm-{i:05}"), value.clone()).await?;
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    println!(
        "sqlite: {n} sequential creates in {total:?}: p50 {:?} p99 {:?} max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );

    let tasks = 16;
    let per = 500;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                store.create(&format!("/registry/pods/ns{t}/pod-{i:05}"), value.clone()).await?;
            }
            Ok::<_, skiff_store::StoreError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let total = start.elapsed();
    println!(
        "sqlite: {} concurrent creates ({tasks} tasks) in {total:?}: {:.0}/s",
        tasks * per,
        (tasks * per) as f64 / total.as_secs_f64()
    );

    for _ in 0..2 {
        let opts = ListOptions { prefix: "/registry/configmaps/default/".into(), ..Default::default() };
        let t = Instant::now();
        let page = store.list(&opts).await?;
        println!(
            "sqlite: list of {} keys (of {} in the store) in {:?}",
            page.items.len(),
            n + tasks * per,
            t.elapsed()
        );
    }
    let opts = ListOptions { prefix: "/registry/configmaps/".into(), limit: 500, ..Default::default() };
    let t = Instant::now();
    let page = store.list(&opts).await?;
    println!("sqlite: first page of 500 of {n} keys in {:?} (more: {})", t.elapsed(), page.more);
    let t = Instant::now();
    for i in 0..1000 {
        store.get(&format!("/registry/configmaps/default/cm-{:05}", 2 * i)).await?;
    }
    println!("sqlite: 1000 gets in {:?}", t.elapsed());
    Ok(())
}

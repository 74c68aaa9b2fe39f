//! The process's allocator: jemalloc, tuned so that memory a burst frees (the first LIST of thousands of
//! objects, decoded page by page) goes back to the system within a second, where glibc kept it in its
//! per-thread arenas; and its statistics on `/metrics`, so that live data and what the allocator holds around it
//! can be told apart.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A background thread returns unused dirty pages after 1 s (jemalloc's default is 10 s, and only on allocation
/// without the thread). Call before any other thread exists, so every arena made later takes the same decay.
pub fn tune() {
    use tikv_jemalloc_ctl::{Access, AsName, background_thread};
    const DECAY_MS: isize = 1000;
    let _ = b"arenas.dirty_decay_ms\0".name().write(DECAY_MS);
    let _ = b"arena.0.dirty_decay_ms\0".name().write(DECAY_MS);
    if let Err(e) = background_thread::write(true) {
        tracing::debug!(error = %e, "jemalloc's background thread is unavailable");
    }
}

/// Turns the calling thread's cache of freed memory off and has it allocate from arena 0, which every thread
/// of the process so treated shares. jemalloc keeps up to a few hundred freed objects of each size for each
/// thread, to hand back without a lock: in the node agent that held about 2 MiB across its threads and grew by
/// 1.3 MiB more under a DNS load (the `dns` benchmark, 10,000 Services), for no throughput it could measure,
/// since the DNS answer path allocates nothing on a cache hit. And it gives threads arenas of their own, four
/// per core, each with its own partly used pages: the agent's anonymous memory with no Services fell from
/// 3.0 to 2.3 MiB with one arena (the same benchmark, `_RJEM_MALLOC_CONF=narenas:1`).
pub fn lean_thread() {
    use tikv_jemalloc_ctl::{Access, AsName};
    if let Err(e) = b"thread.tcache.enabled\0".name().write(false) {
        tracing::debug!(error = %e, "jemalloc's thread cache stays on");
    }
    if let Err(e) = b"thread.arena\0".name().write(0u32) {
        tracing::debug!(error = %e, "the thread keeps its own jemalloc arena");
    }
}

/// Adds the allocator's statistics to the process's metrics.
pub fn register_metrics() {
    skiff_metrics::register_collector(Box::new(Statistics));
}

/// Reads one of jemalloc's statistics.
type Reading = fn() -> tikv_jemalloc_ctl::Result<usize>;

/// `skiff_allocator_*_bytes`, read from jemalloc on every scrape.
#[derive(Debug)]
struct Statistics;

impl Collector for Statistics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The statistics are a snapshot taken when the epoch moves on.
        if epoch::advance().is_err() {
            return Ok(());
        }
        let readings: [(&str, &str, Reading); 4] = [
            (
                "skiff_allocator_allocated",
                "Bytes the process has allocated and not freed (its live heap).",
                stats::allocated::read,
            ),
            (
                "skiff_allocator_active",
                "Bytes in the allocator's pages that hold live allocations.",
                stats::active::read,
            ),
            ("skiff_allocator_metadata", "Bytes of the allocator's own bookkeeping.", stats::metadata::read),
            ("skiff_allocator_resident", "Bytes of the allocator's pages resident in memory.", stats::resident::read),
        ];
        for (name, help, read) in readings {
            let Ok(value) = read() else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, Some(&Unit::Bytes), gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

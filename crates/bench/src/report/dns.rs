//! The printed result of the DNS scenario: per size, one row per server (throughput, its ratio to the best C
//! server, latency at half load, memory per record), then how soon Skiff's DNS showed changes.

use std::fmt::Write as _;

use crate::dns::{DnsSample, DnsSettings};
use crate::run::mib;
use crate::stats::{median, percentile, range};

fn mark(ok: bool) -> &'static str {
    if ok { " ✓" } else { " ✗" }
}

/// Renders the DNS tables.
pub fn render(settings: &DnsSettings, samples: &[DnsSample]) -> String {
    let mut out = format!(
        "dns (sqlite, separate `skiff agent --disable-proxy`; dnsperf, 16 clients, {} runs of {} s per server \
         alternating; A, SRV and PTR questions of every Service, shuffled; latency from dnsperf -v at half of Skiff's \
         throughput for {} s; {} threads per server)\n",
        settings.runs,
        settings.seconds,
        settings.half_load_seconds,
        crate::dns::threads()
    );
    for s in samples {
        let best_c = s.servers.iter().skip(1).map(|r| r.qps()).fold(f64::NAN, f64::max);
        let _ = writeln!(
            out,
            "\n{} Services ({} records), written in {:.0} ms; the agent's DNS answered all of them {:.0} ms after its \
             start\n",
            s.services, s.records, s.populate_ms, s.sync_ms
        );
        out.push_str(
            "| server | queries/s (median) | runs (min–max) | vs best C | lost | p50 at half load | p99 at half load | \
             RSS (anonymous) | anonymous bytes per record |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for (k, r) in s.servers.iter().enumerate() {
            let (lo, hi) = range(&r.queries_per_sec).unwrap_or((f64::NAN, f64::NAN));
            let ratio = r.qps() / best_c;
            let judged = k == 0;
            let ratio_text = if best_c.is_nan() {
                "—".to_string()
            } else {
                format!("{ratio:.2}×{}", if judged { mark(ratio >= 1.0) } else { "" })
            };
            let p99 = r.latency(99.0);
            let per_record = r.bytes_per_record(s.records);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0}–{:.0} | {ratio_text} | {:.2} % | {:.3} ms | {:.3} ms{} | {:.1} MiB ({:.1}) | {:.0} B{} |",
                r.name,
                r.qps(),
                lo,
                hi,
                median(&r.lost_percent).unwrap_or(f64::NAN),
                r.latency(50.0),
                p99,
                if judged { mark(p99 < 1.0) } else { "" },
                mib(r.memory.rss_kib),
                mib(r.memory.anon_kib),
                per_record,
                if judged { mark(per_record <= 300.0) } else { "" },
            );
        }
        let skiff = s.servers.first();
        let _ = writeln!(
            out,
            "\nSkiff: agent RSS (anonymous) {:.1} MiB ({:.1}) after its sync, {:.1} MiB ({:.1}) after the load (answer \
             cache full), {:.1} MiB ({:.1}) with no Services; live heap {} after the sync, {} after the load; \
             half load = {} q/s",
            mib(s.skiff_synced.rss_kib),
            mib(s.skiff_synced.anon_kib),
            skiff.map_or(f64::NAN, |r| mib(r.memory.rss_kib)),
            skiff.map_or(f64::NAN, |r| mib(r.memory.anon_kib)),
            skiff.map_or(f64::NAN, |r| mib(r.baseline.rss_kib)),
            skiff.map_or(f64::NAN, |r| mib(r.baseline.anon_kib)),
            s.skiff_heap.0,
            s.skiff_heap.1,
            skiff.map_or(0, |r| r.half_load_rate),
        );
        let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "change visibility ({} Services created, then deleted): create → resolves p50 {:.1} ms, p99 {:.1} ms{}, \
             max {:.1} ms; delete → NXDOMAIN p50 {:.1} ms, p99 {:.1} ms{}, max {:.1} ms (target ≤ 100 ms)",
            s.create_visible_ms.len(),
            p(&s.create_visible_ms, 50.0),
            p(&s.create_visible_ms, 99.0),
            mark(p(&s.create_visible_ms, 99.0) <= 100.0),
            p(&s.create_visible_ms, 100.0),
            p(&s.delete_visible_ms, 50.0),
            p(&s.delete_visible_ms, 99.0),
            mark(p(&s.delete_visible_ms, 99.0) <= 100.0),
            p(&s.delete_visible_ms, 100.0),
        );
    }
    out
}

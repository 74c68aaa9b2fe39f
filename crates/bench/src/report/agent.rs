//! The printed result of the agent scenario: one row per metric with the median over runs and the target, then
//! the per-run values of the rows that have a target.

use super::{Goal, MedianRow, mebibytes, median_report, median_row, ms};
use crate::agent::{AgentSample, AgentSettings};
use crate::run::mib;

fn kibibytes(v: f64) -> String {
    format!("{v:.0} KiB")
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

fn rows(settings: &AgentSettings) -> Vec<MedianRow<AgentSample>> {
    vec![
        median_row(
            format!("pod create → Ready, p50 ({} pods, one at a time)", settings.latency_pods),
            Some(Goal::Below("< 300 ms", 300.0)),
            |s| s.ready_p50_ms,
            ms,
        ),
        median_row("  p99", None, |s| s.ready_p99_ms, ms),
        median_row("  max", None, |s| s.ready_max_ms, ms),
        median_row(
            format!("pods Ready on the node (of {})", settings.density_pods),
            Some(Goal::AtLeast("≥ 110", 110.0)),
            |s| s.pods_ready as f64,
            count,
        ),
        median_row("  the rest created at once → all Ready", None, |s| s.fill_ms, ms),
        median_row("agent RSS, idle (Node registered, no pods)", None, |s| mib(s.agent_idle_rss_kib), mebibytes),
        median_row(
            format!("agent RSS with {} pods", settings.density_pods),
            Some(Goal::Below("< 60 MiB", 60.0)),
            |s| mib(s.agent_full_rss_kib),
            mebibytes,
        ),
        median_row("  agent RSS per pod", None, AgentSample::agent_rss_per_pod_kib, kibibytes),
        median_row("  agent peak RSS (VmHWM)", None, |s| mib(s.agent_peak_rss_kib), mebibytes),
        median_row("supervisor + container PSS per pod", None, |s| s.node_pss_per_pod_kib, kibibytes),
        median_row("server RSS with the pods", None, |s| mib(s.server_full_rss_kib), mebibytes),
    ]
}

/// Renders the agent table.
pub fn render(settings: &AgentSettings, samples: &[AgentSample]) -> String {
    let title = format!(
        "agent (sqlite, separate `skiff agent` process, agnhost pause pods): medians of {} run(s)",
        samples.len()
    );
    median_report(
        &title,
        &rows(settings),
        samples,
        "skiff",
        &[
            ("create → Ready p50 per run (ms)", |s| s.ready_p50_ms),
            ("create → Ready p99 per run (ms)", |s| s.ready_p99_ms),
            ("agent RSS with the pods per run (MiB)", |s| mib(s.agent_full_rss_kib)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(p50: f64, pods_ready: usize, full_mib: u64) -> AgentSample {
        AgentSample {
            ready_p50_ms: p50,
            ready_p99_ms: p50 * 2.0,
            ready_max_ms: p50 * 3.0,
            fill_ms: 5000.0,
            pods_ready,
            agent_idle_rss_kib: 10 * 1024,
            agent_full_rss_kib: full_mib * 1024,
            agent_peak_rss_kib: full_mib * 1024,
            node_pss_per_pod_kib: 900.0,
            server_full_rss_kib: 40 * 1024,
        }
    }

    #[test]
    fn medians_and_goals_in_both_directions() {
        let settings = AgentSettings {
            skiff: "skiff".into(),
            work_dir: "/tmp".into(),
            runs: 3,
            latency_pods: 100,
            density_pods: 110,
            settle: Duration::ZERO,
        };
        let text = render(&settings, &[sample(100.0, 110, 30), sample(400.0, 100, 70), sample(350.0, 110, 65)]);
        let line = |needle: &str| text.lines().find(|l| l.starts_with('|') && l.contains(needle)).expect(needle);
        assert!(line("pod create → Ready, p50").contains("350.0 ms ✗"), "{text}");
        assert!(line("pods Ready on the node").contains("110 ✓"), "{text}");
        assert!(line("agent RSS with 110 pods").contains("65.0 MiB ✗"), "{text}");
        // (65 − 10) MiB over 110 pods.
        assert!(line("agent RSS per pod").contains("512 KiB"), "{text}");
    }
}

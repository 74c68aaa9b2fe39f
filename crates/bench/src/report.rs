//! The printed result: one row per metric, the target, and one column per datastore holding the median over runs
//! (a ✓ or ✗ beside values that have a target), followed by the raw per-run samples.

pub mod agent;
pub mod controllers;
pub mod dns;
pub mod proxy;

use std::fmt::Write as _;

use crate::run::{Datastore, DatastoreResults, LoadSample, Settings, StartSample, mib};
use crate::stats::{median, range};

/// A metric's target: the value must stay below `limit`, on the datastores `applies` allows.
struct Target {
    text: &'static str,
    limit: f64,
    applies: fn(Datastore) -> bool,
}

enum Source {
    Start(fn(&StartSample) -> f64),
    Load(fn(&LoadSample) -> Option<f64>),
}

struct Row {
    label: String,
    target: Option<Target>,
    source: Source,
    format: fn(f64) -> String,
}

fn ms(v: f64) -> String {
    if v.abs() < 10.0 { format!("{v:.2} ms") } else { format!("{v:.1} ms") }
}

fn mebibytes(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn per_second(v: f64) -> String {
    format!("{v:.0} /s")
}

fn always(_: Datastore) -> bool {
    true
}

fn rows(settings: &Settings) -> Vec<Row> {
    let listed = crate::load::listed_count(settings.services);
    let row = |label: String, target, source, format| Row { label, target, source, format };
    vec![
        row(
            "start → /readyz".into(),
            Some(Target { text: "< 300 ms", limit: 300.0, applies: always }),
            Source::Start(|s| s.ready_ms),
            ms,
        ),
        row(
            "idle RSS after start".into(),
            Some(Target { text: "< 40 MiB", limit: 40.0, applies: always }),
            Source::Start(|s| mib(s.idle_rss_kib)),
            mebibytes,
        ),
        row(
            format!("create {} Services, {} clients", settings.services, settings.concurrency),
            None,
            Source::Load(|l| Some(l.creates_per_s)),
            per_second,
        ),
        row("  create latency p50".into(), None, Source::Load(|l| Some(l.create_p50_ms)), ms),
        row(
            "  create latency p99".into(),
            Some(Target { text: "< 20 ms (sqlite)", limit: 20.0, applies: |d| d == Datastore::Sqlite }),
            Source::Load(|l| Some(l.create_p99_ms)),
            ms,
        ),
        row("  create latency max".into(), None, Source::Load(|l| Some(l.create_max_ms)), ms),
        row(
            format!("LIST {listed} Services (JSON), p50"),
            Some(Target { text: "< 300 ms", limit: 300.0, applies: always }),
            Source::Load(|l| Some(l.list_p50_ms)),
            ms,
        ),
        row(
            "  LIST response size".into(),
            None,
            Source::Load(|l| Some(l.list_bytes as f64 / 1024.0 / 1024.0)),
            mebibytes,
        ),
        row("watch event after create response, p50".into(), None, Source::Load(|l| Some(l.watch_p50_ms)), ms),
        row("  after create response, p99".into(), None, Source::Load(|l| Some(l.watch_p99_ms)), ms),
        row("  after create request sent, p50".into(), None, Source::Load(|l| Some(l.watch_from_request_p50_ms)), ms),
        row("  after create request sent, p99".into(), None, Source::Load(|l| Some(l.watch_from_request_p99_ms)), ms),
        row("RSS after load".into(), None, Source::Load(|l| Some(mib(l.rss_after_kib))), mebibytes),
        row("  etcd's own RSS after load".into(), None, Source::Load(|l| l.etcd_rss_kib.map(mib)), mebibytes),
    ]
}

fn cell(row: &Row, results: &DatastoreResults) -> String {
    let samples: Vec<f64> = match row.source {
        Source::Start(f) => results.starts.iter().map(f).collect(),
        Source::Load(f) => results.loads.iter().filter_map(f).collect(),
    };
    let Some(value) = median(&samples) else {
        return "—".to_string();
    };
    let mut text = (row.format)(value);
    if let Some(target) = &row.target
        && (target.applies)(results.datastore)
    {
        text.push_str(if value < target.limit { " ✓" } else { " ✗" });
    }
    text
}

/// Renders the table and the raw samples.
pub fn render(settings: &Settings, results: &[DatastoreResults]) -> String {
    let mut out = String::new();
    let starts = results.first().map_or(0, |r| r.starts.len());
    let loads = results.first().map_or(0, |r| r.loads.len());
    let _ = writeln!(
        out,
        "skiff-bench: medians of {starts} start-up run(s) and {loads} load run(s); {} Services, {} concurrent \
         clients, {} LISTs, {} watched creates",
        settings.services, settings.concurrency, settings.lists, settings.watch_events
    );
    let _ = writeln!(out);
    let rows = rows(settings);
    let mut table: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    let mut header = vec!["metric".to_string(), "target".to_string()];
    header.extend(results.iter().map(|r| r.datastore.name().to_string()));
    table.push(header);
    for row in &rows {
        let mut line = vec![row.label.clone(), row.target.as_ref().map_or("—", |t| t.text).to_string()];
        line.extend(results.iter().map(|r| cell(row, r)));
        table.push(line);
    }
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| table.iter().filter_map(|l| l.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for (i, line) in table.iter().enumerate() {
        let _ = writeln!(out, "| {} |", pad(line, &widths).join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    let _ = writeln!(out);
    for r in results {
        let ready: Vec<f64> = r.starts.iter().map(|s| s.ready_ms).collect();
        let rss: Vec<f64> = r.starts.iter().map(|s| mib(s.idle_rss_kib)).collect();
        let _ = writeln!(out, "{} start → /readyz (ms): {}{}", r.datastore.name(), list(&ready), spread(&ready));
        let _ = writeln!(out, "{} idle RSS (MiB): {}{}", r.datastore.name(), list(&rss), spread(&rss));
        let p99: Vec<f64> = r.loads.iter().map(|l| l.create_p99_ms).collect();
        if !p99.is_empty() {
            let _ = writeln!(out, "{} create p99 per load run (ms): {}", r.datastore.name(), list(&p99));
        }
    }
    out
}

/// The goal of a row in a one-column table: below a limit, or at least one.
#[derive(Clone, Copy)]
enum Goal {
    Below(&'static str, f64),
    AtLeast(&'static str, f64),
}

impl Goal {
    fn text(self) -> &'static str {
        match self {
            Goal::Below(text, _) | Goal::AtLeast(text, _) => text,
        }
    }

    fn met(self, v: f64) -> bool {
        match self {
            Goal::Below(_, limit) => v < limit,
            Goal::AtLeast(_, limit) => v >= limit,
        }
    }
}

/// A row of a scenario's table: a metric of one sample type `S`, its goal and how to print it.
struct MedianRow<S> {
    label: String,
    goal: Option<Goal>,
    value: fn(&S) -> f64,
    format: fn(f64) -> String,
}

fn median_row<S>(
    label: impl Into<String>,
    goal: Option<Goal>,
    value: fn(&S) -> f64,
    format: fn(f64) -> String,
) -> MedianRow<S> {
    MedianRow { label: label.into(), goal, value, format }
}

/// A line of per-run values: its label and the value of one sample.
type PerRun<S> = (&'static str, fn(&S) -> f64);

/// A scenario's report: `title`, the table of medians, then one line of per-run values for each of `per_run` (label, value).
fn median_report<S>(title: &str, rows: &[MedianRow<S>], samples: &[S], column: &str, per_run: &[PerRun<S>]) -> String {
    let mut out = format!("{title}\n\n{}\n", median_table(rows, samples, column));
    for (label, value) in per_run {
        let values: Vec<String> = samples.iter().map(|s| format!("{:.1}", value(s))).collect();
        let _ = writeln!(out, "{label}: {}", values.join(" "));
    }
    out
}

/// A Markdown table of `rows`: metric, target, and the median over `samples` in a column headed `column`.
fn median_table<S>(rows: &[MedianRow<S>], samples: &[S], column: &str) -> String {
    let mut table = vec![vec!["metric".to_string(), "target".to_string(), column.to_string()]];
    for row in rows {
        let values: Vec<f64> = samples.iter().map(row.value).filter(|v| !v.is_nan()).collect();
        let cell = median(&values).map_or("—".to_string(), |v| {
            let mark = row.goal.map_or("", |g| if g.met(v) { " ✓" } else { " ✗" });
            format!("{}{mark}", (row.format)(v))
        });
        table.push(vec![row.label.clone(), row.goal.map_or("—", Goal::text).to_string(), cell]);
    }
    let widths: Vec<usize> = (0..3).map(|c| table.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, line) in table.iter().enumerate() {
        let _ = writeln!(out, "| {} |", pad(line, &widths).join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    out
}

fn pad(line: &[String], widths: &[usize]) -> Vec<String> {
    widths
        .iter()
        .enumerate()
        .map(|(c, w)| {
            let s = line.get(c).map_or("", String::as_str);
            format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())))
        })
        .collect()
}

fn list(samples: &[f64]) -> String {
    samples.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(" ")
}

fn spread(samples: &[f64]) -> String {
    range(samples).map_or(String::new(), |(lo, hi)| format!("  (min {lo:.1}, max {hi:.1})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            skiff: "skiff".into(),
            etcd: "etcd".into(),
            work_dir: "/tmp".into(),
            start_runs: 3,
            load_runs: 1,
            services: 100,
            concurrency: 8,
            lists: 5,
            watch_events: 10,
            settle: Duration::ZERO,
        }
    }

    fn load(p99: f64, etcd_rss_kib: Option<u64>) -> LoadSample {
        LoadSample {
            creates_per_s: 1000.0,
            create_p50_ms: 2.0,
            create_p99_ms: p99,
            create_max_ms: 50.0,
            list_p50_ms: 120.0,
            list_items: 50,
            list_bytes: 2 * 1024 * 1024,
            watch_p50_ms: 0.5,
            watch_p99_ms: 1.5,
            watch_from_request_p50_ms: 3.0,
            watch_from_request_p99_ms: 4.0,
            rss_after_kib: 30 * 1024,
            etcd_rss_kib,
        }
    }

    fn start(ready_ms: f64, rss_mib: u64) -> StartSample {
        StartSample { ready_ms, idle_rss_kib: rss_mib * 1024 }
    }

    #[test]
    fn table_has_medians_targets_and_a_column_per_datastore() {
        let results = vec![
            DatastoreResults {
                datastore: Datastore::Sqlite,
                starts: vec![start(100.0, 20), start(40.0, 22), start(60.0, 21)],
                loads: vec![load(25.0, None)],
            },
            DatastoreResults {
                datastore: Datastore::Etcd,
                starts: vec![start(500.0, 50), start(400.0, 45), start(450.0, 48)],
                loads: vec![load(30.0, Some(100 * 1024))],
            },
        ];
        let text = render(&settings(), &results);
        let header = text.lines().find(|l| l.starts_with("| metric")).expect("header");
        assert!(header.contains("sqlite") && header.contains("etcd"), "{header}");
        let readyz = text.lines().find(|l| l.contains("start → /readyz") && l.starts_with('|')).expect("row");
        assert!(readyz.contains("60.0 ms ✓"), "{readyz}");
        assert!(readyz.contains("450.0 ms ✗"), "{readyz}");
        let p99 = text.lines().find(|l| l.contains("create latency p99")).expect("row");
        assert!(p99.contains("25.0 ms ✗"), "sqlite misses its target: {p99}");
        assert!(p99.contains("30.0 ms") && !p99.contains("30.0 ms ✗"), "no target on etcd: {p99}");
        let etcd_rss = text.lines().find(|l| l.contains("etcd's own RSS")).expect("row");
        assert!(etcd_rss.contains('—') && etcd_rss.contains("100.0 MiB"), "{etcd_rss}");
        assert!(text.contains("LIST 50 Services"), "{text}");
        assert!(text.contains("sqlite start → /readyz (ms): 100.0 40.0 60.0  (min 40.0, max 100.0)"), "{text}");
    }

    #[test]
    fn rows_line_up() {
        let results =
            vec![DatastoreResults { datastore: Datastore::Sqlite, starts: vec![start(10.0, 10)], loads: Vec::new() }];
        let text = render(&settings(), &results);
        let widths: Vec<usize> = text.lines().filter(|l| l.starts_with('|')).map(|l| l.chars().count()).collect();
        assert!(widths.len() > 5);
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
        let throughput = text.lines().find(|l| l.contains("create 100 Services")).expect("row");
        assert!(throughput.contains('—'), "no load runs: {throughput}");
    }
}

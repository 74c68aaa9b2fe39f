//! The process's Prometheus registry: components register their metrics here when they start, and the API
//! server's `/metrics` renders all of them in the Prometheus text format. One registry per process, as
//! client_golang's default registry is, so that components running inside `skiff server` (the node agent, its
//! proxy) need no wiring to be scraped.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry};

pub use prometheus_client;

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default())).lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `metric` to the process's registry under `name` (without a unit suffix; counters get `_total`).
pub fn register(name: &str, help: &str, metric: impl Metric) {
    registry().register(name, help, metric);
}

/// Adds `collector`, asked for its metrics on every render (for values read from elsewhere when scraped).
pub fn register_collector(collector: Box<dyn prometheus_client::collector::Collector>) {
    registry().register_collector(collector);
}

/// Every registered metric, in the Prometheus text exposition format (OpenMetrics flavour, `# EOF` last).
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry());
    out
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn registered_metrics_are_rendered() {
        let counter: Counter = Counter::default();
        super::register("skiff_test_events", "Events seen by the test.", counter.clone());
        counter.inc_by(3);
        let text = super::render();
        assert!(text.contains("# HELP skiff_test_events Events seen by the test."), "{text}");
        assert!(text.contains("skiff_test_events_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

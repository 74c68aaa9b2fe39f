//! The proxy's Prometheus metrics, under upstream kube-proxy's names where it has one, registered once per
//! process in [`skiff_metrics`] (served at the API server's `/metrics`).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use skiff_metrics::prometheus_client::metrics::counter::Counter;
use skiff_metrics::prometheus_client::metrics::gauge::Gauge;
use skiff_metrics::prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// The annotation the EndpointSlice controller stamps with the time of the change that caused its write.
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

pub struct Metrics {
    /// From an endpoint change (the slice's trigger time) until the rules for it are in the kernel.
    pub network_programming: Histogram,
    pub sync: Histogram,
    pub full_sync: Histogram,
    pub partial_sync: Histogram,
    pub sync_failures: Counter,
    pub last_sync: Gauge<f64, AtomicU64>,
    pub service_ports: Gauge,
    pub chains: Gauge,
    pub elements: Gauge,
}

/// The process's proxy metrics, registered on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        // 0.5 ms to ~16 s, doubling.
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let m = Metrics {
            network_programming: seconds(),
            sync: seconds(),
            full_sync: seconds(),
            partial_sync: seconds(),
            sync_failures: Counter::default(),
            last_sync: Gauge::default(),
            service_ports: Gauge::default(),
            chains: Gauge::default(),
            elements: Gauge::default(),
        };
        use skiff_metrics::register;
        register(
            "kubeproxy_network_programming_duration_seconds",
            "From an endpoint change (its EndpointSlice's last-change-trigger-time) until the proxy's rules for it \
             were applied, in seconds.",
            m.network_programming.clone(),
        );
        register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "Duration of one rules sync, in seconds.",
            m.sync.clone(),
        );
        register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "Duration of a sync that replaced the whole table, in seconds.",
            m.full_sync.clone(),
        );
        register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "Duration of a sync that applied only changes, in seconds.",
            m.partial_sync.clone(),
        );
        register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Rules syncs nft rejected (each is retried as a full sync).",
            m.sync_failures.clone(),
        );
        register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "When the rules were last applied, in seconds since the epoch.",
            m.last_sync.clone(),
        );
        register("skiff_proxy_service_ports", "Service ports routed by the proxy's table.", m.service_ports.clone());
        register("skiff_proxy_chains", "Per-service and per-endpoint chains in the proxy's table.", m.chains.clone());
        register("skiff_proxy_map_elements", "Elements of the proxy's shared sets and maps.", m.elements.clone());
        m
    })
}

impl Metrics {
    /// Records a successful sync that took `elapsed` and left the table with these counts.
    pub fn synced(&self, elapsed: Duration, full: bool, (ports, chains, elements): (usize, usize, usize)) {
        let seconds = elapsed.as_secs_f64();
        self.sync.observe(seconds);
        if full { &self.full_sync } else { &self.partial_sync }.observe(seconds);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.last_sync.set(now.as_secs_f64());
        for (gauge, n) in [(&self.service_ports, ports), (&self.chains, chains), (&self.elements, elements)] {
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records that the changes triggered at `triggers` are now programmed.
    pub fn programmed(&self, triggers: &[Timestamp]) {
        let now = Timestamp::now();
        for trigger in triggers {
            let seconds = now.duration_since(*trigger).as_secs_f64();
            self.network_programming.observe(seconds.max(0.0));
        }
    }
}

/// When the change behind this EndpointSlice's current content happened, if the controller recorded it.
pub fn trigger_time(slice: &EndpointSlice) -> Option<Timestamp> {
    slice.metadata.annotations.as_ref()?.get(TRIGGER_TIME)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn trigger_times_are_read_from_the_annotation() {
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                annotations: Some([(TRIGGER_TIME.to_string(), "2026-12-06T20:00:00Z".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(trigger_time(&slice), "2026-12-06T20:00:00Z".parse().ok());
        slice.metadata.annotations = None;
        assert_eq!(trigger_time(&slice), None);
    }

    #[test]
    fn a_sync_sets_the_counts_and_the_programming_latency() {
        let m = metrics();
        m.synced(Duration::from_millis(3), false, (2, 5, 9));
        m.programmed(&[Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_millis(20)]);
        let text = skiff_metrics::render();
        assert!(text.contains("skiff_proxy_chains 5"), "{text}");
        assert!(text.contains("kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1"), "{text}");
        let programmed = text
            .lines()
            .find(|l| l.starts_with("kubeproxy_network_programming_duration_seconds_sum"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default();
        assert!((0.02..1.0).contains(&programmed), "{text}");
    }
}

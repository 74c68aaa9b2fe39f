//! The DNS server's Prometheus metrics, under CoreDNS's names where it has one, registered once per process in
//! [`skiff_metrics`].

use std::sync::OnceLock;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use skiff_metrics::prometheus_client::metrics::counter::Counter;
use skiff_metrics::prometheus_client::metrics::family::Family;
use skiff_metrics::prometheus_client::metrics::gauge::Gauge;
use skiff_metrics::prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Label pairs.
type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct Metrics {
    /// Questions by record type.
    pub requests: Family<Labels, Counter>,
    /// Answers by response code.
    pub responses: Family<Labels, Counter>,
    /// From a question's arrival until its answer was sent.
    pub duration: Histogram,
    /// Questions the cluster zone answered from memory.
    pub from_zone: Counter,
    /// Questions (and ExternalName targets) sent upstream.
    pub forwarded: Counter,
    /// Questions answered from the answer cache, by kind of answer (`success`, `denial`), as CoreDNS's cache.
    pub cache_hits: Family<Labels, Counter>,
    /// Questions the answer cache had no current answer for.
    pub cache_misses: Counter,
    /// Answers the answer cache holds, as CoreDNS's `coredns_cache_entries`.
    pub cache_entries: Gauge,
    /// The bytes those answers take (their fingerprints and responses).
    pub cache_bytes: Gauge,
}

/// The counters one kept answer moves each time it is reused, looked up once when it is kept.
pub struct CachedCounters {
    requests: Counter,
    responses: Counter,
    hits: Counter,
    /// Every kept answer is the zone's, so a reused one counts as a zone answer too.
    from_zone: Counter,
}

impl CachedCounters {
    /// Counts one question answered from the cache (its latency is observed by the caller).
    pub fn count(&self) {
        self.requests.inc();
        self.responses.inc();
        self.hits.inc();
        self.from_zone.inc();
    }
}

impl Metrics {
    /// The process's DNS metrics, registered on first use.
    pub fn get() -> Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS
            .get_or_init(|| {
                let m = Metrics {
                    requests: Family::default(),
                    responses: Family::default(),
                    // 25 µs to ~3 s, doubling.
                    duration: Histogram::new(exponential_buckets(0.000_025, 2.0, 18)),
                    from_zone: Counter::default(),
                    forwarded: Counter::default(),
                    cache_hits: Family::default(),
                    cache_misses: Counter::default(),
                    cache_entries: Gauge::default(),
                    cache_bytes: Gauge::default(),
                };
                use skiff_metrics::register;
                register("coredns_dns_requests", "DNS questions, by record type", m.requests.clone());
                register("coredns_dns_responses", "DNS answers, by response code", m.responses.clone());
                register(
                    "coredns_dns_request_duration_seconds",
                    "From a DNS question's arrival until its answer was sent, in seconds",
                    m.duration.clone(),
                );
                register(
                    "skiff_dns_zone_answers",
                    "DNS questions the cluster zone answered from memory",
                    m.from_zone.clone(),
                );
                register("skiff_dns_forwarded", "DNS questions forwarded upstream", m.forwarded.clone());
                register(
                    "coredns_cache_hits",
                    "DNS questions answered from the answer cache, by kind of answer",
                    m.cache_hits.clone(),
                );
                register(
                    "coredns_cache_misses",
                    "DNS questions the answer cache had no current answer for",
                    m.cache_misses.clone(),
                );
                register("coredns_cache_entries", "Answers the answer cache holds", m.cache_entries.clone());
                register(
                    "skiff_dns_cache_bytes",
                    "Bytes of the answers the answer cache holds (their fingerprints and responses)",
                    m.cache_bytes.clone(),
                );
                m
            })
            .clone()
    }

    /// Counts one answered question.
    pub fn answered(&self, qtype: Option<RecordType>, code: ResponseCode, took: Duration) {
        self.requests_of(qtype).inc();
        self.responses_of(code).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// The counters a cached answer of `qtype` with `code` moves.
    pub fn cached_counters(&self, qtype: RecordType, code: ResponseCode) -> CachedCounters {
        let kind = if code == ResponseCode::NXDomain { "denial" } else { "success" };
        CachedCounters {
            requests: self.requests_of(Some(qtype)),
            responses: self.responses_of(code),
            hits: self.cache_hits.get_or_create(&vec![("type".into(), kind.into())]).clone(),
            from_zone: self.from_zone.clone(),
        }
    }

    fn requests_of(&self, qtype: Option<RecordType>) -> Counter {
        let qtype = qtype.map_or_else(|| "other".to_string(), |t| t.to_string());
        self.requests.get_or_create(&vec![("type".into(), qtype)]).clone()
    }

    fn responses_of(&self, code: ResponseCode) -> Counter {
        self.responses.get_or_create(&vec![("rcode".into(), rcode_label(code))]).clone()
    }
}

/// A response code as DNS tools and CoreDNS write it (`NOERROR`, `NXDOMAIN`).
fn rcode_label(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

//! The load driven through kube-rs: concurrent Service creates, namespaced LISTs and watch event delivery.
//!
//! Services are spread over two namespaces ([`namespace_for`]), so a namespaced LIST returns half of them while
//! the store holds all of them, as in a real cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

use crate::BenchError;

/// The namespaces the created Services are spread over.
pub const LOAD_NAMESPACES: [&str; 2] = ["bench-0", "bench-1"];
/// The namespace of the watch-latency Services.
pub const WATCH_NAMESPACE: &str = "bench-watch";

/// The namespace Service number `i` goes to.
pub fn namespace_for(i: usize) -> &'static str {
    LOAD_NAMESPACES[i % LOAD_NAMESPACES.len()]
}

/// How many of `total` Services land in [`LOAD_NAMESPACES`]`[0]`.
pub fn listed_count(total: usize) -> usize {
    total.div_ceil(LOAD_NAMESPACES.len())
}

/// A ClusterIP Service with one TCP port, as `kubectl expose` would make.
pub fn service(name: &str, namespace: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([("bench".to_string(), "skiff".to_string())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ports: Some(vec![ServicePort {
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the benchmark's namespaces.
pub async fn create_namespaces(client: &kube::Client) -> Result<(), BenchError> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in LOAD_NAMESPACES.iter().chain([&WATCH_NAMESPACE]) {
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns).await?;
    }
    Ok(())
}

/// The outcome of the create phase.
pub struct Creates {
    /// Wall time from the first request until the last response.
    pub wall: Duration,
    /// Per-request latency in milliseconds.
    pub latencies_ms: Vec<f64>,
}

/// Creates `total` Services from `clients` concurrent clients (one connection each); any failed create fails the
/// phase.
pub async fn create_services(clients: Vec<kube::Client>, total: usize) -> Result<Creates, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let next = next.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, BenchError>(latencies);
                }
                let namespace = namespace_for(i);
                let api: Api<Service> = Api::namespaced(client.clone(), namespace);
                let svc = service(&format!("svc-{i:05}"), namespace);
                let sent = Instant::now();
                api.create(&PostParams::default(), &svc).await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    let mut latencies_ms = Vec::with_capacity(total);
    while let Some(joined) = workers.join_next().await {
        latencies_ms.extend(joined??);
    }
    Ok(Creates { wall: started.elapsed(), latencies_ms })
}

/// The outcome of the LIST phase.
pub struct Lists {
    /// Per-LIST latency (request until the whole body is read) in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Items in the last response.
    pub items: usize,
    /// Size of the last response body in bytes.
    pub bytes: usize,
}

/// LISTs the Services of `namespace` as JSON `times` times, one after another.
pub async fn list_services(client: &kube::Client, namespace: &str, times: usize) -> Result<Lists, BenchError> {
    let mut latencies_ms = Vec::with_capacity(times);
    let mut body = String::new();
    for _ in 0..times {
        let request = http::Request::get(format!("/api/v1/namespaces/{namespace}/services"))
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())?;
        let sent = Instant::now();
        body = client.request_text(request).await?;
        latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Lists { latencies_ms, items: count_items(&body)?, bytes: body.len() })
}

/// The number of `items` in a JSON list response.
pub fn count_items(body: &str) -> Result<usize, BenchError> {
    if body.is_empty() {
        return Ok(0);
    }
    let list: serde_json::Value = serde_json::from_str(body)?;
    list.get("items")
        .and_then(|items| items.as_array())
        .map(Vec::len)
        .ok_or_else(|| BenchError::Check("a LIST response without an items array".to_string()))
}

/// Watch delivery latencies, one entry per watched create, in milliseconds.
pub struct WatchLatencies {
    /// From the create's response to the ADDED event's arrival (negative when the event came first).
    pub after_response_ms: Vec<f64>,
    /// From sending the create to the ADDED event's arrival.
    pub after_request_ms: Vec<f64>,
}

/// Watch delivery latency: opens a watch on the Services of [`WATCH_NAMESPACE`] (its own connection), creates
/// `events` Services one after another through `writer`, and times each ADDED event against its create.
pub async fn watch_latency(
    watcher: kube::Client,
    writer: kube::Client,
    events: usize,
) -> Result<WatchLatencies, BenchError> {
    let watch_api: Api<Service> = Api::namespaced(watcher, WATCH_NAMESPACE);
    let rv = watch_api.list(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
    let stream = watch_api.watch(&WatchParams::default().timeout(290), &rv).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let receiver = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            match event {
                WatchEvent::Added(svc) => {
                    let arrived = Instant::now();
                    if tx.send((svc.metadata.name.unwrap_or_default(), arrived)).is_err() {
                        return Ok(());
                    }
                }
                WatchEvent::Error(status) => return Err(BenchError::Check(format!("watch error: {}", status.message))),
                _ => {}
            }
        }
        Ok::<_, BenchError>(())
    });

    let api: Api<Service> = Api::namespaced(writer, WATCH_NAMESPACE);
    let mut timed: HashMap<String, (Instant, Instant)> = HashMap::with_capacity(events);
    for i in 0..events {
        let name = format!("watched-{i:05}");
        let svc = service(&name, WATCH_NAMESPACE);
        let sent = Instant::now();
        api.create(&PostParams::default(), &svc).await?;
        timed.insert(name, (sent, Instant::now()));
    }
    let mut latencies =
        WatchLatencies { after_response_ms: Vec::with_capacity(events), after_request_ms: Vec::with_capacity(events) };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while latencies.after_response_ms.len() < events {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((name, arrived))) => {
                if let Some((sent, responded)) = timed.get(&name) {
                    latencies.after_response_ms.push(signed_ms(*responded, arrived));
                    latencies.after_request_ms.push(signed_ms(*sent, arrived));
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    receiver.abort();
    let delivered = latencies.after_response_ms.len();
    if delivered < events {
        return Err(BenchError::Check(format!("the watch delivered {delivered} of {events} events")));
    }
    Ok(latencies)
}

/// `later - earlier` in milliseconds, negative when `later` is in fact earlier.
pub fn signed_ms(earlier: Instant, later: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_spread_over_two_namespaces() {
        assert_eq!(namespace_for(0), "bench-0");
        assert_eq!(namespace_for(1), "bench-1");
        assert_eq!(namespace_for(10), "bench-0");
        assert_eq!(listed_count(10_000), 5_000);
        assert_eq!(listed_count(9), 5);
        let in_first = (0..9).filter(|&i| namespace_for(i) == LOAD_NAMESPACES[0]).count();
        assert_eq!(in_first, listed_count(9));
    }

    #[test]
    fn the_service_is_cluster_ip_with_one_port() {
        let svc = service("svc-00001", "bench-1");
        let value = serde_json::to_value(&svc).expect("serializes");
        assert_eq!(value["metadata"]["name"], "svc-00001");
        assert_eq!(value["metadata"]["namespace"], "bench-1");
        assert_eq!(value["spec"]["type"], "ClusterIP");
        assert_eq!(value["spec"]["ports"].as_array().map(Vec::len), Some(1));
        assert_eq!(value["spec"]["ports"][0]["port"], 80);
        assert_eq!(value["spec"]["ports"][0]["targetPort"], 8080);
        assert!(value["spec"].get("clusterIP").is_none(), "the server allocates the IP");
    }

    #[test]
    fn items_are_counted() {
        assert_eq!(count_items(r#"{"kind":"ServiceList","items":[{},{},{}]}"#).expect("counts"), 3);
        assert_eq!(count_items(r#"{"kind":"ServiceList","items":[]}"#).expect("counts"), 0);
        assert!(count_items(r#"{"kind":"Status"}"#).is_err());
        assert!(count_items("not json").is_err());
    }

    #[test]
    fn signed_milliseconds() {
        let a = Instant::now();
        let b = a + Duration::from_millis(3);
        assert!((signed_ms(a, b) - 3.0).abs() < 1e-9);
        assert!((signed_ms(b, a) + 3.0).abs() < 1e-9);
    }
}

//! What a fresh cluster has before anyone writes to it, kept that way while the server runs: the namespaces
//! `default`, `kube-system`, `kube-public` and `kube-node-lease`, and the `kubernetes` Service in `default` on the
//! first Service IP, with Endpoints and an EndpointSlice pointing at this API server (deleting it, `kubectl delete
//! svc --all`, brings it back within moments, as upstream's master endpoint reconciler does), and the cluster DNS
//! Service `kube-system/kube-dns` on `--cluster-dns` (created at start when missing).
//!
//! Also the store's housekeeping: compaction of history older than the configured window.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::{ApiError, ResourceType, object, resource};
use skiff_store::Revision;

use crate::config::Config;
use crate::request::{Query, Target};
use crate::server::State;

const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
/// How often the `kubernetes` Service and its endpoints are checked (upstream's reconciler interval).
const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// How often history is compacted (upstream's default compaction interval).
const COMPACT_EVERY: Duration = Duration::from_secs(300);

/// The first address of the Service CIDR, which the `kubernetes` Service holds.
pub fn kubernetes_service_ip(config: &Config) -> Option<Ipv4Addr> {
    config.service_cidr.hosts().next()
}

fn rt(group: &str, plural: &str) -> Result<&'static ResourceType, ApiError> {
    resource::lookup(group, "v1", plural).ok_or_else(|| ApiError::Internal(format!("{plural} not served")))
}

fn target(rt: &'static ResourceType, ns: Option<&str>, name: Option<&str>) -> Target {
    Target { rt, namespace: ns.map(String::from), name: name.map(String::from), subresource: None, watch_prefix: false }
}

/// Creates an object through the normal write path unless it exists.
async fn ensure(state: &State, rt: &'static ResourceType, ns: Option<&str>, obj: Value) -> Result<(), ApiError> {
    let name = object::name(&obj).unwrap_or_default().to_string();
    if state.objects.try_get(rt, ns, &name).await?.is_some() {
        return Ok(());
    }
    match crate::handlers::write::create_object(
        state,
        &target(rt, ns, None),
        &Query::parse(Some("fieldManager=kube-apiserver")),
        obj,
        None,
    )
    .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes sure an object has exactly the wanted content under `field`s, creating it if missing.
///
/// These are the server's own records of where it listens, written straight to the store as upstream's endpoint
/// reconciler does: they skip admission, which (rightly) refuses loopback addresses from clients, while a server
/// bound to loopback must still record where it is.
async fn ensure_fields(
    state: &State,
    rt: &'static ResourceType,
    ns: &str,
    wanted: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let name = object::name(&wanted).unwrap_or_default().to_string();
    match state.objects.try_get(rt, Some(ns), &name).await? {
        None => {
            let mut obj = wanted;
            crate::handlers::write::prepare_for_create(rt, &mut obj);
            skiff_admission::default(rt, &mut obj);
            match state.objects.create(rt, obj).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(current) if fields.iter().any(|f| current.object[*f] != wanted[*f]) => {
            let mut obj = current.object.clone();
            for f in fields {
                obj[*f] = wanted[*f].clone();
            }
            match state.objects.update(rt, obj, current.revision).await {
                Ok(_) | Err(ApiError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(_) => Ok(()),
    }
}

/// The address endpoints of the `kubernetes` Service use.
fn endpoint_address(config: &Config) -> IpAddr {
    config.advertise_address
}

async fn ensure_kubernetes_service(state: &State) -> Result<(), ApiError> {
    let config = &state.config;
    let Some(ip) = kubernetes_service_ip(config) else { return Ok(()) };
    let port = config.listen.port();
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        state,
        rt("", "services")?,
        Some("default"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip.to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
            },
        }),
    )
    .await?;
    let address = endpoint_address(config).to_string();
    ensure_fields(
        state,
        rt("", "endpoints")?,
        "default",
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
        &["subsets"],
    )
    .await?;
    ensure_fields(
        state,
        rt("discovery.k8s.io", "endpointslices")?,
        "default",
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": if endpoint_address(config).is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }),
        &["endpoints", "ports"],
    )
    .await
}

/// The start-up work, before the server accepts requests.
pub async fn run(state: &State) -> Result<(), ApiError> {
    let ns_rt = rt("", "namespaces")?;
    for ns in NAMESPACES {
        ensure(state, ns_rt, None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;
    }
    let services = state.objects.list(rt("", "services")?, None, None, 0, 0, |_| true).await?;
    let changed = state.services.repair(&services.items).await?;
    if changed > 0 {
        tracing::info!(changed, "repaired service address allocations");
    }
    ensure_kubernetes_service(state).await?;
    ensure_dns_service(state).await
}

/// The cluster DNS Service, `kube-system/kube-dns` on `--cluster-dns`, with upstream's labels and ports. It has
/// no selector: every node agent serves DNS itself and publishes its own endpoint, and `internalTrafficPolicy:
/// Local` keeps each node's pods on their own node's server. Created when missing at start, as k3s re-applies
/// its CoreDNS manifest; an address already taken by another Service is logged, and the start goes on.
async fn ensure_dns_service(state: &State) -> Result<(), ApiError> {
    let config = &state.config;
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": config.cluster_dns.to_string(),
            "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    });
    if let Err(e) = ensure(state, rt("", "services")?, Some("kube-system"), service).await {
        tracing::warn!(error = %e, address = %config.cluster_dns, "the cluster DNS Service could not be created");
    }
    Ok(())
}

/// Background keepers: the `kubernetes` Service (re-created at once when deleted) and history compaction.
pub fn spawn_keepers(state: Arc<State>) {
    let watcher = state.clone();
    tokio::spawn(async move { keep_kubernetes_service(watcher).await });
    tokio::spawn(async move { compact(state).await });
}

async fn keep_kubernetes_service(state: Arc<State>) {
    // The Service and the endpoints records that point at this server: any of them deleted (by a user, or by the
    // endpoints controller after the Service went) is restored at once.
    let keys: Vec<String> = [("", "services"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices")]
        .iter()
        .filter_map(|(group, plural)| rt(group, plural).ok())
        .map(|r| r.storage_key(Some("default"), "kubernetes"))
        .collect();
    loop {
        // React to changes right away; fall back to the periodic check if a watch breaks.
        let mut streams = Vec::new();
        for key in &keys {
            match state.objects.store().watch(key, 0).await {
                Ok(s) => streams.push(s),
                Err(e) => tracing::warn!(key, error = %e, "watching the kubernetes service failed"),
            }
        }
        let mut events = futures::stream::select_all(streams);
        let mut ticker = tokio::time::interval(RECONCILE_EVERY);
        loop {
            use futures::StreamExt;
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
                ev = events.next() => match ev {
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
            if let Err(e) = ensure_kubernetes_service(&state).await {
                tracing::warn!(error = %e, "restoring the kubernetes service failed");
            }
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn compact(state: Arc<State>) {
    let store = state.objects.store().clone();
    let window: Revision = state.config.history_window;
    let mut ticker = tokio::time::interval(COMPACT_EVERY);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(current) = store.current_revision().await else { continue };
        let Ok(compacted) = store.compacted_revision().await else { continue };
        let target = current - window;
        if target > compacted {
            match store.compact(target).await {
                Ok(()) => tracing::debug!(revision = target, "compacted store history"),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
    }
}

//! SIGKILL in the middle of a write load loses no acknowledged write: writers create ConfigMaps through kube-rs as
//! fast as they can and record each name whose create returned success; the server is killed mid-stream and
//! restarted on the same data dir (SQLite) or the same etcd; every acknowledged name must be there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use super::cluster::{Cluster, tail};
use super::etcd::start_etcd;

const WRITERS: usize = 4;
const LOAD: Duration = Duration::from_millis(1500);

async fn client(c: &Cluster) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(c.kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Creates `w<writer>-<n>` ConfigMaps until a create fails (the server died) or `stop` is set; returns the names
/// whose create was acknowledged.
async fn writer(api: Api<ConfigMap>, writer: usize, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let name = format!("w{writer}-{n}");
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"n": n.to_string()}})).expect("cm");
        match tokio::time::timeout(Duration::from_secs(5), api.create(&PostParams::default(), &cm)).await {
            Ok(Ok(_)) => acked.push(name),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    acked
}

/// Runs the load against `c`, SIGKILLs the server mid-stream, restarts it and checks every acknowledged write.
fn acknowledged_writes_survive_sigkill(c: &mut Cluster) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = runtime.block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(client(c).await, "default");
        (0..WRITERS).map(|w| tokio::spawn(writer(api.clone(), w, stop.clone()))).collect::<Vec<_>>()
    });
    std::thread::sleep(LOAD);
    c.kill();
    let acked: Vec<String> = runtime.block_on(async {
        let mut all = Vec::new();
        for handle in writers {
            all.extend(handle.await.expect("writer task"));
        }
        all
    });
    // Writers stop on their first failed create, which the kill causes; the flag is only a backstop.
    stop.store(true, Ordering::Relaxed);
    assert!(
        acked.len() >= 20,
        "only {} writes were acknowledged before the kill:\n{}",
        acked.len(),
        tail(&c.log(), 30)
    );
    eprintln!("{} creates acknowledged before SIGKILL", acked.len());

    c.restart();
    let names = c.ok(&["get", "cm", "-o", "name"]);
    let present: std::collections::BTreeSet<&str> =
        names.lines().filter_map(|l| l.strip_prefix("configmap/")).collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(n.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged creates lost after SIGKILL: {lost:?}", lost.len(), acked.len());
    // The store still takes writes after the crash.
    c.ok(&["create", "configmap", "after-crash"]);
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_write_on_sqlite() {
    let mut c = Cluster::start();
    acknowledged_writes_survive_sigkill(&mut c);
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_write_on_etcd() {
    let etcd = start_etcd();
    let mut c = Cluster::start_with(&["--datastore-endpoint", etcd.endpoint()]);
    acknowledged_writes_survive_sigkill(&mut c);
}

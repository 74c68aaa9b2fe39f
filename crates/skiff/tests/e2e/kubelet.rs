//! A stand-in kubelet for the controller scenarios, until the node agent exists: it registers a Ready Node,
//! gives every pod bound to it an IP and marks it Running and Ready (unless the pod is labelled
//! `skiff.test/ready: "false"`), and finishes the graceful deletion of terminating pods after `linger`.
//! Tests flip readiness later by patching pod status themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;

pub struct FakeKubelet {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Patches a pod's Ready condition the way a kubelet reports a readiness probe.
pub fn set_ready(c: &Cluster, pod: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"conditions": [
        {"type": "Ready", "status": status}, {"type": "ContainersReady", "status": status},
    ]}});
    c.ok(&["patch", "pod", pod, "--subresource=status", "--type=strategic", "-p", &patch.to_string()]);
}

impl FakeKubelet {
    /// Registers node `name` with address `10.99.0.<index>` and starts serving its pods; pod IPs are
    /// `10.42.<index>.N`.
    pub fn start(c: &Cluster, name: &str, index: u8, linger: Duration) -> Self {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        c.ok_stdin(&["apply", "-f", "-"], &node.to_string());
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake kubelet"}],
            "addresses": [{"type": "InternalIP", "address": format!("10.99.0.{index}")}, {"type": "Hostname", "address": name}],
        }});
        c.ok(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);

        let kubeconfig = c.kubeconfig();
        let node = name.to_string();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(serve(kubeconfig, node, index, linger, token));
        });
        Self { stop, thread: Some(thread) }
    }
}

async fn serve(kubeconfig: std::path::PathBuf, node: String, index: u8, linger: Duration, stop: CancellationToken) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::all(client.clone());
    let next_ip = Arc::new(AtomicU32::new(2));
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(pods.clone(), cfg).default_backoff().applied_objects().boxed();
    loop {
        let pod = tokio::select! {
            _ = stop.cancelled() => return,
            next = stream.try_next() => match next {
                Ok(Some(pod)) => pod,
                _ => continue,
            },
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let api = api.clone();
            tokio::spawn(async move {
                tokio::time::sleep(linger).await;
                let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
            });
            continue;
        }
        let has_ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some();
        if has_ip {
            continue;
        }
        let ready =
            pod.metadata.labels.as_ref().and_then(|l| l.get("skiff.test/ready")).map(String::as_str) != Some("false");
        let ip = format!("10.42.{index}.{}", next_ip.fetch_add(1, Ordering::Relaxed));
        let flag = if ready { "True" } else { "False" };
        let containers: Vec<_> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| json!({"name": c.name, "image": c.image, "imageID": "", "ready": ready, "restartCount": 0, "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})).collect())
            .unwrap_or_default();
        let patch = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": format!("10.99.0.{index}"),
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": flag},
                {"type": "ContainersReady", "status": flag},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": containers,
        }});
        let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await;
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Watching pods for readiness: a task on its own connection stamps the moment each pod's Ready condition is
//! first seen true and sends it over a channel; [`ReadyWatch::wait_for`] waits for one pod's stamp.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;

use crate::BenchError;

/// Ready stamps so far, and the task that collects them.
pub struct ReadyWatch {
    rx: UnboundedReceiver<(String, Instant)>,
    seen: HashMap<String, Instant>,
    task: JoinHandle<()>,
}

/// Whether `pod`'s Ready condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Starts watching the pods of `namespace` (the watch is established before this returns).
pub async fn watch(client: kube::Client, namespace: &str) -> Result<ReadyWatch, BenchError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    // The initial list proves the API answers; the watcher then follows every change.
    pods.list(&Default::default()).await?;
    let (tx, rx) = unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let pods: Vec<Pod> = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
                _ => continue,
            };
            for pod in pods.into_iter().filter(is_ready) {
                if tx.send((pod.metadata.name.unwrap_or_default(), Instant::now())).is_err() {
                    return;
                }
            }
        }
    });
    Ok(ReadyWatch { rx, seen: HashMap::new(), task })
}

impl ReadyWatch {
    /// When `name` was first seen Ready, waiting until `deadline` for it.
    pub async fn wait_for(&mut self, name: &str, deadline: Instant) -> Result<Instant, BenchError> {
        loop {
            if let Some(at) = self.seen.get(name) {
                return Ok(*at);
            }
            let next = tokio::time::timeout_at(deadline.into(), self.rx.recv()).await;
            match next {
                Ok(Some((pod, at))) => {
                    self.seen.entry(pod).or_insert(at);
                }
                Ok(None) => return Err(BenchError::Check("the pod watcher stopped".into())),
                Err(_) => return Err(BenchError::Check(format!("pod {name} was not Ready in time"))),
            }
        }
    }

    /// How many distinct pods have been seen Ready.
    pub fn ready_count(&mut self) -> usize {
        while let Ok((pod, at)) = self.rx.try_recv() {
            self.seen.entry(pod).or_insert(at);
        }
        self.seen.len()
    }

    /// Stops the watch.
    pub fn stop(self) {
        self.task.abort();
    }
}

//! The writes of the controllers scenario, the benchmark playing the user and the kubelet: the Node, then Services,
//! pods and Ready status patches from several concurrent clients, then readiness flips one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::UnboundedReceiver;

use super::objects::{self, NAMESPACE};
use super::slices::{self, Arrival};
use crate::BenchError;
use crate::load::signed_ms;

/// How long one flip may take to show in a slice before the run fails.
const FLIP_DEADLINE: Duration = Duration::from_secs(30);

/// The namespace and the Ready Node.
pub async fn create_namespace_and_node(client: &kube::Client) -> Result<(), BenchError> {
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(NAMESPACE.to_string()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&PostParams::default(), &objects::node()?).await?;
    nodes.patch_status(objects::NODE_NAME, &PatchParams::default(), &Patch::Merge(objects::node_status())).await?;
    Ok(())
}

/// One kind of write of the load phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create Service `i`.
    Service,
    /// Create pod `i` (replica `i % pods` of Service `i / pods`).
    Pod,
    /// Patch pod `i`'s status to Running and Ready at its IP.
    Ready,
}

/// Runs `total` writes of `step` from `clients` concurrent clients; any failed write fails the step.
pub async fn run_step(clients: &[kube::Client], step: Step, total: usize, pods: usize) -> Result<(), BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let (client, next) = (client.clone(), next.clone());
        workers.spawn(async move {
            let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
            let pod_api: Api<Pod> = Api::namespaced(client, NAMESPACE);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, BenchError>(());
                }
                match step {
                    Step::Service => {
                        let svc = crate::load::service(&objects::service_name(i), NAMESPACE);
                        services.create(&PostParams::default(), &svc).await?;
                    }
                    Step::Pod => {
                        pod_api.create(&PostParams::default(), &objects::pod(i / pods, i % pods)?).await?;
                    }
                    Step::Ready => {
                        let name = objects::pod_name(i / pods, i % pods);
                        let patch = objects::pod_status(&ip(i)?, true);
                        pod_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                    }
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(())
}

fn ip(i: usize) -> Result<String, BenchError> {
    objects::pod_ip(i).ok_or_else(|| BenchError::Check(format!("pod {i} is beyond the 10.42.0.0/16 pod IPs")))
}

/// Flip latencies, one entry per flip, in milliseconds.
#[derive(Debug, Default)]
pub struct Flips {
    /// From sending the status patch until the watcher saw a slice with the new condition.
    pub after_request_ms: Vec<f64>,
    /// From the patch's response until then (negative when the slice came first).
    pub after_response_ms: Vec<f64>,
}

/// Flips the readiness of `count` pods picked at random (seeded, so runs flip the same pods) one after another
/// through `writer`; each flip waits until `rx` delivers a slice listing that pod's IP with the new condition.
pub async fn flip(
    writer: &kube::Client,
    rx: &mut UnboundedReceiver<Arrival>,
    services: usize,
    pods: usize,
    count: usize,
    seed: u64,
) -> Result<Flips, BenchError> {
    let api: Api<Pod> = Api::namespaced(writer.clone(), NAMESPACE);
    let total = services * pods;
    let mut ready = vec![true; total];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut flips = Flips { after_request_ms: Vec::with_capacity(count), after_response_ms: Vec::with_capacity(count) };
    // Whatever the load phase left in flight is older than every flip.
    while rx.try_recv().is_ok() {}
    for n in 0..count {
        let i = rng.random_range(0..total.max(1));
        let want = !ready[i];
        let (name, ip) = (objects::pod_name(i / pods, i % pods), ip(i)?);
        let patch = Patch::Merge(objects::pod_status(&ip, want));
        let sent = Instant::now();
        api.patch_status(&name, &PatchParams::default(), &patch).await?;
        let responded = Instant::now();
        let deadline = sent + FLIP_DEADLINE;
        let what = format!("flip {n}: pod {name} ({ip}) ready={want} in its EndpointSlice");
        let arrived = loop {
            let (arrived, update) = slices::next(rx, deadline, &what).await?;
            if update.ready_of(&ip) == Some(want) {
                break arrived;
            }
        };
        ready[i] = want;
        flips.after_request_ms.push(signed_ms(sent, arrived));
        flips.after_response_ms.push(signed_ms(responded, arrived));
    }
    Ok(flips)
}

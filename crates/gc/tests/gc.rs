//! The garbage collector against a real API server: Deployment → ReplicaSet → Pod chains built by hand and
//! deleted with each propagation policy, several owners, owners recreated under the same name, and garbage left
//! while the collector was down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/lib.rs"]
mod support;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use support::{deployment, eventually, exists, kubelet_finishes, owner, pod, replicaset};

const NS: &str = "default";

#[tokio::test]
async fn background_deletion_cascades_through_replicasets_to_pods() {
    let c = support::start().await;
    let d = deployment(&c.client, NS, "web").await;
    let rs = replicaset(&c.client, NS, "web-1", vec![owner(&d, true)]).await;
    pod(&c.client, NS, "web-1-a", vec![owner(&rs, true)], None).await;
    pod(&c.client, NS, "web-1-b", vec![owner(&rs, true)], None).await;
    let (deploys, sets, pods) = apis(&c.client);

    deploys.delete("web", &DeleteParams::background()).await.unwrap();
    // The owner goes at once; its dependents follow.
    assert!(!exists(&deploys, "web").await);
    eventually("the replicaset and its pods are collected", || async {
        !exists(&sets, "web-1").await && !exists(&pods, "web-1-a").await && !exists(&pods, "web-1-b").await
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents_then_removes_the_owner() {
    let c = support::start().await;
    let d = deployment(&c.client, NS, "fg").await;
    let rs = replicaset(&c.client, NS, "fg-1", vec![owner(&d, true)]).await;
    // Bound to a node: the pod waits for a kubelet, so the whole chain waits too.
    pod(&c.client, NS, "fg-1-a", vec![owner(&rs, true)], Some("node-1")).await;
    let (deploys, sets, pods) = apis(&c.client);

    deploys.delete("fg", &DeleteParams::foreground()).await.unwrap();
    eventually("the pod is marked for deletion", || async {
        pods.get_opt("fg-1-a").await.unwrap().is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let held = deploys.get("fg").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(held.finalizers().iter().any(|f| f == "foregroundDeletion"), "{:?}", held.finalizers());
    let rs_held = sets.get("fg-1").await.unwrap();
    assert!(
        rs_held.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "the replicaset cascades in the foreground"
    );

    kubelet_finishes(&pods, "fg-1-a").await;
    eventually("the replicaset goes after its pod", || async { !exists(&sets, "fg-1").await }).await;
    eventually("the deployment goes last", || async { !exists(&deploys, "fg").await }).await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_drops_the_reference() {
    let c = support::start().await;
    let d = deployment(&c.client, NS, "orph").await;
    let rs = replicaset(&c.client, NS, "orph-1", vec![owner(&d, true)]).await;
    pod(&c.client, NS, "orph-1-a", vec![owner(&rs, true)], None).await;
    let (deploys, sets, pods) = apis(&c.client);

    deploys.delete("orph", &DeleteParams::orphan()).await.unwrap();
    eventually("the deployment is removed", || async { !exists(&deploys, "orph").await }).await;
    let rs = sets.get("orph-1").await.unwrap();
    assert!(rs.owner_references().is_empty(), "{:?}", rs.owner_references());
    let p = pods.get("orph-1-a").await.unwrap();
    assert_eq!(p.owner_references().len(), 1, "the pod keeps its replicaset");
    // And nothing deletes them afterwards.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(exists(&sets, "orph-1").await && exists(&pods, "orph-1-a").await);
}

#[tokio::test]
async fn a_dependent_with_two_owners_survives_the_deletion_of_one() {
    let c = support::start().await;
    let a = replicaset(&c.client, NS, "owner-a", vec![]).await;
    let b = replicaset(&c.client, NS, "owner-b", vec![]).await;
    pod(&c.client, NS, "shared", vec![owner(&a, true), owner(&b, false)], None).await;
    let (_, sets, pods) = apis(&c.client);

    sets.delete("owner-a", &DeleteParams::background()).await.unwrap();
    eventually("the dangling reference is removed", || async {
        pods.get_opt("shared").await.unwrap().is_some_and(|p| p.owner_references().len() == 1)
    })
    .await;
    let p = pods.get("shared").await.unwrap();
    assert_eq!(p.owner_references()[0].uid, b.uid().unwrap());

    sets.delete("owner-b", &DeleteParams::background()).await.unwrap();
    eventually("the pod goes with its last owner", || async { !exists(&pods, "shared").await }).await;
}

#[tokio::test]
async fn an_owner_recreated_under_the_same_name_does_not_adopt_old_dependents() {
    let c = support::start().await;
    let old = replicaset(&c.client, NS, "same", vec![]).await;
    let (_, sets, pods) = apis(&c.client);
    // A pod that names the live owner stays; one that names the same name with a stale uid goes.
    let mut stale = owner(&old, true);
    stale.uid = "00000000-0000-0000-0000-000000000000".into();
    pod(&c.client, NS, "live-child", vec![owner(&old, true)], None).await;
    pod(&c.client, NS, "stale-child", vec![stale], None).await;

    eventually("the pod with a stale uid is collected", || async { !exists(&pods, "stale-child").await }).await;
    assert!(exists(&pods, "live-child").await);
    assert!(exists(&sets, "same").await);
}

#[tokio::test]
async fn garbage_left_while_the_collector_was_down_is_collected_when_it_starts() {
    let (c, start_gc) = support::start_idle().await;
    let d = deployment(&c.client, NS, "gone").await;
    let rs = replicaset(&c.client, NS, "gone-1", vec![owner(&d, true)]).await;
    pod(&c.client, NS, "gone-1-a", vec![owner(&rs, true)], None).await;
    let (deploys, sets, pods) = apis(&c.client);
    deploys.delete("gone", &DeleteParams::background()).await.unwrap();
    assert!(exists(&sets, "gone-1").await, "nothing collects without the collector");

    start_gc();
    eventually("the orphaned chain is collected", || async {
        !exists(&sets, "gone-1").await && !exists(&pods, "gone-1-a").await
    })
    .await;
}

fn apis(client: &kube::Client) -> (Api<Deployment>, Api<ReplicaSet>, Api<Pod>) {
    (Api::namespaced(client.clone(), NS), Api::namespaced(client.clone(), NS), Api::namespaced(client.clone(), NS))
}

/// Upstream conformance "Garbage collector should not delete dependents that have both valid owner and owner
/// that's waiting for dependents to be deleted".
#[tokio::test]
async fn foreground_deletion_spares_dependents_that_have_another_valid_owner() {
    let c = support::start().await;
    let doomed = replicaset(&c.client, NS, "simpletest-rs-to-be-deleted", vec![]).await;
    let stays = replicaset(&c.client, NS, "simpletest-rs-to-stay", vec![]).await;
    let (_, sets, pods) = apis(&c.client);
    for i in 0..6 {
        let owners = if i < 3 { vec![owner(&doomed, true), owner(&stays, false)] } else { vec![owner(&doomed, true)] };
        pod(&c.client, NS, &format!("p{i}"), owners, None).await;
    }

    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions { uid: doomed.uid(), resource_version: None }),
        ..DeleteParams::foreground()
    };
    sets.delete("simpletest-rs-to-be-deleted", &dp).await.unwrap();
    eventually("the owner is deleted", || async { !exists(&sets, "simpletest-rs-to-be-deleted").await }).await;
    let left = pods.list(&Default::default()).await.unwrap().items;
    let names: Vec<_> = left.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["p0", "p1", "p2"]);
    for p in left {
        assert!(p.metadata.deletion_timestamp.is_none());
        assert_eq!(p.owner_references().len(), 1);
        assert_eq!(p.owner_references()[0].uid, stays.uid().unwrap());
    }
}

/// Upstream conformance "Garbage collector should not be blocked by dependency circle": pod1 ← pod3, pod2 ← pod1,
/// pod3 ← pod2; deleting pod1 in the foreground deletes all three.
#[tokio::test]
async fn a_dependency_circle_does_not_block_foreground_deletion() {
    let c = support::start().await;
    let (_, _, pods) = apis(&c.client);
    let mut made = Vec::new();
    for name in ["pod1", "pod2", "pod3"] {
        made.push(pod(&c.client, NS, name, vec![], None).await);
    }
    for (dependent, owner_at) in [(0, 2), (1, 0), (2, 1)] {
        let patch = serde_json::json!({"metadata": {"ownerReferences": [owner(&made[owner_at], true)]}});
        pods.patch(&made[dependent].name_any(), &Default::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    }
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions { uid: made[0].uid(), resource_version: None }),
        ..DeleteParams::foreground()
    };
    pods.delete("pod1", &dp).await.unwrap();
    eventually("all pods are deleted", || async { pods.list(&Default::default()).await.unwrap().items.is_empty() })
        .await;
}

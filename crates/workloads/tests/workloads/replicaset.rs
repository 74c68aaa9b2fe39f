//! ReplicaSet controller: creation, status, scaling, adoption and release.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::*;

fn rs_json(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    })
}

async fn scale(c: &Cluster, name: &str, replicas: i32) {
    let patch = json!({"spec": {"replicas": replicas}});
    sets(c).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

#[tokio::test]
async fn creates_pods_with_names_labels_owner_refs_and_status() {
    let c = start().await;
    let rs: ReplicaSet = create(&sets(&c), rs_json("front", 3)).await;
    let uid = rs.uid().unwrap();
    let made = wait_for("3 pods", || async {
        let p = live_pods(&c, "app=front").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &made {
        let name = p.name_any();
        let suffix = name.strip_prefix("front-").expect("named after the ReplicaSet");
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(p.labels().get("tier").map(String::as_str), Some("web"));
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ReplicaSet", uid.as_str()));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    }
    mark_ready(&c, &made[0].name_any()).await;
    mark_ready(&c, &made[1].name_any()).await;
    let status = wait_for("status", || async {
        let s = sets(&c).get("front").await.unwrap().status?;
        (s.ready_replicas == Some(2) && s.available_replicas == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.observed_generation, Some(1));
    let created = wait_for("events", || async {
        let n = event_notes(&c, "front", "SuccessfulCreate").await;
        (n.len() == 3).then_some(n)
    })
    .await;
    assert!(created.iter().all(|n| n.starts_with("Created pod: front-")), "{created:?}");
}

#[tokio::test]
async fn scaling_down_deletes_not_ready_pods_first_and_scaling_up_adds() {
    let c = start().await;
    create::<ReplicaSet>(&sets(&c), rs_json("scaled", 3)).await;
    let made = wait_for("3 pods", || async {
        let p = live_pods(&c, "app=scaled").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    // Two pods become Ready; the third never does.
    mark_ready(&c, &made[0].name_any()).await;
    mark_ready(&c, &made[2].name_any()).await;
    wait_for("ready", || async {
        (sets(&c).get("scaled").await.unwrap().status?.ready_replicas == Some(2)).then_some(())
    })
    .await;
    scale(&c, "scaled", 2).await;
    let left = wait_for("2 pods", || async {
        let p = live_pods(&c, "app=scaled").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    assert!(left.iter().all(is_ready), "the not-ready pod went first");
    assert!(left.iter().all(|p| p.name_any() != made[1].name_any()));
    let deleted = wait_for("delete event", || async {
        let n = event_notes(&c, "scaled", "SuccessfulDelete").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(deleted, vec![format!("Deleted pod: {}", made[1].name_any())]);

    scale(&c, "scaled", 4).await;
    wait_for("4 pods", || async { (live_pods(&c, "app=scaled").await.len() == 4).then_some(()) }).await;
    // Steady: no extra creates once the cache has caught up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(live_pods(&c, "app=scaled").await.len(), 4);
}

#[tokio::test]
async fn adopts_orphans_and_releases_pods_whose_labels_change() {
    let c = start().await;
    let orphan: Pod = create(
        &pods(&c),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "orphan", "labels": {"app": "adopt", "extra": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .await;
    assert!(orphan.owner_references().is_empty());
    let rs: ReplicaSet = create(&sets(&c), rs_json("adopt", 2)).await;
    let uid = rs.uid().unwrap();
    let adopted = wait_for("adoption", || async {
        let p = pods(&c).get("orphan").await.ok()?;
        p.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)).then_some(p)
    })
    .await;
    assert_eq!(adopted.name_any(), "orphan");
    wait_for("2 pods", || async { (live_pods(&c, "app=adopt").await.len() == 2).then_some(()) }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(live_pods(&c, "app=adopt").await.len(), 2, "the orphan counts, only one pod is created");

    // The orphan's labels change: it is released and replaced.
    let patch = json!({"metadata": {"labels": {"app": "elsewhere"}}});
    pods(&c).patch("orphan", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_for("release", || async {
        let p = pods(&c).get("orphan").await.ok()?;
        p.owner_references().is_empty().then_some(())
    })
    .await;
    wait_for("replacement", || async { (live_pods(&c, "app=adopt").await.len() == 2).then_some(()) }).await;
    assert!(live_pods(&c, "app=adopt").await.iter().all(|p| p.name_any().starts_with("adopt-")));
}

//! Deployment controller: creation and status, rolling updates, Recreate, history, undo, pause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const REVISION: &str = "deployment.kubernetes.io/revision";

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn condition(d: &Deployment, type_: &str) -> Option<DeploymentCondition> {
    d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).cloned()
}

/// `kubectl rollout status`'s success test.
fn rolled_out(d: &Deployment) -> bool {
    let Some(s) = d.status.as_ref() else { return false };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = s.updated_replicas.unwrap_or(0);
    d.metadata.generation <= s.observed_generation
        && condition(d, "Progressing").is_none_or(|c| c.reason.as_deref() != Some("ProgressDeadlineExceeded"))
        && updated >= want
        && s.replicas.unwrap_or(0) == updated
        && s.available_replicas.unwrap_or(0) >= updated
}

/// Marks pods Ready until the Deployment has rolled out.
async fn roll_out(c: &Cluster, name: &str) -> Deployment {
    wait_for("rollout", || async {
        ready_all(c, &format!("app={name}")).await;
        let d = deployments(c).get(name).await.unwrap();
        rolled_out(&d).then_some(d)
    })
    .await
}

#[tokio::test]
async fn creates_a_hashed_replica_set_and_reports_status() {
    let c = start().await;
    let d: Deployment =
        create(&deployments(&c), deployment_json("web", 3, "nginx:1", rolling(json!(1), json!(0)))).await;
    let rs = wait_for("replica set", || async { owned_sets(&c, "web").await.pop() }).await;
    let hash = rs.labels().get("pod-template-hash").cloned().expect("hash label");
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.clone().unwrap();
    assert_eq!(spec.selector.match_labels.unwrap().get("pod-template-hash"), Some(&hash));
    assert_eq!(spec.template.unwrap().metadata.unwrap().labels.unwrap().get("pod-template-hash"), Some(&hash));
    assert_eq!(annotation(&rs.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(), Some("3"));
    assert_eq!(annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas").as_deref(), Some("4"));
    let owner = &rs.owner_references()[0];
    assert_eq!((owner.uid.as_str(), owner.controller), (d.uid().unwrap().as_str(), Some(true)));

    let pods = wait_for("pods", || async {
        let p = live_pods(&c, "app=web").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    assert!(pods.iter().all(|p| p.labels().get("pod-template-hash") == Some(&hash)));
    let before = deployments(&c).get("web").await.unwrap();
    let available = condition(&before, "Available").expect("Available");
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("False", Some("MinimumReplicasUnavailable")));

    let d = roll_out(&c, "web").await;
    let s = d.status.clone().unwrap();
    assert_eq!(
        (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert!(s.unavailable_replicas.unwrap_or(0) == 0);
    let d = wait_for("NewReplicaSetAvailable", || async {
        let d = deployments(&c).get("web").await.unwrap();
        (condition(&d, "Progressing")?.reason.as_deref() == Some("NewReplicaSetAvailable")).then_some(d)
    })
    .await;
    let available = condition(&d, "Available").unwrap();
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("True", Some("MinimumReplicasAvailable")));
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(
        progressing.message.as_deref(),
        Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
    );
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("1"));
    let notes = event_notes(&c, "web", "ScalingReplicaSet").await;
    assert_eq!(notes, vec![format!("Scaled up replica set web-{hash} from 0 to 3")]);
    // Steady state: no more writes to the Deployment or its ReplicaSet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (d1, rs1) = (deployments(&c).get("web").await.unwrap(), sets(&c).get(&rs.name_any()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (d2, rs2) = (deployments(&c).get("web").await.unwrap(), sets(&c).get(&rs.name_any()).await.unwrap());
    assert_eq!(d1.resource_version(), d2.resource_version());
    assert_eq!(rs1.resource_version(), rs2.resource_version());
}

#[tokio::test]
async fn rolling_update_keeps_availability_and_waits_for_readiness() {
    let c = start().await;
    // 4 replicas, maxSurge 1, maxUnavailable 25% (= 1): at least 3 available at every step.
    create::<Deployment>(&deployments(&c), deployment_json("roll", 4, "nginx:1", rolling(json!(1), json!("25%"))))
        .await;
    roll_out(&c, "roll").await;
    let first = owned_sets(&c, "roll").await.pop().unwrap();
    set_image(&c, "roll", "nginx:2").await;
    wait_for("new replica set", || async { (owned_sets(&c, "roll").await.len() == 2).then_some(()) }).await;

    // Without readiness of new pods, the old ReplicaSet keeps at least 3 pods.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = sets(&c).get(&first.name_any()).await.unwrap();
    assert!(replicas(&old) >= 3, "old scaled to {}", replicas(&old));
    let ready_old = live_pods(&c, "app=roll").await.iter().filter(|p| is_ready(p)).count();
    assert!(ready_old >= 3);
    let total = live_pods(&c, "app=roll").await.len();
    assert!(total <= 5, "maxSurge: {total} pods");

    // New pods become Ready one at a time; availability never drops below 3.
    let mut steps = 0;
    loop {
        let live = live_pods(&c, "app=roll").await;
        let ready = live.iter().filter(|p| is_ready(p)).count();
        assert!(ready >= 3, "only {ready} ready pods");
        assert!(live.len() <= 5, "{} pods", live.len());
        let d = deployments(&c).get("roll").await.unwrap();
        if rolled_out(&d) && annotation(&d.metadata, REVISION).as_deref() == Some("2") {
            break;
        }
        if let Some(p) = live.iter().find(|p| !is_ready(p)) {
            mark_ready(&c, &p.name_any()).await;
        }
        steps += 1;
        assert!(steps < 500, "rollout did not finish");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let all = owned_sets(&c, "roll").await;
    assert_eq!(all.len(), 2);
    assert_eq!(replicas(&all[0]), 0);
    assert_eq!(replicas(&all[1]), 4);
    assert_eq!(annotation(&all[1].metadata, REVISION).as_deref(), Some("2"));
    let notes = event_notes(&c, "roll", "ScalingReplicaSet").await;
    assert!(
        notes.iter().any(|n| n.starts_with(&format!("Scaled down replica set {} from 4 to 3", first.name_any()))),
        "{notes:?}"
    );
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let c = start().await;
    let mut d = deployment_json("slow", 2, "nginx:1", rolling(json!(1), json!(0)));
    d["spec"]["minReadySeconds"] = json!(1);
    create::<Deployment>(&deployments(&c), d).await;
    wait_for("pods", || async { (live_pods(&c, "app=slow").await.len() == 2).then_some(()) }).await;
    ready_all(&c, "app=slow").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = deployments(&c).get("slow").await.unwrap();
    assert_eq!(d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0), 0, "not yet minReadySeconds");
    wait_for("available after minReadySeconds", || async {
        let d = deployments(&c).get("slow").await.unwrap();
        (d.status?.available_replicas == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn recreate_waits_for_old_pods_to_be_gone() {
    let c = start().await;
    let mut d = deployment_json("rec", 2, "nginx:1", json!({"type": "Recreate"}));
    // Bound pods wait for a kubelet to finish their deletion.
    d["spec"]["template"]["spec"]["nodeName"] = json!("node-1");
    create::<Deployment>(&deployments(&c), d).await;
    roll_out(&c, "rec").await;
    set_image(&c, "rec", "nginx:2").await;
    wait_for("old pods terminating", || async {
        let p = list_pods(&c, "app=rec").await;
        (p.len() == 2 && p.iter().all(|p| p.metadata.deletion_timestamp.is_some())).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(owned_sets(&c, "rec").await.len(), 1, "no new ReplicaSet while old pods terminate");
    finish_terminating(&c, "app=rec").await;
    let new_rs = wait_for("new replica set", || async {
        let s = owned_sets(&c, "rec").await;
        (s.len() == 2).then(|| s[1].clone())
    })
    .await;
    assert_eq!(replicas(&new_rs), 2);
    let d = roll_out(&c, "rec").await;
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("2"));
}

#[tokio::test]
async fn revision_history_limit_and_rollout_undo() {
    let c = start().await;
    let mut d = deployment_json("hist", 2, "nginx:1", rolling(json!(1), json!(0)));
    d["spec"]["revisionHistoryLimit"] = json!(1);
    create::<Deployment>(&deployments(&c), d).await;
    roll_out(&c, "hist").await;
    for image in ["nginx:2", "nginx:3"] {
        set_image(&c, "hist", image).await;
        wait_for("new revision", || async {
            let d = roll_out(&c, "hist").await;
            let s = owned_sets(&c, "hist").await;
            (s.last().map(|rs| {
                rs.spec.as_ref().unwrap().template.as_ref().unwrap().spec.as_ref().unwrap().containers[0].image.clone()
            }) == Some(Some(image.to_string()))
                && d.status.as_ref().and_then(|s| s.updated_replicas) == Some(2))
            .then_some(())
        })
        .await;
    }
    let kept = wait_for("history trimmed", || async {
        let s = owned_sets(&c, "hist").await;
        (s.len() == 2).then_some(s)
    })
    .await;
    let revisions: Vec<_> = kept.iter().map(|rs| annotation(&rs.metadata, REVISION).unwrap()).collect();
    assert_eq!(revisions, ["2", "3"]);

    // `kubectl rollout undo`: the template of revision 2, without its hash label, patched into the Deployment.
    let target: ReplicaSet = kept[0].clone();
    let mut template = serde_json::to_value(target.spec.as_ref().unwrap().template.as_ref().unwrap()).unwrap();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    let patch = json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {}},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    deployments(&c).patch("hist", &PatchParams::default(), &Patch::<()>::Json(patch)).await.unwrap();
    let d = wait_for("undo", || async {
        let d = roll_out(&c, "hist").await;
        (annotation(&d.metadata, REVISION).as_deref() == Some("4")).then_some(d)
    })
    .await;
    let after = owned_sets(&c, "hist").await;
    assert_eq!(after.len(), 2, "the old ReplicaSet is reused, not a new one created");
    let back = after.iter().find(|rs| rs.uid() == target.uid()).expect("revision 2's ReplicaSet");
    assert_eq!(annotation(&back.metadata, REVISION).as_deref(), Some("4"));
    assert_eq!(annotation(&back.metadata, "deployment.kubernetes.io/revision-history").as_deref(), Some("2"));
    assert_eq!(replicas(back), 2);
    assert!(rolled_out(&d));
}

#[tokio::test]
async fn paused_deployments_do_not_roll_out() {
    let c = start().await;
    create::<Deployment>(&deployments(&c), deployment_json("pause", 1, "nginx:1", rolling(json!(1), json!(0)))).await;
    roll_out(&c, "pause").await;
    let patch = json!({"spec": {"paused": true}});
    deployments(&c).patch("pause", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    set_image(&c, "pause", "nginx:2").await;
    let d = wait_for("paused condition", || async {
        let d = deployments(&c).get("pause").await.unwrap();
        (condition(&d, "Progressing")?.reason.as_deref() == Some("DeploymentPaused")).then_some(d)
    })
    .await;
    assert_eq!(condition(&d, "Progressing").unwrap().status, "Unknown");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(owned_sets(&c, "pause").await.len(), 1);
    // Scaling still works while paused.
    let patch = json!({"spec": {"replicas": 3}});
    deployments(&c).patch("pause", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_for("scaled while paused", || async { (replicas(&owned_sets(&c, "pause").await[0]) == 3).then_some(()) })
        .await;
    let patch = json!({"spec": {"paused": false}});
    deployments(&c).patch("pause", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_for("rollout after resume", || async { (owned_sets(&c, "pause").await.len() == 2).then_some(()) }).await;
}

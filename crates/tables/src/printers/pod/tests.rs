use serde_json::{Value, json};

use super::*;
use crate::printers::tests::{at, now};

fn pod(status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": at(192)},
        "spec": {"nodeName": "node-1", "containers": [{"name": "nginx", "image": "nginx"}, {"name": "log", "image": "busybox"}]},
        "status": status
    })
}

fn running(name: &str, ready: bool, restarts: i64) -> Value {
    json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": at(100)}}})
}

fn cells(p: &Value) -> Vec<Value> {
    print_pod(p, now()).cells
}

#[test]
fn running_pod_all_cells() {
    let p = pod(json!({
        "phase": "Running",
        "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [running("nginx", true, 0), running("log", false, 0)]
    }));
    assert_eq!(
        cells(&p),
        vec![
            json!("web-1"),
            json!("1/2"),
            json!("Running"),
            json!("0"),
            json!("3m12s"),
            json!("10.244.0.7"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    assert_eq!(print_pod(&p, now()).conditions, None);
}

#[test]
fn pending_unscheduled_pod() {
    let mut p = pod(json!({"phase": "Pending"}));
    p["spec"].as_object_mut().map(|s| s.remove("nodeName"));
    let c = cells(&p);
    assert_eq!(&c[1..4], &[json!("0/2"), json!("Pending"), json!("0")]);
    assert_eq!(&c[5..7], &[json!("<none>"), json!("<none>")]);
}

#[test]
fn restarts_show_when_the_last_one_finished() {
    let mut crashing = running("nginx", false, 3);
    crashing["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}});
    crashing["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": at(120)}});
    let p = pod(json!({"phase": "Running", "containerStatuses": [crashing, running("log", true, 1)]}));
    let c = cells(&p);
    assert_eq!(&c[1..4], &[json!("1/2"), json!("CrashLoopBackOff"), json!("4 (2m ago)")]);
}

#[test]
fn waiting_reasons_win() {
    let pulling = json!({"name": "nginx", "ready": false, "restartCount": 0,
                         "state": {"waiting": {"reason": "ErrImagePull"}}});
    let p = pod(json!({"phase": "Pending", "containerStatuses": [pulling, running("log", true, 0)]}));
    assert_eq!(cells(&p)[2], json!("ErrImagePull"));
    let creating = json!({"name": "nginx", "state": {"waiting": {"reason": "ContainerCreating"}}});
    let p = pod(json!({"phase": "Pending", "containerStatuses": [creating]}));
    assert_eq!(cells(&p)[2], json!("ContainerCreating"));
}

#[test]
fn completed_and_failed_pods_carry_row_conditions() {
    let done = json!({"name": "job", "ready": false, "restartCount": 0,
                      "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let p = pod(json!({"phase": "Succeeded", "containerStatuses": [done]}));
    let row = print_pod(&p, now());
    assert_eq!(&row.cells[1..3], &[json!("0/2"), json!("Completed")]);
    assert_eq!(
        row.conditions,
        Some(json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                     "message": "The pod has completed successfully."}]))
    );
    let killed = json!({"name": "job", "state": {"terminated": {"exitCode": 137, "signal": 9}}});
    let p = pod(json!({"phase": "Failed", "containerStatuses": [killed]}));
    let row = print_pod(&p, now());
    assert_eq!(row.cells[2], json!("Signal:9"));
    assert_eq!(row.conditions.as_ref().and_then(|c| c.pointer("/0/reason")), Some(&json!("Failed")));
    let exited = json!({"name": "job", "state": {"terminated": {"exitCode": 2}}});
    assert_eq!(cells(&pod(json!({"phase": "Failed", "containerStatuses": [exited]})))[2], json!("ExitCode:2"));
}

#[test]
fn completed_container_next_to_a_running_one() {
    let done = json!({"name": "nginx", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let mut p = pod(json!({"phase": "Running", "containerStatuses": [done.clone(), running("log", true, 0)],
                           "conditions": [{"type": "Ready", "status": "False"}]}));
    // Statuses are walked from the last one, so the first container's reason is the one left standing.
    assert_eq!(cells(&p)[2], json!("NotReady"));
    p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    assert_eq!(cells(&p)[2], json!("Running"));
}

#[test]
fn init_containers() {
    let mut p = pod(json!({
        "phase": "Pending",
        "initContainerStatuses": [
            {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "wait", "restartCount": 0, "state": {"running": {}}}
        ],
        "containerStatuses": [{"name": "nginx", "state": {"waiting": {"reason": "PodInitializing"}}}]
    }));
    p["spec"]["initContainers"] = json!([{"name": "migrate"}, {"name": "wait"}]);
    assert_eq!(cells(&p)[2], json!("Init:1/2"));

    p["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
    p["status"]["initContainerStatuses"][1]["restartCount"] = json!(2);
    let c = cells(&p);
    assert_eq!(c[2], json!("Init:CrashLoopBackOff"));
    assert_eq!(c[3], json!("2"));

    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
    assert_eq!(cells(&p)[2], json!("Init:Error"));
    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
    assert_eq!(cells(&p)[2], json!("Init:ExitCode:3"));
    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 143, "signal": 15}});
    assert_eq!(cells(&p)[2], json!("Init:Signal:15"));
}

#[test]
fn sidecars_count_as_containers() {
    let mut p = pod(json!({
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
            "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": at(3600)}}}],
        "containerStatuses": [running("nginx", true, 0), running("log", true, 0)]
    }));
    p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
    let c = cells(&p);
    assert_eq!(&c[1..4], &[json!("3/3"), json!("Running"), json!("1 (60m ago)")]);
}

#[test]
fn deletion_and_scheduling_gates() {
    let mut p = pod(json!({"phase": "Running", "containerStatuses": [running("nginx", true, 0)]}));
    p["metadata"]["deletionTimestamp"] = json!(at(5));
    assert_eq!(cells(&p)[2], json!("Terminating"));
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells(&p)[2], json!("Unknown"));
    p["status"] = json!({"phase": "Succeeded"});
    assert_eq!(cells(&p)[2], json!("Succeeded"), "a finished pod is not Terminating");

    let gated = pod(json!({"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}));
    assert_eq!(cells(&gated)[2], json!("SchedulingGated"));
    let evicted = pod(json!({"phase": "Failed", "reason": "Evicted"}));
    assert_eq!(cells(&evicted)[2], json!("Evicted"));
}

#[test]
fn wide_cells() {
    let mut p = pod(json!({
        "phase": "Running", "podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00::7"}], "nominatedNodeName": "node-2",
        "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "Ready", "status": "False"}]
    }));
    p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
    let c = cells(&p);
    assert_eq!(&c[5..], &[json!("10.244.0.7"), json!("node-1"), json!("node-2"), json!("1/2")]);
    let wide: Vec<&str> = PRINTER.columns.iter().filter(|c| c.priority == 1).map(|c| c.name).collect();
    assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert_eq!(PRINTER.columns[3].ty, "string");
}

//! Deployments and ReplicaSets: upstream's `printDeployment` and `printReplicaSet`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Column, PrintedRow, Printer, age, int, items, name, text};
use crate::descriptions as d;
use crate::selector::{format_label_selector, selector_string};

/// `spec.replicas`, which defaulting sets to 1 when omitted.
fn desired_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

/// The template's container names and images, each comma-joined (`layoutContainerCells`).
fn containers_and_images(obj: &Value) -> (String, String) {
    let containers = items(obj, "/spec/template/spec/containers");
    let names = containers.iter().map(|c| text(c, "/name")).collect::<Vec<_>>().join(",");
    let images = containers.iter().map(|c| text(c, "/image")).collect::<Vec<_>>().join(",");
    (names, images)
}

pub const DEPLOYMENT: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("Ready", "string", d::READY_PODS),
        Column::new("Up-to-date", "string", d::DEPLOYMENT_UPDATED_REPLICAS),
        Column::new("Available", "string", d::DEPLOYMENT_AVAILABLE_REPLICAS),
        Column::age(),
        Column::new("Containers", "string", d::CONTAINERS).wide(),
        Column::new("Images", "string", d::IMAGES).wide(),
        Column::new("Selector", "string", d::DEPLOYMENT_SELECTOR).wide(),
    ],
    print: print_deployment,
};

fn print_deployment(deploy: &Value, now: DateTime<Utc>) -> PrintedRow {
    let (containers, images) = containers_and_images(deploy);
    // Unlike ReplicaSets, an empty selector prints as the empty string and a broken one as `<invalid>`.
    let selector = selector_string(deploy.pointer("/spec/selector")).unwrap_or_else(|_| "<invalid>".to_string());
    vec![
        json!(name(deploy)),
        json!(format!("{}/{}", int(deploy, "/status/readyReplicas"), desired_replicas(deploy))),
        json!(int(deploy, "/status/updatedReplicas")),
        json!(int(deploy, "/status/availableReplicas")),
        json!(age(deploy, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ]
    .into()
}

pub const REPLICA_SET: Printer = Printer {
    columns: &[
        Column::name(),
        Column::new("Desired", "integer", d::REPLICA_SET_REPLICAS),
        Column::new("Current", "integer", d::REPLICA_SET_STATUS_REPLICAS),
        Column::new("Ready", "integer", d::REPLICA_SET_READY_REPLICAS),
        Column::age(),
        Column::new("Containers", "string", d::CONTAINERS).wide(),
        Column::new("Images", "string", d::IMAGES).wide(),
        Column::new("Selector", "string", d::REPLICA_SET_SELECTOR).wide(),
    ],
    print: print_replica_set,
};

fn print_replica_set(rs: &Value, now: DateTime<Utc>) -> PrintedRow {
    let (containers, images) = containers_and_images(rs);
    vec![
        json!(name(rs)),
        json!(desired_replicas(rs)),
        json!(int(rs, "/status/replicas")),
        json!(int(rs, "/status/readyReplicas")),
        json!(age(rs, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printers::tests::{at, now};

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": at(3 * 86400 + 7200)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "sidecar", "image": "busybox:1.36"}
                ]}}
            },
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
        })
    }

    #[test]
    fn deployment_cells() {
        let row = print_deployment(&deployment(), now());
        assert_eq!(
            row.cells,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("3d2h"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox:1.36"),
                json!("app=web")
            ]
        );
        assert_eq!(row.cells.len(), DEPLOYMENT.columns.len());
    }

    #[test]
    fn new_deployment_without_status() {
        let mut d = deployment();
        d["status"] = json!({});
        d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]});
        let row = print_deployment(&d, now());
        assert_eq!(&row.cells[1..4], &[json!("0/3"), json!(0), json!(0)]);
        assert_eq!(row.cells[7], json!("<invalid>"));
    }

    #[test]
    fn replica_set_cells() {
        let mut rs = deployment();
        rs["kind"] = json!("ReplicaSet");
        rs["metadata"]["name"] = json!("web-7d4b9c");
        rs["spec"]["replicas"] = json!(2);
        rs["status"] = json!({"replicas": 2, "readyReplicas": 1});
        rs["spec"]["selector"] = json!({"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}});
        let row = print_replica_set(&rs, now());
        assert_eq!(
            row.cells,
            vec![
                json!("web-7d4b9c"),
                json!(2),
                json!(2),
                json!(1),
                json!("3d2h"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox:1.36"),
                json!("app=web,pod-template-hash=7d4b9c")
            ]
        );
        rs["spec"]["selector"] = json!({});
        assert_eq!(print_replica_set(&rs, now()).cells[7], json!("<none>"));
    }

    #[test]
    fn wide_columns_are_priority_one() {
        let wide: Vec<&str> = DEPLOYMENT.columns.iter().filter(|c| c.priority == 1).map(|c| c.name).collect();
        assert_eq!(wide, ["Containers", "Images", "Selector"]);
        let types: Vec<&str> = REPLICA_SET.columns.iter().map(|c| c.ty).collect();
        assert_eq!(types, ["string", "integer", "integer", "integer", "string", "string", "string", "string"]);
    }
}

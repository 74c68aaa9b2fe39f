use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            template: template("nginx:1", None),
            ..Default::default()
        }),
        status: None,
    }
}

fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
    let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    if let Some(h) = hash {
        labels.insert(POD_TEMPLATE_HASH.into(), h.into());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
            ..Default::default()
        }),
    }
}

fn rs(name: &str, replicas: i32, available: i32, annotations: &[(&str, &str)]) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(template(name, Some("h"))),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus { replicas, available_replicas: Some(available), ..Default::default() }),
    }
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    assert_eq!(fenceposts(&deployment(10, pct("25%"), pct("25%"))).ok(), Some((3, 2)));
    assert_eq!(fenceposts(&deployment(1, pct("25%"), pct("25%"))).ok(), Some((1, 0)));
    // Both resolve to zero: maxUnavailable becomes 1.
    assert_eq!(fenceposts(&deployment(3, IntOrString::Int(0), pct("10%"))).ok(), Some((0, 1)));
    assert!(fenceposts(&deployment(3, pct("x"), IntOrString::Int(1))).is_err());
    assert_eq!(max_unavailable(&deployment(2, IntOrString::Int(0), IntOrString::Int(5))), 2);
}

#[test]
fn new_replica_set_grows_within_surge() {
    let d = deployment(4, IntOrString::Int(1), IntOrString::Int(1));
    let old = rs("old", 4, 4, &[]);
    let new = rs("new", 0, 0, &[]);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new).ok(), Some(1));
    let old = rs("old", 3, 3, &[]);
    let new = rs("new", 2, 0, &[]);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new).ok(), Some(2), "already at 5 pods");
}

#[test]
fn equal_ignore_hash_and_find_new() {
    assert!(equal_ignore_hash(&template("a", Some("x")), &template("a", None)));
    assert!(!equal_ignore_hash(&template("a", Some("x")), &template("b", None)));
    let mut d = deployment(1, IntOrString::Int(1), IntOrString::Int(0));
    if let Some(s) = d.spec.as_mut() {
        s.template = template("second", None);
    }
    let sets = [rs("first", 1, 1, &[]), rs("second", 0, 0, &[])];
    assert_eq!(find_new(&d, &sets), Some(1));
}

#[test]
fn annotations_copy_raise_revision_and_keep_history() {
    let mut d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
    d.metadata.annotations = Some(BTreeMap::from([
        ("kubernetes.io/change-cause".to_string(), "v2".to_string()),
        (REVISION.to_string(), "9".to_string()),
    ]));
    let mut new = rs("n", 0, 0, &[]);
    assert!(set_new_rs_annotations(&d, &mut new, 1, false));
    let a = new.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a.get(REVISION).map(String::as_str), Some("1"));
    assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
    assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
    assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("4"));
    assert!(!set_new_rs_annotations(&d, &mut new, 1, true), "nothing changes the second time");
    // Rolling back to it later: revision 4, history keeps 1.
    assert!(set_new_rs_annotations(&d, &mut new, 4, true));
    let a = new.metadata.annotations.unwrap_or_default();
    assert_eq!(
        (a.get(REVISION).map(String::as_str), a.get(REVISION_HISTORY).map(String::as_str)),
        (Some("4"), Some("1"))
    );
}

#[test]
fn proportional_shares_follow_max_replicas() {
    // 10 -> 20 replicas, maxSurge 0: a set of 6 of the old 10 gets 6 more.
    let d = deployment(20, IntOrString::Int(0), IntOrString::Int(1));
    let big = rs("big", 6, 6, &[(MAX_REPLICAS, "10")]);
    assert_eq!(proportion(&big, &d, 10, 0), 6);
    assert_eq!(proportion(&big, &d, 10, 8), 2, "never more than what is left");
    let zero = deployment(0, IntOrString::Int(0), IntOrString::Int(1));
    assert_eq!(proportion(&big, &zero, -6, 0), -6);
}

#[test]
fn saturation() {
    let d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
    assert!(is_saturated(&d, Some(&rs("n", 3, 3, &[(DESIRED_REPLICAS, "3")]))));
    assert!(!is_saturated(&d, Some(&rs("n", 3, 2, &[(DESIRED_REPLICAS, "3")]))));
    assert!(!is_saturated(&d, None));
}

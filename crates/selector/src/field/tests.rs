//! Cases ported from upstream's `fields/selector_test.go`, plus the per-resource field tables.

use serde_json::{Value, json};

use super::*;

fn parse(s: &str) -> FieldSelector {
    s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// Matching against a resource without special fields, where every field is read by its path.
fn matches(s: &str, obj: Value) -> bool {
    parse(s).matches("", "configmaps", &obj)
}

#[test]
fn good_and_bad_strings() {
    for good in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b", "x==a", "metadata.name=web"] {
        parse(good);
    }
    for bad in ["x=a||y=b", "x==a==b", "x=a,b", "x in (a)", "x in (a,b,c)", "x"] {
        assert!(bad.parse::<FieldSelector>().is_err(), "{bad:?} should not parse");
    }
    assert_eq!("x".parse::<FieldSelector>().unwrap_err().to_string(), "invalid selector: 'x'; can't understand 'x'");
    assert_eq!(
        "x=a,b".parse::<FieldSelector>().unwrap_err().to_string(),
        "invalid selector: 'x=a,b'; can't understand 'b'"
    );
    assert_eq!(
        "x==a==b".parse::<FieldSelector>().unwrap_err().to_string(),
        "invalid field selector: unescaped character in value: 61"
    );
}

#[test]
fn parsing_is_deterministic() {
    assert_eq!(parse("x=a,a=x").to_string(), parse("a=x,x=a").to_string());
    assert_eq!(parse("x=a,a=x").to_string(), "a=x,x=a");
    assert_eq!(parse("x==a,y!=b").to_string(), "x=a,y!=b");
    assert!(parse("").is_empty() && parse(",,").is_empty());
}

#[test]
fn escaping_round_trips() {
    let cases = [("", ""), ("a", "a"), ("=", r"\="), (",", r"\,"), (r"\", r"\\"), (r"\=\,\", r"\\\=\\\,\\")];
    for (raw, escaped) in cases {
        assert_eq!(escape(raw), escaped);
        assert_eq!(unescape(escaped).unwrap(), raw);
    }
    for bad in [r"\", r"\\\", r"\a", "=", ","] {
        assert!(unescape(bad).is_err(), "{bad:?}");
    }
    assert_eq!(unescape(r"\a").unwrap_err().to_string(), r"invalid field selector: invalid escape sequence: \a");
    assert_eq!(unescape(r"\").unwrap_err().to_string(), r"invalid field selector: invalid escape sequence: \");
}

#[test]
fn matches_like_upstream() {
    assert!(matches("", json!({"x": "y"})));
    assert!(matches("x=y", json!({"x": "y"})));
    assert!(matches("x=y,z=w", json!({"x": "y", "z": "w"})));
    assert!(matches("x!=y,z!=w", json!({"x": "z", "z": "a"})));
    assert!(matches("notin=in", json!({"notin": "in"})));
    assert!(!matches("x=y", json!({"x": "z"})));
    assert!(!matches("x=y,z=w", json!({"x": "w", "z": "w"})));
    assert!(!matches("x!=y,z!=w", json!({"x": "z", "z": "w"})));
    let set = json!({"foo": "bar", "baz": "blah", "complex": r"=value\,\"});
    assert!(matches("foo=bar", set.clone()));
    assert!(matches("foo=bar,baz=blah", set.clone()));
    assert!(matches(r"foo=bar,baz=blah,complex=\=value\\\,\\", set.clone()));
    assert!(!matches("foo=blah", set.clone()));
    assert!(!matches("foo=bar,foobar=bar,baz=blah", set));
    // Missing fields compare as "".
    assert!(matches("x=", json!({})));
    assert!(matches("x!=y", json!({})));
    assert!(!matches("x=y", json!({})));
}

#[test]
fn exact_name() {
    assert_eq!(parse("metadata.name=web,metadata.namespace=default").exact_name(), Some("web"));
    assert_eq!(parse("metadata.name==web").exact_name(), Some("web"));
    assert_eq!(parse("metadata.name!=web").exact_name(), None);
    assert_eq!(parse("metadata.namespace=default").exact_name(), None);
}

#[test]
fn validates_fields_per_resource() {
    let ok = |s: &str, g: &str, p: &str| parse(s).validate_for(g, p).is_ok();
    assert!(ok("metadata.name=a,metadata.namespace=b", "apps", "deployments"));
    assert!(ok("spec.nodeName=n,status.phase=Running,spec.hostNetwork=true,status.podIP=1.2.3.4", "", "pods"));
    assert!(ok("spec.restartPolicy=Always,spec.schedulerName=s,spec.serviceAccountName=sa", "", "pods"));
    assert!(ok("status.nominatedNodeName=n,spec.host=n", "", "pods"));
    assert!(ok("involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Service", "", "events"));
    assert!(ok("involvedObject.uid=u,reason=Started,type=Normal,source=kubelet,reportingComponent=x", "", "events"));
    assert!(ok("involvedObject.name=web,involvedObject.fieldPath=x", "events.k8s.io", "events"));
    assert!(ok("type=kubernetes.io/tls", "", "secrets"));
    assert!(ok("spec.unschedulable=false,metadata.name=n", "", "nodes"));
    assert!(ok("status.phase=Active", "", "namespaces"));
    assert!(ok("status.replicas=0", "apps", "replicasets"));
    assert!(ok("spec.clusterIP=None,spec.type=ClusterIP", "", "services"));

    let err = |s: &str, g: &str, p: &str| parse(s).validate_for(g, p).unwrap_err().to_string();
    assert_eq!(err("status.hostIP=1.2.3.4", "", "pods"), "field label not supported: status.hostIP");
    assert_eq!(err("metadata.namespace=x", "", "nodes"), "field label not supported: metadata.namespace");
    assert_eq!(err("spec.replicas=1", "apps", "replicasets"), "field label not supported: spec.replicas");
    assert_eq!(
        err("foo.bar=baz", "networking.k8s.io", "ingresses"),
        r#""foo.bar" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    assert_eq!(
        err("spec.nodeName=n", "", "configmaps"),
        r#""spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
}

#[test]
fn pod_fields_render_like_upstream() {
    let pod = json!({"metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n1", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}});
    let m = |s: &str| parse(s).matches("", "pods", &pod);
    assert!(m("spec.nodeName=n1,status.phase=Running,metadata.namespace=default"));
    assert!(m("spec.host=n1"));
    assert!(m("spec.hostNetwork=false"));
    assert!(!m("spec.hostNetwork=true"));
    assert!(m("status.podIP=10.0.0.1"));
    assert!(m("spec.schedulerName="));
    assert!(m("status.phase!=Pending"));
    assert!(!m("metadata.name=q"));
    let no_ips = json!({"status": {"podIP": "10.0.0.9"}, "spec": {"hostNetwork": true}});
    assert!(parse("status.podIP=10.0.0.9,spec.hostNetwork=true").matches("", "pods", &no_ips));
}

#[test]
fn other_resource_fields_render_like_upstream() {
    let node = json!({"metadata": {"name": "n"}, "spec": {}});
    assert!(parse("spec.unschedulable=false").matches("", "nodes", &node));
    let cordoned = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
    assert!(parse("spec.unschedulable=true").matches("", "nodes", &cordoned));
    let rs = json!({"status": {"replicas": 3}});
    assert!(parse("status.replicas=3").matches("apps", "replicasets", &rs));
    assert!(parse("status.replicas=0").matches("apps", "replicasets", &json!({})));
    let secret = json!({"type": "Opaque"});
    assert!(parse("type=Opaque").matches("", "secrets", &secret));
}

#[test]
fn event_fields_for_both_event_apis() {
    let core = json!({"metadata": {"name": "e", "namespace": "default"}, "reason": "Started", "type": "Normal",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"},
        "source": {"component": "kubelet"}, "reportingComponent": "kubelet-x"});
    let sel =
        parse("involvedObject.name=p,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=u1");
    assert!(sel.matches("", "events", &core));
    assert!(parse("source=kubelet,reportingComponent=kubelet-x,reason=Started").matches("", "events", &core));
    let no_source = json!({"reportingComponent": "ctrl"});
    assert!(parse("source=ctrl").matches("", "events", &no_source));

    let v1 = json!({"metadata": {"name": "e", "namespace": "default"}, "reason": "Started", "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"},
        "reportingController": "kubelet", "note": "started"});
    assert!(sel.matches("events.k8s.io", "events", &v1));
    assert!(parse("source=kubelet,reportingComponent=kubelet,type=Normal").matches("events.k8s.io", "events", &v1));
    assert!(!parse("involvedObject.name=q").matches("events.k8s.io", "events", &v1));
}

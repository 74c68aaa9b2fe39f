//! Cases ported from upstream's `labels/selector_test.go` and `meta/v1/helper_test.go`.

use serde_json::{Map, Value, json};

use super::*;

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn parse(s: &str) -> LabelSelector {
    s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn parse_err(s: &str) -> String {
    match s.parse::<LabelSelector>() {
        Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_strings_parse() {
    let good = [
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        "x=",
        "x= ",
        "x=,z= ",
        "x= ,z= ",
        "!x",
        "x>1",
        "x>1,z<5",
        "x in (a)",
        "x in (a,b,c)",
        "x notin (a,,b)",
        "x in ()",
        "x in (,a)",
        "x in (a,)",
        "in in (in)",
        "notin notin (notin)",
        "  x  in  (  a  ,  b  )  ,  y  ",
        "k8s.io/app=web,app.kubernetes.io/name==x",
        "x=a\t,\ny!=b",
    ];
    for s in good {
        parse(s);
    }
}

#[test]
fn bad_strings_fail_with_upstream_messages() {
    let value_msg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and \
                     must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', \
                     regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    assert_eq!(
        parse_err("x=a||y=b"),
        format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {value_msg}")
    );
    assert_eq!(parse_err("x==a==b"), "found '==', expected: ',' or 'end of string'");
    assert_eq!(parse_err("!x=a"), "found '=', expected: ',' or 'end of string'");
    assert_eq!(
        parse_err("x<a"),
        "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be \
         an integer"
    );
    assert_eq!(
        parse_err("-a"),
        "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric \
         characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
         'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    );
    assert_eq!(parse_err("x in a"), "unable to parse requirement: found 'a' expected: '('");
    assert_eq!(parse_err("x in (a b)"), "unable to parse requirement: found 'b', expected: ',' or ')'");
    assert_eq!(parse_err("x,"), "found '', expected: identifier after ','");
    assert_eq!(parse_err(",x"), "found ',', expected: !, identifier, or 'end of string'");
    assert_eq!(parse_err("x in"), "unable to parse requirement: found '' expected: '('");
    assert_eq!(parse_err("x (a)"), "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt");
    assert_eq!(parse_err("x=(a)"), "unable to parse requirement: found '(', expected: identifier");
    assert!(parse_err(&format!("x={}", "a".repeat(64))).contains("must be no more than 63 characters"));
    assert!(matches!("a b".parse::<LabelSelector>(), Err(SelectorError::LabelSyntax(_))));
}

#[test]
fn matches_like_upstream() {
    let yes = [
        ("", json!({"x": "y"})),
        ("x=y", json!({"x": "y"})),
        ("x=y,z=w", json!({"x": "y", "z": "w"})),
        ("x!=y,z!=w", json!({"x": "z", "z": "a"})),
        ("notin=in", json!({"notin": "in"})),
        ("x", json!({"x": "z"})),
        ("!x", json!({"y": "z"})),
        ("x>1", json!({"x": "2"})),
        ("x<1", json!({"x": "0"})),
        ("x in (a,b)", json!({"x": "b"})),
        ("x notin (a,b)", json!({"x": "c"})),
        ("x notin (a,b)", json!({})),
        ("x in (,a)", json!({"x": ""})),
        ("x=", json!({"x": ""})),
    ];
    for (s, l) in yes {
        assert!(parse(s).matches(&labels(l.clone())), "{s:?} should match {l}");
    }
    let no = [
        ("x=z", json!({})),
        ("x=y", json!({"x": "z"})),
        ("x=y,z=w", json!({"x": "w", "z": "w"})),
        ("x!=y,z!=w", json!({"x": "z", "z": "w"})),
        ("x", json!({"y": "z"})),
        ("!x", json!({"x": "z"})),
        ("x>1", json!({"x": "0"})),
        ("x<1", json!({"x": "2"})),
        ("x>1", json!({"x": "two"})),
        ("x>1", json!({})),
        ("x in (a,b)", json!({})),
        ("x notin (a,b)", json!({"x": "a"})),
        ("x=", json!({})),
    ];
    for (s, l) in no {
        assert!(!parse(s).matches(&labels(l.clone())), "{s:?} should not match {l}");
    }
    let set = labels(json!({"foo": "bar", "baz": "blah"}));
    assert!(parse("foo=bar,baz=blah").matches(&set));
    assert!(!parse("foo=blah").matches(&set));
    assert!(!parse("foo=bar,foobar=bar,baz=blah").matches(&set));
}

#[test]
fn renders_canonically() {
    let cases = [
        ("x=a,y=b", "x=a,y=b"),
        ("y=b , x=a", "x=a,y=b"),
        ("z notin (b,a), y, !x", "!x,y,z notin (a,b)"),
        ("x in (c,a,b,a)", "x in (a,b,c)"),
        ("x==a,w!=b", "w!=b,x==a"),
        ("x>1,y<2", "x>1,y<2"),
        ("x in ()", "x in ()"),
        ("x=", "x="),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input).to_string(), want, "{input:?}");
        assert_eq!(parse(want).to_string(), want, "round trip of {want:?}");
    }
}

#[test]
fn from_json_converts_a_metav1_label_selector() {
    let sel = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web", "tier": "fe"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "canary"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
            {"key": "zone", "operator": "NotIn", "values": ["b"]}]
    }))
    .unwrap();
    assert_eq!(sel.to_string(), "app=web,env in (canary,prod),!legacy,team,tier=fe,zone notin (b)");
    assert!(sel.matches(&labels(json!({"app": "web", "tier": "fe", "env": "prod", "team": "x", "zone": "a"}))));
    assert!(!sel.matches(&labels(json!({"app": "web", "tier": "fe", "env": "dev", "team": "x"}))));
    assert!(!sel.matches(&labels(json!({"app": "web", "tier": "fe", "env": "prod", "team": "x", "legacy": "1"}))));
    assert_eq!(sel.requires_exact_match("app"), Some("web"));
    assert_eq!(sel.requires_exact_match("env"), None);
}

#[test]
fn empty_and_null_selectors() {
    let everything = LabelSelector::from_json(&json!({})).unwrap();
    assert!(everything.is_empty() && everything.matches(&Map::new()));
    let also = LabelSelector::from_json(&json!({"matchLabels": {}, "matchExpressions": []})).unwrap();
    assert!(also.is_empty());
    let nothing = LabelSelector::from_json(&Value::Null).unwrap();
    assert!(!nothing.is_empty() && nothing.matches_nothing());
    assert!(!nothing.matches(&labels(json!({"app": "web"}))));
    assert_eq!(nothing.to_string(), "");
    assert!(LabelSelector::everything().matches(&labels(json!({"a": "b"}))));
}

#[test]
fn from_json_rejects_invalid_requirements() {
    let err = |v: Value| LabelSelector::from_json(&v).unwrap_err().to_string();
    assert_eq!(
        err(json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})),
        "\"Foo\" is not a valid label selector operator"
    );
    assert_eq!(
        err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    );
    assert_eq!(
        err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
        "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
    );
    assert!(err(json!({"matchLabels": {"bad key": "x"}})).starts_with("key: Invalid value: \"bad key\": name part"));
    assert!(err(json!({"matchLabels": {"a": "bad value"}})).starts_with("values[0][a]: Invalid value: \"bad value\""));
    let two = err(json!({"matchExpressions": [{"key": "-k", "operator": "In", "values": []}]}));
    assert!(
        two.starts_with("[key: Invalid value: \"-k\"") && two.contains(", values: Invalid value: []string{}"),
        "{two}"
    );
    assert!(matches!(LabelSelector::from_json(&json!("app=web")), Err(SelectorError::Malformed(_))));
    assert!(matches!(LabelSelector::from_json(&json!({"matchLabels": {"a": 1}})), Err(SelectorError::Malformed(_))));
}

#[test]
fn from_map_is_equality_on_every_label() {
    let sel = LabelSelector::from_map(&labels(json!({"app": "web", "tier": "fe"})));
    assert_eq!(sel.to_string(), "app=web,tier=fe");
    assert!(sel.matches(&labels(json!({"app": "web", "tier": "fe", "extra": "1"}))));
    assert!(!sel.matches(&labels(json!({"app": "web"}))));
    let empty = LabelSelector::from_map(&Map::new());
    assert!(empty.is_empty() && empty.matches(&labels(json!({"x": "y"}))));
}

#[test]
fn requirement_constructor_checks_value_counts() {
    assert!(Requirement::new("x", Operator::Equals, vec!["a".into(), "b".into()]).is_err());
    assert!(Requirement::new("x", Operator::GreaterThan, vec!["1".into(), "2".into()]).is_err());
    assert!(Requirement::new("x", Operator::NotIn, vec!["a".into()]).is_ok());
    assert!(Requirement::new("x/y/z", Operator::Exists, vec![]).is_err());
    assert!(Requirement::new("example.com/x", Operator::DoesNotExist, vec![]).is_ok());
}

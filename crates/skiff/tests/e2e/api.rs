//! API semantics that the chapters' commands lean on: paging, body limits, malformed bodies, events in
//! `describe`, and the binary's own contract (exit code 64 on bad flags, clean SIGTERM).

use std::process::Command;

use super::cluster::Cluster;

#[test]
fn bad_flags_exit_64_with_one_line() {
    for args in [
        vec!["server", "--https-listen-port", "notaport"],
        vec!["server", "--datastore-endpoint", "mysql://nope"],
        vec!["server", "--service-node-port-range", "40000-30000"],
        vec!["server", "--no-such-flag"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("skiff: "), "{stderr}");
    }
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not listen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not stop on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn paging_limits_and_malformed_bodies() {
    let c = Cluster::start();
    for i in 0..7 {
        c.ok(&["create", "configmap", &format!("page-{i}"), "--from-literal=i=1"]);
    }
    // kubectl pages with limit/continue: every object arrives exactly once.
    let names = c.ok(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    let pages: Vec<&str> = names.lines().filter(|l| l.starts_with("configmap/page-")).collect();
    assert_eq!(pages.len(), 7, "{names}");
    let raw = c.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=3"]);
    let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    let token = list["metadata"]["continue"].as_str().expect("a continue token").to_string();
    let raw = c.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?limit=100&continue={token}")]);
    let rest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert!(rest["metadata"]["continue"].is_null());
    assert_eq!(rest["items"].as_array().unwrap().len(), 4, "{raw}");

    // A body over 3 MiB is refused with 413 and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(4 * 1024 * 1024)).unwrap();
    let err = c.fails(&["create", "configmap", "big", &format!("--from-file=big={}", big.display())]);
    assert!(err.to_lowercase().contains("too large") || err.contains("413"), "{err}");
    assert!(!c.kubectl(&["get", "cm", "big"]).status.success());

    // Malformed JSON is a 400.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"apiVersion\": \"v1\", \"kind\": ").unwrap();
    let err = c.fails(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", &bad.display().to_string()]);
    assert!(err.contains("BadRequest") || err.contains("couldn't decode"), "{err}");
}

#[test]
fn describe_shows_events_found_by_field_selector() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
    );
    let uid = c.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\ninvolvedObject:\n  kind: Service\n  name: web\n  namespace: default\n  uid: {uid}\n  apiVersion: v1\nreason: Probed\nmessage: hello from the test\ntype: Normal\nsource:\n  component: test\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\ncount: 1\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], &event);
    let describe = c.ok(&["describe", "svc", "web"]);
    assert!(describe.contains("Probed") && describe.contains("hello from the test"), "{describe}");
    let other = c.ok(&["get", "events", "--field-selector", "involvedObject.name=other"]);
    assert!(!other.contains("Probed"), "{other}");
    let new_api = c.ok(&["get", "events.v1.events.k8s.io", "web.1", "-o", "jsonpath={.note}"]);
    assert_eq!(new_api, "hello from the test");
}

//! `kubectl get -w` and `kubectl wait` follow changes as they are written.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::cluster::Cluster;

#[test]
fn get_watch_streams_changes() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "first", "--from-literal=a=1"]);
    let mut child = c
        .kubectl_cmd()
        .args(["get", "cm", "-w", "-o", "custom-columns=NAME:.metadata.name,A:.data.a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let expect = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.split_whitespace().collect::<Vec<_>>().join(" ") == want => return,
                Ok(_) => {}
                Err(_) => panic!("watch never showed {want:?}"),
            }
        }
    };
    expect("first 1");
    c.ok(&["create", "configmap", "second", "--from-literal=a=2"]);
    expect("second 2");
    c.ok(&["patch", "cm", "first", "-p", r#"{"data":{"a":"9"}}"#]);
    expect("first 9");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn wait_for_a_condition_written_later() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
    let waiter = c
        .kubectl_cmd()
        .args(["wait", "--for=condition=Ready", "node/n1", "--timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ok"}]}}"#,
    ]);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("node/n1 condition met"));
}

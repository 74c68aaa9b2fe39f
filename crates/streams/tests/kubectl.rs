//! The real kubectl (1.33, picked by the dispatcher from the server's `/version`) against an in-process API
//! server whose Node points at a stream server with a fake backend: `exec` runs local commands, port-forward
//! dials loopback, logs are fixed lines (plus ticks when following). Everything stays on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_apiserver::test_util::TestServer;
use skiff_streams::{
    Backend, BackendError, BoxDuplex, ExecRequest, ExecSession, LogOptions, LogStream, PodRef, StreamServer,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

struct Fake;

#[async_trait::async_trait]
impl Backend for Fake {
    async fn exec(&self, req: ExecRequest) -> Result<ExecSession, BackendError> {
        let (program, args) = req.command.split_first().ok_or_else(|| BackendError::BadRequest("no command".into()))?;
        let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        let child = Command::new(program)
            .args(args)
            .stdin(pipe(req.stdin))
            .stdout(pipe(req.stdout))
            .stderr(pipe(req.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::Internal(format!("starting {program}: {e}")))?;
        Ok(ExecSession::from_child(child))
    }

    async fn port_forward(&self, _pod: &PodRef, port: u16) -> Result<BoxDuplex, BackendError> {
        let conn = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| BackendError::Internal(e.to_string()))?;
        Ok(Box::new(conn))
    }

    async fn logs(&self, pod: &PodRef, container: &str, options: LogOptions) -> Result<LogStream, BackendError> {
        if container != "main" {
            return Err(BackendError::NotFound(format!("container {container} not found in pod {}", pod.name)));
        }
        let mut lines: Vec<String> = (1..=5).map(|i| format!("line {i}\n")).collect();
        if let Some(tail) = options.tail_lines {
            let keep = usize::try_from(tail).unwrap_or(0).min(lines.len());
            lines.drain(..lines.len() - keep);
        }
        let fixed = futures::stream::iter(lines.into_iter().map(|l| Ok(Bytes::from(l))));
        if !options.follow {
            return Ok(fixed.boxed());
        }
        let ticks = futures::stream::unfold(1u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(Bytes::from(format!("tick {n}\n"))), n + 1))
        });
        Ok(fixed.chain(ticks).boxed())
    }
}

struct Fixture {
    _api: TestServer,
    _streams: StreamServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Fixture {
    async fn start() -> Self {
        let api = TestServer::start().await;
        let state = &api.server.state;
        let tls_dir = state.config.data_dir.join("tls");
        let tls = skiff_streams::tls::serving_config_from_dir(
            &tls_dir,
            &["localhost".into()],
            &[IpAddr::from([127, 0, 0, 1])],
        )
        .expect("a serving certificate from the cluster CA");
        // The token the API server presents to node agents.
        let router = skiff_streams::router(Arc::new(Fake), vec![skiff_join::stream_token(&state.join_secret)]);
        let streams = StreamServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), tls, router).await.expect("streams");
        let port = streams.local_addr().port();

        let nodes: Api<Node> = Api::all(api.client.clone());
        let node = serde_json::from_value(json!({"metadata": {"name": "node-1"}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.expect("node created");
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node-1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }});
        nodes.patch_status("node-1", &PatchParams::default(), &Patch::Merge(&status)).await.expect("node status");

        let pods: Api<Pod> = Api::namespaced(api.client.clone(), "default");
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "kiamol/ch03-sleep"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.expect("pod created");
        let status = json!({"status": {"phase": "Running", "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await.expect("pod status");

        let dir = tempfile::tempdir().expect("a temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, &api.server.kubeconfig).expect("kubeconfig written");
        Self { _api: api, _streams: streams, dir, kubeconfig }
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("HOME", self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl to completion: (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut cmd = self.kubectl(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("kubectl starts");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes in time")
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_exec_streams_output_and_exit_codes() {
    let f = Fixture::start().await;
    let (rc, out, err) = f.run(&["exec", "web", "--", "sh", "-c", "echo out; echo err >&2"], None).await;
    assert_eq!((rc, out.as_str()), (0, "out\n"), "stderr: {err}");
    assert!(err.contains("err"), "stderr: {err}");

    let (rc, _, err) = f.run(&["exec", "pod/web", "-c", "main", "--", "sh", "-c", "exit 3"], None).await;
    assert_eq!(rc, 3, "stderr: {err}");
    assert!(err.contains("command terminated with exit code 3"), "stderr: {err}");

    let (rc, _, err) = f.run(&["exec", "web", "-c", "nope", "--", "true"], None).await;
    assert_eq!(rc, 1);
    assert!(err.contains("container nope is not valid for pod web"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_exec_with_stdin() {
    let f = Fixture::start().await;
    let input = "hello from stdin\n".repeat(2000);
    let (rc, out, err) = f.run(&["exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z"], Some(&input)).await;
    assert_eq!(rc, 0, "stderr: {err}");
    assert_eq!(out, input.to_uppercase());
    // stdin EOF reaches the process (kubectl sends the v5 close signal), so `wc` can finish.
    let (rc, out, err) = f.run(&["exec", "-i", "web", "--", "wc", "-c"], Some("12345")).await;
    assert_eq!((rc, out.trim()), (0, "5"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_with_tail_and_follow() {
    let f = Fixture::start().await;
    let (rc, out, err) = f.run(&["logs", "web"], None).await;
    assert_eq!(rc, 0, "stderr: {err}");
    assert_eq!(out, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    let (rc, out, _) = f.run(&["logs", "pod/web", "--tail=2"], None).await;
    assert_eq!((rc, out.as_str()), (0, "line 4\nline 5\n"));
    let (rc, _, err) = f.run(&["logs", "web", "-c", "other"], None).await;
    assert_eq!(rc, 1);
    assert!(err.contains("container other is not valid for pod web"), "stderr: {err}");

    let mut child = f.kubectl(&["logs", "-f", "web", "--tail=1"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            if seen.last().is_some_and(|l| l == "tick 3") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("followed lines arrive");
    assert_eq!(seen, ["line 5", "tick 1", "tick 2", "tick 3"]);
    child.kill().await.unwrap();
}

async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

async fn echo_through(port: u16, payload: Vec<u8>) -> Vec<u8> {
    let conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_port_forward_carries_concurrent_connections() {
    port_forward(true).await;
}

/// kubectl's fallback: raw SPDY over an HTTP upgrade (relayed by the API server like the WebSocket form).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_port_forward_over_raw_spdy() {
    port_forward(false).await;
}

async fn port_forward(websockets: bool) {
    let f = Fixture::start().await;
    let echo = echo_server().await;
    let local = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mapping = format!("{local}:{echo}");
    let mut child = f
        .kubectl(&["port-forward", "--address", "127.0.0.1", "pod/web", &mapping])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("kubectl forwards");
    let banner = banner.unwrap().unwrap_or_default();
    assert_eq!(banner, format!("Forwarding from 127.0.0.1:{local} -> {echo}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let a: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = b"second connection ".repeat(5000);
    let (back_a, back_b) = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::join(echo_through(local, a.clone()), echo_through(local, b.clone())),
    )
    .await
    .expect("both connections finish");
    assert!(back_a == a, "first connection echoed {} of {} bytes", back_a.len(), a.len());
    assert!(back_b == b, "second connection echoed {} of {} bytes", back_b.len(), b.len());
    // The session survives closed connections: a third one works too.
    let back_c = tokio::time::timeout(Duration::from_secs(10), echo_through(local, b"third".to_vec())).await.unwrap();
    assert_eq!(back_c, b"third");
    assert!(child.try_wait().unwrap().is_none(), "kubectl port-forward is still running");
    child.kill().await.unwrap();
}

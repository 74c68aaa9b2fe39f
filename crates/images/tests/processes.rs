//! The built-ins as real processes (the crate's `skiff-image` binary, which runs what `skiff image NAME` runs):
//! signals, exit codes, default wiring of flags and environment. Every server binds its port on all addresses
//! as in a pod; the tests talk to it over loopback only, and every child is killed by its pid on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A child process that is killed (by its own pid) and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn start(args: &[&str], env: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff-image"));
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc(cmd.spawn().expect("spawn skiff-image"))
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.0.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), signal).expect("signal child");
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

async fn get_when_up(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match skiff_images::fetch::get(&format!("http://127.0.0.1:{port}{path}"), Duration::from_secs(5)).await {
            Ok((status, body)) => return (status.as_u16(), String::from_utf8_lossy(&body).into_owned()),
            Err(e) if Instant::now() > deadline => panic!("GET :{port}{path}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn sleep_and_pause_exit_zero_on_sigterm() {
    for args in [&["sleep"][..], &["pause"], &["agnhost", "pause"]] {
        let mut p = Proc::start(args, &[]);
        assert!(p.wait_exit(Duration::from_millis(300)).is_none(), "{args:?} must keep running");
        p.signal(Signal::SIGTERM);
        let status = p.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("{args:?} ignored SIGTERM"));
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
    let mut p = Proc::start(&["sleep"], &[]);
    std::thread::sleep(Duration::from_millis(200));
    p.signal(Signal::SIGINT);
    assert_eq!(p.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(0));
}

#[test]
fn usage_errors_exit_64() {
    for args in [&["no-such-image"][..], &["netexec", "--nope"], &[]] {
        let mut p = Proc::start(args, &[]);
        assert_eq!(p.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(64), "{args:?}");
    }
}

#[tokio::test]
async fn agnhost_netexec_serves_http_and_udp_then_dies_on_sigterm() {
    let (http, udp) = (free_port(), free_udp_port());
    let mut p = Proc::start(&["agnhost", "netexec", &format!("--http-port={http}"), &format!("--udp-port={udp}")], &[]);
    assert_eq!(get_when_up(http, "/hostname").await, (200, hostname()));
    assert_eq!(get_when_up(http, "/echo?msg=ok").await, (200, "ok".to_string()));

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(b"echo pong", SocketAddr::from(([127, 0, 0, 1], udp))).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"pong");

    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(143));
}

#[tokio::test]
async fn serve_hostname_answers_on_its_port() {
    let port = free_port();
    let _p = Proc::start(&["agnhost", "serve-hostname", &format!("--port={port}")], &[]);
    assert_eq!(get_when_up(port, "/").await, (200, hostname()));
}

#[tokio::test]
async fn numbers_web_reads_the_api_url_from_its_environment() {
    let (api_port, web_port) = (free_port(), free_port());
    let mut api = Proc::start(&["numbers-api", &format!("--port={api_port}")], &[]);
    let mut web = Proc::start(
        &["numbers-web", &format!("--port={web_port}")],
        &[("RngApi__Url", format!("http://127.0.0.1:{api_port}/rng"))],
    );
    let (status, body) = get_when_up(api_port, "/rng").await;
    assert!(status == 200 && body.parse::<u32>().is_ok_and(|n| n < 100), "{status} {body}");
    assert!(get_when_up(web_port, "/").await.1.contains("Go!"));

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", web_port)).await.unwrap();
    conn.write_all(b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut response)).await.unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 200") && response.contains("Here it is: "), "{response}");

    for p in [&mut api, &mut web] {
        p.signal(Signal::SIGTERM);
        assert_eq!(p.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()), Some(0));
    }
}

//! A throwaway cluster for one test: the real `skiff server` binary in a temporary data dir on a free loopback
//! port, driven by the real `kubectl`. Dropping it stops the server (by its pid) and removes the data dir.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The node's address in a node cluster's network namespace.
pub const NODE_IP: &str = "10.99.0.1";

pub struct Cluster {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    /// The network namespace the node runs in (with its agent), if any.
    netns: Option<String>,
}

/// The repository root (for `examples/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example(path: &str) -> String {
    repo().join("examples").join(path).to_string_lossy().into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cluster = Self {
            dir,
            child: None,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            netns: None,
        };
        cluster.launch();
        cluster
    }

    /// A one-node cluster with its node agent, inside a fresh network namespace of its own (removed on drop,
    /// with everything the node made: `skiff teardown` runs first).
    pub fn start_node(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!(
            "skn{}",
            &dir.path().file_name().unwrap_or_default().to_string_lossy().replace(['.', '_'], "").to_lowercase()[..8]
        );
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success())
            && Command::new("ip")
                .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "creating network namespace {name} (tests need root)");
        // The node's own address (on lo: this kernel has no dummy links), what a node's network card would carry:
        // a 127.0.0.0/8 address cannot be a Service endpoint, and the node's DNS server listens there.
        let ok = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        }
        assert!(ok, "giving {name} its node address");
        // No upstream resolvers: nothing a test resolves may leave the namespace.
        std::fs::write(dir.path().join("resolv.conf"), "# e2e: no upstream resolvers\n").expect("resolv.conf");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.retain(|a| a != "--disable-agent");
        let resolv_conf = dir.path().join("resolv.conf").to_string_lossy().into_owned();
        extra.extend(
            ["--node-ip", NODE_IP, "--advertise-address", "127.0.0.1", "--resolv-conf", &resolv_conf].map(String::from),
        );
        let mut cluster = Self { dir, child: None, port: 16443, extra, netns: Some(name) };
        cluster.launch();
        cluster
    }

    /// The seeds' chapter 3 pair, ready: the numbers-api Deployment behind its Service, and the sleep-1 client
    /// Deployment. Returns the Service's ClusterIP.
    pub fn numbers_api_and_sleep(&self) -> String {
        self.ok(&[
            "apply",
            "-f",
            &example("ch03/numbers/api.yaml"),
            "-f",
            &example("ch03/numbers/api-service.yaml"),
            "-f",
            &example("ch03/sleep/sleep1.yaml"),
        ]);
        self.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=numbers-api", "--timeout=60s"]);
        self.ok(&["wait", "--for=condition=Ready", "pod", "-l", "app=sleep-1", "--timeout=60s"]);
        self.ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"])
    }

    /// Runs a command inside the node's network namespace (or on the host when there is none).
    pub fn node_cmd(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, program]);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// The node's network namespace, for a node cluster.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Runs `f` on a thread inside the node's network namespace (sockets it opens stay in it).
    pub fn in_node<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.netns.as_deref().expect("a node cluster"));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the node's namespace");
            nix::sched::setns(std::os::fd::AsFd::as_fd(&ns), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("the node thread")
    }

    /// Stops the server (SIGTERM: the node agent leaves pods and rules in place), waits `down`, starts it again.
    pub fn restart_after(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.launch();
    }

    /// GETs `url` with curl from inside the node's network namespace (3 s at most); the body when it succeeded.
    pub fn node_curl(&self, url: &str) -> Option<String> {
        let out = self.node_cmd("curl").args(["-s", "-m", "3", url]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts another API server of the same cluster as `other` (pass the same `--datastore-endpoint` and
    /// `--token` in `extra`): its own data dir, seeded with `other`'s CA, so a kubeconfig written for either server
    /// is trusted by both (point it at this one with `--server`).
    pub fn start_sharing_ca(other: &Cluster, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = dir.path().join("data").join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        for file in ["ca.crt", "ca.key"] {
            std::fs::copy(other.data_dir().join("tls").join(file), tls.join(file)).expect("copy the CA");
        }
        let mut cluster = Self {
            dir,
            child: None,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            netns: None,
        };
        cluster.launch();
        cluster
    }

    /// The API server's URL, as the kubeconfig names it.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut cmd = self.node_cmd(env!("CARGO_BIN_EXE_skiff"));
        cmd.arg("server");
        if self.netns.is_none() {
            cmd.arg("--disable-agent");
        } else {
            cmd.args(["--node-name", "node-1"]);
        }
        let child = cmd
            .args(["--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("skiff server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("skiff server exited early with {status}:\n{}", self.log());
            }
            let listening = self.netns.is_some() || TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if self.kubeconfig().exists() && listening {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "skiff server did not become ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = self.node_cmd("kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"));
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("kubectl runs")
    }

    /// Runs kubectl with `stdin` as standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("kubectl finishes")
    }

    /// Runs kubectl, asserts success, returns stdout.
    /// `kubectl exec <target> -- sh -c <script>`: whether it succeeded, and its stdout and stderr together.
    pub fn sh_in(&self, target: &str, script: &str) -> (bool, String) {
        let out = self.kubectl(&["exec", target, "--", "sh", "-c", script]);
        (out.status.success(), output_text(&out))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with stdin, asserts success.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `secs` seconds.
/// A client network namespace outside the node, joined to it by a veth: 192.168.91.2 → the node's 192.168.91.1
/// (and its `NODE_IP` through it). Removed on drop.
pub struct Outside(String);

impl Outside {
    pub fn new(c: &Cluster) -> Outside {
        let node = c.netns().expect("a node cluster").to_string();
        let name = format!("{node}-out");
        let veth = format!("skt{}", std::process::id() % 100_000);
        let run = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["netns", "add", &name]);
        let outside = Outside(name.clone());
        run(&["-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name]);
        run(&["-n", &node, "addr", "add", "192.168.91.1/24", "dev", &veth]);
        run(&["-n", &node, "link", "set", &veth, "up"]);
        run(&["-n", &name, "addr", "add", "192.168.91.2/24", "dev", "eth0"]);
        run(&["-n", &name, "link", "set", "eth0", "up"]);
        run(&["-n", &name, "link", "set", "lo", "up"]);
        // The node's own address (a LoadBalancer's ingress) is reached through the node, as on a LAN.
        run(&["-n", &name, "route", "add", &format!("{NODE_IP}/32"), "via", "192.168.91.1"]);
        outside
    }

    /// curl from outside: (HTTP status, body).
    pub fn curl(&self, url: &str) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "curl", "-s", "-m", "3", "-w", "\n%{http_code}", url])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // The veth goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child process of the test, killed (and reaped) on drop, also when the test fails.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command's stdout and stderr, together.
pub fn output_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if let Some(ns) = self.netns.take() {
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_skiff"), "teardown", "--data-dir"])
                .arg(self.data_dir())
                .status();
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

//! The C servers Skiff's DNS is compared with, from Debian: Knot DNS (`knotd`, authoritative) and Unbound
//! (`unbound`, answering from `local-data`), each loaded with the same cluster records Skiff serves and given as
//! many threads as Skiff's UDP listener has (one per core). Each listens on a loopback address of its own inside
//! the benchmark's network namespace and is stopped by its pid when its guard drops.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Memory;
use super::probe;
use crate::BenchError;

/// One Service's records, as every server holds them: A, SRV for its port `http`, PTR for its ClusterIP.
#[derive(Clone, Debug)]
pub struct ServiceRecords {
    /// `p-00001.default.svc.cluster.local` (no final dot).
    pub name: String,
    pub cluster_ip: Ipv4Addr,
}

impl ServiceRecords {
    pub fn srv_name(&self) -> String {
        format!("_http._tcp.{}", self.name)
    }

    pub fn ptr_name(&self) -> String {
        let [a, b, c, d] = self.cluster_ip.octets();
        format!("{d}.{c}.{b}.{a}.in-addr.arpa")
    }
}

/// Records per Service in every server (A, SRV, PTR).
pub const RECORDS_PER_SERVICE: usize = 3;

/// Which C server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Knot,
    Unbound,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Knot => "knot 3.2",
            Kind::Unbound => "unbound 1.17",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Kind::Knot => "/usr/sbin/knotd",
            Kind::Unbound => "/usr/sbin/unbound",
        }
    }

    /// Its own loopback address.
    pub fn address(self) -> SocketAddr {
        match self {
            Kind::Knot => SocketAddr::from(([127, 0, 0, 2], 53)),
            Kind::Unbound => SocketAddr::from(([127, 0, 0, 3], 53)),
        }
    }

    /// Whether Debian's package is installed.
    pub fn installed(self) -> bool {
        Path::new(self.binary()).exists()
    }
}

/// A running C server; stopped on drop.
pub struct CServer {
    pub kind: Kind,
    child: Child,
    _dir: tempfile::TempDir,
}

impl CServer {
    /// Starts `kind` with `records` (and `threads` workers) and waits until it answers the last one (or, with
    /// none, its zone's apex).
    pub fn start(
        kind: Kind,
        work_dir: &Path,
        records: &[ServiceRecords],
        threads: usize,
    ) -> Result<CServer, BenchError> {
        let dir = tempfile::Builder::new().prefix("skiff-bench-dns-").tempdir_in(work_dir).map_err(|source| {
            BenchError::Io { what: "creating a temp dir in", path: work_dir.to_path_buf(), source }
        })?;
        let config = match kind {
            Kind::Knot => knot_config(dir.path(), records, threads)?,
            Kind::Unbound => unbound_config(dir.path(), records, threads)?,
        };
        let log = std::fs::File::create(dir.path().join("log")).map_err(|source| BenchError::Io {
            what: "creating",
            path: dir.path().join("log"),
            source,
        })?;
        let mut cmd = Command::new(kind.binary());
        match kind {
            Kind::Knot => cmd.arg("-c").arg(&config),
            Kind::Unbound => cmd.arg("-d").arg("-c").arg(&config),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| BenchError::Spawn { what: kind.name(), path: kind.binary().into(), source })?;
        let mut server = CServer { kind, child, _dir: dir };
        let (name, want) = match records.last() {
            Some(last) => (last.name.clone(), Some(last.cluster_ip)),
            None => ("cluster.local".to_string(), None),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server._dir.path().join("log")).unwrap_or_default();
                return Err(BenchError::Exited { what: kind.name(), status, log });
            }
            let answer = probe::ask(kind.address(), &name);
            let ready = match want {
                Some(ip) => answer.as_ref().is_some_and(|a| a.addresses.contains(&ip)),
                None => answer.is_some(),
            };
            if ready {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(server._dir.path().join("log")).unwrap_or_default();
                return Err(BenchError::NotReady { what: kind.name(), secs: 60, log });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn memory(&self) -> Result<Memory, BenchError> {
        Memory::of(self.child.id())
    }
}

impl Drop for CServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf, BenchError> {
    std::fs::write(&path, text).map_err(|source| BenchError::Io { what: "writing", path: path.clone(), source })?;
    Ok(path)
}

/// The forward and reverse zone files and a `knot.conf` serving them.
fn knot_config(dir: &Path, records: &[ServiceRecords], threads: usize) -> Result<PathBuf, BenchError> {
    let soa = |apex: &str| {
        format!(
            "$ORIGIN {apex}.\n$TTL 5\n@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n@ NS \
             ns.dns.cluster.local.\n"
        )
    };
    let mut forward = soa("cluster.local");
    forward.push_str("ns.dns A 127.0.0.2\n");
    let mut reverse = soa("43.10.in-addr.arpa");
    for r in records {
        let _ = writeln!(forward, "{}. A {}", r.name, r.cluster_ip);
        let _ = writeln!(forward, "{}. SRV 0 100 80 {}.", r.srv_name(), r.name);
        let _ = writeln!(reverse, "{}. PTR {}.", r.ptr_name(), r.name);
    }
    let forward = write(dir.join("cluster.local.zone"), &forward)?;
    let reverse = write(dir.join("reverse.zone"), &reverse)?;
    let d = dir.display();
    let config = format!(
        "server:\n    listen: {}@53\n    rundir: {d}\n    udp-workers: {threads}\n    tcp-workers: 1\n    \
         background-workers: 1\ndatabase:\n    storage: {d}\nlog:\n  - target: stderr\n    any: warning\nzone:\n  - \
         domain: cluster.local\n    file: {}\n    storage: {d}\n  - domain: 43.10.in-addr.arpa\n    file: {}\n    \
         storage: {d}\n",
        Kind::Knot.address().ip(),
        forward.display(),
        reverse.display()
    );
    write(dir.join("knot.conf"), &config)
}

/// An `unbound.conf` answering the records from `local-data` (no recursion, no trust anchor, no remote control).
fn unbound_config(dir: &Path, records: &[ServiceRecords], threads: usize) -> Result<PathBuf, BenchError> {
    let mut config = format!(
        "server:\n    interface: {}\n    port: 53\n    num-threads: {threads}\n    so-reuseport: yes\n    \
         do-daemonize: no\n    chroot: \"\"\n    username: \"\"\n    directory: \"{}\"\n    pidfile: \"\"\n    \
         use-syslog: no\n    logfile: \"\"\n    verbosity: 0\n    do-ip6: no\n    access-control: 127.0.0.0/8 \
         allow\n    module-config: \"iterator\"\n    local-zone: \"cluster.local.\" static\n    local-zone: \
         \"43.10.in-addr.arpa.\" static\n",
        Kind::Unbound.address().ip(),
        dir.display()
    );
    for r in records {
        let _ = writeln!(config, "    local-data: \"{}. 5 IN A {}\"", r.name, r.cluster_ip);
        let _ = writeln!(config, "    local-data: \"{}. 5 IN SRV 0 100 80 {}.\"", r.srv_name(), r.name);
        let _ = writeln!(config, "    local-data: \"{}. 5 IN PTR {}.\"", r.ptr_name(), r.name);
    }
    config.push_str("remote-control:\n    control-enable: no\n");
    write(dir.join("unbound.conf"), &config)
}

//! Test fixtures: a throw-away "node" network namespace holding the bridge and NAT rules, pod namespaces, and a
//! tiny ICMP ping. Every fixture removes what it made in `Drop`, also when the test fails. Traffic only ever goes to
//! addresses inside these namespaces.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recvfrom, sendto, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;
use skiff_cni::{Cni, NetworkConfig, create_netns, delete_netns, run_in_netns};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A short random suffix so parallel tests (and parallel test runs) never share a name.
pub fn unique(prefix: &str) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{prefix}{:08x}", h.finish() as u32)
}

/// A network namespace under /run/netns, deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new(prefix: &str) -> TestResult<Self> {
        let name = unique(prefix);
        let path = create_netns(&name)?;
        Ok(Self { name, path })
    }

    /// Deletes it now (the drop then does nothing).
    pub fn delete(&self) -> TestResult {
        delete_netns(&self.name)?;
        Ok(())
    }

    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> TestResult<T> {
        Ok(run_in_netns(&self.path, f)?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = delete_netns(&self.name);
    }
}

/// A node: its own network namespace where the plugins run, a data dir, and a [`Cni`] for `subnet`.
/// Dropping it deletes the namespace, which takes the bridge, the veths' node ends and all NAT rules with it.
pub struct Node {
    pub cni: Cni,
    pub ns: Netns,
    pub data: tempfile::TempDir,
}

impl Node {
    pub fn new(subnet: &str) -> TestResult<Self> {
        let ns = Netns::new("skn")?;
        let data = tempfile::tempdir()?;
        let config = NetworkConfig::new(unique("skt"), unique("skbr"), subnet.parse()?, data.path());
        let cni = Cni::new(config)?.with_plugin_netns(&ns.path);
        // lo up in the node so node-local tests behave like a real host.
        ns.run(|| Command::new("ip").args(["link", "set", "lo", "up"]).status())??;
        Ok(Self { cni, ns, data })
    }

    /// host-local's record for an address: `ipam_data_dir/<network>/<ip>`.
    pub fn ipam_file(&self, ip: Ipv4Addr) -> PathBuf {
        let c = self.cni.config();
        c.ipam_data_dir.join(&c.name).join(ip.to_string())
    }

    /// `iptables -t nat -S` inside the node.
    pub fn nat_rules(&self) -> TestResult<String> {
        let out = self.ns.run(|| Command::new("iptables").args(["-w", "-t", "nat", "-S"]).output())??;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -o link show` inside the node.
    pub fn links(&self) -> TestResult<String> {
        let out = self.ns.run(|| Command::new("ip").args(["-o", "link", "show"]).output())??;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Sends ICMP echo requests from inside `from` to `to` until one is answered or `timeout` passes.
pub fn ping(from: &Path, to: Ipv4Addr, timeout: Duration) -> TestResult<bool> {
    run_in_netns(from, move || ping_here(to, timeout))?
}

fn ping_here(to: Ipv4Addr, timeout: Duration) -> TestResult<bool> {
    let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Icmp)?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000))?;
    let id = (std::process::id() & 0xffff) as u16;
    let dest = SockaddrIn::from(std::net::SocketAddrV4::new(to, 0));
    let deadline = Instant::now() + timeout;
    let mut seq: u16 = 0;
    while Instant::now() < deadline {
        seq = seq.wrapping_add(1);
        let mut packet = vec![8u8, 0, 0, 0];
        packet.extend_from_slice(&id.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(b"skiff-cni-ping");
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        // Before the address is reachable sendto can fail (e.g. no route yet); keep trying until the deadline.
        if sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), &packet, &dest, MsgFlags::empty()).is_err() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut buf = [0u8; 1500];
        while let Ok((n, Some(src))) = recvfrom::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf) {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let icmp = &buf[ihl.min(n)..n];
            let reply = icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes();
            if reply && src.ip() == to {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP server inside a namespace that answers each connection with `reply` and the peer's address.
/// Dropping it stops the thread and closes the socket, so the namespace can really go away.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Netns, port: u16, reply: &'static str) -> TestResult<Self> {
        let listener = ns.run(move || TcpListener::bind(("0.0.0.0", port)))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(format!("{reply} {}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` (a namespace path) and returns what the server said.
pub fn fetch(ns: &Path, addr: SocketAddr) -> TestResult<String> {
    let text = run_in_netns(ns, move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })??;
    Ok(text)
}

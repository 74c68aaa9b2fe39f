//! Where the benchmark's endpoints live: a network namespace of the benchmark's own (`skiff-bench-ep-<pid>`),
//! joined to the benchmark's private namespace (the "node", where the agent and its proxy run) by a veth.
//!
//! Every endpoint address the benchmark writes into an EndpointSlice lies in [`ENDPOINTS`], which the endpoint
//! namespace owns whole (an AnyIP `local` route), so a packet the proxy sends to any endpoint arrives here and is
//! answered by one listener on port [`PORT`]: it writes back the address it was reached on, which tells the probe
//! which endpoint the proxy picked. No packet leaves the two namespaces. The node also routes the Service CIDR
//! towards the veth, so that connections it opens to a ClusterIP have a route before the proxy's output DNAT
//! rewrites them. The namespace is deleted when the guard drops.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

use crate::BenchError;

/// The endpoints' addresses: 10.200.0.0/14.
pub const ENDPOINTS: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 200, 0, 0), 14);
/// The port every endpoint listens on.
pub const PORT: u16 = 8080;
/// The node's end of the veth.
const NODE_ADDRESS: &str = "10.199.0.1/30";
/// The endpoint namespace's end of the veth.
const ENDPOINT_ADDRESS: &str = "10.199.0.2";
/// The node's veth.
const NODE_LINK: &str = "sbp0";

/// The endpoint namespace; deleted on drop.
pub struct EndpointNetwork {
    name: String,
}

fn ip(args: &[&str]) -> Result<(), BenchError> {
    let status = Command::new("ip").args(args).status().map_err(|source| BenchError::Spawn {
        what: "ip",
        path: "ip".into(),
        source,
    })?;
    if status.success() { Ok(()) } else { Err(BenchError::Check(format!("ip {} failed: {status}", args.join(" ")))) }
}

impl EndpointNetwork {
    /// Creates the namespace, the veth and the routes, and starts the listener. Must run inside the benchmark's
    /// private network namespace (see [`crate::agent::enter_private_network`]); `service_cidr` is the server's.
    pub fn create(service_cidr: &str) -> Result<Self, BenchError> {
        let name = format!("skiff-bench-ep-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let network = EndpointNetwork { name };
        let ns = network.name.as_str();
        let endpoints = format!("{}/{}", ENDPOINTS.0, ENDPOINTS.1);
        ip(&["link", "add", NODE_LINK, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(&["addr", "add", NODE_ADDRESS, "dev", NODE_LINK])?;
        ip(&["link", "set", NODE_LINK, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{ENDPOINT_ADDRESS}/30"), "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "route", "add", "local", &endpoints, "dev", "lo"])?;
        ip(&["route", "add", &endpoints, "via", ENDPOINT_ADDRESS])?;
        ip(&["route", "add", service_cidr, "dev", NODE_LINK])?;
        // Probes open hundreds of thousands of short connections; closed ones need not linger in the node's
        // conntrack table (these timeouts are per network namespace, so the host's stay as they are).
        for (name, seconds) in
            [("tcp_timeout_time_wait", "1"), ("tcp_timeout_close", "1"), ("tcp_timeout_fin_wait", "1")]
        {
            let _ = std::fs::write(format!("/proc/sys/net/netfilter/nf_conntrack_{name}"), seconds);
        }
        network.listen()?;
        Ok(network)
    }

    /// Threads in the endpoint namespace answering every connection with the address it was reached on.
    fn listen(&self) -> Result<(), BenchError> {
        let path = format!("/run/netns/{}", self.name);
        let ns = std::fs::File::open(&path).map_err(|source| BenchError::Io {
            what: "opening",
            path: path.clone().into(),
            source,
        })?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bound = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("entering the endpoint namespace: {e}"))
                .and_then(|()| listener().map_err(|e| format!("listening on {PORT}: {e}")));
            let listener = match bound {
                Ok(listener) => {
                    let _ = ready_tx.send(Ok(()));
                    listener
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Two acceptors; the process exits with them still accepting (deleting the namespace does not need
            // them gone).
            let second = listener.try_clone().ok();
            if let Some(second) = second {
                std::thread::spawn(move || answer(&second));
            }
            answer(&listener);
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BenchError::Check(e)),
            Err(_) => Err(BenchError::Check("the endpoint listener thread died".into())),
        }
    }
}

/// A listening socket on every address, port [`PORT`], with a deep accept queue: probes arrive in bursts and a
/// dropped SYN would cost a one-second retransmission.
fn listener() -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Answers every connection with the address it was reached on.
fn answer(listener: &TcpListener) {
    for mut stream in listener.incoming().flatten() {
        if let Ok(local) = stream.local_addr() {
            let _ = stream.write_all(local.ip().to_string().as_bytes());
        }
    }
}

impl Drop for EndpointNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The address of endpoint `index` (0-based) of [`ENDPOINTS`].
pub fn endpoint(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ENDPOINTS.0) + index)
}

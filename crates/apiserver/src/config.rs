//! The API server's settings, as resolved from `skiff server`'s flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use ipnet::Ipv4Net;

/// Everything the API server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// State: TLS material, the admin token, the SQLite database.
    pub data_dir: PathBuf,
    /// Where the HTTPS listener binds.
    pub listen: SocketAddr,
    /// The address other components and the `kubernetes` Endpoints use to reach this server.
    pub advertise_address: IpAddr,
    pub service_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub node_port_range: RangeInclusive<u16>,
    /// The admin bearer token; generated into the data dir when `None`.
    pub token: Option<String>,
    /// Where to write the admin kubeconfig (mode 0600).
    pub write_kubeconfig: Option<PathBuf>,
    /// How many revisions of history to keep for watches (compaction keeps at least this window).
    pub history_window: i64,
}

impl Config {
    /// A configuration with k3s-like defaults rooted at `data_dir`, listening on `listen`.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            advertise_address: listen.ip(),
            service_cidr: Ipv4Net::new_assert(Ipv4Addr::new(10, 43, 0, 0), 16),
            cluster_cidr: Ipv4Net::new_assert(Ipv4Addr::new(10, 42, 0, 0), 16),
            cluster_dns: IpAddr::from([10, 43, 0, 10]),
            cluster_domain: "cluster.local".to_string(),
            node_port_range: 30000..=32767,
            token: None,
            write_kubeconfig: None,
            history_window: 10_000,
        }
    }

    /// The URL clients on this machine use to reach the server.
    pub fn server_url(&self) -> String {
        let host = match self.listen.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        match host {
            IpAddr::V6(v6) => format!("https://[{v6}]:{}", self.listen.port()),
            IpAddr::V4(v4) => format!("https://{v4}:{}", self.listen.port()),
        }
    }
}

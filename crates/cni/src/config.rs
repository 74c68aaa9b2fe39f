//! The node's pod network as a CNI network configuration list.
//!
//! One [`NetworkConfig`] describes the node's bridge and pod CIDR; [`NetworkConfig::conflist`] renders the conflist
//! the plugins read: `bridge` (gateway on the bridge, hairpin mode; no masquerade, which `skiff-hostgw` does for
//! traffic leaving the whole pod network, not the node's own subnet) with
//! `host-local` IPAM whose allocations live in the agent's own data dir, then `portmap` for hostPorts. The loopback
//! plugin is not part of the list; [`loopback_config`] is invoked separately for `lo`, as containerd does.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The CNI spec version this crate speaks (the newest that Debian's plugins support).
pub const CNI_VERSION: &str = "1.0.0";

/// The interface name pods get on the pod network.
pub const POD_IFNAME: &str = "eth0";

/// Where the Debian package and most distributions install the reference plugins.
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// The node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The CNI network name (also part of the ipMasq chain names and the result cache file names).
    pub name: String,
    /// The Linux bridge the pods' veths are attached to (at most 15 characters).
    pub bridge: String,
    /// The node's pod CIDR.
    pub subnet: Ipv4Net,
    /// The bridge's address and the pods' default gateway; must lie inside `subnet`.
    pub gateway: Ipv4Addr,
    /// host-local's `dataDir`, inside the agent's data dir (never the global `/var/lib/cni`).
    pub ipam_data_dir: PathBuf,
    /// Directories searched for plugin binaries, in order (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Where results of ADD are cached for CHECK, DEL and re-adoption after a restart.
    pub cache_dir: PathBuf,
}

/// Errors found when validating a [`NetworkConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("network name {0:?} must be non-empty letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    #[error("bridge name {0:?} must be 1 to 15 characters without '/', ':' or whitespace")]
    InvalidBridge(String),
    #[error("pod subnet {0} is too small (need at least a /30)")]
    SubnetTooSmall(Ipv4Net),
    #[error("gateway {gateway} is not a host address of the pod subnet {subnet}")]
    GatewayOutsideSubnet { gateway: Ipv4Addr, subnet: Ipv4Net },
}

impl NetworkConfig {
    /// A configuration with the usual defaults: gateway = the subnet's first host, IPAM data in
    /// `data_dir/ipam`, result cache in `data_dir/cache`, plugins from [`DEFAULT_PLUGIN_DIRS`].
    pub fn new(name: impl Into<String>, bridge: impl Into<String>, subnet: Ipv4Net, data_dir: &Path) -> Self {
        let subnet = subnet.trunc();
        let gateway = first_host(subnet);
        Self {
            name: name.into(),
            bridge: bridge.into(),
            subnet,
            gateway,
            ipam_data_dir: data_dir.join("ipam"),
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: data_dir.join("cache"),
        }
    }

    /// Checks names, subnet size and that the gateway is a usable address inside the subnet.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(ConfigError::InvalidName(self.name.clone()));
        }
        let bridge_ok = !self.bridge.is_empty()
            && self.bridge.len() <= 15
            && !self.bridge.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !bridge_ok {
            return Err(ConfigError::InvalidBridge(self.bridge.clone()));
        }
        if self.subnet.prefix_len() > 30 {
            return Err(ConfigError::SubnetTooSmall(self.subnet));
        }
        let g = self.gateway;
        if !self.subnet.contains(&g) || g == self.subnet.network() || g == self.subnet.broadcast() {
            return Err(ConfigError::GatewayOutsideSubnet { gateway: g, subnet: self.subnet });
        }
        Ok(())
    }

    /// The conflist handed to the plugins (also what [`crate::Cni::write_conflist`] writes).
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet.to_string(), "gateway": self.gateway.to_string() }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": self.ipam_data_dir,
                    }
                },
                {
                    "type": "portmap",
                    "capabilities": { "portMappings": true },
                    "snat": true
                }
            ]
        })
    }
}

/// The configuration for the loopback plugin, invoked with `CNI_IFNAME=lo` before the pod network.
pub fn loopback_config() -> Value {
    json!({ "cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback" })
}

/// The transport protocol of a [`PortMapping`], written in lower case as the portmap plugin expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// A hostPort mapping, in the shape of the `portMappings` capability (`runtimeConfig.portMappings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    /// Empty means every host address.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// A TCP mapping on every host address.
    pub fn tcp(host_port: u16, container_port: u16) -> Self {
        Self { host_port, container_port, protocol: Protocol::Tcp, host_ip: None }
    }
}

fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetworkConfig {
        let subnet = "10.88.3.7/24".parse().unwrap_or_else(|e| panic!("{e}"));
        NetworkConfig::new("skiff", "skbr0", subnet, Path::new("/var/lib/skiff/cni"))
    }

    #[test]
    fn defaults_derive_from_subnet_and_data_dir() {
        let c = config();
        assert_eq!(c.subnet.to_string(), "10.88.3.0/24");
        assert_eq!(c.gateway, Ipv4Addr::new(10, 88, 3, 1));
        assert_eq!(c.ipam_data_dir, Path::new("/var/lib/skiff/cni/ipam"));
        assert_eq!(c.cache_dir, Path::new("/var/lib/skiff/cni/cache"));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn conflist_has_bridge_host_local_and_portmap() {
        let list = config().conflist();
        assert_eq!(list["cniVersion"], "1.0.0");
        assert_eq!(list["name"], "skiff");
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "skbr0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false, "skiff-hostgw masquerades only what leaves the pod network");
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/cni/ipam");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.3.0/24");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.88.3.1");
        let portmap = &list["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
    }

    #[test]
    fn validation_rejects_bad_values() {
        let mut c = config();
        c.bridge = "a-very-long-bridge-name".into();
        assert!(matches!(c.validate(), Err(ConfigError::InvalidBridge(_))));
        let mut c = config();
        c.gateway = Ipv4Addr::new(10, 88, 4, 1);
        assert!(matches!(c.validate(), Err(ConfigError::GatewayOutsideSubnet { .. })));
        let mut c = config();
        c.gateway = Ipv4Addr::new(10, 88, 3, 0);
        assert!(matches!(c.validate(), Err(ConfigError::GatewayOutsideSubnet { .. })));
        let mut c = config();
        c.name = "a/b".into();
        assert!(matches!(c.validate(), Err(ConfigError::InvalidName(_))));
    }

    #[test]
    fn port_mappings_serialise_like_the_capability() -> Result<(), serde_json::Error> {
        let mut m = PortMapping::tcp(8080, 80);
        assert_eq!(serde_json::to_value(&m)?, json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}));
        m.protocol = Protocol::Udp;
        m.host_ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            serde_json::to_value(&m)?,
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"})
        );
        Ok(())
    }
}

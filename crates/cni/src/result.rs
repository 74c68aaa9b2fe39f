//! CNI 1.0 results and error objects, as printed by plugins on stdout.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An interface a plugin created or configured (`interfaces[]` of a result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The netns path for interfaces inside the pod; absent for host-side ones (bridge, veth peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address assigned to an interface (`ips[]` of a result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route a plugin installed (`routes[]` of a result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// The parts of a CNI result that the agent uses, plus the raw result for chaining and caching.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The pod's IPv4 address with the pod CIDR's prefix length.
    pub ip: Ipv4Net,
    /// The pod's default gateway (the bridge address), when the plugin reported one.
    pub gateway: Option<Ipv4Addr>,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    /// The result exactly as the last plugin printed it (what is passed on as `prevResult`).
    pub raw: Value,
}

/// Why a plugin's stdout could not be used as a result.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("malformed result")]
    Malformed(#[source] serde_json::Error),
    #[error("result has no IPv4 address")]
    NoIpv4,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl CniResult {
    /// Reads a CNI 1.0 result, picking the first IPv4 address as the pod IP (preferring one on a sandbox interface).
    pub fn parse(raw: Value) -> Result<Self, ResultError> {
        let wire: Wire = serde_json::from_value(raw.clone()).map_err(ResultError::Malformed)?;
        let in_sandbox = |ip: &&IpConfig| {
            ip.interface.and_then(|i| wire.interfaces.get(i)).is_some_and(|iface| iface.sandbox.is_some())
        };
        let v4 = |ip: &&IpConfig| matches!(ip.address, IpNet::V4(_));
        let chosen = wire
            .ips
            .iter()
            .filter(v4)
            .find(in_sandbox)
            .or_else(|| wire.ips.iter().find(v4))
            .ok_or(ResultError::NoIpv4)?;
        let IpNet::V4(ip) = chosen.address else {
            return Err(ResultError::NoIpv4);
        };
        let gateway = match chosen.gateway {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        };
        Ok(Self { ip, gateway, interfaces: wire.interfaces, ips: wire.ips, routes: wire.routes, raw })
    }

    /// The pod IP without prefix length, as it goes into `status.podIP`.
    pub fn pod_ip(&self) -> Ipv4Addr {
        self.ip.addr()
    }
}

/// The error object a failing plugin prints (`{"cniVersion", "code", "msg", "details"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginError {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl PluginError {
    /// Reads an error object; `None` unless the text is JSON with a `code`.
    pub fn parse(stdout: &[u8]) -> Option<Self> {
        serde_json::from_slice(stdout).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_bridge_result() -> Result<(), ResultError> {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "skbr0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/skp1"}
            ],
            "ips": [
                {"interface": 2, "address": "fd00::2/64", "gateway": "fd00::1"},
                {"interface": 2, "address": "10.88.0.5/24", "gateway": "10.88.0.1"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let r = CniResult::parse(raw.clone())?;
        assert_eq!(r.ip.to_string(), "10.88.0.5/24");
        assert_eq!(r.pod_ip(), Ipv4Addr::new(10, 88, 0, 5));
        assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 88, 0, 1)));
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox.as_deref(), Some("/run/netns/skp1"));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.raw, raw);
        Ok(())
    }

    #[test]
    fn rejects_results_without_ipv4() {
        let raw = json!({"cniVersion": "1.0.0", "ips": [{"address": "fd00::2/64"}]});
        assert!(matches!(CniResult::parse(raw), Err(ResultError::NoIpv4)));
        assert!(matches!(CniResult::parse(json!({"ips": "nope"})), Err(ResultError::Malformed(_))));
    }

    #[test]
    fn parses_error_objects() {
        let e =
            PluginError::parse(br#"{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"x"}"#);
        assert_eq!(e, Some(PluginError { code: 11, msg: "no IP addresses available".into(), details: "x".into() }));
        assert_eq!(PluginError::parse(b"panic: boom"), None);
    }
}

//! Reading back what the kernel holds for a service port: whether its chains are there and the endpoints its
//! traffic is DNATed to, read from the live table with `nft list` (for `skiff explain`, and for whoever debugs
//! the data plane). This follows the shapes [`crate::ruleset`] writes: the cluster IP's element in the
//! `service-ips` map names the chain its traffic goes to (or `no-endpoint-services` rejects or drops it); a
//! balancing chain DNATs through `numgen random mod N offset O map @endpoints-…` (slots `O..O+N` of that map),
//! or — with session affinity — goes to one chain per endpoint that DNATs to its address.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;

use crate::model::ServicePort;
use crate::nft::NftError;
use crate::ruleset::{NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS, external_chain};

/// What the kernel holds for one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programmed {
    /// What the table does with traffic to the port's (first IPv4) cluster IP, as nft prints the verdict:
    /// `goto <chain>` to balance over endpoints, `goto reject-chain` (no endpoints: refused at once) or `drop`
    /// (endpoints, but none on this node for a Local policy); `None` when the table has no entry for it.
    pub cluster_ip_verdict: Option<String>,
    /// The chain for traffic from outside the cluster (NodePort, LoadBalancer, externalIPs, localhost), when the
    /// port has one, and whether it is in the table.
    pub external_chain: Option<(String, bool)>,
    /// The verdict for the port's NodePort on this node's addresses, as for the cluster IP; `None` when it has
    /// none or the table has no entry for it.
    pub node_port_verdict: Option<String>,
    /// The endpoints traffic to the cluster IP is DNATed to, sorted.
    pub backends: Vec<SocketAddr>,
}

/// Reads what table `inet <table>` holds for `port`.
pub fn programmed(table: &str, port: &ServicePort) -> Result<Programmed, NftError> {
    let protocol = port.protocol.as_str();
    let cluster_ip_verdict = match port.cluster_ips.iter().find(|ip| ip.is_ipv4()) {
        Some(ip) => {
            verdict(table, [SERVICE_IPS, NO_ENDPOINT_SERVICES], &format!("{{ {ip} . {protocol} . {} }}", port.port))?
        }
        None => None,
    };
    let node_port_verdict = match port.node_port {
        Some(node_port) => {
            verdict(table, [SERVICE_NODEPORTS, NO_ENDPOINT_NODEPORTS], &format!("{{ {protocol} . {node_port} }}"))?
        }
        None => None,
    };
    let external_chain = if port.is_external() {
        let name = external_chain(port);
        let present = list(table, "chain", &name)?.is_some();
        Some((name, present))
    } else {
        None
    };
    let mut backends = BTreeSet::new();
    if let Some(chain) = cluster_ip_verdict.as_deref().and_then(|v| v.strip_prefix("goto "))
        && let Some(rules) = list(table, "chain", chain)?
    {
        collect_backends(table, &rules, &mut backends, 0)?;
    }
    Ok(Programmed { cluster_ip_verdict, external_chain, node_port_verdict, backends: backends.into_iter().collect() })
}

/// The verdict of `key` in the first of `maps` (a map of served keys, then its no-endpoints twin) that has it.
fn verdict(table: &str, maps: [&str; 2], key: &str) -> Result<Option<String>, NftError> {
    for map in maps {
        if let Some(listing) = get_element(table, map, key)? {
            return Ok(element_verdict(&listing));
        }
    }
    Ok(None)
}

/// How deep chains jump into one another at most (service → local → endpoint).
const MAX_DEPTH: usize = 4;

fn collect_backends(table: &str, rules: &str, into: &mut BTreeSet<SocketAddr>, depth: usize) -> Result<(), NftError> {
    for rule in rules.lines().map(str::trim) {
        if let Some(balancing) = rule.split_once("dnat ip to numgen random mod ").map(|(_, rest)| rest) {
            let Some((count, first, map)) = parse_balancing(balancing) else { continue };
            if let Some(listing) = list(table, "map", map)? {
                into.extend(
                    map_elements(&listing).filter(|(slot, _)| (first..first + count).contains(slot)).map(|e| e.1),
                );
            }
        } else if let Some(target) = rule.split_once("dnat ip to ").and_then(|(_, to)| to.parse().ok()) {
            into.insert(target);
        }
        if depth < MAX_DEPTH {
            for target in jump_targets(rule).filter(|c| !c.starts_with("mark-for-masquerade")) {
                if let Some(rules) = list(table, "chain", target)? {
                    collect_backends(table, &rules, into, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

/// `N [offset O] map @M` (nft leaves `offset 0` out): the slot count, the first slot and the map.
fn parse_balancing(rest: &str) -> Option<(u32, u32, &str)> {
    let mut words = rest.split_whitespace();
    let count = words.next()?.parse().ok()?;
    let (first, map) = match words.next()? {
        "offset" => (words.next()?.parse().ok()?, words.nth(1)?),
        _ => (0, words.next()?),
    };
    Some((count, first, map.strip_prefix('@')?))
}

/// The chains a rule jumps or goes to.
fn jump_targets(rule: &str) -> impl Iterator<Item = &str> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let targets: Vec<&str> = words
        .windows(2)
        .filter(|pair| pair[0] == "goto" || pair[0] == "jump")
        .map(|pair| pair[1].trim_end_matches([',', '}']))
        .collect();
    targets.into_iter()
}

/// The `slot : address . port` elements of a listed endpoint map.
fn map_elements(listing: &str) -> impl Iterator<Item = (u32, SocketAddr)> + '_ {
    let elements = listing.split_once("elements = {").map_or("", |(_, rest)| rest.split('}').next().unwrap_or(""));
    elements.split(',').filter_map(|element| {
        let (slot, target) = element.split_once(':')?;
        let (ip, port) = target.rsplit_once(" . ")?;
        Some((slot.trim().parse().ok()?, SocketAddr::new(ip.trim().parse().ok()?, port.trim().parse().ok()?)))
    })
}

/// The verdict of the one element a `nft get element` listing shows (`{ key : verdict }`).
fn element_verdict(listing: &str) -> Option<String> {
    let element = listing.split_once("elements = {")?.1.split('}').next()?;
    Some(element.rsplit_once(" : ")?.1.trim().to_string())
}

/// `nft list <kind> inet <table> <name>`: `None` when there is no such table or object.
fn list(table: &str, kind: &str, name: &str) -> Result<Option<String>, NftError> {
    nft(&["list", kind, "inet", table, name])
}

/// `nft get element inet <table> <map> <key>`: `None` when there is no such table, map or element.
fn get_element(table: &str, map: &str, key: &str) -> Result<Option<String>, NftError> {
    nft(&["get", "element", "inet", table, map, key])
}

/// Runs `nft` with `args`: its output, or `None` when what it was asked for is not there.
fn nft(args: &[&str]) -> Result<Option<String>, NftError> {
    let out = Command::new("nft").args(args).output()?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let error = String::from_utf8_lossy(&out.stderr);
    if error.contains("No such file or directory") {
        Ok(None)
    } else {
        Err(NftError::Rejected(error.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balancing_rule_names_its_slots_and_map() {
        assert_eq!(parse_balancing("2 map @endpoints-tcp-0"), Some((2, 0, "endpoints-tcp-0")));
        assert_eq!(parse_balancing("3 offset 8192 map @endpoints-udp-1"), Some((3, 8192, "endpoints-udp-1")));
        assert_eq!(parse_balancing("x map @m"), None);
    }

    #[test]
    fn map_elements_are_read_across_lines() {
        let listing = "table inet skiff {\n\tmap endpoints-tcp-0 {\n\t\ttypeof numgen random mod 1 : ip daddr . tcp \
                       dport\n\t\telements = { 0 : 10.42.0.2 . 80, 1 : 10.42.0.3 . 8080,\n\t\t\t     8192 : \
                       10.42.0.9 . 80 }\n\t}\n}\n";
        let elements: Vec<_> = map_elements(listing).collect();
        assert_eq!(
            elements,
            vec![
                (0, "10.42.0.2:80".parse().unwrap()),
                (1, "10.42.0.3:8080".parse().unwrap()),
                (8192, "10.42.0.9:80".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn an_elements_verdict_is_what_follows_its_key() {
        let listing = "table inet skiff {\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : \
                       verdict\n\t\telements = { 10.43.0.44 . tcp . 80 : goto local-AB-default/web/tcp/ }\n\t}\n}\n";
        assert_eq!(element_verdict(listing).as_deref(), Some("goto local-AB-default/web/tcp/"));
    }

    #[test]
    fn jumps_and_gotos_are_followed_also_inside_a_verdict_map() {
        let rule = "numgen random mod 2 vmap { 0 : goto endpoint-AB-x/80, 1 : goto endpoint-CD-y/80 }";
        assert_eq!(jump_targets(rule).collect::<Vec<_>>(), ["endpoint-AB-x/80", "endpoint-CD-y/80"]);
        assert_eq!(
            jump_targets("ip saddr 10.42.0.2 jump mark-for-masquerade").collect::<Vec<_>>(),
            ["mark-for-masquerade"]
        );
    }
}

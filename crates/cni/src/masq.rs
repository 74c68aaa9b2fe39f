//! Cleanup of node state the plugins leave behind on some paths.
//!
//! - The bridge plugin (v1.1) removes a pod's masquerade chain only when it can still see the pod's interface, so a
//!   DEL after the namespace is gone would leak the chain `CNI-<sha512(network + id)>` and its `POSTROUTING` jump.
//!   [`cleanup`] removes both, by the same naming rule the plugin uses (`pkg/utils.FormatChainName`).
//! - The portmap plugin keeps its shared `CNI-HOSTPORT-*` chains after the last pod; [`remove_hostport_chains`]
//!   removes them for `skiff teardown`, and [`delete_link`] removes the bridge.
//!
//! All commands run in the plugins' network namespace through [`Runner::tool`]; `iptables -w` waits for the lock.

use ipnet::Ipv4Net;
use sha2::{Digest, Sha512};

use crate::exec::{ExecError, Runner};

/// The chains portmap shares between pods, and the built-in chains that jump to them.
const HOSTPORT_CHAINS: [&str; 3] = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"];
const NAT_BUILTINS: [&str; 4] = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"];

/// The plugins' chain name for a pod: `CNI-` and the hex SHA-512 of network name + container id, 28 characters.
pub fn chain_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("CNI-{}", &hex[..24])
}

/// Removes the pod's masquerade chain and every `POSTROUTING` rule jumping to it. Missing ones are fine.
pub async fn cleanup(runner: &Runner, network: &str, container_id: &str, ip: Option<Ipv4Net>) -> Result<(), ExecError> {
    let chain = chain_name(network, container_id);
    delete_jumps(runner, "POSTROUTING", |target| target == chain).await?;
    remove_chain(runner, &chain).await?;
    tracing::debug!(container_id, chain, ip = ?ip, "removed masquerade chain of a pod whose netns is gone");
    Ok(())
}

/// Removes portmap's shared chains and the jumps into them.
pub async fn remove_hostport_chains(runner: &Runner) -> Result<(), ExecError> {
    for builtin in NAT_BUILTINS {
        delete_jumps(runner, builtin, |target| HOSTPORT_CHAINS.contains(&target)).await?;
    }
    // DNAT jumps to per-pod CNI-DN-* chains; flush everything first so no chain is still referenced.
    for chain in HOSTPORT_CHAINS {
        runner.tool("iptables", &["-w", "-t", "nat", "-F", chain]).await?;
    }
    for chain in HOSTPORT_CHAINS {
        runner.tool("iptables", &["-w", "-t", "nat", "-X", chain]).await?;
    }
    Ok(())
}

/// Deletes a network link (the bridge) if it exists.
pub async fn delete_link(runner: &Runner, name: &str) -> Result<(), ExecError> {
    let out = runner.tool("ip", &["link", "delete", name]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("Cannot find device") || stderr.contains("does not exist") {
        Ok(())
    } else {
        Err(tool_failed("ip link delete", out))
    }
}

async fn remove_chain(runner: &Runner, chain: &str) -> Result<(), ExecError> {
    let flush = runner.tool("iptables", &["-w", "-t", "nat", "-F", chain]).await?;
    if !flush.status.success() {
        // No such chain: nothing to remove.
        return Ok(());
    }
    let out = runner.tool("iptables", &["-w", "-t", "nat", "-X", chain]).await?;
    if out.status.success() { Ok(()) } else { Err(tool_failed("iptables -X", out)) }
}

/// Deletes the rules of a built-in nat chain whose target matches, by rule number from the bottom up.
async fn delete_jumps(runner: &Runner, builtin: &str, matches: impl Fn(&str) -> bool) -> Result<(), ExecError> {
    let out = runner.tool("iptables", &["-w", "-t", "nat", "-L", builtin, "-n", "--line-numbers"]).await?;
    if !out.status.success() {
        return Err(tool_failed("iptables -L", out));
    }
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    for number in rule_numbers(&listing, &matches).into_iter().rev() {
        let out = runner.tool("iptables", &["-w", "-t", "nat", "-D", builtin, &number.to_string()]).await?;
        if !out.status.success() {
            return Err(tool_failed("iptables -D", out));
        }
    }
    Ok(())
}

/// Rule numbers (ascending) in `iptables -L --line-numbers` output whose target matches.
fn rule_numbers(listing: &str, matches: impl Fn(&str) -> bool) -> Vec<u32> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let number = fields.next()?.parse::<u32>().ok()?;
            let target = fields.next()?;
            matches(target).then_some(number)
        })
        .collect()
}

fn tool_failed(what: &'static str, out: std::process::Output) -> ExecError {
    ExecError::Crashed {
        plugin: what.into(),
        op: "run",
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_the_plugins() {
        let name = chain_name("skiff", "abc");
        assert_eq!(name.len(), 28);
        assert!(name.starts_with("CNI-"));
        assert!(name[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(name, chain_name("skiff", "abd"));
    }

    #[test]
    fn finds_rule_numbers_by_target() {
        let listing = "Chain POSTROUTING (policy ACCEPT)\n\
            num  target     prot opt source               destination\n\
            1    CNI-HOSTPORT-MASQ  all  --  0.0.0.0/0  0.0.0.0/0  /* CNI portfwd requiring masquerade */\n\
            2    CNI-0123456789abcdef01234567  all  --  10.0.0.2  0.0.0.0/0  /* name: \"skiff\" id: \"a\" */\n\
            3    CNI-0123456789abcdef01234567  all  --  10.0.0.2  0.0.0.0/0\n";
        assert_eq!(rule_numbers(listing, |t| t == "CNI-0123456789abcdef01234567"), [2, 3]);
        assert_eq!(rule_numbers(listing, |t| HOSTPORT_CHAINS.contains(&t)), [1]);
    }
}

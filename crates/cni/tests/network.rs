//! Pod networking with the real Debian CNI plugins, as root, inside namespaces these tests create and remove.
//!
//! Each test builds a "node" namespace (where the bridge, routes and NAT rules live) and pod namespaces attached to
//! it through `Cni`; all traffic stays inside them.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use skiff_cni::{Error, ExecError, PortMapping, netns_exists};
use support::{Netns, Node, Server, TestResult, fetch, ping};

const WAIT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn two_pods_on_one_bridge_reach_each_other_and_the_node() -> TestResult {
    let node = Node::new("10.231.0.0/24")?;
    let (a, b) = (Netns::new("skp")?, Netns::new("skp")?);
    node.cni.verify_plugins().await?;

    let ra = node.cni.add(&a.name, &a.path, &[]).await?;
    let rb = node.cni.add(&b.name, &b.path, &[]).await?;
    assert_ne!(ra.ip, rb.ip);
    for r in [&ra, &rb] {
        assert!(node.cni.config().subnet.contains(&r.pod_ip()), "{} outside the pod CIDR", r.ip);
        assert_eq!(r.ip.prefix_len(), 24);
        assert_eq!(r.gateway, Some(Ipv4Addr::new(10, 231, 0, 1)));
        assert!(r.interfaces.iter().any(|i| i.name == "eth0" && i.sandbox.is_some()), "{:?}", r.interfaces);
    }
    assert!(node.links()?.contains(&node.cni.config().bridge), "bridge created inside the node namespace");

    assert!(ping(&a.path, rb.pod_ip(), WAIT)?, "pod a pings pod b");
    assert!(ping(&b.path, ra.pod_ip(), WAIT)?, "pod b pings pod a");
    assert!(ping(&node.ns.path, ra.pod_ip(), WAIT)?, "the node pings a pod");
    assert!(ping(&a.path, Ipv4Addr::new(10, 231, 0, 1), WAIT)?, "a pod pings its gateway");
    assert!(!ping(&a.path, Ipv4Addr::new(10, 231, 0, 250), Duration::from_millis(600))?, "unused address is silent");

    // TCP from b to a sees b's own address (no NAT inside the pod network); lo works inside a pod.
    let _server = Server::start(&a, 8080, "hello from a")?;
    let reply = fetch(&b.path, SocketAddr::from((ra.pod_ip(), 8080)))?;
    assert_eq!(reply, format!("hello from a {}", rb.pod_ip()));
    let reply = fetch(&a.path, SocketAddr::from(([127, 0, 0, 1], 8080)))?;
    assert_eq!(reply, "hello from a 127.0.0.1");

    node.cni.check(&a.name, &a.path).await?;
    node.cni.check(&b.name, &b.path).await?;
    assert_eq!(node.cni.attachments()?, sorted([a.name.clone(), b.name.clone()]));
    assert_eq!(node.cni.cached_result(&a.name)?.map(|r| r.ip), Some(ra.ip));

    node.cni.del(&a.name, Some(&a.path)).await?;
    node.cni.del(&b.name, Some(&b.path)).await?;
    assert!(node.cni.attachments()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn del_releases_the_ip_is_idempotent_and_re_add_gets_an_ip() -> TestResult {
    let node = Node::new("10.231.1.0/24")?;
    let pod = Netns::new("skp")?;
    let first = node.cni.add(&pod.name, &pod.path, &[]).await?;
    let record = node.ipam_file(first.pod_ip());
    let owner = std::fs::read_to_string(&record)?;
    assert!(owner.starts_with(&pod.name), "host-local records the container id, got {owner:?}");

    node.cni.del(&pod.name, Some(&pod.path)).await?;
    assert!(!record.exists(), "DEL releases the address");
    assert_eq!(node.cni.cached_result(&pod.name)?, None);
    assert!(matches!(node.cni.check(&pod.name, &pod.path).await, Err(Error::NotAttached(_))));
    node.cni.del(&pod.name, Some(&pod.path)).await?; // again
    node.cni.del("never-added", None).await?; // never attached at all

    let second = node.cni.add(&pod.name, &pod.path, &[]).await?;
    assert!(node.ipam_file(second.pod_ip()).exists());
    assert!(ping(&node.ns.path, second.pod_ip(), WAIT)?, "re-added pod is reachable");
    node.cni.del(&pod.name, Some(&pod.path)).await?;
    assert!(!node.ipam_file(second.pod_ip()).exists());
    Ok(())
}

#[tokio::test]
async fn del_after_the_namespace_is_gone_still_releases_everything() -> TestResult {
    let node = Node::new("10.231.2.0/24")?;
    let pod = Netns::new("skp")?;
    let r = node.cni.add(&pod.name, &pod.path, &[PortMapping::tcp(18081, 80)]).await?;
    assert!(node.nat_rules()?.contains("CNI-DN-"), "portmap's hostPort DNAT chain exists after ADD");

    pod.delete()?;
    assert!(!netns_exists(&pod.path));
    node.cni.del(&pod.name, Some(&pod.path)).await?;
    assert!(!node.ipam_file(r.pod_ip()).exists(), "IP released without the namespace");
    let rules = node.nat_rules()?;
    assert!(!rules.contains("CNI-DN-"), "hostPort DNAT chain removed:\n{rules}");
    node.cni.del(&pod.name, None).await?;
    Ok(())
}

#[tokio::test]
async fn host_port_reaches_the_pod_from_the_node_and_other_pods() -> TestResult {
    let node = Node::new("10.231.3.0/24")?;
    let (web, client) = (Netns::new("skp")?, Netns::new("skp")?);
    let rw = node.cni.add(&web.name, &web.path, &[PortMapping::tcp(18080, 80)]).await?;
    node.cni.add(&client.name, &client.path, &[]).await?;
    let _server = Server::start(&web, 80, "web")?;
    let gateway = rw.gateway.ok_or("no gateway in result")?;

    // The node's own address (the bridge) on the hostPort is DNATed to the pod.
    let reply = fetch(&node.ns.path, SocketAddr::from((gateway, 18080)))?;
    assert!(reply.starts_with("web "), "{reply}");
    // Another pod reaching the node's hostPort.
    let reply = fetch(&client.path, SocketAddr::from((gateway, 18080)))?;
    assert!(reply.starts_with("web "), "{reply}");
    // Hairpin: the pod reaches itself through its own hostPort.
    let reply = fetch(&web.path, SocketAddr::from((gateway, 18080)))?;
    assert!(reply.starts_with("web "), "{reply}");

    node.cni.check(&web.name, &web.path).await?;
    node.cni.del(&web.name, Some(&web.path)).await?;
    assert!(fetch(&node.ns.path, SocketAddr::from((gateway, 18080))).is_err(), "hostPort gone after DEL");
    Ok(())
}

#[tokio::test]
async fn a_full_range_fails_cleanly_with_the_plugin_error() -> TestResult {
    // A /30 has one address for pods after the gateway.
    let node = Node::new("10.231.4.0/30")?;
    let (a, b) = (Netns::new("skp")?, Netns::new("skp")?);
    node.cni.add(&a.name, &a.path, &[]).await?;
    let err = node.cni.add(&b.name, &b.path, &[]).await;
    match err {
        Err(Error::Exec(ExecError::Plugin { ref plugin, code, ref msg, .. })) => {
            assert_eq!(plugin, "bridge");
            assert!(code > 0);
            assert!(msg.contains("no IP addresses available"), "{msg}");
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    assert_eq!(node.cni.attachments()?, vec![a.name.clone()], "the failed pod is not cached");
    let missing = node.cni.add("skmissing", std::path::Path::new("/run/netns/skiff-no-such-netns"), &[]).await;
    assert!(matches!(missing, Err(Error::NetnsMissing(_))));
    node.cni.del(&a.name, Some(&a.path)).await?;
    // The address is free again for b.
    node.cni.add(&b.name, &b.path, &[]).await?;
    node.cni.del(&b.name, Some(&b.path)).await?;
    Ok(())
}

#[tokio::test]
async fn teardown_removes_pods_bridge_chains_and_files() -> TestResult {
    let node = Node::new("10.231.5.0/24")?;
    let pod = Netns::new("skp")?;
    let r = node.cni.add(&pod.name, &pod.path, &[PortMapping::tcp(18082, 80)]).await?;
    let conflist = node.data.path().join("net.d/10-skiff.conflist");
    node.cni.write_conflist(&conflist)?;
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&conflist)?)?;
    assert_eq!(&written, node.cni.conflist());

    node.cni.teardown().await?;
    assert!(node.cni.attachments()?.is_empty());
    assert!(!node.ipam_file(r.pod_ip()).exists());
    assert!(!node.links()?.contains(&node.cni.config().bridge), "bridge deleted");
    let rules = node.nat_rules()?;
    assert!(!rules.contains("CNI-"), "no CNI chains left:\n{rules}");
    node.cni.teardown().await?; // idempotent
    Ok(())
}

fn sorted<const N: usize>(mut v: [String; N]) -> Vec<String> {
    v.sort();
    v.to_vec()
}

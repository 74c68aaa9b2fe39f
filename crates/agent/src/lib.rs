//! The Skiff node agent: the kubelet's job for this machine. It registers the Node and keeps it Ready
//! ([`node`]), waits for the pod CIDR node IPAM assigns, wires pods into the node's pod network through the CNI
//! reference plugins (`skiff-cni`), runs their containers as supervised processes in the pods' namespaces
//! (`skiff-runtime`, images from `skiff-images`), probes them ([`probes`]), and reports pod status ([`pods`]). [`pod_files`] and
//! [`environment`] build what a container sees: its resolv.conf, hosts and hostname, and its environment.
//! Every agent also runs the node's Service proxy (`skiff-proxy`), cluster DNS server ([`dns`], `skiff-dns`) and
//! the routes to other nodes' pods (`skiff-hostgw`).
//!
//! Data flow: pods bound to this node (a watch with `spec.nodeName`) → per pod: sandbox (netns + CNI ADD) →
//! containers (start / restart with backoff / stop) → status patch. State lives under `<data-dir>/agent/`, so an
//! agent restart re-adopts running pods, and [`teardown`] removes everything the node made.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio_util::sync::CancellationToken;

pub mod dns;
pub mod environment;
pub mod events;
pub mod node;
pub mod pod_files;
pub mod pods;
pub mod probes;
pub mod streams;

/// The pod network's CNI name and the node's bridge.
pub const NETWORK: &str = "skiff";
pub const BRIDGE: &str = "skiff0";

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub node_ip: IpAddr,
    /// `<data-dir>/agent`.
    pub dir: PathBuf,
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// The port of the agent's streaming server, advertised in the Node's status.
    pub agent_port: u16,
    pub control_plane: bool,
    /// The executable that supervises containers (`skiff shim …`): the running `skiff` binary.
    pub shim_exe: PathBuf,
    /// Where the streaming server's certificate comes from.
    pub serving: ServingCert,
    /// The bearer token the API server presents to the streaming server.
    pub token: String,
    /// The pod network (all nodes): Service traffic from outside it is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// The Service virtual IP range.
    pub service_cidr: Ipv4Net,
    /// The node's resolver configuration (kubelet's `--resolv-conf`): pods with `dnsPolicy: Default` get it, and
    /// the cluster DNS forwards names outside the cluster to its name servers.
    pub resolv_conf: PathBuf,
    /// Whether this node's Service proxy runs (off: another proxy programs the data plane).
    pub proxy: bool,
    /// How often the node's Lease and status are renewed (the kubelet's `--node-status-update-frequency`).
    pub heartbeat: Duration,
    /// Called first on each thread the agent starts for itself (not the tokio runtime's, which the caller
    /// builds); `skiff agent` turns the allocator's thread cache off with it.
    pub thread_start: Option<fn()>,
}

/// The streaming server's certificate: signed here by the cluster CA in a directory (`ca.crt`, `ca.key`: an
/// agent beside its server), or the one the server issued when the node joined (certificate and key, PEM).
#[derive(Debug, Clone)]
pub enum ServingCert {
    SignedWithCaIn(PathBuf),
    Issued { cert: String, key: String },
}

fn network(dir: &Path, subnet: Ipv4Net) -> skiff_cni::NetworkConfig {
    skiff_cni::NetworkConfig::new(NETWORK, BRIDGE, subnet, &dir.join("cni"))
}

/// Waits until node IPAM has given this node a pod CIDR.
async fn pod_cidr(client: &kube::Client, node: &str, shutdown: &CancellationToken) -> Option<Ipv4Net> {
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        if let Ok(Some(n)) = nodes.get_opt(node).await
            && let Some(cidr) = n.spec.and_then(|s| s.pod_cidr).and_then(|c| c.parse().ok())
        {
            return Some(cidr);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Runs the agent until `shutdown` fires. Running pods are left running (a restart re-adopts them).
pub async fn run(client: kube::Client, config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.dir)?;
    let info = node::NodeInfo {
        name: config.node_name.clone(),
        address: config.node_ip,
        agent_port: config.agent_port,
        control_plane: config.control_plane,
    };
    let heartbeat = tokio::spawn(node::run(client.clone(), info, config.heartbeat, shutdown.clone()));
    // Pod-to-pod replies cross the node's bridge: the proxy's conntrack must see them to undo its DNAT.
    if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") {
        tracing::warn!(error = %e, "bridge netfilter is unavailable; Service traffic between pods may fail");
    }
    // LoadBalancer and NodePort Services on 127.0.0.1: a DNATed packet from localhost must be routable off lo.
    // (The proxy drops new connections to 127.0.0.0/8 from anywhere but lo, as kube-proxy does since CVE-2020-8558.)
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
        tracing::warn!(error = %e, "route_localnet is unavailable; Services will not answer on 127.0.0.1");
    }
    let proxy_config = skiff_proxy::RulesetConfig {
        table: skiff_proxy::TABLE.into(),
        cluster_cidr: config.cluster_cidr,
        service_cidr: config.service_cidr,
    };
    // Routes to the other nodes' pods, and the pod network's egress masquerade.
    let routes = tokio::spawn(skiff_hostgw::run(
        client.clone(),
        config.node_name.clone(),
        config.cluster_cidr,
        shutdown.clone(),
    ));
    let proxy = config.proxy.then(|| {
        tokio::spawn(skiff_proxy::run(client.clone(), proxy_config, config.node_name.clone(), shutdown.clone()))
    });
    let resolv_conf = std::fs::read_to_string(&config.resolv_conf).unwrap_or_default();
    let node_dns = dns::NodeDns {
        node_name: config.node_name.clone(),
        node_ip: config.node_ip,
        domain: config.cluster_domain.clone(),
        upstreams: skiff_dns::forward::resolv_conf_servers(&resolv_conf),
        thread_start: config.thread_start,
    };
    let dns = tokio::spawn(dns::run(client.clone(), node_dns, shutdown.clone()));
    // The streaming server (the kubelet's port): logs, exec and port-forward, proxied by the API server.
    let tls = match &config.serving {
        ServingCert::Issued { cert, key } => skiff_streams::tls::serving_config_from_pem(cert, key)?,
        ServingCert::SignedWithCaIn(tls_dir) => skiff_streams::tls::serving_config_from_dir(
            tls_dir,
            std::slice::from_ref(&config.node_name),
            &[config.node_ip],
        )?,
    };
    let backend = Arc::new(streams::AgentBackend { dir: config.dir.clone(), client: client.clone() });
    let router = skiff_streams::router(backend, vec![config.token.clone()]);
    let streams =
        skiff_streams::StreamServer::start(std::net::SocketAddr::new(config.node_ip, config.agent_port), tls, router)
            .await?;
    let Some(subnet) = pod_cidr(&client, &config.node_name, &shutdown).await else { return Ok(()) };
    std::fs::write(config.dir.join("pod-cidr"), subnet.to_string())?;
    let cni = skiff_cni::Cni::new(network(&config.dir, subnet))?;
    cni.verify_plugins().await?;
    let resolver = pod_files::Resolver::parse(&resolv_conf);
    let catalog = skiff_images::Catalog::load(config.dir.join("images.yaml"))?.with_exe(config.shim_exe.clone());
    let rt = Arc::new(pods::PodRuntime::new(
        client,
        config.node_name.clone(),
        config.node_ip.to_string(),
        config.dir.clone(),
        cni,
        catalog,
        config.shim_exe.clone(),
        pod_files::ClusterDns { server: config.cluster_dns.clone(), domain: config.cluster_domain.clone() },
        resolver,
    ));
    let result = pods::run(rt, shutdown.clone()).await;
    let _ = heartbeat.await;
    if let Some(proxy) = proxy {
        let _ = proxy.await;
    }
    let _ = dns.await;
    let _ = routes.await;
    streams.shutdown().await;
    result
}

/// Stops every pod this node runs and removes every namespace, link, CNI allocation and file the node made.
pub async fn teardown(dir: &Path) -> anyhow::Result<()> {
    skiff_proxy::nft::delete_table(skiff_proxy::TABLE)?;
    skiff_hostgw::teardown()?;
    let Ok(cidr) = std::fs::read_to_string(dir.join("pod-cidr")) else {
        let _ = std::fs::remove_dir_all(dir);
        return Ok(());
    };
    let subnet: Ipv4Net = cidr.trim().parse()?;
    let cni = skiff_cni::Cni::new(network(dir, subnet))?;
    if let Ok(entries) = std::fs::read_dir(dir.join("pods")) {
        for entry in entries.flatten() {
            pods::teardown_pod(dir, &cni, &entry.file_name().to_string_lossy(), Duration::from_secs(2)).await;
        }
    }
    cni.teardown().await?;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

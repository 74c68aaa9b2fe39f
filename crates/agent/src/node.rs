//! The agent's Node: registration (labels, addresses, capacity, system info, the endpoint where the agent
//! serves logs, exec and port-forward), the `Ready` condition, and heartbeats through a Lease in
//! `kube-node-lease` (renewed every 10 s, as the kubelet does) plus a status refresh every 10 s.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How often the Lease and the Ready condition are renewed by default.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a Lease stays valid without renewal (the kubelet's default).
pub const LEASE_SECONDS: i32 = 40;
const MANAGER: &str = "skiff-agent";

/// What the agent says about its node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub address: IpAddr,
    /// The port of the agent's streaming server (the kubelet's 10250).
    pub agent_port: u16,
    /// Whether this node also runs the control plane (k3s labels it so).
    pub control_plane: bool,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn os_image() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn memory_kib() -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

/// The Node's status as the agent reports it.
pub fn status(info: &NodeInfo, now: &str) -> Value {
    let capacity = json!({
        "cpu": cpus().to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": "110",
        "ephemeral-storage": "0",
    });
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "addresses": [
            {"type": "InternalIP", "address": info.address.to_string()},
            {"type": "Hostname", "address": info.name},
        ],
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.agent_port}},
        "nodeInfo": {
            "machineID": read("/etc/machine-id").trim(),
            "systemUUID": read("/sys/class/dmi/id/product_uuid").trim(),
            "bootID": read("/proc/sys/kernel/random/boot_id").trim(),
            "kernelVersion": read("/proc/sys/kernel/osrelease").trim(),
            "osImage": os_image(),
            "containerRuntimeVersion": concat!("skiff://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.33.0+skiff",
            "kubeProxyVersion": "v1.33.0+skiff",
            "operatingSystem": "linux",
            "architecture": if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH },
        },
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Creates the Node if it does not exist and reports its status.
pub async fn register(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = json!({
        "kubernetes.io/hostname": info.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH },
    });
    if info.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("true");
    }
    if nodes.get_opt(&info.name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": info.name, "labels": labels}}))
            .map_err(kube::Error::SerdeError)?;
        match nodes.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    } else {
        nodes
            .patch(&info.name, &PatchParams::apply(MANAGER), &Patch::Merge(json!({"metadata": {"labels": labels}})))
            .await?;
    }
    report(&nodes, info).await
}

async fn report(nodes: &Api<Node>, info: &NodeInfo) -> Result<(), kube::Error> {
    let patch = json!({"status": status(info, &now())});
    nodes.patch_status(&info.name, &PatchParams::apply(MANAGER), &Patch::Merge(patch)).await.map(|_| ())
}

async fn renew_lease(leases: &Api<Lease>, info: &NodeInfo) -> Result<(), kube::Error> {
    let spec = json!({
        "holderIdentity": info.name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": now_micro(),
    });
    match leases.get_opt(&info.name).await? {
        Some(_) => leases
            .patch(&info.name, &PatchParams::apply(MANAGER), &Patch::Merge(json!({"spec": spec})))
            .await
            .map(|_| ()),
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": info.name, "namespace": "kube-node-lease"},
                "spec": spec,
            }))
            .map_err(kube::Error::SerdeError)?;
            leases.create(&PostParams::default(), &lease).await.map(|_| ())
        }
    }
}

/// Registers the node, then keeps its Lease and status fresh (`every` so long) until `shutdown`.
pub async fn run(client: kube::Client, info: NodeInfo, every: Duration, shutdown: CancellationToken) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut registered = false;
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = if registered {
            match renew_lease(&leases, &info).await {
                Ok(()) => report(&nodes, &info).await,
                Err(e) => Err(e),
            }
        } else {
            match register(&client, &info).await {
                Ok(()) => renew_lease(&leases, &info).await,
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => registered = true,
            Err(e) => tracing::warn!(node = info.name, error = %e, "node heartbeat failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_the_agent_endpoint_and_ready() {
        let info = NodeInfo {
            name: "n1".into(),
            address: "10.0.0.5".parse().unwrap(),
            agent_port: 10250,
            control_plane: true,
        };
        let s = status(&info, "2026-01-01T00:00:00Z");
        assert_eq!(s["addresses"][0]["address"], "10.0.0.5");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(s["conditions"][3]["type"], "Ready");
        assert_eq!(s["capacity"]["pods"], "110");
    }
}

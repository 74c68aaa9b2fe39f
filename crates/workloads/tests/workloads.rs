//! Integration tests: the Deployment and ReplicaSet controllers against an in-process API server, with the
//! test playing the kubelet (pod status through the status subresource, final deletes of bound pods).

#[path = "workloads/support.rs"]
mod support;

#[path = "workloads/replicaset.rs"]
mod replicaset;

#[path = "workloads/deployment.rs"]
mod deployment;

//! The workload controllers of Skiff: Deployments and ReplicaSets, following upstream's
//! `pkg/controller/deployment` and `pkg/controller/replicaset`.
//!
//! Both are kube-rs clients of the API. Data flows one way: watchers fill reflector caches (ReplicaSets and
//! Pods for the ReplicaSet controller; Deployments and ReplicaSets for the Deployment controller) with objects
//! slimmed first (`slim`: no managedFields; pods kept as a compact `CachedPod` of what is read), every
//! change maps to the owning object's key, and a reconcile reads the caches, decides (pure functions in
//! [`pods`], [`hash`], [`deployment`]'s `util`, [`replicaset`]'s `manage`) and writes: the ReplicaSet controller
//! creates and deletes Pods and writes ReplicaSet status; the Deployment controller creates, scales and deletes
//! ReplicaSets and writes Deployment status. Pods are created with `generateName`, so the ReplicaSet controller
//! keeps upstream's "expectations" (creates and deletes not yet seen by its cache) as a stale-cache guard; the
//! Deployment controller names ReplicaSets by pod-template hash and updates them with their resourceVersion,
//! so a stale cache shows up as a conflict and a retry. Errors go to a per-object exponential backoff, a
//! Warning event where upstream records one, and a log line.

pub mod deployment;
mod error;
pub mod hash;
mod labels;
mod ownership;
pub mod pods;
pub mod replicaset;
mod runtime;
mod slim;

pub use error::Error;

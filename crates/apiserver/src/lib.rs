//! The Skiff API server: a Kubernetes API that the real `kubectl`, kube-rs and other clients use unchanged.
//!
//! Data flow of one request: TLS + HTTP/1.1 ([`server`]) → bearer-token check and routing ([`handlers`]) →
//! body decoding and content negotiation ([`codec`]) → the verb: reads go to the store through [`storage`]
//! and come back as JSON or a Table; writes run strict decoding, defaulting and validation
//! (`skiff-admission`), patching (`skiff-patch`), Service address allocation ([`services`]) and one
//! compare-and-swap in the store; watches stream store events through label/field filters
//! ([`handlers::watch`]). Discovery and OpenAPI documents are built once (`skiff-openapi`) and served as they are.
//!
//! The store (`skiff-store`, SQLite or etcd) is the only state: every revision it assigns is an object's
//! `resourceVersion`, so two API servers on one etcd serve one cluster.

pub mod bootstrap;
pub mod codec;
pub mod config;
pub mod convert;
pub mod handlers;
pub mod request;
pub mod server;
pub mod services;
pub mod storage;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod tls;

pub use config::Config;
pub use server::{ApiServer, ServerError};

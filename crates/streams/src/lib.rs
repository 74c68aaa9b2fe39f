//! skiff-streams: the node agent's streaming endpoints — what `kubectl logs`, `kubectl exec` and
//! `kubectl port-forward` reach through the API server, like the kubelet's port 10250.
//!
//! Data flow: the API server proxies `pods/{log,exec,portforward}` to this server over TLS (a certificate from
//! the cluster CA, [`tls`]) with a bearer token ([`server`]). Logs stream the [`Backend`]'s bytes as a chunked
//! body ([`logs`]). Exec upgrades to a WebSocket with the `v5.channel.k8s.io` channel protocol and pipes the
//! backend's process stdio through it ([`exec`]). Port-forward upgrades to SPDY/3.1 — tunnelled in a WebSocket
//! or raw — and maps each pair of SPDY streams onto one backend connection to the pod port ([`portforward`],
//! framing and header compression in [`spdy`]). The agent supplies the [`Backend`] over its runtime; tests use a
//! fake one over local processes and loopback sockets.

pub mod backend;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod server;
pub mod spdy;
pub mod tls;

pub use backend::{
    Backend, BackendError, BoxDuplex, ExecRequest, ExecSession, LogOptions, LogStream, PodRef, TerminalSize,
};
pub use server::{StreamServer, router};

//! Images for a node that pulls none. A container's `image` is looked up in the node's [`Catalog`] (built-in
//! defaults plus a YAML/JSON file in the data dir); [`Catalog::resolve`] turns image + `command` + `args` into
//! the argv the runtime starts, with Kubernetes semantics (`command` replaces the image's entrypoint, `args`
//! its cmd; `$(VAR)` references are expanded beforehand with [`expand_command_args`]). Image references are
//! normalised first ([`ImageRef`]: `nginx` = `docker.io/library/nginx:latest`).
//!
//! The catalog's default images are demo programs built into the `skiff` binary — honest, small stand-ins for
//! the public images the seeds and upstream conformance tests use (kiamol's sleep and numbers app,
//! nigelpoulton/k8sbook, nginx, agnhost netexec / serve-hostname / pause): their argv is
//! `[skiff, "image", NAME, ARGS…]`, and the binary hands that to [`run`], which runs the program in
//! [`servers`] until SIGTERM. Each server binds all addresses of the pod's network namespace on the port the
//! upstream image uses, overridable by flag. The crate's `skiff-image` binary does the same for tests.

pub mod catalog;
pub mod expansion;
pub mod fetch;
mod flags;
pub mod reference;
pub mod servers;

pub use catalog::{BUILTINS, Builtin, Catalog, CatalogError, ImageConfig, ResolveError, Resolved, builtin};
pub use expansion::{expand, expand_command_args};
pub use flags::FlagError;
pub use reference::{ImageRef, ReferenceError};
pub use servers::{ImageError, RunOptions, run, run_with};

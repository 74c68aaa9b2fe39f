//! The crate's error type.

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::config::ConfigError;
use crate::exec::ExecError;
use crate::netns::NetnsError;
use crate::result::ResultError;

/// Everything that can go wrong attaching or detaching a pod.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid network configuration")]
    Config(#[from] ConfigError),
    #[error("invalid container id {0:?}")]
    InvalidContainerId(String),
    #[error("network namespace {0} does not exist")]
    NetnsMissing(PathBuf),
    #[error("container {0} is not attached to the network")]
    NotAttached(String),
    #[error("plugin {plugin} returned no result")]
    EmptyResult { plugin: String },
    #[error("plugin {plugin} does not support CNI version {version}")]
    UnsupportedVersion { plugin: String, version: &'static str },
    #[error("the conflist has no usable plugins")]
    EmptyConflist,
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("unusable plugin result")]
    Result(#[from] ResultError),
    #[error("result cache")]
    Cache(#[from] CacheError),
    #[error("network namespace")]
    Netns(#[from] NetnsError),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

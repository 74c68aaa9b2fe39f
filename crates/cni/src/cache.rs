//! The result cache: what ADD returned for each pod, kept on disk like libcni's `results/` directory.
//!
//! CHECK and DEL hand the cached result to the plugins as `prevResult` and reuse the cached port mappings; after an
//! agent restart the cache gives back each running pod's IP without calling any plugin. Files are written to a
//! temporary name and renamed so a crash never leaves half a record.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PortMapping;

/// One pod's attachment to the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedAttachment {
    /// Always `cniCacheV1`, as libcni writes.
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The netns path given to ADD.
    pub netns: PathBuf,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The final result of ADD.
    pub result: Value,
}

/// Errors reading or writing the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache file {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The `results` directory under the configured cache dir.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
    network: String,
}

impl ResultCache {
    pub fn new(cache_dir: &Path, network: &str) -> Self {
        Self { dir: cache_dir.join("results"), network: network.into() }
    }

    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{}-{}-{}", self.network, container_id, ifname))
    }

    /// Stores an attachment, replacing any earlier one.
    pub fn save(&self, entry: &CachedAttachment) -> Result<(), CacheError> {
        fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
            move |source| CacheError::Io { what, path: path.to_path_buf(), source }
        }
        fs::create_dir_all(&self.dir).map_err(io("create cache dir", &self.dir))?;
        let path = self.path(&entry.container_id, &entry.if_name);
        let tmp = path.with_extension("tmp");
        let bytes =
            serde_json::to_vec_pretty(entry).map_err(|source| CacheError::Corrupt { path: path.clone(), source })?;
        fs::write(&tmp, bytes).map_err(io("write cache file", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("rename cache file", &path))
    }

    /// The attachment stored for a container, if any.
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<CachedAttachment>, CacheError> {
        let path = self.path(container_id, ifname);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { what: "read cache file", path, source }),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|source| CacheError::Corrupt { path, source })
    }

    /// Forgets a container's attachment; forgetting one that is not there succeeds.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), CacheError> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Io { what: "remove cache file", path, source }),
        }
    }

    /// Every attachment of this network with interface `ifname`, sorted by container id; unreadable files are
    /// skipped with a warning.
    pub fn list(&self, ifname: &str) -> Result<Vec<CachedAttachment>, CacheError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CacheError::Io { what: "list cache dir", path: self.dir.clone(), source }),
        };
        let prefix = format!("{}-", self.network);
        let suffix = format!("-{ifname}");
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(&suffix)) else {
                continue;
            };
            match self.load(id, ifname) {
                Ok(Some(a)) if a.network_name == self.network => out.push(a),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "skipping unreadable cni cache file"),
            }
        }
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str) -> CachedAttachment {
        CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: id.into(),
            if_name: "eth0".into(),
            network_name: "skiff".into(),
            netns: "/run/netns/x".into(),
            port_mappings: vec![PortMapping::tcp(8080, 80)],
            result: json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}),
        }
    }

    #[test]
    fn save_load_list_remove() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let cache = ResultCache::new(dir.path(), "skiff");
        assert_eq!(cache.load("a", "eth0")?, None);
        cache.save(&entry("b"))?;
        cache.save(&entry("a"))?;
        // Another network in the same dir, and junk, are not listed.
        ResultCache::new(dir.path(), "other").save(&entry("c"))?;
        fs::write(dir.path().join("results/skiff-junk-eth0"), "not json")?;
        assert_eq!(cache.load("a", "eth0")?, Some(entry("a")));
        let ids: Vec<_> = cache.list("eth0")?.into_iter().map(|a| a.container_id).collect();
        assert_eq!(ids, ["a", "b"]);
        cache.remove("a", "eth0")?;
        cache.remove("a", "eth0")?;
        assert_eq!(cache.load("a", "eth0")?, None);
        assert!(matches!(cache.load("junk", "eth0"), Err(CacheError::Corrupt { .. })));
        Ok(())
    }
}

//! [`Cni`]: ADD, CHECK and DEL of a pod on the node's network, chaining the conflist's plugins as libcni does.
//!
//! ADD runs loopback for `lo`, then each plugin of the conflist in order for `eth0`, each getting the previous
//! plugin's result as `prevResult` and, if it declares the `portMappings` capability, the pod's hostPorts as
//! `runtimeConfig`. The last result is cached (see [`crate::cache`]). A failed ADD is undone with a DEL so no
//! address leaks. DEL runs the plugins in reverse order with the cached result and forgets the cache entry; it
//! succeeds when the pod was never added or its namespace is already gone (the IP is still released).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::cache::{CachedAttachment, ResultCache};
use crate::config::{CNI_VERSION, ConfigError, NetworkConfig, POD_IFNAME, PortMapping, loopback_config};
use crate::error::Error;
use crate::exec::{ExecError, Invocation, Op, Runner};
use crate::masq;
use crate::netns;
use crate::result::CniResult;

/// The node's pod network, ready to attach pods to.
#[derive(Debug, Clone)]
pub struct Cni {
    config: NetworkConfig,
    conflist: Value,
    runner: Runner,
    cache: ResultCache,
}

impl Cni {
    /// Validates the configuration; plugins run in the caller's network namespace.
    pub fn new(config: NetworkConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            conflist: config.conflist(),
            runner: Runner { plugin_dirs: config.plugin_dirs.clone(), plugin_netns: None },
            cache: ResultCache::new(&config.cache_dir, &config.name),
            config,
        })
    }

    /// Runs the plugins (and so creates the bridge, routes and NAT rules) inside the network namespace at `path`
    /// instead of the caller's: the "node" namespace of a test, or of a node that runs inside a namespace.
    pub fn with_plugin_netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.runner.plugin_netns = Some(path.into());
        self
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The conflist given to the plugins.
    pub fn conflist(&self) -> &Value {
        &self.conflist
    }

    /// Writes the conflist as JSON (for operators to see what the node uses, e.g. `DATA/cni/10-skiff.conflist`).
    pub fn write_conflist(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io { what: "write conflist", path: path.into(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(&self.conflist).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(io)
    }

    /// Checks that every plugin the network needs exists and supports [`CNI_VERSION`] (`VERSION` command); for
    /// failing fast at agent start-up.
    pub async fn verify_plugins(&self) -> Result<(), Error> {
        let mut kinds = vec!["loopback".to_string(), "host-local".to_string()];
        kinds.extend(self.plugins().iter().filter_map(|p| p["type"].as_str().map(String::from)));
        let inv = Invocation { op: Op::Version, container_id: "", netns: None, ifname: "", args: "" };
        for kind in kinds {
            let out = self.runner.run(&kind, &inv, &json!({ "cniVersion": CNI_VERSION })).await?;
            let supported = out
                .as_ref()
                .and_then(|v| v["supportedVersions"].as_array())
                .is_some_and(|versions| versions.iter().any(|v| v == CNI_VERSION));
            if !supported {
                return Err(Error::UnsupportedVersion { plugin: kind, version: CNI_VERSION });
            }
        }
        Ok(())
    }

    /// Attaches the pod whose network namespace is `netns` and returns its address.
    pub async fn add(&self, container_id: &str, netns: &Path, ports: &[PortMapping]) -> Result<CniResult, Error> {
        validate_container_id(container_id)?;
        if !netns::netns_exists(netns) {
            return Err(Error::NetnsMissing(netns.into()));
        }
        match self.add_inner(container_id, netns, ports).await {
            Ok(result) => Ok(result),
            Err(error) => {
                tracing::warn!(container_id, %error, "cni add failed; deleting what was set up");
                if let Err(cleanup) = self.del(container_id, Some(netns)).await {
                    tracing::warn!(container_id, error = %cleanup, "cleanup after failed cni add failed");
                }
                Err(error)
            }
        }
    }

    async fn add_inner(&self, container_id: &str, netns: &Path, ports: &[PortMapping]) -> Result<CniResult, Error> {
        let args = cni_args(container_id);
        let lo = Invocation { op: Op::Add, container_id, netns: Some(netns), ifname: "lo", args: &args };
        self.runner.run("loopback", &lo, &loopback_config()).await?;

        let inv = Invocation { op: Op::Add, container_id, netns: Some(netns), ifname: POD_IFNAME, args: &args };
        let mut prev: Option<Value> = None;
        for plugin in self.plugins() {
            let (kind, conf) = self.plugin_config(plugin, prev.as_ref(), ports)?;
            let out = self.runner.run(&kind, &inv, &conf).await?;
            prev = Some(out.ok_or_else(|| Error::EmptyResult { plugin: kind.clone() })?);
        }
        let raw = prev.ok_or(Error::EmptyConflist)?;
        let result = CniResult::parse(raw.clone())?;
        self.cache.save(&CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: container_id.into(),
            if_name: POD_IFNAME.into(),
            network_name: self.config.name.clone(),
            netns: netns.into(),
            port_mappings: ports.to_vec(),
            result: raw,
        })?;
        tracing::info!(container_id, ip = %result.ip, "attached pod to network");
        Ok(result)
    }

    /// Asks every plugin to verify the pod's attachment against the cached ADD result.
    pub async fn check(&self, container_id: &str, netns: &Path) -> Result<(), Error> {
        validate_container_id(container_id)?;
        let cached =
            self.cache.load(container_id, POD_IFNAME)?.ok_or_else(|| Error::NotAttached(container_id.into()))?;
        let args = cni_args(container_id);
        let inv = Invocation { op: Op::Check, container_id, netns: Some(netns), ifname: POD_IFNAME, args: &args };
        for plugin in self.plugins() {
            let (kind, conf) = self.plugin_config(plugin, Some(&cached.result), &cached.port_mappings)?;
            match self.runner.run(&kind, &inv, &conf).await {
                Ok(_) => {}
                Err(e) if is_portmap_ipv6_check_bug(&e) => {
                    tracing::debug!(container_id, "ignoring portmap's ipv6 check of an ipv4-only pod");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Detaches a pod and releases its address. Idempotent; works when `netns` is `None` or already deleted.
    pub async fn del(&self, container_id: &str, netns: Option<&Path>) -> Result<(), Error> {
        validate_container_id(container_id)?;
        let cached = self.cache.load(container_id, POD_IFNAME)?;
        let netns = netns.or(cached.as_ref().map(|c| c.netns.as_path())).filter(|p| netns::netns_exists(p));
        let prev = cached.as_ref().map(|c| &c.result);
        let ports = cached.as_ref().map(|c| c.port_mappings.as_slice()).unwrap_or_default();
        let args = cni_args(container_id);
        let inv = Invocation { op: Op::Del, container_id, netns, ifname: POD_IFNAME, args: &args };
        for plugin in self.plugins().iter().rev() {
            let (kind, conf) = self.plugin_config(plugin, prev, ports)?;
            self.runner.run(&kind, &inv, &conf).await?;
        }
        if netns.is_none() {
            // The bridge plugin only removes its masquerade rules when it can see the pod's interface.
            let ip = cached.as_ref().and_then(|c| CniResult::parse(c.result.clone()).ok()).map(|r| r.ip);
            masq::cleanup(&self.runner, &self.config.name, container_id, ip).await?;
        } else {
            let lo = Invocation { op: Op::Del, container_id, netns, ifname: "lo", args: &args };
            self.runner.run("loopback", &lo, &loopback_config()).await?;
        }
        self.cache.remove(container_id, POD_IFNAME)?;
        tracing::info!(container_id, "detached pod from network");
        Ok(())
    }

    /// The cached ADD result of a pod, e.g. to recover its IP after an agent restart.
    pub fn cached_result(&self, container_id: &str) -> Result<Option<CniResult>, Error> {
        validate_container_id(container_id)?;
        match self.cache.load(container_id, POD_IFNAME)? {
            Some(c) => Ok(Some(CniResult::parse(c.result)?)),
            None => Ok(None),
        }
    }

    /// Container ids of every pod attached (according to the cache), sorted.
    pub fn attachments(&self) -> Result<Vec<String>, Error> {
        Ok(self.cache.list(POD_IFNAME)?.into_iter().map(|a| a.container_id).collect())
    }

    /// Removes everything the network made on the node: DEL of every cached pod, the bridge, the hostPort chains
    /// and the IPAM and cache directories. For `skiff teardown`.
    pub async fn teardown(&self) -> Result<(), Error> {
        for id in self.attachments()? {
            self.del(&id, None).await?;
        }
        masq::delete_link(&self.runner, &self.config.bridge).await?;
        masq::remove_hostport_chains(&self.runner).await?;
        for dir in [self.config.ipam_data_dir.join(&self.config.name), self.config.cache_dir.join("results")] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { what: "remove", path: dir, source }),
            }
        }
        Ok(())
    }

    fn plugins(&self) -> &[Value] {
        self.conflist["plugins"].as_array().map(Vec::as_slice).unwrap_or_default()
    }

    /// One plugin's stdin: its conflist entry plus `name`, `cniVersion`, `prevResult` and `runtimeConfig`.
    fn plugin_config(
        &self,
        plugin: &Value,
        prev: Option<&Value>,
        ports: &[PortMapping],
    ) -> Result<(String, Value), Error> {
        let mut conf: Map<String, Value> = plugin.as_object().cloned().unwrap_or_default();
        let kind = conf.get("type").and_then(Value::as_str).ok_or(Error::EmptyConflist)?.to_string();
        conf.insert("name".into(), json!(self.config.name));
        conf.insert("cniVersion".into(), json!(CNI_VERSION));
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let wants_ports = conf.get("capabilities").and_then(|c| c.get("portMappings")) == Some(&Value::Bool(true));
        if wants_ports {
            conf.insert("runtimeConfig".into(), json!({ "portMappings": ports }));
        }
        Ok((kind, Value::Object(conf)))
    }
}

/// portmap v1.1 CHECK also checks an ip6tables chain it never created for IPv4-only pods
/// (containernetworking/plugins#819); it checks IPv4 first, so reaching this error means the IPv4 rules are fine.
fn is_portmap_ipv6_check_bug(e: &ExecError) -> bool {
    matches!(e, ExecError::Plugin { plugin, msg, .. } if plugin == "portmap" && msg.starts_with("could not check ipv6 dnat"))
}

/// `CNI_ARGS` as containerd sets them for Kubernetes (plugins ignore keys they do not know).
fn cni_args(container_id: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={container_id}")
}

/// The spec allows letters, digits, `_`, `.` and `-`, starting with a letter or digit.
fn validate_container_id(id: &str) -> Result<(), Error> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok { Ok(()) } else { Err(Error::InvalidContainerId(id.into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cni() -> Result<Cni, ConfigError> {
        let subnet = "10.77.0.0/24".parse().unwrap_or_else(|e| panic!("{e}"));
        Cni::new(NetworkConfig::new("skiff", "skbr0", subnet, Path::new("/tmp/skiff-cni-unit")))
    }

    #[test]
    fn plugin_config_injects_name_version_prev_and_ports() -> Result<(), Box<dyn std::error::Error>> {
        let cni = cni()?;
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.77.0.2/24"}]});
        let ports = [PortMapping::tcp(8080, 80)];
        let (kind, bridge) = cni.plugin_config(&cni.plugins()[0], None, &ports)?;
        assert_eq!(kind, "bridge");
        assert_eq!(bridge["name"], "skiff");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        assert!(bridge.get("runtimeConfig").is_none(), "bridge has no portMappings capability");
        let (kind, portmap) = cni.plugin_config(&cni.plugins()[1], Some(&prev), &ports)?;
        assert_eq!(kind, "portmap");
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        Ok(())
    }

    #[test]
    fn futures_can_be_spawned() -> Result<(), ConfigError> {
        fn assert_send<T: Send + Sync>(_: &T) {}
        let cni = cni()?;
        assert_send(&cni);
        assert_send(&cni.add("a", Path::new("/nonexistent"), &[]));
        assert_send(&cni.del("a", None));
        assert_send(&cni.check("a", Path::new("/nonexistent")));
        assert_send(&cni.teardown());
        Ok(())
    }

    #[test]
    fn container_ids_follow_the_spec() {
        assert!(validate_container_id("abc-123_x.y").is_ok());
        for bad in ["", "-a", "a/b", "../x", "a b"] {
            assert!(matches!(validate_container_id(bad), Err(Error::InvalidContainerId(_))), "{bad:?}");
        }
    }

    #[test]
    fn invalid_config_is_rejected() {
        let subnet = "10.77.0.0/24".parse().unwrap_or_else(|e| panic!("{e}"));
        let config = NetworkConfig::new("skiff", "bridge-name-too-long", subnet, Path::new("/tmp"));
        assert!(matches!(Cni::new(config), Err(ConfigError::InvalidBridge(_))));
    }
}

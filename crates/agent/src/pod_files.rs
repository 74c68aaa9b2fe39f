//! The files the agent writes for each pod and bind-mounts into its containers: `/etc/resolv.conf` (by
//! `dnsPolicy` and `dnsConfig`, as the kubelet builds it), `/etc/hosts` (the kubelet-managed form, with the pod's
//! own name and `hostAliases`) and `/etc/hostname`.

use k8s_openapi::api::core::v1::Pod;

/// Upstream's limits on a pod's resolver configuration.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The node's own resolver configuration (from its `/etc/resolv.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolver {
    /// Parses a resolv.conf.
    pub fn parse(text: &str) -> Self {
        let mut r = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.starts_with(';')) {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(String::from)),
                Some("search" | "domain") => r.searches = words.map(String::from).collect(),
                Some("options") => r.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        r
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The cluster's DNS settings.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    pub server: String,
    pub domain: String,
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// Merges resolver options by name (`ndots:2` replaces `ndots:5`), as the kubelet does.
fn merge_options(base: &mut Vec<String>, extra: impl IntoIterator<Item = String>) {
    for opt in extra {
        let name = opt.split(':').next().unwrap_or_default().to_string();
        base.retain(|o| o.split(':').next() != Some(name.as_str()));
        base.push(opt);
    }
}

/// The pod's `/etc/resolv.conf`.
pub fn resolv_conf(pod: &Pod, cluster: &ClusterDns, node: &Resolver) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut r = match policy {
        "None" => Resolver::default(),
        "Default" => node.clone(),
        "ClusterFirst" if host_network => node.clone(),
        _ => {
            let d = &cluster.domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            push_unique(&mut searches, node.searches.iter().cloned());
            Resolver { nameservers: vec![cluster.server.clone()], searches, options: vec!["ndots:5".into()] }
        }
    };
    if let Some(cfg) = &spec.dns_config {
        push_unique(&mut r.nameservers, cfg.nameservers.clone().unwrap_or_default());
        push_unique(&mut r.searches, cfg.searches.clone().unwrap_or_default());
        let opts = cfg.options.clone().unwrap_or_default().into_iter().filter_map(|o| {
            let name = o.name?;
            Some(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            })
        });
        merge_options(&mut r.options, opts);
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCHES);
    r.render()
}

/// The pod's hostname: `spec.hostname`, else its name (at most 63 characters, as upstream).
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_string()
}

/// The pod's `/etc/hosts`, as the kubelet writes it.
pub fn hosts(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    match pod.spec.as_ref().and_then(|s| s.subdomain.clone()).filter(|s| !s.is_empty()) {
        Some(sub) => out.push_str(&format!("{pod_ip}\t{host}.{sub}.{ns}.svc.{cluster_domain}\t{host}\n")),
        None => out.push_str(&format!("{pod_ip}\t{host}\n")),
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.clone()).unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-1", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns { server: "10.43.0.10".into(), domain: "cluster.local".into() }
    }

    #[test]
    fn cluster_first_points_at_cluster_dns_with_the_namespace_search_path() {
        let node = Resolver::parse("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n");
        let text = resolv_conf(&pod(json!({"containers": []})), &cluster(), &node);
        assert_eq!(
            text,
            "nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_none_and_dns_config() {
        let node = Resolver::parse("nameserver 192.0.2.53\n");
        let text = resolv_conf(&pod(json!({"containers": [], "dnsPolicy": "Default"})), &cluster(), &node);
        assert_eq!(text, "nameserver 192.0.2.53\n");
        let none = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        assert_eq!(
            resolv_conf(&none, &cluster(), &node),
            "nameserver 1.2.3.4\nsearch ns1.svc.cluster-domain.example my.dns.search.suffix\noptions ndots:2 edns0\n"
        );
        let merged = pod(json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert!(resolv_conf(&merged, &cluster(), &node).ends_with("options ndots:1\n"));
    }

    #[test]
    fn hosts_names_the_pod_and_its_aliases() {
        let p = pod(json!({"containers": [], "hostname": "db-0", "subdomain": "db",
            "hostAliases": [{"ip": "127.0.0.2", "hostnames": ["foo.local", "bar.local"]}]}));
        let text = hosts(&p, "10.42.0.7", "cluster.local");
        assert!(text.contains("10.42.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"), "{text}");
        assert!(text.contains("# Entries added by HostAliases.\n127.0.0.2\tfoo.local\tbar.local\n"));
        assert_eq!(hostname(&pod(json!({"containers": []}))), "web-1");
    }
}

//! Names outside the cluster: forwarded to the node's upstream resolvers through hickory's resolver, which
//! caches answers for their TTL. An upstream that fails or does not answer within [`DEADLINE`] makes the
//! answer SERVFAIL, so a client never waits on a dead upstream longer than that.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// The longest a forwarded question waits for upstream.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// Upstream's reply to a forwarded question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
}

/// A resolver over the upstream servers.
#[derive(Clone)]
pub struct Forwarder {
    resolver: TokioResolver,
}

/// The name servers of a `resolv.conf` text, on port 53.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl Forwarder {
    /// A forwarder to `servers` (tried in order, over UDP with TCP on truncation).
    pub fn new(servers: &[SocketAddr]) -> Result<Forwarder, String> {
        let configs = servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        let mut options = ResolverOpts::default();
        // Questions arrive fully qualified; no search list, no local hosts file.
        options.ndots = 0;
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        options.timeout = Duration::from_millis(800);
        options.attempts = 1;
        options.preserve_intermediates = true;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), configs),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| e.to_string())?;
        Ok(Forwarder { resolver })
    }

    /// Upstream's answer to `qtype` at `name`: its records, NXDOMAIN, NOERROR with none, or SERVFAIL when
    /// upstream fails or is too slow.
    pub async fn lookup(&self, name: &Name, qtype: RecordType) -> Forwarded {
        let mut name = name.clone();
        name.set_fqdn(true);
        match tokio::time::timeout(DEADLINE, self.resolver.lookup(name, qtype)).await {
            Ok(Ok(lookup)) => Forwarded { code: ResponseCode::NoError, answers: lookup.answers().to_vec() },
            Ok(Err(e)) if e.is_nx_domain() => Forwarded { code: ResponseCode::NXDomain, answers: Vec::new() },
            Ok(Err(e)) if e.is_no_records_found() => Forwarded { code: ResponseCode::NoError, answers: Vec::new() },
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "an upstream lookup failed");
                Forwarded { code: ResponseCode::ServFail, answers: Vec::new() }
            }
            Err(_) => Forwarded { code: ResponseCode::ServFail, answers: Vec::new() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_name_servers() {
        let text = "# generated\nsearch example.test\nnameserver 192.0.2.53\nnameserver fd00::53\noptions ndots:2\n";
        let servers: Vec<String> = resolv_conf_servers(text).iter().map(ToString::to_string).collect();
        assert_eq!(servers, ["192.0.2.53:53", "[fd00::53]:53"]);
    }
}

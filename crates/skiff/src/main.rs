//! `skiff`: one binary for the whole cluster. `skiff server` runs the control plane — the API server on SQLite
//! or etcd, the controllers and the node agent as its in-process clients; `skiff controllers` runs the
//! controllers alone against any Kubernetes API, `skiff agent` the node agent alone (with the service proxy and
//! cluster DNS). `skiff explain svc NAME` says why a Service does or does not reach pods.
//!
//! Bad flags exit with code 64 (`EX_USAGE`) and a one-line reason.

mod allocator;
mod client;
mod join;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_apiserver::{ApiServer, Config};
use skiff_store::Store;
use tokio_util::sync::CancellationToken;

/// `EX_USAGE` from sysexits.h.
const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "skiff", version, about = "A small, fast, single-binary Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane and the node agent of a cluster.
    Server(Box<ServerArgs>),
    /// Run only the controllers, against any Kubernetes API.
    Controllers(ControllersArgs),
    /// Run only the node agent, beside a `skiff server --disable-agent` on this machine.
    Agent(AgentArgs),
    /// Stop every pod of this node and remove every namespace, link, CNI allocation and file the node made.
    Teardown {
        /// The data dir the server ran with.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
    /// Run one of the demo images built into Skiff (what pods of those images run).
    Image {
        /// The built-in program (`sleep`, `numbers-api`, `numbers-web`, `netexec`, …).
        name: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Explain why an object does or does not work (for now: why a Service does or does not reach pods).
    Explain {
        #[command(subcommand)]
        what: Explain,
    },
}

#[derive(Subcommand, Debug)]
enum Explain {
    /// A Service: its selector, the pods that match and the near misses, Ready endpoints, DNS names, and this
    /// node's nftables chains and backends for it.
    #[command(visible_alias = "service", alias = "services")]
    Svc(ExplainServiceArgs),
}

#[derive(clap::Args, Debug)]
struct ExplainServiceArgs {
    /// The Service's name.
    name: String,
    /// Its namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    /// The kubeconfig to reach the API with (default: $KUBECONFIG or ~/.kube/config when there is one, else the
    /// server's `<data-dir>/kubeconfig.yaml` when there is one, else in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The data dir of the server on this machine (for its kubeconfig).
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// When the node lifecycle controller gives up on a silent node (upstream's flag and default). How long pods then
/// stay is their toleration of the unreachable taint: 300 s unless the pod says otherwise.
#[derive(clap::Args, Debug, Clone)]
struct NodeLifecycleArgs {
    /// How long a node may go without a heartbeat before it is marked unreachable and its pods leave their
    /// Services' endpoints (kube-controller-manager's flag).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
}

impl NodeLifecycleArgs {
    fn options(&self) -> skiff_nodelifecycle::Options {
        let grace = self.node_monitor_grace_period;
        skiff_nodelifecycle::Options {
            grace,
            // Upstream looks every 5 s; a short grace period needs a closer look.
            period: (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// A duration as Kubernetes flags write it: a number and a unit (`ms`, `s`, `m`, `h`), e.g. `40s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 40s"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{text:?} is not a duration such as 40s (units: ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[derive(clap::Args, Debug)]
struct ControllersArgs {
    /// The kubeconfig to reach the API with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The pod network that node IPAM splits into per-node ranges.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// Run only these controllers (comma-separated; default: all of them).
    #[arg(long, value_delimiter = ',', env = "SKIFF_CONTROLLERS")]
    controllers: Vec<String>,
    #[command(flatten)]
    node_lifecycle: NodeLifecycleArgs,
}

#[derive(clap::Args, Debug)]
struct AgentArgs {
    /// Join the cluster of the API server at this URL (`https://HOST:6443`), with `--token`.
    #[arg(long, requires = "token", conflicts_with_all = ["kubeconfig", "server_data_dir"])]
    server: Option<String>,
    /// The join token `skiff server` prints (and writes to `<data-dir>/node-token`): it pins the cluster CA and
    /// authenticates the join.
    #[arg(long, env = "SKIFF_TOKEN", requires = "server")]
    token: Option<String>,
    /// Instead of joining: the kubeconfig to reach the API with, beside a server on this machine.
    #[arg(long, requires = "server_data_dir")]
    kubeconfig: Option<PathBuf>,
    /// Instead of joining: the data dir of the server on this machine, whose cluster CA signs the streaming
    /// certificate and whose join secret gives the token the API server presents to the streaming server.
    #[arg(long, requires = "kubeconfig")]
    server_data_dir: Option<PathBuf>,
    /// The agent's own state: pods, CNI allocations (default: `<server-data-dir>/agent`, or
    /// `/var/lib/skiff/agent` when joining).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This node's IP address (default: the default route's).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The pod network of the whole cluster (the server's --cluster-cidr).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// The Service virtual IP range (the server's --service-cidr).
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: ipnet::Ipv4Net,
    /// The cluster DNS Service IP.
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: IpAddr,
    /// The cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node's resolver configuration: pods with `dnsPolicy: Default` get it, and the cluster DNS forwards
    /// names outside the cluster to its name servers (kubelet's --resolv-conf).
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The port of the streaming server (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    agent_port: u16,
    /// Do not program Services into this node's data plane (another proxy does it; k3s's
    /// --disable-kube-proxy). Cluster DNS and pods run as usual.
    #[arg(long)]
    disable_proxy: bool,
    /// How often the node's Lease and status are renewed (the kubelet's flag).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    node_status_update_frequency: Duration,
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// Directory for state: database, TLS material, tokens.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Write the admin kubeconfig here (default: <data-dir>/kubeconfig.yaml).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Address advertised to the cluster (default: --node-ip, else the bind address, else the default route's).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// This node's IP address.
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Pod network, split into per-node ranges.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// Service virtual IP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: ipnet::Ipv4Net,
    /// The cluster DNS Service IP.
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: IpAddr,
    /// The cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node's resolver configuration: pods with `dnsPolicy: Default` get it, and the cluster DNS forwards
    /// names outside the cluster to its name servers (kubelet's --resolv-conf).
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// NodePort range, `FIRST-LAST`.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: (u16, u16),
    /// Empty: embedded SQLite in the data dir. `http://host:port[,http://host:port…]`: etcd v3.
    #[arg(long, default_value = "")]
    datastore_endpoint: String,
    /// The admin bearer token (default: generated into the data dir).
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// Run the control plane only, without a node agent on this machine.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the controllers in this process (run them elsewhere with `skiff controllers`).
    #[arg(long)]
    disable_controllers: bool,
    /// Do not program Services into this node's data plane (another proxy does it; k3s's
    /// --disable-kube-proxy). Cluster DNS and pods run as usual.
    #[arg(long)]
    disable_proxy: bool,
    /// This node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// How often this node's Lease and status are renewed (the kubelet's flag).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    node_status_update_frequency: Duration,
    #[command(flatten)]
    node_lifecycle: NodeLifecycleArgs,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a range like 30000-32767"))?;
    let a: u16 = a.trim().parse().map_err(|_| format!("{a:?} is not a port"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("{b:?} is not a port"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?} is not a valid port range"));
    }
    Ok((a, b))
}

/// The address the kernel would use to leave this machine by its default route. Connecting a UDP socket sends
/// nothing; it only asks the routing table. Falls back to loopback where there is no route.
/// This machine's hostname (the default node name).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn default_route_address() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The datastore a `--datastore-endpoint` names.
enum Datastore {
    Sqlite(PathBuf),
    Etcd(Vec<String>),
}

fn parse_datastore(endpoint: &str, data_dir: &std::path::Path) -> Result<Datastore, String> {
    if endpoint.is_empty() {
        return Ok(Datastore::Sqlite(data_dir.join("db").join("state.db")));
    }
    let urls: Vec<String> = endpoint.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for url in &urls {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("--datastore-endpoint {url:?}: only http://host:port etcd endpoints are supported")
        })?;
        if rest.rsplit_once(':').and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok()).is_none() {
            return Err(format!("--datastore-endpoint {url:?}: expected http://host:port"));
        }
    }
    Ok(Datastore::Etcd(urls))
}

fn main() -> ExitCode {
    // A container's supervisor must be single-threaded to join its mount namespace: dispatch it before anything
    // else starts a thread.
    let mut raw = std::env::args_os().skip(1);
    if raw.next().as_deref() == Some("shim".as_ref()) {
        return skiff_runtime::shim_main(raw);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let reason = e.to_string();
            let line = reason.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("skiff: {}", line.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    allocator::tune();
    allocator::register_metrics();
    // hickory's TCP server logs every question at info: a line per query would fill the disk under load.
    let default_filter = "info,hyper=warn,h2=warn,hickory_server=warn,hickory_proto=warn,hickory_resolver=warn";
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Agent(_)) {
        // The node agent runs on every node, where its memory counts for more than what a thread cache saves.
        allocator::lean_thread();
        builder.on_thread_start(allocator::lean_thread);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(server(*args)),
        Command::Controllers(args) => runtime.block_on(controllers(args)),
        Command::Agent(args) => runtime.block_on(agent(args)),
        Command::Image { name, args } => return runtime.block_on(skiff_images::run(&name, &args)),
        Command::Explain { what: Explain::Svc(args) } => runtime.block_on(explain_service(args)),
        Command::Teardown { data_dir } => {
            runtime.block_on(async { skiff_agent::teardown(&data_dir.join("agent")).await.map(|()| ExitCode::SUCCESS) })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skiff: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let datastore = match parse_datastore(&args.datastore_endpoint, &args.data_dir) {
        Ok(d) => d,
        Err(reason) => {
            eprintln!("skiff: {reason}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store: Arc<dyn Store> = match datastore {
        Datastore::Sqlite(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            Arc::new(
                skiff_store::sqlite::SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?,
            )
        }
        Datastore::Etcd(urls) => {
            Arc::new(skiff_store::etcd::EtcdStore::connect(&urls).await.context("connecting to etcd")?)
        }
    };
    let listen = SocketAddr::new(args.bind_address, args.https_listen_port);
    let mut config = Config::new(args.data_dir.clone(), listen);
    config.advertise_address = args
        .advertise_address
        .or(args.node_ip)
        .or(Some(args.bind_address).filter(|ip| !ip.is_unspecified()))
        .unwrap_or_else(default_route_address);
    config.service_cidr = args.service_cidr;
    config.cluster_cidr = args.cluster_cidr;
    config.cluster_dns = args.cluster_dns;
    config.cluster_domain = args.cluster_domain;
    config.node_port_range = args.service_node_port_range.0..=args.service_node_port_range.1;
    config.token = args.token;
    let kubeconfig_path = args.write_kubeconfig.unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    config.write_kubeconfig = Some(kubeconfig_path.clone());

    // Signals are caught from the start, so a SIGTERM during start-up also shuts down cleanly.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = CancellationToken::new();
    let server = tokio::select! {
        started = ApiServer::start(config, store, shutdown.clone()) => started?,
        _ = term.recv() => {
            tracing::info!("SIGTERM during start-up: exiting");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let controllers = if args.disable_controllers {
        None
    } else {
        let client = client_for(&server.kubeconfig).await.context("a client for the controllers")?;
        let options = skiff_controllers::Options {
            cluster_cidr: args.cluster_cidr,
            node_lifecycle: args.node_lifecycle.options(),
            identity: Some(format!("{} {}", hostname(), args.data_dir.display())),
        };
        Some(tokio::spawn(skiff_controllers::run(client, options, shutdown.clone())))
    };
    let agent = if args.disable_agent {
        None
    } else {
        let client = client_for(&server.kubeconfig).await.context("a client for the node agent")?;
        let agent_config = AgentSettings {
            node_name: args.node_name.clone(),
            node_ip: args.node_ip.unwrap_or(server.state.config.advertise_address),
            dir: args.data_dir.join("agent"),
            cluster_dns: args.cluster_dns,
            cluster_domain: server.state.config.cluster_domain.clone(),
            resolv_conf: args.resolv_conf.clone(),
            agent_port: 10250,
            control_plane: true,
            serving: skiff_agent::ServingCert::SignedWithCaIn(args.data_dir.join("tls")),
            token: skiff_join::stream_token(&server.state.join_secret),
            cluster_cidr: args.cluster_cidr,
            service_cidr: args.service_cidr,
            proxy: !args.disable_proxy,
            heartbeat: args.node_status_update_frequency,
        }
        .into_config()?;
        let token = shutdown.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = skiff_agent::run(client, agent_config, token).await {
                tracing::error!(error = format!("{e:#}"), "the node agent stopped");
            }
        }))
    };
    println!("Skiff API server is ready at https://{}", server.local_addr);
    println!("Point kubectl at it with:\n  export KUBECONFIG={}", kubeconfig_path.display());
    let token_path = args.data_dir.join("node-token");
    write_secret(&token_path, &server.state.join_token())
        .with_context(|| format!("writing {}", token_path.display()))?;
    println!(
        "Join another machine as a node with the token in {}:\n  skiff agent --server https://{}:{} --token <token>",
        token_path.display(),
        server.state.config.advertise_address,
        server.local_addr.port(),
    );

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
    if let Some(controllers) = controllers {
        let _ = controllers.await;
    }
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    server.stopped().await;
    Ok(ExitCode::SUCCESS)
}

/// What an agent needs to know, from either `skiff server` or `skiff agent`.
struct AgentSettings {
    node_name: Option<String>,
    node_ip: IpAddr,
    dir: PathBuf,
    cluster_dns: IpAddr,
    cluster_domain: String,
    resolv_conf: PathBuf,
    agent_port: u16,
    control_plane: bool,
    serving: skiff_agent::ServingCert,
    token: String,
    cluster_cidr: ipnet::Ipv4Net,
    service_cidr: ipnet::Ipv4Net,
    proxy: bool,
    heartbeat: Duration,
}

impl AgentSettings {
    fn into_config(self) -> anyhow::Result<skiff_agent::AgentConfig> {
        let node_name = self.node_name.unwrap_or_else(hostname);
        Ok(skiff_agent::AgentConfig {
            node_name,
            node_ip: self.node_ip,
            dir: self.dir,
            cluster_dns: self.cluster_dns.to_string(),
            cluster_domain: self.cluster_domain,
            resolv_conf: self.resolv_conf,
            agent_port: self.agent_port,
            control_plane: self.control_plane,
            shim_exe: std::env::current_exe().context("locating the skiff binary")?,
            serving: self.serving,
            token: self.token,
            cluster_cidr: self.cluster_cidr,
            service_cidr: self.service_cidr,
            proxy: self.proxy,
            heartbeat: self.heartbeat,
            thread_start: None,
        })
    }
}

async fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let node_ip = args.node_ip.unwrap_or_else(default_route_address);
    let (client_config, stream_token, serving, dir) = match (&args.server, &args.token) {
        (Some(server), Some(token)) => {
            let joined = join::join(server, token, &node_name, node_ip).await?;
            let dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/skiff/agent"));
            let serving = skiff_agent::ServingCert::Issued { cert: joined.serving_cert, key: joined.serving_key };
            (joined.config, joined.stream_token, serving, dir)
        }
        _ => {
            let (Some(kubeconfig), Some(server_data_dir)) = (&args.kubeconfig, &args.server_data_dir) else {
                eprintln!(
                    "skiff: agent: give --server and --token to join a cluster (or --kubeconfig and --server-data-dir)"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            let tls_dir = server_data_dir.join("tls");
            let path = tls_dir.join("join.secret");
            let secret = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string();
            let dir = args.data_dir.clone().unwrap_or_else(|| server_data_dir.join("agent"));
            let serving = skiff_agent::ServingCert::SignedWithCaIn(tls_dir);
            (config_from(Some(kubeconfig.clone())).await?, skiff_join::stream_token(&secret), serving, dir)
        }
    };
    let config = AgentSettings {
        node_name: Some(node_name),
        node_ip,
        dir,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        resolv_conf: args.resolv_conf,
        agent_port: args.agent_port,
        control_plane: false,
        serving,
        token: stream_token,
        cluster_cidr: args.cluster_cidr,
        service_cidr: args.service_cidr,
        proxy: !args.disable_proxy,
        heartbeat: args.node_status_update_frequency,
    }
    .into_config()?;
    let config = skiff_agent::AgentConfig { thread_start: Some(allocator::lean_thread), ..config };
    let client = client::build(client_config)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(skiff_agent::run(client, config, shutdown.clone()));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
    run.await.context("the node agent panicked")??;
    Ok(ExitCode::SUCCESS)
}

async fn explain_service(args: ExplainServiceArgs) -> anyhow::Result<ExitCode> {
    let home_config = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"));
    let path = args.kubeconfig.or_else(|| {
        let inferred = std::env::var_os("KUBECONFIG").is_some() || home_config.is_some_and(|c| c.exists());
        Some(args.data_dir.join("kubeconfig.yaml")).filter(|server| !inferred && server.exists())
    });
    let config = config_from(path).await?;
    let namespace = args.namespace.unwrap_or_else(|| config.default_namespace.clone());
    let client = client::build(config)?;
    let objects = match skiff_explain::fetch(&client, &namespace, &args.name).await {
        Ok(objects) => objects,
        Err(e) => match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => anyhow::bail!("{}", status.message),
            _ => return Err(e),
        },
    };
    let table = skiff_proxy::TABLE;
    let report = skiff_explain::report(&objects, &args.cluster_domain, &mut |port| {
        skiff_proxy::inspect::programmed(table, port).map_err(|e| e.to_string())
    });
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`, readable by its owner only.
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

/// The client configuration from the kubeconfig at `path`, or kube-rs's inference ($KUBECONFIG, ~/.kube/config,
/// in-cluster) without one.
async fn config_from(path: Option<PathBuf>) -> anyhow::Result<kube::Config> {
    Ok(match path {
        Some(path) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

/// A kube-rs client from a kubeconfig document.
async fn client_for(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    client::build(config)
}

async fn controllers(args: ControllersArgs) -> anyhow::Result<ExitCode> {
    let client = client::build(config_from(args.kubeconfig).await?)?;
    let shutdown = CancellationToken::new();
    let known = skiff_controllers::names();
    let only: Vec<&'static str> = if args.controllers.is_empty() {
        known.clone()
    } else {
        let mut only = Vec::new();
        for name in &args.controllers {
            match known.iter().find(|k| **k == name.as_str()) {
                Some(k) => only.push(*k),
                None => {
                    eprintln!("skiff: --controllers: unknown controller {name:?}; known: {}", known.join(","));
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
        only
    };
    let token = shutdown.clone();
    let options = skiff_controllers::Options {
        cluster_cidr: args.cluster_cidr,
        node_lifecycle: args.node_lifecycle.options(),
        identity: None,
    };
    let running = tokio::spawn(async move { skiff_controllers::run_only(client, options, &only, token).await });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
    let _ = running.await;
    Ok(ExitCode::SUCCESS)
}

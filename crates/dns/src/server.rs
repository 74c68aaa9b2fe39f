//! The DNS server's request handler, which answers names of the cluster zone from memory and forwards the
//! rest, and hickory's TCP listener for it (UDP is [`crate::udp`]'s, which truncates an answer to the client's
//! EDNS payload size, or 512 bytes without EDNS, so that the client asks again over TCP).

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::cache::AnswerCache;
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::udp::UdpListener;
use crate::zone::Zone;

/// The zone, shared between the watches that fill it and the server that reads it.
pub type SharedZone = Arc<RwLock<Zone>>;

/// How long a TCP connection may idle between questions.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A reply before it is encoded.
struct Reply {
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    additionals: Vec<Record>,
    soa: Option<Record>,
}

/// Answers from the zone, forwards the rest.
#[derive(Clone)]
pub struct Handler {
    zone: SharedZone,
    forwarder: Option<Forwarder>,
    metrics: Metrics,
}

impl Handler {
    /// A handler over `zone`, forwarding through `forwarder` (none: names outside the zone are SERVFAIL).
    pub fn new(zone: SharedZone, forwarder: Option<Forwarder>) -> Handler {
        Handler { zone, forwarder, metrics: Metrics::get() }
    }

    fn zone_answer(&self, name: &Name, qtype: RecordType) -> Option<crate::zone::Answer> {
        self.zone.read().unwrap_or_else(PoisonError::into_inner).lookup(name, qtype)
    }

    async fn forward(&self, name: &Name, qtype: RecordType) -> Reply {
        self.metrics.forwarded.inc();
        let forwarded = match &self.forwarder {
            Some(forwarder) => forwarder.lookup(name, qtype).await,
            None => crate::forward::Forwarded { code: ResponseCode::ServFail, answers: Vec::new() },
        };
        Reply {
            code: forwarded.code,
            authoritative: false,
            answers: forwarded.answers,
            additionals: Vec::new(),
            soa: None,
        }
    }

    async fn reply(&self, name: &Name, qtype: RecordType) -> Reply {
        let Some(mut answer) = self.zone_answer(name, qtype) else { return self.forward(name, qtype).await };
        self.metrics.from_zone.inc();
        if let Some(target) = answer.chase.take() {
            // An ExternalName: the target's addresses, from the zone when it is a cluster name.
            let chased = match self.zone_answer(&target, qtype) {
                Some(inside) => inside.answers,
                None => self.forward(&target, qtype).await.answers,
            };
            answer.answers.extend(chased);
        }
        Reply {
            code: answer.code,
            authoritative: true,
            answers: answer.answers,
            additionals: answer.additionals,
            soa: answer.soa,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let began = Instant::now();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns.set_version(0);
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let query =
            request.request_info().ok().map(|info| (Name::from(info.query.name().clone()), info.query.query_type()));
        let (qtype, sent) = match query {
            Some((name, qtype))
                if request.metadata.op_code == OpCode::Query && request.metadata.message_type == MessageType::Query =>
            {
                let reply = self.reply(&name, qtype).await;
                metadata.response_code = reply.code;
                metadata.authoritative = reply.authoritative;
                let response =
                    builder.build(metadata, reply.answers.iter(), [], reply.soa.iter(), reply.additionals.iter());
                (Some(qtype), handle.send_response(response).await)
            }
            Some(_) => {
                metadata.response_code = ResponseCode::NotImp;
                (None, handle.send_response(builder.build_no_records(metadata)).await)
            }
            None => {
                metadata.response_code = ResponseCode::FormErr;
                (None, handle.send_response(builder.build_no_records(metadata)).await)
            }
        };
        let info = sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "sending a DNS response failed");
            let mut failed = Metadata::response_from_request(&request.metadata);
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata: failed, counts: HeaderCounts::default() })
        });
        self.metrics.answered(qtype, info.response_code, began.elapsed());
        info
    }
}

/// The DNS server's listeners on UDP and TCP.
pub struct Listeners {
    tcp: Server<Handler>,
    udp: UdpListener,
    stop: CancellationToken,
}

impl Listeners {
    /// Stops both listeners and waits for them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = self.tcp.shutdown_gracefully().await;
        let udp = self.udp;
        let _ = tokio::task::spawn_blocking(move || udp.join()).await;
    }
}

/// Serves `zone` on UDP (one socket per core) and TCP at `address`, forwarding other names through
/// `forwarder`, until `stop` fires (then call [`Listeners::shutdown`]); each UDP thread calls `thread_start` first.
pub async fn serve(
    address: SocketAddr,
    zone: SharedZone,
    forwarder: Option<Forwarder>,
    thread_start: Option<fn()>,
    stop: CancellationToken,
) -> std::io::Result<Listeners> {
    let generation = zone.read().unwrap_or_else(PoisonError::into_inner).generation();
    let cache = Arc::new(AnswerCache::new(generation));
    let handler = Handler::new(zone, forwarder);
    let mut tcp = Server::new(handler.clone());
    tcp.register_listener(TcpListener::bind(address).await?, TCP_IDLE, 32);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let udp = crate::udp::listen(address, threads, Arc::new(handler), cache, thread_start, stop.clone())?;
    Ok(Listeners { tcp, udp, stop })
}

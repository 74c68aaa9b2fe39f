//! The UDP listener: one socket per core on the same address (`SO_REUSEPORT`, so the kernel spreads clients
//! over them), each read by a thread of its own that takes every question waiting (up to a batch, one
//! `recvmmsg`), answers the repeated ones from the [`AnswerCache`] straight away and sends those answers
//! together (one `sendmmsg`). Only then do the batch's other questions go to the [`Handler`], the same one TCP
//! uses, so that quick answers never wait for slow ones: it is polled on the socket's thread first, which
//! finishes every question the zone answers without a hop to another thread, and only a question that has to
//! wait (for upstream) moves to the runtime. Its encoded answer is sent from wherever it finishes, and kept in
//! the cache when it may be reused.
//!
//! Hand-written here, and why: hickory's UDP server hands every datagram to a task of its own and encodes
//! every answer afresh, which costs about half the throughput of a C server; the [`AnswerCache`] and the
//! per-core threads are what that takes back.

use std::future::Future;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::ProtoError;
use hickory_proto::op::{Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio_util::sync::CancellationToken;

use crate::cache::{self, AnswerCache, HEADER};
use crate::metrics::Metrics;
use crate::server::Handler;

/// How often a socket's thread looks at the stop signal while no question arrives.
const STOP_POLL: Duration = Duration::from_millis(200);
/// The largest datagram read (a question is far smaller; a longer one is cut and answered FORMERR).
const DATAGRAM: usize = 4096;

/// The socket threads; they stop when the token passed to [`listen`] fires.
pub struct UdpListener {
    threads: Vec<JoinHandle<()>>,
}

impl UdpListener {
    /// Waits for every socket thread to finish (after the stop signal).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// What every socket thread shares.
struct Shared {
    handler: Arc<Handler>,
    cache: Arc<AnswerCache>,
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
}

/// Binds `threads` sockets to `address` and starts reading them, each thread calling `thread_start` first;
/// must be called inside the tokio runtime.
pub fn listen(
    address: SocketAddr,
    threads: usize,
    handler: Arc<Handler>,
    cache: Arc<AnswerCache>,
    thread_start: Option<fn()>,
    stop: CancellationToken,
) -> std::io::Result<UdpListener> {
    let shared =
        Arc::new(Shared { handler, cache, runtime: tokio::runtime::Handle::current(), metrics: Metrics::get() });
    let sockets = (0..threads.max(1)).map(|_| bind(address)).collect::<std::io::Result<Vec<_>>>()?;
    let threads = sockets
        .into_iter()
        .enumerate()
        .map(|(n, socket)| {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new().name(format!("dns-udp-{n}")).spawn(move || {
                if let Some(start) = thread_start {
                    start();
                }
                serve(&socket, &shared, &stop)
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(UdpListener { threads })
}

fn bind(address: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::DGRAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.set_read_timeout(Some(STOP_POLL))?;
    Ok(Arc::new(socket.into()))
}

/// One socket's loop: take the questions waiting (up to a batch, in one system call), answer each repeated one
/// from the cache and send those answers together (one more call), and hand the others to the handler.
fn serve(socket: &Arc<UdpSocket>, shared: &Arc<Shared>, stop: &CancellationToken) {
    let _runtime = shared.runtime.enter();
    let mut batch = Batch::new();
    let mut key = Vec::with_capacity(DATAGRAM);
    while !stop.is_cancelled() {
        if let Err(e) = batch.receive(socket) {
            if !matches!(e, Errno::EAGAIN | Errno::EINTR) {
                tracing::debug!(error = %e, "reading DNS questions failed");
            }
            continue;
        }
        let began = Instant::now();
        // Cached answers first, sent together; then the questions the cache lacks, so that a batch's quick
        // answers never wait for its slow ones.
        for (n, &(length, source)) in batch.received.iter().enumerate() {
            let request = &batch.datagrams[n * DATAGRAM..][..length];
            // Shorter than a header, a response, or from port 0: not a question to answer.
            let Some(source) = source.filter(|s| s.port() != 0) else { continue };
            if length < HEADER || request[2] & 0x80 != 0 {
                continue;
            }
            let start = batch.answers.len();
            if let Some(end) = cache::request_key(request, &mut key)
                && shared.cache.answer(request, end, &key, &mut batch.answers)
            {
                batch.replies.push(start..batch.answers.len());
                batch.destinations.push(Some(source.into()));
            } else {
                batch.misses.push((n, source));
            }
        }
        let answered = batch.send(socket);
        let elapsed = began.elapsed().as_secs_f64();
        for _ in 0..answered {
            shared.metrics.duration.observe(elapsed);
        }
        for &(n, source) in &batch.misses {
            let request = &batch.datagrams[n * DATAGRAM..][..batch.received[n].0];
            let question = cache::request_key(request, &mut key);
            let reply = Reply {
                socket: socket.clone(),
                destination: source,
                keep: question.map(|_| (key.as_slice().into(), shared.cache.generation())),
                // The name: the question less its type and class.
                question_name: question.map(|end| request[HEADER..end - 4].into()),
                cache: shared.cache.clone(),
            };
            answer(shared, request.to_vec(), reply, began);
        }
    }
}

/// Datagrams read, and cached answers sent, per system call (`recvmmsg`, `sendmmsg`, as Knot and Unbound do):
/// with many clients questions queue faster than a `recvfrom` each takes them, and a call costs about the same
/// for one datagram as for a batch.
const BATCH: usize = 16;

/// One socket thread's buffers for a batch: the questions read and the cached answers to send.
struct Batch {
    /// `BATCH` slots of `DATAGRAM` bytes.
    datagrams: Vec<u8>,
    /// Each slot read: its length and sender.
    received: Vec<(usize, Option<SocketAddr>)>,
    /// The cached answers, one after another: where each lies in `answers` and where it goes.
    answers: Vec<u8>,
    replies: Vec<std::ops::Range<usize>>,
    destinations: Vec<Option<SockaddrStorage>>,
    /// The questions the cache had no answer for (their slot and sender), answered after the cached ones go.
    misses: Vec<(usize, SocketAddr)>,
    receive_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    fn new() -> Self {
        Self {
            datagrams: vec![0; BATCH * DATAGRAM],
            received: Vec::with_capacity(BATCH),
            answers: Vec::with_capacity(BATCH * 512),
            replies: Vec::with_capacity(BATCH),
            destinations: Vec::with_capacity(BATCH),
            misses: Vec::with_capacity(BATCH),
            receive_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Waits (up to the socket's read timeout) for a question, then takes every one waiting, up to a batch.
    fn receive(&mut self, socket: &UdpSocket) -> nix::Result<()> {
        self.received.clear();
        self.answers.clear();
        self.replies.clear();
        self.destinations.clear();
        self.misses.clear();
        let mut slots: Vec<[IoSliceMut<'_>; 1]> =
            self.datagrams.chunks_mut(DATAGRAM).map(|slot| [IoSliceMut::new(slot)]).collect();
        let read =
            recvmmsg(socket.as_raw_fd(), &mut self.receive_headers, slots.iter_mut(), MsgFlags::MSG_WAITFORONE, None)?;
        self.received.extend(read.map(|message| (message.bytes, message.address.and_then(socket_address))));
        Ok(())
    }

    /// Sends the cached answers, skipping any the kernel refuses (the client asks again); returns how many went.
    fn send(&mut self, socket: &UdpSocket) -> usize {
        let (mut from, mut sent) = (0, 0);
        while from < self.replies.len() {
            let slices: Vec<[IoSlice<'_>; 1]> =
                self.replies[from..].iter().map(|range| [IoSlice::new(&self.answers[range.clone()])]).collect();
            let no_control: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                socket.as_raw_fd(),
                &mut self.send_headers,
                slices.iter(),
                &self.destinations[from..],
                no_control,
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let count = results.count();
                    sent += count;
                    from += count.max(1);
                }
                Err(e) => {
                    let destination = self.destinations[from].map(|d| d.to_string()).unwrap_or_default();
                    tracing::debug!(error = %e, %destination, "sending a DNS answer failed");
                    from += 1;
                }
            }
        }
        sent
    }
}

/// The sender of a datagram as a standard address.
fn socket_address(address: SockaddrStorage) -> Option<SocketAddr> {
    address
        .as_sockaddr_in()
        .map(|&v4| SocketAddr::from(v4))
        .or_else(|| address.as_sockaddr_in6().map(|&v6| SocketAddr::from(v6)))
}

/// Answers a question the cache did not have: on this thread when the handler finishes at once, on the runtime
/// when it has to wait.
fn answer(shared: &Shared, request: Vec<u8>, reply: Reply, began: Instant) {
    let Ok(header) = Header::read(&mut BinDecoder::new(&request)) else { return };
    let request = match Request::from_bytes(request, reply.destination, Protocol::Udp) {
        Ok(request) => request,
        Err(e) => return format_error(shared, &reply, &header, e, began),
    };
    let handler = shared.handler.clone();
    let mut task = Box::pin(async move {
        handler.handle_request::<_, TokioTime>(&request, reply).await;
    });
    if task.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
        shared.runtime.spawn(task);
    }
}

/// The answer to a question hickory could not read past its header: FORMERR.
fn format_error(shared: &Shared, reply: &Reply, header: &Header, error: impl std::fmt::Display, began: Instant) {
    tracing::debug!(%error, "an unreadable DNS question");
    if let Ok(bytes) = Message::error_msg(header.id, header.op_code, ResponseCode::FormErr).to_vec() {
        send(&reply.socket, &bytes, reply.destination);
    }
    shared.metrics.answered(None, ResponseCode::FormErr, began.elapsed());
}

/// Sends one datagram, ignoring failures (the client asks again).
fn send(socket: &UdpSocket, response: &[u8], destination: SocketAddr) {
    if let Err(e) = socket.send_to(response, destination) {
        tracing::debug!(error = %e, %destination, "sending a DNS answer failed");
    }
}

/// Where the handler's answer goes: back to the client, and into the cache under `keep` (the key and the zone's
/// generation before the lookup) when it may be reused.
#[derive(Clone)]
struct Reply {
    socket: Arc<UdpSocket>,
    destination: SocketAddr,
    keep: Option<(Box<[u8]>, u64)>,
    /// The question's name as the client wrote it (a single plain question only), which answers point back to.
    question_name: Option<Box<[u8]>>,
    cache: Arc<AnswerCache>,
}

/// Lets the names of an answer point back to the question's name (`name`, as the client wrote it, which the
/// response repeats at offset 12), by writing it where it will be and telling `encoder` where each of its
/// suffixes starts. hickory-server writes the question from the request's own bytes and registers them as one
/// run that ends past the type and class, which no name ever matches, so without this every answer repeats the
/// question's name in full: 35 more bytes in an answer to `<svc>.<ns>.svc.cluster.local`, on the wire and in
/// the cache.
fn point_back_to_question(encoder: &mut BinEncoder<'_>, name: &[u8]) -> Result<(), ProtoError> {
    encoder.emit_vec(&[0; HEADER])?;
    encoder.emit_vec(name)?;
    let labels_end = HEADER + name.len() - 1; // before the root label
    let mut at = HEADER;
    while at < labels_end {
        encoder.store_label_pointer(at, labels_end);
        at += 1 + usize::from(name[at - HEADER]);
    }
    encoder.set_offset(0);
    Ok(())
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        // Within the client's EDNS payload size, or the 512 bytes of RFC 1035 without EDNS: past it hickory
        // truncates and sets TC, and the client asks again over TCP.
        let limit = response.edns().map_or(512, |edns| edns.max_payload().max(512));
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        if let Some(name) = &self.question_name {
            point_back_to_question(&mut encoder, name)?;
        }
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "encoding a DNS answer failed");
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header { metadata, counts: Default::default() };
                header.emit(&mut BinEncoder::new(&mut bytes))?;
                ResponseInfo::from(header)
            }
        };
        send(&self.socket, &bytes, self.destination);
        if let Some((key, generation)) = self.keep.take() {
            self.cache.insert(&key, generation, &bytes);
        }
        Ok(info)
    }
}

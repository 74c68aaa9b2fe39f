//! Element changes straight to the kernel: one nfnetlink batch (`NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM`
//! between a batch begin and end, so all of it commits or none of it does), for updates that only add and remove
//! elements of existing sets and maps — an endpoint replaced, a NodePort moved, an address added. This is the
//! common change, and the one that must be fast: every `nft` run first reads back the kernel's whole ruleset, which
//! at 10,000 Services is most of a change's cost, while the kernel itself commits an element change in a
//! millisecond or two (`docs/benchmarks.md`). Written by hand because no maintained crate writes nftables map
//! elements with concatenated keys and data (`rustables` is GPL-3.0 and writes set keys only; `nftnl` wraps
//! libnftnl without map data); the format is the kernel's `nf_tables.h` uapi.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

use crate::model::Protocol;
use crate::ruleset::{Data, ElementChange, Key};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NF_DROP: i32 = 0;
const NFT_GOTO: i32 = -4;
/// How long the kernel may take to answer a batch, in seconds.
const ANSWER_TIMEOUT_SECS: i64 = 5;

/// A batch of netlink messages being written.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// Messages that asked for an acknowledgement.
    acked: usize,
}

impl Batch {
    fn new() -> Batch {
        let mut batch = Batch { buf: Vec::new(), seq: 0, acked: 0 };
        batch.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        batch
    }

    /// Appends one message: header, `nfgenmsg` and whatever `body` writes.
    fn message(&mut self, type_: u16, flags: u16, family: u8, res_id: u16, body: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]); // length, filled in below
        self.buf.extend_from_slice(&type_.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        body(&mut self.buf);
        let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        self.seq += 1;
        if flags & NLM_F_ACK != 0 {
            self.acked += 1;
        }
    }

    fn finish(mut self) -> (Vec<u8>, usize) {
        self.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        (self.buf, self.acked)
    }
}

/// Writes an attribute whose payload `body` writes, padded to four bytes.
fn attr(buf: &mut Vec<u8>, type_: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 2]);
    buf.extend_from_slice(&type_.to_ne_bytes());
    body(buf);
    let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn string_attr(buf: &mut Vec<u8>, type_: u16, s: &str) {
    attr(buf, type_, |b| {
        b.extend_from_slice(s.as_bytes());
        b.push(0);
    });
}

fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// One field of a concatenation: its bytes in network order, zero-padded to a 32-bit register as nftables lays
/// concatenations out.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A key as the kernel stores it.
fn key_bytes(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    match *key {
        Key::Address(ip) => field(&mut out, &ip.octets()),
        Key::Destination(ip, protocol, port) => {
            field(&mut out, &ip.octets());
            field(&mut out, &[protocol_number(protocol)]);
            field(&mut out, &port.to_be_bytes());
        }
        Key::NodePort(protocol, port) => {
            field(&mut out, &[protocol_number(protocol)]);
            field(&mut out, &port.to_be_bytes());
        }
        Key::Pair(a, b) => {
            field(&mut out, &a.octets());
            field(&mut out, &b.octets());
        }
        // `numgen` writes its result to the register in host byte order.
        Key::Slot(slot) => field(&mut out, &slot.to_ne_bytes()),
    }
    out
}

fn endpoint_bytes(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    field(&mut out, &ip.octets());
    field(&mut out, &port.to_be_bytes());
    out
}

fn data_attr(buf: &mut Vec<u8>, data: &Data) {
    attr(buf, NFTA_SET_ELEM_DATA | NLA_F_NESTED, |b| match data {
        Data::Endpoint(ip, port) => attr(b, NFTA_DATA_VALUE, |v| v.extend_from_slice(&endpoint_bytes(*ip, *port))),
        Data::Drop | Data::Goto(_) => attr(b, NFTA_DATA_VERDICT | NLA_F_NESTED, |v| {
            let code = if matches!(data, Data::Drop) { NF_DROP } else { NFT_GOTO };
            attr(v, NFTA_VERDICT_CODE, |c| c.extend_from_slice(&code.to_be_bytes()));
            if let Data::Goto(chain) = data {
                string_attr(v, NFTA_VERDICT_CHAIN, chain);
            }
        }),
    });
}

/// The batch for `changes` in the `inet` table `table`: one message per run of changes to the same set in the
/// same direction, in order. Returns the bytes and how many acknowledgements to expect.
pub fn encode(table: &str, changes: &[ElementChange<'_>]) -> (Vec<u8>, usize) {
    let mut batch = Batch::new();
    for run in changes.chunk_by(|a, b| a.set == b.set && a.add == b.add) {
        let (type_, flags) = if run[0].add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        batch.message((NFNL_SUBSYS_NFTABLES << 8) | type_, flags, NFPROTO_INET, 0, |buf| {
            string_attr(buf, NFTA_SET_ELEM_LIST_TABLE, table);
            string_attr(buf, NFTA_SET_ELEM_LIST_SET, &run[0].set.to_string());
            attr(buf, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, |list| {
                for change in run {
                    attr(list, NFTA_LIST_ELEM | NLA_F_NESTED, |element| {
                        attr(element, NFTA_SET_ELEM_KEY | NLA_F_NESTED, |k| {
                            attr(k, NFTA_DATA_VALUE, |v| v.extend_from_slice(&key_bytes(&change.key)));
                        });
                        if let Some(data) = change.data.filter(|_| change.add) {
                            data_attr(element, data);
                        }
                    });
                }
            });
        });
    }
    batch.finish()
}

/// Sends a batch from [`encode`] and waits for the kernel to acknowledge every message; the first error it
/// reports fails the whole batch (the kernel has then applied none of it).
pub fn send_batch(batch: &[u8], acks: usize) -> io::Result<()> {
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(ANSWER_TIMEOUT_SECS, 0))?;
    let sent = send(fd.as_raw_fd(), batch, MsgFlags::empty())?;
    if sent != batch.len() {
        return Err(io::Error::other(format!("netlink took {sent} of {} bytes", batch.len())));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut acked = 0;
    while acked < acks {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
            let type_ = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
            if len < 16 || at + len > n {
                return Err(io::Error::other("a truncated netlink answer"));
            }
            if type_ == NLMSG_ERROR && len >= 20 {
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                acked += 1;
            }
            at += len.next_multiple_of(4);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::Container;

    #[test]
    fn a_batch_is_framed_and_every_element_message_asks_for_an_ack() {
        let endpoint = Data::Endpoint(Ipv4Addr::new(10, 42, 0, 4), 8080);
        let changes = [
            ElementChange { set: Container::Endpoints(Protocol::Tcp, 7), add: false, key: Key::Slot(1), data: None },
            ElementChange {
                set: Container::Endpoints(Protocol::Tcp, 7),
                add: true,
                key: Key::Slot(1),
                data: Some(&endpoint),
            },
        ];
        let (bytes, acks) = encode("skiff", &changes);
        assert_eq!(acks, 2);
        let mut types = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
            types.push(u16::from_ne_bytes(bytes[at + 4..at + 6].try_into().unwrap_or_default()));
            assert_eq!(len % 4, 0, "messages are aligned");
            at += len;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(types, [NFNL_MSG_BATCH_BEGIN, 0x0a0e, 0x0a0c, NFNL_MSG_BATCH_END]);
        // The begin message names the nftables subsystem, in network order.
        assert_eq!(&bytes[18..20], &[0, 10]);
    }

    #[test]
    fn keys_and_endpoints_are_laid_out_in_registers() {
        let ip = Ipv4Addr::new(10, 43, 0, 10);
        assert_eq!(key_bytes(&Key::Destination(ip, Protocol::Udp, 53)), [10, 43, 0, 10, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(key_bytes(&Key::NodePort(Protocol::Tcp, 30080)), [6, 0, 0, 0, 0x75, 0x80, 0, 0]);
        assert_eq!(endpoint_bytes(ip, 8080), [10, 43, 0, 10, 0x1f, 0x90, 0, 0]);
        assert_eq!(key_bytes(&Key::Slot(2)), 2u32.to_ne_bytes());
    }
}

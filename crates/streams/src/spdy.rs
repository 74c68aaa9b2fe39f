//! The subset of SPDY/3.1 that `kubectl port-forward` speaks (moby/spdystream on the client side): frame
//! encoding and decoding, and the zlib-compressed header blocks with the SPDY/3 preset dictionary.
//!
//! Header blocks of each direction form ONE continuous zlib stream, flushed with `Z_SYNC_FLUSH` after every
//! block, so an [`Encoder`] and a [`Decoder`] live as long as the connection and see every header block in order
//! (including those of frames the session ignores, such as `HEADERS`).

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

mod dictionary;

pub use dictionary::dictionary;

pub const FLAG_FIN: u8 = 0x01;
pub const VERSION: u16 = 3;
/// `RST_STREAM` status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;
/// The largest payload a frame's 24-bit length can carry.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading the stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header block: {0}")]
    Compression(String),
}

pub type Headers = Vec<(String, String)>;

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame type this subset does not know (`NOOP`, `CREDENTIAL`): skipped.
    Unknown {
        kind: u16,
    },
}

/// Looks up a header (names are lowercase on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses frames from bytes; owns the inbound header decompressor.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self { inflate: Decompress::new(true) }
    }

    /// Reads one frame; `None` at a clean end of stream between frames.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        let mut filled = 0;
        while filled < head.len() {
            let n = io.read(&mut head[filled..]).await?;
            if n == 0 {
                return if filled == 0 {
                    Ok(None)
                } else {
                    Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
                };
            }
            filled += n;
        }
        let len = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await?;
        self.decode(head, payload).map(Some)
    }

    fn decode(&mut self, head: [u8; 8], payload: Vec<u8>) -> Result<Frame, SpdyError> {
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let stream_id = be32(&head[..4]) & 0x7fff_ffff;
            return Ok(Frame::Data { stream_id, fin, data: Bytes::from(payload) });
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let p = payload.as_slice();
        let need = |n: usize, what: &'static str| if p.len() < n { Err(SpdyError::Malformed(what)) } else { Ok(()) };
        Ok(match kind {
            1 => {
                need(10, "SYN_STREAM")?;
                let headers = self.headers(&p[10..])?;
                Frame::SynStream {
                    stream_id: be32(p) & 0x7fff_ffff,
                    associated_to: be32(&p[4..]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    fin,
                    headers,
                }
            }
            2 => {
                need(4, "SYN_REPLY")?;
                Frame::SynReply { stream_id: be32(p) & 0x7fff_ffff, fin, headers: self.headers(&p[4..])? }
            }
            3 => {
                need(8, "RST_STREAM")?;
                Frame::RstStream { stream_id: be32(p) & 0x7fff_ffff, status: be32(&p[4..]) }
            }
            4 => Frame::Settings,
            6 => {
                need(4, "PING")?;
                Frame::Ping { id: be32(p) }
            }
            7 => {
                need(4, "GOAWAY")?;
                let status = if p.len() >= 8 { be32(&p[4..]) } else { 0 };
                Frame::GoAway { last_good_stream_id: be32(p) & 0x7fff_ffff, status }
            }
            8 => {
                need(4, "HEADERS")?;
                Frame::Headers { stream_id: be32(p) & 0x7fff_ffff, fin, headers: self.headers(&p[4..])? }
            }
            9 => {
                need(8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate { stream_id: be32(p) & 0x7fff_ffff, delta: be32(&p[4..]) & 0x7fff_ffff }
            }
            other => Frame::Unknown { kind: other },
        })
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        if block.is_empty() {
            return Ok(Vec::new());
        }
        let raw = self.inflate_block(block)?;
        parse_header_block(&raw)
    }

    fn inflate_block(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inflate.total_in();
            let result = self.inflate.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += usize::try_from(self.inflate.total_in() - before).unwrap_or(0);
            match result {
                Ok(flate2::Status::StreamEnd) => break,
                Ok(_) if pos >= input.len() && out.len() < out.capacity() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary()).map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
        }
        Ok(out)
    }
}

fn parse_header_block(raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Malformed("header block");
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let slice = raw.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        Ok(slice)
    };
    let count = be32(take(4)?) as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let klen = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(klen)?).to_ascii_lowercase();
        let vlen = be32(take(4)?) as usize;
        // Several values of one header are separated by NUL bytes; the first is what the session needs.
        let value = String::from_utf8_lossy(take(vlen)?).split('\0').next().unwrap_or_default().to_string();
        headers.push((name, value));
    }
    Ok(headers)
}

/// Serializes frames; owns the outbound header compressor.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Peers inflate with the dictionary; announcing it keeps strict decoders happy.
        let _ = deflate.set_dictionary(dictionary());
        Self { deflate }
    }

    /// The wire bytes of `frame` (data longer than [`MAX_PAYLOAD`] must be split by the caller).
    pub fn encode(&mut self, frame: &Frame) -> Result<Bytes, SpdyError> {
        let mut out = BytesMut::new();
        match frame {
            Frame::Data { stream_id, fin, data } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                put_flags_len(&mut out, *fin, data.len());
                out.put_slice(data);
            }
            Frame::SynStream { stream_id, associated_to, priority, fin, headers } => {
                let block = self.compress(headers)?;
                control(&mut out, 1, *fin, 10 + block.len());
                out.put_u32(*stream_id);
                out.put_u32(*associated_to);
                out.put_u8(priority << 5);
                out.put_u8(0);
                out.put_slice(&block);
            }
            Frame::SynReply { stream_id, fin, headers } => {
                let block = self.compress(headers)?;
                control(&mut out, 2, *fin, 4 + block.len());
                out.put_u32(*stream_id);
                out.put_slice(&block);
            }
            Frame::Headers { stream_id, fin, headers } => {
                let block = self.compress(headers)?;
                control(&mut out, 8, *fin, 4 + block.len());
                out.put_u32(*stream_id);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(&mut out, 3, false, 8);
                out.put_u32(*stream_id);
                out.put_u32(*status);
            }
            Frame::Settings => {
                control(&mut out, 4, false, 4);
                out.put_u32(0);
            }
            Frame::Ping { id } => {
                control(&mut out, 6, false, 4);
                out.put_u32(*id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                control(&mut out, 7, false, 8);
                out.put_u32(*last_good_stream_id);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(&mut out, 9, false, 8);
                out.put_u32(*stream_id);
                out.put_u32(*delta);
            }
            Frame::Unknown { .. } => return Err(SpdyError::Malformed("unknown")),
        }
        Ok(out.freeze())
    }

    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = BytesMut::new();
        raw.put_u32(u32::try_from(headers.len()).map_err(|_| SpdyError::Malformed("header block"))?);
        for (name, value) in headers {
            for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                raw.put_u32(u32::try_from(part.len()).map_err(|_| SpdyError::Malformed("header block"))?);
                raw.put_slice(part);
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            pos += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            if pos >= raw.len() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }
}

fn control(out: &mut BytesMut, kind: u16, fin: bool, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    put_flags_len(out, fin, len);
}

fn put_flags_len(out: &mut BytesMut, fin: bool, len: usize) {
    out.put_u8(if fin { FLAG_FIN } else { 0 });
    let len = len.min(MAX_PAYLOAD);
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(enc: &mut Encoder, dec: &mut Decoder, frame: Frame) -> Frame {
        let bytes = enc.encode(&frame).unwrap();
        let mut io = bytes.as_ref();
        dec.read(&mut io).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn frames_survive_encoding_and_decoding() {
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let headers: Headers = vec![("streamtype".into(), "data".into()), ("port".into(), "8080".into())];
        for frame in [
            Frame::SynStream { stream_id: 3, associated_to: 0, priority: 0, fin: false, headers: headers.clone() },
            // A second block on the same zlib stream must still decode (continuous compression context).
            Frame::SynStream { stream_id: 5, associated_to: 0, priority: 2, fin: true, headers: headers.clone() },
            Frame::SynReply { stream_id: 3, fin: false, headers: vec![] },
            Frame::Data { stream_id: 3, fin: true, data: Bytes::from_static(b"hello") },
            Frame::Ping { id: 7 },
            Frame::RstStream { stream_id: 3, status: RST_CANCEL },
            Frame::GoAway { last_good_stream_id: 5, status: 0 },
            Frame::WindowUpdate { stream_id: 1, delta: 65536 },
        ] {
            assert_eq!(roundtrip(&mut enc, &mut dec, frame.clone()).await, frame);
        }
    }

    #[test]
    fn wire_layout_matches_the_spec() {
        let mut enc = Encoder::new();
        let ping = enc.encode(&Frame::Ping { id: 0x0102_0304 }).unwrap();
        assert_eq!(ping.as_ref(), &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4]);
        let data = enc.encode(&Frame::Data { stream_id: 1, fin: true, data: Bytes::from_static(b"ab") }).unwrap();
        assert_eq!(data.as_ref(), &[0, 0, 0, 1, FLAG_FIN, 0, 0, 2, b'a', b'b']);
        // A header block starts with a zlib header that announces the preset dictionary (FDICT bit).
        let reply = enc.encode(&Frame::SynReply { stream_id: 1, fin: false, headers: vec![] }).unwrap();
        assert_eq!(reply[12], 0x78);
        assert_ne!(reply[13] & 0x20, 0);
    }

    #[tokio::test]
    async fn truncated_frames_are_errors_and_clean_eof_is_none() {
        let mut dec = Decoder::new();
        let mut empty: &[u8] = &[];
        assert!(dec.read(&mut empty).await.unwrap().is_none());
        let mut partial: &[u8] = &[0x80, 0x03, 0x00];
        assert!(dec.read(&mut partial).await.is_err());
        let mut wrong_version: &[u8] = &[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(dec.read(&mut wrong_version).await, Err(SpdyError::Version(2))));
    }
}

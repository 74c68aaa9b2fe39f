//! Container logs in the CRI format, the one kubelet reads (`pkg/kubelet/kuberuntime/logs`):
//! `<RFC3339 timestamp> <stdout|stderr> <F|P> <content>\n`, where `P` marks a piece of a line longer than
//! [`MAX_LINE`] (or cut by the end of the stream) and `F` the last piece. The supervisor writes them with
//! [`CriWriter`]; [`read_logs`] turns them back into what `kubectl logs` prints.

mod read;

use std::io::Write;

use chrono::{DateTime, Utc};

pub use read::{LogOptions, read_logs, tail_start};

/// Longest piece of a line written as one log entry (containerd's default `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output of the process a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        }
    }
}

/// Formats a timestamp the way kubelet prints them (`RFC3339NanoFixed`: always nine fractional digits, UTC).
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// One parsed entry. `content` ends with `\n` for full lines and has none for partial ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<'a> {
    pub timestamp: DateTime<Utc>,
    pub stream: LogStream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (as read, with or without its trailing newline).
pub fn parse_line(line: &[u8]) -> Option<LogEntry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let timestamp = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    // Tags are `:`-separated for forward compatibility; the first says full or partial.
    let partial = parts.next()?.split(|b| *b == b':').next() == Some(b"P");
    let mut content = parts.next().unwrap_or_default();
    if partial && content.last() == Some(&b'\n') {
        content = &content[..content.len() - 1];
    }
    Some(LogEntry { timestamp, stream, partial, content })
}

/// Splits a process's output into CRI log entries. Bytes are buffered per stream until a newline arrives.
pub struct CriWriter<W: Write> {
    out: W,
    pending: [Vec<u8>; 2],
}

impl<W: Write> CriWriter<W> {
    pub fn new(out: W) -> Self {
        CriWriter { out, pending: [Vec::new(), Vec::new()] }
    }

    /// Adds output read from `stream`, writing every completed line (and every [`MAX_LINE`] piece).
    pub fn push(&mut self, stream: LogStream, data: &[u8], now: DateTime<Utc>) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.pending[stream.index()]);
        buf.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(nl) if nl <= MAX_LINE => {
                    self.entry(stream, false, &rest[..nl], now)?;
                    start += nl + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    self.entry(stream, true, &rest[..MAX_LINE], now)?;
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        buf.drain(..start);
        self.pending[stream.index()] = buf;
        Ok(())
    }

    /// Flushes what is left of `stream` at its end as a full line.
    pub fn finish(&mut self, stream: LogStream, now: DateTime<Utc>) -> std::io::Result<()> {
        let buf = std::mem::take(&mut self.pending[stream.index()]);
        if !buf.is_empty() {
            self.entry(stream, false, &buf, now)?;
        }
        Ok(())
    }

    fn entry(&mut self, stream: LogStream, partial: bool, content: &[u8], now: DateTime<Utc>) -> std::io::Result<()> {
        let tag = if partial { "P" } else { "F" };
        let mut line = format!("{} {} {tag} ", format_timestamp(now), stream.as_str()).into_bytes();
        line.extend_from_slice(content);
        line.push(b'\n');
        // One write per entry: the file is opened O_APPEND, so a reader never sees an interleaved line.
        self.out.write_all(&line)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("ts").with_timezone(&Utc)
    }

    #[test]
    fn writer_emits_full_lines_and_keeps_partial_until_newline() {
        let now = at("2026-01-01T00:00:00Z");
        let mut w = CriWriter::new(Vec::new());
        w.push(LogStream::Stdout, b"hello\nwor", now).expect("push");
        w.push(LogStream::Stderr, b"oops\n", now).expect("push");
        w.push(LogStream::Stdout, b"ld\n", now).expect("push");
        w.push(LogStream::Stdout, b"tail", now).expect("push");
        w.finish(LogStream::Stdout, now).expect("finish");
        let text = String::from_utf8(w.into_inner()).expect("utf8");
        assert_eq!(
            text,
            "2026-01-01T00:00:00.000000000Z stdout F hello\n\
             2026-01-01T00:00:00.000000000Z stderr F oops\n\
             2026-01-01T00:00:00.000000000Z stdout F world\n\
             2026-01-01T00:00:00.000000000Z stdout F tail\n"
        );
    }

    #[test]
    fn writer_splits_long_lines_into_partial_entries() {
        let now = Utc::now();
        let mut w = CriWriter::new(Vec::new());
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.push(b'\n');
        w.push(LogStream::Stdout, &data, now).expect("push");
        let out = w.into_inner();
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        let first = parse_line(lines[0]).expect("parse");
        let second = parse_line(lines[1]).expect("parse");
        assert!(first.partial && first.content.len() == MAX_LINE);
        assert!(!second.partial && second.content.len() == 10);
    }

    #[test]
    fn parse_reads_fields_and_accepts_short_fractions() {
        let e = parse_line(b"2016-10-06T00:17:09.6697942Z stderr F log content 2\n").expect("parse");
        assert_eq!(e.stream, LogStream::Stderr);
        assert!(!e.partial);
        assert_eq!(e.content, b"log content 2\n");
        assert_eq!(format_timestamp(e.timestamp), "2016-10-06T00:17:09.669794200Z");
        let p = parse_line(b"2016-10-06T00:17:09Z stdout P:x part\n").expect("parse");
        assert!(p.partial);
        assert_eq!(p.content, b"part");
        assert!(parse_line(b"2016-10-06T00:17:09Z stdin F x").is_none());
        assert!(parse_line(b"not a log line").is_none());
    }
}

//! `kubectl logs` over a CRI log file: tail, since, timestamps, byte limit and follow, as kubelet's
//! `ReadLogs` does them. Follow polls the file (kubelet uses inotify with a one-second forced check) and ends
//! once the container in [`LogOptions::state_dir`] is no longer running and the file is drained.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{format_timestamp, parse_line};
use crate::error::{Error, Result};
use crate::lifecycle::inspect;
use crate::spec::State;

const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The `PodLogOptions` that reach the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N lines of the file (`--tail`); negative or `None` means all.
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<DateTime<Utc>>,
    /// Prefix each entry with its RFC3339 timestamp (nine fractional digits) and a space.
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
    /// When following: stop at the end of the file once the container in this state directory is not running.
    /// `None` follows until the stream is dropped.
    pub state_dir: Option<PathBuf>,
}

/// Opens `log_path` and returns the stream of what `kubectl logs` prints: each entry's content (stdout and
/// stderr interleaved in file order), optionally timestamped. Opening errors come back at once; read errors
/// end the stream with an `Err` item.
pub async fn read_logs(
    log_path: &Path,
    opts: LogOptions,
) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
    let path = tokio::fs::canonicalize(log_path).await.map_err(Error::io(format!("opening {}", log_path.display())))?;
    let mut file = std::fs::File::open(&path).map_err(Error::io(format!("opening {}", path.display())))?;
    let start = tail_start(&mut file, opts.tail_lines).map_err(Error::io(format!("tailing {}", path.display())))?;
    file.seek(SeekFrom::Start(start)).map_err(Error::io(format!("seeking {}", path.display())))?;
    let mut since = opts.since_seconds.map(|s| Utc::now() - chrono::Duration::seconds(s));
    if let Some(t) = opts.since_time
        && since.is_none_or(|s| t > s)
    {
        since = Some(t);
    }
    let limited = opts.tail_lines.is_some_and(|t| t >= 0) && !opts.follow;
    Ok(async_stream::try_stream! {
        let mut inode = file.metadata().map(|m| m.ino()).unwrap_or_default();
        let mut reader = BufReader::new(tokio::fs::File::from_std(file));
        let mut line = Vec::new();
        let mut remain = opts.limit_bytes.filter(|b| *b >= 0).unwrap_or(i64::MAX);
        let mut left = opts.tail_lines.unwrap_or(-1);
        let mut running = true;
        let mut stop = false;
        while (!limited || left != 0) && !stop {
            reader.read_until(b'\n', &mut line).await.map_err(Error::io(format!("reading {}", path.display())))?;
            if line.last() != Some(&b'\n') {
                if opts.follow {
                    if !running {
                        break;
                    }
                    running = match &opts.state_dir {
                        Some(dir) => matches!(inspect(dir), Ok(State::Running { .. })),
                        None => true,
                    };
                    if running {
                        tokio::time::sleep(FOLLOW_POLL).await;
                    }
                    // A rotated or recreated file: continue with the new one from its start.
                    if let Ok(meta) = tokio::fs::metadata(&path).await
                        && meta.ino() != inode
                        && let Ok(f) = tokio::fs::File::open(&path).await
                    {
                        inode = meta.ino();
                        reader = BufReader::new(f);
                        line.clear();
                    }
                    continue;
                }
                if line.is_empty() {
                    break;
                }
                // An incomplete last line: print it and stop, as kubelet does.
                stop = true;
            }
            if let Some(entry) = parse_line(&line)
                && since.is_none_or(|s| entry.timestamp >= s)
            {
                let mut out = Vec::with_capacity(entry.content.len() + 32);
                if opts.timestamps {
                    out.extend_from_slice(format_timestamp(entry.timestamp).as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(entry.content);
                if out.len() as i64 > remain {
                    out.truncate(remain.max(0) as usize);
                }
                remain -= out.len() as i64;
                yield Bytes::from(out);
                if remain <= 0 {
                    break;
                }
            }
            line.clear();
            if limited {
                left -= 1;
            }
        }
    })
}

/// Byte offset where the last `lines` lines of the file begin (kubelet's `tail.FindTailLineStartIndex`):
/// `None` or negative means the whole file, `0` the end.
pub fn tail_start(file: &mut std::fs::File, lines: Option<i64>) -> std::io::Result<u64> {
    let Some(n) = lines.filter(|n| *n >= 0) else {
        return Ok(0);
    };
    let size = file.seek(SeekFrom::End(0))?;
    let mut right = size;
    let mut count = 0i64;
    let mut buf = vec![0u8; 8192];
    while right > 0 {
        let left = right.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(right - left) as usize];
        file.seek(SeekFrom::Start(left))?;
        file.read_exact(chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b == b'\n' {
                count += 1;
                // The (n+1)-th newline from the end closes the line before the last n.
                if count > n {
                    return Ok(left + i as u64 + 1);
                }
            }
        }
        right = left;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::io::Write;

    const LOG: &str = "2026-01-01T00:00:01.000000000Z stdout F one\n\
                       2026-01-01T00:00:02.000000000Z stderr F two\n\
                       2026-01-01T00:00:03.000000000Z stdout P thr\n\
                       2026-01-01T00:00:03.000000000Z stdout F ee\n";

    fn log_file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(content.as_bytes()).expect("write");
        f
    }

    async fn collect(path: &Path, opts: LogOptions) -> String {
        let stream = read_logs(path, opts).await.expect("open");
        let chunks: Vec<Result<Bytes>> = stream.collect().await;
        chunks.into_iter().map(|c| String::from_utf8(c.expect("chunk").to_vec()).expect("utf8")).collect()
    }

    #[test]
    fn tail_start_counts_lines_from_the_end() {
        let f = log_file("a\nbb\nccc\n");
        let mut file = f.reopen().expect("reopen");
        assert_eq!(tail_start(&mut file, None).expect("tail"), 0);
        assert_eq!(tail_start(&mut file, Some(0)).expect("tail"), 9);
        assert_eq!(tail_start(&mut file, Some(1)).expect("tail"), 5);
        assert_eq!(tail_start(&mut file, Some(2)).expect("tail"), 2);
        assert_eq!(tail_start(&mut file, Some(10)).expect("tail"), 0);
    }

    #[tokio::test]
    async fn reads_messages_joins_partials_and_prefixes_timestamps() {
        let f = log_file(LOG);
        assert_eq!(collect(f.path(), LogOptions::default()).await, "one\ntwo\nthree\n");
        let ts = collect(f.path(), LogOptions { timestamps: true, tail_lines: Some(1), ..Default::default() }).await;
        assert_eq!(ts, "2026-01-01T00:00:03.000000000Z ee\n");
    }

    #[tokio::test]
    async fn tail_since_and_limit_bytes() {
        let f = log_file(LOG);
        let tail = collect(f.path(), LogOptions { tail_lines: Some(3), ..Default::default() }).await;
        assert_eq!(tail, "two\nthree\n");
        let since = DateTime::parse_from_rfc3339("2026-01-01T00:00:02Z").expect("ts").with_timezone(&Utc);
        let since = collect(f.path(), LogOptions { since_time: Some(since), ..Default::default() }).await;
        assert_eq!(since, "two\nthree\n");
        let limited = collect(f.path(), LogOptions { limit_bytes: Some(6), ..Default::default() }).await;
        assert_eq!(limited, "one\ntw");
    }

    #[tokio::test]
    async fn follow_sees_appended_lines() {
        let f = log_file("2026-01-01T00:00:01Z stdout F first\n");
        let mut stream =
            Box::pin(read_logs(f.path(), LogOptions { follow: true, ..Default::default() }).await.expect("open"));
        let first = stream.next().await.expect("item").expect("ok");
        assert_eq!(&first[..], b"first\n");
        let mut w = f.reopen().expect("reopen");
        w.seek(SeekFrom::End(0)).expect("seek");
        // Written in two pieces: the reader must not emit half a line.
        w.write_all(b"2026-01-01T00:00:02Z stdout F sec").expect("write");
        w.flush().expect("flush");
        tokio::time::sleep(Duration::from_millis(250)).await;
        w.write_all(b"ond\n").expect("write");
        let second = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("in time");
        assert_eq!(&second.expect("item").expect("ok")[..], b"second\n");
    }
}

//! The syslog transports: UDP and Unix datagrams (one message each), TCP and Unix streams
//! (framed by [`StreamFramer`]), each message turned into a journal record.
//!
//! Invariant: what a transport cannot take it refuses in its own way, never by growing: a
//! stream is not read while the journal is full (its sender blocks), a Unix datagram socket is
//! not read either (the kernel blocks its senders), a UDP datagram is dropped and counted.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{Mode, SyslogSourceConfig, write_record};
use crate::metrics::add;
use crate::source::journal::{Journal, JournalError};
use crate::source::network::NetworkError;
use crate::source::tls::Incoming;
use tokio_rustls::TlsAcceptor;

/// A socket bound, not yet read.
pub enum Socket {
    /// `mode: udp`.
    Udp(std::net::UdpSocket),
    /// `mode: tcp`.
    Tcp(std::net::TcpListener),
    /// `mode: unix_datagram`, and its path.
    UnixDatagram(std::os::unix::net::UnixDatagram, PathBuf),
    /// `mode: unix_stream`, and its path.
    UnixStream(std::os::unix::net::UnixListener, PathBuf),
}

/// Binds the source's socket. A Unix socket left by an earlier run is replaced (anything else
/// at its path is an error), and is writable by every user: the senders are other containers.
pub fn bind(config: &SyslogSourceConfig) -> Result<Socket, NetworkError> {
    let bind_error = |address: String| move |error| NetworkError::Bind { address, error };
    let address = config.address.to_string();
    let socket = match (config.mode, &config.path) {
        (Mode::Udp, _) => {
            let socket =
                std::net::UdpSocket::bind(config.address).map_err(bind_error(address.clone()))?;
            socket
                .set_nonblocking(true)
                .map_err(bind_error(address.clone()))?;
            Socket::Udp(socket)
        }
        (Mode::Tcp, _) => {
            let listener =
                std::net::TcpListener::bind(config.address).map_err(bind_error(address.clone()))?;
            listener
                .set_nonblocking(true)
                .map_err(bind_error(address.clone()))?;
            Socket::Tcp(listener)
        }
        (Mode::UnixDatagram | Mode::UnixStream, None) => {
            return Err(NetworkError::Bind {
                address: "(no path)".to_owned(),
                error: io::Error::new(io::ErrorKind::InvalidInput, "a unix mode needs `path`"),
            });
        }
        (mode, Some(path)) => {
            let shown = path.display().to_string();
            remove_stale_socket(path).map_err(bind_error(shown.clone()))?;
            let socket = if mode == Mode::UnixDatagram {
                let socket = std::os::unix::net::UnixDatagram::bind(path)
                    .map_err(bind_error(shown.clone()))?;
                socket
                    .set_nonblocking(true)
                    .map_err(bind_error(shown.clone()))?;
                Socket::UnixDatagram(socket, path.clone())
            } else {
                let listener = std::os::unix::net::UnixListener::bind(path)
                    .map_err(bind_error(shown.clone()))?;
                listener
                    .set_nonblocking(true)
                    .map_err(bind_error(shown.clone()))?;
                Socket::UnixStream(listener, path.clone())
            };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(bind_error(shown))?;
            socket
        }
    };
    Ok(socket)
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "something other than a socket is there",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads `socket` until `stopping` turns true.
pub fn spawn(
    socket: Socket,
    tls: Option<TlsAcceptor>,
    config: &SyslogSourceConfig,
    journal: Journal,
    stopping: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let max = config.max_message_bytes;
    let connections = config.max_connections;
    match &socket {
        Socket::Udp(s) => log_listening("udp", s.local_addr().map(|a| a.to_string())),
        Socket::Tcp(l) => log_listening("tcp", l.local_addr().map(|a| a.to_string())),
        Socket::UnixDatagram(_, path) | Socket::UnixStream(_, path) => {
            log_listening("unix", Ok(path.display().to_string()))
        }
    }
    let task = tokio::spawn(async move {
        let outcome = match socket {
            Socket::Udp(socket) => match tokio::net::UdpSocket::from_std(socket) {
                Ok(socket) => datagrams(Datagrams::Udp(socket), journal, max, stopping).await,
                Err(e) => Err(e),
            },
            Socket::UnixDatagram(socket, path) => {
                let outcome = match tokio::net::UnixDatagram::from_std(socket) {
                    Ok(socket) => datagrams(Datagrams::Unix(socket), journal, max, stopping).await,
                    Err(e) => Err(e),
                };
                let _ = std::fs::remove_file(path);
                outcome
            }
            Socket::Tcp(listener) => match tokio::net::TcpListener::from_std(listener)
                .and_then(|listener| Incoming::new(listener, tls))
            {
                Ok(incoming) => {
                    streams(Listener::Tcp(incoming), journal, max, connections, stopping).await
                }
                Err(e) => Err(e),
            },
            Socket::UnixStream(listener, path) => {
                let outcome = match tokio::net::UnixListener::from_std(listener) {
                    Ok(listener) => {
                        streams(
                            Listener::Unix(listener),
                            journal,
                            max,
                            connections,
                            stopping,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                let _ = std::fs::remove_file(path);
                outcome
            }
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, "syslog source stopped listening");
        }
    });
    vec![task]
}

fn log_listening(transport: &str, address: io::Result<String>) {
    let address = address.unwrap_or_else(|e| format!("(unknown: {e})"));
    tracing::info!(transport, %address, "syslog source listening");
}

/// A datagram socket.
enum Datagrams {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Datagrams {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Datagrams::Udp(s) => s.readable().await,
            Datagrams::Unix(s) => s.readable().await,
        }
    }

    /// The next datagram waiting, and its sender when it has an address.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<String>)> {
        match self {
            Datagrams::Udp(s) => s.try_recv_from(buf).map(|(n, a)| (n, Some(a.to_string()))),
            Datagrams::Unix(s) => s.try_recv(buf).map(|n| (n, None)),
        }
    }
}

/// Datagrams taken in one group (one journal append) at most.
const DATAGRAM_GROUP: usize = 512;

async fn datagrams(
    socket: Datagrams,
    journal: Journal,
    max: usize,
    mut stopping: watch::Receiver<bool>,
) -> io::Result<()> {
    let metrics = Arc::clone(journal.metrics());
    let unix = matches!(socket, Datagrams::Unix(_));
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            ready = socket.readable() => ready?,
            _ = stopping.wait_for(|stop| *stop) => return Ok(()),
        }
        let mut records = Vec::new();
        let mut count = 0u64;
        while count < DATAGRAM_GROUP as u64 {
            let (n, peer) = match socket.try_recv(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n > max {
                add(&metrics.requests_rejected, 1);
                tracing::debug!(
                    bytes = n,
                    max,
                    "syslog datagram longer than max_message_bytes dropped"
                );
                continue;
            }
            write_record(&mut records, trim_end(&buf[..n]), peer.as_deref());
            count += 1;
        }
        for (part, count) in parts(&records, journal.max_append()) {
            let appended = if unix {
                // Not read meanwhile: the kernel blocks the senders, nothing is lost.
                journal.append_when_room(part.to_vec()).await
            } else {
                journal.append_if_room(part.to_vec()).await
            };
            match appended {
                Ok(()) => add(&metrics.records_received, count),
                Err(JournalError::Full { .. }) => add(&metrics.datagrams_dropped, count),
                Err(JournalError::Closed) => return Ok(()),
                Err(e) => {
                    add(&metrics.requests_rejected, count);
                    tracing::warn!(error = %e, datagrams = count, "syslog datagrams not journaled");
                }
            }
        }
    }
}

/// Splits journal records (whole lines) into parts of at most `limit` bytes (a record longer
/// than that is a part of its own), each with its number of records.
fn parts(records: &[u8], limit: usize) -> impl Iterator<Item = (&[u8], u64)> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        let mut count = 0;
        for line_end in memchr::memchr_iter(b'\n', rest) {
            if count > 0 && line_end + 1 > limit {
                break;
            }
            end = line_end + 1;
            count += 1;
        }
        if count == 0 {
            end = rest.len();
            count = 1;
        }
        let (part, tail) = rest.split_at(end);
        rest = tail;
        Some((part, count))
    })
}

/// A stream listener.
enum Listener {
    /// Accepted, and handshaken under `tls:`, by [`Incoming`].
    Tcp(Incoming),
    Unix(tokio::net::UnixListener),
}

async fn streams(
    mut listener: Listener,
    journal: Journal,
    max: usize,
    connections: usize,
    mut stopping: watch::Receiver<bool>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(connections));
    let mut served = JoinSet::new();
    loop {
        // A connection past the limit waits in the backlog until one ends.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.map_err(io::Error::other)?,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = accept(&mut listener) => accepted,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "syslog source: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let journal = journal.clone();
        let stopping = stopping.clone();
        served.spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, peer, journal, max, stopping).await {
                tracing::debug!(error = %e, "syslog connection ended");
            }
        });
        while served.try_join_next().is_some() {}
    }
    while served.join_next().await.is_some() {}
    Ok(())
}

type Stream = Box<dyn AsyncRead + Send + Unpin>;

async fn accept(listener: &mut Listener) -> io::Result<(Stream, Option<String>)> {
    match listener {
        Listener::Tcp(incoming) => {
            let (stream, peer) = incoming
                .next()
                .await
                .ok_or_else(|| io::Error::other("no longer accepting"))?;
            Ok((Box::new(stream), Some(peer.to_string())))
        }
        Listener::Unix(l) => {
            let (stream, _) = l.accept().await?;
            Ok((Box::new(stream), None))
        }
    }
}

/// Reads one connection's messages into the journal until it closes or the source stops.
async fn connection(
    mut stream: Stream,
    peer: Option<String>,
    journal: Journal,
    max: usize,
    mut stopping: watch::Receiver<bool>,
) -> io::Result<()> {
    let metrics = Arc::clone(journal.metrics());
    let mut framer = StreamFramer::new(max);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            n = stream.read(&mut chunk) => n?,
            _ = stopping.wait_for(|stop| *stop) => 0,
        };
        let closed = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        let mut records = Vec::new();
        let mut count = 0u64;
        let consumed = framer.frames(&buf, closed, |message, cut| {
            write_record(&mut records, message, peer.as_deref());
            if cut {
                // The record's own flag: `"truncated":true` before its closing brace.
                records.pop();
                records.pop();
                records.extend_from_slice(b",\"truncated\":true}\n");
            }
            count += 1;
        });
        buf.drain(..consumed);
        for (part, count) in parts(&records, journal.max_append()) {
            // While the journal is full nothing more is read: TCP pushes back on the sender.
            match journal.append_when_room(part.to_vec()).await {
                Ok(()) => add(&metrics.records_received, count),
                Err(JournalError::TooLarge { size, .. }) => {
                    add(&metrics.requests_rejected, count);
                    tracing::warn!(
                        bytes = size,
                        "syslog message larger than half the journal dropped"
                    );
                }
                Err(e) => {
                    add(&metrics.requests_rejected, count);
                    return Err(io::Error::other(e));
                }
            }
        }
        if closed {
            return Ok(());
        }
    }
}

/// Strips what ends a datagram's message: newlines, carriage returns and NULs.
fn trim_end(message: &[u8]) -> &[u8] {
    let end = message
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | b'\0'))
        .map_or(0, |at| at + 1);
    &message[..end]
}

/// Frames a stream: a message is `LENGTH SP MESSAGE` when it starts with a digit (octet
/// counting), else it ends at a newline or a NUL (Python's `SysLogHandler` ends with a NUL). A
/// message longer than `max` is cut to `max` bytes and the rest of it skipped.
#[derive(Debug)]
pub struct StreamFramer {
    max: usize,
    /// Bytes still to skip of an octet-counted message that was cut.
    skip_bytes: usize,
    /// Skipping to the next terminator of a message that was cut.
    skip_line: bool,
}

impl StreamFramer {
    /// A framer cutting messages at `max` bytes.
    pub fn new(max: usize) -> Self {
        StreamFramer {
            max,
            skip_bytes: 0,
            skip_line: false,
        }
    }

    /// Calls `each(message, cut)` for every whole message at the start of `buf` (and, when
    /// the stream is `closed`, for what is left); returns how many bytes were used.
    pub fn frames(&mut self, buf: &[u8], closed: bool, mut each: impl FnMut(&[u8], bool)) -> usize {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if self.skip_bytes > 0 {
                let n = self.skip_bytes.min(rest.len());
                self.skip_bytes -= n;
                at += n;
                if self.skip_bytes > 0 {
                    return at;
                }
                continue;
            }
            if self.skip_line {
                match memchr::memchr2(b'\n', b'\0', rest) {
                    Some(end) => {
                        self.skip_line = false;
                        at += end + 1;
                        continue;
                    }
                    None => return buf.len(),
                }
            }
            // Blank separators between messages.
            let blank = rest
                .iter()
                .take_while(|&&b| matches!(b, b'\n' | b'\r' | b'\0' | b' '))
                .count();
            at += blank;
            let rest = &buf[at..];
            if rest.is_empty() {
                return at;
            }
            if let Some(counted) = octet_count(rest) {
                let Some((digits, len)) = counted else {
                    // The length is still arriving.
                    return if closed { buf.len() } else { at };
                };
                let body = &rest[digits + 1..];
                if len > self.max {
                    if body.len() < self.max && !closed {
                        return at;
                    }
                    each(&body[..self.max.min(body.len())], true);
                    let taken = self.max.min(body.len());
                    at += digits + 1 + taken;
                    self.skip_bytes = len - taken;
                    if closed {
                        return buf.len();
                    }
                    continue;
                }
                if body.len() < len {
                    if closed {
                        each(body, true);
                        return buf.len();
                    }
                    return at;
                }
                each(&body[..len], false);
                at += digits + 1 + len;
                continue;
            }
            match memchr::memchr2(b'\n', b'\0', rest) {
                Some(end) if end <= self.max => {
                    let line = &rest[..end];
                    each(line.strip_suffix(b"\r").unwrap_or(line), false);
                    at += end + 1;
                }
                _ if rest.len() > self.max => {
                    each(&rest[..self.max], true);
                    at += self.max;
                    self.skip_line = true;
                }
                Some(_) => return at,
                None if closed => {
                    each(rest, false);
                    return buf.len();
                }
                None => return at,
            }
        }
    }
}

/// `Some(Some((digits, length)))` when `rest` starts with an octet count and its space,
/// `Some(None)` when it starts with digits not yet followed by one, `None` when it does not
/// start with a digit (newline framing).
fn octet_count(rest: &[u8]) -> Option<Option<(usize, usize)>> {
    if !rest.first()?.is_ascii_digit() {
        return None;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest.get(digits) {
        // More than 9 digits is no length a sender means: the line is framed by newline.
        _ if digits > 9 => None,
        Some(b' ') => {
            let len = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
            Some(Some((digits, len)))
        }
        Some(_) => None,
        None => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(max: usize, pieces: &[&[u8]], close: bool) -> Vec<(String, bool)> {
        let mut framer = StreamFramer::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            buf.extend_from_slice(piece);
            let closed = close && i == pieces.len() - 1;
            let used = framer.frames(&buf, closed, |m, cut| {
                out.push((String::from_utf8_lossy(m).into_owned(), cut))
            });
            buf.drain(..used);
        }
        out
    }

    type Case<'a> = (usize, &'a [&'a [u8]], bool, Vec<(String, bool)>);

    #[test]
    fn frames_table() {
        let m = |s: &str| (s.to_owned(), false);
        let cut = |s: &str| (s.to_owned(), true);
        // (max, pieces as they arrive, closed at the end, messages)
        let cases: &[Case<'_>] = &[
            (
                100,
                &[b"<14>a\n<14>b\n"],
                false,
                vec![m("<14>a"), m("<14>b")],
            ),
            (
                100,
                &[b"<14>a\0<14>b\0"],
                false,
                vec![m("<14>a"), m("<14>b")],
            ),
            (
                100,
                &[b"<14>a\r\n<14>", b"b\n"],
                false,
                vec![m("<14>a"), m("<14>b")],
            ),
            (100, &[b"<14>unterminated"], false, vec![]),
            (
                100,
                &[b"<14>unterminated"],
                true,
                vec![m("<14>unterminated")],
            ),
            (
                100,
                &[b"5 <14>a6 <14>bc"],
                false,
                vec![m("<14>a"), m("<14>bc")],
            ),
            (
                100,
                &[b"1", b"1 <14>a\nb c d"],
                false,
                vec![m("<14>a\nb c d")],
            ),
            (100, &[b"8 <14>a"], true, vec![cut("<14>a")]),
            (
                4,
                &[b"10 0123456789", b"2 ab"],
                false,
                vec![cut("0123"), m("ab")],
            ),
            (4, &[b"10 01", b"23456", b"789\n"], false, vec![cut("0123")]),
            (
                4,
                &[b"<14>abcdef\n<1>\n"],
                false,
                vec![cut("<14>"), m("<1>")],
            ),
            (
                4,
                &[b"<14>ab", b"cdef", b"gh\nxy\n"],
                false,
                vec![cut("<14>"), m("xy")],
            ),
            (100, &[b"1234567890 x\n"], false, vec![m("1234567890 x")]),
            (100, &[b"\n\n  <14>a\n"], false, vec![m("<14>a")]),
        ];
        for (max, pieces, close, expected) in cases {
            assert_eq!(&framed(*max, pieces, *close), expected, "{pieces:?}");
        }
    }

    #[test]
    fn parts_table() {
        // (records, limit, parts)
        let cases: &[(&str, usize, &[&str])] = &[
            ("", 10, &[]),
            ("a\nb\nc\n", 100, &["a\nb\nc\n"]),
            ("a\nb\nc\n", 4, &["a\nb\n", "c\n"]),
            ("a\nb\nc\n", 1, &["a\n", "b\n", "c\n"]),
            ("long line\nb\n", 4, &["long line\n", "b\n"]),
        ];
        for (records, limit, expected) in cases {
            let got: Vec<(&[u8], u64)> = parts(records.as_bytes(), *limit).collect();
            let texts: Vec<&str> = got
                .iter()
                .map(|(p, _)| std::str::from_utf8(p).unwrap())
                .collect();
            assert_eq!(&texts, expected, "{records:?} / {limit}");
            for (part, count) in got {
                assert_eq!(count as usize, part.iter().filter(|&&b| b == b'\n').count());
            }
        }
    }

    #[test]
    fn trim_end_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"<14>a\n", b"<14>a"),
            (b"<14>a\0", b"<14>a"),
            (b"<14>a\r\n\0", b"<14>a"),
            (b"\n", b""),
            (b"", b""),
        ];
        for (input, expected) in cases {
            assert_eq!(trim_end(input), *expected);
        }
    }
}

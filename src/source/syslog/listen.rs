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

use super::framing::{StreamFramer, parts, trim_end};
use super::{Mode, SyslogSourceConfig, write_record};
use crate::metrics::add;
use crate::source::journal::{Journal, JournalError};
use crate::source::network::{NetworkError, bind_tcp};
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
        (Mode::Tcp, _) => Socket::Tcp(bind_tcp(config.address)?),
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
                append_unless_stopped(&journal, part, count, &mut stopping).await
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
            match append_unless_stopped(&journal, part, count, &mut stopping).await {
                Ok(()) => add(&metrics.records_received, count),
                Err(JournalError::TooLarge { size, .. }) => {
                    add(&metrics.requests_rejected, count);
                    tracing::warn!(
                        bytes = size,
                        "syslog message larger than half the journal dropped"
                    );
                }
                // Counted where it was refused.
                Err(JournalError::Closed) => return Ok(()),
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

/// Appends `part` once there is room, unless the source stops first: then its `count`
/// messages, read but not journaled, are counted and logged (syslog senders are never
/// answered, so they cannot send again).
async fn append_unless_stopped(
    journal: &Journal,
    part: &[u8],
    count: u64,
    stopping: &mut watch::Receiver<bool>,
) -> Result<(), JournalError> {
    let appended = tokio::select! {
        biased;
        appended = journal.append_when_room(part.to_vec()) => appended,
        _ = stopping.wait_for(|stop| *stop) => Err(JournalError::Closed),
    };
    if appended == Err(JournalError::Closed) {
        add(&journal.metrics().requests_rejected, count);
        tracing::warn!(
            messages = count,
            "syslog messages read while the journal was full are dropped: the source is stopping"
        );
    }
    appended
}

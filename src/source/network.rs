//! What the network sources (`http`, `syslog`) share: the parsing settings they take, the
//! tailer configuration over their journal, the journal record every received message becomes,
//! and a running source's listeners, journal writer and retention, started and stopped together.
//!
//! Invariant: a listener hands over only whole records (each one JSON object on one line), so
//! the tailer reading the journal frames exactly what was received.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::journal::retention::Retention;
use super::journal::{Journal, JournalError, JournalWriter, SEGMENT_SUFFIX};
use super::tls::TlsConfig;
use super::{FileSourceConfig, ReadFrom, SourceKind};
use crate::checkpoint::CheckpointStore;
use crate::event::StaticFields;
use crate::event::enrichment::PodIdentity;
use crate::event::json::write_json_str;
use crate::metrics::SourceMetrics;
use crate::parse::{FilterConfig, Format, TimestampConfig};
use tokio_rustls::TlsAcceptor;

/// The longest record a network source writes to its journal (and its tailer reads whole).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Where the journal of source `name` lives under `data_dir`.
pub fn journal_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("journal").join(name)
}

/// The tailer's settings for a journal in `dir`, with the source's own parsing settings: the
/// records are JSON objects.
pub fn journal_tail(
    dir: &Path,
    fields: &StaticFields,
    filter: Option<&FilterConfig>,
    timestamp: Option<&TimestampConfig>,
) -> FileSourceConfig {
    let root = glob::Pattern::escape(&dir.to_string_lossy());
    FileSourceConfig {
        include: vec![format!("{root}/*{SEGMENT_SUFFIX}")],
        exclude: Vec::new(),
        read_from: ReadFrom::Beginning,
        format: Format::Json,
        pattern: None,
        multiline: None,
        timestamp: timestamp.cloned(),
        fields: fields.clone(),
        filter: filter.cloned(),
        kubernetes: PodIdentity::default(),
        max_line_bytes: MAX_RECORD_BYTES,
        // A delivered segment's room comes back once the tailer let it go, which waits for a
        // scan: kept short, so that a fast sender finds room.
        scan_interval_ms: 250,
        rotate_wait_ms: 250,
        fingerprint_bytes: 1024,
        max_open_files: 64,
        follow_symlinks: false,
        retention: None,
        journal: true,
    }
}

/// Writes one journal record: a JSON object on one line.
pub struct Record<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Record<'a> {
    /// Starts a record at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Record { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_json_str(self.out, key.as_bytes());
        self.out.push(b':');
    }

    /// Adds `key` with a string value; bytes that are not UTF-8 become U+FFFD.
    pub fn text(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key);
        match std::str::from_utf8(value) {
            Ok(text) => write_json_str(self.out, text.as_bytes()),
            Err(_) => write_json_str(self.out, String::from_utf8_lossy(value).as_bytes()),
        }
        self
    }

    /// Adds `key` with a number.
    pub fn number(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// Adds `key` with a value already written as JSON (on one line).
    pub fn json(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(value);
        self
    }

    /// Ends the record with its newline.
    pub fn end(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

/// Why a network source could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Its address or socket could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address or socket path.
        address: String,
        /// Why.
        error: std::io::Error,
    },
    /// Its journal could not be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Its `tls:` files are missing or wrong.
    #[error("tls: {0}")]
    Tls(String),
}

/// The TLS acceptor of `tls`, offering `alpn`; `None` without `tls:`.
fn acceptor(tls: Option<&TlsConfig>, alpn: &[&[u8]]) -> Result<Option<TlsAcceptor>, NetworkError> {
    tls.map(|tls| {
        tls.server_config(alpn)
            .map(TlsAcceptor::from)
            .map_err(NetworkError::Tls)
    })
    .transpose()
}

/// How long in-flight requests may take to finish once a network source stops listening.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A network source's running parts, beside its tailer.
pub struct Listening {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    writer: JournalWriter,
    retention: JoinHandle<()>,
}

impl Listening {
    /// Opens the journal of network source `name` in `dir`, binds its listeners and starts
    /// them with its retention; `None` for a `file` source. Must run inside the runtime.
    pub fn start(
        name: &str,
        kind: &SourceKind,
        dir: &Path,
        store: &Arc<CheckpointStore>,
        metrics: &Arc<SourceMetrics>,
    ) -> Result<Option<Listening>, NetworkError> {
        let journal_config = match kind {
            SourceKind::File(_) => return Ok(None),
            SourceKind::Http(http) => http.journal,
            SourceKind::Syslog(syslog) => syslog.journal,
            SourceKind::Otlp(otlp) => otlp.journal,
        };
        // Bound first: an address in use fails the start before the journal is touched.
        let (stop, stopping) = watch::channel(false);
        let bound = match kind {
            SourceKind::File(_) => return Ok(None),
            SourceKind::Http(http) => Bound::Http(
                super::http::bind(http)?,
                acceptor(http.tls.as_ref(), &[b"http/1.1"])?,
            ),
            SourceKind::Syslog(syslog) => Bound::Syslog(
                super::syslog::listen::bind(syslog)?,
                acceptor(syslog.tls.as_ref(), &[])?,
            ),
            SourceKind::Otlp(otlp) => {
                // gRPC's TLS is tonic's own, from the same files, read once here and checked
                // with rustls like the others.
                acceptor(otlp.tls.as_ref(), &[b"h2"])?;
                let grpc_tls = match &otlp.tls {
                    Some(tls) => Some(tls.pem().map_err(NetworkError::Tls)?),
                    None => None,
                };
                Bound::Otlp {
                    grpc: otlp.grpc_address.map(bind_tcp).transpose()?,
                    grpc_tls,
                    http: otlp.http_address.map(bind_tcp).transpose()?,
                    http_tls: acceptor(otlp.tls.as_ref(), &[b"http/1.1"])?,
                }
            }
        };
        let (journal, writer) = Journal::open(dir, name, journal_config, Arc::clone(metrics))?;
        let tasks = match (bound, kind) {
            (Bound::Http(listener, tls), SourceKind::Http(http)) => {
                vec![super::http::spawn(listener, tls, http, journal, stopping)]
            }
            (Bound::Syslog(socket, tls), SourceKind::Syslog(syslog)) => {
                super::syslog::listen::spawn(socket, tls, syslog, journal, stopping)
            }
            (
                Bound::Otlp {
                    grpc,
                    grpc_tls,
                    http,
                    http_tls,
                },
                SourceKind::Otlp(otlp),
            ) => {
                let max = otlp.max_request_bytes;
                let mut tasks = Vec::new();
                if let Some(listener) = grpc {
                    tasks.push(super::otlp::grpc::spawn(
                        listener,
                        max,
                        grpc_tls,
                        journal.clone(),
                        stopping.clone(),
                    ));
                }
                if let Some(listener) = http {
                    tasks.push(super::otlp::http::spawn(
                        listener, http_tls, max, journal, stopping,
                    ));
                }
                tasks
            }
            _ => Vec::new(),
        };
        let retention = tokio::spawn(
            Retention::new(&writer, name, Arc::clone(store), Arc::clone(metrics)).run(),
        );
        Ok(Some(Listening {
            stop,
            tasks,
            writer,
            retention,
        }))
    }

    /// Stops listening, lets requests in flight finish (a short while), and waits for the
    /// journal to write what it was handed; the tailer then reads the journal to its end.
    pub async fn stop(self) {
        let Listening {
            stop,
            tasks,
            writer,
            retention,
        } = self;
        stop.send_replace(true);
        for mut task in tasks {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        retention.abort();
        // The writer ends once every handle is dropped, and a connection the server could not
        // close in time may still hold one: whatever it appends later is in the journal and
        // shipped at the next start, so the source does not wait for it past the grace.
        let joined = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(STOP_GRACE, joined).await.is_err() {
            tracing::warn!(
                "a connection still held the journal when the source stopped; what it appends is shipped at the next start"
            );
        }
    }
}

/// A listener bound, not yet serving.
enum Bound {
    Http(std::net::TcpListener, Option<TlsAcceptor>),
    Syslog(super::syslog::listen::Socket, Option<TlsAcceptor>),
    Otlp {
        grpc: Option<std::net::TcpListener>,
        grpc_tls: Option<super::tls::Pem>,
        http: Option<std::net::TcpListener>,
        http_tls: Option<TlsAcceptor>,
    },
}

/// Binds a TCP listener for the runtime to take.
pub fn bind_tcp(address: std::net::SocketAddr) -> Result<std::net::TcpListener, NetworkError> {
    let bind_error = |error| NetworkError::Bind {
        address: address.to_string(),
        error,
    };
    let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

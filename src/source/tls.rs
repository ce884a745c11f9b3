//! The network sources' TCP listeners, in clear or with TLS (`tls:` on `http`, `otlp` and
//! `syslog` over TCP: the server's certificate and key, and optionally a CA whose clients alone
//! are let in), and the HTTP servers on them.
//!
//! Invariant: a listener with `tls:` never reads a byte its peer sent outside a completed TLS
//! handshake, and a slow or failed handshake holds up no other connection (each runs in a task
//! of its own, under [`HANDSHAKE_TIMEOUT`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// `tls:` of a network source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM.
    pub key_file: PathBuf,
    /// When set, only clients with a certificate signed by this CA (PEM) are let in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

/// The files of a [`TlsConfig`], read.
pub struct Pem {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
    /// The CA of the clients let in, if any.
    pub client_ca: Option<Vec<u8>>,
}

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handshaken and not yet taken by the server, at most.
const READY: usize = 64;

/// TLS handshakes under way at once, at most; past them, connections wait to be accepted.
const HANDSHAKES: usize = 128;

impl TlsConfig {
    /// The paths made absolute from `base_dir`.
    pub fn resolve(self, base_dir: &Path) -> Self {
        TlsConfig {
            cert_file: base_dir.join(self.cert_file),
            key_file: base_dir.join(self.key_file),
            client_ca_file: self.client_ca_file.map(|p| base_dir.join(p)),
        }
    }

    /// The PEM files, read.
    pub fn pem(&self) -> Result<Pem, String> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let ca = match &self.client_ca_file {
            Some(path) => Some(read(path)?),
            None => None,
        };
        Ok(Pem {
            cert: read(&self.cert_file)?,
            key: read(&self.key_file)?,
            client_ca: ca,
        })
    }

    /// A rustls server config (ring) offering `alpn`; every file is read and checked here, so
    /// a bad one fails the source's start with its path.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
        let Pem {
            cert,
            key,
            client_ca: ca,
        } = self.pem()?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", self.cert_file.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate", self.cert_file.display()));
        }
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| format!("{}: {e}", self.key_file.display()))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (&ca, &self.client_ca_file) {
            (Some(ca), Some(path)) => {
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(ca) {
                    let certificate =
                        certificate.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(certificate)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "{} and {}: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// A connection, in clear or over TLS.
pub enum MaybeTls {
    /// Without `tls:`.
    Plain(TcpStream),
    /// With `tls:`, its handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Accepted connections, handshaken (with `tls:`) in tasks of their own: what an HTTP server
/// or a syslog stream loop takes one by one. Dropping it stops accepting.
pub struct Incoming {
    ready: mpsc::Receiver<(MaybeTls, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Incoming {
    /// Accepts on `listener`, through `acceptor` when given.
    pub fn new(listener: TcpListener, acceptor: Option<TlsAcceptor>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(acceptor) = acceptor.clone() else {
                    if sender.send((MaybeTls::Plain(stream), peer)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let sender = sender.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((MaybeTls::Tls(Box::new(tls)), peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Incoming {
            ready,
            local,
            accepting,
        })
    }

    /// The next connection; `None` once accepting stopped.
    pub async fn next(&mut self) -> Option<(MaybeTls, SocketAddr)> {
        self.ready.recv().await
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for Incoming {
    type Io = MaybeTls;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.next().await {
            Some(accepted) => accepted,
            // Accepting never ends on its own: the server is stopped before this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The sender's address, as the HTTP handlers take it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves `app` on `listener` (through TLS with `tls`) until `stopping` turns true; `what`
/// names it in the logs (`http source`).
pub fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    what: &'static str,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let address = listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let incoming = match TcpListener::from_std(listener)
            .and_then(|listener| Incoming::new(listener, tls))
        {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::error!(%address, error = %e, "{what} cannot listen");
                return;
            }
        };
        tracing::info!(%address, "{what} listening");
        let stop = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(incoming, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%address, error = %e, "{what} stopped");
        }
    })
}

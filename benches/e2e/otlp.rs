//! OTLP receivers that discard, for the `-> otlp` rows: a gRPC `LogsService/Export` (tonic's
//! server) and an HTTP `/v1/logs` endpoint (hyper) on loopback ports, served by a runtime of
//! this process. They answer every export with success after reading only where its records
//! are (the field numbers of the official `logs.proto`), to count them: what the rows measure
//! is the agent, not a receiver decoding every attribute.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};

/// `ExportLogsServiceRequest`, read as far as its records: `resource_logs` (1), their
/// `scope_logs` (2), their `log_records` (2) left encoded.
#[derive(Clone, PartialEq, prost::Message)]
struct Request {
    #[prost(message, repeated, tag = "1")]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceLogs {
    #[prost(message, repeated, tag = "2")]
    scope_logs: Vec<ScopeLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeLogs {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    log_records: Vec<Bytes>,
}

impl Request {
    fn records(&self) -> u64 {
        let n: usize = self
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        n as u64
    }
}

/// Both receivers, until the process ends.
pub struct Receivers {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// Records counted so far, by both.
    pub records: Arc<AtomicU64>,
}

/// The gRPC service: `Export` answered with an empty success.
#[derive(Clone)]
struct Discard(Arc<AtomicU64>);

impl tonic::server::NamedService for Discard {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

impl tonic::server::UnaryService<Request> for Discard {
    type Response = ExportLogsServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Request>) -> Self::Future {
        self.0
            .fetch_add(request.get_ref().records(), Ordering::Relaxed);
        Box::pin(async { Ok(tonic::Response::new(ExportLogsServiceResponse::default())) })
    }
}

impl<B> Service<http::Request<B>> for Discard
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<ExportLogsServiceResponse, Request>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(64 << 20), None);
            Ok(grpc.unary(service, request).await)
        })
    }
}

/// Starts both receivers on a runtime of two threads of their own.
pub fn start() -> Receivers {
    let records = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (grpc, http) = runtime.block_on(async {
        let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .with_nodelay(Some(true));
        let grpc = incoming.local_addr().unwrap();
        let service = Discard(Arc::clone(&records));
        tokio::spawn(async move {
            // As gRPC servers do (grpc-go's BDP estimation): windows that grow with the traffic.
            let _ = tonic::transport::Server::builder()
                .http2_adaptive_window(Some(true))
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let counter = Arc::clone(&records);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                        let counter = Arc::clone(&counter);
                        async move {
                            let body: Bytes = BodyExt::collect(request.into_body())
                                .await
                                .map_err(std::io::Error::other)?
                                .to_bytes();
                            if let Ok(request) = Request::decode(body) {
                                counter.fetch_add(request.records(), Ordering::Relaxed);
                            }
                            let answer = ExportLogsServiceResponse::default().encode_to_vec();
                            Ok::<_, std::io::Error>(hyper::Response::new(Full::new(Bytes::from(
                                answer,
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (grpc, http)
    });
    // The runtime lives as long as the process: the receivers serve every row.
    std::mem::forget(runtime);
    Receivers {
        grpc,
        http,
        records,
    }
}

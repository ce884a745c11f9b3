//! `type: kafka`: produce events to Kafka with librdkafka (the `rdkafka` crate).
//!
//! A batch counts as delivered only once every one of its messages has its delivery report;
//! only then is it acked towards the checkpoints. A full librdkafka queue is backpressure (wait,
//! then enqueue again), not an error. Errors that will not go away by retrying (a message over
//! the size limit, an unknown or invalid topic, an authorization failure) are permanent, so the
//! pipeline dead-letters the batch instead of retrying it forever.
//!
//! librdkafka reports a failed authentication only as a client-level error, and keeps the
//! messages queued until `message.timeout.ms`. The sink's client context logs that error and
//! tells the waiting delivery, which purges its messages and fails for good, so a wrong
//! password dead-letters instead of stalling every file behind a silent retry loop.
//!
//! Every broker down is a client-level error too. With unlimited retries (the default) the
//! messages wait in librdkafka's queue and go as soon as a broker is back. With
//! `retry.max_attempts` (a `replay --to kafka://...`), an attempt ends there, as an HTTP attempt
//! ends at a refused connection: the messages are purged and the attempt fails, so the attempts
//! run out in about the time their backoff takes instead of `message.timeout.ms` (5 minutes)
//! each.

mod config;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::util::TokioRuntime;
use rdkafka::{ClientConfig, producer::DeliveryFuture};
use tokio::sync::watch;

pub use config::{Compression, KafkaSinkConfig};

use super::encoding::{Encoding, encode_json};
use super::template::{Template, push_field};
use super::{BoxFuture, BuildError, Healthcheck, Sink, SinkCommon, SinkError};
use crate::event::Batch;
use crate::health::SinkHealth;

/// The last authentication failure librdkafka reported, and how many there were: deliveries
/// waiting for their reports watch it.
#[derive(Debug, Clone, Default)]
struct AuthFailures {
    count: u64,
    reason: String,
    /// Cleared by a successful delivery: the credentials work (again).
    active: bool,
}

/// librdkafka's reports that every broker is down, and how many there were: deliveries that may
/// end early watch it.
#[derive(Debug, Clone, Default)]
struct BrokersDown {
    count: u64,
    reason: String,
    /// Cleared by a delivery report or a metadata answer: a broker is up (again).
    active: bool,
}

/// The producer's client context: librdkafka's logs and errors go to `tracing` under the sink's
/// name, and authentication failures and every broker down are signalled to deliveries.
struct SinkContext {
    sink: String,
    auth: Arc<watch::Sender<AuthFailures>>,
    down: Arc<watch::Sender<BrokersDown>>,
    /// The sink's readiness: not ready while every broker is down.
    health: Arc<SinkHealth>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let sink = &self.sink;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(sink = %sink, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(sink = %sink, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(sink = %sink, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(sink = %sink, facility, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let sink = &self.sink;
        if is_auth_failure(error.rdkafka_error_code()) {
            tracing::error!(sink = %sink, error = %error, "kafka sink `{sink}`: authentication failed: {reason}");
            self.auth.send_modify(|auth| {
                auth.count += 1;
                auth.reason = reason.to_owned();
                auth.active = true;
            });
        } else if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // Deliveries would only fail at `message.timeout.ms`: say it now. A delivery that
            // goes through, or the healthcheck, makes the sink ready again.
            if self.health.failure().is_none() {
                tracing::warn!(sink = %sink, "kafka sink `{sink}`: all brokers down: {reason}");
            }
            self.health
                .failed(&format!("kafka sink `{sink}`: all brokers down: {reason}"));
            self.down.send_modify(|down| {
                down.count += 1;
                down.reason = reason.to_owned();
                down.active = true;
            });
        } else {
            // librdkafka logs the same through `log` above; this is the error's code.
            tracing::debug!(sink = %sink, error = %error, "kafka sink `{sink}`: {reason}");
        }
    }
}

fn is_auth_failure(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// How long a delivery waits for its reports while the credentials are known to fail before it
/// gives up for good: librdkafka tries to authenticate again within its reconnect backoff
/// (`reconnect.backoff.max.ms`, 10 s by default), and a success there clears the failure.
const AUTH_FAILURE_GRACE: Duration = Duration::from_secs(10);

/// How long an attempt that starts while every broker is known to be down waits for the
/// cluster's metadata before it ends (`retry.max_attempts` only).
const DOWN_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Produces batches to Kafka.
pub struct KafkaSink {
    name: String,
    producer: FutureProducer<SinkContext, TokioRuntime>,
    auth: Arc<watch::Sender<AuthFailures>>,
    down: Arc<watch::Sender<BrokersDown>>,
    /// An attempt ends when every broker is down (the retries are limited).
    end_attempts_when_down: bool,
    /// The sink's readiness, as the pipeline and the client context set it.
    health: Arc<SinkHealth>,
    /// True until the first healthcheck, the one made at start.
    starting: bool,
    topic: Template,
    key: String,
    headers: Vec<(String, String)>,
    encoding: Encoding,
}

impl KafkaSink {
    /// Builds the producer (it connects lazily, so an unreachable broker is not an error here).
    pub fn new(
        name: &str,
        config: &KafkaSinkConfig,
        common: &SinkCommon,
        health: Arc<SinkHealth>,
    ) -> Result<Self, BuildError> {
        let error = |message: String| BuildError {
            sink: name.to_owned(),
            message,
        };
        let topic = Template::parse(&config.topic).map_err(|e| error(e.to_string()))?;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("compression.type", config.compression.as_librdkafka())
            .set("acks", &config.acks)
            .set("enable.idempotence", config.idempotence.to_string())
            .set("linger.ms", common.batch.timeout_ms.min(1000).to_string())
            .set(
                "batch.num.messages",
                common.batch.max_events.clamp(1, 1_000_000).to_string(),
            )
            .set(
                "batch.size",
                common.batch.max_bytes.clamp(1, 2_147_483_647).to_string(),
            );
        for (key, value) in &config.librdkafka_options {
            client.set(key, value);
        }
        if let Some(path) = &config.sasl_password_file {
            let password = std::fs::read_to_string(path)
                .map_err(|e| error(format!("sasl_password_file {}: {e}", path.display())))?;
            client.set("sasl.password", password.trim_end_matches(['\n', '\r']));
        }
        let auth = Arc::new(watch::Sender::new(AuthFailures::default()));
        let down = Arc::new(watch::Sender::new(BrokersDown::default()));
        let context = SinkContext {
            sink: name.to_owned(),
            auth: Arc::clone(&auth),
            down: Arc::clone(&down),
            health: Arc::clone(&health),
        };
        let producer = client
            .create_with_context(context)
            .map_err(|e| error(e.to_string()))?;
        Ok(KafkaSink {
            name: name.to_owned(),
            producer,
            auth,
            down,
            end_attempts_when_down: common.retry.max_attempts.is_some(),
            health,
            starting: true,
            topic,
            key: config.key.clone().unwrap_or_else(|| "id".into()),
            headers: config
                .headers
                .iter()
                .map(|(h, f)| (h.clone(), f.clone()))
                .collect(),
            encoding: config.encoding,
        })
    }

    /// Waits for every report; the first permanent error outranks retriable ones (retrying would
    /// not help). A successful report clears a past authentication failure.
    async fn collect(&self, reports: Vec<DeliveryFuture>) -> Option<SinkError> {
        let mut first_error = None;
        let mut delivered_any = false;
        for report in reports {
            match report.await {
                Ok(Ok(_)) => delivered_any = true,
                Ok(Err((error, _))) => {
                    let error = classify(&self.name, &error);
                    if first_error.is_none() || matches!(error, SinkError::Permanent(_)) {
                        first_error = Some(error);
                    }
                }
                Err(_) => {
                    first_error.get_or_insert(SinkError::Retriable(format!(
                        "kafka sink `{}`: producer gone before the delivery report",
                        self.name
                    )));
                }
            }
        }
        if delivered_any {
            self.auth
                .send_if_modified(|auth| std::mem::take(&mut auth.active));
            self.down
                .send_if_modified(|down| std::mem::take(&mut down.active));
        }
        first_error
    }

    /// Resolves with the reason once every broker is known to be down for this delivery: down
    /// reported after it started, or, when it started while they were down, the cluster's
    /// metadata not coming within [`DOWN_PROBE_TIMEOUT`] (librdkafka reports every broker down
    /// once, when the last goes). Never resolves unless attempts end when brokers are down.
    async fn brokers_down(&self) -> String {
        if !self.end_attempts_when_down {
            return std::future::pending().await;
        }
        let mut down = self.down.subscribe();
        let (seen, was_down) = {
            let now = down.borrow_and_update();
            (now.count, now.active)
        };
        let reported = async {
            let reason = down
                .wait_for(|d| d.count > seen)
                .await
                .map(|d| d.reason.clone());
            match reason {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        };
        let still_down = async {
            if !was_down {
                return std::future::pending().await;
            }
            let producer = self.producer.clone();
            let probe = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, DOWN_PROBE_TIMEOUT)
                    .map(|_| ())
            })
            .await;
            match probe {
                Ok(Ok(())) => {
                    self.down
                        .send_if_modified(|down| std::mem::take(&mut down.active));
                    std::future::pending().await
                }
                Ok(Err(e)) => format!("{} (and no metadata: {e})", self.down.borrow().reason),
                Err(e) => e.to_string(),
            }
        };
        tokio::select! {
            reason = reported => reason,
            reason = still_down => reason,
        }
    }

    /// Resolves with the reason once authentication is known to fail for this delivery: a
    /// failure reported after it started, or one still active after [`AUTH_FAILURE_GRACE`].
    async fn authentication_failed(&self) -> String {
        let mut auth = self.auth.subscribe();
        let seen = auth.borrow_and_update().count;
        let new_failure = async {
            let reason = auth
                .wait_for(|a| a.count > seen)
                .await
                .map(|a| a.reason.clone());
            match reason {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        };
        let still_failing = async {
            tokio::time::sleep(AUTH_FAILURE_GRACE).await;
            let now = self.auth.borrow().clone();
            if now.active {
                now.reason
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            reason = new_failure => reason,
            reason = still_failing => reason,
        }
    }
}

/// Errors that the same message would meet again.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        MessageSizeTooLarge
            | InvalidMessageSize
            | UnknownTopic
            | UnknownTopicOrPartition
            | InvalidTopic
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | SaslAuthenticationFailed
            | Authentication
            | InvalidRecord
            | Fatal
    )
}

fn classify(sink: &str, error: &KafkaError) -> SinkError {
    let message = format!("kafka sink `{sink}`: {error}");
    match error.rdkafka_error_code() {
        Some(code) if is_permanent(code) => SinkError::Permanent(message),
        _ => SinkError::Retriable(message),
    }
}

/// How long to wait before enqueueing again when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

impl Sink for KafkaSink {
    fn deliver<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let mut reports = Vec::with_capacity(batch.events);
            let mut payload = Vec::new();
            let mut topic = String::new();
            let mut key = String::new();
            let mut value = String::new();
            let mut bytes = 0u64;
            for (chunk, event) in batch.iter() {
                payload.clear();
                match self.encoding {
                    Encoding::Json => {
                        encode_json(chunk, event, &mut payload);
                        payload.pop(); // the NDJSON newline
                    }
                    Encoding::Text => payload.extend_from_slice(&chunk.text(event)),
                }
                bytes += payload.len() as u64;
                // Topics are not dated, so the time is never read.
                self.topic
                    .render(chunk, event, chrono::DateTime::UNIX_EPOCH, &mut topic);
                key.clear();
                push_field(chunk, event, &self.key, &mut key);
                let mut record = FutureRecord::to(&topic)
                    .payload(&payload[..])
                    .key(key.as_bytes());
                // No header list at all (not an empty one) when none is configured.
                if !self.headers.is_empty() {
                    let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
                    for (name, field) in &self.headers {
                        value.clear();
                        push_field(chunk, event, field, &mut value);
                        headers = headers.insert(Header {
                            key: name,
                            value: Some(value.as_bytes()),
                        });
                    }
                    record = record.headers(headers);
                }
                loop {
                    match self.producer.send_result(record) {
                        Ok(report) => {
                            reports.push(report);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            tokio::time::sleep(QUEUE_FULL_WAIT).await;
                        }
                        Err((error, _)) => return Err(classify(&self.name, &error)),
                    }
                }
            }
            tokio::select! {
                error = self.collect(reports) => match error {
                    Some(error) => Err(error),
                    None => Ok(bytes),
                },
                reason = self.authentication_failed() => {
                    // The messages would wait in librdkafka's queue until `message.timeout.ms`;
                    // take them out so that a retry or the dead-letter file has them alone.
                    self.producer.purge(PurgeConfig::default().queue().inflight());
                    Err(SinkError::Permanent(format!(
                        "kafka sink `{}`: authentication failed: {reason}",
                        self.name
                    )))
                }
                reason = self.brokers_down() => {
                    // As above: the attempt ends here, and a retry sends the batch again.
                    self.producer.purge(PurgeConfig::default().queue().inflight());
                    Err(SinkError::Retriable(format!(
                        "kafka sink `{}`: all brokers down: {reason}",
                        self.name
                    )))
                }
            }
        })
    }

    fn healthcheck(&mut self) -> BoxFuture<'_, Result<Healthcheck, SinkError>> {
        let producer = self.producer.clone();
        let name = self.name.clone();
        // librdkafka says itself when every broker is down; the check is only there to see
        // that the cluster is back, so it costs nothing (and delays nothing) while all is well,
        // nor at start, where it would hold the first deliveries back.
        let known_down = self.health.failure().is_some() && !std::mem::take(&mut self.starting);
        let down = Arc::clone(&self.down);
        Box::pin(async move {
            if !known_down {
                return Ok(Healthcheck::NotChecked);
            }
            // Metadata from a broker: the cluster answers (a blocking call, off the runtime).
            tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, HEALTHCHECK_TIMEOUT)
                    .map(|_| ())
            })
            .await
            .map_err(|e| SinkError::Retriable(e.to_string()))?
            .map_err(|e| SinkError::Retriable(format!("kafka sink `{name}`: {e}")))?;
            down.send_if_modified(|down| std::mem::take(&mut down.active));
            Ok(Healthcheck::Passed)
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            // Short flushes in a loop rather than one long one: the agent aborts this task at
            // its shutdown deadline, which can only happen between two awaits.
            while self.producer.in_flight_count() > 0 {
                let producer = self.producer.clone();
                tokio::task::spawn_blocking(move || producer.flush(FLUSH_STEP))
                    .await
                    .map_err(|e| SinkError::Retriable(e.to_string()))?
                    .or_else(|e| match e {
                        KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => Ok(()),
                        e => Err(SinkError::Retriable(format!(
                            "kafka sink `{}`: flush: {e}",
                            self.name
                        ))),
                    })?;
            }
            Ok(())
        })
    }
}

/// How long a healthcheck waits for the cluster's metadata.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One step of the flush at shutdown.
const FLUSH_STEP: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_retrying_cannot_fix_are_permanent() {
        let cases = [
            (RDKafkaErrorCode::MessageSizeTooLarge, true),
            (RDKafkaErrorCode::UnknownTopicOrPartition, true),
            (RDKafkaErrorCode::TopicAuthorizationFailed, true),
            (RDKafkaErrorCode::MessageTimedOut, false),
            (RDKafkaErrorCode::NotEnoughReplicas, false),
            (RDKafkaErrorCode::BrokerTransportFailure, false),
        ];
        for (code, permanent) in cases {
            let error = classify("k", &KafkaError::MessageProduction(code));
            assert_eq!(
                matches!(error, SinkError::Permanent(_)),
                permanent,
                "{code:?}"
            );
        }
    }
}

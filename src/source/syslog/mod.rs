//! `type: syslog`: RFC 5424 and RFC 3164 messages over UDP, TCP (octet counting or newline
//! framing, [`framing`]) and Unix sockets ([`listen`]), parsed ([`parse`]) into the fields of a journal
//! record ([`write_record`]).
//!
//! Invariant: every message received becomes one record whose `message` holds what was not
//! recognised as a header: nothing sent is lost for not being well-formed syslog.

pub mod framing;
pub mod listen;
pub mod parse;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::JournalConfig;
use super::network::Record;
use crate::config::errors::ConfigError;
use crate::event::StaticFields;
use crate::event::json::write_json_str;
use crate::parse::{FilterConfig, TimestampConfig};
use parse::{Message, TimestampKind, facility_name, severity_name};

/// Settings of a `type: syslog` source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSourceConfig {
    /// The transport.
    #[serde(default)]
    pub mode: Mode,
    /// Where to listen (`udp`, `tcp`); loopback by default: the pod's containers share it.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// The socket's path (`unix_datagram`, `unix_stream`), in a volume the senders mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The longest message taken; a longer one is cut (over TCP) or refused (datagrams).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Connections served at once (`tcp`, `unix_stream`); more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TLS (`tcp` only), when set (else clear text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::source::tls::TlsConfig>,
    /// The journal's size and durability.
    #[serde(default)]
    pub journal: JournalConfig,
    /// Keys added to every event of the source.
    #[serde(default, skip_serializing_if = "StaticFields::is_empty")]
    pub fields: StaticFields,
    /// Keeps or drops events by a regex on a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterConfig>,
    /// Which field holds the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampConfig>,
}

/// The transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A datagram a message; dropped (and counted) when the journal is full.
    #[default]
    Udp,
    /// A stream of messages, each `LENGTH SP MESSAGE` (RFC 6587 octet counting) or ended by a
    /// newline or a NUL; reading stops while the journal is full.
    Tcp,
    /// A Unix datagram socket at `path` (as `/dev/log`); senders block while the journal is full.
    UnixDatagram,
    /// A Unix stream socket at `path`, framed as `tcp`.
    UnixStream,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5140))
}

fn default_max_message_bytes() -> usize {
    64 * 1024
}

fn default_max_connections() -> usize {
    256
}

impl SyslogSourceConfig {
    /// Checks the settings and makes `path` absolute from `base_dir`.
    pub fn resolve(mut self, key: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let unix = matches!(self.mode, Mode::UnixDatagram | Mode::UnixStream);
        match (&self.path, unix) {
            (None, true) => {
                return Err(ConfigError::invalid(
                    format!("{key}.path"),
                    "required with a unix_* mode",
                ));
            }
            (Some(_), false) => {
                return Err(ConfigError::invalid(
                    format!("{key}.path"),
                    "only used with mode unix_datagram or unix_stream",
                ));
            }
            _ => {}
        }
        self.path = self.path.map(|path| base_dir.join(path));
        if self.tls.is_some() && self.mode != Mode::Tcp {
            return Err(ConfigError::invalid(
                format!("{key}.tls"),
                "only used with mode tcp",
            ));
        }
        self.tls = self.tls.map(|tls| tls.resolve(base_dir));
        if !(1..=super::network::MAX_RECORD_BYTES / 8).contains(&self.max_message_bytes) {
            return Err(ConfigError::invalid(
                format!("{key}.max_message_bytes"),
                format!(
                    "must be between 1 and {}",
                    super::network::MAX_RECORD_BYTES / 8
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.max_connections"),
                "must be at least 1",
            ));
        }
        Ok(self)
    }
}

/// Appends the journal record of one message (`peer`: who sent it, when known).
pub fn write_record(out: &mut Vec<u8>, input: &[u8], peer: Option<&str>) {
    let message = parse::parse(input);
    let mut record = Record::begin(out);
    record.text("message", message.message);
    write_header(&mut record, &message);
    if let Some(peer) = peer {
        record.text("peer", peer.as_bytes());
    }
    record.end();
}

fn write_header(record: &mut Record<'_>, message: &Message<'_>) {
    if let Some(name) = message.facility.and_then(facility_name) {
        record.text("facility", name.as_bytes());
    }
    if let Some(name) = message.severity.and_then(severity_name) {
        record.text("severity", name.as_bytes());
    }
    if let Some(version) = message.version {
        record.number("version", u64::from(version));
    }
    match (message.timestamp, message.timestamp_kind) {
        // RFC 3339: the event's own time, as a JSON line's `timestamp` is.
        (Some(time), TimestampKind::Rfc3339) => {
            record.text("timestamp", time.as_bytes());
        }
        // No year and no zone: kept as written, beside the time it was received.
        (Some(time), TimestampKind::Bsd) => {
            record.text("syslog_timestamp", time.as_bytes());
        }
        _ => {}
    }
    let header = [
        ("hostname", message.hostname),
        ("appname", message.app_name),
        ("procid", message.proc_id),
        ("msgid", message.msg_id),
    ];
    for (key, value) in header {
        if let Some(value) = value {
            record.text(key, value.as_bytes());
        }
    }
    if !message.structured_data.is_empty() {
        let mut data = Vec::new();
        data.push(b'{');
        for (i, element) in message.structured_data.iter().enumerate() {
            if i > 0 {
                data.push(b',');
            }
            write_json_str(&mut data, element.id.as_bytes());
            data.extend_from_slice(b":{");
            for (j, (name, value)) in element.params.iter().enumerate() {
                if j > 0 {
                    data.push(b',');
                }
                write_json_str(&mut data, name.as_bytes());
                data.push(b':');
                write_json_str(&mut data, value.as_bytes());
            }
            data.push(b'}');
        }
        data.push(b'}');
        record.json("structured_data", &data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_table() {
        let cases: &[(&[u8], Option<&str>, &str)] = &[
            (b"<14>hello", None, r#"{"message":"hello","facility":"user","severity":"info"}"#),
            (
                b"<13>1 2026-12-07T02:46:00.123456+00:00 host user - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] hi",
                Some("127.0.0.1:5"),
                r#"{"message":"hi","facility":"user","severity":"notice","version":1,"timestamp":"2026-12-07T02:46:00.123456+00:00","hostname":"host","appname":"user","structured_data":{"timeQuality":{"tzKnown":"1","isSynced":"0"}},"peer":"127.0.0.1:5"}"#,
            ),
            (
                b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed",
                None,
                r#"{"message":"'su root' failed","facility":"auth","severity":"crit","syslog_timestamp":"Oct 11 22:14:15","hostname":"mymachine","appname":"su","procid":"123"}"#,
            ),
            (b"no header \xff", None, r#"{"message":"no header \ufffd"}"#),
            (
                b"<165>1 - - - - - [a@1 q=\"say \\\"hi\\\"\"]",
                None,
                r#"{"message":"","facility":"local4","severity":"notice","version":1,"structured_data":{"a@1":{"q":"say \"hi\""}}}"#,
            ),
        ];
        for (input, peer, expected) in cases {
            let mut out = Vec::new();
            write_record(&mut out, input, *peer);
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let want: serde_json::Value = serde_json::from_str(expected).unwrap();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(input));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}

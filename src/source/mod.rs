//! Sources: where events come from: files on disk, and the network (`http`, `syslog`).
//!
//! A network source ([`network`], [`http`], [`syslog`]) writes what it receives to its
//! [`journal`] and answers the sender once it is durable; its tailer reads the journal's
//! segments as it reads any file, so acks and checkpoints work the same for both.
//!
//! The file source discovers files by glob ([`discovery`]), is woken by `notify` events
//! ([`watcher`]) with a periodic rescan as the backstop, reads and frames lines ([`framing`]),
//! identifies files by device, inode and a fingerprint of their head ([`fingerprint`]), and
//! registers what it reads with the [`crate::checkpoint`] store. It knows nothing of sinks: the
//! [`tailer`] hands each chunk of lines to a callback. The watched directory belongs to another
//! container: discovery does not follow links by default and [`open`] opens without following
//! one swapped in, never blocking on a FIFO.

pub mod chunking;
pub mod compression;
pub mod discovery;
pub mod fingerprint;
pub mod framing;
mod head_index;
pub mod http;
pub mod journal;
pub mod marks;
pub mod network;
pub mod open;
pub mod otlp;
pub mod path_list;
pub mod retention;
pub mod rotation;
pub mod syslog;
pub mod tailer;
pub mod tls;
pub mod watcher;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};

use crate::config::errors::{ConfigError, from_value};
use crate::event::StaticFields;
use crate::event::enrichment::{PodIdentity, reserved_key};
use crate::parse::multiline::MultilineConfig;
use crate::parse::regex::RegexParser;
use crate::parse::{FilterConfig, Format, ParseSettings, Pattern, TimestampConfig};

/// One source of the configuration.
#[derive(Debug, Clone, Serialize)]
pub struct SourceConfig {
    /// What kind of source, with its settings.
    #[serde(flatten)]
    pub kind: SourceKind,
    /// The tailer's settings over a network source's journal, made by
    /// [`SourceConfig::resolve`] (`None` for a `file` source, which is its own).
    #[serde(skip)]
    pub journal_tail: Option<Box<FileSourceConfig>>,
}

/// The source types, tagged by `type:`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    /// Tail files matched by globs.
    File(Box<FileSourceConfig>),
    /// Events POSTed over HTTP, journaled.
    Http(http::HttpSourceConfig),
    /// Syslog messages over UDP, TCP or a Unix socket, journaled.
    Syslog(syslog::SyslogSourceConfig),
    /// OpenTelemetry logs over gRPC and HTTP, journaled.
    Otlp(otlp::OtlpSourceConfig),
}

/// The source types' names, as `type:` takes them.
pub const SOURCE_TYPES: &[&str] = &["file", "http", "otlp", "syslog"];

impl SourceKind {
    /// Reads the settings of a source of type `kind` found at `key`.
    pub fn from_parts(key: &str, kind: &str, rest: Mapping) -> Result<Self, ConfigError> {
        match kind {
            "file" => Ok(SourceKind::File(from_value(key, Value::Mapping(rest))?)),
            "http" => Ok(SourceKind::Http(from_value(key, Value::Mapping(rest))?)),
            "syslog" => Ok(SourceKind::Syslog(from_value(key, Value::Mapping(rest))?)),
            "otlp" => Ok(SourceKind::Otlp(from_value(key, Value::Mapping(rest))?)),
            other => Err(ConfigError::invalid(
                format!("{key}.type"),
                format!("unknown source type `{other}`, expected one of file, http, otlp, syslog"),
            )),
        }
    }
}

impl SourceConfig {
    /// Checks the settings and makes relative paths absolute from `base_dir`; a network
    /// source's tailer reads its journal under `data_dir`.
    pub fn resolve(self, key: &str, base_dir: &Path, data_dir: &Path) -> Result<Self, ConfigError> {
        let name = key.strip_prefix("sources.").unwrap_or(key);
        let journal_tail = |journal: &journal::JournalConfig,
                            fields: &serde_json::Map<String, serde_json::Value>,
                            filter: Option<&crate::parse::FilterConfig>,
                            timestamp: Option<&TimestampConfig>|
         -> Result<Box<FileSourceConfig>, ConfigError> {
            journal.check().map_err(|(field, message)| {
                ConfigError::invalid(format!("{key}.journal.{field}"), message)
            })?;
            let tail = network::journal_tail(
                &network::journal_dir(data_dir, name),
                fields,
                filter,
                timestamp,
            );
            tail.check_parsing(key)?;
            Ok(Box::new(tail))
        };
        let (kind, tail) = match self.kind {
            SourceKind::File(file) => (
                SourceKind::File(Box::new(file.resolve(key, base_dir)?)),
                None,
            ),
            SourceKind::Http(mut http) => {
                http.tls = http.tls.map(|tls| tls.resolve(base_dir));
                if !http.path.starts_with('/') {
                    return Err(ConfigError::invalid(
                        format!("{key}.path"),
                        "must start with `/`",
                    ));
                }
                if http.max_request_bytes == 0 {
                    return Err(ConfigError::invalid(
                        format!("{key}.max_request_bytes"),
                        "must be at least 1",
                    ));
                }
                let tail = journal_tail(
                    &http.journal,
                    &http.fields,
                    http.filter.as_ref(),
                    http.timestamp.as_ref(),
                )?;
                (SourceKind::Http(http), Some(tail))
            }
            SourceKind::Syslog(syslog) => {
                let syslog = syslog.resolve(key, base_dir)?;
                let tail = journal_tail(
                    &syslog.journal,
                    &syslog.fields,
                    syslog.filter.as_ref(),
                    syslog.timestamp.as_ref(),
                )?;
                (SourceKind::Syslog(syslog), Some(tail))
            }
            SourceKind::Otlp(mut otlp) => {
                otlp.tls = otlp.tls.map(|tls| tls.resolve(base_dir));
                if otlp.grpc_address.is_none() && otlp.http_address.is_none() {
                    return Err(ConfigError::invalid(
                        format!("{key}.grpc_address"),
                        "grpc_address and http_address are both null: nothing would be served",
                    ));
                }
                if otlp.max_request_bytes == 0 || otlp.max_request_bytes > network::MAX_RECORD_BYTES
                {
                    return Err(ConfigError::invalid(
                        format!("{key}.max_request_bytes"),
                        format!("must be between 1 and {}", network::MAX_RECORD_BYTES),
                    ));
                }
                let tail = journal_tail(
                    &otlp.journal,
                    &otlp.fields,
                    otlp.filter.as_ref(),
                    otlp.timestamp.as_ref(),
                )?;
                (SourceKind::Otlp(otlp), Some(tail))
            }
        };
        Ok(SourceConfig {
            kind,
            journal_tail: tail,
        })
    }

    /// What the source's tailer reads: the files of a `file` source, the journal of a
    /// network one.
    pub fn tailed(&self) -> Option<&FileSourceConfig> {
        match &self.kind {
            SourceKind::File(file) => Some(file),
            _ => self.journal_tail.as_deref(),
        }
    }

    /// [`SourceConfig::tailed`], to change.
    pub fn tailed_mut(&mut self) -> Option<&mut FileSourceConfig> {
        match &mut self.kind {
            SourceKind::File(file) => Some(file),
            _ => self.journal_tail.as_deref_mut(),
        }
    }
}

/// Where to start reading files found at the agent's very first start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From their first byte.
    #[default]
    Beginning,
    /// From their current end: only lines written from now on.
    End,
}

/// Settings of a `type: file` source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Globs of files to read.
    pub include: Vec<String>,
    /// Globs of files not to read, even if included.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in files present at the very first start (no checkpoints yet). Files
    /// found later are always read from their start.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How lines are parsed.
    #[serde(default)]
    pub format: Format,
    /// The regular expression of `format: regex`, whose named captures become fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
    /// How lines are grouped into multiline events (stack traces), if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiline: Option<MultilineConfig>,
    /// Which parsed field holds the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampConfig>,
    /// Keys added to every event of the source.
    #[serde(default, skip_serializing_if = "StaticFields::is_empty")]
    pub fields: StaticFields,
    /// Keeps or drops events by a regex on a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterConfig>,
    /// The pod's identity from the Downward API environment, added under `kubernetes`; set
    /// where the configuration is loaded, not written in it.
    #[serde(skip)]
    pub kubernetes: PodIdentity,
    /// Longer lines are cut to this many bytes and flagged `truncated`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often globs are expanded again and open files checked, whatever `notify` says.
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// How long a file that was renamed away or deleted is still read after its last growth.
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// How many leading bytes identify a file.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// At most this many files are open at once; the others wait their turn.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Follow symbolic links found below the globs' watch roots (their targets must still be
    /// regular files). Off by default: the watched directory belongs to another container,
    /// and a link in it could point at the agent's own secrets; such links are reported and
    /// counted (`skipped_symlinks`), never read.
    #[serde(default)]
    pub follow_symlinks: bool,
    /// Deletes delivered rotated files to keep the files under a size (needs the volume
    /// mounted writable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<retention::RetentionConfig>,
    /// The files are journal segments ([`journal`]) whose first line is a header, not a log
    /// line: a segment found without a checkpoint is read from its second line. Set for a
    /// network source's tailer, never written in a configuration.
    #[serde(skip)]
    pub journal: bool,
}

fn default_max_line_bytes() -> usize {
    1024 * 1024
}

fn default_scan_interval_ms() -> u64 {
    1_000
}

fn default_rotate_wait_ms() -> u64 {
    5_000
}

fn default_fingerprint_bytes() -> usize {
    1024
}

fn default_max_open_files() -> usize {
    1024
}

/// The largest accepted `max_line_bytes` (positions in a read buffer are 32-bit).
const MAX_LINE_BYTES: usize = 1 << 30;

/// The largest accepted `fingerprint_bytes`.
const MAX_FINGERPRINT_BYTES: usize = 64 * 1024;

impl FileSourceConfig {
    /// What parsing needs of this source's settings.
    pub fn parsing(&self) -> ParseSettings<'_> {
        ParseSettings {
            format: self.format,
            pattern: self.pattern.as_ref(),
            multiline: self.multiline.as_ref(),
            timestamp: self.timestamp.as_ref(),
            filter: self.filter.as_ref(),
            max_line_bytes: self.max_line_bytes,
            fields: &self.fields,
            kubernetes: &self.kubernetes,
        }
    }

    fn resolve(mut self, key: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        if self.include.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.include"),
                "at least one glob is needed",
            ));
        }
        for (field, patterns) in [
            ("include", &mut self.include),
            ("exclude", &mut self.exclude),
        ] {
            for pattern in patterns.iter_mut() {
                *pattern = base_dir.join(&*pattern).to_string_lossy().into_owned();
                glob::Pattern::new(pattern).map_err(|e| {
                    ConfigError::invalid(format!("{key}.{field}"), format!("`{pattern}`: {e}"))
                })?;
            }
        }
        let limits = [
            ("max_line_bytes", self.max_line_bytes, 1, MAX_LINE_BYTES),
            (
                "fingerprint_bytes",
                self.fingerprint_bytes,
                1,
                MAX_FINGERPRINT_BYTES,
            ),
            ("max_open_files", self.max_open_files, 1, usize::MAX),
            (
                "scan_interval_ms",
                self.scan_interval_ms as usize,
                10,
                usize::MAX,
            ),
        ];
        for (field, value, min, max) in limits {
            if value < min || value > max {
                return Err(ConfigError::invalid(
                    format!("{key}.{field}"),
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        if self.retention.is_some_and(|r| r.max_bytes == 0) {
            return Err(ConfigError::invalid(
                format!("{key}.retention.max_bytes"),
                "must be at least 1",
            ));
        }
        self.check_parsing(key)?;
        Ok(self)
    }

    /// The checks of `format`, `pattern`, `multiline`, `timestamp`, `fields` and `filter`.
    pub(crate) fn check_parsing(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.pattern, self.format) {
            (None, Format::Regex) => {
                return Err(ConfigError::invalid(
                    format!("{key}.pattern"),
                    "required with `format: regex`",
                ));
            }
            (Some(pattern), Format::Regex) => {
                RegexParser::new(pattern)
                    .map_err(|e| ConfigError::invalid(format!("{key}.pattern"), e.to_string()))?;
            }
            (Some(_), _) => {
                return Err(ConfigError::invalid(
                    format!("{key}.pattern"),
                    "only used with `format: regex`",
                ));
            }
            (None, _) => {}
        }
        if let Some(multiline) = &self.multiline {
            multiline
                .check()
                .map_err(|e| ConfigError::invalid(format!("{key}.multiline"), e.to_string()))?;
        }
        if self.timestamp.is_some() && !self.format.has_fields() {
            return Err(ConfigError::invalid(
                format!("{key}.timestamp"),
                "needs a format with fields (cri and docker lines carry their own time)",
            ));
        }
        if let Some(reserved) = reserved_key(&self.fields) {
            return Err(ConfigError::invalid(
                format!("{key}.fields.{reserved}"),
                "the agent writes this key itself",
            ));
        }
        Ok(())
    }
}

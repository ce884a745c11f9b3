//! Secrets in sink settings: given as a value, an environment variable or a file, read when the
//! sink is built; and how the settings that hold them are printed.
//!
//! Invariant: the printed configuration (`log-agent validate`, a reload's log) never shows a
//! secret's value: a secret is printed as [`REDACTED`] or as where it is read from, a header's
//! value unless its name is known to be harmless, a librdkafka option's value when its name
//! speaks of a secret, and a URI's user info and query values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize, Serializer};

use crate::config::errors::ConfigError;

/// What a secret is printed as.
pub const REDACTED: &str = "<redacted>";

/// A secret's value, or where to read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// Written in the configuration (perhaps through `${VAR}`).
    Value(String),
    /// Read from the environment or a file when the sink is built.
    From(SecretRef),
}

/// Where a secret is read from: exactly one of `env` and `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// An environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file; its trailing newline is not part of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Secret::Value(_) => serializer.serialize_str(REDACTED),
            Secret::From(from) => from.serialize(serializer),
        }
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable `{0}` is not set")]
    Env(String),
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Neither `env` nor `file` is given (the configuration check catches this first).
    #[error("neither `env` nor `file` is given")]
    Nowhere,
}

impl Secret {
    /// Reads the secret, from the process environment for `env`.
    pub fn resolve(&self) -> Result<String, SecretError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// Reads the secret, looking environment variables up with `env`.
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, SecretError> {
        match self {
            Secret::Value(value) => Ok(value.clone()),
            Secret::From(SecretRef {
                env: Some(name), ..
            }) => env(name).ok_or_else(|| SecretError::Env(name.clone())),
            Secret::From(SecretRef {
                file: Some(path), ..
            }) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
            Secret::From(SecretRef {
                env: None,
                file: None,
            }) => Err(SecretError::Nowhere),
        }
    }

    /// Checks that a secret read from elsewhere says from where, exactly once.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        match self {
            Secret::From(SecretRef { env, file }) if env.is_some() == file.is_some() => Err(
                ConfigError::invalid(key, "expected a value, or exactly one of `env` and `file`"),
            ),
            _ => Ok(()),
        }
    }

    /// Makes a relative secret file absolute from `base_dir`.
    pub fn resolve_path(&mut self, base_dir: &Path) {
        if let Secret::From(SecretRef {
            file: Some(path), ..
        }) = self
        {
            *path = base_dir.join(&*path);
        }
    }
}

/// Headers whose values are printed: a short list known to hold nothing secret. Every other
/// header's plain value is printed as `<redacted>` (`X-Auth`, `X-Api-Key`, a custom token...):
/// a header name cannot tell whether its value is a secret.
const HARMLESS_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-type",
    "user-agent",
    "x-scope-orgid",
];

fn is_harmless_header(name: &str) -> bool {
    HARMLESS_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// Serializes headers with every value but those of [`HARMLESS_HEADERS`] as [`REDACTED`].
pub fn redacted_headers<S: Serializer>(
    headers: &BTreeMap<String, Secret>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Shown<'a> {
        Plain(&'a str),
        Secret(&'a Secret),
    }
    let shown: BTreeMap<&str, Shown<'_>> = headers
        .iter()
        .map(|(name, value)| {
            let shown = match value {
                Secret::Value(plain) if is_harmless_header(name) => Shown::Plain(plain),
                other => Shown::Secret(other),
            };
            (name.as_str(), shown)
        })
        .collect();
    shown.serialize(serializer)
}

/// `uri` as it may be printed: its user info and the values of its query (`?api_key=...`)
/// replaced by `redacted`.
pub fn redact_uri(uri: &str) -> String {
    let Ok(mut url) = Url::parse(uri) else {
        return uri.to_owned();
    };
    if !url.username().is_empty() {
        let _ = url.set_username("redacted");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(key, _)| key.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|key| (key.as_str(), "redacted")));
    }
    url.to_string()
}

/// Serializes an optional URI through [`redact_uri`].
pub fn redacted_optional_uri<S: Serializer>(
    uri: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match uri {
        Some(uri) => serializer.serialize_some(&redact_uri(uri)),
        None => serializer.serialize_none(),
    }
}

/// Serializes a URI through [`redact_uri`].
pub fn redacted_uri<S: Serializer>(uri: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_uri(uri))
}

/// Words in a librdkafka option's name that say its value is (or holds) a secret:
/// `sasl.password`, `ssl.key.pem`, `ssl.keystore.password`, `sasl.oauthbearer.config` (a
/// client secret inside), `sasl.oauthbearer.client.secret`, a JAAS config...
const SECRET_OPTION_WORDS: &[&str] = &[
    "password",
    "secret",
    "key",
    "token",
    "pem",
    "jaas",
    "oauthbearer.config",
    "oauthbearer.extensions",
    "credential",
];

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_OPTION_WORDS.iter().any(|word| key.contains(word))
}

/// Serializes librdkafka options with the value of every option whose name speaks of a
/// secret (see [`SECRET_OPTION_WORDS`]) as [`REDACTED`].
pub fn redacted_options<S: Serializer>(
    options: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = options
        .iter()
        .map(|(k, v)| (k.as_str(), if is_secret(k) { REDACTED } else { v.as_str() }))
        .collect();
    shown.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_which_values_are_printed() {
        // (librdkafka option, its value hidden)
        let options = [
            ("sasl.password", true),
            ("ssl.key.pem", true),
            ("ssl.keystore.password", true),
            ("sasl.oauthbearer.config", true),
            ("sasl.jaas.config", true),
            ("security.protocol", false),
            ("sasl.mechanism", false),
            ("compression.type", false),
        ];
        for (name, hidden) in options {
            assert_eq!(is_secret(name), hidden, "{name}");
        }
        // (header, its plain value printed)
        let headers = [
            ("Content-Type", true),
            ("X-Scope-OrgID", true),
            ("Authorization", false),
            ("X-Api-Key", false),
            ("X-Custom", false),
        ];
        for (name, shown) in headers {
            assert_eq!(is_harmless_header(name), shown, "{name}");
        }
    }

    #[test]
    fn uris_lose_their_user_info_and_query_values() {
        let cases = [
            (
                "https://u:p@es:9200/_bulk",
                "https://redacted:redacted@es:9200/_bulk",
            ),
            (
                "http://loki:3100/x?api_key=s3cr3t",
                "http://loki:3100/x?api_key=redacted",
            ),
            ("http://plain:8080/", "http://plain:8080/"),
            ("not a uri", "not a uri"),
        ];
        for (uri, shown) in cases {
            assert_eq!(redact_uri(uri), shown, "{uri}");
        }
    }
}

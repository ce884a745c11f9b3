//! Configuration errors as a user reads them: every error of the file, each naming the full
//! path of its key (`sinks.out.batch.max_events`), in the user's terms (a whole number, a list,
//! true or false) rather than Rust's (`usize`, `a sequence`), with the nearest key or value
//! suggested for a typo.
//!
//! Serde stops at the first error of a value. [`from_value`] goes on: it takes the key at fault
//! out of the value and deserializes again, so each key's error is reported once, and the
//! errors that only follow from a key taken out (that key now missing) are not.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_norway::Value;

/// A configuration error: one naming the file, line or key at fault, or several.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `${...}` interpolation failed.
    #[error("config {0}")]
    Interpolation(#[from] super::InterpolationError),
    /// The text is not YAML.
    #[error("config: {0}")]
    Syntax(String),
    /// A key has a wrong value, is unknown, or is missing.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key (`sinks.out.batch`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// Every error of the file, one a line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// An error about `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// `errors` as one error: the only one, or all of them.
    pub fn all(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Many(errors)),
        }
    }

    /// The errors one by one.
    pub fn flatten(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Many(errors) => errors.into_iter().flat_map(Self::flatten).collect(),
            one => vec![one],
        }
    }
}

/// Most errors [`from_value`] reports for one value before it gives up.
const MAX_ERRORS: usize = 50;

/// Deserializes `T` from a YAML value found at `key`, reporting every key at fault.
pub(crate) fn from_value<T: DeserializeOwned>(key: &str, value: Value) -> Result<T, ConfigError> {
    from_value_with(key, value, &[])
}

/// [`from_value`], where `also_valid` are keys handled elsewhere that a typo may be close to
/// (a sink's `inputs`, `batch`... beside its type's own keys).
pub(crate) fn from_value_with<T: DeserializeOwned>(
    key: &str,
    value: Value,
    also_valid: &[&str],
) -> Result<T, ConfigError> {
    match lenient(key, value, also_valid) {
        (Some(parsed), errors) if errors.is_empty() => Ok(parsed),
        (_, errors) => {
            Err(ConfigError::all(errors).unwrap_or_else(|| ConfigError::invalid(key, "invalid")))
        }
    }
}

/// Deserializes `T` from `value` (found at `key`), taking out each key at fault until the rest
/// deserializes: what is left, if anything, and the error of each key taken out (or of the
/// value as a whole).
pub(crate) fn lenient<T: DeserializeOwned>(
    key: &str,
    mut value: Value,
    also_valid: &[&str],
) -> (Option<T>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    // Keys taken out, as dotted paths below `key`.
    let mut removed: BTreeSet<String> = BTreeSet::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => return (Some(parsed), errors),
            Err(error) => error,
        };
        let segments = segments(error.path());
        let message = error.into_inner().to_string();
        let (at, message, removable) = match missing_field(&message) {
            Some(field) => {
                let mut at = segments.unwrap_or_default();
                at.push(field.to_owned());
                if removed.contains(&at.join(".")) {
                    // Missing only because its bad value was taken out: said already.
                    break;
                }
                (at, "missing (required)".to_owned(), false)
            }
            None => {
                let removable = segments.is_some();
                (
                    segments.unwrap_or_default(),
                    humanize(&message, also_valid),
                    removable,
                )
            }
        };
        let full_key = join_key(key, &at);
        errors.push(if full_key.is_empty() {
            ConfigError::Syntax(message)
        } else {
            ConfigError::invalid(full_key, message)
        });
        // Take the key out and go on, when it can be found and is not the whole value.
        if !removable || at.is_empty() || errors.len() >= MAX_ERRORS || !remove(&mut value, &at) {
            break;
        }
        removed.insert(at.join("."));
    }
    (None, errors)
}

/// The path of an error as keys and indexes, or `None` when serde lost track of it.
fn segments(path: &serde_path_to_error::Path) -> Option<Vec<String>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn join_key(prefix: &str, path: &[String]) -> String {
    let inner = path.join(".");
    match (prefix.is_empty(), inner.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => inner,
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// Takes the node at `path` out of `value`; false when there is none.
fn remove(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        let next = match node {
            Value::Mapping(map) => map.get_mut(segment.as_str()),
            Value::Sequence(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        Value::Mapping(map) => map.remove(last.as_str()).is_some(),
        Value::Sequence(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// `x` of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The names between backticks of a serde list (`` `a`, `b` ``).
fn backticked(list: &str) -> Vec<&str> {
    list.split('`').skip(1).step_by(2).collect()
}

/// The candidate closest to `word`, when close enough to be a typo of it.
pub(crate) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` when one of `candidates` is close to `word`, else nothing.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    nearest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// A type as serde names it, in the user's terms.
fn expected_in_words(expected: &str) -> String {
    let expected = expected.trim();
    let words = match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number (0 or more)",
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number",
        "f64" | "f32" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "string" => "text",
        "a sequence" | "sequence" => "a list",
        "a map" | "map" | "a YAML mapping" => "a mapping (`key: value` lines)",
        "a character" | "char" => "a single character",
        other if other.starts_with("struct ") => "a mapping (`key: value` lines)",
        other => other,
    };
    words.to_owned()
}

/// What serde says it got (`string "lots"`, ``integer `-1` ``), in the user's terms.
fn got_in_words(got: &str) -> String {
    let got = got.trim();
    let quoted = |rest: &str| rest.trim().trim_matches('`').to_owned();
    if let Some(rest) = got.strip_prefix("string ") {
        format!("the text {}", rest.trim())
    } else if let Some(rest) = got.strip_prefix("integer ") {
        quoted(rest)
    } else if let Some(rest) = got.strip_prefix("floating point ") {
        quoted(rest)
    } else if let Some(rest) = got.strip_prefix("boolean ") {
        quoted(rest)
    } else {
        match got {
            "sequence" => "a list".to_owned(),
            "map" => "a mapping".to_owned(),
            "unit value" | "unit" => "nothing".to_owned(),
            other => other.to_owned(),
        }
    }
}

/// A serde message in the user's terms, with a suggestion for a typo.
fn humanize(message: &str, also_valid: &[&str]) -> String {
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "expected {}, got {}",
            expected_in_words(expected),
            got_in_words(got)
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let mut valid = backticked(expected);
        valid.extend_from_slice(also_valid);
        let suggestion = did_you_mean(field, &valid);
        return if !suggestion.is_empty() {
            format!("unknown key{suggestion}")
        } else if valid.is_empty() {
            "unknown key (there are no keys here)".to_owned()
        } else {
            format!("unknown key (the keys here: {})", valid.join(", "))
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((variant, expected)) = rest.split_once('`')
    {
        let valid = backticked(expected);
        return format!(
            "unknown value `{variant}`, expected one of {}{}",
            valid.join(", "),
            did_you_mean(variant, &valid)
        );
    }
    if message.contains("untagged enum Secret") {
        return "expected a value, or a mapping with `env: VAR` or `file: PATH`".to_owned();
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        #[serde(default)]
        max_events: usize,
        #[serde(default)]
        timeout_ms: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "snake_case")]
    enum WhenFull {
        Block,
        DropNewest,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sink {
        path: String,
        #[serde(default)]
        fsync: bool,
        #[serde(default)]
        batch: Option<Batch>,
        #[serde(default)]
        when_full: Option<WhenFull>,
        #[serde(default)]
        inputs: Vec<String>,
    }

    #[test]
    fn every_error_in_the_users_terms_table() {
        // (YAML of sink `out`, expected errors)
        let cases: &[(&str, &[&str])] = &[
            ("path: /x", &[]),
            (
                "path: /x\nbatch: { max_events: lots }",
                &[
                    "config key `sinks.out.batch.max_events`: expected a whole number (0 or more), got the text \"lots\"",
                ],
            ),
            (
                "path: /x\nbatch: { max_events: -1 }",
                &[
                    "config key `sinks.out.batch.max_events`: expected a whole number (0 or more), got -1",
                ],
            ),
            (
                "path: /x\nfsync: maybe",
                &["config key `sinks.out.fsync`: expected true or false, got the text \"maybe\""],
            ),
            (
                "path: /x\ninputs: app",
                &["config key `sinks.out.inputs`: expected a list, got the text \"app\""],
            ),
            (
                "path: /x\nbatch: 5",
                &["config key `sinks.out.batch`: expected a mapping (`key: value` lines), got 5"],
            ),
            (
                "path: /x\nfsycn: true",
                &["config key `sinks.out.fsycn`: unknown key; did you mean `fsync`?"],
            ),
            (
                "path: /x\nwhen_full: drop_newset",
                &[
                    "config key `sinks.out.when_full`: unknown value `drop_newset`, expected one of block, drop_newest; did you mean `drop_newest`?",
                ],
            ),
            ("{}", &["config key `sinks.out.path`: missing (required)"]),
            // Every error at once; the key taken out is not reported again as missing.
            (
                "path: 5\nfsync: maybe\ncolour: red\nbatch: { max_events: lots, timeout_ms: soon }",
                &[
                    "config key `sinks.out.path`: expected text, got 5",
                    "config key `sinks.out.fsync`",
                    "config key `sinks.out.colour`: unknown key (the keys",
                    "config key `sinks.out.batch.max_events`",
                    "config key `sinks.out.batch.timeout_ms`",
                ],
            ),
        ];
        for (yaml, want) in cases {
            let value: Value = serde_norway::from_str(yaml).unwrap();
            let got = match from_value_with::<Sink>("sinks.out", value, &["retry"]) {
                Ok(_) => Vec::new(),
                Err(e) => e.flatten().iter().map(ToString::to_string).collect(),
            };
            assert_eq!(got.len(), want.len(), "{yaml}: {got:#?}");
            for fragment in *want {
                assert!(
                    got.iter().any(|line| line.starts_with(fragment)),
                    "{yaml}: no `{fragment}` in {got:#?}"
                );
            }
        }
    }

    #[test]
    fn suggestions_are_for_typos_only() {
        let keys = ["path", "encoding", "fsync", "batch"];
        let cases = [
            ("fsycn", Some("fsync")),
            ("encodng", Some("encoding")),
            ("batches", Some("batch")),
            ("colour", None),
            ("x", None),
        ];
        for (word, want) in cases {
            assert_eq!(nearest(word, &keys), want, "{word}");
        }
    }
}

//! Enrichment: keys every event of a source carries, computed once per source as a JSON
//! fragment that the encoder copies into each event.
//!
//! - `fields:` of the source, a static map (values of any YAML type, written as JSON);
//! - `kubernetes`: the pod's identity from the Downward API environment variables, only those
//!   set (and not empty), under one object. The variables are read once, where the
//!   configuration is loaded ([`PodIdentity::from_lookup`]), so tests pass their own.

use crate::event::StaticFields;
use crate::sink::encoding::{json_string, write_json_str};

/// The Downward API variables, and the key each becomes under `kubernetes`.
pub const POD_VARIABLES: [(&str, &str); 5] = [
    ("POD_NAME", "pod_name"),
    ("POD_NAMESPACE", "pod_namespace"),
    ("POD_UID", "pod_uid"),
    ("NODE_NAME", "node_name"),
    ("CONTAINER_NAME", "container_name"),
];

/// Keys of an event that static `fields` may not use: the agent writes them.
pub const RESERVED_KEYS: [&str; 14] = [
    "message",
    "timestamp",
    "file",
    "offset",
    "source",
    "id",
    "stream",
    "kubernetes",
    "truncated",
    "invalid_utf8",
    "parse_error",
    "multiline_cut",
    "timestamp_parse_failed",
    "timestamp_unparsed",
];

/// The pod the agent runs in, as far as the environment tells: (key, value) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity(pub Vec<(String, String)>);

impl PodIdentity {
    /// Reads the Downward API variables through `lookup` (the process environment, at the
    /// edge); unset and empty ones are left out.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        PodIdentity(
            POD_VARIABLES
                .iter()
                .filter_map(|(variable, key)| {
                    let value = lookup(variable).filter(|v| !v.is_empty())?;
                    Some(((*key).to_owned(), value))
                })
                .collect(),
        )
    }
}

/// The keys a source adds to each of its events.
#[derive(Debug, Default)]
pub struct Enrichment {
    /// `"key":value,` for each key, ready to copy.
    json: Box<str>,
    /// Where the `"kubernetes":{…},` part starts in `json` (its length when there is none).
    kubernetes_at: usize,
    /// The top-level keys, which a parsed field of the same name gives way to.
    keys: Box<[Box<str>]>,
}

impl Enrichment {
    /// The enrichment of static `fields` and a pod identity.
    pub fn new(fields: &StaticFields, pod: &PodIdentity) -> Self {
        let mut json = Vec::new();
        let mut keys: Vec<Box<str>> = Vec::new();
        for (key, value) in fields {
            write_json_str(&mut json, key.as_bytes());
            json.push(b':');
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut json, value);
            json.push(b',');
            keys.push(key.as_str().into());
        }
        let kubernetes_at = json.len();
        if !pod.0.is_empty() {
            json.extend_from_slice(b"\"kubernetes\":{");
            for (i, (key, value)) in pod.0.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(json_string(key).as_bytes());
                json.push(b':');
                json.extend_from_slice(json_string(value).as_bytes());
            }
            json.extend_from_slice(b"},");
            keys.push("kubernetes".into());
        }
        Enrichment {
            json: String::from_utf8_lossy(&json).into(),
            kubernetes_at,
            keys: keys.into(),
        }
    }

    /// The fragment without the pod identity: for files whose path names their pod (the
    /// kubelet's layout), whose `kubernetes` object comes from the path instead.
    pub fn json_without_pod(&self) -> &str {
        self.json.get(..self.kubernetes_at).unwrap_or(&self.json)
    }

    /// The fragment: `"key":value,` per key (empty when there are none).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Whether `key` is one of the enrichment's keys.
    pub fn has_key(&self, key: &str) -> bool {
        self.has_key_bytes(key.as_bytes())
    }

    /// Whether the agent adds `key` (as bytes), so that a parsed field of that name gives way.
    pub fn has_key_bytes(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|k| k.as_bytes() == key)
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The first key of `fields` that the agent writes itself, if any.
pub fn reserved_key(fields: &StaticFields) -> Option<&str> {
    fields
        .keys()
        .map(String::as_str)
        .find(|k| RESERVED_KEYS.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn pod_identity_takes_only_what_is_set() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("web-7d9f".to_owned()),
            "POD_NAMESPACE" => Some("shop".to_owned()),
            "NODE_NAME" => Some(String::new()),
            _ => None,
        };
        let pod = PodIdentity::from_lookup(env);
        assert_eq!(
            pod.0,
            [
                ("pod_name".to_owned(), "web-7d9f".to_owned()),
                ("pod_namespace".to_owned(), "shop".to_owned())
            ]
        );
        assert_eq!(PodIdentity::from_lookup(|_| None), PodIdentity::default());
    }

    #[test]
    fn fragment_is_valid_json_members() {
        let Value::Object(fields) = json!({"env": "prod", "team \"a\"": {"n": 1}, "tier": 2})
        else {
            unreachable!()
        };
        let pod = PodIdentity(vec![("pod_name".into(), "web\"1".into())]);
        let cases = [
            (StaticFields::new(), PodIdentity::default(), json!({})),
            (
                fields.clone(),
                PodIdentity::default(),
                json!({"env": "prod", "team \"a\"": {"n": 1}, "tier": 2}),
            ),
            (
                StaticFields::new(),
                pod.clone(),
                json!({"kubernetes": {"pod_name": "web\"1"}}),
            ),
            (
                fields,
                pod,
                json!({"env": "prod", "team \"a\"": {"n": 1}, "tier": 2, "kubernetes": {"pod_name": "web\"1"}}),
            ),
        ];
        for (fields, pod, want) in cases {
            let enrichment = Enrichment::new(&fields, &pod);
            let object = format!("{{{}\"end\":0}}", enrichment.json());
            let mut got: Value = serde_json::from_str(&object).unwrap();
            got.as_object_mut().unwrap().remove("end");
            assert_eq!(got, want);
            for key in want.as_object().unwrap().keys() {
                assert!(enrichment.has_key(key), "{key}");
            }
            assert!(!enrichment.has_key("message"));
        }
    }

    #[test]
    fn reserved_keys_are_found() {
        let Value::Object(fields) = json!({"env": 1, "offset": 2}) else {
            unreachable!()
        };
        assert_eq!(reserved_key(&fields), Some("offset"));
        assert_eq!(reserved_key(&StaticFields::new()), None);
    }
}

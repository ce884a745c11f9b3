//! Enrichment: keys every event of a source carries, computed once per source as a JSON
//! fragment that the encoder copies into each event.
//!
//! - `fields:` of the source, a static map (values of any YAML type, written as JSON);
//! - `kubernetes`: the pod's identity as the configuration names it (`kubernetes:`, usually
//!   `${POD_NAME}` and the like, set by the Downward API), only the keys that are set, under one
//!   object. Nothing is read from the environment unless the configuration asks for it.
//!
//! A file whose path names its pod (the kubelet's layout) carries that pod's object instead,
//! with the node's name added when the identity has one.

use super::StaticFields;
use super::json::{json_string, write_json_str};

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

/// The identity stamped on a source's events as `kubernetes`: (key, value) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity(pub Vec<(String, String)>);

impl PodIdentity {
    /// The value of `key` (`node_name`...), if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }
}

/// The keys a source adds to each of its events.
#[derive(Debug, Default)]
pub struct Enrichment {
    /// `"key":value,` for each key, ready to copy.
    json: Box<str>,
    /// Where the `"kubernetes":{…},` part starts in `json` (its length when there is none).
    kubernetes_at: usize,
    /// `,"node_name":"…"`, added to the object of a file whose path names its pod.
    node_member: Box<str>,
    /// The top-level keys, which a parsed field of the same name gives way to.
    keys: Box<[Box<str>]>,
    /// The static fields, for sinks that write them other than as JSON (OTLP attributes).
    fields: StaticFields,
    /// The pod identity, likewise (OTLP resource attributes).
    pod: PodIdentity,
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
        let node_member = pod
            .get("node_name")
            .map(|node| format!(",\"node_name\":{}", json_string(node)))
            .unwrap_or_default();
        Enrichment {
            json: String::from_utf8_lossy(&json).into(),
            kubernetes_at,
            node_member: node_member.into(),
            keys: keys.into(),
            fields: fields.clone(),
            pod: pod.clone(),
        }
    }

    /// The static fields.
    pub fn fields(&self) -> &StaticFields {
        &self.fields
    }

    /// The pod identity.
    pub fn pod(&self) -> &PodIdentity {
        &self.pod
    }

    /// `,"node_name":"…"` when the identity names the node, else nothing: what a file whose
    /// path names its pod adds to that pod's object.
    pub fn node_member(&self) -> &str {
        &self.node_member
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
        let node = PodIdentity(vec![("node_name".into(), "n\"1".into())]);
        let enrichment = Enrichment::new(&StaticFields::new(), &node);
        assert_eq!(enrichment.node_member(), ",\"node_name\":\"n\\\"1\"");
        assert_eq!(
            Enrichment::new(&StaticFields::new(), &PodIdentity::default()).node_member(),
            ""
        );
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

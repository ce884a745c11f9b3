//! Pod metadata from the path of a container log file in the kubelet's layout:
//! `.../<namespace>_<pod name>_<pod uid>/<container name>/<restart count>.log`.
//!
//! The kubelet writes every container's stdout and stderr under `/var/log/pods` in that layout,
//! and rotates a file to `<n>.log.<timestamp>` (then `.gz`), so those names are recognised too.
//! Nothing but the path is read: no call to the API server, no cost per line. The result is
//! escaped once per file into the JSON fragment events of that file carry.

use super::json::json_string;

/// What the kubelet's path layout says about the container that wrote a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLogPath<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub pod_name: &'a str,
    /// The pod's UID (a UUID; the manifest hash for static pods).
    pub pod_uid: &'a str,
    /// The container's name.
    pub container_name: &'a str,
    /// How often the container was restarted when it wrote this file.
    pub restart_count: u32,
}

impl<'a> PodLogPath<'a> {
    /// Reads the layout from the last three components of `path`; `None` when they do not
    /// have it.
    pub fn parse(path: &'a str) -> Option<Self> {
        let mut components = path.rsplit('/');
        let file_name = components.next()?;
        let container_name = components.next()?;
        let pod_dir = components.next()?;
        let restart_count = restart_count(file_name)?;
        if container_name.is_empty() {
            return None;
        }
        // Namespaces and pod names are DNS names (no `_`), so the first and last `_` split the
        // directory name; only a pod name with an `_` in it (never valid) would be ambiguous.
        let (namespace, rest) = pod_dir.split_once('_')?;
        let (pod_name, pod_uid) = rest.rsplit_once('_')?;
        let is_uid =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if namespace.is_empty() || pod_name.is_empty() || !is_uid(pod_uid) {
            return None;
        }
        Some(PodLogPath {
            namespace,
            pod_name,
            pod_uid,
            container_name,
            restart_count,
        })
    }

    /// `,"kubernetes":{...}`: the key and object as the JSON encoder appends them to an event.
    pub fn json_fragment(&self) -> String {
        format!(
            ",\"kubernetes\":{{\"namespace\":{},\"pod_name\":{},\"pod_uid\":{},\"container_name\":{},\"restart_count\":{}}}",
            json_string(self.namespace),
            json_string(self.pod_name),
            json_string(self.pod_uid),
            json_string(self.container_name),
            self.restart_count
        )
    }
}

/// The `<n>` of `<n>.log` and of its rotated names `<n>.log.<anything>`.
fn restart_count(file_name: &str) -> Option<u32> {
    let (digits, rest) = file_name.split_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest != "log" && !rest.starts_with("log.") {
        return None;
    }
    digits.parse().ok()
}

/// The JSON fragment of the `kubernetes` object for a file at `path`, if it has the layout.
pub fn kubernetes_json(path: &str) -> Option<Box<str>> {
    PodLogPath::parse(path).map(|p| p.json_fragment().into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f5c7d7e-8a4b-4a5e-9a53-2d1c3b4a5e6f";

    #[test]
    fn parses_the_kubelet_layout() {
        // (path, expected (namespace, pod, uid, container, restart count))
        type Want = Option<(&'static str, &'static str, &'static str, &'static str, u32)>;
        let uid_dir = format!("/var/log/pods/default_web-7d4b9c-x2x5q_{UID}");
        let cases: Vec<(String, Want)> = vec![
            (
                format!("{uid_dir}/nginx/0.log"),
                Some(("default", "web-7d4b9c-x2x5q", UID, "nginx", 0)),
            ),
            (
                format!("{uid_dir}/nginx/12.log"),
                Some(("default", "web-7d4b9c-x2x5q", UID, "nginx", 12)),
            ),
            // Rotated by the kubelet, then compressed.
            (
                format!("{uid_dir}/nginx/3.log.20261124-101010"),
                Some(("default", "web-7d4b9c-x2x5q", UID, "nginx", 3)),
            ),
            (
                format!("{uid_dir}/nginx/3.log.20261124-101010.gz"),
                Some(("default", "web-7d4b9c-x2x5q", UID, "nginx", 3)),
            ),
            // Pod names may have dots; static pods have a 32-hex-digit hash for a UID.
            (
                "/var/log/pods/kube-system_kube-apiserver-cp.example.com_33d556edd3ae8ef21980288cef77ae8b/kube-apiserver/0.log".into(),
                Some((
                    "kube-system",
                    "kube-apiserver-cp.example.com",
                    "33d556edd3ae8ef21980288cef77ae8b",
                    "kube-apiserver",
                    0,
                )),
            ),
            // Any root, relative too.
            (
                format!("pods/ns_p_{UID}/c/1.log"),
                Some(("ns", "p", UID, "c", 1)),
            ),
            // Not the layout.
            ("/var/log/app/access.log".into(), None),
            (format!("{uid_dir}/nginx/current.log"), None),
            (format!("{uid_dir}/nginx/0.txt"), None),
            (format!("{uid_dir}/nginx/0.logs"), None),
            (format!("{uid_dir}/nginx/-1.log"), None),
            (format!("{uid_dir}/nginx/99999999999.log"), None),
            (format!("{uid_dir}//0.log"), None),
            ("/var/log/pods/default_web/nginx/0.log".into(), None),
            (format!("/var/log/pods/_web_{UID}/nginx/0.log"), None),
            (format!("/var/log/pods/default__{UID}/nginx/0.log"), None),
            ("/var/log/pods/default_web_not-a-uid!/nginx/0.log".into(), None),
            ("nginx/0.log".into(), None),
            ("0.log".into(), None),
            (String::new(), None),
        ];
        for (path, want) in cases {
            let got = PodLogPath::parse(&path).map(|p| {
                (
                    p.namespace,
                    p.pod_name,
                    p.pod_uid,
                    p.container_name,
                    p.restart_count,
                )
            });
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn json_fragment_is_an_escaped_object() {
        let path = format!("/var/log/pods/default_web_{UID}/we\"b/2.log");
        let fragment = kubernetes_json(&path).unwrap();
        let object: serde_json::Value =
            serde_json::from_str(&format!("{{\"x\":1{fragment}}}")).unwrap();
        assert_eq!(
            object["kubernetes"],
            serde_json::json!({
                "namespace": "default",
                "pod_name": "web",
                "pod_uid": UID,
                "container_name": "we\"b",
                "restart_count": 2,
            })
        );
        assert_eq!(kubernetes_json("/var/log/app.log"), None);
    }
}

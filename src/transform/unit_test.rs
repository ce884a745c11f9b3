//! `log-agent test`: unit tests written in the config, as `vector test` runs them: events put
//! in at a transform, and what comes out at transform outputs checked by VRL conditions.
//!
//! Invariant: a test runs the configured transforms as the agent builds them, on events of its
//! own only: nothing is read, shipped or acked, and no state is shared with a running agent.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vrl::value::Value;

use super::event_value::{Rendered, to_value};
use super::topology::{Graph, point};
use super::{Transform, TransformConfig, compile, keep_events};
use crate::event::{Chunk, FileMeta};
use crate::metrics::Metrics;

/// One test of the config's `tests:` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformTest {
    /// What the test is called.
    pub name: String,
    /// The events put in.
    pub inputs: Vec<TestInput>,
    /// The outputs checked.
    #[serde(default)]
    pub outputs: Vec<TestOutput>,
    /// Outputs no event may reach.
    #[serde(default)]
    pub no_outputs_from: Vec<String>,
}

/// An event put in at a transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// The transform that takes it.
    pub insert_at: String,
    /// A line: the event's `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The event's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What must hold of the events at one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOutput {
    /// The output: a transform's name, or `route.name`.
    pub extract_from: String,
    /// Conditions every event there must meet (there must be one at least).
    pub conditions: Vec<TestCondition>,
}

/// A condition on an output event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCondition {
    /// Only `vrl`.
    #[serde(rename = "type", default = "vrl_type")]
    pub kind: String,
    /// The VRL condition (`assert_eq!(.level, "error")` works too: its error is the failure).
    pub source: String,
}

fn vrl_type() -> String {
    "vrl".to_owned()
}

/// What one test gave.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
}

/// Runs every test against the config's transforms (built afresh for each test).
pub fn run_tests(
    transforms: &BTreeMap<String, TransformConfig>,
    graph: &Graph,
    tests: &[TransformTest],
) -> Vec<TestOutcome> {
    tests
        .iter()
        .map(|test| TestOutcome {
            name: test.name.clone(),
            failures: run_test(transforms, graph, test),
        })
        .collect()
}

fn run_test(
    configs: &BTreeMap<String, TransformConfig>,
    graph: &Graph,
    test: &TransformTest,
) -> Vec<String> {
    let metrics = Metrics::default();
    let mut built: BTreeMap<&str, Arc<dyn Transform>> = BTreeMap::new();
    for (name, config) in configs {
        match config
            .kind
            .build(&format!("transforms.{name}"), name, &metrics)
        {
            Ok(transform) => {
                built.insert(name, transform);
            }
            Err(e) => return vec![e.to_string()],
        }
    }
    let file = Arc::new(FileMeta::new(0, "test", "test"));
    // What reached each output, as the JSON it would be shipped as.
    let mut reached: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, input) in test.inputs.iter().enumerate() {
        if !built.contains_key(input.insert_at.as_str()) {
            failures.push(format!(
                "inputs[{i}].insert_at: no transform `{}`",
                input.insert_at
            ));
            continue;
        }
        let mut fields = input.log_fields.clone().unwrap_or_default();
        if let Some(line) = &input.value {
            fields.insert("message".into(), serde_json::Value::String(line.clone()));
        }
        let value: Value = serde_json::Value::Object(fields).into();
        let mut rendered = Rendered::default();
        rendered.push_value(value, 0);
        let seed = Chunk {
            file: Arc::clone(&file),
            read_time: "1970-01-01T00:00:00.000000Z".into(),
            data: bytes::Bytes::new(),
            events: Vec::new(),
            fields: Arc::default(),
            end_offset: 0,
            lane: 0,
        };
        let chunk = rendered.into_chunk(&seed);
        let mut work = vec![(input.insert_at.clone(), chunk)];
        let mut depth = 0;
        while let Some((name, chunk)) = work.pop() {
            depth += 1;
            if depth > 10_000 {
                failures.push("the events went round the transforms without end".to_owned());
                break;
            }
            let (Some(transform), Some(node)) =
                (built.get(name.as_str()), graph.transforms.get(&name))
            else {
                continue;
            };
            let mut out = Vec::new();
            transform.apply(&chunk, &mut out);
            for (output, chunk) in node.outputs.iter().zip(out) {
                let at = point(&name, output);
                let mut scratch = Vec::new();
                let values = reached.entry(at.clone()).or_default();
                values.extend(
                    chunk
                        .events
                        .iter()
                        .map(|e| to_value(&chunk, e, &mut scratch)),
                );
                for (next, node) in &graph.transforms {
                    if node.inputs.contains(&at) {
                        work.push((
                            next.clone(),
                            keep_events(&chunk, chunk.events.iter().cloned()),
                        ));
                    }
                }
            }
        }
    }
    for output in &test.outputs {
        let events = reached
            .get(&output.extract_from)
            .cloned()
            .unwrap_or_default();
        if events.is_empty() {
            failures.push(format!("no event reached `{}`", output.extract_from));
            continue;
        }
        for (c, condition) in output.conditions.iter().enumerate() {
            if condition.kind != "vrl" {
                failures.push(format!(
                    "conditions[{c}]: type `{}`: only `vrl` is known",
                    condition.kind
                ));
                continue;
            }
            let program = match compile(&format!("conditions[{c}]"), &condition.source) {
                Ok(program) => program,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            for event in &events {
                let shown = serde_json::to_string(event).unwrap_or_default();
                match program.check(event.clone()).1 {
                    Ok(true) => {}
                    Ok(false) => failures.push(format!(
                        "`{}`: condition `{}` does not hold for {shown}",
                        output.extract_from, condition.source
                    )),
                    Err(error) => failures.push(format!(
                        "`{}`: condition `{}` failed for {shown}: {error}",
                        output.extract_from, condition.source
                    )),
                }
            }
        }
    }
    for at in &test.no_outputs_from {
        let n = reached.get(at).map_or(0, Vec::len);
        if n > 0 {
            failures.push(format!("{n} event(s) reached `{at}`, where none should"));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::TransformKind;
    use crate::transform::topology::Node;

    fn setup() -> (BTreeMap<String, TransformConfig>, Graph) {
        let remap: TransformKind = serde_norway::from_str(
            "type: remap\nsource: |\n  .email = redact(string!(.email), filters: [r'\\S+@\\S+'])\n  .level = downcase(string!(.level))",
        )
        .unwrap();
        let route: TransformKind =
            serde_norway::from_str("type: route\nroute:\n  errors: .level == \"error\"").unwrap();
        let transforms = BTreeMap::from([
            (
                "mask".to_owned(),
                TransformConfig {
                    inputs: vec!["app".into()],
                    kind: remap,
                },
            ),
            (
                "split".to_owned(),
                TransformConfig {
                    inputs: vec!["mask".into()],
                    kind: route,
                },
            ),
        ]);
        let mut graph = Graph::default();
        graph.sources.insert("app".into());
        for (name, config) in &transforms {
            graph.transforms.insert(
                name.clone(),
                Node {
                    inputs: config.inputs.clone(),
                    outputs: config.kind.outputs(),
                    may_end: false,
                },
            );
        }
        (transforms, graph)
    }

    fn test(yaml: &str) -> TransformTest {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn tests_pass_and_fail_with_the_reason() {
        let (transforms, graph) = setup();
        let cases = [
            (
                "name: masks and routes\ninputs:\n- insert_at: mask\n  log_fields: {email: a@b.c, level: ERROR}\noutputs:\n- extract_from: split.errors\n  conditions:\n  - source: .email == \"[REDACTED]\"\nno_outputs_from: [split._unmatched]",
                vec![],
            ),
            (
                "name: wrong\ninputs:\n- insert_at: mask\n  log_fields: {email: a@b.c, level: info}\noutputs:\n- extract_from: split.errors\n  conditions:\n  - source: 'true'",
                vec!["no event reached `split.errors`"],
            ),
            (
                "name: condition\ninputs:\n- insert_at: mask\n  log_fields: {email: x, level: info}\noutputs:\n- extract_from: mask\n  conditions:\n  - source: assert_eq!(.level, \"debug\")",
                vec!["condition `assert_eq!(.level, \"debug\")` failed"],
            ),
            (
                "name: leak\ninputs:\n- insert_at: split\n  value: hello\nno_outputs_from: [split._unmatched]",
                vec!["1 event(s) reached `split._unmatched`"],
            ),
        ];
        for (yaml, wants) in cases {
            let outcome = &run_tests(&transforms, &graph, &[test(yaml)])[0];
            assert_eq!(
                outcome.failures.len(),
                wants.len(),
                "{yaml}: {:?}",
                outcome.failures
            );
            for (failure, want) in outcome.failures.iter().zip(wants) {
                assert!(failure.contains(want), "{want:?} in {failure}");
            }
        }
    }
}

//! The graph that `inputs` draw from sources through transforms to sinks: checked, then
//! unfolded per source into a tree of branches.
//!
//! Invariant: a checked graph has no cycle, no unknown input and no source or transform whose
//! events go nowhere; unfolded, each path from a source to a sink is its own branch with its
//! own lane number, so a sink reached along two paths acks each apart and the checkpoint waits
//! for both.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::errors::{ConfigError, did_you_mean};

/// Branches one source may unfold into at most: a graph that fans out this much is a mistake.
pub const MAX_BRANCHES: usize = 256;

/// A transform as the graph sees it.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// What it takes.
    pub inputs: Vec<String>,
    /// Its outputs (`""`: the one named as the transform).
    pub outputs: Vec<String>,
    /// True when nothing need take its output.
    pub may_end: bool,
}

/// Every component with what it takes.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Source names.
    pub sources: BTreeSet<String>,
    /// Transforms by name.
    pub transforms: BTreeMap<String, Node>,
    /// Each sink's inputs, by sink name.
    pub sinks: BTreeMap<String, Vec<String>>,
}

/// What a source's events meet at one point (the source itself, or one output of a
/// transform): the sinks that take them and the transforms that take them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Branch {
    /// The point's name: the source's, a transform's (its one output) or `transform.output`.
    pub point: String,
    /// Its lane: 0 for the source itself, then one per transform output in the order unfolded.
    pub lane: u32,
    /// Sinks taking the events here.
    pub sinks: Vec<String>,
    /// Transforms taking the events here, each with one branch per output.
    pub transforms: Vec<(String, Vec<Branch>)>,
}

impl Branch {
    /// Every (sink, lane) pair under this branch.
    pub fn sink_lanes(&self) -> Vec<(String, u32)> {
        let mut all = Vec::new();
        self.collect(&mut all);
        all
    }

    fn collect(&self, all: &mut Vec<(String, u32)>) {
        all.extend(self.sinks.iter().map(|sink| (sink.clone(), self.lane)));
        for (_, outputs) in &self.transforms {
            for output in outputs {
                output.collect(all);
            }
        }
    }

    /// True when no transform is on the way: the source's chunks go to the sinks as read.
    pub fn is_direct(&self) -> bool {
        self.transforms.is_empty()
    }
}

/// The name an output is taken by: the transform's for its one output, `name.output` else.
pub fn point(transform: &str, output: &str) -> String {
    if output.is_empty() {
        transform.to_owned()
    } else {
        format!("{transform}.{output}")
    }
}

impl Graph {
    /// Every name an input may give.
    fn points(&self) -> BTreeSet<String> {
        let mut points: BTreeSet<String> = self.sources.clone();
        for (name, node) in &self.transforms {
            for output in &node.outputs {
                points.insert(point(name, output));
            }
        }
        points
    }

    /// The transforms and sinks taking `at`.
    fn takers(&self, at: &str) -> (Vec<&str>, Vec<&str>) {
        let takes = |inputs: &Vec<String>| inputs.iter().any(|input| input == at);
        let transforms = self
            .transforms
            .iter()
            .filter(|(_, node)| takes(&node.inputs))
            .map(|(name, _)| name.as_str())
            .collect();
        let sinks = self
            .sinks
            .iter()
            .filter(|(_, inputs)| takes(inputs))
            .map(|(name, _)| name.as_str())
            .collect();
        (transforms, sinks)
    }

    /// Every error of the graph, each at the key to fix.
    pub fn check(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for name in self.transforms.keys().filter(|t| self.sources.contains(*t)) {
            errors.push(ConfigError::invalid(
                format!("transforms.{name}"),
                format!("a source is named `{name}` too: inputs could not tell them apart"),
            ));
        }
        let points = self.points();
        let candidates: Vec<&str> = points.iter().map(String::as_str).collect();
        let inputs = self
            .transforms
            .iter()
            .map(|(name, node)| (format!("transforms.{name}.inputs"), &node.inputs))
            .chain(
                self.sinks
                    .iter()
                    .map(|(name, inputs)| (format!("sinks.{name}.inputs"), inputs)),
            );
        for (key, list) in inputs {
            for input in list.iter().filter(|input| !points.contains(*input)) {
                errors.push(ConfigError::invalid(
                    &key,
                    format!(
                        "unknown source or transform `{input}`{}",
                        did_you_mean(input, &candidates)
                    ),
                ));
            }
        }
        for source in &self.sources {
            if self.takers(source) == (vec![], vec![]) {
                errors.push(ConfigError::invalid(
                    format!("sources.{source}"),
                    "is not an input of any sink or transform",
                ));
            }
        }
        for (name, node) in &self.transforms {
            let taken = node
                .outputs
                .iter()
                .any(|output| self.takers(&point(name, output)) != (vec![], vec![]));
            if !taken && !node.may_end {
                errors.push(ConfigError::invalid(
                    format!("transforms.{name}"),
                    "is not an input of any sink or transform",
                ));
            }
        }
        if let Some(cycle) = self.cycle() {
            errors.push(ConfigError::invalid(
                format!("transforms.{}.inputs", cycle[0]),
                format!("the inputs go round in a cycle: {}", cycle.join(" -> ")),
            ));
            return errors;
        }
        for source in &self.sources {
            let branches = self.count_branches(source);
            if branches > MAX_BRANCHES {
                errors.push(ConfigError::invalid(
                    format!("sources.{source}"),
                    format!(
                        "its events would take {branches} paths through the transforms (at most {MAX_BRANCHES})"
                    ),
                ));
            }
        }
        errors
    }

    /// The transforms a transform takes its events from.
    fn upstream(&self, node: &Node) -> Vec<&str> {
        node.inputs
            .iter()
            .filter_map(|input| {
                let name = input
                    .split_once('.')
                    .map_or(input.as_str(), |(name, _)| name);
                self.transforms.get_key_value(name).map(|(n, _)| n.as_str())
            })
            .collect()
    }

    /// A cycle among the transforms, if there is one, as the names along it.
    fn cycle(&self) -> Option<Vec<String>> {
        // 0: not seen, 1: on the current path, 2: done.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut path: Vec<&str> = Vec::new();
        fn visit<'a>(
            graph: &'a Graph,
            name: &'a str,
            state: &mut BTreeMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match state.get(name).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|n| *n == name).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|n| (*n).to_owned()).collect();
                    cycle.push(name.to_owned());
                    return Some(cycle);
                }
                2 => return None,
                _ => {}
            }
            state.insert(name, 1);
            path.push(name);
            if let Some(node) = graph.transforms.get(name) {
                for up in graph.upstream(node) {
                    if let Some(cycle) = visit(graph, up, state, path) {
                        return Some(cycle);
                    }
                }
            }
            path.pop();
            state.insert(name, 2);
            None
        }
        for name in self.transforms.keys() {
            if let Some(cycle) = visit(self, name, &mut state, &mut path) {
                return Some(cycle);
            }
        }
        None
    }

    /// How many branches `at` unfolds into (stops counting past the cap).
    fn count_branches(&self, at: &str) -> usize {
        let (transforms, _) = self.takers(at);
        let mut count = 1;
        for name in transforms {
            for output in self.transforms.get(name).map_or(&[][..], |n| &n.outputs) {
                count += self.count_branches(&point(name, output));
                if count > MAX_BRANCHES {
                    return count;
                }
            }
        }
        count
    }

    /// The tree of branches of `source`'s events. Call on a checked graph only (a cycle would
    /// not end; the depth is bounded anyway).
    pub fn unfold(&self, source: &str) -> Branch {
        let mut next_lane = 0;
        self.unfold_at(source, &mut next_lane, 0)
    }

    fn unfold_at(&self, at: &str, next_lane: &mut u32, depth: usize) -> Branch {
        let lane = *next_lane;
        *next_lane += 1;
        let (transforms, sinks) = self.takers(at);
        let mut branch = Branch {
            point: at.to_owned(),
            lane,
            sinks: sinks.into_iter().map(str::to_owned).collect(),
            transforms: Vec::new(),
        };
        if depth > self.transforms.len() {
            return branch;
        }
        for name in transforms {
            let outputs = self.transforms.get(name).map_or(&[][..], |n| &n.outputs);
            let unfolded = outputs
                .iter()
                .map(|output| self.unfold_at(&point(name, output), next_lane, depth + 1))
                .collect();
            branch.transforms.push((name.to_owned(), unfolded));
        }
        branch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(
        sources: &[&str],
        transforms: &[(&str, &[&str], &[&str])],
        sinks: &[(&str, &[&str])],
    ) -> Graph {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Graph {
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            transforms: transforms
                .iter()
                .map(|(name, inputs, outputs)| {
                    let node = Node {
                        inputs: strings(inputs),
                        outputs: strings(outputs),
                        may_end: name.starts_with("metrics"),
                    };
                    ((*name).to_owned(), node)
                })
                .collect(),
            sinks: sinks
                .iter()
                .map(|(n, i)| ((*n).to_owned(), strings(i)))
                .collect(),
        }
    }

    fn errors(graph: &Graph) -> Vec<String> {
        graph.check().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn checks_name_the_key_to_fix() {
        let cases: &[(Graph, &str)] = &[
            (
                graph(&["app"], &[], &[("out", &["ap"])]),
                "`sinks.out.inputs`: unknown source or transform `ap`; did you mean `app`?",
            ),
            (
                graph(
                    &["app"],
                    &[("r", &["app"], &["errors", "_unmatched"])],
                    &[("out", &["r.eror"])],
                ),
                "did you mean `r.errors`?",
            ),
            (
                graph(&["app", "lonely"], &[], &[("out", &["app"])]),
                "`sources.lonely`: is not an input of any sink or transform",
            ),
            (
                graph(&["app"], &[("t", &["app"], &[""])], &[("out", &["app"])]),
                "`transforms.t`: is not an input",
            ),
            (
                graph(
                    &["app"],
                    &[("a", &["b"], &[""]), ("b", &["a"], &[""])],
                    &[("out", &["a", "app"])],
                ),
                "cycle: a -> b -> a",
            ),
            (
                graph(&["app"], &[("app", &["app"], &[""])], &[("out", &["app"])]),
                "a source is named `app` too",
            ),
        ];
        for (graph, want) in cases {
            let got = errors(graph);
            assert!(
                got.iter().any(|e| e.contains(want)),
                "want {want:?} in {got:?}"
            );
        }
        let fine = graph(
            &["app"],
            &[("metrics", &["app"], &[""])],
            &[("out", &["app"])],
        );
        assert_eq!(
            errors(&fine),
            Vec::<String>::new(),
            "log_to_metric may end a path"
        );
    }

    #[test]
    fn every_path_to_a_sink_is_a_lane_of_its_own() {
        // app -> route r (errors, _unmatched); errors -> kafka; r._unmatched -> remap m -> file;
        // file also takes app directly and r.errors: three paths to `file`.
        let graph = graph(
            &["app"],
            &[
                ("r", &["app"], &["errors", "_unmatched"]),
                ("m", &["r._unmatched"], &[""]),
            ],
            &[
                ("kafka", &["r.errors"]),
                ("file", &["app", "m", "r.errors"]),
            ],
        );
        assert_eq!(errors(&graph), Vec::<String>::new());
        let tree = graph.unfold("app");
        let mut lanes = tree.sink_lanes();
        lanes.sort();
        let want: Vec<(String, u32)> = [("file", 0), ("file", 1), ("file", 3), ("kafka", 1)]
            .iter()
            .map(|(s, l)| ((*s).to_owned(), *l))
            .collect();
        assert_eq!(lanes, want, "{tree:#?}");
        assert!(!tree.is_direct());
        assert!(graph.unfold("app").transforms[0].1[1].transforms[0].0 == "m");
    }

    #[test]
    fn fan_out_past_the_cap_is_refused() {
        // Layer i has a_i and b_i, each taking both of layer i - 1: paths double per layer.
        let mut graph = graph(&["app"], &[], &[("out", &["a7", "b7"])]);
        for i in 0..8 {
            let inputs = if i == 0 {
                vec!["app".to_owned()]
            } else {
                vec![format!("a{}", i - 1), format!("b{}", i - 1)]
            };
            for side in ["a", "b"] {
                let node = Node {
                    inputs: inputs.clone(),
                    outputs: vec![String::new()],
                    may_end: false,
                };
                graph.transforms.insert(format!("{side}{i}"), node);
            }
        }
        let got = errors(&graph);
        assert!(
            got.iter()
                .any(|e| e.contains("paths through the transforms")),
            "{got:?}"
        );
    }
}

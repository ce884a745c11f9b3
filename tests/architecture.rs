//! The source tree's layering, checked on the source itself: data flows one way, from the
//! ground (the event and its JSON writing, metrics, health) up to the agent, and a module
//! imports only from layers below its own, so no import cycle can form between modules.
//! A new top-level module must be given a layer here, which is where a newcomer learns what
//! it may use. `docs/architecture.md` draws the same picture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may import from the layers below its own only.
/// `config::errors` and `config::interpolate` are the configuration's vocabulary (its error
/// and `${VAR}` names), which every plug-in's config uses; the rest of `config` assembles the
/// plug-ins' configs and so sits above them.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "the ground",
        &[
            "event",
            "metrics",
            "health",
            "spacing",
            "config::errors",
            "config::interpolate",
        ],
    ),
    ("parsing and checkpoints", &["parse", "checkpoint"]),
    ("sources and sinks", &["source", "sink"]),
    ("transforms", &["transform"]),
    ("the pipeline", &["pipeline"]),
    ("the configuration", &["config"]),
    ("the API and replay", &["api", "replay"]),
    ("the agent", &["agent"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer of a module path (`config::errors::ConfigError` is in `config::errors`'s).
fn layer_of(path: &str) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, &'static str)> = None;
    for (layer, (_, modules)) in LAYERS.iter().enumerate() {
        for module in *modules {
            let inside = path == *module || path.starts_with(&format!("{module}::"));
            if inside && best.is_none_or(|(_, m)| m.len() < module.len()) {
                best = Some((layer, module));
            }
        }
    }
    best
}

/// The library's files (not the binary's, not the crate root's re-exports, not unit tests).
fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            library_files(&path, out);
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let top = dir == src();
        if name.ends_with(".rs")
            && name != "tests.rs"
            && !(top && matches!(name, "lib.rs" | "main.rs"))
        {
            out.push(path);
        }
    }
}

/// `src/config/errors.rs` -> `config::errors`; `src/sink/mod.rs` -> `sink`.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<&str> = relative.iter().map(|p| p.to_str().unwrap()).collect();
    if parts.last() == Some(&"mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its comments and its unit tests (at the bottom, by convention).
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree names: `a::{b, c::{d}}` -> `a::b`, `a::c::d`.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    // `a as b` names `a`.
    let renamed = regex::Regex::new(r"\s+as\s+\w+").unwrap();
    let tree: String = renamed
        .replace_all(tree, "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let join = |head: &str| {
        if prefix.is_empty() {
            head.to_owned()
        } else if head.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}::{head}")
        }
    };
    let Some(open) = tree.find('{') else {
        out.push(join(tree.trim_end_matches("::")));
        return;
    };
    let head = join(tree[..open].trim_end_matches("::"));
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&inner[start..i], &head, out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand(&inner[start..], &head, out);
    }
}

/// Every `crate::` path a file's code names, in `use` statements or inline.
fn imports_of(code: &str) -> BTreeSet<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use crate::") {
        let tree_start = at + "use crate::".len();
        let end = rest[tree_start..]
            .find(';')
            .map_or(rest.len(), |e| tree_start + e);
        expand(&rest[tree_start..end], "", &mut paths);
        rest = &rest[end..];
    }
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        paths.push(after[..len].trim_end_matches(':').to_owned());
        rest = &after[len..];
    }
    paths.into_iter().filter(|p| !p.is_empty()).collect()
}

#[test]
fn every_module_imports_only_from_the_layers_below_its_own() {
    let mut files = Vec::new();
    library_files(&src(), &mut files);
    files.sort();
    assert!(files.len() > 50, "the library's files were found");
    let mut unplaced = BTreeSet::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(file);
        let Some((layer, own)) = layer_of(&module) else {
            unplaced.insert(module.split("::").next().unwrap_or_default().to_owned());
            continue;
        };
        for path in imports_of(&code_of(&fs::read_to_string(file).unwrap())) {
            let Some((target_layer, target)) = layer_of(&path) else {
                // An item of the crate root (`crate::VERSION`).
                continue;
            };
            if target != own && target_layer >= layer {
                upward.push(format!(
                    "{}: {own} ({}) imports crate::{path} ({})",
                    file.strip_prefix(src()).unwrap().display(),
                    LAYERS[layer].0,
                    LAYERS[target_layer].0
                ));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules with no layer in tests/architecture.rs: {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that do not point to a lower layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn use_trees_expand_to_the_paths_they_name() {
    let cases: &[(&str, &[&str])] = &[
        ("use crate::event::Chunk;", &["event::Chunk"]),
        (
            "use crate::event::{Chunk, fields::{Field, FieldName}};",
            &[
                "event::Chunk",
                "event::fields::Field",
                "event::fields::FieldName",
            ],
        ),
        (
            "use crate::{checkpoint::{self, SinkId}, metrics};",
            &["checkpoint::SinkId", "checkpoint::self", "metrics"],
        ),
        ("let x = crate::parse::time::now();", &["parse::time::now"]),
        (
            "use crate::sink::delivery::RetryConfig as Retry;",
            &["sink::delivery::RetryConfig"],
        ),
    ];
    for (code, want) in cases {
        let got: Vec<String> = imports_of(code)
            .into_iter()
            .filter(|p| !p.ends_with("::{") && !p.contains('{'))
            .collect();
        let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        // Inline scanning also sees the head of a `use` tree; only whole paths matter.
        let got: Vec<String> = got.into_iter().filter(|p| want.contains(p)).collect();
        assert_eq!(got, want, "{code}");
    }
    assert_eq!(
        layer_of("config::errors::ConfigError"),
        Some((0, "config::errors"))
    );
    assert_eq!(layer_of("config::Config"), Some((5, "config")));
    assert_eq!(layer_of("nothing"), None);
}

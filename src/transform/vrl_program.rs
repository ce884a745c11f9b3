//! VRL programs: compiled once (at start and on reload) and run per event.
//!
//! Invariant: running a program never panics the agent; an error or an `abort` is reported
//! as such, and the caller decides what becomes of the event (a remap ships it as it came,
//! from its chunk).

use std::sync::{Arc, LazyLock};

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::ExternalEnv;
use vrl::compiler::{Function, Program, TargetValue, TimeZone};
use vrl::value::kind::Collection;
use vrl::value::{Kind, Secrets, Value};

/// VRL's standard library, built once for every program of the agent.
static FUNCTIONS: LazyLock<Vec<Box<dyn Function>>> = LazyLock::new(vrl::stdlib::all);

/// A compiled program.
#[derive(Clone)]
pub struct VrlProgram {
    program: Arc<Program>,
}

impl std::fmt::Debug for VrlProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VrlProgram")
    }
}

/// What running a program on an event gave.
#[derive(Debug)]
pub enum Outcome {
    /// It ran to its end: the event as changed, and the program's own result.
    Done {
        /// The event after the program.
        event: Value,
        /// The value of the program's last expression.
        result: Value,
    },
    /// It called `abort`: the event as far as the program had changed it.
    Aborted(Value),
    /// It failed: the event as far as the program had changed it, and why.
    Failed(Value, String),
}

impl VrlProgram {
    /// Compiles `source`; the error is VRL's own report, which names the line and column of
    /// each problem and how to fix it.
    pub fn compile(source: &str) -> Result<VrlProgram, String> {
        // An event is always an object (of any fields), as in Vector: `merge(., x)` needs no `!`.
        let event = Kind::object(Collection::any());
        let external = ExternalEnv::new_with_kind(event, Kind::object(Collection::any()));
        let config = vrl::compiler::CompileConfig::default();
        match vrl::compiler::compile_with_external(source, &FUNCTIONS, &external, config) {
            Ok(compiled) => Ok(VrlProgram {
                program: Arc::new(compiled.program),
            }),
            Err(diagnostics) => Err(vrl::diagnostic::Formatter::new(source, diagnostics)
                .to_string()
                .trim_end()
                .to_owned()),
        }
    }

    /// Runs the program on `event`. After an error or an `abort`, the value given back is
    /// the event as far as the program had changed it: callers that ship the event as it came
    /// take it from its chunk instead (no copy of every event is kept for the rare failure).
    pub fn run(&self, event: Value) -> Outcome {
        let mut target = TargetValue {
            value: event,
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        let mut runtime = Runtime::default();
        let resolved = runtime.resolve(&mut target, &self.program, &TimeZone::default());
        match resolved {
            Ok(result) => Outcome::Done {
                event: target.value,
                result,
            },
            Err(Terminate::Abort(_)) => Outcome::Aborted(target.value),
            Err(Terminate::Error(error)) => Outcome::Failed(target.value, error.to_string()),
            Err(Terminate::Interrupted) => Outcome::Failed(target.value, "interrupted".to_owned()),
        }
    }

    /// Runs the program as a condition on `event`: true when it gives `true`. The event comes
    /// back (as the condition left it: conditions read, they seldom assign); an error, an
    /// abort or a result that is not a boolean is an error.
    pub fn check(&self, event: Value) -> (Value, Result<bool, String>) {
        match self.run(event) {
            Outcome::Done {
                event,
                result: Value::Boolean(matched),
            } => (event, Ok(matched)),
            Outcome::Done { event, result } => (
                event,
                Err(format!(
                    "a condition must give a boolean, this one gave {}",
                    result.kind_str()
                )),
            ),
            Outcome::Aborted(event) => (event, Err("the condition called abort".to_owned())),
            Outcome::Failed(event, error) => (event, Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compile_errors_name_the_line_and_column() {
        let cases = [
            (".a = 1\n.b = upcase(.x\n", ":3:1", "syntax error"),
            (".a = 1\n.b = upcase(.x)\n", ":2:6", "fallible"),
            ("nope(.a)", ":1:1", "undefined function"),
        ];
        for (source, at, what) in cases {
            let error = VrlProgram::compile(source).unwrap_err();
            assert!(
                error.contains(at) && error.contains(what),
                "{source:?}: {error}"
            );
        }
    }

    #[test]
    fn runs_give_the_changed_event_and_say_when_they_fail_or_abort() {
        let program = VrlProgram::compile(
            ".seen = true\nif .kind == \"abort\" { abort }\n.n = to_int!(.n)\n",
        )
        .unwrap();
        match program.run(value(r#"{"n":"7"}"#)) {
            Outcome::Done { event, .. } => assert_eq!(event, value(r#"{"n":7,"seen":true}"#)),
            other => panic!("{other:?}"),
        }
        match program.run(value(r#"{"n":"x"}"#)) {
            Outcome::Failed(event, error) => {
                assert_eq!(
                    event,
                    value(r#"{"n":"x","seen":true}"#),
                    "as far as it went"
                );
                assert!(error.contains("to_int"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        match program.run(value(r#"{"kind":"abort"}"#)) {
            Outcome::Aborted(event) => {
                assert_eq!(event, value(r#"{"kind":"abort","seen":true}"#))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conditions_give_booleans_and_say_when_they_do_not() {
        let cases = [
            (".level == \"error\"", r#"{"level":"error"}"#, Ok(true)),
            (".level == \"error\"", r#"{"level":"info"}"#, Ok(false)),
            (".level", r#"{"level":"info"}"#, Err("boolean")),
            ("to_int!(.n) > 3", r#"{"n":"x"}"#, Err("to_int")),
        ];
        for (source, event, want) in cases {
            let (back, got) = VrlProgram::compile(source).unwrap().check(value(event));
            assert_eq!(back, value(event), "{source}");
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{source}"),
                (Err(error), Err(part)) => assert!(error.contains(part), "{source}: {error}"),
                (got, want) => panic!("{source}: {got:?} vs {want:?}"),
            }
        }
    }
}

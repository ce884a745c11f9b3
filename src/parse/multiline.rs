//! Multiline events: where a group of lines (a stack trace, a panic) starts and ends.
//!
//! This is the decision half, a pure state machine over the lines' bytes: for each line, does
//! it continue the open group or start a new one, and can anything still continue the group
//! after it. The other half, gathering the lines' bytes and holding an unfinished group back
//! across reads (and the checkpoint with it), is [`super::assemble`].
//!
//! Rules:
//! - `start_pattern`: a line that matches starts a group; the others continue it.
//! - `continue_pattern`: a line that matches continues the group; the others start one.
//! - presets: `java` (an exception line `java.lang.X: ...`, `at ...` frames, `... N more`,
//!   `Caused by:`, `Suppressed:`, continuing the logger's line before them), `python` (`Traceback (most recent call last):`, its indented lines,
//!   the exception line that ends it, and chained tracebacks), `go` (`panic:` or `fatal error:`
//!   and the goroutine dumps that follow: blank, indented, `goroutine N [...]:`, function-call
//!   and `created by` lines, `exit status N`).
//!
//! `max_lines` and `max_bytes` bound a group: the line that would pass either starts a new
//! group, and both parts are flagged `multiline_cut`.

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use super::Pattern;

/// `multiline:` of a source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A ready-made rule set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// A line that matches starts a new event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_pattern: Option<Pattern>,
    /// A line that matches continues the current event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_pattern: Option<Pattern>,
    /// An open group is shipped after this long without a new line.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// At most this many lines in one event.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// At most this many bytes in one event (a single line may be longer, up to
    /// `max_line_bytes`).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_timeout_ms() -> u64 {
    1_000
}

fn default_max_lines() -> usize {
    500
}

fn default_max_bytes() -> usize {
    1024 * 1024
}

/// The presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Java exceptions and their stack traces.
    Java,
    /// Python tracebacks.
    Python,
    /// Go panics and fatal errors with their goroutine dumps.
    Go,
}

/// A multiline configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultilineError {
    /// Not exactly one of the three ways to split groups.
    #[error("set exactly one of `preset`, `start_pattern` and `continue_pattern`")]
    NotOneRule,
    /// A zero limit.
    #[error("`{0}` must be at least 1")]
    ZeroLimit(&'static str),
}

impl MultilineConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<(), MultilineError> {
        let rules = usize::from(self.preset.is_some())
            + usize::from(self.start_pattern.is_some())
            + usize::from(self.continue_pattern.is_some());
        if rules != 1 {
            return Err(MultilineError::NotOneRule);
        }
        for (name, value) in [
            ("timeout_ms", self.timeout_ms as usize),
            ("max_lines", self.max_lines),
            ("max_bytes", self.max_bytes),
        ] {
            if value == 0 {
                return Err(MultilineError::ZeroLimit(name));
            }
        }
        Ok(())
    }
}

/// How groups are split, compiled.
#[derive(Debug, Clone)]
pub enum Rules {
    /// A matching line starts a group.
    Start(Regex),
    /// A matching line continues the group (the `java` preset is one of these).
    Continue(Regex),
    /// The `python` preset.
    Python,
    /// The `go` preset.
    Go,
}

/// Lines that continue a Java log entry: the exception (a qualified class name ending in
/// Exception, Error or Throwable) that a logger prints under its message, and the frames and
/// markers of its trace.
const JAVA_CONTINUE: &str = r"^(?:\s+at\s|\s+\.\.\. \d+ (?:more|common frames omitted)|\s*Caused by:|\s*Suppressed:|[\w$]+(?:\.[\w$]+)+(?:Exception|Error|Throwable)(?::.*)?$)";

impl Rules {
    /// The rules of a configuration (checked by [`MultilineConfig::check`]).
    pub fn new(config: &MultilineConfig) -> Result<Self, MultilineError> {
        config.check()?;
        Ok(
            match (
                &config.preset,
                &config.start_pattern,
                &config.continue_pattern,
            ) {
                (Some(Preset::Java), _, _) => match Regex::new(JAVA_CONTINUE) {
                    Ok(regex) => Rules::Continue(regex),
                    Err(_) => return Err(MultilineError::NotOneRule),
                },
                (Some(Preset::Python), _, _) => Rules::Python,
                (Some(Preset::Go), _, _) => Rules::Go,
                (None, Some(start), _) => Rules::Start(start.regex().clone()),
                (None, None, Some(cont)) => Rules::Continue(cont.regex().clone()),
                (None, None, None) => return Err(MultilineError::NotOneRule),
            },
        )
    }

    /// Whether `line` starts a new group (true) or continues the open one; `state` is the
    /// file's, `open` says whether a group is open.
    pub fn starts_group(&self, state: &mut RuleState, line: &[u8], open: bool) -> bool {
        let starts = match self {
            Rules::Start(regex) => regex.is_match(line),
            Rules::Continue(regex) => !regex.is_match(line),
            Rules::Python => python(state, line),
            Rules::Go => go(state, line),
        };
        starts || !open
    }

    /// Whether a line could still continue the group just given a line: when not, the group
    /// is complete and ships at once instead of waiting for the next line or the timeout.
    pub fn can_continue(&self, state: RuleState) -> bool {
        match self {
            Rules::Start(_) | Rules::Continue(_) => true,
            Rules::Python | Rules::Go => state != RuleState::Outside,
        }
    }
}

/// Where a file is within a preset's block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuleState {
    /// Not in a traceback or panic.
    #[default]
    Outside,
    /// Inside a Python traceback's frames, or a Go panic's dump.
    Inside,
    /// After a Python exception line: a chained traceback may follow.
    AfterException,
}

fn is_indented(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn python(state: &mut RuleState, line: &[u8]) -> bool {
    const TRACEBACK: &[u8] = b"Traceback (most recent call last):";
    const CHAINED: [&[u8]; 2] = [
        b"During handling of the above exception, another exception occurred:",
        b"The above exception was the direct cause of the following exception:",
    ];
    let traceback = line.starts_with(TRACEBACK);
    match *state {
        RuleState::Inside => {
            if !is_indented(line) && !is_blank(line) {
                // The exception line ends the frames.
                *state = RuleState::AfterException;
            }
            false
        }
        RuleState::AfterException
            if is_blank(line) || CHAINED.iter().any(|c| line.starts_with(c)) =>
        {
            false
        }
        RuleState::AfterException if traceback => {
            *state = RuleState::Inside;
            false
        }
        _ => {
            *state = if traceback {
                RuleState::Inside
            } else {
                RuleState::Outside
            };
            true
        }
    }
}

fn go(state: &mut RuleState, line: &[u8]) -> bool {
    let panic = line.starts_with(b"panic: ") || line.starts_with(b"fatal error: ");
    if panic {
        *state = RuleState::Inside;
        return true;
    }
    let continues = *state == RuleState::Inside
        && (is_blank(line)
            || is_indented(line)
            || line.starts_with(b"goroutine ")
            || line.starts_with(b"created by ")
            || line.starts_with(b"[signal ")
            || line.starts_with(b"exit status ")
            || line.starts_with(b"...additional frames elided...")
            || is_go_call(line));
    if !continues {
        *state = RuleState::Outside;
    }
    !continues
}

/// `main.main()`, `main.(*T).run(0xc000010000, {0x0, 0x0})`: a frame's function line.
fn is_go_call(line: &[u8]) -> bool {
    let Some(open) = memchr::memchr(b'(', line) else {
        return false;
    };
    let name = &line[..open];
    line.ends_with(b")")
        && open > 0
        && !name.contains(&b' ')
        && (name.contains(&b'.') || name == b"panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `text` into groups with `rules`, as the assembler would (no limits).
    fn groups(rules: &Rules, text: &str) -> Vec<String> {
        let mut state = RuleState::default();
        let mut out: Vec<Vec<&str>> = Vec::new();
        let mut open = false;
        for line in text.lines() {
            if rules.starts_group(&mut state, line.as_bytes(), open) {
                out.push(Vec::new());
            }
            if let Some(group) = out.last_mut() {
                group.push(line);
            }
            open = rules.can_continue(state);
        }
        out.iter().map(|g| g.join("\n")).collect()
    }

    fn config(preset: Option<Preset>) -> MultilineConfig {
        MultilineConfig {
            preset,
            start_pattern: None,
            continue_pattern: None,
            timeout_ms: 1,
            max_lines: 1,
            max_bytes: 1,
        }
    }

    fn preset(preset: Preset) -> Rules {
        Rules::new(&config(Some(preset))).unwrap()
    }

    const JAVA: &str = "2026-11-25 04:55:03 ERROR [http-nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet] - Servlet.service() threw exception
java.lang.IllegalStateException: order 42 not found
\tat com.example.shop.OrderService.find(OrderService.java:57)
\tat com.example.shop.OrderController.get(OrderController.java:31)
\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
Caused by: java.sql.SQLException: connection closed
\tat org.postgresql.jdbc.PgConnection.checkClosed(PgConnection.java:922)
\t... 48 more
\tSuppressed: java.io.IOException: reset
\t\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)
2026-11-25 04:55:04 INFO  [main] c.e.shop.Application - still running";

    #[test]
    fn java_preset_keeps_a_trace_with_the_line_before_it() {
        let got = groups(&preset(Preset::Java), JAVA);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("2026-11-25 04:55:03 ERROR"));
        assert!(got[0].ends_with("(SocketInputStream.java:168)"));
        assert_eq!(got[0].lines().count(), 10);
        assert!(got[1].ends_with("still running"));
        // An exception line needs a qualified class name: prose does not continue an entry.
        let prose = "INFO a\nException handling is on\nRuntimeError: x";
        assert_eq!(groups(&preset(Preset::Java), prose).len(), 3);
    }

    const PYTHON: &str = "INFO:app:starting
ERROR:app:request failed
Traceback (most recent call last):
  File \"/app/main.py\", line 12, in handle
    return compute(x)
  File \"/app/main.py\", line 7, in compute
    return 1 / x
ZeroDivisionError: division by zero

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/app/main.py\", line 14, in handle
    raise ValueError(\"bad input\")
ValueError: bad input
INFO:app:next request";

    #[test]
    fn python_preset_groups_chained_tracebacks() {
        let got = groups(&preset(Preset::Python), PYTHON);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(got[0], "INFO:app:starting");
        assert_eq!(got[1], "ERROR:app:request failed");
        assert!(got[2].starts_with("Traceback"));
        assert!(got[2].ends_with("ValueError: bad input"));
        assert_eq!(got[2].lines().count(), 13);
        assert_eq!(got[3], "INFO:app:next request");
    }

    const GO: &str = "2026/11/25 04:55:03 serving on :8080
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.lookup(...)
\t/app/main.go:12
main.(*Server).handle(0xc000010000, {0x0, 0x0})
\t/app/main.go:30 +0x1d
created by main.main in goroutine 1
\t/app/main.go:40 +0x65
exit status 2
2026/11/25 04:55:05 restarted";

    #[test]
    fn go_preset_groups_a_panic_and_its_goroutines() {
        let got = groups(&preset(Preset::Go), GO);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[1].starts_with("panic: runtime error"));
        assert!(got[1].ends_with("exit status 2"));
        assert_eq!(got[1].lines().count(), 10);
        assert_eq!(got[2], "2026/11/25 04:55:05 restarted");
    }

    #[test]
    fn patterns_table() {
        let start = Rules::Start(Regex::new(r"^\d{4}-").unwrap());
        let cont = Rules::Continue(Regex::new(r"^\s").unwrap());
        let text = "2026-01-01 a\n b\n c\n2026-01-01 d\ne\n f";
        assert_eq!(
            groups(&start, text),
            ["2026-01-01 a\n b\n c", "2026-01-01 d\ne\n f"]
        );
        assert_eq!(
            groups(&cont, text),
            ["2026-01-01 a\n b\n c", "2026-01-01 d", "e\n f"]
        );
        // A continuation with nothing open starts a group all the same.
        assert_eq!(groups(&cont, " x\ny"), [" x", "y"]);
    }

    #[test]
    fn config_needs_exactly_one_rule_and_positive_limits() {
        let base = config(None);
        assert_eq!(base.check(), Err(MultilineError::NotOneRule));
        let both = MultilineConfig {
            preset: Some(Preset::Go),
            start_pattern: Some(Pattern::new("x").unwrap()),
            ..base.clone()
        };
        assert_eq!(both.check(), Err(MultilineError::NotOneRule));
        let zero = MultilineConfig {
            preset: Some(Preset::Go),
            max_lines: 0,
            ..base
        };
        assert_eq!(zero.check(), Err(MultilineError::ZeroLimit("max_lines")));
    }
}

//! `${VAR}` and `${VAR:-default}` in the configuration text, replaced before YAML parsing.
//!
//! `$$` stands for a literal `$`; a `$` followed by anything else is kept as it is. An unset
//! variable without a default is an error naming the variable and its line, so a typo in a
//! secret's name fails at start instead of shipping with an empty value.

/// An interpolation failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct InterpolationError {
    /// 1-based line of the `${`.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Replaces every `${VAR}` / `${VAR:-default}` of `text` with `lookup(VAR)`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let line = text[..text.len() - rest.len() + dollar]
                .matches('\n')
                .count()
                + 1;
            let error = |message: String| InterpolationError { line, message };
            let close = body_and_tail
                .find('}')
                .ok_or_else(|| error("`${` without a closing `}`".to_owned()))?;
            let body = &body_and_tail[..close];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if !is_identifier(name) {
                return Err(error(format!(
                    "`${{{body}}}` is not a valid variable reference"
                )));
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(error(format!("environment variable `{name}` is not set")));
                }
            }
            rest = &body_and_tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Letters, digits and `_`, not starting with a digit: the names of environment variables (and
/// of Loki labels).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolates_table() {
        let cases = [
            ("plain", "plain"),
            ("${HOME}/x", "/root/x"),
            ("a ${HOME} b ${HOME}", "a /root b /root"),
            ("${MISSING:-fallback}", "fallback"),
            ("${MISSING:-}", ""),
            ("${HOME:-unused}", "/root"),
            ("${EMPTY:-unused}", ""),
            ("$$HOME", "$HOME"),
            ("cost: $5", "cost: $5"),
            ("end $", "end $"),
            ("${MISSING:-a:-b}", "a:-b"),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, env).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn errors_name_the_line_and_variable() {
        let cases = [
            ("a: 1\nb: ${NOPE}\n", 2, "`NOPE` is not set"),
            ("${HOME", 1, "without a closing"),
            ("x\n\n${1BAD}", 3, "not a valid variable"),
            ("${}", 1, "not a valid variable"),
        ];
        for (input, line, fragment) in cases {
            let err = interpolate(input, env).unwrap_err();
            assert_eq!(err.line, line, "{input}");
            assert!(err.message.contains(fragment), "{input}: {}", err.message);
        }
    }
}

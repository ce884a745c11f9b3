//! `format: json`: one JSON object per line.

use serde_json::Value;

use crate::event::Event;

/// Parses the event's `message` as a JSON object into its fields; on failure sets
/// `parse_error` and returns false.
pub fn parse(event: &mut Event, message: &[u8]) -> bool {
    let error = match serde_json::from_slice::<Value>(message) {
        Ok(Value::Object(fields)) => {
            event.fields = Some(Box::new(fields));
            return true;
        }
        Ok(other) => format!("expected a JSON object, found {}", kind(&other)),
        Err(e) => format!("invalid JSON: {e}"),
    };
    event.parse_error = Some(error.into_boxed_str());
    false
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table() {
        // (line, parses?, a fragment of the error, or a key of the object)
        let cases: &[(&[u8], bool, &str)] = &[
            (br#"{"level":"info","status":404}"#, true, "status"),
            (br#"  {"nested":{"a":[1,2]}}  "#, true, "nested"),
            (br#"{}"#, true, ""),
            (br#"[1,2]"#, false, "an array"),
            (br#""text""#, false, "a string"),
            (br#"42"#, false, "a number"),
            (br#"{"unterminated":"#, false, "invalid JSON"),
            (b"plain text line", false, "invalid JSON"),
            (b"", false, "invalid JSON"),
            (b"{\"bad\":\"\xff\"}", false, "invalid JSON"),
        ];
        for (line, ok, fragment) in cases {
            let mut e = Event::default();
            assert_eq!(
                parse(&mut e, line),
                *ok,
                "{}",
                String::from_utf8_lossy(line)
            );
            if *ok {
                let fields = e.fields.unwrap();
                assert!(fragment.is_empty() || fields.contains_key(*fragment));
                assert!(e.parse_error.is_none());
            } else {
                assert!(e.fields.is_none());
                let err = e.parse_error.unwrap();
                assert!(err.contains(fragment), "{err}");
            }
        }
    }

    #[test]
    fn numbers_stay_typed() {
        let mut e = Event::default();
        assert!(parse(&mut e, br#"{"status":404,"ratio":0.5}"#));
        let fields = e.fields.unwrap();
        assert_eq!(fields["status"], serde_json::json!(404));
        assert_eq!(fields["ratio"], serde_json::json!(0.5));
    }
}

//! What the network sources make of arbitrary bytes: a syslog message parsed into a journal
//! record, a syslog stream framed in arbitrary pieces, an HTTP body turned into records, an
//! OTLP/JSON request decoded and mapped.
//!
//! Input: byte 0 picks the cut limit (1..=64) and byte 1 seeds the read sizes; the rest is the
//! bytes sent. Checked: no panic; every record is one line of one JSON object; a framed message
//! is never longer than the limit and every byte is used once the stream closes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_agent::source::http::{BodyFormat, records_of};
use log_agent::source::otlp::{request_from_json, write_records};
use log_agent::source::syslog::framing::StreamFramer;
use log_agent::source::syslog::write_record;

/// Every line of `records` is a JSON object, and it ends with a newline.
fn one_object_a_line(records: &[u8]) {
    if records.is_empty() {
        return;
    }
    assert_eq!(records.last(), Some(&b'\n'), "a record without its newline");
    for line in records[..records.len() - 1].split(|&b| b == b'\n') {
        let value: Result<serde_json::Map<String, serde_json::Value>, _> =
            serde_json::from_slice(line);
        assert!(value.is_ok(), "not a JSON object: {:?}", String::from_utf8_lossy(line));
    }
}

fuzz_target!(|input: &[u8]| {
    let [limit, seed, sent @ ..] = input else {
        return;
    };
    let max = usize::from(*limit % 64) + 1;

    let mut record = Vec::new();
    write_record(&mut record, sent, Some("127.0.0.1:514"));
    one_object_a_line(&record);

    let mut framer = StreamFramer::new(max);
    let mut buf = Vec::new();
    let mut piece = usize::from(*seed % 16) + 1;
    let mut at = 0;
    loop {
        let end = (at + piece).min(sent.len());
        buf.extend_from_slice(&sent[at..end]);
        at = end;
        let closed = at == sent.len();
        let used = framer.frames(&buf, closed, |message, _cut| {
            assert!(message.len() <= max, "a message over the limit");
        });
        assert!(used <= buf.len());
        buf.drain(..used);
        if closed {
            assert!(buf.is_empty(), "bytes left once the stream closed");
            break;
        }
        piece = piece % 13 + 1;
    }

    for format in [BodyFormat::Ndjson, BodyFormat::Lines] {
        let mut records = Vec::new();
        if records_of(sent, format, "127.0.0.1:1", &mut records, 1 << 20).is_ok() {
            one_object_a_line(&records);
        }
    }

    if let Ok(request) = request_from_json(sent) {
        let mut records = Vec::new();
        if write_records(&request, "127.0.0.1:1", &mut records, 1 << 20).is_ok() {
            one_object_a_line(&records);
        }
    }
});

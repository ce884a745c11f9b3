//! Line framing on arbitrary bytes, read in arbitrary pieces with an arbitrary line limit.
//!
//! Input: byte 0 sets `max_line_bytes` (1..=64), byte 1 seeds the read sizes, the rest is the
//! file. Checked: no panic; events in order and inside the chunk they came with; no message
//! longer than the limit; the commit offset never passes what was read, and reaches the end
//! once the file is let go.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_agent::event::Event;
use log_agent::source::framing::Framer;

fuzz_target!(|input: &[u8]| {
    let [limit, seed, file @ ..] = input else {
        return;
    };
    let max_line_bytes = usize::from(*limit % 64) + 1;
    let mut framer = Framer::new(0, max_line_bytes);
    let mut last_offset = None;
    let mut read = 0;
    let mut piece = usize::from(*seed % 16) + 1;
    let mut check = |events: &[Event], data: &[u8], framer: &Framer, read: usize| {
        for event in events {
            let (start, len) = (event.start as usize, event.len as usize);
            assert!(start + len <= data.len(), "message outside its chunk");
            assert!(len <= max_line_bytes, "message over max_line_bytes");
            assert!(
                last_offset.is_none_or(|o| event.offset > o),
                "offsets go back"
            );
            assert!(event.offset < read as u64);
            last_offset = Some(event.offset);
        }
        assert!(framer.commit_offset() <= framer.read_offset());
        assert_eq!(framer.read_offset(), read as u64);
    };
    for chunk in file.chunks(piece) {
        framer.push(chunk);
        read += chunk.len();
        let mut events = Vec::new();
        let framed = framer.frame(&mut events);
        check(&events, &framed.data, &framer, read);
        piece = piece % 31 + 1;
    }
    let mut events = Vec::new();
    let framed = framer.finish(&mut events);
    check(&events, &framed.data, &framer, read);
    assert_eq!(
        framer.commit_offset(),
        read as u64,
        "let go, the whole file is committed"
    );
});

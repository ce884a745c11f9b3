//! JSON strings written straight into a byte buffer: the escaping every encoder shares (events,
//! Elasticsearch and Loki bodies, pod metadata), eight bytes at a time.
//!
//! Invariant: what is written is a valid JSON string with the same text as its input, escaped as
//! `serde_json` escapes it.

/// What each byte needs inside a JSON string: 0 nothing, `u` a `\u00XX` escape, else the letter
/// after a backslash.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` (valid UTF-8) as a quoted, escaped JSON string.
pub fn write_json_str(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    if !needs_escape(text) {
        // Most strings: one copy.
        out.extend_from_slice(text);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        // Jump 8 bytes at a time to the next byte that needs escaping (the lowest flagged byte
        // of a word is exact; flags above it may be spurious and are looked at again).
        if let Some(word) = text.get(i..i + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let mask = escape_mask(u64::from_le_bytes(bytes));
            if mask == 0 {
                i += 8;
                continue;
            }
            i += (mask.trailing_zeros() / 8) as usize;
        }
        let byte = text[i];
        let escape = ESCAPES[byte as usize];
        if escape != 0 {
            out.extend_from_slice(&text[start..i]);
            if escape == b'u' {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(byte >> 4) as usize],
                    HEX[(byte & 0xf) as usize],
                ]);
            } else {
                out.extend_from_slice(&[b'\\', escape]);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

/// True when some byte of `text` needs escaping, eight at a time.
fn needs_escape(text: &[u8]) -> bool {
    let mut words = text.chunks_exact(8);
    let in_words = words.by_ref().any(|word| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        escape_mask(u64::from_le_bytes(bytes)) != 0
    });
    in_words || words.remainder().iter().any(|&b| ESCAPES[b as usize] != 0)
}

/// Flags (high bit) the bytes of `word` (little endian) that are control bytes, `"` or `\\`.
/// SWAR: the lowest flagged byte is always a real match and no match goes unflagged; a flag
/// above a match may be spurious (borrow propagation). Bytes >= 0x80 never match.
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote & HIGHS;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash & HIGHS;
    below_space | quote | backslash
}

/// A JSON string literal of `text`.
pub fn json_string(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_json_str(&mut out, text.as_bytes());
    // Escaping valid UTF-8 yields valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_flag_is_the_first_byte_to_escape() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let word = rng.u64(..);
            // Bias towards the interesting bytes.
            let mut bytes = word.to_le_bytes();
            for b in &mut bytes {
                match rng.u8(0..6) {
                    0 => *b = b'"',
                    1 => *b = b'\\',
                    2 => *b = rng.u8(0..0x20),
                    3 => *b = rng.u8(0x20..0x80),
                    _ => {}
                }
            }
            let mask = escape_mask(u64::from_le_bytes(bytes));
            let first = bytes.iter().position(|&b| ESCAPES[b as usize] != 0);
            let flagged_first = (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize);
            assert_eq!(flagged_first, first, "{bytes:?}");
        }
    }

    #[test]
    fn escapes_like_serde_json() {
        let cases = [
            "",
            "plain ascii text longer than eight",
            "tab\there",
            "q\"uote at 9th b",
            "\\",
            "é ü 日本 \u{1f600}",
            "\u{7f}\u{1}x",
        ];
        for case in cases {
            assert_eq!(
                json_string(case),
                serde_json::to_string(case).unwrap(),
                "{case:?}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = ['a', ' ', '"', '\\', '\n', '\u{1}', 'é', '日', '\u{7f}'];
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            assert_eq!(
                json_string(&text),
                serde_json::to_string(&text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_control_byte_is_escaped() {
        for byte in 0u8..0x20 {
            let s = json_string(std::str::from_utf8(&[byte]).unwrap());
            let back: String = serde_json::from_str(&s).unwrap();
            assert_eq!(back.as_bytes(), [byte]);
        }
    }
}

//! Framing what the syslog transports read: a stream into messages (RFC 6587 octet counting,
//! or a newline or NUL at each end), a datagram's message without its line end, and journal
//! records into parts the journal takes in one append.
//!
//! Invariant: every byte of a stream belongs to exactly one message, or to the skipped rest of a
//! message cut at `max` bytes; nothing is held beyond one message's worth.

/// Strips what ends a datagram's message: newlines, carriage returns and NULs.
pub(super) fn trim_end(message: &[u8]) -> &[u8] {
    let end = message
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | b'\0'))
        .map_or(0, |at| at + 1);
    &message[..end]
}

/// Frames a stream: a message is `LENGTH SP MESSAGE` when it starts with a digit (octet
/// counting), else it ends at a newline or a NUL (Python's `SysLogHandler` ends with a NUL). A
/// message longer than `max` is cut to `max` bytes and the rest of it skipped.
#[derive(Debug)]
pub struct StreamFramer {
    max: usize,
    /// Bytes still to skip of an octet-counted message that was cut.
    skip_bytes: usize,
    /// Skipping to the next terminator of a message that was cut.
    skip_line: bool,
}

impl StreamFramer {
    /// A framer cutting messages at `max` bytes.
    pub fn new(max: usize) -> Self {
        StreamFramer {
            max,
            skip_bytes: 0,
            skip_line: false,
        }
    }

    /// Calls `each(message, cut)` for every whole message at the start of `buf` (and, when
    /// the stream is `closed`, for what is left); returns how many bytes were used.
    pub fn frames(&mut self, buf: &[u8], closed: bool, mut each: impl FnMut(&[u8], bool)) -> usize {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if self.skip_bytes > 0 {
                let n = self.skip_bytes.min(rest.len());
                self.skip_bytes -= n;
                at += n;
                if self.skip_bytes > 0 {
                    return at;
                }
                continue;
            }
            if self.skip_line {
                match memchr::memchr2(b'\n', b'\0', rest) {
                    Some(end) => {
                        self.skip_line = false;
                        at += end + 1;
                        continue;
                    }
                    None => return buf.len(),
                }
            }
            // Blank separators between messages.
            let blank = rest
                .iter()
                .take_while(|&&b| matches!(b, b'\n' | b'\r' | b'\0' | b' '))
                .count();
            at += blank;
            let rest = &buf[at..];
            if rest.is_empty() {
                return at;
            }
            if let Some(counted) = octet_count(rest) {
                let Some((digits, len)) = counted else {
                    // The length is still arriving; at the end of the stream, the digits were
                    // a message of their own.
                    if closed {
                        each(&rest[..rest.len().min(self.max)], rest.len() > self.max);
                        return buf.len();
                    }
                    return at;
                };
                let body = &rest[digits + 1..];
                if len > self.max {
                    if body.len() < self.max && !closed {
                        return at;
                    }
                    each(&body[..self.max.min(body.len())], true);
                    let taken = self.max.min(body.len());
                    at += digits + 1 + taken;
                    self.skip_bytes = len - taken;
                    if closed {
                        return buf.len();
                    }
                    continue;
                }
                if body.len() < len {
                    if closed {
                        each(body, true);
                        return buf.len();
                    }
                    return at;
                }
                each(&body[..len], false);
                at += digits + 1 + len;
                continue;
            }
            match memchr::memchr2(b'\n', b'\0', rest) {
                Some(end) if end <= self.max => {
                    let line = &rest[..end];
                    each(line.strip_suffix(b"\r").unwrap_or(line), false);
                    at += end + 1;
                }
                _ if rest.len() > self.max => {
                    each(&rest[..self.max], true);
                    at += self.max;
                    self.skip_line = true;
                }
                Some(_) => return at,
                None if closed => {
                    each(rest, false);
                    return buf.len();
                }
                None => return at,
            }
        }
    }
}

/// `Some(Some((digits, length)))` when `rest` starts with an octet count and its space,
/// `Some(None)` when it starts with digits not yet followed by one, `None` when it does not
/// start with a digit (newline framing).
fn octet_count(rest: &[u8]) -> Option<Option<(usize, usize)>> {
    if !rest.first()?.is_ascii_digit() {
        return None;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest.get(digits) {
        // More than 9 digits is no length a sender means: the line is framed by newline.
        _ if digits > 9 => None,
        Some(b' ') => {
            let len = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
            Some(Some((digits, len)))
        }
        Some(_) => None,
        None => Some(None),
    }
}

/// Splits journal records (whole lines) into parts of at most `limit` bytes (a record longer
/// than that is a part of its own), each with its number of records.
pub(super) fn parts(records: &[u8], limit: usize) -> impl Iterator<Item = (&[u8], u64)> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        let mut count = 0;
        for line_end in memchr::memchr_iter(b'\n', rest) {
            if count > 0 && line_end + 1 > limit {
                break;
            }
            end = line_end + 1;
            count += 1;
        }
        if count == 0 {
            end = rest.len();
            count = 1;
        }
        let (part, tail) = rest.split_at(end);
        rest = tail;
        Some((part, count))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(max: usize, pieces: &[&[u8]], close: bool) -> Vec<(String, bool)> {
        let mut framer = StreamFramer::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            buf.extend_from_slice(piece);
            let closed = close && i == pieces.len() - 1;
            let used = framer.frames(&buf, closed, |m, cut| {
                out.push((String::from_utf8_lossy(m).into_owned(), cut))
            });
            buf.drain(..used);
        }
        out
    }

    type Case<'a> = (usize, &'a [&'a [u8]], bool, Vec<(String, bool)>);

    #[test]
    fn frames_table() {
        let m = |s: &str| (s.to_owned(), false);
        let cut = |s: &str| (s.to_owned(), true);
        // (max, pieces as they arrive, closed at the end, messages)
        let cases: &[Case<'_>] = &[
            (
                100,
                &[b"<14>a\n<14>b\n"],
                false,
                vec![m("<14>a"), m("<14>b")],
            ),
            (
                100,
                &[b"<14>a\0<14>b\0"],
                false,
                vec![m("<14>a"), m("<14>b")],
            ),
            (
                100,
                &[b"<14>a\r\n<14>", b"b\n"],
                false,
                vec![m("<14>a"), m("<14>b")],
            ),
            (100, &[b"<14>unterminated"], false, vec![]),
            (
                100,
                &[b"<14>unterminated"],
                true,
                vec![m("<14>unterminated")],
            ),
            (
                100,
                &[b"5 <14>a6 <14>bc"],
                false,
                vec![m("<14>a"), m("<14>bc")],
            ),
            (
                100,
                &[b"1", b"1 <14>a\nb c d"],
                false,
                vec![m("<14>a\nb c d")],
            ),
            (100, &[b"8 <14>a"], true, vec![cut("<14>a")]),
            (
                4,
                &[b"10 0123456789", b"2 ab"],
                false,
                vec![cut("0123"), m("ab")],
            ),
            (4, &[b"10 01", b"23456", b"789\n"], false, vec![cut("0123")]),
            (
                4,
                &[b"<14>abcdef\n<1>\n"],
                false,
                vec![cut("<14>"), m("<1>")],
            ),
            (
                4,
                &[b"<14>ab", b"cdef", b"gh\nxy\n"],
                false,
                vec![cut("<14>"), m("xy")],
            ),
            (100, &[b"1234567890 x\n"], false, vec![m("1234567890 x")]),
            (100, &[b"<14>a\n42"], true, vec![m("<14>a"), m("42")]),
            (1, &[b"22"], true, vec![cut("2")]),
            (100, &[b"\n\n  <14>a\n"], false, vec![m("<14>a")]),
        ];
        for (max, pieces, close, expected) in cases {
            assert_eq!(&framed(*max, pieces, *close), expected, "{pieces:?}");
        }
    }

    #[test]
    fn parts_table() {
        // (records, limit, parts)
        let cases: &[(&str, usize, &[&str])] = &[
            ("", 10, &[]),
            ("a\nb\nc\n", 100, &["a\nb\nc\n"]),
            ("a\nb\nc\n", 4, &["a\nb\n", "c\n"]),
            ("a\nb\nc\n", 1, &["a\n", "b\n", "c\n"]),
            ("long line\nb\n", 4, &["long line\n", "b\n"]),
        ];
        for (records, limit, expected) in cases {
            let got: Vec<(&[u8], u64)> = parts(records.as_bytes(), *limit).collect();
            let texts: Vec<&str> = got
                .iter()
                .map(|(p, _)| std::str::from_utf8(p).unwrap())
                .collect();
            assert_eq!(&texts, expected, "{records:?} / {limit}");
            for (part, count) in got {
                assert_eq!(count as usize, part.iter().filter(|&&b| b == b'\n').count());
            }
        }
    }

    #[test]
    fn trim_end_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"<14>a\n", b"<14>a"),
            (b"<14>a\0", b"<14>a"),
            (b"<14>a\r\n\0", b"<14>a"),
            (b"\n", b""),
            (b"", b""),
        ];
        for (input, expected) in cases {
            assert_eq!(trim_end(input), *expected);
        }
    }
}

//! `format: cri`: the container runtime log format that containerd and CRI-O write for the
//! kubelet: `<RFC 3339 time> <stdout|stderr> <tags> <message>`.
//!
//! The first tag is `F` (a full line, or the last piece of one) or `P` (a partial piece: the
//! runtime split a long line, the next piece of the same stream continues it); more tags may
//! follow after `:`. Joining the pieces happens in [`super::assemble`]; this only splits one
//! line, without allocating.

use super::time::parse_rfc3339;
use crate::event::Stream;

/// Why a line is not a CRI log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cri: expected {0}")]
pub struct CriError(&'static str);

/// One CRI line, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriLine {
    /// The runtime's time, Unix nanoseconds.
    pub time: i64,
    /// Which stream the container wrote.
    pub stream: Stream,
    /// A `P` piece, continued by the next piece of the same stream.
    pub partial: bool,
    /// Where the message starts in the line (it runs to the line's end).
    pub message_start: usize,
}

/// Splits a CRI line.
pub fn parse(line: &[u8]) -> Result<CriLine, CriError> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = parts
        .next()
        .and_then(parse_rfc3339)
        .ok_or(CriError("an RFC 3339 time"))?;
    let stream = match parts.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => return Err(CriError("`stdout` or `stderr` after the time")),
    };
    let tags = parts.next().ok_or(CriError("the `F` or `P` tag"))?;
    let partial = match tags.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(CriError("the `F` or `P` tag")),
    };
    let message_start = match parts.next() {
        Some(message) => line.len() - message.len(),
        None => line.len(),
    };
    Ok(CriLine {
        time,
        stream,
        partial,
        message_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table() {
        // (line, expected (stream, partial, message) or the error)
        type Case = (
            &'static [u8],
            Result<(Stream, bool, &'static [u8]), &'static str>,
        );
        let cases: &[Case] = &[
            (
                b"2016-10-06T00:17:09.669794202Z stdout F The content of the log entry 1",
                Ok((Stream::Stdout, false, b"The content of the log entry 1")),
            ),
            (
                b"2016-10-06T00:17:09.669794202Z stdout P First line of log entry 2",
                Ok((Stream::Stdout, true, b"First line of log entry 2")),
            ),
            (
                b"2019-04-30T02:12:41.8443515Z stderr F:x  two  spaces kept ",
                Ok((Stream::Stderr, false, b" two  spaces kept ")),
            ),
            (
                b"2019-04-30T02:12:41.8443515Z stdout F ",
                Ok((Stream::Stdout, false, b"")),
            ),
            (
                b"2019-04-30T02:12:41.8443515Z stdout F",
                Ok((Stream::Stdout, false, b"")),
            ),
            (
                br#"2026-11-25T04:55:03.1+01:00 stdout F {"level":"info"}"#,
                Ok((Stream::Stdout, false, br#"{"level":"info"}"#)),
            ),
            (
                b"2019-01-01 T01:00:00.000000001Z stderr testgood",
                Err("an RFC 3339 time"),
            ),
            (
                b"2019-01-01T01:00:00.000000001Z testgood",
                Err("`stdout` or `stderr` after the time"),
            ),
            (
                b"2019-01-01T01:00:00.000000001Z stdout X msg",
                Err("the `F` or `P` tag"),
            ),
            (
                b"2019-01-01T01:00:00.000000001Z stdout",
                Err("the `F` or `P` tag"),
            ),
            (b"plain text", Err("an RFC 3339 time")),
            (b"", Err("an RFC 3339 time")),
        ];
        for (line, want) in cases {
            let got = parse(line)
                .map(|p| (p.stream, p.partial, &line[p.message_start..]))
                .map_err(|e| e.0);
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(line));
        }
    }
}

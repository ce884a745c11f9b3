//! Event times: the layouts log lines carry, parsed into Unix nanoseconds (UTC), and RFC 3339
//! written back without allocating.
//!
//! The fixed layouts (RFC 3339, the common log `25/Nov/2026:04:55:03 +0000`, nginx's error log
//! `2026/11/25 04:55:03`) have hand-written scanners because they run once per line; only a
//! user's strftime layout goes through `chrono`'s format parser.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// How a timestamp field is written, as named in `timestamp.format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// `2026-11-25T04:55:03.123Z`, any offset, any fraction.
    Rfc3339,
    /// The nginx/apache access-log layout `25/Nov/2026:04:55:03 +0000`.
    CommonLog,
    /// The nginx error-log layout `2026/11/25 04:55:03` (taken as UTC).
    NginxError,
    /// Seconds since the Unix epoch, integer or fractional, number or string.
    UnixSeconds,
    /// Milliseconds since the Unix epoch.
    UnixMillis,
    /// Microseconds since the Unix epoch.
    UnixMicros,
    /// Nanoseconds since the Unix epoch.
    UnixNanos,
    /// A `chrono` strftime layout; without a zone in it, the time is taken as UTC.
    Strftime(String),
}

/// A `timestamp.format` that is neither a known name nor a valid strftime layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time format `{0}`: expected rfc3339, common_log, nginx_error, unix, unix_ms, unix_us, unix_ns or a strftime layout with `%`"
)]
pub struct TimeFormatError(String);

impl TimeFormat {
    /// The format named `text`.
    pub fn from_name(text: &str) -> Result<Self, TimeFormatError> {
        Ok(match text {
            "rfc3339" => TimeFormat::Rfc3339,
            "common_log" | "nginx" | "apache" => TimeFormat::CommonLog,
            "nginx_error" => TimeFormat::NginxError,
            "unix" => TimeFormat::UnixSeconds,
            "unix_ms" => TimeFormat::UnixMillis,
            "unix_us" => TimeFormat::UnixMicros,
            "unix_ns" => TimeFormat::UnixNanos,
            layout if layout.contains('%') && is_valid_strftime(layout) => {
                TimeFormat::Strftime(layout.to_owned())
            }
            other => return Err(TimeFormatError(other.to_owned())),
        })
    }

    fn name(&self) -> &str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::CommonLog => "common_log",
            TimeFormat::NginxError => "nginx_error",
            TimeFormat::UnixSeconds => "unix",
            TimeFormat::UnixMillis => "unix_ms",
            TimeFormat::UnixMicros => "unix_us",
            TimeFormat::UnixNanos => "unix_ns",
            TimeFormat::Strftime(layout) => layout,
        }
    }

    /// The time `value` (a string, or a number for the Unix formats) stands for, in Unix
    /// nanoseconds.
    pub fn parse_value(&self, value: &Value) -> Option<i64> {
        match value {
            Value::String(text) => self.parse(text.as_bytes()),
            Value::Number(number) => {
                let scale = self.unix_scale()?;
                match number.as_i64() {
                    Some(n) => n.checked_mul(scale),
                    None => decimal_scaled(&number.to_string(), scale),
                }
            }
            _ => None,
        }
    }

    /// The time a parsed field stands for, in Unix nanoseconds: a string in this format, or a
    /// number for the Unix formats.
    pub fn parse_field(&self, field: &crate::event::fields::FieldRef<'_>) -> Option<i64> {
        if let Some(text) = field.as_str() {
            return self.parse(text.as_bytes());
        }
        let number = field.number_text()?;
        let scale = self.unix_scale()?;
        match number.parse::<i64>() {
            Ok(n) => n.checked_mul(scale),
            Err(_) => decimal_scaled(&number, scale),
        }
    }

    /// The time `text` stands for, in Unix nanoseconds.
    pub fn parse(&self, text: &[u8]) -> Option<i64> {
        match self {
            TimeFormat::Rfc3339 => parse_rfc3339(text),
            TimeFormat::CommonLog => parse_common_log(text),
            TimeFormat::NginxError => parse_nginx_error(text),
            TimeFormat::Strftime(layout) => parse_strftime(std::str::from_utf8(text).ok()?, layout),
            unix => {
                let scale = unix.unix_scale()?;
                let text = std::str::from_utf8(text).ok()?.trim();
                match text.parse::<i64>() {
                    Ok(n) => n.checked_mul(scale),
                    Err(_) => decimal_scaled(text, scale),
                }
            }
        }
    }

    /// Nanoseconds per unit of a Unix format.
    fn unix_scale(&self) -> Option<i64> {
        match self {
            TimeFormat::UnixSeconds => Some(1_000_000_000),
            TimeFormat::UnixMillis => Some(1_000_000),
            TimeFormat::UnixMicros => Some(1_000),
            TimeFormat::UnixNanos => Some(1),
            _ => None,
        }
    }
}

impl fmt::Display for TimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeFormat::from_name(&text).map_err(serde::de::Error::custom)
    }
}

fn is_valid_strftime(layout: &str) -> bool {
    use chrono::format::{Item, StrftimeItems};
    !StrftimeItems::new(layout).any(|item| matches!(item, Item::Error))
}

/// `text` (a decimal like `1700000000.25`, or anything `f64` reads) times `scale`, exactly for
/// decimals: a float would lose the nanoseconds of a present-day time.
fn decimal_scaled(text: &str, scale: i64) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if let Some((int, frac)) = digits.split_once('.')
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let mut nanos = i128::from(int.parse::<i64>().ok()?) * i128::from(scale);
        let mut unit = i128::from(scale);
        for digit in frac.bytes() {
            unit /= 10;
            nanos += i128::from(digit - b'0') * unit;
        }
        let nanos = if negative { -nanos } else { nanos };
        return i64::try_from(nanos).ok();
    }
    let nanos = text.parse::<f64>().ok()? * scale as f64;
    (nanos.is_finite() && nanos.abs() < i64::MAX as f64).then_some(nanos as i64)
}

fn parse_strftime(text: &str, layout: &str) -> Option<i64> {
    match chrono::DateTime::parse_from_str(text, layout) {
        Ok(time) => time.timestamp_nanos_opt(),
        Err(_) => chrono::NaiveDateTime::parse_from_str(text, layout)
            .ok()?
            .and_utc()
            .timestamp_nanos_opt(),
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A cursor over the bytes of a timestamp.
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + n)?;
        let mut value = 0u32;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(d - b'0');
        }
        self.at += n;
        Some(value)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.text.get(self.at) == Some(&want)).then(|| self.at += 1)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// An optional `.fraction` (any number of digits, kept to nanoseconds).
    fn fraction(&mut self) -> i64 {
        if !matches!(self.peek(), Some(b'.' | b',')) {
            return 0;
        }
        self.at += 1;
        let mut nanos = 0i64;
        let mut scale = 100_000_000i64;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            nanos += i64::from(d - b'0') * scale;
            scale /= 10;
            self.at += 1;
        }
        nanos
    }

    /// `Z`, `+HH:MM`, `+HHMM` or `-…`: the offset east of UTC in seconds.
    fn zone(&mut self) -> Option<i64> {
        match self.peek()? {
            b'Z' | b'z' => {
                self.at += 1;
                Some(0)
            }
            sign @ (b'+' | b'-') => {
                self.at += 1;
                let hours = self.digits(2)?;
                if self.peek() == Some(b':') {
                    self.at += 1;
                }
                let minutes = self.digits(2)?;
                let seconds = i64::from(hours * 3600 + minutes * 60);
                Some(if sign == b'-' { -seconds } else { seconds })
            }
            _ => None,
        }
    }

    /// `HH:MM:SS`.
    fn clock(&mut self) -> Option<(u32, u32, u32)> {
        let hour = self.digits(2)?;
        self.byte(b':')?;
        let minute = self.digits(2)?;
        self.byte(b':')?;
        let second = self.digits(2)?;
        Some((hour, minute, second))
    }

    /// The time, if the whole text was read.
    fn finish(
        &self,
        date: (i64, u32, u32),
        clock: (u32, u32, u32),
        nanos: i64,
        offset: i64,
    ) -> Option<i64> {
        if self.at != self.text.len() {
            return None;
        }
        unix_nanos(date, clock, nanos, offset)
    }
}

/// Unix nanoseconds of a date, a time of day and an offset, if they are in range.
fn unix_nanos(
    date: (i64, u32, u32),
    time: (u32, u32, u32),
    nanos: i64,
    offset: i64,
) -> Option<i64> {
    let (year, month, day) = date;
    let (hour, minute, second) = time;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2026-11-25T04:55:03.669794202Z`, `2026-11-25 04:55:03+01:00`: Unix nanoseconds.
pub fn parse_rfc3339(text: &[u8]) -> Option<i64> {
    let mut s = Scan { text, at: 0 };
    let year = s.digits(4)?;
    s.byte(b'-')?;
    let month = s.digits(2)?;
    s.byte(b'-')?;
    let day = s.digits(2)?;
    match s.peek()? {
        b'T' | b't' | b' ' => s.at += 1,
        _ => return None,
    }
    let clock = s.clock()?;
    let nanos = s.fraction();
    let offset = s.zone()?;
    s.finish((i64::from(year), month, day), clock, nanos, offset)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The access-log layout `25/Nov/2026:04:55:03 +0000`: Unix nanoseconds.
pub fn parse_common_log(text: &[u8]) -> Option<i64> {
    let mut s = Scan { text, at: 0 };
    let day = s.digits(2)?;
    s.byte(b'/')?;
    let name = text.get(s.at..s.at + 3)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))? as u32 + 1;
    s.at += 3;
    s.byte(b'/')?;
    let year = s.digits(4)?;
    s.byte(b':')?;
    let clock = s.clock()?;
    let nanos = s.fraction();
    s.byte(b' ')?;
    let offset = s.zone()?;
    s.finish((i64::from(year), month, day), clock, nanos, offset)
}

/// The nginx error-log layout `2026/11/25 04:55:03`, taken as UTC: Unix nanoseconds.
pub fn parse_nginx_error(text: &[u8]) -> Option<i64> {
    let mut s = Scan { text, at: 0 };
    let year = s.digits(4)?;
    s.byte(b'/')?;
    let month = s.digits(2)?;
    s.byte(b'/')?;
    let day = s.digits(2)?;
    s.byte(b' ')?;
    let clock = s.clock()?;
    s.finish((i64::from(year), month, day), clock, 0, 0)
}

/// Appends `nanos` (Unix nanoseconds) as RFC 3339 in UTC: microseconds, or nanoseconds when
/// the time has them, like the read time the agent writes.
pub fn write_rfc3339(out: &mut Vec<u8>, nanos: i64) {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    // Written into one buffer, two digits at a time, and appended at once: this runs once per
    // event with a parsed time.
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    let year = year.clamp(0, 9999);
    put_pair(&mut text, 0, year / 100);
    put_pair(&mut text, 2, year % 100);
    put_pair(&mut text, 5, i64::from(month));
    put_pair(&mut text, 8, i64::from(day));
    put_pair(&mut text, 11, of_day / 3600);
    put_pair(&mut text, 14, of_day / 60 % 60);
    put_pair(&mut text, 17, of_day % 60);
    let (mut fraction, width) = if fraction % 1000 == 0 {
        (fraction / 1000, 6)
    } else {
        (fraction, 9)
    };
    let mut end = 20 + width;
    while fraction > 0 && end > 20 {
        end -= 1;
        text[end] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    text[20 + width] = b'Z';
    out.extend_from_slice(&text[..21 + width]);
}

/// Writes `value` (0 to 99) as two digits at `at`.
fn put_pair(text: &mut [u8; 30], at: usize, value: i64) {
    let value = value.clamp(0, 99) as u8;
    text[at] = b'0' + value / 10;
    text[at + 1] = b'0' + value % 10;
}

#[cfg(test)]
mod tests;

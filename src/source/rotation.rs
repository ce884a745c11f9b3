//! Rotation families: which files are generations of one log (`app.log`, `app.log.1`,
//! `app.log.2.gz`, `app.log-20261124`), told apart by name alone, and their age order. Replay
//! reads a family oldest first; retention deletes only files that are not the current one.
//!
//! Invariant: a name without a rotation's suffix (a counter, a date, a compressor's) is its
//! family's current file, the one a writer appends to.

use std::cmp::Ordering;

/// Where a file stands in its rotation family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generation {
    /// `app.log.3`: the higher the number, the older.
    Numbered(u64),
    /// `app.log-20261124`, `0.log.20261124-101010`: the later the date, the newer.
    Dated(String),
    /// `app.log`: the file being written, newest of all.
    Current,
}

impl Generation {
    /// Oldest first.
    pub fn age_order(&self, other: &Self) -> Ordering {
        use Generation::*;
        match (self, other) {
            (Numbered(a), Numbered(b)) => b.cmp(a),
            (Dated(a), Dated(b)) => a.cmp(b),
            (Current, Current) => Ordering::Equal,
            (Current, _) => Ordering::Greater,
            (_, Current) => Ordering::Less,
            (Dated(_), Numbered(_)) => Ordering::Less,
            (Numbered(_), Dated(_)) => Ordering::Greater,
        }
    }
}

/// The suffixes compressors give their files.
pub const COMPRESSED_SUFFIXES: [&str; 4] = [".gz", ".zst", ".bz2", ".xz"];

/// Splits a file name into its family's name and its generation: a compressor's suffix (`.gz`,
/// `.zst`, `.bz2`, `.xz`) and trailing `.N`, `-YYYYMMDD` or `.YYYYMMDD-HHMMSS` parts are the
/// rotation's, the rest is the family's.
pub fn family_of(name: &str) -> (&str, Generation) {
    let stem = COMPRESSED_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    let mut base = stem;
    while let Some(cut) = base.rfind(['.', '-']) {
        let digits = &base[cut + 1..];
        if cut == 0 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        base = &base[..cut];
    }
    if base.len() == stem.len() {
        return (stem, Generation::Current);
    }
    let suffix = &stem[base.len() + 1..];
    let generation = match suffix.parse::<u64>() {
        // Small plain numbers are logrotate's counters; long ones are dates.
        Ok(n) if suffix.len() < 6 => Generation::Numbered(n),
        _ => Generation::Dated(suffix.to_owned()),
    };
    (base, generation)
}

/// Whether `name` is a rotated generation (numbered, dated or compressed), never the file a
/// writer appends to.
pub fn is_rotated(name: &str) -> bool {
    family_of(name).1 != Generation::Current
        || COMPRESSED_SUFFIXES
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_and_generations_table() {
        use Generation::*;
        let cases: &[(&str, &str, Generation)] = &[
            ("app.log", "app.log", Current),
            ("app.log.1", "app.log", Numbered(1)),
            ("app.log.12.gz", "app.log", Numbered(12)),
            ("app.log.3.zst", "app.log", Numbered(3)),
            ("app.log.4.bz2", "app.log", Numbered(4)),
            ("app.log-20261124.xz", "app.log", Dated("20261124".into())),
            ("app.log.gz", "app.log", Current),
            ("app.log-20261124", "app.log", Dated("20261124".into())),
            ("app.log-20261124.gz", "app.log", Dated("20261124".into())),
            (
                "0.log.20261124-101010.gz",
                "0.log",
                Dated("20261124-101010".into()),
            ),
            ("0.log", "0.log", Current),
            ("access", "access", Current),
            (".1", ".1", Current),
            ("v2.0-beta", "v2.0-beta", Current),
        ];
        for (name, family, generation) in cases {
            assert_eq!(family_of(name), (*family, generation.clone()), "{name}");
        }
    }

    #[test]
    fn rotated_table() {
        let cases = [
            ("app.log", false),
            ("access", false),
            ("app.log.1", true),
            ("app.log.2.gz", true),
            ("app.log-20261124", true),
            ("app.log.gz", true),
            ("v2.0-beta", false),
        ];
        for (name, rotated) in cases {
            assert_eq!(is_rotated(name), rotated, "{name}");
        }
    }
}

//! Times on the recording API: RFC 3339 or Unix seconds in, RFC 3339 and file-name stamps out.
//!
//! Pure and small on purpose: the server needs only UTC conversions of the civil calendar, so a
//! date-time crate would be a dependency for about forty lines.

/// Microseconds since the Unix epoch: the one time type of recordings.
pub type Micros = i64;

/// Earliest time accepted (1970-01-01) and latest (year 9999), so arithmetic never overflows.
const MAX_MICROS: Micros = 253_402_300_799_999_999;

use crate::civil::{civil_from_days, days_from_civil};

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const HINT: &str = "use RFC 3339 (2026-12-01T08:04:20Z, 2026-12-01T09:04:20.5+01:00) or Unix seconds (1764576260, 1764576260.5)";

/// A time that is neither RFC 3339 nor Unix seconds, or out of range; says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTime(String);

/// Parses a time given as RFC 3339 or as Unix seconds (fraction allowed).
pub fn parse(s: &str) -> Result<Micros, BadTime> {
    let s = s.trim();
    let bad = || BadTime(format!("cannot read {s:?} as a time: {HINT}"));
    if s.is_empty() || s.len() > 40 {
        return Err(bad());
    }
    let us = if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || int.len() > 12 {
            return Err(bad());
        }
        let secs: i64 = int.parse().map_err(|_| bad())?;
        secs * 1_000_000 + fraction_micros(frac).ok_or_else(bad)?
    } else {
        parse_rfc3339(s).ok_or_else(bad)?
    };
    if !(0..=MAX_MICROS).contains(&us) {
        return Err(bad());
    }
    Ok(us)
}

/// Up to 6 digits of a fraction of a second as microseconds (more digits are truncated).
fn fraction_micros(frac: &str) -> Option<i64> {
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(6).collect();
    while digits.len() < 6 {
        digits.push('0');
    }
    digits.parse().ok()
}

fn num(s: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| range.contains(n))
}

fn parse_rfc3339(s: &str) -> Option<Micros> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let y = i64::from(num(s.get(0..4)?, 0..=9999)?);
    let m = num(s.get(5..7)?, 1..=12)?;
    let d = num(s.get(8..10)?, 1..=31)?;
    if d > days_in_month(y, m) {
        return None;
    }
    let hh = num(s.get(11..13)?, 0..=23)?;
    let mm = num(s.get(14..16)?, 0..=59)?;
    // 60: a leap second, read as the next second's start.
    let ss = num(s.get(17..19)?, 0..=60)?;
    let rest = s.get(19..)?;
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit())?;
            (fraction_micros(&r[..end])?, &r[end..])
        }
        None => (0, rest),
    };
    let offset_secs: i64 = match zone {
        "Z" | "z" => 0,
        // Byte checks and `get`, never `&z[..]`: a zone of non-ASCII text must be refused,
        // not sliced inside a character (a panic).
        z if z.len() == 6 && matches!(z.as_bytes()[0], b'+' | b'-') && z.as_bytes()[3] == b':' => {
            let oh = i64::from(num(z.get(1..3)?, 0..=23)?);
            let om = i64::from(num(z.get(4..6)?, 0..=59)?);
            let sign = if z.as_bytes()[0] == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, m, d);
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss) - offset_secs;
    Some(secs * 1_000_000 + frac)
}

/// Splits a time into UTC date and time of day.
fn split(us: Micros) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400) as u32;
    (y, m, d, tod / 3600, tod / 60 % 60, tod % 60, micros)
}

/// RFC 3339 in UTC with microseconds: `2026-12-01T08:04:20.123456Z`.
pub fn rfc3339(us: Micros) -> String {
    let (y, mo, d, h, mi, s, micros) = split(us);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}Z")
}

/// A compact UTC stamp for file names, sortable as text: `20261201T080420Z`.
pub fn stamp(us: Micros) -> String {
    let (y, mo, d, h, mi, s, _) = split(us);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// [`stamp`] with microseconds, for segment file names (unique per camera in practice).
pub fn stamp_micros(us: Micros) -> String {
    let (y, mo, d, h, mi, s, micros) = split(us);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{micros:06}Z")
}

/// Microseconds since the epoch of a wall-clock time (0 before 1970).
pub fn of(t: std::time::SystemTime) -> Micros {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(MAX_MICROS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_unix_seconds_agree() {
        let want = 1_764_576_260_000_000;
        assert_eq!(parse("1764576260"), Ok(want));
        assert_eq!(parse("2025-12-01T08:04:20Z"), Ok(want));
        assert_eq!(parse("2025-12-01t08:04:20z"), Ok(want));
        assert_eq!(parse("2025-12-01 09:04:20+01:00"), Ok(want));
        assert_eq!(parse("2025-12-01T03:34:20-04:30"), Ok(want));
        assert_eq!(parse("1764576260.25"), Ok(want + 250_000));
        assert_eq!(parse("2025-12-01T08:04:20.25Z"), Ok(want + 250_000));
        assert_eq!(parse("2025-12-01T08:04:20.123456789Z"), Ok(want + 123_456));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000_000));
    }

    #[test]
    fn bad_times_are_refused_with_the_accepted_forms() {
        for bad in [
            "",
            "yesterday",
            "-5",
            "1e9",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-12-01T24:00:00Z",
            "2025-12-01T08:04:20",
            "2025-12-01T08:04:20+1:00",
            "2025-12-01",
            "1969-12-31T23:59:59Z",
            "99999999999999",
            "1.2.3",
            "2025-12-01T08:04:20é0:00",
            "2025-12-01T08:04:20+é:00",
            "2025-12-01T08:04:20+0é00",
            "2025-12-01T08:04:20.5é0:00",
            "2025-12-01T08:04é0:00Z",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for us in [
            0,
            1_764_576_260_123_456,
            951_782_400_000_001,
            4_102_444_799_999_999,
        ] {
            assert_eq!(parse(&rfc3339(us)), Ok(us), "{}", rfc3339(us));
        }
        assert_eq!(
            rfc3339(1_764_576_260_123_456),
            "2025-12-01T08:04:20.123456Z"
        );
        assert_eq!(stamp(1_764_576_260_123_456), "20251201T080420Z");
        assert_eq!(
            stamp_micros(1_764_576_260_123_456),
            "20251201T080420.123456Z"
        );
    }
}

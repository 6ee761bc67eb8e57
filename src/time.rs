//! Wall-clock time and the UTC calendar: the one place that reads the system clock as Unix time,
//! converts day counts to dates and back, writes and reads RFC 3339, and aligns the windows of
//! budget periods. A leaf: it uses nothing of the crate, so every layer may use it.
//!
//! Invariants:
//! - The calendar is the proleptic Gregorian one (H. Hinnant's `days_from_civil` /
//!   `civil_from_days`), exact for every day an `i64` of milliseconds can name; the two
//!   conversions are inverse (proptested below).
//! - A clock before 1970 reads as 0 (the epoch), never a panic.
//! - `format_rfc3339` writes what `parse_time` reads back to the millisecond for years 0..=9999.
//! - Windows are aligned to the epoch (hours, days, 30-day blocks) or the UTC calendar month, so
//!   every node agrees on where a period starts without talking to the others.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SECOND_MS: u64 = 1_000;
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Time since the epoch on the system clock (zero when the clock is before 1970).
fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// CPU time this thread has used (zero if the clock cannot be read). Unlike the wall clock it
/// does not run while the thread waits or is preempted, so a work allowance measured with it
/// (the guard's detector) does not shrink on a busy machine. A system call, ~0.1-0.5 µs.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call writes only into it.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Unix seconds now (`created` fields, a snapshot's load time).
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Unix milliseconds now (limiter windows, spill file names).
pub fn unix_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Unix milliseconds now, signed as records, the ledger and key expiry keep them.
pub fn unix_ms_i64() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Unix nanoseconds now (trace spans).
pub fn unix_nanos() -> u64 {
    u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

/// Days since 1970-01-01 of a date (`month` 1..=12, `day` 1..=31).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (m + 9) % 12; // March is 0
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date `(year, month 1..=12, day 1..=31)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
                                  // In range by construction: day 1..=31, month 1..=12.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in a month (`month` 1..=12).
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A Unix time broken down in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

impl Utc {
    pub fn from_unix_ms(ms: i64) -> Utc {
        let day_ms = DAY_MS as i64;
        let (year, month, day) = civil_from_days(ms.div_euclid(day_ms));
        // In range by construction: below one day's milliseconds.
        let in_day = ms.rem_euclid(day_ms) as u32;
        let secs = in_day / 1000;
        Utc {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            milli: in_day % 1000,
        }
    }
}

/// RFC 3339 in UTC (`2026-11-21T10:00:00Z`), with milliseconds only when there are any.
pub fn format_rfc3339(ms: i64) -> String {
    let Utc {
        year: y,
        month: m,
        day: d,
        hour: h,
        minute: mi,
        second: s,
        milli,
    } = Utc::from_unix_ms(ms);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// Unix seconds as RFC 3339 (saturating far beyond any real date).
pub fn format_rfc3339_secs(secs: u64) -> String {
    format_rfc3339(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000))
}

/// Unix milliseconds from RFC 3339 (`2026-11-21T10:00:00Z`, `2026-11-21T12:00:00.250+02:00`; a
/// missing offset means UTC), a date (`2026-11-21`, UTC midnight) or Unix seconds (`1795255200`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad =
        || format!("invalid time {t:?}: use RFC 3339 (2026-11-21T10:00:00Z), a date (2026-11-21) or Unix seconds");
    if t.is_empty() {
        return Err(bad());
    }
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().ok().and_then(|v| v.checked_mul(1000)).ok_or_else(bad);
    }
    parse_datetime(t.as_bytes()).ok_or_else(bad)
}

fn parse_datetime(b: &[u8]) -> Option<i64> {
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (mo, d) = (u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * DAY_MS as i64;
    let rest = &b[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (h, mi) = (num(&rest[1..3])?, num(&rest[4..6])?);
    if h > 23 || mi > 59 {
        return None;
    }
    ms += (h * 3600 + mi * 60) * 1000;
    let mut rest = &rest[6..];
    if rest.first() == Some(&b':') {
        let sec = num(rest.get(1..3)?)?;
        if sec > 60 {
            return None;
        }
        ms += sec * 1000;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let frac = &rest[1..1 + n];
            let mut milli = 0;
            for i in 0..3 {
                milli = milli * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
            }
            ms += milli;
            rest = &rest[1 + n..];
        }
    }
    match rest {
        [] | [b'Z'] | [b'z'] => Some(ms),
        [sign @ (b'+' | b'-'), oh1, oh2, tail @ ..] => {
            let oh = num(&[*oh1, *oh2])?;
            let om = match tail {
                [b':', a, b] | [a, b] => num(&[*a, *b])?,
                [] => 0,
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 60 + om) * 60_000;
            Some(if *sign == b'+' { ms - off } else { ms + off })
        }
        _ => None,
    }
}

/// The window of length `len` ms, aligned to the epoch, that holds `now_ms`: `[start, end)`.
pub fn aligned_window(now_ms: u64, len: u64) -> (u64, u64) {
    let start = now_ms - now_ms % len;
    (start, start.saturating_add(len))
}

/// The UTC calendar month that holds `now_ms`: `[first day 00:00, next month's first day)`.
pub fn month_window(now_ms: u64) -> (u64, u64) {
    // u64::MAX ms is about 2.1e11 days: fits an i64 and every step below.
    let days = (now_ms / DAY_MS) as i64;
    let (year, month, _) = civil_from_days(days);
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let day_ms = |days: i64| u64::try_from(days).unwrap_or(0).saturating_mul(DAY_MS);
    (
        day_ms(days_from_civil(year, month, 1)),
        day_ms(days_from_civil(next_year, next_month, 1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-21T00:00:00Z.
    const DAY0: i64 = 1_795_219_200_000;
    const HOUR: i64 = HOUR_MS as i64;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(16_677), (2015, 8, 30));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(47_481), (2099, 12, 31));
        assert_eq!(days_from_civil(2024, 3, 1) * DAY_MS as i64, 1_709_251_200_000);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(
            (days_in_month(2100, 2), days_in_month(2000, 2), days_in_month(2025, 4)),
            (28, 29, 30)
        );
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_rfc3339(DAY0 + 10 * HOUR), "2026-11-21T10:00:00Z");
        assert_eq!(format_rfc3339(DAY0 + 5), "2026-11-21T00:00:00.005Z");
        assert_eq!(format_rfc3339(-1000), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339_secs(1_795_262_964), "2026-11-21T12:09:24Z");
        assert_eq!(
            Utc::from_unix_ms(1_440_938_160_000),
            Utc {
                year: 2015,
                month: 8,
                day: 30,
                hour: 12,
                minute: 36,
                second: 0,
                milli: 0
            }
        );
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("2026-11-21"), Ok(DAY0));
        assert_eq!(parse_time("2026-11-21T10:00:00Z"), Ok(DAY0 + 10 * HOUR));
        assert_eq!(parse_time("2026-11-21t10:00:00z"), Ok(DAY0 + 10 * HOUR));
        assert_eq!(parse_time("2026-11-21 10:00"), Ok(DAY0 + 10 * HOUR));
        assert_eq!(parse_time("2026-11-21T10:00:00.25Z"), Ok(DAY0 + 10 * HOUR + 250));
        assert_eq!(parse_time("2026-11-21T12:30:00+02:30"), Ok(DAY0 + 10 * HOUR));
        assert_eq!(parse_time("2026-11-21T08:00:00-0200"), Ok(DAY0 + 10 * HOUR));
        assert_eq!(parse_time(" 1795219200 "), Ok(DAY0));
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2000-02-29"), Ok(951_782_400_000));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-29",
            "2026-11-21T24:00:00Z",
            "2026-11-21T10:00:00+",
            "2026/11/21",
            "99999999999999999999",
            "2026-11-21T10",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn windows_align() {
        assert_eq!(aligned_window(HOUR_MS + 5, HOUR_MS), (HOUR_MS, 2 * HOUR_MS));
        assert_eq!(aligned_window(u64::MAX, DAY_MS).1, u64::MAX);
        // 2023-12-31T23:59:59.999Z is in December 2023.
        assert_eq!(month_window(1_704_067_199_999), (1_701_388_800_000, 1_704_067_200_000));
        assert_eq!(month_window(0), (0, 31 * DAY_MS));
        let (s, e) = month_window(u64::MAX);
        assert!(s <= e);
    }

    /// Years 0..=9999: what RFC 3339 writes with four digits.
    const FIRST_MS: i64 = -62_167_219_200_000;
    const LAST_MS: i64 = 253_402_300_799_999;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn days_round_trip(days in -1_000_000_000i64..1_000_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
            // The next day is the next date.
            let next = civil_from_days(days + 1);
            let expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            prop_assert_eq!(next, expected);
        }

        #[test]
        fn dates_round_trip(y in -2_000_000i64..2_000_000, m in 1u32..=12, d in 1u32..=31) {
            let d = d.min(days_in_month(y, m));
            prop_assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }

        #[test]
        fn rfc3339_round_trips(ms in FIRST_MS..=LAST_MS) {
            let text = format_rfc3339(ms);
            prop_assert_eq!(parse_time(&text), Ok(ms), "{}", text);
        }

        #[test]
        fn months_hold_their_instant(ms in 0u64..=LAST_MS as u64) {
            let (s, e) = month_window(ms);
            prop_assert!(s <= ms && ms < e);
            let (start, end) = (Utc::from_unix_ms(s as i64), Utc::from_unix_ms(e as i64));
            prop_assert_eq!((start.day, start.hour, end.day, end.hour), (1, 0, 1, 0));
            prop_assert_eq!((e - s) / DAY_MS, u64::from(days_in_month(start.year, start.month)));
        }
    }
}

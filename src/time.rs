//! UTC timestamps in one canonical RFC 3339 form, without a date-time crate.
//!
//! Both stores hand timestamps to the API through [`Timestamp`], so the API prints the same
//! format whichever backend stored them (SPEC §5). Microsecond precision matches PostgreSQL's
//! `timestamptz`, and the fixed-width text sorts chronologically in SQLite.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00.000000Z and 9999-12-31T23:59:59.999999Z: the times with a canonical text.
const FIRST: Timestamp = Timestamp(-62_167_219_200 * MICROS_PER_SECOND);
const LAST: Timestamp = Timestamp(253_402_300_800 * MICROS_PER_SECOND - 1);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)),
            Err(before) => Self(-i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude }
    }

    /// Parses any RFC 3339 date-time (`T`, `t` or space separator, `Z` or a numeric offset,
    /// any number of fractional digits). Digits beyond microseconds are truncated. A time its
    /// offset moves out of the years 0000–9999 (UTC) is refused: its canonical text would not
    /// be fixed-width, and SQLite's text comparisons would put it out of order where
    /// PostgreSQL's would not.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        Self::parse_any_year(text).filter(|stamp| (FIRST..=LAST).contains(stamp))
    }

    /// Whether `text` is an RFC 3339 date-time, whatever year its offset moves it to: for text
    /// kept as sent and never compared (DIUN's `created`).
    pub fn is_rfc3339(text: &str) -> bool {
        Self::parse_any_year(text).is_some()
    }

    fn parse_any_year(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() < 20 {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = bytes.get(range)?;
            digits.iter().try_fold(0i64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0')))
        };
        let year = number(0..4)?;
        let month = number(5..7)?;
        let day = number(8..10)?;
        let hour = number(11..13)?;
        let minute = number(14..16)?;
        let second = number(17..19)?;
        let separators_ok = bytes[4] == b'-'
            && bytes[7] == b'-'
            && matches!(bytes[10], b'T' | b't' | b' ')
            && bytes[13] == b':'
            && bytes[16] == b':';
        if !separators_ok
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &bytes[19..];
        let mut micros = 0i64;
        if let [b'.', tail @ ..] = rest {
            let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            for i in 0..6 {
                micros = micros * 10 + tail.get(i).filter(|_| i < digits).map_or(0, |&b| i64::from(b - b'0'));
            }
            rest = &tail[digits..];
        }
        let offset_seconds = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let all = [*h1, *h2, *m1, *m2];
                if !all.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let magnitude = hours * 3600 + minutes * 60;
                if *sign == b'-' { -magnitude } else { magnitude }
            }
            _ => return None,
        };
        let seconds =
            days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second.min(59)
                - offset_seconds;
        Some(Self(seconds * MICROS_PER_SECOND + micros))
    }
}

impl Timestamp {
    /// Appends the canonical text (see `Display`) to `out`, without the formatting machinery:
    /// the listing writes two per image and the webhook one per request.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        match self.canonical_text() {
            Some(text) => out.extend_from_slice(&text),
            None => {
                use std::io::Write;
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    }

    /// The 27 bytes of `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `None` outside the years 0000–9999.
    fn canonical_text(self) -> Option<[u8; 27]> {
        let parts = self.parts();
        let (year, month, day, hour, minute, second, micros) = parts;
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut digits = |at: usize, width: usize, mut value: i64| {
            for slot in text[at..at + width].iter_mut().rev() {
                // 0..=9 after the modulo: the cast cannot truncate.
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        digits(0, 4, year);
        digits(5, 2, month);
        digits(8, 2, day);
        digits(11, 2, hour);
        digits(14, 2, minute);
        digits(17, 2, second);
        digits(20, 6, micros);
        Some(text)
    }

    /// Year, month, day, hour, minute, second, microsecond (UTC).
    fn parts(self) -> (i64, i64, i64, i64, i64, i64, i64) {
        let seconds = self.0.div_euclid(MICROS_PER_SECOND);
        let micros = self.0.rem_euclid(MICROS_PER_SECOND);
        let days = seconds.div_euclid(SECONDS_PER_DAY);
        let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        (year, month, day, second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60, micros)
    }
}

/// How far ahead of the clock the newest report may be without a word at start-up.
const AHEAD_TO_TELL: i64 = 60 * MICROS_PER_SECOND;

/// The times reports are stamped with, each later than every report stored before it, whatever
/// the system clock does. A dismissal's bound is a time (the newest report the page showed): a
/// clock set back (NTP stepping it, a VM resumed) stamped new reports earlier than ones already
/// shown, and "Dismiss all" then dismissed them unseen.
#[derive(Debug)]
pub struct ReceiptClock {
    latest: AtomicI64,
}

impl ReceiptClock {
    /// A clock whose stamps come after `latest`, the newest stamp stored (a report's or an
    /// acknowledgement's; none: any time).
    pub fn after(latest: Option<Timestamp>) -> Self {
        let now = Timestamp::now();
        if let Some(latest) = latest.filter(|latest| latest.0 > now.0.saturating_add(AHEAD_TO_TELL)) {
            // Stored by a clock that ran ahead: new reports follow it until this one catches up.
            log::warn!(
                "the newest time stored (a report's or an acknowledgement's) is {latest}, {} s ahead \
                 of this machine's clock ({now}): new stamps follow it until the clock catches up",
                (latest.0 - now.0) / MICROS_PER_SECOND
            );
        }
        Self { latest: AtomicI64::new(latest.map_or(i64::MIN, Timestamp::unix_micros)) }
    }

    /// Now, or a microsecond after the latest stamp or report when the clock is behind it.
    pub fn stamp(&self) -> Timestamp {
        self.stamp_at(Timestamp::now())
    }

    fn stamp_at(&self, now: Timestamp) -> Timestamp {
        let mut stamp = now.0;
        let _ = self.latest.fetch_update(Ordering::AcqRel, Ordering::Acquire, |latest| {
            stamp = now.0.max(latest.saturating_add(1));
            Some(stamp)
        });
        Timestamp(stamp)
    }

    /// Takes note of a report stored with a time of its own, so that later stamps follow it.
    pub fn witness(&self, stored: Timestamp) {
        self.latest.fetch_max(stored.0, Ordering::AcqRel);
    }

    /// [`Self::witness`] for the stamp another replica sent: a replica whose clock runs ahead
    /// moves this one's stamps with it, which the log says once each time it starts to, as at
    /// start-up. Returns whether it said so.
    pub fn witness_another_replica(&self, stamped: Timestamp) -> bool {
        self.witness_another_replica_at(stamped, Timestamp::now())
    }

    fn witness_another_replica_at(&self, stamped: Timestamp, now: Timestamp) -> bool {
        let told_above = now.0.saturating_add(AHEAD_TO_TELL);
        let before = self.latest.fetch_max(stamped.0, Ordering::AcqRel);
        let newly_ahead = stamped.0 > told_above && before <= told_above;
        if newly_ahead {
            log::warn!(
                "a change notice (another replica's, or `migrate`'s) names a report stamped {stamped}, {} s \
                 ahead of this machine's clock ({now}): new reports here are stamped after it until the \
                 clocks agree; check the machines' time",
                (stamped.0 - now.0) / MICROS_PER_SECOND
            );
        }
        newly_ahead
    }

    /// The latest stamp given or report witnessed, if any.
    pub fn latest(&self) -> Option<Timestamp> {
        Some(self.latest.load(Ordering::Acquire)).filter(|&latest| latest != i64::MIN).map(Timestamp)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always 27 characters for years 0000–9999.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.canonical_text() {
            // Only ASCII digits and separators were written.
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        let (year, month, day, hour, minute, second, micros) = self.parts();
        write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_follow_the_clock_and_never_go_back() {
        let at = |micros| Timestamp::from_unix_micros(micros);
        let clock = ReceiptClock::after(None);
        assert_eq!(clock.stamp_at(at(1_000)), at(1_000));
        assert_eq!(clock.stamp_at(at(5_000)), at(5_000));
        // Set back, or not moved on: a microsecond after the last stamp.
        assert_eq!(clock.stamp_at(at(2_000)), at(5_001));
        assert_eq!(clock.stamp_at(at(5_001)), at(5_002));
        clock.witness(at(9_000));
        clock.witness(at(3_000));
        assert_eq!(clock.stamp_at(at(6_000)), at(9_001));
        assert_eq!(clock.stamp_at(at(20_000)), at(20_000));

        let restarted = ReceiptClock::after(Some(at(30_000)));
        assert_eq!(restarted.stamp_at(at(20_000)), at(30_001));
    }

    #[test]
    fn another_replicas_clock_running_ahead_is_told_once_per_stretch() {
        let at = |micros| Timestamp::from_unix_micros(micros);
        let now = at(1_000_000_000_000);
        let clock = ReceiptClock::after(None);
        assert!(!clock.witness_another_replica_at(at(now.0 + AHEAD_TO_TELL), now), "within the margin");
        assert!(clock.witness_another_replica_at(at(now.0 + 2 * AHEAD_TO_TELL), now));
        assert_eq!(clock.stamp_at(now), at(now.0 + 2 * AHEAD_TO_TELL + 1), "stamps follow it");
        assert!(!clock.witness_another_replica_at(at(now.0 + 3 * AHEAD_TO_TELL), now), "said already");
        // Once this machine's clock has caught up, a new stretch ahead is said again.
        let later = at(now.0 + 3 * AHEAD_TO_TELL);
        assert!(clock.witness_another_replica_at(at(later.0 + 5 * AHEAD_TO_TELL), later));
    }

    #[test]
    fn formats_epoch_and_known_instants() {
        assert_eq!(Timestamp::from_unix_micros(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp::from_unix_micros(1_709_251_199_123_456).to_string(),
            "2024-02-29T23:59:59.123456Z"
        );
        assert_eq!(Timestamp::from_unix_micros(-1).to_string(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn years_beyond_four_digits_still_format() {
        let far = Timestamp::from_unix_micros(253_402_300_800_000_000);
        assert_eq!(far.to_string(), "10000-01-01T00:00:00.000000Z");
        let mut out = b"x".to_vec();
        far.write_rfc3339(&mut out);
        Timestamp::from_unix_micros(1_709_251_199_123_456).write_rfc3339(&mut out);
        assert_eq!(out, b"x10000-01-01T00:00:00.000000Z2024-02-29T23:59:59.123456Z");
    }

    #[test]
    fn parse_is_the_inverse_of_display() {
        for micros in [0, 1, -1, 951_782_400_000_000, 1_709_251_199_123_456, 253_402_300_799_999_999] {
            let stamp = Timestamp::from_unix_micros(micros);
            assert_eq!(Timestamp::parse_rfc3339(&stamp.to_string()), Some(stamp));
        }
    }

    #[test]
    fn parse_applies_offsets_and_truncates_nanoseconds() {
        let utc = Timestamp::parse_rfc3339("2020-03-26T12:23:56Z").unwrap();
        assert_eq!(Timestamp::parse_rfc3339("2020-03-26T14:23:56+02:00"), Some(utc));
        assert_eq!(Timestamp::parse_rfc3339("2020-03-26t07:23:56-05:00"), Some(utc));
        assert_eq!(
            Timestamp::parse_rfc3339("2020-03-26T12:23:56.311938277Z").unwrap().to_string(),
            "2020-03-26T12:23:56.311938Z"
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2020-03-26 12:23:56.5Z").unwrap().unix_micros() % 1_000_000,
            500_000
        );
    }

    #[test]
    fn parse_rejects_malformed_and_impossible_dates() {
        for bad in [
            "",
            "yesterday",
            "2020-03-26",
            "2020-03-26T12:23:56",
            "2020-02-30T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-13-01T00:00:00Z",
            "2020-03-26T24:00:00Z",
            "2020-03-26T12:23:56.Z",
            "2020-03-26T12:23:56+2:00",
            "2020-03-26T12:23:56Zjunk",
            "2020-03-26T12:23:56+24:00",
            "２020-03-26T12:23:56Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad:?} should not parse");
        }
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn parse_refuses_times_an_offset_moves_out_of_four_digit_years() {
        for outside in ["9999-12-31T23:59:59-05:00", "0000-01-01T00:00:00+01:00"] {
            assert_eq!(Timestamp::parse_rfc3339(outside), None, "{outside}");
            assert!(Timestamp::is_rfc3339(outside), "{outside} is RFC 3339 all the same");
        }
        assert!(!Timestamp::is_rfc3339("2020-02-30T00:00:00Z"));
        for edge in ["9999-12-31T23:59:59.999999Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59+05:00"] {
            let stamp = Timestamp::parse_rfc3339(edge).unwrap_or_else(|| panic!("{edge} should parse"));
            assert!(stamp.canonical_text().is_some(), "{edge}");
        }
        assert_eq!(FIRST.to_string(), "0000-01-01T00:00:00.000000Z");
        assert_eq!(LAST.to_string(), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn system_time_round_trips() {
        let stamp = Timestamp::from_unix_micros(1_700_000_000_654_321);
        assert_eq!(Timestamp::from_system_time(stamp.to_system_time()), stamp);
        let before_epoch = Timestamp::from_unix_micros(-5_000_001);
        assert_eq!(Timestamp::from_system_time(before_epoch.to_system_time()), before_epoch);
    }
}

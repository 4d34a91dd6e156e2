//! Times as people and scripts read them, always in UTC so that the screen, the export file, the
//! audit log and JSON agree whatever the machine's time zone. Shared by both faces; must never
//! read the clock (times come in as Unix seconds).

use crate::core::clock::UnixTime;

/// Year, month and day of the proleptic Gregorian calendar from days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`). Saturating, so no input can overflow.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe
        .saturating_add(era.saturating_mul(400))
        .saturating_add(i64::from(month <= 2));
    (year, month, day)
}

/// `2026-11-28T14:03:05Z`: for JSON and the CLI's audit log.
pub(crate) fn utc_iso(at: UnixTime) -> String {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-11-28 14:03 UTC`: for screens and export files.
pub fn utc_minute(at: UnixTime) -> String {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// `2026-11-28` (UTC).
pub fn utc_date(at: UnixTime) -> String {
    let (y, m, d) = civil_from_days(at.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc_iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso(1_795_874_585), "2026-11-28T14:03:05Z");
        assert_eq!(utc_iso(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(utc_iso(-1), "1969-12-31T23:59:59Z");
        assert_eq!(utc_minute(1_714_566_896), "2024-05-01 12:34 UTC");
        assert_eq!(utc_date(1_795_874_585), "2026-11-28");
        assert_eq!(utc_date(-86_400), "1969-12-31");
        // No overflow or panic at the extremes.
        let _ = (utc_iso(i64::MAX), utc_iso(i64::MIN), utc_minute(i64::MIN));
    }
}

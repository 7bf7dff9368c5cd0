//! Millisecond timestamps: fast ISO-8601 UTC rendering ("2025-03-01T10:15:30.123Z")
//! and the appointment format ("2025-03-01 10:15:30"),
//! parsing of ISO strings / dates / ms numbers, and the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One day in milliseconds.
pub(super) const DAY_MS: i64 = 86_400_000;
/// How far back seeded dates reach: three years.
const RANGE_DAYS: i64 = 3 * 365 + 1;

/// Seeded dates lie before this: the start of the UTC day on which the process first generated
/// data. Seeded contacts are therefore never in the future, their tasks fall due and their
/// appointments start around today (up to 60 and 90 days after the contact's dates), and the
/// data of a seed is the same all day (and for the life of the process).
pub(super) fn range_end_ms() -> i64 {
    static END: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *END.get_or_init(|| now_ms().div_euclid(DAY_MS) * DAY_MS)
}

/// The earliest seeded dateAdded: three years before [`range_end_ms`].
pub(super) fn range_start_ms() -> i64 {
    range_end_ms() - RANGE_DAYS * DAY_MS
}

/// Wall-clock now in ms since the epoch.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An HTTP `Date` header value (IMF-fixdate, whole seconds) for `ms` since the epoch.
pub(super) fn http_date(ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    t.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .ok()
}

/// (year, month, day) of a day count since 1970-01-01 (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "YYYY-MM-DDTHH:MM:SS.mmmZ".
pub(super) fn iso_ms(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let (h, min) = (rem / 3_600_000, rem / 60_000 % 60);
    let (s, milli) = (rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// "YYYY-MM-DD HH:MM:SS" (UTC), the spec's appointment date format.
pub(super) fn ymd_hms(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}")
}

/// "YYYY-MM-DD" of a day count since the epoch.
pub(super) fn ymd(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses RFC 3339 ("2025-03-01T10:15:30.123Z") or a bare "YYYY-MM-DD".
pub(super) fn parse_iso(s: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    }
    parse_ymd(s).map(|days| days * DAY_MS)
}

fn parse_ymd(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let valid = parts.next().is_none() && (1..=12).contains(&m) && (1..=31).contains(&d);
    valid.then(|| days_from_civil(y, m, d))
}

/// A ms timestamp from a JSON number, numeric string or ISO string.
pub(super) fn ms_from_json(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.parse::<i64>().ok().or_else(|| parse_iso(s)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_date_counts_whole_seconds() {
        assert_eq!(
            http_date(784_111_777_999).as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
    }

    #[test]
    fn iso_roundtrip() {
        let ms = 1_740_824_130_123;
        assert_eq!(iso_ms(ms), "2025-03-01T10:15:30.123Z");
        assert_eq!(parse_iso("2025-03-01T10:15:30.123Z"), Some(ms));
        let end = range_end_ms();
        assert!(end <= now_ms() && now_ms() - end < DAY_MS);
        assert!(iso_ms(end).ends_with("T00:00:00.000Z"));
        assert_eq!(end - range_start_ms(), 1096 * DAY_MS);
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd_hms(ms), "2025-03-01 10:15:30");
        assert_eq!(parse_iso("nope"), None);
    }
}

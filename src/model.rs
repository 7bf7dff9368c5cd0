//! Our vocabulary: the records we mirror and the sync positions we persist.
//!
//! Architecture invariant: no I/O and no wire format here. `upstream` turns HighLevel's JSON into
//! these types, `store` turns them into rows, `sync` moves them between the two.

pub mod query;

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// A HighLevel location (sub-account) id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LocationId(pub String);

impl fmt::Display for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A contact as we store it: typed columns for what people filter on, and the raw upstream JSON
/// (exact bytes) so fields the spec lacks are never lost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contact {
    pub id: String,
    pub location_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company_name: Option<String>,
    pub business_id: Option<String>,
    pub source: Option<String>,
    pub contact_type: Option<String>,
    pub assigned_to: Option<String>,
    pub dnd: Option<bool>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub timezone: Option<String>,
    pub tags: Vec<String>,
    pub custom_fields: Vec<CustomFieldValue>,
    pub date_added: Option<String>,
    pub date_updated: Option<String>,
    /// `dateUpdated` in ms since the epoch, when it parsed.
    pub date_updated_ms: Option<i64>,
    pub raw: String,
    /// How many fields had a type the spec does not allow (kept in `raw`, typed column left NULL).
    pub field_warnings: u32,
}

/// One custom field value; `value` is the string itself, or JSON text for non-string values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomFieldValue {
    pub field_id: String,
    pub value: String,
}

/// A position in a (timestamp ms, id) ordered stream: search's `searchAfter`, or the legacy list's
/// `startAfter` + `startAfterId`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    pub ms: i64,
    pub id: String,
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ms, &self.id).cmp(&(other.ms, &other.id))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A contact as it arrived in a page, with its position in that page's ordering.
#[derive(Clone, Debug)]
pub struct PagedContact {
    pub contact: Contact,
    pub key: SortKey,
}

/// The streams we sync, one row of sync state each per location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Contacts,
    /// Each contact's tasks, notes and appointments.
    Subresources,
    /// Businesses and their contact links.
    Businesses,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Contacts => "contacts",
            Stream::Subresources => "subresources",
            Stream::Businesses => "businesses",
        }
    }
}

/// The per-contact lists HighLevel serves one request each: `GET /contacts/:id/{tasks,notes,
/// appointments}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubKind {
    Tasks,
    Notes,
    Appointments,
}

impl SubKind {
    pub const ALL: [SubKind; 3] = [SubKind::Tasks, SubKind::Notes, SubKind::Appointments];

    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Tasks => "tasks",
            SubKind::Notes => "notes",
            SubKind::Appointments => "appointments",
        }
    }

    pub fn parse(s: &str) -> Option<SubKind> {
        SubKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A record kept as HighLevel sent it (task, note, appointment, business): its id, the contact
/// it belongs to when it has one, and the exact JSON. Typed columns are derived by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub contact_id: Option<String>,
    pub raw: String,
}

/// What kind of sweep a run is doing over the contacts of a location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepKind {
    /// Every contact via search; followed by a catch-up pass, then unseen contacts are tombstoned.
    Full,
    /// Contacts updated since the watermark (minus the lookback window), via search.
    Incremental,
    /// Every contact via the deprecated `GET /contacts/` list; unseen contacts are tombstoned.
    Legacy,
}

impl SweepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepKind::Full => "full",
            SweepKind::Incremental => "incremental",
            SweepKind::Legacy => "legacy-list",
        }
    }

    /// Whether completing this sweep proves that unseen contacts are gone upstream.
    pub fn reconciles(self) -> bool {
        matches!(self, SweepKind::Full | SweepKind::Legacy)
    }
}

/// Which pass of a sweep is running. A full sweep's catch-up pass re-reads everything updated
/// since the sweep started, so contacts that moved while the sweep ran are not missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    Main,
    CatchUp,
}

/// An in-progress sweep, persisted with every page so a killed run resumes exactly here.
///
/// Search sweeps walk from both ends at once (ascending and descending by (dateUpdated, id)) so
/// two requests are in flight without extra requests; the pass ends when the two meet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub kind: SweepKind,
    /// Contacts touched by this sweep carry this number; a reconciling sweep tombstones the rest.
    pub seq: i64,
    /// When the sweep was planned, by this machine's clock.
    pub started_at_ms: i64,
    /// When the sweep was planned, by HighLevel's clock (the one `dateUpdated` is stamped by):
    /// a lower bound, the `Date` header of its first answer less the time since planning.
    /// `None` until heard, and in sweeps saved before it was kept.
    #[serde(default)]
    pub server_started_ms: Option<i64>,
    pub pass: Pass,
    /// Lower bound (inclusive, ms) of `dateUpdated` for this pass; `None` = everything.
    pub since_ms: Option<i64>,
    /// Last key committed walking upward.
    pub asc: Option<SortKey>,
    /// Last key committed walking downward.
    pub desc: Option<SortKey>,
    pub asc_done: bool,
    pub desc_done: bool,
    /// Highest `dateUpdated` seen by this sweep: the next watermark.
    pub max_seen_ms: Option<i64>,
    /// Contacts received in this pass (used only to schedule requests, never for correctness).
    pub received: u64,
}

impl Sweep {
    pub fn new(kind: SweepKind, seq: i64, started_at_ms: i64, since_ms: Option<i64>) -> Sweep {
        Sweep {
            kind,
            seq,
            started_at_ms,
            server_started_ms: None,
            pass: Pass::Main,
            since_ms,
            asc: None,
            desc: None,
            asc_done: false,
            desc_done: false,
            max_seen_ms: None,
            received: 0,
        }
    }

    /// When the sweep started, no later than either clock says: what its windows reach back
    /// from (this machine's clock alone when HighLevel's was not heard).
    pub fn started_no_later_than(&self) -> i64 {
        self.server_started_ms
            .map_or(self.started_at_ms, |s| s.min(self.started_at_ms))
    }

    /// The two walks have met: every contact of the pass has been read by one of them.
    pub fn pass_complete(&self) -> bool {
        if self.asc_done || self.desc_done {
            return true;
        }
        match (&self.asc, &self.desc) {
            (Some(a), Some(d)) => a >= d,
            _ => false,
        }
    }
}

/// Persisted state of one (location, stream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Highest `dateUpdated` (ms) known to be mirrored; incremental sweeps start from here.
    pub watermark_ms: Option<i64>,
    /// Sequence number of the last sweep started.
    pub sweep_seq: i64,
    /// When the last reconciling (full or legacy) sweep completed, ms since the epoch.
    pub last_full_sweep_ms: Option<i64>,
    /// When the last completed sweep started, ms since the epoch by HighLevel's clock (and no
    /// later than this machine's): it read every contact search had indexed by then, so the next
    /// incremental sweep reaches back `lookback` from here. `None` when HighLevel's clock was not
    /// heard (no `Date` header) and in states saved before it was kept: the watermark stands in.
    pub last_sweep_started_ms: Option<i64>,
    pub sweep: Option<Sweep>,
}

/// How a sync run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Stopped early on purpose (quota reserve, shutdown); the cursor is saved and the next run
    /// continues.
    Partial,
    Failed,
    /// Not started: another run of the same location and stream (in this process or another)
    /// holds its lock.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Counters a run accumulates; persisted with every page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunProgress {
    pub pages: u64,
    pub received: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub tombstoned: u64,
    pub warnings: u64,
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub daily_remaining: Option<i64>,
}

/// What one page's commit changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// The digits of a phone number as typed (`+1 (555) 010-1234` is `15550101234`).
pub fn phone_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether two phone numbers' digits are the same number: equal, or one is the other (at least
/// 10 digits, a national number) with a country code of 1-3 digits in front, or one is a
/// national number written with its trunk 0 (`020 7946 0958`, `06 12 34 56 78`) whose rest (at
/// least 7 digits) is the other after a country code of 1-3 digits (`+442079460958`,
/// `+33612345678`).
pub fn same_phone(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    // `national` is `full` after a country code of 1-3 digits.
    let after_code = |national: &str, full: &str, min: usize| {
        national.len() >= min
            && full.len() > national.len()
            && full.len() - national.len() <= 3
            && full.ends_with(national)
    };
    let trunk = |national: &str, full: &str| {
        national
            .strip_prefix('0')
            .is_some_and(|rest| !rest.starts_with('0') && after_code(rest, full, 7))
    };
    a == b || after_code(a, b, 10) || after_code(b, a, 10) || trunk(a, b) || trunk(b, a)
}

/// Current time in ms since the epoch.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Formats ms since the epoch as an ISO-8601 UTC timestamp with milliseconds (HighLevel's format).
pub fn iso_from_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ms.to_string(),
    }
}

/// Parses an ISO-8601 / RFC 3339 timestamp into ms since the epoch.
pub fn ms_from_iso(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A date-time text as SQLite's date functions read it (`YYYY-MM-DD`, then optionally `T` or
/// spaces and `HH:MM[:SS[.fff]]`, then optionally `Z` or `±HH:MM`; no offset means UTC) as ms
/// since the epoch, rounded to the ms like SQLite; `None` for anything else. HighLevel sends
/// tasks' `dueDate` as RFC 3339 and appointments' `startTime` as "2024-05-01 14:30:00": the
/// mirror stores both as `*_ms` computed here, so that no SQLite function newer than 3.37
/// (`unixepoch`) is needed to read them, and they equal what `unixepoch(x, 'subsec')` gives.
pub fn ms_from_time_text(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let num = |i: &mut usize, n: usize| -> Option<i64> {
        let digits = b.get(*i..*i + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += n;
        Some(digits.iter().fold(0, |v, d| v * 10 + i64::from(d - b'0')))
    };
    let sep = |i: &mut usize, c: u8| -> Option<()> { (b.get(*i) == Some(&c)).then(|| *i += 1) };
    let year = num(&mut i, 4)?;
    sep(&mut i, b'-')?;
    let month = num(&mut i, 2)?;
    sep(&mut i, b'-')?;
    let day = num(&mut i, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let time_at = {
        let mut j = i;
        if b.get(j) == Some(&b'T') {
            j += 1;
        } else {
            while b.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
        }
        j
    };
    if b.get(time_at).is_some_and(u8::is_ascii_digit) {
        i = time_at;
        let hour = num(&mut i, 2)?;
        sep(&mut i, b':')?;
        let minute = num(&mut i, 2)?;
        let mut sec_ms = 0;
        if sep(&mut i, b':').is_some() {
            let sec = num(&mut i, 2)?;
            let mut frac = 0.0;
            if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                frac = s.get(start - 1..i)?.parse::<f64>().ok()?;
            }
            if sec >= 60 {
                return None;
            }
            sec_ms = ((sec as f64 + frac) * 1000.0 + 0.5) as i64;
        }
        if hour >= 24 || minute >= 60 {
            return None;
        }
        ms += hour * 3_600_000 + minute * 60_000 + sec_ms;
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match b.get(i) {
            Some(b'Z' | b'z') => i += 1,
            Some(&c @ (b'+' | b'-')) => {
                i += 1;
                let oh = num(&mut i, 2)?;
                sep(&mut i, b':')?;
                let om = num(&mut i, 2)?;
                if oh > 14 || om >= 60 {
                    return None;
                }
                let offset = (oh * 60 + om) * 60_000;
                ms += if c == b'+' { -offset } else { offset };
            }
            _ => {}
        }
    } else {
        i = time_at;
    }
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    (i == b.len()).then_some(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; days past the month's end run into
/// the next month, as in SQLite.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_texts_read_as_sqlite_reads_them() {
        assert_eq!(
            ms_from_time_text("2021-07-02T05:18:26.704Z"),
            Some(1_625_203_106_704)
        );
        assert_eq!(
            ms_from_time_text("2021-07-02 05:18:26"),
            Some(1_625_203_106_000)
        );
        assert_eq!(
            ms_from_time_text("2021-07-02T10:48:26.704+05:30"),
            Some(1_625_203_106_704)
        );
        assert_eq!(ms_from_time_text("2021-07-02"), Some(1_625_184_000_000));
        assert_eq!(
            ms_from_time_text("2021-07-02 05:18"),
            Some(1_625_203_080_000)
        );
        assert_eq!(ms_from_time_text("1969-12-31T23:59:59.9996Z"), Some(0));
        assert_eq!(
            ms_from_time_text("2024-02-30"),
            ms_from_time_text("2024-03-01")
        );
        for bad in [
            "",
            "soon",
            "2021-13-01",
            "2021-07-02T25:00",
            "2021-07-02 x",
            "1625203106",
        ] {
            assert_eq!(ms_from_time_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_round_trips_through_ms() {
        let ms = ms_from_iso("2021-07-02T05:18:26.704Z");
        assert_eq!(ms, Some(1_625_203_106_704));
        assert_eq!(iso_from_ms(1_625_203_106_704), "2021-07-02T05:18:26.704Z");
    }

    #[test]
    fn sort_keys_order_by_time_then_id() {
        let a = SortKey {
            ms: 1,
            id: "b".into(),
        };
        let b = SortKey {
            ms: 2,
            id: "a".into(),
        };
        let c = SortKey {
            ms: 2,
            id: "b".into(),
        };
        assert!(a < b && b < c);
    }

    #[test]
    fn a_pass_is_complete_when_the_walks_meet() {
        let mut s = Sweep::new(SweepKind::Full, 1, 0, None);
        assert!(!s.pass_complete());
        s.asc = Some(SortKey {
            ms: 5,
            id: "a".into(),
        });
        s.desc = Some(SortKey {
            ms: 6,
            id: "a".into(),
        });
        assert!(!s.pass_complete());
        s.asc = Some(SortKey {
            ms: 6,
            id: "a".into(),
        });
        assert!(s.pass_complete());
    }
}

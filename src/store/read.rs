//! The query layer's reads: a contact by id, a contact's tasks / notes / appointments, contacts
//! by business, a [`ContactQuery`] compiled to SQL, full-text search, and the figures behind
//! `/metrics` and the freshness headers.
//!
//! Text comparisons use `ghl_lower`, a SQL function registered on every pool connection that
//! lowercases like Rust (Unicode), so "ZOË" finds "Zoë" as HighLevel's search does. It is never
//! used in the schema: the file stays readable by plain `sqlite3`.

use super::{Store, StoreError};
use crate::model::query::{
    ContactQuery, Field, FieldKind, Filter, Op, Operand, Range, Sort, SortField, SortValue,
};
use crate::model::{SubKind, ms_from_iso, phone_digits, same_phone};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

/// Registers `ghl_lower(x)` (Unicode lowercase; numbers as their text) and `ghl_ms(x)`
/// (an ISO-8601 timestamp or a number as ms since the epoch, else NULL).
pub(super) fn register_functions(c: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    c.create_scalar_function("ghl_lower", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Text(t) => {
                let s = String::from_utf8_lossy(t);
                Some(if s.is_ascii() {
                    s.to_ascii_lowercase()
                } else {
                    s.to_lowercase()
                })
            }
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Real(f) => Some(f.to_string()),
            ValueRef::Null | ValueRef::Blob(_) => None,
        })
    })?;
    c.create_scalar_function("ghl_ms", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(ms_from_iso),
            ValueRef::Integer(i) => Some(i),
            ValueRef::Real(f) => Some(f as i64),
            ValueRef::Null | ValueRef::Blob(_) => None,
        })
    })?;
    c.create_scalar_function("ghl_split_runs", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Text(t) => Some(split_runs(&String::from_utf8_lossy(t))),
            _ => None,
        })
    })
}

/// Text as the full-text index gets it (and as searches are split, see [`fts_expression`]):
/// each word that mixes letters and digits becomes its runs ("jane.smith42@x.com" becomes
/// "jane.smith 42@x.com"), so "smith" finds it as a whole word. Kept whole, the prefix
/// "smith" had to merge the index entries of every "smith0" ... "smith999" (4 ms of a 5 ms
/// match at 1M contacts).
pub(super) fn split_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut run_of_digits: Option<bool> = None;
    for ch in text.chars() {
        if !ch.is_alphanumeric() {
            run_of_digits = None;
        } else {
            let digit = ch.is_numeric();
            if run_of_digits.is_some_and(|d| d != digit) {
                out.push(' ');
            }
            run_of_digits = Some(digit);
        }
        out.push(ch);
    }
    out
}

/// Live contacts not searchable as they are now: marked ones already in the index, plus new
/// ones above its mark. CROSS JOIN: walk the few marks, not every indexed contact (a scan of
/// `contacts` measured 25 ms per search at 100k contacts).
const TEXT_PENDING: &str = "SELECT (SELECT COUNT(*) FROM contacts_fts_dirty d CROSS JOIN contacts c
                           ON c.pk = d.pk
                         WHERE d.pk <= s.last_pk AND c.deleted_at IS NULL)
                      + (SELECT COUNT(*) FROM contacts
                         WHERE pk > s.last_pk AND deleted_at IS NULL)
                   FROM contacts_fts_state s";

/// A live contact as stored.
#[derive(Clone, Debug)]
pub struct StoredContact {
    pub location_id: String,
    pub raw: String,
    /// When upstream last returned it (ISO-8601).
    pub fetched_at: String,
}

/// A contact's list of one kind, and when it was fetched (`None`: never).
#[derive(Clone, Debug, Default)]
pub struct StoredList {
    pub items: Vec<String>,
    pub fetched_at: Option<String>,
}

/// One search result: the contact's raw JSON and its values for the query's sort keys.
#[derive(Clone, Debug)]
pub struct Hit {
    pub id: String,
    pub raw: String,
    pub sort_values: Vec<SortValue>,
}

/// A page of results and how many contacts match in all (the cursor and offset aside).
#[derive(Clone, Debug, Default)]
pub struct HitPage {
    pub hits: Vec<Hit>,
    pub total: u64,
}

/// One full-text match, best first.
#[derive(Clone, Debug)]
pub struct TextHit {
    pub location_id: String,
    pub raw: String,
    /// bm25 relevance (higher is better).
    pub score: f64,
}

/// The best full-text matches, and how many matches they were chosen from.
#[derive(Clone, Debug, Default)]
pub struct TextHits {
    pub hits: Vec<TextHit>,
    /// How many matching index entries were ranked (at most [`RANK_WINDOW`]).
    pub ranked: usize,
    /// False when more contacts match than were ranked: the hits are the best of the newest
    /// [`RANK_WINDOW`] matches, and more words narrow the search.
    pub complete: bool,
}

/// How many of the newest matches a full-text search ranks. bm25 costs the same for every
/// match, so ranking all matches of a common word (a first name shared by 50,000 of a million
/// contacts) took over 100 ms; the newest 2,000 rank in a few.
pub const RANK_WINDOW: usize = 2_000;

/// Row counts and sync figures for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// (location, table, live rows, tombstoned rows).
    pub rows: Vec<(String, &'static str, u64, u64)>,
    /// Per (location, stream): the last finished run.
    pub runs: Vec<RunFigures>,
}

#[derive(Clone, Debug, Default)]
pub struct RunFigures {
    pub location_id: String,
    pub stream: String,
    pub outcome: String,
    pub duration_s: f64,
    pub last_success_ms: Option<i64>,
    pub requests_total: u64,
    pub daily_remaining: Option<i64>,
}

/// Why a full-text query was refused.
#[derive(Debug, thiserror::Error)]
pub enum TextQueryError {
    #[error("the search text has no letters or digits to look for")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The live contact `id`, in `location` or any location.
    pub fn contact(
        &self,
        location: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredContact>, StoreError> {
        self.read(|c| {
            // Location by location on the (location_id, id) key: no index on the id alone is
            // kept just for this (it would slow every insert), and locations are few.
            c.prepare_cached(CONTACT_BY_ID)?
                .query_row(params![id, location], |r| {
                    Ok(StoredContact {
                        location_id: r.get(0)?,
                        raw: r.get(1)?,
                        fetched_at: r.get(2)?,
                    })
                })
                .optional()
        })
    }

    /// HighLevel's duplicate lookup: the oldest live contact of `location` (by dateAdded, then
    /// id) with this email (case-insensitive), or, when no contact has it, with this phone
    /// number in any format ([`same_phone`] on its digits, a national trunk 0 included).
    /// Candidates come from the full-text index (its email column, and the phone column's
    /// last-7-digits word) plus the contacts changed since it last caught up, all by primary
    /// key: no scan, and no index of its own (two measured 25-35 % off the sync's ingest
    /// speed). Only the winner's stored JSON is read.
    pub fn duplicate_contact(
        &self,
        location: &str,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            if let Some(email) = email.filter(|e| !e.is_empty()) {
                let found = c
                    .prepare_cached(DUPLICATE_BY_EMAIL)?
                    .query_row(params![location, email, fts_phrase("email", email)], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            let digits = phone.map(phone_digits).unwrap_or_default();
            if digits.is_empty() {
                return Ok(None);
            }
            // One snapshot for the candidates and the winner's JSON.
            let tx = c.unchecked_transaction()?;
            let key = &digits[digits.len().saturating_sub(PHONE_KEY_DIGITS)..];
            let mut winner = None;
            {
                let mut stmt = tx.prepare_cached(DUPLICATE_BY_PHONE)?;
                let mut rows = stmt.query(params![location, fts_phrase("phone", key)])?;
                while let Some(r) = rows.next()? {
                    let stored: String = r.get(1)?;
                    if same_phone(&phone_digits(&stored), &digits) {
                        winner = Some(r.get::<_, i64>(0)?);
                        break;
                    }
                }
            }
            let Some(pk) = winner else {
                return Ok(None);
            };
            tx.prepare_cached("SELECT raw FROM contacts WHERE pk = ?1")?
                .query_row([pk], |r| r.get(0))
                .optional()
        })
    }

    /// The live `kind` records of a contact in its list's order upstream: tasks by their stored
    /// position (the bulk task search lists in another order), notes and appointments in the
    /// order they were first stored.
    pub fn list_of(
        &self,
        kind: SubKind,
        location: &str,
        contact: &str,
    ) -> Result<StoredList, StoreError> {
        let table = kind.as_str();
        let order = match kind {
            SubKind::Tasks => "position IS NULL, position, pk",
            SubKind::Notes | SubKind::Appointments => "pk",
        };
        self.read(|c| {
            let items = c
                .prepare_cached(&format!(
                    "SELECT raw FROM {table}
                     WHERE location_id = ?1 AND contact_id = ?2 AND deleted_at IS NULL
                     ORDER BY {order}"
                ))?
                .query_map(params![location, contact], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let fetched_at = c
                .prepare_cached(
                    "SELECT fetched_at FROM contact_fetches
                     WHERE location_id = ?1 AND contact_id = ?2 AND kind = ?3",
                )?
                .query_row(params![location, contact, table], |r| r.get(0))
                .optional()?;
            Ok(StoredList { items, fetched_at })
        })
    }

    /// One live `kind` record of a contact.
    pub fn one_of(
        &self,
        kind: SubKind,
        location: &str,
        contact: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let table = kind.as_str();
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT raw FROM {table}
                 WHERE location_id = ?1 AND id = ?3 AND contact_id = ?2 AND deleted_at IS NULL"
            ))?
            .query_row(params![location, contact, id], |r| r.get(0))
            .optional()
        })
    }

    /// The dateAdded (ms) of a live contact, for cursors that name only an id.
    pub fn contact_added_ms(&self, location: &str, id: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT date_added_ms FROM contacts
                 WHERE location_id = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?
            .query_row(params![location, id], |r| r.get(0))
            .optional()
            .map(Option::flatten)
        })
    }

    /// The ids of the mirrored locations.
    pub fn location_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT id FROM locations ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
    }

    /// Runs a contact query: one page of hits, and the number of matches in all, read from one
    /// snapshot.
    pub fn search_contacts(&self, q: &ContactQuery) -> Result<HitPage, StoreError> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let (total, _) = count_on(&tx, q, false)?;
            let hits = page_on(&tx, q)?;
            Ok(HitPage { hits, total })
        })
    }

    /// One page of a contact query, and from the same snapshot how many contacts match in all
    /// and how many of them lie beyond the query's cursor (all of them without one).
    pub fn page_with_counts(&self, q: &ContactQuery) -> Result<(Vec<Hit>, u64, u64), StoreError> {
        self.read(|c| {
            let tx = c.unchecked_transaction()?;
            let (total, beyond) = count_on(&tx, q, true)?;
            Ok((page_on(&tx, q)?, total, beyond))
        })
    }

    /// One page of a contact query, without counting the matches (for walks that page on).
    pub fn contacts_page(&self, q: &ContactQuery) -> Result<Vec<Hit>, StoreError> {
        self.read(|c| page_on(c, q))
    }

    /// How many contacts match `q`; past its cursor too when `with_cursor`.
    pub fn count_contacts(&self, q: &ContactQuery, with_cursor: bool) -> Result<u64, StoreError> {
        self.read(|c| count_on(c, q, with_cursor))
            .map(|(_, counted)| counted)
    }

    /// Live contacts of a business, oldest first (dateAdded, id), optionally matching `text`,
    /// and how many match in all.
    pub fn business_contacts(
        &self,
        location: &str,
        business: &str,
        text: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let mut q = ContactQuery::all(location, limit);
        q.business = Some(business.to_string());
        q.text = text.map(str::to_string);
        q.sort = vec![Sort {
            field: SortField::DateAdded,
            desc: false,
        }];
        q.offset = skip;
        let page = self.search_contacts(&q)?;
        Ok((page.hits.into_iter().map(|h| h.raw).collect(), page.total))
    }

    /// Full-text search over live contacts' names, emails, phones, companies, tags and note
    /// bodies, best match first. Every word of `text` must match the start of a word.
    pub fn search_text(
        &self,
        location: Option<&str>,
        text: &str,
        limit: usize,
    ) -> Result<TextHits, TextQueryError> {
        let mut expr = fts_expression(text).ok_or(TextQueryError::Empty)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let window = RANK_WINDOW as i64;
        let (hits, ranked) = self.read(|c| {
            // The location term matches every contact of the location: worth its cost only
            // when other locations share the index.
            let others: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM locations WHERE id <> ?1")?
                .query_row([location.unwrap_or_default()], |r| r.get(0))?;
            if let (Some(loc), true) = (location, others > 0) {
                expr = format!("location : \"{}\" AND {expr}", loc.replace('"', "\"\""));
            }
            // The index walks its matches newest first and stops after the window (one more
            // tells whether there were more), so bm25 runs on at most that many. Only the
            // best are then read from `contacts`, skipping contacts deleted since the index
            // last caught up (they are still in it). Equal scores: first synced first.
            let mut scored: Vec<(f64, i64)> = c
                .prepare_cached(
                    "SELECT bm25(contacts_fts, 10.0, 6.0, 6.0, 4.0, 3.0, 1.0, 0.0), rowid
                       FROM contacts_fts WHERE contacts_fts MATCH ?1
                      ORDER BY rowid DESC LIMIT ?2",
                )?
                .query_map(params![expr, window + 1], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let ranked = scored.len();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut live = c.prepare_cached(
                "SELECT location_id, raw FROM contacts WHERE pk = ?1 AND deleted_at IS NULL",
            )?;
            let mut hits = Vec::new();
            for (score, pk) in scored {
                if hits.len() as i64 >= limit {
                    break;
                }
                if let Some((location_id, raw)) = live
                    .query_row([pk], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                {
                    hits.push(TextHit {
                        location_id,
                        raw,
                        score: -score,
                    });
                }
            }
            Ok((hits, ranked))
        })?;
        Ok(TextHits {
            hits,
            ranked: ranked.min(RANK_WINDOW),
            complete: ranked <= RANK_WINDOW,
        })
    }

    /// Brings the full-text index up to date for at most `batch` new contacts and `batch`
    /// contacts marked as changed (in one transaction); returns how many it indexed, 0 once
    /// none is left.
    pub fn index_text(&self, batch: usize) -> Result<usize, StoreError> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.write(|tx| {
            let mark: i64 =
                tx.query_row("SELECT last_pk FROM contacts_fts_state", [], |r| r.get(0))?;
            let fresh: Vec<i64> = tx
                .prepare_cached("SELECT pk FROM contacts WHERE pk > ?1 ORDER BY pk LIMIT ?2")?
                .query_map([mark, batch], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let changed: Vec<i64> = tx
                .prepare_cached("SELECT pk FROM contacts_fts_dirty ORDER BY pk LIMIT ?1")?
                .query_map([batch], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if fresh.is_empty() && changed.is_empty() {
                return Ok(0);
            }
            let json = |v: &[i64]| {
                serde_json::to_string(v)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
            };
            let mut all: Vec<i64> = fresh.iter().chain(&changed).copied().collect();
            all.sort_unstable();
            all.dedup();
            let (changed_json, all_json) = (json(&changed)?, json(&all)?);
            // Only changed contacts can be in the index already.
            tx.prepare_cached(
                "DELETE FROM contacts_fts WHERE rowid IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&changed_json])?;
            tx.prepare_cached(
                "INSERT INTO contacts_fts (rowid, name, email, phone, company, tags, notes, location)
                 SELECT rowid, ghl_split_runs(name), ghl_split_runs(email), ghl_split_runs(phone),
                        ghl_split_runs(company), ghl_split_runs(tags), ghl_split_runs(notes), location
                 FROM contacts_fts_source
                 WHERE rowid IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&all_json])?;
            tx.prepare_cached(
                "DELETE FROM contacts_fts_dirty WHERE pk IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&changed_json])?;
            if let Some(last) = fresh.last() {
                tx.execute("UPDATE contacts_fts_state SET last_pk = ?1", [last])?;
            }
            Ok(all.len())
        })
    }

    /// Live contacts added or changed since the full-text index last caught up (not
    /// searchable as they are now until the next `index_text`: a changed contact by its
    /// previous words, a new one not at all). Each counts once: new contacts (above the
    /// indexed mark) and marked ones below it are disjoint, and a mark on a contact since
    /// tombstoned is work for the index, not a contact the search misses.
    pub fn text_pending(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached(TEXT_PENDING)?
                .query_row([], |r| r.get::<_, i64>(0))
        })
        .map(|n| n.max(0) as u64)
    }

    /// When each location's contacts were last synced successfully (ms; `None`: never).
    pub fn contacts_synced_ms(&self) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT l.id, (SELECT MAX(ended_at) FROM sync_runs r WHERE r.location_id = l.id
                   AND r.stream = 'contacts' AND r.outcome = 'success')
                 FROM locations l ORDER BY l.id",
            )?
            .query_map([], |r| {
                let end: Option<String> = r.get(1)?;
                Ok((r.get(0)?, end.as_deref().and_then(ms_from_iso)))
            })?
            .collect()
        })
    }

    /// Row counts and the last run of each (location, stream).
    pub fn metrics(&self) -> Result<Metrics, StoreError> {
        self.read(|c| {
            // Counted per location through indexes (the live ones are partial indexes), so a
            // scrape never reads the rows themselves.
            let locations: Vec<String> = c
                .prepare_cached("SELECT id FROM locations ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut rows = Vec::new();
            for table in [
                "contacts",
                "tasks",
                "notes",
                "appointments",
                "businesses",
                "custom_fields",
            ] {
                let mut all = c.prepare_cached(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE location_id = ?1"
                ))?;
                let mut live = c.prepare_cached(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE location_id = ?1 AND deleted_at IS NULL"
                ))?;
                for loc in &locations {
                    let n_all: i64 = all.query_row([loc], |r| r.get(0))?;
                    let n_live: i64 = live.query_row([loc], |r| r.get(0))?;
                    let (n_all, n_live) = (n_all.max(0) as u64, n_live.max(0) as u64);
                    rows.push((loc.clone(), table, n_live, n_all.saturating_sub(n_live)));
                }
            }
            let runs = c
                .prepare_cached(
                    "SELECT r.location_id, r.stream, r.outcome,
                       COALESCE((julianday(r.ended_at) - julianday(r.started_at)) * 86400.0, 0),
                       (SELECT MAX(ended_at) FROM sync_runs s WHERE s.location_id = r.location_id
                          AND s.stream = r.stream AND s.outcome = 'success'),
                       (SELECT COALESCE(SUM(requests), 0) FROM sync_runs s
                          WHERE s.location_id = r.location_id AND s.stream = r.stream),
                       (SELECT daily_remaining FROM sync_runs s WHERE s.location_id = r.location_id
                          AND s.daily_remaining IS NOT NULL ORDER BY s.id DESC LIMIT 1)
                     FROM sync_runs r
                     WHERE r.id = (SELECT MAX(id) FROM sync_runs s WHERE s.location_id = r.location_id
                                     AND s.stream = r.stream AND s.ended_at IS NOT NULL)
                     ORDER BY r.location_id, r.stream",
                )?
                .query_map([], |r| {
                    let success: Option<String> = r.get(4)?;
                    Ok(RunFigures {
                        location_id: r.get(0)?,
                        stream: r.get(1)?,
                        outcome: r.get(2)?,
                        duration_s: r.get(3)?,
                        last_success_ms: success.as_deref().and_then(ms_from_iso),
                        requests_total: r.get::<_, i64>(5)?.max(0) as u64,
                        daily_remaining: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Metrics { rows, runs })
        })
    }
}

/// A live contact by id, in location ?2 or any: location by location on the (location_id, id)
/// key. Written with IN because, as a join, SQLite scans every contact instead.
/// The oldest live contact with this email (ASCII case-insensitive) among the candidates: the
/// contacts the full-text index finds for `?3`, and those it has not caught up with yet. The
/// CROSS JOIN keeps SQLite from walking the location's contacts instead.
const DUPLICATE_BY_EMAIL: &str = "WITH cand(pk) AS MATERIALIZED (
       SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH ?3
       UNION SELECT pk FROM contacts_fts_dirty
       UNION SELECT pk FROM contacts WHERE pk > (SELECT last_pk FROM contacts_fts_state))
     SELECT c.raw FROM cand CROSS JOIN contacts c ON c.pk = cand.pk
     WHERE c.location_id = ?1 AND c.deleted_at IS NULL AND lower(c.email) = lower(?2)
     ORDER BY c.date_added, c.id LIMIT 1";

/// The phone column of the full-text index holds each number's last 7 digits as a word
/// (`contacts_fts_source`); candidates are found by it, so a national number as short as 7
/// digits (`06 12 34 56 78` for `+33612345678`) finds its contact.
const PHONE_KEY_DIGITS: usize = 7;

/// Live candidates with a phone, oldest first: their keys and phones only (the digits are
/// compared in Rust, and only the winner's JSON is read).
const DUPLICATE_BY_PHONE: &str = "WITH cand(pk) AS MATERIALIZED (
       SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH ?2
       UNION SELECT pk FROM contacts_fts_dirty
       UNION SELECT pk FROM contacts WHERE pk > (SELECT last_pk FROM contacts_fts_state))
     SELECT c.pk, c.phone, c.date_added, c.id FROM cand CROSS JOIN contacts c ON c.pk = cand.pk
     WHERE c.location_id = ?1 AND c.deleted_at IS NULL AND c.phone IS NOT NULL
     ORDER BY c.date_added, c.id";

/// An FTS5 query for `text` as one phrase in `column`, split as the index splits it.
fn fts_phrase(column: &str, text: &str) -> String {
    format!("{column} : \"{}\"", split_runs(text).replace('"', "\"\""))
}

const CONTACT_BY_ID: &str = "SELECT c.location_id, c.raw, c.fetched_at FROM contacts c
     WHERE c.location_id IN (SELECT id FROM locations WHERE ?2 IS NULL OR id = ?2)
       AND c.id = ?1 AND c.deleted_at IS NULL
     LIMIT 1";

/// One page of `q` on `c`.
/// One page of `q`. The page is chosen on the contacts' keys alone (`pk`, in a subquery), and
/// only its rows are then read whole: sorting every match with its stored JSON (about 900
/// bytes each) made a wide date range in the default order cost 240 ms at 1M contacts.
fn page_on(c: &Connection, q: &ContactQuery) -> rusqlite::Result<Vec<Hit>> {
    let mut select = Sql::default();
    select.push("SELECT c.id, c.raw");
    for key in &q.sort {
        select.push(", ");
        select.push(sort_expr(key.field));
    }
    select.push(" FROM contacts c JOIN (SELECT c.pk FROM contacts c WHERE ");
    where_clause(&mut select, q, true);
    select.push(" ORDER BY ");
    order_by(&mut select, &q.sort);
    select.push(" LIMIT ");
    select.bind(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    select.push(" OFFSET ");
    select.bind(Value::Integer(i64::try_from(q.offset).unwrap_or(i64::MAX)));
    select.push(") page ON c.pk = page.pk ORDER BY ");
    order_by(&mut select, &q.sort);
    let dates: Vec<bool> = q.sort.iter().map(|k| k.field.is_date()).collect();
    let mut st = c.prepare_cached(&select.text)?;
    st.query_map(params_from_iter(&select.params), |r| {
        let mut sort_values = Vec::with_capacity(dates.len());
        for (i, is_date) in dates.iter().enumerate() {
            sort_values.push(match r.get_ref(i + 2)? {
                ValueRef::Integer(ms) if *is_date => SortValue::Ms(ms),
                ValueRef::Text(t) => SortValue::Text(String::from_utf8_lossy(t).into()),
                _ => SortValue::Null,
            });
        }
        Ok(Hit {
            id: r.get(0)?,
            raw: r.get(1)?,
            sort_values,
        })
    })?
    .collect()
}

/// In one scan: how many contacts match `q` (its cursor aside), and how many of them lie
/// beyond its cursor (when `split` and it has one; else all of them).
fn count_on(c: &Connection, q: &ContactQuery, split: bool) -> rusqlite::Result<(u64, u64)> {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*), ");
    match (&q.after, split) {
        (Some((values, id)), true) => {
            sql.push("COALESCE(SUM(");
            after(&mut sql, &q.sort, values, id);
            sql.push("), 0)");
        }
        _ => sql.push("COUNT(*)"),
    }
    sql.push(" FROM contacts c WHERE ");
    where_clause(&mut sql, q, false);
    let (total, beyond) = c
        .prepare_cached(&sql.text)?
        .query_row(params_from_iter(&sql.params), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
    Ok((total.max(0) as u64, beyond.max(0) as u64))
}

/// SQL text with its positional parameters.
#[derive(Default)]
struct Sql {
    text: String,
    params: Vec<Value>,
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Adds a parameter and returns its placeholder (`?N`), to be placed in the text.
    fn param(&mut self, v: Value) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    fn bind(&mut self, v: Value) {
        let p = self.param(v);
        self.text.push_str(&p);
    }

    fn bind_text(&mut self, s: &str) {
        self.bind(Value::Text(s.to_string()));
    }

    fn bind_list(&mut self, items: &[String]) {
        self.push("(");
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind_text(s);
        }
        self.push(")");
    }
}

/// The column or expression holding a text field's value.
fn text_expr(field: Field) -> &'static str {
    match field {
        Field::Id => "c.id",
        Field::FirstName => "c.first_name",
        Field::LastName => "c.last_name",
        Field::Name => "c.name",
        Field::Email => "c.email",
        Field::Phone => "c.phone",
        Field::CompanyName => "c.company_name",
        Field::Type => "c.type",
        Field::Source => "c.source",
        Field::AssignedTo => "c.assigned_to",
        Field::BusinessId => "c.business_id",
        Field::Country => "c.country",
        Field::City => "c.city",
        Field::State => "c.state",
        Field::PostalCode => "c.postal_code",
        Field::Timezone => "c.timezone",
        Field::Address1 => "json_extract(c.raw, '$.address1')",
        Field::Website => "json_extract(c.raw, '$.website')",
        Field::Tags | Field::Dnd | Field::DateAdded | Field::DateUpdated | Field::LastActivity => {
            "NULL"
        }
    }
}

/// A text field's value as compared: lowercased, except the case-sensitive id.
fn compared_text(field: Field) -> String {
    match field {
        Field::Id => "c.id".into(),
        f => format!("ghl_lower({})", text_expr(f)),
    }
}

fn date_expr(field: Field) -> &'static str {
    match field {
        Field::DateAdded => "c.date_added_ms",
        Field::DateUpdated => "c.date_updated_ms",
        _ => "ghl_ms(json_extract(c.raw, '$.lastActivity'))",
    }
}

fn sort_expr(field: SortField) -> &'static str {
    match field {
        SortField::DateAdded => "c.date_added_ms",
        SortField::DateUpdated => "c.date_updated_ms",
        SortField::FirstName => "ghl_lower(c.first_name)",
        SortField::LastName => "ghl_lower(c.last_name)",
        SortField::Email => "ghl_lower(c.email)",
        SortField::CompanyName => "ghl_lower(c.company_name)",
    }
}

/// `location AND live AND filters AND text [AND after the cursor]`.
fn where_clause(sql: &mut Sql, q: &ContactQuery, with_cursor: bool) {
    sql.push("c.location_id = ");
    sql.bind_text(&q.location);
    sql.push(" AND c.deleted_at IS NULL");
    if let Some(b) = &q.business {
        sql.push(" AND c.business_id = ");
        sql.bind_text(b);
    }
    for f in &q.filters {
        sql.push(" AND ");
        match f {
            // A bare range at the top level lets SQLite use the date indexes.
            Filter::Cond {
                field: field @ (Field::DateAdded | Field::DateUpdated),
                op: Op::Range(r),
            } => range(sql, date_expr(*field), r),
            f => filter(sql, f),
        }
    }
    if let Some(text) = &q.text {
        sql.push(" AND (");
        for (i, col) in ["c.name", "c.email", "c.phone", "c.company_name"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push(&format!("COALESCE(instr(ghl_lower({col}), "));
            sql.bind_text(text);
            sql.push(") > 0, 0)");
        }
        sql.push(")");
    }
    if let (true, Some((values, id))) = (with_cursor, &q.after) {
        sql.push(" AND ");
        after(sql, &q.sort, values, id);
    }
}

/// A filter as a 0/1 expression (never NULL, so NOT and OR behave).
fn filter(sql: &mut Sql, f: &Filter) {
    match f {
        Filter::Group { any, filters } => {
            if filters.is_empty() {
                sql.push(if *any { "0" } else { "1" });
                return;
            }
            sql.push("(");
            for (i, f) in filters.iter().enumerate() {
                if i > 0 {
                    sql.push(if *any { " OR " } else { " AND " });
                }
                filter(sql, f);
            }
            sql.push(")");
        }
        Filter::Cond { field, op } => cond(sql, *field, op),
    }
}

fn cond(sql: &mut Sql, field: Field, op: &Op) {
    match op {
        Op::Eq(v) => equals(sql, field, v),
        Op::NotEq(v) => {
            sql.push("NOT ");
            equals(sql, field, v);
        }
        Op::Contains(s) => contains(sql, field, s),
        Op::NotContains(s) => {
            sql.push("NOT ");
            contains(sql, field, s);
        }
        Op::Exists => exists(sql, field),
        Op::NotExists => {
            sql.push("NOT ");
            exists(sql, field);
        }
        Op::Range(r) => {
            sql.push("COALESCE(");
            range(sql, date_expr(field), r);
            sql.push(", 0)");
        }
    }
}

fn equals(sql: &mut Sql, field: Field, v: &Operand) {
    match (field.kind(), v) {
        (FieldKind::Tags, Operand::Text(items)) => {
            sql.push("EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_pk = c.pk AND ghl_lower(t.tag) IN ");
            sql.bind_list(items);
            sql.push(")");
        }
        (FieldKind::Text, Operand::Text(items)) => {
            sql.push(&format!("COALESCE({} IN ", compared_text(field)));
            sql.bind_list(items);
            sql.push(", 0)");
        }
        (FieldKind::Bool, Operand::Bool(b)) => {
            sql.push("(COALESCE(c.dnd, 0) = ");
            sql.bind(Value::Integer(i64::from(*b)));
            sql.push(")");
        }
        (FieldKind::Date, Operand::Date(ms)) => {
            sql.push(&format!("COALESCE({} = ", date_expr(field)));
            sql.bind(Value::Integer(*ms));
            sql.push(", 0)");
        }
        // An operand of another kind never matches (parsers do not build one).
        _ => sql.push("0"),
    }
}

fn contains(sql: &mut Sql, field: Field, needle: &str) {
    match field.kind() {
        FieldKind::Tags => {
            sql.push("EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_pk = c.pk AND instr(ghl_lower(t.tag), ");
            sql.bind_text(needle);
            sql.push(") > 0)");
        }
        FieldKind::Text => {
            sql.push(&format!("COALESCE(instr({}, ", compared_text(field)));
            sql.bind_text(needle);
            sql.push(") > 0, 0)");
        }
        FieldKind::Bool | FieldKind::Date => sql.push("0"),
    }
}

fn exists(sql: &mut Sql, field: Field) {
    match field.kind() {
        FieldKind::Bool => sql.push("1"),
        FieldKind::Date => sql.push(&format!("({} IS NOT NULL)", date_expr(field))),
        FieldKind::Tags => {
            sql.push("EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_pk = c.pk)");
        }
        FieldKind::Text => sql.push(&format!("COALESCE({} <> '', 0)", text_expr(field))),
    }
}

fn range(sql: &mut Sql, expr: &str, r: &Range) {
    let bounds = [(">=", r.gte), (">", r.gt), ("<=", r.lte), ("<", r.lt)];
    let mut first = true;
    sql.push("(");
    for (op, v) in bounds {
        if let Some(v) = v {
            if !first {
                sql.push(" AND ");
            }
            first = false;
            sql.push(&format!("{expr} {op} "));
            sql.bind(Value::Integer(v));
        }
    }
    if first {
        sql.push("1");
    }
    sql.push(")");
}

/// `ORDER BY` for the keys: missing values last, ties by id in the last key's direction. Date
/// keys are ordered bare so that SQLite walks their index.
fn order_by(sql: &mut Sql, sort: &[Sort]) {
    for key in sort {
        let expr = sort_expr(key.field);
        let dir = if key.desc { "DESC" } else { "ASC" };
        if key.field.is_date() {
            sql.push(&format!("{expr} {dir}, "));
        } else {
            sql.push(&format!("({expr} IS NULL), {expr} {dir}, "));
        }
    }
    let last_desc = sort.last().is_some_and(|k| k.desc);
    sql.push(if last_desc { "c.id DESC" } else { "c.id ASC" });
}

/// "Strictly after the cursor" in the order [`order_by`] gives: text keys put missing values
/// last in both directions; date keys keep SQLite's own order (missing first ascending, last
/// descending) so that their index serves the ORDER BY.
fn after(sql: &mut Sql, sort: &[Sort], values: &[SortValue], id: &str) {
    let last_desc = sort.last().is_some_and(|k| k.desc);
    if let ([key], [SortValue::Ms(ms)]) = (sort, values) {
        // One date key: a row-value comparison SQLite answers from the index.
        let expr = sort_expr(key.field);
        let (ms, id) = (
            sql.param(Value::Integer(*ms)),
            sql.param(Value::Text(id.into())),
        );
        sql.push(&if key.desc {
            format!("(({expr}, c.id) < ({ms}, {id}) OR {expr} IS NULL)")
        } else {
            format!("({expr}, c.id) > ({ms}, {id})")
        });
        return;
    }
    let mut open = 0;
    for (key, value) in sort.iter().zip(values) {
        let (beyond, same) = key_after(sql, *key, value);
        sql.push(&format!("({beyond} OR ({same} AND "));
        open += 2;
    }
    let id = sql.param(Value::Text(id.into()));
    sql.push(&format!("c.id {} {id}", if last_desc { "<" } else { ">" }));
    for _ in 0..open {
        sql.push(")");
    }
}

/// For one key and the cursor's value: (sorts beyond it, sorts level with it).
fn key_after(sql: &mut Sql, key: Sort, value: &SortValue) -> (String, String) {
    let expr = sort_expr(key.field);
    let date = key.field.is_date();
    let bound = match value {
        SortValue::Ms(ms) => Value::Integer(*ms),
        SortValue::Text(s) => Value::Text(s.clone()),
        // Missing dates come first ascending: every present one is beyond.
        SortValue::Null if date && !key.desc => {
            return (format!("{expr} IS NOT NULL"), format!("{expr} IS NULL"));
        }
        // Otherwise missing values come last: nothing is beyond them.
        SortValue::Null => return ("0".into(), format!("{expr} IS NULL")),
    };
    let p = sql.param(bound);
    let same = format!("{expr} = {p}");
    let beyond = match (date, key.desc) {
        (true, false) => format!("{expr} > {p}"),
        (true, true) => format!("({expr} < {p} OR {expr} IS NULL)"),
        (false, false) => format!("({expr} IS NULL OR {expr} > {p})"),
        (false, true) => format!("({expr} IS NULL OR {expr} < {p})"),
    };
    (beyond, same)
}

/// A safe FTS5 expression for free text. Each word (split on whitespace) becomes one quoted
/// phrase, so no input can be FTS5 syntax and the index's tokenizer splits the word exactly
/// as it split the indexed text: "jane.smith" is the phrase "jane smith", "O'Brien" is
/// "o brien", and a word mixing letters and digits is its runs, as indexed (`split_runs`:
/// "smith42" is "smith 42", which must be adjacent). Every word is required. The last word
/// matches as a prefix (the word being typed, as in Meilisearch or Typesense), the others
/// whole: a prefix longer than the index's prefix lengths (2 and 3) makes FTS5 merge the
/// entries of every word it starts. A word of one letter or digit is always whole (as a
/// prefix it would match nearly every contact). A phone-like input (digits with + - . ( )
/// and spaces) becomes one digits-only prefix, which matches the digits stored with each
/// phone.
fn fts_expression(text: &str) -> Option<String> {
    let phone_chars = |c: char| c.is_ascii_digit() || "+-.() ".contains(c);
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let words: Vec<String> = if text.trim().chars().all(phone_chars) && digits.len() >= 4 {
        vec![digits]
    } else {
        text.split_whitespace()
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .map(|w| split_runs(&w.to_lowercase()).replace('"', "\"\""))
            .collect()
    };
    let last = words.len().checked_sub(1)?;
    let terms: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let one_char = w.chars().filter(|c| c.is_alphanumeric()).nth(1).is_none();
            if i == last && !one_char {
                format!("\"{w}\"*")
            } else {
                format!("\"{w}\"")
            }
        })
        .collect();
    // Never the location column: "sandbox" must not find every contact of a sandbox location.
    Some(format!("{{{TEXT_COLUMNS}}} : ({})", terms.join(" ")))
}

/// The columns of `contacts_fts` free text searches.
const TEXT_COLUMNS: &str = "name email phone company tags notes";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_becomes_quoted_prefix_terms_and_phones_become_digits() {
        let cols = |t: &str| Some(format!("{{{TEXT_COLUMNS}}} : ({t})"));
        assert_eq!(fts_expression("Zoë  O'Brien"), cols("\"zoë\" \"o'brien\"*"));
        assert_eq!(
            fts_expression("+1 (555) 123-4567"),
            cols("\"15551234567\"*")
        );
        assert_eq!(
            fts_expression("NEAR(a b) OR \"x"),
            cols("\"near(a\" \"b)\" \"or\" \"\"\"x\"")
        );
        assert_eq!(fts_expression("smith4 4"), cols("\"smith 4\" \"4\""));
        assert_eq!(fts_expression(" -- ()"), None);
    }

    /// A store with 9 contacts of one location, some missing dates, names and companies.
    fn ragged_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .write(|tx| {
                tx.execute("INSERT INTO locations (id) VALUES ('L')", [])?;
                // (id, dateAdded, dateUpdated, firstName, companyName)
                type Row<'a> = (&'a str, Option<i64>, Option<i64>, Option<&'a str>, Option<&'a str>);
                let rows: [Row<'_>; 9] = [
                    ("a", Some(5), Some(50), Some("Ann"), Some("Acme")),
                    ("b", None, Some(50), None, None),
                    ("c", Some(5), None, Some("Ann"), Some("Zed")),
                    ("d", None, None, Some("bob"), None),
                    ("e", Some(1), Some(10), Some("Åsa"), Some("acme")),
                    ("f", Some(9), Some(10), None, Some("Acme")),
                    ("g", None, Some(70), Some("Bob"), None),
                    ("h", Some(9), None, Some("ann"), Some("Zed")),
                    ("i", Some(1), Some(70), Some("Zoë"), None),
                ];
                for (id, added, updated, first, company) in rows {
                    tx.execute(
                        "INSERT INTO contacts (location_id, id, first_name, company_name,
                           date_added_ms, date_updated_ms, raw, first_seen_at, changed_at, fetched_at)
                         VALUES ('L', ?1, ?2, ?3, ?4, ?5, '{}', 'x', 'x', 'x')",
                        params![id, first, company, added, updated],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    #[test]
    fn cursor_paging_visits_every_contact_once_in_every_order_even_with_missing_values() {
        let (_dir, store) = ragged_store();
        let key = |field, desc| Sort { field, desc };
        let orders = [
            vec![key(SortField::DateAdded, false)],
            vec![key(SortField::DateAdded, true)],
            vec![key(SortField::DateUpdated, false)],
            vec![key(SortField::DateUpdated, true)],
            vec![key(SortField::FirstName, false)],
            vec![key(SortField::FirstName, true)],
            vec![
                key(SortField::CompanyName, true),
                key(SortField::DateAdded, false),
            ],
            vec![
                key(SortField::DateUpdated, true),
                key(SortField::FirstName, false),
            ],
            vec![
                key(SortField::DateAdded, false),
                key(SortField::DateUpdated, true),
            ],
        ];
        for sort in orders {
            let mut whole = ContactQuery::all("L", 100);
            whole.sort = sort.clone();
            let all: Vec<String> = store
                .search_contacts(&whole)
                .unwrap()
                .hits
                .into_iter()
                .map(|h| h.id)
                .collect();
            assert_eq!(all.len(), 9, "{sort:?}");
            for page in [1, 2, 4] {
                let mut q = whole.clone();
                q.limit = page;
                let mut walked = Vec::new();
                loop {
                    let hits = store.search_contacts(&q).unwrap().hits;
                    let Some(last) = hits.last() else { break };
                    q.after = Some((last.sort_values.clone(), last.id.clone()));
                    walked.extend(hits.into_iter().map(|h| h.id));
                    assert!(walked.len() <= 9, "{sort:?} by {page}: {walked:?}");
                }
                assert_eq!(walked, all, "{sort:?} by {page}");
                assert_eq!(store.count_contacts(&q, true).unwrap(), 0);
            }
        }
    }

    #[test]
    fn a_contact_by_id_is_found_through_its_key_not_a_scan() {
        let (_dir, store) = ragged_store();
        let plan = store
            .query_table(
                &format!(
                    "EXPLAIN QUERY PLAN {}",
                    CONTACT_BY_ID.replace("?1", "'a'").replace("?2", "NULL")
                ),
                20,
            )
            .unwrap();
        let steps: Vec<String> = plan.rows.iter().map(|r| r[3].to_string()).collect();
        assert!(
            steps[0].contains("SEARCH c USING INDEX sqlite_autoindex_contacts_1"),
            "{steps:?}"
        );
        assert_eq!(store.contact(None, "a").unwrap().unwrap().location_id, "L");
        assert!(store.contact(Some("M"), "a").unwrap().is_none());
    }

    #[test]
    fn counting_what_search_misses_walks_the_marks_and_new_contacts_not_the_table() {
        let (_dir, store) = ragged_store();
        let plan = store
            .query_table(&format!("EXPLAIN QUERY PLAN {TEXT_PENDING}"), 20)
            .unwrap();
        let steps: Vec<String> = plan.rows.iter().map(|r| r[3].to_string()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("SEARCH d USING INTEGER PRIMARY KEY (rowid<?)")),
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.contains("SCAN c")), "{steps:?}");
    }

    #[test]
    fn words_mixing_letters_and_digits_are_indexed_and_searched_as_their_runs() {
        assert_eq!(
            split_runs("jane.smith42@example.com"),
            "jane.smith 42@example.com"
        );
        assert_eq!(split_runs("a1b2 R2-D2 vip2024"), "a 1 b 2 R 2-D 2 vip 2024");
        assert_eq!(split_runs("plain words, 555"), "plain words, 555");
        let cols = |t: &str| Some(format!("{{{TEXT_COLUMNS}}} : ({t})"));
        assert_eq!(fts_expression("smith42"), cols("\"smith 42\"*"));
        assert_eq!(fts_expression("VIP2024 jo"), cols("\"vip 2024\" \"jo\"*"));
    }

    #[test]
    fn duplicates_are_found_by_email_or_any_phone_format_through_the_text_index_and_its_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .write(|tx| {
                tx.execute("INSERT INTO locations (id) VALUES ('L'), ('M')", [])?;
                // (location, id, email, phone, date_added, deleted_at)
                let rows = [
                    (
                        "L",
                        "old",
                        "Jane@Example.com",
                        "+15550101234",
                        "2024-01-01",
                        None,
                    ),
                    (
                        "L",
                        "new",
                        "jane@example.com",
                        "+1 (555) 010-1234",
                        "2025-01-01",
                        None,
                    ),
                    (
                        "L",
                        "gone",
                        "gone@example.com",
                        "+15550109999",
                        "2020-01-01",
                        Some("x"),
                    ),
                    (
                        "L",
                        "uk",
                        "uk@example.com",
                        "+442079460958",
                        "2020-01-01",
                        None,
                    ),
                    (
                        "M",
                        "elsewhere",
                        "m@example.com",
                        "+15550107777",
                        "2020-01-01",
                        None,
                    ),
                    (
                        "L",
                        "fr",
                        "fr@example.com",
                        "+33612345678",
                        "2020-01-01",
                        None,
                    ),
                ];
                for (loc, id, email, phone, added, deleted) in rows {
                    tx.execute(
                        "INSERT INTO contacts (location_id, id, email, phone, date_added, raw,
                           first_seen_at, changed_at, fetched_at, deleted_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'x', 'x', 'x', ?7)",
                        params![
                            loc,
                            id,
                            email,
                            phone,
                            added,
                            format!("{{\"id\":\"{id}\"}}"),
                            deleted
                        ],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let dup = |loc: &str, email: Option<&str>, phone: Option<&str>| {
            store
                .duplicate_contact(loc, email, phone)
                .unwrap()
                .map(|raw| {
                    raw.trim_start_matches("{\"id\":\"")
                        .trim_end_matches("\"}")
                        .to_string()
                })
        };
        assert_eq!(
            dup("L", Some("JANE@example.COM"), None).as_deref(),
            Some("old")
        );
        for phone in [
            "+1 (555) 010-1234",
            "5550101234",
            "+15550101234",
            "1-555-010-1234",
        ] {
            assert_eq!(
                dup("L", None, Some(phone)).as_deref(),
                Some("old"),
                "{phone}"
            );
        }
        // Email first: a phone of another contact does not win over a matching email.
        assert_eq!(
            dup("L", Some("uk@example.com"), Some("5550101234")).as_deref(),
            Some("uk")
        );
        // An email that matches nobody falls back to the phone.
        assert_eq!(
            dup("L", Some("no@example.com"), Some("5550101234")).as_deref(),
            Some("old")
        );
        assert_eq!(
            dup("L", None, Some("+44 20 7946 0958")).as_deref(),
            Some("uk")
        );
        // National formats with a trunk 0, also when the national number is short.
        assert_eq!(dup("L", None, Some("020 7946 0958")).as_deref(), Some("uk"));
        assert_eq!(
            dup("L", None, Some("06 12 34 56 78")).as_deref(),
            Some("fr")
        );
        assert_eq!(dup("L", None, Some("0101234")), None);
        assert_eq!(dup("L", None, Some("0 612 345")), None);
        assert_eq!(
            dup("L", Some("gone@example.com"), Some("+15550109999")),
            None
        );
        assert_eq!(dup("L", Some("m@example.com"), None), None);
        assert_eq!(dup("L", None, None), None);
        // Once indexed, the same answers come from the full-text index, by primary key.
        while store.index_text(100).unwrap() > 0 {}
        assert_eq!(
            dup("L", Some("JANE@example.COM"), None).as_deref(),
            Some("old")
        );
        assert_eq!(
            dup("L", None, Some("+1 (555) 010-1234")).as_deref(),
            Some("old")
        );
        assert_eq!(
            dup("L", None, Some("+44 20 7946 0958")).as_deref(),
            Some("uk")
        );
        assert_eq!(dup("L", None, Some("020 7946 0958")).as_deref(), Some("uk"));
        assert_eq!(
            dup("L", None, Some("06 12 34 56 78")).as_deref(),
            Some("fr")
        );
        assert_eq!(
            dup("L", Some("gone@example.com"), Some("+15550109999")),
            None
        );
        let plan = |sql: &str, args: [&str; 3]| {
            store
                .read(|c| {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = stmt.query_map(
                        params_from_iter(args.iter().take(stmt.parameter_count())),
                        |r| r.get::<_, String>(3),
                    )?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap()
                .join("; ")
        };
        for (sql, args) in [
            (
                DUPLICATE_BY_EMAIL,
                ["L", "jane@example.com", "email : \"jane example com\""],
            ),
            (DUPLICATE_BY_PHONE, ["L", "phone : \"0101234\"", ""]),
        ] {
            let p = plan(sql, args);
            assert!(
                p.contains("SEARCH c USING INTEGER PRIMARY KEY (rowid=?)")
                    && p.contains("SCAN contacts_fts VIRTUAL TABLE")
                    && p.contains("SEARCH contacts USING INTEGER PRIMARY KEY (rowid>?)")
                    && !p.split("; ").any(|s| s == "SCAN c" || s == "SCAN contacts")
                    && !p.contains("autoindex"),
                "{p}"
            );
        }
    }

    #[test]
    fn typed_words_find_what_was_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .write(|tx| {
                tx.execute("INSERT INTO locations (id) VALUES ('L')", [])?;
                // (id, name, email, phone)
                let rows = [
                    ("jane", "Jane Smith", "jane.smith42@example.com", "+1 555 123 4567x89"),
                    ("other", "Smith Person", "p@example.org", "+14255550000"),
                    ("renee", "Ren\u{e9}e Roy", "rr@example.org", "+15550000001"),
                ];
                for (id, name, email, phone) in rows {
                    tx.execute(
                        "INSERT INTO contacts (location_id, id, name, email, phone, raw, first_seen_at,
                           changed_at, fetched_at) VALUES ('L', ?1, ?2, ?3, ?4, '{}', 'x', 'x', 'x')",
                        params![id, name, email, phone],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        while store.index_text(100).unwrap() > 0 {}
        let found = |q: &str| store.search_text(None, q, 10).unwrap().hits.len();
        // The runs of a typed word stay together, and the last one is still a prefix.
        assert_eq!(found("smith4"), 1);
        assert_eq!(found("jane.smith4"), 1);
        assert_eq!(found("jane.smi"), 1);
        // "smith42" is "smith" next to "42", not "smith" anywhere and a phone starting 42.
        assert_eq!(found("smith42"), 1);
        assert_eq!(found("smith"), 2);
        // A phone extension, split the same way in the index and the search.
        assert_eq!(found("4567x89"), 1);
        // An accent typed as a combining mark finds the precomposed name.
        assert_eq!(found("Rene\u{301}e"), 1);
        assert_eq!(found("renée"), 1);
        // Nothing typed is FTS5 syntax.
        assert_eq!(found("NEAR(smith jane) OR \"x"), 0);
        assert_eq!(found("-- smith"), 2);
    }

    #[test]
    fn the_lowercase_function_folds_unicode_like_rust() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let t = store
            .query_table(
                "SELECT ghl_lower('ZOË Łukasz'), ghl_lower(42), ghl_ms('2021-07-02T05:18:26.704Z'), ghl_ms('soon')",
                1,
            )
            .unwrap();
        assert_eq!(
            t.rows[0],
            vec![
                serde_json::json!("zoë łukasz"),
                serde_json::json!("42"),
                serde_json::json!(1_625_203_106_704_i64),
                serde_json::Value::Null
            ]
        );
    }

    #[test]
    fn a_common_word_ranks_only_the_newest_matches_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let n = RANK_WINDOW + 50;
        store
            .write(|tx| {
                tx.execute("INSERT INTO locations (id) VALUES ('L')", [])?;
                let mut add = tx.prepare(
                    "INSERT INTO contacts (location_id, id, first_name, name, raw, first_seen_at,
                       changed_at, fetched_at) VALUES ('L', ?1, 'Ann', ?2, '{}', 'x', 'x', 'x')",
                )?;
                for i in 0..n {
                    // The oldest contact is the best match for "ann" (its name is only that
                    // word) but falls outside the window; contact 100 is the best inside it.
                    let name = match i {
                        0 | 100 => "Ann".to_string(),
                        _ => format!("Ann Lee Marie {i}"),
                    };
                    add.execute(params![format!("c{i}"), name])?;
                }
                Ok(())
            })
            .unwrap();
        while store.index_text(1_000).unwrap() > 0 {}
        let found = store.search_text(None, "ann", 3).unwrap();
        assert_eq!((found.ranked, found.complete), (RANK_WINDOW, false));
        assert_eq!(found.hits.len(), 3);
        assert!(found.hits[0].score > found.hits[1].score);
        let first = store.contact(None, "c100").unwrap().unwrap();
        assert_eq!(found.hits[0].raw, first.raw);

        // A rarer word ranks every match.
        let found = store.search_text(None, "ann 1234", 10).unwrap();
        assert!(found.complete);
        assert_eq!(found.ranked, 1);
        // One letter is a whole word, not a prefix of every name.
        assert_eq!(store.search_text(None, "a", 10).unwrap().ranked, 0);
    }
}

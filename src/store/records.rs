//! Records kept as raw JSON with generated typed columns: each contact's tasks, notes and
//! appointments, the location's businesses and their contact links; plus what is due for a
//! refresh and the JSON state of the streams that hold them. The `*_ms` columns of tasks and
//! appointments are plain ones this writer sets (schema v9), so that SQLite older than 3.42
//! reads them.
//!
//! Every write commits with the run's progress (and, where a stream has one, its state) in one
//! transaction, like contact pages do.

use super::{RunKey, Store, StoreError, write_progress};
use crate::model::{Record, RunProgress, Stream, SubKind, iso_from_ms, ms_from_time_text, now_ms};
use rusqlite::{OptionalExtension, Statement, Transaction, params, params_from_iter};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A table of raw-JSON records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Sub(SubKind),
    Businesses,
    CustomFields,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Sub(SubKind::Tasks) => "tasks",
            Table::Sub(SubKind::Notes) => "notes",
            Table::Sub(SubKind::Appointments) => "appointments",
            Table::Businesses => "businesses",
            Table::CustomFields => "custom_fields",
        }
    }

    fn has_contact(self) -> bool {
        matches!(self, Table::Sub(_))
    }

    /// The `*_ms` columns of the table and the JSON keys they are computed from (in Rust at
    /// write time, so that SQLite older than 3.38 reads them: see `model::ms_from_time_text`).
    fn ms_columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::Sub(SubKind::Tasks) => &[("due_date_ms", "dueDate")],
            Table::Sub(SubKind::Appointments) => {
                &[("start_ms", "startTime"), ("end_ms", "endTime")]
            }
            _ => &[],
        }
    }
}

/// The values of `table`'s `*_ms` columns for the record `raw` (NULL where absent or not a
/// date-time text; all NULL when `raw` is not a JSON object).
fn ms_values(table: Table, raw: &str) -> Vec<Option<i64>> {
    let cols = table.ms_columns();
    if cols.is_empty() {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    cols.iter()
        .map(|(_, key)| value.get(key)?.as_str().and_then(ms_from_time_text))
        .collect()
}

/// One contact's list of one kind as upstream returned it.
#[derive(Clone, Debug)]
pub struct ContactList {
    pub contact_id: String,
    pub kind: SubKind,
    /// The contact's `dateUpdated` (ms) when it was picked: the fetch covers changes up to it.
    pub seen_updated_ms: Option<i64>,
    /// `None` when upstream no longer knows the contact: the fetch is recorded (so the queue
    /// moves on) but nothing is tombstoned; deletes are inferred only by reconciliation.
    pub items: Option<Vec<Record>>,
    /// The items are in the contact's own list order (its `GET /contacts/:id/...` answer);
    /// false for tasks from the bulk search, which keep the places already known and put a new
    /// task after them.
    pub ordered: bool,
}

/// A (contact, kind) whose list should be fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub contact_id: String,
    pub kind: SubKind,
    pub updated_ms: Option<i64>,
}

/// What writing records changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub tombstoned: u64,
}

impl RecordCounts {
    fn add_to(self, p: &mut RunProgress) {
        p.inserted += self.inserted;
        p.updated += self.updated;
        p.unchanged += self.unchanged;
        p.tombstoned += self.tombstoned;
    }
}

/// Prepared statements that upsert records of one table.
struct RecordWriter<'t> {
    table: Table,
    lookup: Statement<'t>,
    insert: Statement<'t>,
    update: Statement<'t>,
    touch: Statement<'t>,
    now: String,
    counts: RecordCounts,
}

impl<'t> RecordWriter<'t> {
    fn new(tx: &'t Transaction<'_>, table: Table, now: &str) -> rusqlite::Result<Self> {
        let t = table.name();
        let (mut cols, mut vals, mut set) = if table.has_contact() {
            (
                ", contact_id".to_string(),
                ", ?5".to_string(),
                ", contact_id = ?4".to_string(),
            )
        } else {
            (String::new(), String::new(), String::new())
        };
        // Both statements bind the `*_ms` values after their first five parameters.
        for (n, (col, _)) in table.ms_columns().iter().enumerate() {
            cols.push_str(&format!(", {col}"));
            vals.push_str(&format!(", ?{}", n + 6));
            set.push_str(&format!(", {col} = ?{}", n + 6));
        }
        let lookup_cols = if table.has_contact() {
            ", contact_id"
        } else {
            ""
        };
        Ok(RecordWriter {
            table,
            lookup: tx.prepare(&format!(
                "SELECT raw, deleted_at IS NOT NULL{lookup_cols} FROM {t} WHERE location_id = ?1 AND id = ?2"
            ))?,
            insert: tx.prepare(&format!(
                "INSERT INTO {t} (location_id, id, raw, first_seen_at, changed_at, fetched_at{cols})
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4{vals})"
            ))?,
            update: tx.prepare(&format!(
                "UPDATE {t} SET raw = ?3, changed_at = ?5, fetched_at = ?5, deleted_at = NULL{set}
                 WHERE location_id = ?1 AND id = ?2"
            ))?,
            touch: tx.prepare(&format!(
                "UPDATE {t} SET fetched_at = ?3 WHERE location_id = ?1 AND id = ?2"
            ))?,
            now: now.to_string(),
            counts: RecordCounts::default(),
        })
    }

    /// Inserts, updates (changed, revived or moved to another contact) or just marks as fetched.
    fn upsert(
        &mut self,
        location: &str,
        rec: &Record,
        contact: Option<&str>,
    ) -> rusqlite::Result<()> {
        let has_contact = self.table.has_contact();
        let existing: Option<(String, bool, Option<String>)> = self
            .lookup
            .query_row(params![location, rec.id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    if has_contact { r.get(2)? } else { None },
                ))
            })
            .optional()?;
        let now = self.now.as_str();
        match existing {
            None => {
                if has_contact {
                    // Parameters past the fifth: the `*_ms` values.
                    let ms = ms_values(self.table, &rec.raw);
                    let ms = ms.iter().map(|v| v as &dyn rusqlite::ToSql);
                    let head = params![location, rec.id, rec.raw, now, contact];
                    self.insert
                        .execute(params_from_iter(head.iter().copied().chain(ms)))?;
                } else {
                    self.insert
                        .execute(params![location, rec.id, rec.raw, now])?;
                }
                self.counts.inserted += 1;
            }
            Some((raw, deleted, old_contact))
                if raw != rec.raw
                    || deleted
                    || (has_contact && old_contact.as_deref() != contact) =>
            {
                if has_contact {
                    let ms = ms_values(self.table, &rec.raw);
                    let ms = ms.iter().map(|v| v as &dyn rusqlite::ToSql);
                    let head = params![location, rec.id, rec.raw, contact, now];
                    self.update
                        .execute(params_from_iter(head.iter().copied().chain(ms)))?;
                } else {
                    self.update.execute(params![
                        location,
                        rec.id,
                        rec.raw,
                        rusqlite::types::Null,
                        now
                    ])?;
                }
                self.counts.updated += 1;
            }
            Some(_) => {
                self.touch.execute(params![location, rec.id, now])?;
                self.counts.unchanged += 1;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Live (contact, kind) pairs whose list was never fetched or whose contact's `dateUpdated`
    /// moved since: most recently updated contacts first. The plan walks `contacts_by_updated`
    /// backwards and stops at the limit (no sort).
    pub fn due_fetches(
        &self,
        location: &str,
        kinds: &[SubKind],
        limit: u64,
    ) -> Result<Vec<Due>, StoreError> {
        let kinds = kinds_json(kinds);
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT c.id, k.value, c.date_updated_ms
                 FROM contacts c CROSS JOIN json_each(?2) k
                 LEFT JOIN contact_fetches f
                   ON f.location_id = c.location_id AND f.contact_id = c.id AND f.kind = k.value
                 WHERE c.location_id = ?1 AND c.deleted_at IS NULL
                   AND (f.contact_id IS NULL
                        OR COALESCE(f.seen_updated_ms, -1) < COALESCE(c.date_updated_ms, -1))
                 ORDER BY c.date_updated_ms DESC, c.id DESC
                 LIMIT ?3",
            )?;
            st.query_map(params![location, kinds, limit as i64], due_row)?
                .collect()
        })
    }

    /// Live (contact, kind) pairs last fetched before `fetched_before_ms`: least recently
    /// fetched first (the rolling refresh).
    pub fn stale_fetches(
        &self,
        location: &str,
        kinds: &[SubKind],
        fetched_before_ms: i64,
        limit: u64,
    ) -> Result<Vec<Due>, StoreError> {
        let kinds = kinds_json(kinds);
        let before = iso_from_ms(fetched_before_ms);
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT f.contact_id, f.kind, c.date_updated_ms
                 FROM contact_fetches f
                 JOIN contacts c ON c.location_id = f.location_id AND c.id = f.contact_id
                 WHERE f.location_id = ?1 AND f.kind IN (SELECT value FROM json_each(?2))
                   AND f.fetched_at < ?3 AND c.deleted_at IS NULL
                 ORDER BY f.fetched_at, f.contact_id, f.kind
                 LIMIT ?4",
            )?;
            st.query_map(params![location, kinds, before, limit as i64], due_row)?
                .collect()
        })
    }

    /// Replaces each contact's list exactly (new and changed items written, items no longer
    /// listed tombstoned) and records the fetches, with the run's progress, in one transaction.
    pub fn commit_lists(
        &self,
        run: RunKey<'_>,
        lists: &[ContactList],
        progress: &mut RunProgress,
    ) -> Result<RecordCounts, StoreError> {
        let now = iso_from_ms(now_ms());
        let (counts, p) = self.write(|tx| {
            let mut total = RecordCounts::default();
            let mut live = tx.prepare(
                "SELECT 1 FROM contacts WHERE location_id = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?;
            for kind in SubKind::ALL {
                let mine: Vec<&ContactList> = lists.iter().filter(|l| l.kind == kind).collect();
                if mine.is_empty() {
                    continue;
                }
                let table = Table::Sub(kind);
                let mut w = RecordWriter::new(tx, table, &now)?;
                let mut tomb = tx.prepare(&format!(
                    "UPDATE {} SET deleted_at = ?4
                     WHERE location_id = ?1 AND contact_id = ?2 AND deleted_at IS NULL
                       AND id NOT IN (SELECT value FROM json_each(?3))",
                    table.name()
                ))?;
                for l in mine {
                    // A contact tombstoned since its list was picked (a reconciling sweep ran
                    // meanwhile) must not get live items back.
                    if !live.exists(params![run.location, l.contact_id])? {
                        continue;
                    }
                    if let Some(items) = &l.items {
                        let placed = match kind {
                            SubKind::Tasks => Some(TaskPlaces::before(tx, run.location, l)?),
                            _ => None,
                        };
                        for rec in items {
                            let contact = rec.contact_id.as_deref().unwrap_or(&l.contact_id);
                            w.upsert(run.location, rec, Some(contact))?;
                        }
                        if let Some(placed) = placed {
                            placed.write(tx, run.location, l, items)?;
                        }
                        let ids: Vec<&str> = items.iter().map(|r| r.id.as_str()).collect();
                        let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
                        w.counts.tombstoned +=
                            tomb.execute(params![run.location, l.contact_id, ids, now])? as u64;
                    }
                    record_fetch(
                        tx,
                        run.location,
                        &l.contact_id,
                        kind,
                        &now,
                        l.seen_updated_ms,
                    )?;
                }
                let c = w.counts;
                total.inserted += c.inserted;
                total.updated += c.updated;
                total.unchanged += c.unchanged;
                total.tombstoned += c.tombstoned;
            }
            let mut p = progress.clone();
            p.pages += lists.len() as u64;
            p.received += lists
                .iter()
                .map(|l| l.items.as_ref().map_or(0, Vec::len) as u64)
                .sum::<u64>();
            total.add_to(&mut p);
            write_progress(tx, run.run_id, &p)?;
            Ok((total, p))
        })?;
        *progress = p;
        Ok(counts)
    }

    /// Of `task_ids`, those whose place in their contact's list is known: live, with a
    /// position.
    pub fn placed_tasks(
        &self,
        location: &str,
        task_ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids = serde_json::to_string(task_ids).unwrap_or_else(|_| "[]".into());
        self.read(|c| {
            c.prepare_cached(
                "SELECT t.id FROM tasks t JOIN json_each(?2) j ON t.id = j.value
                 WHERE t.location_id = ?1 AND t.deleted_at IS NULL AND t.position IS NOT NULL",
            )?
            .query_map(params![location, ids], |r| r.get(0))?
            .collect()
        })
    }

    /// Live tasks per live contact in the mirror (`None` before any task is mirrored).
    pub fn tasks_per_contact(&self, location: &str) -> Result<Option<f64>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM tasks WHERE location_id = ?1 AND deleted_at IS NULL),
                        (SELECT COUNT(*) FROM contact_fetches WHERE location_id = ?1 AND kind = 'tasks')",
                [location],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
        })
        .map(|(tasks, fetched)| (fetched > 0).then(|| tasks as f64 / fetched as f64))
    }

    /// Writes the location's businesses. With `complete_since` (the list was read to its end,
    /// starting at that time), businesses it did not return are tombstoned and their links
    /// dropped.
    pub fn commit_businesses(
        &self,
        run: RunKey<'_>,
        businesses: &[Record],
        complete_since_ms: Option<i64>,
        progress: &mut RunProgress,
    ) -> Result<RecordCounts, StoreError> {
        let now = iso_from_ms(now_ms());
        let (counts, p) = self.write(|tx| {
            let mut w = RecordWriter::new(tx, Table::Businesses, &now)?;
            for rec in businesses {
                w.upsert(run.location, rec, None)?;
            }
            let mut counts = w.counts;
            drop(w);
            if let Some(since) = complete_since_ms {
                let since = iso_from_ms(since);
                tx.execute(
                    "DELETE FROM business_contacts WHERE location_id = ?1 AND business_id IN
                       (SELECT id FROM businesses WHERE location_id = ?1 AND deleted_at IS NULL
                          AND fetched_at < ?2)",
                    params![run.location, since],
                )?;
                counts.tombstoned = tx.execute(
                    "UPDATE businesses SET deleted_at = ?3
                     WHERE location_id = ?1 AND deleted_at IS NULL AND fetched_at < ?2",
                    params![run.location, since, now],
                )? as u64;
            }
            let mut p = progress.clone();
            p.pages += 1;
            p.received += businesses.len() as u64;
            counts.add_to(&mut p);
            write_progress(tx, run.run_id, &p)?;
            Ok((counts, p))
        })?;
        *progress = p;
        Ok(counts)
    }

    /// Replaces the location's custom field definitions with a complete list: definitions it
    /// does not have are tombstoned.
    pub fn commit_custom_fields(
        &self,
        run: RunKey<'_>,
        fields: &[Record],
        progress: &mut RunProgress,
    ) -> Result<RecordCounts, StoreError> {
        let now = iso_from_ms(now_ms());
        let (counts, p) = self.write(|tx| {
            let mut w = RecordWriter::new(tx, Table::CustomFields, &now)?;
            for rec in fields {
                w.upsert(run.location, rec, None)?;
            }
            let mut counts = w.counts;
            drop(w);
            counts.tombstoned = tx.execute(
                "UPDATE custom_fields SET deleted_at = ?2
                 WHERE location_id = ?1 AND deleted_at IS NULL AND fetched_at < ?2",
                params![run.location, now],
            )? as u64;
            let mut p = progress.clone();
            p.pages += 1;
            p.received += fields.len() as u64;
            counts.add_to(&mut p);
            write_progress(tx, run.run_id, &p)?;
            Ok((counts, p))
        })?;
        *progress = p;
        Ok(counts)
    }

    /// Live businesses of a location, those whose links were read longest ago (or never) first.
    pub fn businesses_by_link_age(&self, location: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id FROM businesses WHERE location_id = ?1 AND deleted_at IS NULL
                 ORDER BY links_fetched_at IS NOT NULL, links_fetched_at, id",
            )?;
            st.query_map([location], |r| r.get(0))?.collect()
        })
    }

    /// Replaces a business's contact links with `contacts` (read completely); `None` only
    /// records that the business was visited (its links could not be read), so it goes to the
    /// back of the queue.
    pub fn replace_business_links(
        &self,
        run: RunKey<'_>,
        business_id: &str,
        contacts: Option<&[String]>,
        progress: &mut RunProgress,
    ) -> Result<RecordCounts, StoreError> {
        let now = iso_from_ms(now_ms());
        let (counts, p) = self.write(|tx| {
            let mut counts = RecordCounts::default();
            if let Some(contacts) = contacts {
                let ids = serde_json::to_string(contacts).unwrap_or_else(|_| "[]".into());
                counts.tombstoned = tx.execute(
                    "DELETE FROM business_contacts WHERE location_id = ?1 AND business_id = ?2
                       AND contact_id NOT IN (SELECT value FROM json_each(?3))",
                    params![run.location, business_id, ids],
                )? as u64;
                counts.inserted = tx.execute(
                    "INSERT INTO business_contacts (location_id, business_id, contact_id, fetched_at)
                     SELECT ?1, ?2, value, ?4 FROM json_each(?3) WHERE true
                     ON CONFLICT DO NOTHING",
                    params![run.location, business_id, ids, now],
                )? as u64;
                counts.unchanged = (contacts.len() as u64).saturating_sub(counts.inserted);
                tx.execute(
                    "UPDATE business_contacts SET fetched_at = ?3
                     WHERE location_id = ?1 AND business_id = ?2",
                    params![run.location, business_id, now],
                )?;
            }
            tx.execute(
                "UPDATE businesses SET links_fetched_at = ?3 WHERE location_id = ?1 AND id = ?2",
                params![run.location, business_id, now],
            )?;
            let mut p = progress.clone();
            p.pages += 1;
            p.received += contacts.map_or(0, <[String]>::len) as u64;
            counts.add_to(&mut p);
            write_progress(tx, run.run_id, &p)?;
            Ok((counts, p))
        })?;
        *progress = p;
        Ok(counts)
    }

    /// The JSON state of a stream that keeps one (`None` before its first run).
    pub fn load_json_state<S: DeserializeOwned>(
        &self,
        location: &str,
        stream: Stream,
    ) -> Result<Option<S>, StoreError> {
        let text: Option<Option<String>> = self.read(|c| {
            c.query_row(
                "SELECT cursor FROM sync_state WHERE location_id = ?1 AND stream = ?2",
                params![location, stream.as_str()],
                |r| r.get(0),
            )
            .optional()
        })?;
        match text.flatten() {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| StoreError::BadState {
                    path: self.path.clone(),
                    location: location.to_string(),
                    stream: stream.as_str().to_string(),
                    detail: e.to_string(),
                }),
        }
    }

    /// Saves the JSON state of a stream on its own.
    pub fn save_json_state<S: Serialize>(
        &self,
        location: &str,
        stream: Stream,
        state: &S,
    ) -> Result<(), StoreError> {
        let state = to_json(state)?;
        self.write(|tx| write_json_state(tx, location, stream, &state))
    }
}

/// What a location holds besides contacts, and how fresh its sub-resources are.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    pub tasks: u64,
    pub notes: u64,
    pub appointments: u64,
    pub businesses: u64,
    pub business_links: u64,
    /// Per kind: (kind, live contacts whose list is due: never fetched or contact changed since,
    /// oldest fetch time).
    pub freshness: Vec<(SubKind, u64, Option<String>)>,
}

impl Store {
    pub fn holdings(&self, location: &str) -> Result<Holdings, StoreError> {
        self.read(|c| {
            let count = |sql: &str| -> rusqlite::Result<u64> {
                c.query_row(sql, [location], |r| r.get::<_, i64>(0)).map(|n| n as u64)
            };
            let mut h = Holdings {
                tasks: count("SELECT COUNT(*) FROM tasks WHERE location_id = ?1 AND deleted_at IS NULL")?,
                notes: count("SELECT COUNT(*) FROM notes WHERE location_id = ?1 AND deleted_at IS NULL")?,
                appointments: count(
                    "SELECT COUNT(*) FROM appointments WHERE location_id = ?1 AND deleted_at IS NULL",
                )?,
                businesses: count(
                    "SELECT COUNT(*) FROM businesses WHERE location_id = ?1 AND deleted_at IS NULL",
                )?,
                business_links: count("SELECT COUNT(*) FROM business_contacts WHERE location_id = ?1")?,
                freshness: Vec::new(),
            };
            let mut st = c.prepare(
                "SELECT SUM(tasks_due), SUM(notes_due), SUM(appointments_due),
                   MIN(tasks_fetched_at), MIN(notes_fetched_at), MIN(appointments_fetched_at)
                 FROM contact_freshness WHERE location_id = ?1",
            )?;
            let row = st.query_row([location], |r| {
                Ok([
                    (SubKind::Tasks, r.get::<_, Option<i64>>(0)?, r.get(3)?),
                    (SubKind::Notes, r.get(1)?, r.get(4)?),
                    (SubKind::Appointments, r.get(2)?, r.get(5)?),
                ])
            })?;
            h.freshness = row
                .into_iter()
                .map(|(k, due, oldest)| (k, due.unwrap_or(0) as u64, oldest))
                .collect();
            Ok(h)
        })
    }
}

/// A contact tombstoned at `at` takes its tasks, notes and appointments with it, loses its
/// business links, and forgets its fetches (should it come back, its lists are due at once).
/// Runs inside the transaction that tombstones the contacts.
pub(super) fn cascade_tombstones(
    tx: &Transaction<'_>,
    location: &str,
    at: &str,
) -> rusqlite::Result<()> {
    const GONE: &str = "SELECT id FROM contacts WHERE location_id = ?1 AND deleted_at = ?2";
    for table in ["tasks", "notes", "appointments"] {
        tx.execute(
            &format!(
                "UPDATE {table} SET deleted_at = ?2
                 WHERE location_id = ?1 AND deleted_at IS NULL AND contact_id IN ({GONE})"
            ),
            params![location, at],
        )?;
    }
    for table in ["business_contacts", "contact_fetches"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE location_id = ?1 AND contact_id IN ({GONE})"),
            params![location, at],
        )?;
    }
    Ok(())
}

fn due_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Due> {
    let kind: String = r.get(1)?;
    Ok(Due {
        contact_id: r.get(0)?,
        kind: SubKind::parse(&kind).unwrap_or(SubKind::Tasks),
        updated_ms: r.get(2)?,
    })
}

fn kinds_json(kinds: &[SubKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

fn record_fetch(
    tx: &Transaction<'_>,
    location: &str,
    contact: &str,
    kind: SubKind,
    now: &str,
    seen_updated_ms: Option<i64>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO contact_fetches (location_id, contact_id, kind, fetched_at, seen_updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (location_id, contact_id, kind) DO UPDATE SET
           fetched_at = excluded.fetched_at, seen_updated_ms = excluded.seen_updated_ms",
    )?
    .execute(params![
        location,
        contact,
        kind.as_str(),
        now,
        seen_updated_ms
    ])
    .map(|_| ())
}

fn to_json<S: Serialize>(state: &S) -> Result<String, StoreError> {
    serde_json::to_string(state).map_err(|e| StoreError::Encode(e.to_string()))
}

fn write_json_state(
    tx: &Transaction<'_>,
    location: &str,
    stream: Stream,
    state: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO sync_state (location_id, stream, cursor, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (location_id, stream) DO UPDATE SET cursor = excluded.cursor,
           updated_at = excluded.updated_at",
        params![location, stream.as_str(), state, iso_from_ms(now_ms())],
    )
    .map(|_| ())
}

/// The places of a contact's tasks known before a list of them is written.
struct TaskPlaces {
    /// Live tasks with a position.
    known: std::collections::HashSet<String>,
    /// The position after the last known one.
    next: i64,
}

impl TaskPlaces {
    fn before(tx: &Transaction<'_>, location: &str, l: &ContactList) -> rusqlite::Result<Self> {
        let mut st = tx.prepare_cached(
            "SELECT id, position FROM tasks
             WHERE location_id = ?1 AND contact_id = ?2 AND deleted_at IS NULL
               AND position IS NOT NULL",
        )?;
        let mut known = std::collections::HashSet::new();
        let mut next = 0;
        let rows = st.query_map(params![location, l.contact_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (id, pos) = row?;
            next = next.max(pos + 1);
            known.insert(id);
        }
        Ok(TaskPlaces { known, next })
    }

    /// Positions the list's tasks: by their place in an ordered list; else known tasks keep
    /// theirs and the others follow them, in the order given.
    fn write(
        mut self,
        tx: &Transaction<'_>,
        location: &str,
        l: &ContactList,
        items: &[Record],
    ) -> rusqlite::Result<()> {
        let mut set =
            tx.prepare_cached("UPDATE tasks SET position = ?3 WHERE location_id = ?1 AND id = ?2")?;
        for (i, rec) in items.iter().enumerate() {
            if l.ordered {
                set.execute(params![location, rec.id, i as i64])?;
            } else if !self.known.contains(&rec.id) {
                set.execute(params![location, rec.id, self.next])?;
                self.next += 1;
            }
        }
        Ok(())
    }
}

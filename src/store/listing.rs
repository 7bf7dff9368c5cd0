//! Listings for the command line: the tasks, notes and appointments of live contacts, filtered,
//! in a stable order, and handed to a visitor one row at a time so that an export of any size
//! streams in bounded memory.
//!
//! A row is listed only when neither it nor its contact is tombstoned. Orders:
//! - tasks by due date, soonest first, then those without one; appointments likewise by start
//!   time. For one location both walk their partial indexes (`tasks_by_due`,
//!   `appointments_by_start`) and SQLite sorts nothing; across locations it sorts, which a limit
//!   keeps small.
//! - notes newest first ([`NoteOrder::Newest`]: no index holds that order, so SQLite sorts; use
//!   a limit) or grouped by contact ([`NoteOrder::ByContact`]: `notes_by_contact` supplies the
//!   groups and only each contact's notes are sorted, so it streams).

use super::{Store, StoreError};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, params_from_iter};
use std::ops::ControlFlow;

/// Which tasks to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this location (default: every location).
    pub location: Option<String>,
    /// Only this contact's tasks.
    pub contact: Option<String>,
    /// Only tasks not completed (a task without a `completed` flag counts as open).
    pub open: bool,
    /// Only tasks due strictly before this time (ms since the epoch); undated tasks drop out.
    pub due_before_ms: Option<i64>,
    /// At most this many rows (default: all).
    pub limit: Option<usize>,
}

/// Which notes to list, in which order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoteFilter {
    pub location: Option<String>,
    pub contact: Option<String>,
    pub order: NoteOrder,
    pub limit: Option<usize>,
}

/// How notes are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoteOrder {
    /// Newest first (by `dateAdded`); SQLite sorts every matching note, so use a limit.
    #[default]
    Newest,
    /// By location and contact, each contact's newest first; streams from an index.
    ByContact,
}

/// Which appointments to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppointmentFilter {
    pub location: Option<String>,
    pub contact: Option<String>,
    /// Only appointments starting at or after this time (ms since the epoch).
    pub starts_from_ms: Option<i64>,
    pub limit: Option<usize>,
}

/// A task with its contact's name. Text fields are as HighLevel sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRow {
    pub location_id: String,
    pub id: String,
    pub title: Option<String>,
    pub body: Option<String>,
    pub due_date: Option<String>,
    pub completed: Option<bool>,
    pub assigned_to: Option<String>,
    pub contact_id: String,
    pub contact_name: Option<String>,
}

/// A note with its contact's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteRow {
    pub location_id: String,
    pub id: String,
    pub date_added: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub user_id: Option<String>,
    pub pinned: Option<bool>,
    pub contact_id: String,
    pub contact_name: Option<String>,
}

/// An appointment with its contact's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppointmentRow {
    pub location_id: String,
    pub id: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub appointment_status: Option<String>,
    pub calendar_id: Option<String>,
    pub assigned_user_id: Option<String>,
    pub address: Option<String>,
    pub contact_id: String,
    pub contact_name: Option<String>,
}

/// The contact's name, or its first and last names joined.
const CONTACT_NAME: &str = "COALESCE(c.name, NULLIF(TRIM(COALESCE(c.first_name, '') || ' ' || \
                            COALESCE(c.last_name, '')), ''))";

impl Store {
    /// Calls `visit` with each matching task, soonest due first, then the undated ones, until
    /// it breaks or the rows (or the limit) run out.
    pub fn each_task(
        &self,
        f: &TaskFilter,
        visit: &mut dyn FnMut(TaskRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let (q, order) = task_query(f);
        self.read(|c| {
            dated_then_undated(
                c,
                &q,
                &order,
                f.limit,
                &mut |r| {
                    Ok(TaskRow {
                        location_id: r.get(0)?,
                        id: r.get(1)?,
                        title: text(r, 2)?,
                        body: text(r, 3)?,
                        due_date: text(r, 4)?,
                        completed: flag(r, 5)?,
                        assigned_to: text(r, 6)?,
                        contact_id: r.get(7)?,
                        contact_name: text(r, 8)?,
                    })
                },
                visit,
            )
        })
    }

    /// Calls `visit` with each matching note in `f.order`.
    pub fn each_note(
        &self,
        f: &NoteFilter,
        visit: &mut dyn FnMut(NoteRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let q = note_query(f);
        self.read(|c| {
            q.each(
                c,
                &mut |r| {
                    Ok(NoteRow {
                        location_id: r.get(0)?,
                        id: r.get(1)?,
                        date_added: text(r, 2)?,
                        title: text(r, 3)?,
                        body: text(r, 4)?,
                        user_id: text(r, 5)?,
                        pinned: flag(r, 6)?,
                        contact_id: r.get(7)?,
                        contact_name: text(r, 8)?,
                    })
                },
                visit,
            )
            .map(|_| ())
        })
    }

    /// Calls `visit` with each matching appointment, soonest start first, then those without a
    /// readable start time.
    pub fn each_appointment(
        &self,
        f: &AppointmentFilter,
        visit: &mut dyn FnMut(AppointmentRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let (q, order) = appointment_query(f);
        self.read(|c| {
            dated_then_undated(
                c,
                &q,
                &order,
                f.limit,
                &mut |r| {
                    Ok(AppointmentRow {
                        location_id: r.get(0)?,
                        id: r.get(1)?,
                        start_time: text(r, 2)?,
                        end_time: text(r, 3)?,
                        title: text(r, 4)?,
                        status: text(r, 5)?,
                        appointment_status: text(r, 6)?,
                        calendar_id: text(r, 7)?,
                        assigned_user_id: text(r, 8)?,
                        address: text(r, 9)?,
                        contact_id: r.get(10)?,
                        contact_name: text(r, 11)?,
                    })
                },
                visit,
            )
        })
    }
}

/// The tasks query without its order, and the order.
fn task_query(f: &TaskFilter) -> (Query, DateOrder) {
    let mut q = Query::new(&format!(
        "SELECT t.location_id, t.id, t.title, t.body, t.due_date, t.completed, t.assigned_to,
                t.contact_id, {CONTACT_NAME}
         FROM tasks t JOIN contacts c ON c.location_id = t.location_id AND c.id = t.contact_id
         WHERE t.deleted_at IS NULL AND c.deleted_at IS NULL"
    ));
    q.scope("t", f.location.as_deref(), f.contact.as_deref());
    if f.open {
        q.push(" AND COALESCE(t.completed, 0) = 0");
    }
    if let Some(ms) = f.due_before_ms {
        q.push(" AND t.due_date_ms < ");
        q.bind(Value::Integer(ms));
    }
    let order = DateOrder {
        alias: "t",
        date: "due_date_ms",
        undated: f.due_before_ms.is_none(),
    };
    (q, order)
}

/// The notes query, ordered, with its limit.
fn note_query(f: &NoteFilter) -> Query {
    let mut q = Query::new(&format!(
        "SELECT n.location_id, n.id, n.date_added, n.title, n.body, n.user_id, n.pinned,
                n.contact_id, {CONTACT_NAME}
         FROM notes n JOIN contacts c ON c.location_id = n.location_id AND c.id = n.contact_id
         WHERE n.deleted_at IS NULL AND c.deleted_at IS NULL"
    ));
    q.scope("n", f.location.as_deref(), f.contact.as_deref());
    q.push(match f.order {
        NoteOrder::Newest => " ORDER BY unixepoch(n.date_added, 'subsec') DESC, n.pk DESC",
        NoteOrder::ByContact => {
            " ORDER BY n.location_id, n.contact_id, unixepoch(n.date_added, 'subsec') DESC, n.pk DESC"
        }
    });
    q.limit(f.limit);
    q
}

/// The appointments query without its order, and the order.
fn appointment_query(f: &AppointmentFilter) -> (Query, DateOrder) {
    let mut q = Query::new(&format!(
        "SELECT a.location_id, a.id, a.start_time, a.end_time, a.title, a.status,
                a.appointment_status, a.calendar_id, a.assigned_user_id, a.address,
                a.contact_id, {CONTACT_NAME}
         FROM appointments a
         JOIN contacts c ON c.location_id = a.location_id AND c.id = a.contact_id
         WHERE a.deleted_at IS NULL AND c.deleted_at IS NULL"
    ));
    q.scope("a", f.location.as_deref(), f.contact.as_deref());
    if let Some(ms) = f.starts_from_ms {
        q.push(" AND a.start_ms >= ");
        q.bind(Value::Integer(ms));
    }
    let order = DateOrder {
        alias: "a",
        date: "start_ms",
        undated: f.starts_from_ms.is_none(),
    };
    (q, order)
}

/// How [`dated_then_undated`] orders: by `date` of the table aliased `alias`.
struct DateOrder {
    alias: &'static str,
    date: &'static str,
    /// Whether rows with no date follow the dated ones (false: they are left out).
    undated: bool,
}

/// Runs `q` ordered by the date (ascending, then `pk`), then, when asked, again for the rows
/// with no date. Two statements instead of one `ORDER BY date IS NULL, ...` so that the date
/// index supplies the order.
fn dated_then_undated<T>(
    c: &Connection,
    q: &Query,
    order: &DateOrder,
    limit: Option<usize>,
    row: &mut dyn FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    visit: &mut dyn FnMut(T) -> ControlFlow<()>,
) -> rusqlite::Result<()> {
    let (seen, go_on) = order.dated(q, limit).each(c, row, visit)?;
    if !order.undated || !go_on {
        return Ok(());
    }
    let left = match limit {
        Some(n) if seen >= n => return Ok(()),
        Some(n) => Some(n - seen),
        None => None,
    };
    order.undated(q, left).each(c, row, visit).map(|_| ())
}

impl DateOrder {
    /// `q` for the rows with a date, in date order.
    fn dated(&self, q: &Query, limit: Option<usize>) -> Query {
        let Self { alias, date, .. } = self;
        let mut q = q.clone();
        q.push(&format!(
            " AND {alias}.{date} IS NOT NULL ORDER BY {alias}.{date}, {alias}.pk"
        ));
        q.limit(limit);
        q
    }

    /// `q` for the rows without a date, in the order they were stored.
    fn undated(&self, q: &Query, limit: Option<usize>) -> Query {
        let Self { alias, date, .. } = self;
        let mut q = q.clone();
        q.push(&format!(" AND {alias}.{date} IS NULL ORDER BY {alias}.pk"));
        q.limit(limit);
        q
    }
}

/// SQL text with its positional parameters.
#[derive(Clone)]
struct Query {
    text: String,
    params: Vec<Value>,
}

impl Query {
    fn new(select: &str) -> Query {
        Query {
            text: select.to_string(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, v: Value) {
        self.params.push(v);
        self.text.push('?');
        self.text.push_str(&self.params.len().to_string());
    }

    /// `AND <alias>.location_id = ? AND <alias>.contact_id = ?` for what is given.
    fn scope(&mut self, alias: &str, location: Option<&str>, contact: Option<&str>) {
        if let Some(l) = location {
            self.push(&format!(" AND {alias}.location_id = "));
            self.bind(Value::Text(l.to_string()));
        }
        if let Some(id) = contact {
            self.push(&format!(" AND {alias}.contact_id = "));
            self.bind(Value::Text(id.to_string()));
        }
    }

    fn limit(&mut self, limit: Option<usize>) {
        if let Some(n) = limit {
            self.push(" LIMIT ");
            self.bind(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }

    /// Visits every row; returns how many were visited and whether the visitor wants more.
    fn each<T>(
        &self,
        c: &Connection,
        row: &mut dyn FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        visit: &mut dyn FnMut(T) -> ControlFlow<()>,
    ) -> rusqlite::Result<(usize, bool)> {
        let mut st = c.prepare_cached(&self.text)?;
        let mut rows = st.query(params_from_iter(&self.params))?;
        let mut seen = 0;
        while let Some(r) = rows.next()? {
            seen += 1;
            if visit(row(r)?).is_break() {
                return Ok((seen, false));
            }
        }
        Ok((seen, true))
    }
}

/// A column as text whatever SQLite holds (a number as its digits, a blob as nothing): a field
/// of an unexpected type shows up instead of failing the listing.
fn text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    })
}

/// A JSON boolean column (`json_extract` gives 1 / 0); anything else is unknown.
fn flag(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<bool>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Integer(n) => Some(n != 0),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one location, two contacts (one tombstoned) and a few sub-resources.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let c = rusqlite::Connection::open(store.path()).unwrap();
        c.execute_batch(
            r#"
            INSERT INTO locations (id) VALUES ('L1'), ('L2');
            INSERT INTO contacts (location_id, id, name, raw, first_seen_at, changed_at, fetched_at, deleted_at) VALUES
              ('L1', 'live', 'Ann Live', '{}', 'x', 'x', 'x', NULL),
              ('L1', 'gone', 'Gus Gone', '{}', 'x', 'x', 'x', '2024-01-01T00:00:00Z'),
              ('L2', 'other', NULL, '{}', 'x', 'x', 'x', NULL);
            UPDATE contacts SET first_name = 'Olga', last_name = 'Other' WHERE id = 'other';
            INSERT INTO tasks (location_id, id, contact_id, raw, first_seen_at, changed_at, fetched_at, deleted_at) VALUES
              ('L1', 't-late', 'live', '{"title":"late","dueDate":"2024-03-01T00:00:00.000Z","completed":false}', 'x', 'x', 'x', NULL),
              ('L1', 't-soon', 'live', '{"title":"soon","dueDate":"2024-02-01T00:00:00.000Z","completed":true}', 'x', 'x', 'x', NULL),
              ('L1', 't-none', 'live', '{"title":"undated"}', 'x', 'x', 'x', NULL),
              ('L1', 't-dead', 'live', '{"title":"removed","dueDate":"2024-01-01T00:00:00.000Z"}', 'x', 'x', 'x', 'y'),
              ('L1', 't-orphan', 'gone', '{"title":"of a gone contact","dueDate":"2024-01-01T00:00:00.000Z"}', 'x', 'x', 'x', NULL),
              ('L2', 't-l2', 'other', '{"title":"elsewhere","dueDate":"2024-02-15T00:00:00.000Z","completed":false}', 'x', 'x', 'x', NULL);
            INSERT INTO notes (location_id, id, contact_id, raw, first_seen_at, changed_at, fetched_at) VALUES
              ('L1', 'n-old', 'live', '{"body":"old","dateAdded":"2024-01-01T00:00:00.000Z"}', 'x', 'x', 'x'),
              ('L1', 'n-new', 'live', '{"body":"new","dateAdded":"2024-05-01T00:00:00.000Z","pinned":true}', 'x', 'x', 'x'),
              ('L2', 'n-mid', 'other', '{"body":"mid","dateAdded":"2024-03-01T00:00:00.000Z"}', 'x', 'x', 'x'),
              ('L1', 'n-orphan', 'gone', '{"body":"x","dateAdded":"2024-06-01T00:00:00.000Z"}', 'x', 'x', 'x');
            INSERT INTO appointments (location_id, id, contact_id, raw, first_seen_at, changed_at, fetched_at) VALUES
              ('L1', 'a-2', 'live', '{"title":"second","startTime":"2024-02-02 10:00:00"}', 'x', 'x', 'x'),
              ('L1', 'a-1', 'live', '{"title":"first","startTime":"2024-02-01 10:00:00"}', 'x', 'x', 'x'),
              ('L1', 'a-x', 'live', '{"title":"no start"}', 'x', 'x', 'x');
            -- The writer sets these (see `model::ms_from_time_text`).
            UPDATE tasks SET due_date_ms =
              CAST(ROUND(unixepoch(json_extract(raw, '$.dueDate'), 'subsec') * 1000) AS INTEGER);
            UPDATE appointments SET start_ms =
              CAST(ROUND(unixepoch(json_extract(raw, '$.startTime'), 'subsec') * 1000) AS INTEGER);
            "#,
        )
        .unwrap();
        (dir, store)
    }

    fn task_ids(store: &Store, f: &TaskFilter) -> Vec<String> {
        let mut ids = Vec::new();
        store
            .each_task(f, &mut |t| {
                ids.push(t.id);
                ControlFlow::Continue(())
            })
            .unwrap();
        ids
    }

    #[test]
    fn tasks_come_soonest_due_first_then_undated_and_never_of_tombstones() {
        let (_d, store) = store();
        let all = TaskFilter::default();
        assert_eq!(
            task_ids(&store, &all),
            ["t-soon", "t-l2", "t-late", "t-none"]
        );
        let l1 = TaskFilter {
            location: Some("L1".into()),
            ..all.clone()
        };
        assert_eq!(task_ids(&store, &l1), ["t-soon", "t-late", "t-none"]);
        let open = TaskFilter {
            open: true,
            ..l1.clone()
        };
        assert_eq!(task_ids(&store, &open), ["t-late", "t-none"]);
        let due = TaskFilter {
            due_before_ms: crate::model::ms_from_iso("2024-02-20T00:00:00Z"),
            ..all.clone()
        };
        assert_eq!(task_ids(&store, &due), ["t-soon", "t-l2"]);
        let limited = TaskFilter {
            limit: Some(3),
            ..l1.clone()
        };
        assert_eq!(task_ids(&store, &limited), ["t-soon", "t-late", "t-none"]);
        let two = TaskFilter {
            limit: Some(2),
            ..l1
        };
        assert_eq!(task_ids(&store, &two), ["t-soon", "t-late"]);
    }

    #[test]
    fn a_task_row_carries_its_fields_and_its_contacts_name() {
        let (_d, store) = store();
        let mut rows = Vec::new();
        store
            .each_task(
                &TaskFilter {
                    contact: Some("other".into()),
                    ..TaskFilter::default()
                },
                &mut |t| {
                    rows.push(t);
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        assert_eq!(
            rows,
            [TaskRow {
                location_id: "L2".into(),
                id: "t-l2".into(),
                title: Some("elsewhere".into()),
                body: None,
                due_date: Some("2024-02-15T00:00:00.000Z".into()),
                completed: Some(false),
                assigned_to: None,
                contact_id: "other".into(),
                contact_name: Some("Olga Other".into()),
            }]
        );
    }

    #[test]
    fn a_visitor_that_breaks_stops_the_listing() {
        let (_d, store) = store();
        let mut n = 0;
        store
            .each_task(&TaskFilter::default(), &mut |_| {
                n += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn notes_come_newest_first_or_grouped_by_contact() {
        let (_d, store) = store();
        let ids = |order| {
            let mut ids = Vec::new();
            store
                .each_note(
                    &NoteFilter {
                        order,
                        ..NoteFilter::default()
                    },
                    &mut |n| {
                        ids.push(n.id);
                        ControlFlow::Continue(())
                    },
                )
                .unwrap();
            ids
        };
        assert_eq!(ids(NoteOrder::Newest), ["n-new", "n-mid", "n-old"]);
        assert_eq!(ids(NoteOrder::ByContact), ["n-new", "n-old", "n-mid"]);
    }

    #[test]
    fn appointments_come_by_start_time_and_upcoming_drops_the_undated() {
        let (_d, store) = store();
        let ids = |from| {
            let mut ids = Vec::new();
            store
                .each_appointment(
                    &AppointmentFilter {
                        starts_from_ms: from,
                        ..AppointmentFilter::default()
                    },
                    &mut |a| {
                        ids.push(a.id);
                        ControlFlow::Continue(())
                    },
                )
                .unwrap();
            ids
        };
        assert_eq!(ids(None), ["a-1", "a-2", "a-x"]);
        assert_eq!(
            ids(crate::model::ms_from_iso("2024-02-01T12:00:00Z")),
            ["a-2"]
        );
    }

    /// The query plan of `q`, one step per line.
    fn plan(store: &Store, q: &Query) -> String {
        let c = rusqlite::Connection::open(store.path()).unwrap();
        let mut st = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", q.text))
            .unwrap();
        let steps = st
            .query_map(params_from_iter(&q.params), |r| r.get::<_, String>(3))
            .unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn one_locations_listing_is_read_in_index_order_without_a_full_sort() {
        let (_d, store) = store();
        let l1 = Some("L1".to_string());
        let (tasks, order) = task_query(&TaskFilter {
            location: l1.clone(),
            open: true,
            ..TaskFilter::default()
        });
        let (appointments, a_order) = appointment_query(&AppointmentFilter {
            location: l1.clone(),
            ..AppointmentFilter::default()
        });
        let notes = note_query(&NoteFilter {
            order: NoteOrder::ByContact,
            ..NoteFilter::default()
        });
        for (q, index) in [
            (order.dated(&tasks, None), "tasks_by_due"),
            (a_order.dated(&appointments, None), "appointments_by_start"),
            (notes, "notes_live"),
        ] {
            let plan = plan(&store, &q);
            assert!(plan.contains(index), "{plan}");
            assert!(!plan.contains("FOR ORDER BY"), "a full sort: {plan}");
        }
    }
}

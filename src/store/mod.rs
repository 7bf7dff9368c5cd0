//! SQLite storage: opening (WAL, busy timeout, foreign keys, refinery migrations), the page commit
//! that writes contacts together with the cursor, tombstoning, run history, and read queries.
//!
//! Architecture invariant: the only module that knows SQL. It knows `model` and nothing else;
//! every write that must survive a crash commits in one transaction with the state that refers
//! to it.

use crate::model::{
    Contact, PageCounts, PagedContact, RunProgress, Stream, StreamState, iso_from_ms, ms_from_iso,
    now_ms,
};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod guard;
mod listing;
mod lock;
mod open;
mod read;
mod records;
pub mod tokens;
pub use listing::{
    AppointmentFilter, AppointmentRow, NoteFilter, NoteOrder, NoteRow, TaskFilter, TaskRow,
};
pub use lock::StreamLock;
pub use open::{Contents, create_at_version, current_schema_version};
pub use read::{
    Hit, HitPage, Metrics, RunFigures, StoredContact, StoredList, TextHit, TextHits, TextQueryError,
};
pub use records::{ContactList, Due, Holdings, RecordCounts};

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path}: cannot get a connection: {source}")]
    Pool { path: PathBuf, source: r2d2::Error },
    #[error(
        "database {path}: migration failed: {source}; the file may belong to a newer ghl-mirror"
    )]
    Migrate {
        path: PathBuf,
        source: refinery::Error,
    },
    #[error(
        "database {path}: stored sync state for {location}/{stream} is unreadable ({detail}); run `ghl-mirror sync --full` to start a fresh sweep"
    )]
    BadState {
        path: PathBuf,
        location: String,
        stream: String,
        detail: String,
    },
    #[error(
        "the mirror is opened read-only here: only SELECT (and read-only PRAGMAs) can run; it is written by `ghl-mirror sync` alone"
    )]
    ReadOnly,
    #[error("no mirror at {path}: run `ghl-mirror sync` first (or pass --db / set database.path)")]
    Missing { path: PathBuf },
    #[error(
        "{path} is not a ghl-mirror database: {detail}. Expected a mirror written by `ghl-mirror sync` (tables refinery_schema_history, contacts, sync_state, sync_runs, ...); check --db / database.path. The file was left as it was"
    )]
    NotAMirror { path: PathBuf, detail: String },
    #[error(
        "the mirror at {path} has schema version {stored}, and this ghl-mirror reads version {current}: run `ghl-mirror migrate` (or `ghl-mirror sync`) to update it; reading commands never change the file"
    )]
    Outdated {
        path: PathBuf,
        stored: i64,
        current: i64,
    },
    #[error(
        "the mirror at {path} was written by a newer ghl-mirror (schema version {stored}; this one knows versions up to {current}): upgrade ghl-mirror to use it. The file was left as it was"
    )]
    Newer {
        path: PathBuf,
        stored: i64,
        current: i64,
    },
    #[error(
        "{what} is refused: `ghl-mirror sql` runs only SELECT (and WITH) queries and the PRAGMAs that report, such as table_info(contacts), index_list(contacts) or integrity_check; the mirror is written by `ghl-mirror sync` alone"
    )]
    Refused { what: String },
    #[error(
        "query stopped after {}: it ran longer than the time limit; raise --timeout (or [sql] timeout in the config), or narrow the query",
        humantime::format_duration(*after)
    )]
    TimedOut { after: Duration },
    #[error(
        "query stopped: it builds a string or blob larger than {} MiB, the most `ghl-mirror sql` lets one value grow (to bound memory); narrow the query (substr, length, LIMIT) or use the mirror file with sqlite3 directly",
        limit / (1024 * 1024)
    )]
    TooBig { limit: usize },
    #[error("cannot encode sync state: {0}")]
    Encode(String),
    #[error("cannot use the run lock file {path}: {source}; check that its directory is writable")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// A query stopped because its [`stoppable`] caller gave up on it.
    pub fn is_stopped(&self) -> bool {
        matches!(self, StoreError::Sqlite {
            source: rusqlite::Error::SqliteFailure(e, _), ..
        } if e.code == rusqlite::ErrorCode::OperationInterrupted)
    }
}

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

thread_local! {
    /// Set while [`stoppable`] runs on this thread.
    static STOP: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// SQLite's virtual machine steps between two looks at the stop flag.
const STEPS_PER_STOP_CHECK: i32 = 1000;

/// Runs `f` on this thread so that any query it makes through a [`Store`] stops (SQLite's
/// interrupt: the statement ends with an error, an open transaction is rolled back, the
/// connection goes back to its pool usable) once `stop` is set, e.g. by a request that was
/// given up. See [`StoreError::is_stopped`].
pub fn stoppable<T>(stop: Arc<AtomicBool>, f: impl FnOnce() -> T) -> T {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            STOP.with(|s| *s.borrow_mut() = None);
        }
    }
    STOP.with(|s| *s.borrow_mut() = Some(stop));
    let _clear = Clear;
    f()
}

/// Whether the [`stoppable`] work running on this thread was asked to stop.
fn stop_requested() -> bool {
    STOP.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// Watches the stop flag of [`stoppable`] during every statement on `c`.
pub(super) fn watch_stop(c: &Connection) -> rusqlite::Result<()> {
    c.progress_handler(STEPS_PER_STOP_CHECK, Some(stop_requested))
}

/// A pool of connections to `path`, each set up the same way.
fn build_pool(path: &Path, max: u32, wait: Duration, access: &Access) -> Result<Pool, StoreError> {
    let manager = match access {
        Access::ReadWrite => SqliteConnectionManager::file(path),
        Access::ReadOnly(target) => {
            SqliteConnectionManager::file(target).with_flags(open::read_only_flags())
        }
    };
    let manager = manager.with_init(|c| {
        c.busy_timeout(Duration::from_secs(10))?;
        c.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -32000;
             PRAGMA wal_autocheckpoint = 4000;
             PRAGMA temp_store = MEMORY;",
        )?;
        watch_stop(c)?;
        read::register_functions(c)
    });
    r2d2::Pool::builder()
        .max_size(max)
        .min_idle(Some(1))
        .connection_timeout(wait)
        .build(manager)
        .map_err(|source| StoreError::Pool {
            path: path.to_path_buf(),
            source,
        })
}

/// A handle on the mirror file; cheap to clone (a connection pool).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    path: PathBuf,
    access: Access,
}

/// How a [`Store`]'s connections open the file.
#[derive(Clone, Debug)]
enum Access {
    ReadWrite,
    /// `SQLITE_OPEN_READONLY`, on the path itself or on an `immutable=1` URI of it (see
    /// [`Store::open_read_only`]).
    ReadOnly(PathBuf),
}

/// How a reconciling sweep may tombstone what it did not see.
#[derive(Clone, Copy, Debug)]
pub struct Reconcile {
    /// The sweep's sequence number (contacts it saw carry it in `seen_sweep`).
    pub seq: i64,
    /// The largest share of live contacts that may be tombstoned at once (1.0 = no limit).
    pub max_share: f64,
}

/// What ending a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SweepEnd {
    pub tombstoned: u64,
    /// `(unseen, live)` when tombstoning was refused as a suspected mass delete.
    pub refused: Option<(u64, u64)>,
}

/// Below this many unseen contacts a sweep always tombstones (small locations churn a lot).
const MASS_DELETE_FLOOR: u64 = 10;

/// The run a write belongs to.
#[derive(Clone, Copy, Debug)]
pub struct RunKey<'a> {
    pub location: &'a str,
    pub stream: Stream,
    pub run_id: i64,
}

/// One row of `status`: where a (location, stream) stands.
#[derive(Clone, Debug)]
pub struct StreamStatus {
    pub location_id: String,
    pub location_name: Option<String>,
    pub stream: String,
    pub live: u64,
    pub tombstoned: u64,
    pub watermark_ms: Option<i64>,
    pub sweep_in_progress: Option<String>,
    pub last_run: Option<RunSummary>,
    pub last_success_end: Option<String>,
    pub requests_today: u64,
    pub daily_remaining: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct RunSummary {
    pub id: i64,
    pub mode: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: String,
    pub pages: u64,
    pub received: u64,
    pub inserted: u64,
    pub updated: u64,
    pub tombstoned: u64,
    pub requests: u64,
    pub error: Option<String>,
}

impl Store {
    /// Opens (creating if needed) the mirror file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        // File-level settings and migrations on one connection first, so that pool connections
        // opening in parallel never race to switch the journal mode of a new file.
        let mut conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        // Never turns another program's database into a mirror, nor migrates a newer one.
        open::refuse_newer(open::contents(&conn, path)?, path)?;
        // page_size only takes effect on a new file, before WAL is switched on.
        conn.execute_batch("PRAGMA page_size = 32768; PRAGMA journal_mode = WAL;")
            .map_err(sqlite)?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        drop(conn);
        Ok(Store {
            pool: build_pool(path, 8, Duration::from_secs(30), &Access::ReadWrite)?,
            path: path.to_path_buf(),
            access: Access::ReadWrite,
        })
    }

    /// Another handle on the same file with its own pool of `max` connections, whose callers
    /// give up after `wait` when all are busy: readers such as the local API, so that they
    /// never wait on connections a sync holds, nor hold the ones it needs.
    pub fn reader(&self, max: u32, wait: Duration) -> Result<Store, StoreError> {
        Ok(Store {
            pool: build_pool(&self.path, max, wait, &self.access)?,
            path: self.path.clone(),
            access: self.access.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        self.pool.get().map_err(|source| StoreError::Pool {
            path: self.path.clone(),
            source,
        })
    }

    fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T, StoreError> {
        r.map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs `f` in one write transaction (IMMEDIATE, so concurrent writers queue on the busy
    /// timeout instead of failing half-way).
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let tx =
            self.sql(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate))?;
        let out = self.sql(f(&tx))?;
        self.sql(tx.commit())?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn()?;
        self.sql(f(&conn))
    }

    pub fn ensure_location(&self, id: &str, name: Option<&str>) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO locations (id, name) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET name = COALESCE(excluded.name, locations.name)",
                params![id, name],
            )
            .map(|_| ())
        })
    }

    pub fn load_state(&self, location: &str, stream: Stream) -> Result<StreamState, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                "SELECT watermark_ms, sweep_seq, last_full_sweep_ms, cursor, last_sweep_started_ms
                 FROM sync_state WHERE location_id = ?1 AND stream = ?2",
                params![location, stream.as_str()],
                |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((watermark_ms, sweep_seq, last_full_sweep_ms, cursor, last_sweep_started_ms)) =
            row
        else {
            return Ok(StreamState::default());
        };
        let sweep = match cursor {
            Some(text) => Some(
                serde_json::from_str(&text).map_err(|e| StoreError::BadState {
                    path: self.path.clone(),
                    location: location.to_string(),
                    stream: stream.as_str().to_string(),
                    detail: e.to_string(),
                })?,
            ),
            None => None,
        };
        Ok(StreamState {
            watermark_ms,
            sweep_seq,
            last_full_sweep_ms,
            last_sweep_started_ms,
            sweep,
        })
    }

    /// Saves the stream state on its own (e.g. when a new sweep is planned).
    pub fn save_state(
        &self,
        location: &str,
        stream: Stream,
        state: &StreamState,
    ) -> Result<(), StoreError> {
        self.write(|tx| write_state(tx, location, stream, state))
    }

    /// Records the start of a run. Runs of the same (location, stream) still marked `running`
    /// were killed: they are marked `interrupted`.
    pub fn begin_run(&self, location: &str, stream: Stream, mode: &str) -> Result<i64, StoreError> {
        let now = iso_from_ms(now_ms());
        self.write(|tx| {
            tx.execute(
                "UPDATE sync_runs SET outcome = 'interrupted', ended_at = COALESCE(ended_at, ?3),
                   error = COALESCE(error, 'the process stopped before the run ended; the next run resumed from the saved cursor')
                 WHERE location_id = ?1 AND stream = ?2 AND outcome = 'running'",
                params![location, stream.as_str(), now],
            )?;
            tx.execute(
                "INSERT INTO sync_runs (location_id, stream, mode, started_at, outcome)
                 VALUES (?1, ?2, ?3, ?4, 'running')",
                params![location, stream.as_str(), mode, now],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Commits pages: their contacts, the stream state (cursor) that follows the last of them
    /// and the run's progress, in one transaction. `mark_seq` stamps contacts as seen by a
    /// reconciling sweep.
    pub fn commit_pages(
        &self,
        run: RunKey<'_>,
        pages: &[Vec<PagedContact>],
        mark_seq: Option<i64>,
        state: &StreamState,
        progress: &mut RunProgress,
    ) -> Result<PageCounts, StoreError> {
        let RunKey {
            location,
            stream,
            run_id,
        } = run;
        let now = iso_from_ms(now_ms());
        let counts = self.write(|tx| {
            let mut writer = PageWriter::new(tx, location, mark_seq, &now)?;
            for pc in pages.iter().flatten() {
                writer.upsert(&pc.contact)?;
            }
            let counts = writer.counts;
            drop(writer);
            write_state(tx, location, stream, state)?;
            let mut p = progress.clone();
            add_counts(&mut p, pages.len() as u64, counts);
            write_progress(tx, run_id, &p)?;
            Ok((counts, p))
        })?;
        *progress = counts.1;
        Ok(counts.0)
    }

    /// Ends a sweep: with `reconcile`, contacts of the location not stamped with its sequence
    /// number are tombstoned, unless that would be more than `max_share` of the live contacts
    /// (then none are, and the refusal is returned). The state (sweep cleared, watermark
    /// advanced) commits in the same transaction either way.
    pub fn finish_sweep(
        &self,
        run: RunKey<'_>,
        reconcile: Option<Reconcile>,
        state: &StreamState,
        progress: &mut RunProgress,
    ) -> Result<SweepEnd, StoreError> {
        let RunKey {
            location,
            stream,
            run_id,
        } = run;
        let now = iso_from_ms(now_ms());
        let end = self.write(|tx| {
            let mut end = SweepEnd::default();
            if let Some(r) = reconcile {
                let (live, unseen): (i64, i64) = tx.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(seen_sweep <> ?2), 0) FROM contacts
                     WHERE location_id = ?1 AND deleted_at IS NULL",
                    params![location, r.seq],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                let (live, unseen) = (live as u64, unseen as u64);
                if unseen > MASS_DELETE_FLOOR && unseen as f64 > r.max_share * live as f64 {
                    end.refused = Some((unseen, live));
                } else {
                    end.tombstoned = tx.execute(
                        "UPDATE contacts SET deleted_at = ?3
                         WHERE location_id = ?1 AND deleted_at IS NULL AND seen_sweep <> ?2",
                        params![location, r.seq, now],
                    )? as u64;
                    if end.tombstoned > 0 {
                        records::cascade_tombstones(tx, location, &now)?;
                    }
                }
            }
            write_state(tx, location, stream, state)?;
            let mut p = progress.clone();
            p.tombstoned += end.tombstoned;
            write_progress(tx, run_id, &p)?;
            Ok((end, p))
        })?;
        *progress = end.1;
        Ok(end.0)
    }

    pub fn end_run(
        &self,
        run_id: i64,
        outcome: &str,
        progress: &RunProgress,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = iso_from_ms(now_ms());
        self.write(|tx| {
            write_progress(tx, run_id, progress)?;
            tx.execute(
                "UPDATE sync_runs SET outcome = ?2, ended_at = ?3, error = ?4 WHERE id = ?1",
                params![run_id, outcome, now, error],
            )
            .map(|_| ())
        })
    }

    /// Ids of the contacts of a location that are not tombstoned, sorted.
    pub fn live_contact_ids(&self, location: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id FROM contacts WHERE location_id = ?1 AND deleted_at IS NULL ORDER BY id",
            )?;
            st.query_map([location], |r| r.get(0))?.collect()
        })
    }

    /// Ids of tombstoned contacts of a location, sorted.
    pub fn tombstoned_contact_ids(&self, location: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id FROM contacts WHERE location_id = ?1 AND deleted_at IS NOT NULL ORDER BY id",
            )?;
            st.query_map([location], |r| r.get(0))?.collect()
        })
    }

    /// The stored raw JSON of a contact (tombstoned or not).
    pub fn contact_raw(&self, location: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT raw FROM contacts WHERE location_id = ?1 AND id = ?2",
                params![location, id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Copies committed WAL frames back into the database file (a PASSIVE checkpoint: it never
    /// blocks readers or the writer). Bulk writers call it from another thread so the copying and
    /// its fsync overlap with their next commit; `wal_autocheckpoint` stays as a safety net.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())))
    }

    /// Runs one read-only SQL statement and returns its column names and up to `limit` rows,
    /// each value rendered as text (NULL as `None`); see [`Store::query_table`].
    pub fn query(&self, sql: &str, limit: usize) -> Result<QueryResult, StoreError> {
        let table = self.query_table(sql, limit)?;
        let text = |v: serde_json::Value| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            v => Some(v.to_string()),
        };
        Ok(QueryResult {
            columns: table.columns,
            rows: table
                .rows
                .into_iter()
                .map(|r| r.into_iter().map(text).collect())
                .collect(),
        })
    }

    /// The most recent runs of a (location, stream), newest first.
    pub fn recent_runs(
        &self,
        location: &str,
        stream: Stream,
        limit: u32,
    ) -> Result<Vec<RunSummary>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM sync_runs WHERE location_id = ?1 AND stream = ?2
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            st.query_map(params![location, stream.as_str(), limit], run_summary)?
                .collect()
        })
    }

    /// Per (location, stream) health for `status`.
    pub fn status(&self) -> Result<Vec<StreamStatus>, StoreError> {
        let today = iso_from_ms(now_ms())[..10].to_string();
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT l.id, l.name, k.stream, s.watermark_ms, s.cursor,
                   (SELECT COUNT(*) FROM contacts WHERE location_id = l.id AND deleted_at IS NULL),
                   (SELECT COUNT(*) FROM contacts WHERE location_id = l.id AND deleted_at IS NOT NULL),
                   (SELECT MAX(ended_at) FROM sync_runs r WHERE r.location_id = l.id
                      AND r.stream = k.stream AND r.outcome = 'success'),
                   (SELECT COALESCE(SUM(requests), 0) FROM sync_runs r WHERE r.location_id = l.id
                      AND substr(r.started_at, 1, 10) = ?1),
                   (SELECT daily_remaining FROM sync_runs r WHERE r.location_id = l.id
                      AND daily_remaining IS NOT NULL ORDER BY id DESC LIMIT 1)
                 FROM locations l
                 LEFT JOIN (SELECT location_id, stream FROM sync_state
                            UNION SELECT location_id, stream FROM sync_runs) k
                   ON k.location_id = l.id
                 LEFT JOIN sync_state s ON s.location_id = l.id AND s.stream = k.stream
                 ORDER BY l.id, k.stream = 'businesses', k.stream",
            )?;
            let rows = st
                .query_map([&today], |r| {
                    let cursor: Option<String> = r.get(4)?;
                    Ok(StreamStatus {
                        location_id: r.get(0)?,
                        location_name: r.get(1)?,
                        stream: r.get::<_, Option<String>>(2)?.unwrap_or_else(|| "contacts".into()),
                        watermark_ms: r.get(3)?,
                        sweep_in_progress: cursor.map(|c| sweep_label(&c)),
                        live: r.get::<_, i64>(5)? as u64,
                        tombstoned: r.get::<_, i64>(6)? as u64,
                        last_success_end: r.get(7)?,
                        requests_today: r.get::<_, i64>(8)? as u64,
                        daily_remaining: r.get(9)?,
                        last_run: None,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for mut s in rows {
                s.last_run = c
                    .query_row(
                        &format!(
                            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE location_id = ?1 AND stream = ?2
                             ORDER BY id DESC LIMIT 1"
                        ),
                        params![s.location_id, s.stream],
                        run_summary,
                    )
                    .optional()?;
                out.push(s);
            }
            Ok(out)
        })
    }
}

/// Columns and typed rows of a read-only query (integers and reals as JSON numbers, text as
/// strings, blobs as `"<N bytes>"`), and whether more rows were left out.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub truncated: bool,
}

impl Store {
    /// Runs one read-only SQL statement and returns up to `limit` typed rows. Writes are refused
    /// by SQLite itself (`PRAGMA query_only`), with [`StoreError::ReadOnly`].
    pub fn query_table(&self, sql: &str, limit: usize) -> Result<Table, StoreError> {
        let conn = self.conn()?;
        self.sql(conn.execute_batch("PRAGMA query_only = ON"))?;
        let result = run_table(&conn, sql, limit);
        self.sql(conn.execute_batch("PRAGMA query_only = OFF"))?;
        result.map_err(|source| match source {
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ReadOnly => {
                StoreError::ReadOnly
            }
            source => StoreError::Sqlite {
                path: self.path.clone(),
                source,
            },
        })
    }
}

fn run_table(conn: &Connection, sql: &str, limit: usize) -> rusqlite::Result<Table> {
    table_of(&mut conn.prepare(sql)?, limit)
}

/// Up to `limit` typed rows of a prepared statement.
fn table_of(st: &mut rusqlite::Statement<'_>, limit: usize) -> rusqlite::Result<Table> {
    use rusqlite::types::ValueRef;
    let columns: Vec<String> = st.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let mut table = Table {
        columns,
        ..Table::default()
    };
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        if table.rows.len() >= limit {
            table.truncated = true;
            break;
        }
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(match r.get_ref(i)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(v) => v.into(),
                ValueRef::Real(v) => serde_json::Number::from_f64(v)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                ValueRef::Blob(b) => format!("<{} bytes>", b.len()).into(),
            });
        }
        table.rows.push(row);
    }
    Ok(table)
}

/// Columns and rows of a read-only query.
#[derive(Clone, Debug, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

const RUN_COLUMNS: &str = "id, mode, started_at, ended_at, outcome, pages, received, inserted, \
                           updated, tombstoned, requests, error";

fn run_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: r.get(0)?,
        mode: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        outcome: r.get(4)?,
        pages: r.get::<_, i64>(5)? as u64,
        received: r.get::<_, i64>(6)? as u64,
        inserted: r.get::<_, i64>(7)? as u64,
        updated: r.get::<_, i64>(8)? as u64,
        tombstoned: r.get::<_, i64>(9)? as u64,
        requests: r.get::<_, i64>(10)? as u64,
        error: r.get(11)?,
    })
}

fn sweep_label(cursor_json: &str) -> String {
    match serde_json::from_str::<crate::model::Sweep>(cursor_json) {
        Ok(s) => format!(
            "{} sweep #{} ({:?} pass, {} read)",
            s.kind.as_str(),
            s.seq,
            s.pass,
            s.received
        ),
        Err(_) => "unreadable cursor".into(),
    }
}

fn add_counts(p: &mut RunProgress, pages: u64, c: PageCounts) {
    p.pages += pages;
    p.inserted += c.inserted;
    p.updated += c.updated;
    p.unchanged += c.unchanged;
}

fn write_state(
    tx: &Transaction<'_>,
    location: &str,
    stream: Stream,
    state: &StreamState,
) -> rusqlite::Result<()> {
    let cursor = match &state.sweep {
        Some(s) => Some(
            serde_json::to_string(s)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        ),
        None => None,
    };
    tx.execute(
        "INSERT INTO sync_state (location_id, stream, watermark_ms, sweep_seq, last_full_sweep_ms, cursor, updated_at, last_sweep_started_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(location_id, stream) DO UPDATE SET
           watermark_ms = excluded.watermark_ms, sweep_seq = excluded.sweep_seq,
           last_full_sweep_ms = excluded.last_full_sweep_ms, cursor = excluded.cursor,
           updated_at = excluded.updated_at, last_sweep_started_ms = excluded.last_sweep_started_ms",
        params![
            location,
            stream.as_str(),
            state.watermark_ms,
            state.sweep_seq,
            state.last_full_sweep_ms,
            cursor,
            iso_from_ms(now_ms()),
            state.last_sweep_started_ms
        ],
    )?;
    Ok(())
}

fn write_progress(tx: &Transaction<'_>, run_id: i64, p: &RunProgress) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE sync_runs SET pages = ?2, received = ?3, inserted = ?4, updated = ?5, unchanged = ?6,
           tombstoned = ?7, warnings = ?8, requests = ?9, retries = ?10, rate_limited = ?11,
           daily_remaining = COALESCE(?12, daily_remaining)
         WHERE id = ?1",
        params![
            run_id,
            p.pages as i64,
            p.received as i64,
            p.inserted as i64,
            p.updated as i64,
            p.unchanged as i64,
            p.tombstoned as i64,
            p.warnings as i64,
            p.requests as i64,
            p.retries as i64,
            p.rate_limited as i64,
            p.daily_remaining
        ],
    )?;
    Ok(())
}

const INSERT_CONTACT: &str = "INSERT INTO contacts (location_id, id, first_name, last_name, name,
       email, phone, company_name, business_id, source, type, assigned_to, dnd, country, city,
       state, postal_code, timezone, tags, date_added, date_updated, date_updated_ms, raw,
       first_seen_at, changed_at, fetched_at, seen_sweep, date_added_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
       ?19, ?20, ?21, ?22, ?23, ?24, ?24, ?24, COALESCE(?25, 0), ?26)
     ON CONFLICT(location_id, id) DO NOTHING";

const UPDATE_CONTACT: &str = "UPDATE contacts SET first_name = ?3, last_name = ?4, name = ?5,
       email = ?6, phone = ?7, company_name = ?8, business_id = ?9, source = ?10, type = ?11,
       assigned_to = ?12, dnd = ?13, country = ?14, city = ?15, state = ?16, postal_code = ?17,
       timezone = ?18, tags = ?19, date_added = ?20, date_updated = ?21, date_updated_ms = ?22,
       raw = ?23, changed_at = ?24, fetched_at = ?24, seen_sweep = COALESCE(?25, seen_sweep),
       deleted_at = NULL, date_added_ms = ?26
     WHERE location_id = ?1 AND id = ?2";

/// Writes the contacts of a page commit. The statements of the common path (a new contact and
/// its tags and custom fields) are prepared once per transaction: looking one up in the
/// statement cache hashes its SQL text, which shows per contact on bulk loads.
struct PageWriter<'t> {
    tx: &'t Transaction<'t>,
    location: &'t str,
    mark_seq: Option<i64>,
    now: &'t str,
    insert: rusqlite::Statement<'t>,
    insert_tag: rusqlite::Statement<'t>,
    insert_field: rusqlite::Statement<'t>,
    counts: PageCounts,
}

impl<'t> PageWriter<'t> {
    fn new(
        tx: &'t Transaction<'t>,
        location: &'t str,
        mark_seq: Option<i64>,
        now: &'t str,
    ) -> rusqlite::Result<PageWriter<'t>> {
        Ok(PageWriter {
            tx,
            location,
            mark_seq,
            now,
            insert: tx.prepare(INSERT_CONTACT)?,
            insert_tag: tx
                .prepare("INSERT OR IGNORE INTO contact_tags (contact_pk, tag) VALUES (?1, ?2)")?,
            insert_field: tx.prepare(
                "INSERT OR IGNORE INTO contact_custom_fields (contact_pk, field_id, value)
                 VALUES (?1, ?2, ?3)",
            )?,
            counts: PageCounts::default(),
        })
    }

    /// Inserts or updates one contact. New contacts cost one INSERT; unchanged contacts (same
    /// raw JSON) only get their fetch time and sweep stamp refreshed; tombstoned contacts that
    /// reappear are brought back.
    fn upsert(&mut self, c: &Contact) -> rusqlite::Result<()> {
        let tags_json = serde_json::to_string(&c.tags)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let tags = tags_json.as_str();
        let (location, now, mark) = (self.location, self.now, self.mark_seq);
        let added_ms = c.date_added.as_deref().and_then(ms_from_iso);
        if self
            .insert
            .execute(row_params(&location, c, &tags, &now, &mark, &added_ms))?
            == 1
        {
            self.write_children(self.tx.last_insert_rowid(), c)?;
            self.counts.inserted += 1;
            return Ok(());
        }
        let (pk, same, deleted): (i64, bool, bool) = self
            .tx
            .prepare_cached(
                "SELECT pk, raw = ?3, deleted_at IS NOT NULL FROM contacts
                 WHERE location_id = ?1 AND id = ?2",
            )?
            .query_row(params![location, c.id, c.raw], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if same && !deleted {
            self.tx
                .prepare_cached(
                    "UPDATE contacts SET fetched_at = ?2, seen_sweep = COALESCE(?3, seen_sweep)
                     WHERE pk = ?1",
                )?
                .execute(params![pk, now, mark])?;
            self.counts.unchanged += 1;
            return Ok(());
        }
        self.tx
            .prepare_cached(UPDATE_CONTACT)?
            .execute(row_params(&location, c, &tags, &now, &mark, &added_ms))?;
        self.tx
            .prepare_cached("DELETE FROM contact_tags WHERE contact_pk = ?1")?
            .execute([pk])?;
        self.tx
            .prepare_cached("DELETE FROM contact_custom_fields WHERE contact_pk = ?1")?
            .execute([pk])?;
        self.write_children(pk, c)?;
        self.counts.updated += 1;
        Ok(())
    }

    /// Writes a contact's tags and custom field values.
    fn write_children(&mut self, pk: i64, c: &Contact) -> rusqlite::Result<()> {
        for tag in &c.tags {
            self.insert_tag.execute(params![pk, tag])?;
        }
        // A field listed twice keeps its last value, as HighLevel's own UI shows it.
        for (i, f) in c.custom_fields.iter().enumerate() {
            let repeated_later = c.custom_fields[i + 1..]
                .iter()
                .any(|g| g.field_id == f.field_id);
            if !repeated_later {
                self.insert_field
                    .execute(params![pk, f.field_id, f.value])?;
            }
        }
        Ok(())
    }
}

/// The parameters ?1..?26 of `INSERT_CONTACT` and `UPDATE_CONTACT`.
fn row_params<'a>(
    location: &'a &'a str,
    c: &'a Contact,
    tags: &'a &'a str,
    now: &'a &'a str,
    mark_seq: &'a Option<i64>,
    added_ms: &'a Option<i64>,
) -> [&'a dyn rusqlite::ToSql; 26] {
    [
        location,
        &c.id,
        &c.first_name,
        &c.last_name,
        &c.name,
        &c.email,
        &c.phone,
        &c.company_name,
        &c.business_id,
        &c.source,
        &c.contact_type,
        &c.assigned_to,
        &c.dnd,
        &c.country,
        &c.city,
        &c.state,
        &c.postal_code,
        &c.timezone,
        tags,
        &c.date_added,
        &c.date_updated,
        &c.date_updated_ms,
        &c.raw,
        now,
        mark_seq,
        added_ms,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sqlite_has_json_and_fts5_despite_the_custom_compile_flags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let r = store
            .query("SELECT json_extract('{\"a\":1}', '$.a')", 1)
            .unwrap();
        assert_eq!(r.rows[0][0].as_deref(), Some("1"));
        let opts = store
            .query("SELECT * FROM pragma_compile_options", 500)
            .unwrap();
        let opts: Vec<&str> = opts.rows.iter().filter_map(|r| r[0].as_deref()).collect();
        assert!(opts.contains(&"ENABLE_FTS5"), "{opts:?}");
        assert!(opts.contains(&"DEFAULT_MEMSTATUS=0"), "{opts:?}");
    }

    #[test]
    fn read_only_queries_refuse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let e = store.query("DELETE FROM contacts", 1).unwrap_err();
        assert!(matches!(e, StoreError::ReadOnly), "{e}");
        let e = store
            .query_table("INSERT INTO locations (id) VALUES ('x')", 1)
            .unwrap_err();
        assert!(e.to_string().contains("only SELECT"), "{e}");
        assert!(store.query("SELECT COUNT(*) FROM contacts", 1).is_ok());
    }
}

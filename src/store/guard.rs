//! The guard around `ghl-mirror sql`: one statement on a read-only connection, checked by an
//! authorizer as SQLite prepares it and stopped by a progress handler when it runs too long.
//!
//! Allowed: SELECT and WITH (reading any table or view, calling functions, recursing), and the
//! PRAGMAs that only report (`table_info(contacts)`, `index_list`, `integrity_check`, ...) or
//! read a setting without a value (`journal_mode`, `user_version`). Refused before anything
//! runs: every write, ATTACH and DETACH, VACUUM (also `VACUUM INTO`), transactions, and any
//! other PRAGMA. The read-only connection ([`Store::open_read_only`]) is the second wall.
//! No string or blob may grow past [`MAX_VALUE_BYTES`] (`randomblob(1e9)` would allocate a
//! gigabyte well within the time limit).

use super::{Store, StoreError, Table, table_of};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// PRAGMAs that only report, with or without an argument (a table or index name, a limit).
const REPORTING_PRAGMAS: &[&str] = &[
    "collation_list",
    "compile_options",
    "database_list",
    "foreign_key_check",
    "foreign_key_list",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "module_list",
    "pragma_list",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// PRAGMAs whose setting may be read (never set: no value allowed).
const SETTING_PRAGMAS: &[&str] = &[
    "application_id",
    "auto_vacuum",
    "data_version",
    "encoding",
    "foreign_keys",
    "freelist_count",
    "journal_mode",
    "page_count",
    "page_size",
    "schema_version",
    "user_version",
];

/// The largest string or blob (and row) a guarded statement may build: 64 MiB, far above any
/// stored contact, far below what a runaway `randomblob`, `zeroblob` or `printf` would take.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// SQLite's virtual machine steps between two looks at the clock.
const STEPS_PER_CHECK: i32 = 1000;

/// What the authorizer saw while the statement was prepared.
#[derive(Default)]
struct Seen {
    /// The first action refused, as a user would name it.
    refused: Option<String>,
    /// A reporting PRAGMA was allowed (SQLite counts `PRAGMA journal_mode` as a write).
    pragma: bool,
}

/// Whether `action` may run; `Err` names it.
fn allowed(action: AuthAction<'_>) -> Result<bool, String> {
    match action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Ok(false),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            if REPORTING_PRAGMAS.contains(&name.as_str())
                || (pragma_value.is_none() && SETTING_PRAGMAS.contains(&name.as_str()))
            {
                Ok(true)
            } else {
                Err(match pragma_value {
                    Some(v) => format!("PRAGMA {name} = {v}"),
                    None => format!("PRAGMA {name}"),
                })
            }
        }
        AuthAction::Attach { filename } => Err(format!("ATTACH {filename:?}")),
        AuthAction::Detach { database_name } => Err(format!("DETACH {database_name}")),
        AuthAction::Insert { table_name } => Err(format!("INSERT INTO {table_name}")),
        AuthAction::Update { table_name, .. } => Err(format!("UPDATE {table_name}")),
        AuthAction::Delete { table_name } => Err(format!("DELETE FROM {table_name}")),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Err("a transaction".into())
        }
        other => Err(format!("{other:?}")),
    }
}

impl Store {
    /// Runs one statement of `ghl-mirror sql` and returns up to `limit` typed rows: only
    /// reading is allowed (see the module doc), and a statement still running after `timeout`
    /// is stopped with [`StoreError::TimedOut`].
    pub fn query_guarded(
        &self,
        sql: &str,
        limit: usize,
        timeout: Duration,
    ) -> Result<Table, StoreError> {
        let conn = self.conn()?;
        // Also on a writable handle (before the authorizer, which would refuse it).
        self.sql(conn.execute_batch("PRAGMA query_only = ON"))?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        self.sql(conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let mut seen = record.lock().unwrap_or_else(PoisonError::into_inner);
            match allowed(ctx.action) {
                Ok(pragma) => {
                    seen.pragma |= pragma;
                    Authorization::Allow
                }
                Err(what) => {
                    seen.refused.get_or_insert(what);
                    Authorization::Deny
                }
            }
        })))?;
        let length = self.sql(conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES as i32));
        let length = match length {
            Ok(old) => old,
            Err(e) => {
                let _ = conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
                let _ = conn.execute_batch("PRAGMA query_only = OFF");
                return Err(e);
            }
        };
        let deadline = Instant::now() + timeout;
        self.sql(conn.progress_handler(STEPS_PER_CHECK, Some(move || Instant::now() >= deadline)))?;
        let result = (|| {
            let mut st = conn.prepare(sql)?;
            let pragma = seen.lock().unwrap_or_else(PoisonError::into_inner).pragma;
            if !st.readonly() && !pragma {
                return Ok(Err(first_word(sql)));
            }
            table_of(&mut st, limit).map(Ok)
        })();
        // The connection goes back to the pool as it came.
        let _ = conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        let _ = super::watch_stop(&conn);
        let _ = conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length);
        let _ = conn.execute_batch("PRAGMA query_only = OFF");
        let refused = |what: String| StoreError::Refused { what };
        match result {
            Ok(Ok(table)) => Ok(table),
            Ok(Err(what)) => Err(refused(what)),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
            {
                let what = seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .refused
                    .take();
                Err(refused(what.unwrap_or_else(|| first_word(sql))))
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                Err(StoreError::TimedOut { after: timeout })
            }
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::TooBig => {
                Err(StoreError::TooBig {
                    limit: MAX_VALUE_BYTES,
                })
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ReadOnly =>
            {
                Err(StoreError::ReadOnly)
            }
            Err(source) => Err(StoreError::Sqlite {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// The statement's first word (VACUUM, PRAGMA, ...), upper case.
fn first_word(sql: &str) -> String {
    sql.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_query_refuses_writes_on_a_writable_handle_and_gives_the_connection_back_clean() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let second = Duration::from_secs(1);
        let e = store
            .query_guarded("INSERT INTO locations (id) VALUES ('x')", 1, second)
            .unwrap_err();
        assert!(matches!(e, StoreError::Refused { .. }), "{e}");
        let t = store
            .query_guarded("PRAGMA index_list(contacts)", 100, second)
            .unwrap();
        assert!(!t.rows.is_empty());
        // No authorizer, handler or query_only is left on the pooled connection.
        store.ensure_location("L1", None).unwrap();
    }

    #[test]
    fn a_guarded_query_may_not_build_a_huge_value_and_the_cap_is_lifted_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let minute = Duration::from_secs(60);
        for sql in [
            "SELECT length(randomblob(100000000))",
            "SELECT length(zeroblob(100000000))",
            "SELECT length(printf('%.*c', 100000000, 'x'))",
        ] {
            let e = store.query_guarded(sql, 1, minute).unwrap_err();
            assert!(matches!(e, StoreError::TooBig { .. }), "{sql}: {e}");
            assert!(e.to_string().contains("64 MiB"), "{e}");
        }
        let t = store
            .query_guarded("SELECT length(randomblob(1000000))", 1, minute)
            .unwrap();
        assert_eq!(t.rows[0][0], serde_json::json!(1_000_000));
        // The pooled connection gets its own limit back.
        let t = store
            .query("SELECT length(zeroblob(100000000))", 1)
            .unwrap();
        assert_eq!(t.rows[0][0].as_deref(), Some("100000000"));
    }
}

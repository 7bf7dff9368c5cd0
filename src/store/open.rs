//! Telling a mirror file from any other, and opening one read-only.
//!
//! The read commands (`sql`, `status`, `contacts`, `tasks`, `notes`, `appointments`, `export`,
//! `serve`) open an existing mirror with `SQLITE_OPEN_READONLY`: they never create a file, run a
//! migration or switch the journal mode. A file that is not a mirror, or one at another schema
//! version, is refused before anything reads it. Only `sync`, `daemon`, `migrate` and `demo`
//! create or migrate ([`Store::open`]); they too refuse a database that holds other tables.

use super::{Access, Store, StoreError, build_pool, embedded};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The table refinery records applied migrations in.
const HISTORY: &str = "refinery_schema_history";

/// Tables every mirror has had since the first schema version.
const MIRROR_TABLES: [&str; 4] = [HISTORY, "contacts", "sync_state", "sync_runs"];

/// The schema version this build of ghl-mirror writes and reads.
pub fn current_schema_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// What a database file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contents {
    /// No table at all (a new or empty file).
    Empty,
    /// A mirror at this schema version.
    Mirror(i64),
}

/// What the database on `conn` holds; a database with other tables and no mirror history is
/// [`StoreError::NotAMirror`].
pub(super) fn contents(conn: &Connection, path: &Path) -> Result<Contents, StoreError> {
    let not_a_mirror = |detail: String| StoreError::NotAMirror {
        path: path.to_path_buf(),
        detail,
    };
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|source| match source {
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase => {
                not_a_mirror("it is not an SQLite database".into())
            }
            source => StoreError::Sqlite {
                path: path.to_path_buf(),
                source,
            },
        })?;
    if names.is_empty() {
        return Ok(Contents::Empty);
    }
    let missing: Vec<&str> = MIRROR_TABLES
        .into_iter()
        .filter(|t| !names.iter().any(|n| n == t))
        .collect();
    if !missing.is_empty() {
        let mut shown: Vec<&str> = names.iter().map(String::as_str).take(5).collect();
        if names.len() > shown.len() {
            shown.push("…");
        }
        return Err(not_a_mirror(format!(
            "it has the tables {} but not {}",
            shown.join(", "),
            missing.join(", ")
        )));
    }
    let version: Option<i64> = conn
        .query_row(&format!("SELECT MAX(version) FROM {HISTORY}"), [], |r| {
            r.get(0)
        })
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Contents::Mirror(version.unwrap_or(0)))
}

/// Refuses a mirror written by a newer ghl-mirror (its schema has migrations this build lacks).
pub(super) fn refuse_newer(contents: Contents, path: &Path) -> Result<(), StoreError> {
    let current = current_schema_version();
    match contents {
        Contents::Mirror(stored) if stored > current => Err(StoreError::Newer {
            path: path.to_path_buf(),
            stored,
            current,
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens an existing mirror read-only: nothing is created, migrated or switched; a missing
    /// file, a file that is not a mirror, or a mirror at another schema version is refused with
    /// what to do.
    ///
    /// A mirror in WAL mode is read through its `-shm` file, which SQLite creates beside it when
    /// missing (a finished sync removes it). In a directory this user cannot write, with no
    /// `-wal` file either (so no writer is at work), the file is opened `immutable=1` instead.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let (target, conn) = read_only_target(path)?;
        let contents = contents(&conn, path)?;
        drop(conn);
        refuse_newer(contents, path)?;
        let current = current_schema_version();
        match contents {
            Contents::Empty => Err(StoreError::NotAMirror {
                path: path.to_path_buf(),
                detail:
                    "it holds no table yet; `ghl-mirror sync` or `ghl-mirror migrate` makes it one"
                        .into(),
            }),
            Contents::Mirror(stored) if stored < current => Err(StoreError::Outdated {
                path: path.to_path_buf(),
                stored,
                current,
            }),
            Contents::Mirror(_) => {
                let access = Access::ReadOnly(target);
                Ok(Store {
                    pool: build_pool(path, 4, Duration::from_secs(30), &access)?,
                    path: path.to_path_buf(),
                    access,
                })
            }
        }
    }

    /// What the file at `path` holds, read without changing it; `None` when there is no file.
    pub fn contents_of(path: &Path) -> Result<Option<Contents>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let (_, conn) = read_only_target(path)?;
        contents(&conn, path).map(Some)
    }

    /// Whether this handle only reads (see [`Store::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        matches!(self.access, Access::ReadOnly(_))
    }
}

/// The flags of every read-only connection.
pub(super) fn read_only_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// What read-only connections to `path` open (the path, or its `immutable=1` URI), and one
/// such connection that has read the schema.
fn read_only_target(path: &Path) -> Result<(PathBuf, Connection), StoreError> {
    let error = |source| match source {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase => {
            StoreError::NotAMirror {
                path: path.to_path_buf(),
                detail: "it is not an SQLite database".into(),
            }
        }
        source => StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    };
    match probe(path) {
        Ok(conn) => Ok((path.to_path_buf(), conn)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY
                && !wal_of(path).exists() =>
        {
            let uri = immutable_uri(path).map_err(|e| StoreError::Sqlite {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(e),
            })?;
            let conn = probe(&uri).map_err(error)?;
            Ok((uri, conn))
        }
        Err(e) => Err(error(e)),
    }
}

/// A read-only connection to `target` that has read the schema (which opens the WAL index).
fn probe(target: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(target, read_only_flags())?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |_| Ok(()))?;
    Ok(conn)
}

fn wal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// `file:<absolute path>?immutable=1`, with the characters a URI gives meaning to escaped.
fn immutable_uri(path: &Path) -> Result<PathBuf, PathBuf> {
    let abs = std::path::absolute(path).map_err(|_| path.to_path_buf())?;
    let text = abs.to_str().ok_or_else(|| path.to_path_buf())?;
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Ok(PathBuf::from(uri))
}

/// Creates a mirror at an older schema `version`, as an older ghl-mirror left it (for tests of
/// `migrate` and of the refusal to read it).
#[doc(hidden)]
pub fn create_at_version(path: &Path, version: i64) -> Result<(), StoreError> {
    let mut conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    })?;
    let target = refinery::Target::Version(version.try_into().unwrap_or(0));
    embedded::migrations::runner()
        .set_target(target)
        .run(&mut conn)
        .map(drop)
        .map_err(|source| StoreError::Migrate {
            path: path.to_path_buf(),
            source,
        })
}

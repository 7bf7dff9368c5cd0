//! The OAuth token store: a small SQLite file of its own beside the mirror (`<database>.tokens`), so
//! the mirror itself can be handed to `sqlite3`, Datasette or a BI tool without handing over
//! tokens. The file (and its journal) is owner-only (0600) and every commit is durable
//! (`synchronous = FULL`) before a token it holds is used.

use rusqlite::{Connection, OptionalExtension, params};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// What a stored grant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    /// A location (sub-account) OAuth token with its own refresh token.
    Location,
    /// An agency (Company) OAuth token with its own refresh token.
    Company,
    /// A location token minted from the agency token (no refresh token: minted again).
    Minted,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Location => "location",
            GrantKind::Company => "company",
            GrantKind::Minted => "agency-minted",
        }
    }

    fn parse(s: &str) -> Option<GrantKind> {
        match s {
            "location" => Some(GrantKind::Location),
            "company" => Some(GrantKind::Company),
            "agency-minted" => Some(GrantKind::Minted),
            _ => None,
        }
    }
}

/// One stored grant. `Debug` never shows a token.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `location:<id>` or `company:<id>`.
    pub subject: String,
    pub kind: GrantKind,
    pub location_id: Option<String>,
    pub company_id: Option<String>,
    pub access: SecretString,
    pub access_expires_ms: i64,
    pub issued_ms: i64,
    pub refresh: Option<SecretString>,
    pub scopes: Vec<String>,
    /// Bumped by every new token (refresh or mint).
    pub generation: i64,
    /// Set (and committed) before a refresh request is sent, cleared with its result: found
    /// set, it says a refresh was under way when the process stopped.
    pub refresh_started_ms: Option<i64>,
    /// Why this grant cannot be refreshed any more, and what to run.
    pub reauth: Option<String>,
}

impl Grant {
    /// A grant with no token yet: what a first token (a login, a first mint) replaces.
    pub fn placeholder(
        subject: &str,
        kind: GrantKind,
        location_id: Option<String>,
        company_id: Option<String>,
        generation: i64,
    ) -> Grant {
        Grant {
            subject: subject.to_string(),
            kind,
            location_id,
            company_id,
            access: SecretString::from(String::new()),
            access_expires_ms: 0,
            issued_ms: 0,
            refresh: None,
            scopes: Vec::new(),
            generation,
            refresh_started_ms: None,
            reauth: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error(
        "token store {path}: {source}; check that the directory is writable, or move the file aside to start over (then run `ghl-mirror auth login`)"
    )]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("token store {path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error(
        "token store {path}: grant {subject} has an unknown kind {kind:?}; it was written by a newer ghl-mirror"
    )]
    Kind {
        path: PathBuf,
        subject: String,
        kind: String,
    },
}

pub struct TokenStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grants (
    subject TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    location_id TEXT,
    company_id TEXT,
    access_token TEXT NOT NULL,
    access_expires_ms INTEGER NOT NULL,
    issued_ms INTEGER NOT NULL,
    refresh_token TEXT,
    scopes TEXT NOT NULL,
    generation INTEGER NOT NULL,
    refresh_started_ms INTEGER,
    reauth TEXT,
    updated_ms INTEGER NOT NULL
);";

const COLUMNS: &str = "subject, kind, location_id, company_id, access_token, access_expires_ms, \
                       issued_ms, refresh_token, scopes, generation, refresh_started_ms, reauth";

impl TokenStore {
    /// The token store that goes with a mirror database.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push(".tokens");
        PathBuf::from(name)
    }

    /// Opens (creating, owner-only) the token store at `path`. A file readable by others is
    /// made owner-only, with a warning.
    pub fn open(path: &Path) -> Result<TokenStore, TokenStoreError> {
        let file_err = |detail: String| TokenStoreError::File {
            path: path.to_path_buf(),
            detail,
        };
        owner_only(path).map_err(file_err)?;
        let sqlite = |source| TokenStoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sqlite)?;
        // A rollback journal takes the main file's permissions; every commit reaches the disk
        // before it returns.
        conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL;")
            .map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        Ok(TokenStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, TokenStoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|source| TokenStoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    pub fn get(&self, subject: &str) -> Result<Option<Grant>, TokenStoreError> {
        let row = self.with(|c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM grants WHERE subject = ?1"))?
                .query_row([subject], raw_grant)
                .optional()
        })?;
        row.map(|r| self.grant(r)).transpose()
    }

    pub fn all(&self) -> Result<Vec<Grant>, TokenStoreError> {
        let rows = self.with(|c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM grants ORDER BY subject"))?
                .query_map([], raw_grant)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().map(|r| self.grant(r)).collect()
    }

    fn grant(&self, r: RawGrant) -> Result<Grant, TokenStoreError> {
        let kind = GrantKind::parse(&r.kind).ok_or_else(|| TokenStoreError::Kind {
            path: self.path.clone(),
            subject: r.subject.clone(),
            kind: r.kind.clone(),
        })?;
        Ok(Grant {
            subject: r.subject,
            kind,
            location_id: r.location_id,
            company_id: r.company_id,
            access: SecretString::from(r.access),
            access_expires_ms: r.access_expires_ms,
            issued_ms: r.issued_ms,
            refresh: r.refresh.map(SecretString::from),
            scopes: r.scopes.split_whitespace().map(str::to_string).collect(),
            generation: r.generation,
            refresh_started_ms: r.refresh_started_ms,
            reauth: r.reauth,
        })
    }

    /// Stores `g` whole (a new login, a refresh's new pair, a minted token), durably, and
    /// clears the refresh-started mark and any re-authorization flag.
    pub fn put(&self, g: &Grant) -> Result<(), TokenStoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO grants (subject, kind, location_id, company_id, access_token,
                   access_expires_ms, issued_ms, refresh_token, scopes, generation,
                   refresh_started_ms, reauth, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, ?11)
                 ON CONFLICT(subject) DO UPDATE SET kind = excluded.kind,
                   location_id = excluded.location_id, company_id = excluded.company_id,
                   access_token = excluded.access_token,
                   access_expires_ms = excluded.access_expires_ms, issued_ms = excluded.issued_ms,
                   refresh_token = excluded.refresh_token, scopes = excluded.scopes,
                   generation = excluded.generation, refresh_started_ms = NULL, reauth = NULL,
                   updated_ms = excluded.updated_ms",
                params![
                    g.subject,
                    g.kind.as_str(),
                    g.location_id,
                    g.company_id,
                    g.access.expose_secret(),
                    g.access_expires_ms,
                    g.issued_ms,
                    g.refresh.as_ref().map(|r| r.expose_secret().to_string()),
                    g.scopes.join(" "),
                    g.generation,
                    crate::model::now_ms(),
                ],
            )
            .map(drop)
        })
    }

    /// Records, durably, that a refresh of `subject` is about to be sent.
    pub fn mark_refresh_started(&self, subject: &str, at_ms: i64) -> Result<(), TokenStoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE grants SET refresh_started_ms = ?2, updated_ms = ?2 WHERE subject = ?1",
                params![subject, at_ms],
            )
            .map(drop)
        })
    }

    /// Clears the refresh-started mark (the request failed without reaching HighLevel's
    /// decision, so the refresh token is still the good one).
    pub fn clear_refresh_started(&self, subject: &str) -> Result<(), TokenStoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE grants SET refresh_started_ms = NULL WHERE subject = ?1",
                [subject],
            )
            .map(drop)
        })
    }

    /// Flags `subject` as needing a person (`why` says what happened and what to run), unless
    /// it was replaced since `generation` (a new login meanwhile is not flagged).
    pub fn mark_reauth(
        &self,
        subject: &str,
        generation: i64,
        why: &str,
    ) -> Result<(), TokenStoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE grants SET reauth = ?3, refresh_started_ms = NULL, updated_ms = ?4
                 WHERE subject = ?1 AND generation = ?2",
                params![subject, generation, why, crate::model::now_ms()],
            )
            .map(drop)
        })
    }

    /// Opens the file whose OS lock makes one process at a time renew `subject`:
    /// `<token store>.<subject>.lock` (the caller takes the lock, off the async workers).
    pub fn refresh_lock_file(&self, subject: &str) -> Result<std::fs::File, TokenStoreError> {
        let path = super::lock::lock_path(&self.path, subject);
        super::lock::open_lock_file(&path).map_err(|e| TokenStoreError::File {
            detail: format!("cannot open the refresh lock {}: {e}", path.display()),
            path: self.path.clone(),
        })
    }
}

struct RawGrant {
    subject: String,
    kind: String,
    location_id: Option<String>,
    company_id: Option<String>,
    access: String,
    access_expires_ms: i64,
    issued_ms: i64,
    refresh: Option<String>,
    scopes: String,
    generation: i64,
    refresh_started_ms: Option<i64>,
    reauth: Option<String>,
}

fn raw_grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawGrant> {
    Ok(RawGrant {
        subject: r.get(0)?,
        kind: r.get(1)?,
        location_id: r.get(2)?,
        company_id: r.get(3)?,
        access: r.get(4)?,
        access_expires_ms: r.get(5)?,
        issued_ms: r.get(6)?,
        refresh: r.get(7)?,
        scopes: r.get(8)?,
        generation: r.get(9)?,
        refresh_started_ms: r.get(10)?,
        reauth: r.get(11)?,
    })
}

/// Creates `path` owner-only if it does not exist; narrows an existing file to owner-only.
#[cfg(unix)]
fn owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it owner-only: {e}")),
    }
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read its permissions: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the token store was readable by others; making it owner-only (0600)"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("it is readable by others and cannot be made owner-only: {e}"))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(subject: &str) -> Grant {
        Grant {
            subject: subject.into(),
            kind: GrantKind::Location,
            location_id: Some("L1".into()),
            company_id: None,
            access: SecretString::from("AT-1"),
            access_expires_ms: 10,
            issued_ms: 1,
            refresh: Some(SecretString::from("RT-1")),
            scopes: vec!["contacts.readonly".into()],
            generation: 1,
            refresh_started_ms: None,
            reauth: None,
        }
    }

    #[test]
    fn grants_round_trip_and_marks_clear_on_put() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(&dir.path().join("t.tokens")).unwrap();
        s.put(&grant("location:L1")).unwrap();
        s.mark_refresh_started("location:L1", 5).unwrap();
        s.mark_reauth("location:L1", 0, "stale").unwrap();
        assert!(s.get("location:L1").unwrap().unwrap().reauth.is_none());
        s.mark_reauth("location:L1", 1, "why").unwrap();
        let g = s.get("location:L1").unwrap().unwrap();
        assert_eq!(
            (g.refresh_started_ms, g.reauth.as_deref()),
            (None, Some("why"))
        );
        s.mark_refresh_started("location:L1", 6).unwrap();
        assert_eq!(
            s.get("location:L1").unwrap().unwrap().refresh_started_ms,
            Some(6)
        );
        s.put(&grant("location:L1")).unwrap();
        let g = s.get("location:L1").unwrap().unwrap();
        assert_eq!((g.refresh_started_ms, g.reauth), (None, None));
        assert_eq!(g.refresh.unwrap().expose_secret(), "RT-1");
        assert!(!format!("{:?}", s.all().unwrap()).contains("AT-1"));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_owner_only_even_when_it_was_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tokens");
        drop(TokenStore::open(&path).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = TokenStore::open(&path).unwrap();
        s.put(&grant("location:L1")).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}

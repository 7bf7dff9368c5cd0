//! The reading commands open an existing mirror read-only and refuse anything else, leaving
//! the file as it was; `sql` is read-only even for ATTACH, VACUUM and PRAGMAs, and has a time
//! limit; `migrate` brings an older mirror up to date.

use crate::cli::{bin, text};
use crate::kit::{LOC, TOKEN};
use crate::query_cli::{mirror, ok};
use ghl_mirror::store::{create_at_version, current_schema_version};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const CONTACTS_ONLY: &str = "[subresources]\nkinds = []\n[businesses]\nenabled = false\n";

/// Runs `ghl-mirror --db <db> <args>` (no config file), killed if it runs past a minute.
async fn on(db: &Path, args: &[&str]) -> Output {
    let mut c = bin();
    c.arg("--db").arg(db).args(args);
    run(c).await
}

async fn run(c: std::process::Command) -> Output {
    let mut c = tokio::process::Command::from(c);
    c.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("the command ended within a minute")
        .unwrap()
}

/// Every reading command, with the arguments it needs.
const READERS: &[&[&str]] = &[
    &["sql", "SELECT 1"],
    &["status"],
    &["contacts", "list"],
    &["tasks", "list"],
    &["notes", "list"],
    &["appointments", "list"],
    &["export", "contacts"],
    &["serve", "--listen", "127.0.0.1:0"],
];

/// The files in `dir` but the sync's run lock files.
fn db_files(dir: &Path) -> Vec<String> {
    let mut v = files(dir);
    v.retain(|f| !f.ends_with(".lock"));
    v
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn reading_commands_refuse_a_plain_sqlite_file_naming_it_and_leave_it_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.sqlite");
    let c = Connection::open(&other).unwrap();
    c.execute_batch("CREATE TABLE mine (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO mine (body) VALUES ('mine');")
        .unwrap();
    drop(c);
    let before = std::fs::read(&other).unwrap();
    for args in READERS.iter().copied().chain([&["migrate"][..]]) {
        let out = on(&other, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains(&format!("{} is not a ghl-mirror database", other.display()))
                && e.contains("refinery_schema_history")
                && e.contains("ghl-mirror sync"),
            "{args:?}: {e}"
        );
        assert_eq!(std::fs::read(&other).unwrap(), before, "{args:?}");
        assert_eq!(files(dir.path()), ["other.sqlite"], "{args:?}");
    }
    let c = Connection::open(&other).unwrap();
    let tables: i64 = c
        .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");

    // A file that is not SQLite at all, and a missing one.
    let notes = dir.path().join("notes.txt");
    std::fs::write(
        &notes,
        "not a database, but long enough to have a header ".repeat(10),
    )
    .unwrap();
    let out = on(&notes, &["sql", "SELECT 1"]).await;
    assert!(
        text(&out.stderr).contains("not an SQLite database"),
        "{}",
        text(&out.stderr)
    );
    let missing = dir.path().join("missing.db");
    for args in READERS {
        let out = on(&missing, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains("no mirror at") && e.contains("ghl-mirror sync"),
            "{args:?}: {e}"
        );
        assert!(!missing.exists(), "{args:?} created nothing");
    }
}

/// A mirror written by `ghl-mirror sync` into `dir/name`, the process ended (so SQLite removed
/// its -wal and -shm files).
async fn synced(cfg: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let db = dir.join(name);
    ok(cfg, &["--db", db.to_str().unwrap(), "sync"]).await;
    assert_eq!(
        db_files(dir),
        [name],
        "no -wal or -shm after a finished sync"
    );
    db
}

#[tokio::test]
async fn reading_commands_read_a_finished_syncs_mirror_without_changing_it_even_in_a_read_only_directory()
 {
    let (k, cfg) = mirror(20, CONTACTS_ONLY).await;
    let dir = k.dir.path().join("ro");
    let db = synced(&cfg, &dir, "m.db").await;
    let before = std::fs::read(&db).unwrap();
    assert_eq!(&before[18..20], [2, 2], "a WAL-mode file");
    for args in [
        &["sql", "SELECT COUNT(*) AS n FROM contacts"][..],
        &["status"],
    ] {
        let out = on(&db, args).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = on(&db, &["sql", "SELECT COUNT(*) AS n FROM contacts"]).await;
    assert_eq!(text(&out.stdout), "n\n20\n");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not one byte changed");

    // The same file in a directory this user cannot write (as root: run as nobody).
    for f in files(&dir).iter().filter(|f| *f != "m.db") {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(k.dir.path(), 0o755);
    mode(&dir, 0o555);
    let root = is_root();
    let exe = k.dir.path().join("ghl-mirror");
    if root {
        // The test binary's own directory may be closed to other users.
        if std::fs::hard_link(env!("CARGO_BIN_EXE_ghl-mirror"), &exe).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_ghl-mirror"), &exe).unwrap();
        }
    }
    for args in [
        &["sql", "SELECT COUNT(*) AS n FROM contacts"][..],
        &["status"],
        &["contacts", "list"],
    ] {
        let mut c = if root {
            use std::os::unix::process::CommandExt;
            let mut c = std::process::Command::new(&exe);
            c.uid(65534).gid(65534).stdin(std::process::Stdio::null());
            c
        } else {
            bin()
        };
        c.arg("--db").arg(&db).args(args);
        let out = run(c).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(files(&dir), ["m.db"]);
    assert_eq!(std::fs::read(&db).unwrap(), before);
    mode(&dir, 0o755);
}

/// Whether this process runs as root (then file permissions do not stop it).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn an_older_mirror_is_refused_until_migrate_and_a_newer_one_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let current = current_schema_version();
    let old = dir.path().join("old.db");
    create_at_version(&old, current - 1).unwrap();
    let before = std::fs::read(&old).unwrap();
    for args in READERS {
        let out = on(&old, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains(&format!("schema version {}", current - 1))
                && e.contains("ghl-mirror migrate"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(std::fs::read(&old).unwrap(), before);
    let out = on(&old, &["migrate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: schema version {current} (migrated from version {})\n",
            old.display(),
            current - 1
        )
    );
    let out = on(&old, &["sql", "SELECT COUNT(*) AS n FROM contacts"]).await;
    assert_eq!(text(&out.stdout), "n\n0\n", "{}", text(&out.stderr));

    let fresh = dir.path().join("fresh.db");
    let out = on(&fresh, &["migrate"]).await;
    assert_eq!(
        text(&out.stdout),
        format!("{}: schema version {current} (created)\n", fresh.display())
    );

    let newer = dir.path().join("newer.db");
    std::fs::copy(&fresh, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (?1, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
            [current + 1],
        )
        .unwrap();
    let before = std::fs::read(&newer).unwrap();
    for args in READERS.iter().copied().chain([&["migrate"][..]]) {
        let out = on(&newer, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains("written by a newer ghl-mirror")
                && e.contains(&format!("schema version {}", current + 1)),
            "{args:?}: {e}"
        );
    }
    assert_eq!(std::fs::read(&newer).unwrap(), before);
}

#[tokio::test]
async fn sql_refuses_attach_vacuum_and_writing_pragmas_and_stops_a_runaway_query() {
    let (k, cfg) = mirror(15, &format!("{CONTACTS_ONLY}[sql]\ntimeout = \"1s\"\n")).await;
    let dir = k.dir.path().join("sql");
    let db = synced(&cfg, &dir, "m.db").await;
    let header = std::fs::read(&db).unwrap()[..100].to_vec();
    let sql = |args: &[&str]| {
        let mut c = bin();
        c.current_dir(&dir)
            .arg("--config")
            .arg(&cfg)
            .arg("--db")
            .arg(&db)
            .arg("sql")
            .args(args);
        run(c)
    };
    let refused = |out: &Output, what: &str| {
        assert_eq!(out.status.code(), Some(1), "{what}");
        let e = text(&out.stderr);
        assert!(
            e.contains(&format!("{what} is refused")) && e.contains("only SELECT"),
            "{what}: {e}"
        );
    };
    refused(
        &sql(&["PRAGMA journal_mode = DELETE"]).await,
        "PRAGMA journal_mode = DELETE",
    );
    refused(
        &sql(&["PRAGMA user_version = 7"]).await,
        "PRAGMA user_version = 7",
    );
    refused(&sql(&["ATTACH 'new.db' AS x"]).await, "ATTACH \"new.db\"");
    let into = dir.join("x.db");
    refused(
        &sql(&[&format!("VACUUM INTO '{}'", into.display())]).await,
        "VACUUM",
    );
    refused(&sql(&["VACUUM INTO 'y.db'"]).await, "VACUUM");
    refused(
        &sql(&["DELETE FROM contacts"]).await,
        "DELETE FROM contacts",
    );
    assert_eq!(
        &std::fs::read(&db).unwrap()[..100],
        &header[..],
        "header unchanged"
    );
    // A read-only reader of a WAL file leaves SQLite's -shm (and an empty -wal) beside it.
    assert_eq!(
        db_files(&dir),
        ["m.db", "m.db-shm", "m.db-wal"],
        "no file created"
    );
    assert_eq!(std::fs::metadata(dir.join("m.db-wal")).unwrap().len(), 0);

    let runaway =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT MAX(i) FROM n";
    for (args, after) in [
        (&[runaway][..], "1s"),
        (&[runaway, "--timeout", "2s"], "2s"),
    ] {
        let t = Instant::now();
        let out = sql(args).await;
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        assert_eq!(out.status.code(), Some(1));
        let e = text(&out.stderr);
        assert!(
            e.contains(&format!("query stopped after {after}")) && e.contains("--timeout"),
            "{e}"
        );
    }

    let out = sql(&["SELECT 1", "--timeout", "0s"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error: {}",
        text(&out.stderr)
    );
    let out = sql(&["PRAGMA table_info(contacts)", "--format", "csv"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(",email,"),
        "{}",
        text(&out.stdout)
    );
    let out = sql(&["PRAGMA journal_mode"]).await;
    assert_eq!(text(&out.stdout), "journal_mode\nwal\n");
    let out = sql(&["PRAGMA integrity_check"]).await;
    assert_eq!(text(&out.stdout), "integrity_check\nok\n");
    let out = sql(&["SELECT COUNT(*) AS n FROM contacts WHERE deleted_at IS NULL"]).await;
    assert_eq!(text(&out.stdout), "n\n15\n");
    assert_eq!(std::fs::read(&db).unwrap()[..100], header[..]);
}

#[tokio::test]
async fn serve_answers_from_a_read_only_mirror_while_a_sync_writes_it() {
    use tokio::io::AsyncBufReadExt;
    let (k, cfg) = mirror(40, CONTACTS_ONLY).await;
    let dir = k.dir.path().join("served");
    let db = synced(&cfg, &dir, "m.db").await;
    let mut c = bin();
    c.arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped());
    let mut c = tokio::process::Command::from(c);
    let mut server = c.kill_on_drop(true).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let http = reqwest::Client::new();
    let get = |id: String| {
        let (http, addr) = (http.clone(), addr.clone());
        async move {
            http.get(format!("http://{addr}/contacts/{id}"))
                .header("Version", "2021-07-28")
                .send()
                .await
                .unwrap()
        }
    };
    let known = k.sandbox.live_contact_ids(LOC)[0].clone();
    assert_eq!(get(known.clone()).await.status(), 200);

    // A new contact upstream; a sync writes it while the server keeps answering.
    let new = k.sandbox.create_contact(LOC);
    assert_ne!(get(new.clone()).await.status(), 200, "not mirrored yet");
    let mut sync = bin();
    sync.arg("--config")
        .arg(&cfg)
        .arg("--db")
        .arg(&db)
        .args(["sync", "--full"])
        .env("TEST_TOKEN", TOKEN);
    let mut sync = tokio::process::Command::from(sync);
    let mut sync = sync.kill_on_drop(true).spawn().unwrap();
    let mut answered = 0;
    let status = loop {
        tokio::select! {
            status = sync.wait() => break status.unwrap(),
            r = get(known.clone()) => {
                assert_eq!(r.status(), 200, "while the sync writes");
                answered += 1;
            }
        }
    };
    assert!(status.success());
    assert!(answered > 0);
    let r = get(new.clone()).await;
    assert_eq!(r.status(), 200, "the server reads what the sync wrote");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["contact"]["id"], new.as_str());
}

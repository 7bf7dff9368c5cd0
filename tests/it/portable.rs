//! The mirror file read by other tools: the system's `sqlite3` command and Python's `sqlite3`
//! module (an older SQLite than the bundled one), Datasette and DuckDB, through
//! `tests/tools/check_mirror.py`. A file made at schema v8 is converted and then reads as well.
//! The tools are installed by `.ci/run`; a missing one fails the test, naming what to install.

use crate::kit::*;
use ghl_mirror::model::{SubKind, ms_from_time_text};
use ghl_mirror::store::Store;
use ghl_mirror::sync::{
    BusinessOptions, SubOptions, index_text, sync_businesses, sync_subresources,
};
use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod v8 {
    refinery::embed_migrations!("migrations");
}

const INSTALL: &str = "install the tools with `apt-get install -y sqlite3` and \
                       `python3 -m pip install -r tests/tools/requirements.txt` (.ci/run does both)";

/// The reporting views the README documents.
const VIEWS: [&str; 5] = [
    "live_contacts",
    "live_custom_values",
    "open_tasks",
    "upcoming_appointments",
    "contact_freshness",
];

fn stop() -> ghl_mirror::sync::StopSignal {
    tokio::sync::watch::channel(false).1
}

/// A mirror of 300 contacts with their tasks, notes, appointments, businesses and custom
/// fields, its full-text index caught up, as a sync run leaves it.
async fn full_mirror() -> Kit {
    let k = kit(300).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let subs = SubOptions {
        run_requests: 1_000_000,
        daily_share: 1.0,
        ..SubOptions::default()
    };
    assert_success(&sync_subresources(&k.store, &client, &subs, stop(), None).await);
    assert_success(&sync_businesses(&k.store, &client, &BusinessOptions::default(), stop()).await);
    index_text(&k.store, &stop()).await.unwrap();
    k
}

/// Runs `tests/tools/check_mirror.py` on `db` with the given checks; its JSON answer.
fn check_mirror(db: &Path, checks: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/check_mirror.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(db)
        .args(checks)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {INSTALL}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_mirror.py {checks:?} failed ({}): {stderr}\n{INSTALL}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// Runs SQL with the system's `sqlite3` command, read-only; its output lines.
fn sqlite3_cli(db: &Path, sql: &str) -> Vec<String> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the sqlite3 command ({e}): {INSTALL}"));
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Row counts of every table and view as the bundled SQLite sees them, the full-text index's
/// internals aside.
fn bundled_counts(db: &Path) -> BTreeMap<String, i64> {
    let c = Connection::open(db).unwrap();
    let names: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')
               AND name NOT LIKE 'sqlite_%'
               AND name NOT IN ('contacts_fts', 'contacts_fts_data', 'contacts_fts_idx',
                                'contacts_fts_content', 'contacts_fts_docsize',
                                'contacts_fts_config')
             ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    names
        .into_iter()
        .map(|n| {
            let count = c
                .query_row(&format!("SELECT COUNT(*) FROM \"{n}\""), [], |r| r.get(0))
                .unwrap();
            (n, count)
        })
        .collect()
}

/// What the bundled SQLite computes for a date-time text, as schema v2 to v8 generated it.
fn bundled_ms(c: &Connection, text: Option<&str>) -> Option<i64> {
    c.query_row(
        "SELECT CAST(ROUND(unixepoch(?1, 'subsec') * 1000) AS INTEGER)",
        [text],
        |r| r.get(0),
    )
    .unwrap()
}

/// The older SQLite (Python's module and the `sqlite3` command) reads `db` whole: integrity
/// `ok`, every table and view with the bundled SQLite's row counts, and every `*_ms` value as
/// Rust and the bundled SQLite compute it from the raw JSON.
fn assert_old_sqlite_reads(db: &Path) {
    let lite = &check_mirror(db, &["sqlite"])["sqlite"];
    let version = lite["version"].as_str().unwrap();
    assert_eq!(
        lite["integrity_check"],
        serde_json::json!(["ok"]),
        "SQLite {version}"
    );
    assert!(
        lite["fts_error"].is_null(),
        "SQLite {version}: {}",
        lite["fts_error"]
    );
    assert!(
        lite["fts_matches"].as_i64().unwrap() > 0,
        "SQLite {version} searches"
    );
    let expected = bundled_counts(db);
    let objects = lite["objects"].as_object().unwrap();
    let seen: BTreeMap<String, i64> = objects
        .iter()
        .map(|(k, v)| (k.clone(), v["rows"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen, expected, "row counts in SQLite {version}");
    for view in VIEWS {
        assert!(objects.contains_key(view), "{view} in SQLite {version}");
    }
    let bundled = Connection::open(db).unwrap();
    let mut checked = 0;
    for (rows, keys) in [
        (&lite["tasks_ms"], &["dueDate"][..]),
        (&lite["appointments_ms"], &["startTime", "endTime"][..]),
    ] {
        for row in rows.as_array().unwrap() {
            let raw: Value = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
            for (i, key) in keys.iter().enumerate() {
                let text = raw[key].as_str();
                let stored = row[2 + i].as_i64();
                assert_eq!(stored, text.and_then(ms_from_time_text), "{key} {text:?}");
                assert_eq!(stored, bundled_ms(&bundled, text), "{key} {text:?}");
                checked += usize::from(stored.is_some());
            }
        }
    }
    assert!(checked > 100, "only {checked} dates checked");
    let open_tasks = lite["open_tasks_ms"].as_array().unwrap();
    assert!(!open_tasks.is_empty() && open_tasks.iter().all(|t| t[1].is_i64()));
    // The command-line shell, too (often older still than Python's module).
    assert_eq!(sqlite3_cli(db, "PRAGMA integrity_check"), ["ok"]);
    let nulls = sqlite3_cli(
        db,
        "SELECT (SELECT COUNT(*) FROM tasks WHERE due_date_ms IS NULL
                   AND json_extract(raw, '$.dueDate') IS NOT NULL)
              + (SELECT COUNT(*) FROM appointments WHERE start_ms IS NULL
                   AND json_extract(raw, '$.startTime') IS NOT NULL)",
    );
    assert_eq!(nulls, ["0"], "dates the sqlite3 command reads as NULL");
    for view in VIEWS {
        let n = sqlite3_cli(db, &format!("SELECT COUNT(*) FROM {view}"));
        assert_eq!(
            n,
            [expected[view].to_string()],
            "{view} in the sqlite3 command"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_sqlite_datasette_and_duckdb_read_every_table_and_view_of_a_mirror() {
    let k = full_mirror().await;
    let db = k.dir.path().join("mirror.db");
    assert!(k.count("SELECT COUNT(*) FROM open_tasks") > 0);
    assert_old_sqlite_reads(&db);

    let both = check_mirror(&db, &["datasette", "duckdb"]);
    let ds = &both["datasette"];
    assert!(ds["error"].is_null(), "{}", ds["error"]);
    let pages = ds["pages"].as_object().unwrap();
    let expected = bundled_counts(&db);
    assert_eq!(
        pages.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "Datasette serves every table and view"
    );
    for (name, page) in pages {
        assert_eq!(
            page["status"], 200,
            "Datasette {name}.json: {}",
            page["error"]
        );
        assert!(
            page["error"].is_null(),
            "Datasette {name}.json: {}",
            page["error"]
        );
        assert_eq!(
            page["rows"].as_i64().unwrap(),
            expected[name].min(100),
            "Datasette {name}.json rows"
        );
    }
    let duck = &both["duckdb"];
    assert_eq!(duck["errors"], serde_json::json!({}), "DuckDB");
    for view in VIEWS {
        assert_eq!(duck["counts"][view], expected[view], "DuckDB {view}");
    }
}

/// Copies what a sync stored in `src` into a new file at schema v8, as ghl-mirror up to v8
/// kept it (its `*_ms` columns generated, its full-text index contentless and filled).
fn v8_copy(src: &Path, dst: &Path) {
    let mut c = Connection::open(dst).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    v8::migrations::runner()
        .set_target(refinery::Target::Version(8))
        .run(&mut c)
        .unwrap();
    c.execute("ATTACH ?1 AS src", [src.to_str().unwrap()])
        .unwrap();
    let tx = c.transaction().unwrap();
    for t in [
        "locations",
        "contacts",
        "contact_tags",
        "contact_custom_fields",
        "sync_state",
        "sync_runs",
        "contact_fetches",
        "business_contacts",
        "tasks",
        "notes",
        "appointments",
        "businesses",
        "custom_fields",
    ] {
        // The v8 table's stored columns (table_info leaves generated ones out).
        let cols: Vec<String> = tx
            .prepare(&format!(
                "SELECT name FROM pragma_table_info('{t}', 'main')"
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let cols = cols.join(", ");
        tx.execute(
            &format!("INSERT INTO main.{t} ({cols}) SELECT {cols} FROM src.{t}"),
            [],
        )
        .unwrap();
    }
    tx.execute_batch(
        "INSERT INTO contacts_fts (rowid, name, email, phone, company, tags, notes, location)
           SELECT rowid, name, email, phone, company, tags, notes, location
           FROM contacts_fts_source;
         DELETE FROM contacts_fts_dirty;
         UPDATE contacts_fts_state SET last_pk = (SELECT MAX(pk) FROM contacts);",
    )
    .unwrap();
    tx.commit().unwrap();
    c.execute_batch("DETACH src").unwrap();
}

/// Every (kind, location, id, raw, deleted_at) of contacts, tasks, notes and appointments.
fn holdings(db: &Path) -> Vec<(String, String, String, String, Option<String>)> {
    let c = Connection::open(db).unwrap();
    let mut out = Vec::new();
    for t in ["contacts", "tasks", "notes", "appointments"] {
        let mut st = c
            .prepare(&format!(
                "SELECT location_id, id, raw, deleted_at FROM {t} ORDER BY location_id, id"
            ))
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok((t.to_string(), r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_at_schema_v8_is_converted_without_losing_a_record_and_then_reads_in_an_older_sqlite()
 {
    let k = full_mirror().await;
    let src = k.dir.path().join("mirror.db");
    let old = k.dir.path().join("v8.db");
    v8_copy(&src, &old);
    let before = holdings(&old);
    for kind in SubKind::ALL {
        assert!(
            before.iter().any(|h| h.0 == kind.as_str()),
            "{kind:?} in the v8 file"
        );
    }
    // Before the conversion, the older SQLite does not read it (what schema v9 fixes).
    let lite = &check_mirror(&old, &["sqlite"])["sqlite"];
    assert_ne!(lite["integrity_check"], serde_json::json!(["ok"]));
    assert!(lite["fts_error"].is_string());

    let store = Store::open(&old).unwrap();
    assert_eq!(
        holdings(&old),
        before,
        "nothing lost or changed by the conversion"
    );
    let live = k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL") as u64;
    assert_eq!(
        store.text_pending().unwrap(),
        live,
        "to index again, each once"
    );
    index_text(&store, &stop()).await.unwrap();
    assert_eq!(store.text_pending().unwrap(), 0);
    drop(store);
    assert_old_sqlite_reads(&old);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_mirror_counts_each_contact_not_yet_searchable_once_even_with_notes() {
    let k = kit(300).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let subs = SubOptions {
        run_requests: 1_000_000,
        daily_share: 1.0,
        ..SubOptions::default()
    };
    assert_success(&sync_subresources(&k.store, &client, &subs, stop(), None).await);
    let with_notes =
        k.count("SELECT COUNT(DISTINCT contact_id) FROM notes WHERE deleted_at IS NULL");
    assert!(with_notes > 0);
    // The run's catch-up has not happened yet (as when a first sync is stopped): every live
    // contact is pending, once.
    let live = k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL") as u64;
    assert_eq!(k.store.text_pending().unwrap(), live);
    index_text(&k.store, &stop()).await.unwrap();
    assert_eq!(k.store.text_pending().unwrap(), 0);
}

//! The read commands as a user runs them: `contacts get|list|search`, `tasks list`,
//! `notes list`, `appointments list` and `export`, against a mirror synced from the sandbox by
//! the binary itself. Results are checked against the sandbox's own data where it has them, and
//! against the mirror's tables otherwise.

use crate::cli::{bin, text};
use crate::kit::*;
use ghl_mirror::model::ms_from_iso;
use ghl_mirror::sandbox::SandboxConfig;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A config for the kit's sandbox with these locations (tokens in TEST_TOKEN, TEST_TOKEN2).
pub(crate) fn write_config(dir: &Path, base_url: &str, extra: &str, locations: &[&str]) -> PathBuf {
    let p = dir.join("config.toml");
    let mut text = format!(
        "[database]\npath = {:?}\n[upstream]\nbase_url = {base_url:?}\n\
         [upstream.rate_limit]\nburst_max = 10000\nsafety_margin = \"0ms\"\n{extra}\n",
        dir.join("mirror.db").display().to_string()
    );
    for (i, l) in locations.iter().enumerate() {
        let var = if i == 0 { "TEST_TOKEN" } else { "TEST_TOKEN2" };
        text.push_str(&format!(
            "[[locations]]\nid = \"{l}\"\ntoken_env = \"{var}\"\n"
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `ghl-mirror --config <config> <args>` with both test tokens set.
pub(crate) async fn ghl(config: &Path, args: &[&str]) -> Output {
    let mut c = bin();
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("TEST_TOKEN", TOKEN)
        .env("TEST_TOKEN2", TOKEN2);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// Runs a command that must succeed and returns its stdout.
pub(crate) async fn ok(config: &Path, args: &[&str]) -> String {
    let out = ghl(config, args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command with `--format json` and returns its array.
async fn json(config: &Path, args: &[&str]) -> Vec<Value> {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let out = ok(config, &args).await;
    match serde_json::from_str(&out).unwrap() {
        Value::Array(items) => items,
        v => panic!("not an array: {v}"),
    }
}

/// A sandbox of `contacts` contacts in one location, mirrored (contacts, tasks, notes,
/// appointments, businesses) by `ghl-mirror sync`.
pub(crate) async fn mirror(contacts: usize, extra: &str) -> (Kit, PathBuf) {
    let k = kit(contacts).await;
    let cfg = write_config(k.dir.path(), &k.sandbox.base_url(), extra, &[LOC]);
    ok(&cfg, &["sync"]).await;
    (k, cfg)
}

/// The sandbox's live contacts (as GET /contacts/:id returns them).
fn upstream_contacts(k: &Kit) -> Vec<Value> {
    k.sandbox
        .live_contact_ids(LOC)
        .iter()
        .map(|id| k.sandbox.contact_json(LOC, id).unwrap())
        .collect()
}

fn ids(items: &[Value], key: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|v| v[key].as_str().unwrap().to_string())
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn has_tag(c: &Value, tag: &str) -> bool {
    c["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t.as_str().unwrap().to_lowercase() == tag.to_lowercase())
}

/// The most common tag on live contacts, and the second most common.
fn common_tags(k: &Kit) -> (String, String) {
    let t = k
        .store
        .query(
            "SELECT lower(t.tag) FROM contact_tags t JOIN contacts c ON c.pk = t.contact_pk
             WHERE c.deleted_at IS NULL GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT 2",
            2,
        )
        .unwrap();
    let tag = |i: usize| t.rows[i][0].clone().unwrap();
    (tag(0), tag(1))
}

#[tokio::test]
async fn contacts_list_with_a_tag_returns_exactly_the_live_contacts_carrying_it_as_stored() {
    let (k, cfg) = mirror(300, "").await;
    let (tag, other) = common_tags(&k);
    let got = json(
        &cfg,
        &["contacts", "list", "--tag", &tag, "--limit", "10000"],
    )
    .await;
    let tagged = k.count(&format!(
        "SELECT COUNT(DISTINCT c.pk) FROM contact_tags t JOIN contacts c ON c.pk = t.contact_pk
         WHERE c.deleted_at IS NULL AND lower(t.tag) = '{tag}'"
    ));
    assert!(tagged > 0);
    assert_eq!(got.len() as i64, tagged);
    for c in &got {
        assert!(has_tag(c, &tag), "{c}");
        let mut stored: Value =
            serde_json::from_str(&k.store.contact_raw(LOC, str_of(c, "id")).unwrap().unwrap())
                .unwrap();
        stored.as_object_mut().unwrap().remove("searchAfter");
        assert_eq!(c, &stored, "the HighLevel JSON as stored");
    }
    let dates: Vec<i64> = got
        .iter()
        .map(|c| ms_from_iso(str_of(c, "dateUpdated")).unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "most recently updated first"
    );

    // Every tag given is required; case does not matter.
    let both = json(
        &cfg,
        &[
            "contacts",
            "list",
            "--tag",
            &tag.to_uppercase(),
            "--tag",
            &other,
            "--limit",
            "10000",
        ],
    )
    .await;
    let want: BTreeSet<String> = upstream_contacts(&k)
        .iter()
        .filter(|c| has_tag(c, &tag) && has_tag(c, &other))
        .map(|c| str_of(c, "id").to_string())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids(&both, "id"), want);
}

#[tokio::test]
async fn contacts_list_filters_by_business_assigned_user_update_time_and_text_as_the_sandbox_data_says()
 {
    let (k, cfg) = mirror(300, "").await;
    let upstream = upstream_contacts(&k);
    let pick = |key: &str| {
        upstream
            .iter()
            .find_map(|c| c[key].as_str().map(str::to_string))
            .unwrap()
    };
    let list = |extra: Vec<String>| {
        let cfg = cfg.clone();
        async move {
            let mut args: Vec<&str> = vec!["contacts", "list", "--limit", "10000"];
            args.extend(extra.iter().map(String::as_str));
            json(&cfg, &args).await
        }
    };
    let want = |pred: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        upstream
            .iter()
            .filter(|c| pred(c))
            .map(|c| str_of(c, "id").to_string())
            .collect()
    };

    let business = pick("businessId");
    let got = list(vec!["--business".into(), business.clone()]).await;
    assert_eq!(
        ids(&got, "id"),
        want(&|c| str_of(c, "businessId") == business)
    );

    let user = pick("assignedTo");
    let got = list(vec!["--assigned-to".into(), user.clone()]).await;
    assert_eq!(ids(&got, "id"), want(&|c| str_of(c, "assignedTo") == user));

    let mut updated: Vec<&str> = upstream.iter().map(|c| str_of(c, "dateUpdated")).collect();
    updated.sort_unstable();
    let since = updated[updated.len() / 2].to_string();
    let since_ms = ms_from_iso(&since).unwrap();
    let got = list(vec!["--updated-since".into(), since.clone()]).await;
    let expected = want(&|c| ms_from_iso(str_of(c, "dateUpdated")).unwrap() >= since_ms);
    assert!(expected.len() >= updated.len() / 2);
    assert_eq!(ids(&got, "id"), expected);

    let matches_text = |c: &Value, needle: &str| {
        ["name", "email", "phone", "companyName"]
            .iter()
            .any(|k| str_of(c, k).to_lowercase().contains(needle))
    };
    let got = list(vec!["--text".into(), "SON".into()]).await;
    let expected = want(&|c| matches_text(c, "son"));
    assert!(!expected.is_empty());
    assert_eq!(ids(&got, "id"), expected);

    // All together: every filter must hold.
    let (tag, _) = common_tags(&k);
    let got = list(vec![
        "--tag".into(),
        tag.clone(),
        "--text".into(),
        "a".into(),
        "--updated-since".into(),
        since,
    ])
    .await;
    assert_eq!(
        ids(&got, "id"),
        want(&|c| has_tag(c, &tag)
            && matches_text(c, "a")
            && ms_from_iso(str_of(c, "dateUpdated")).unwrap() >= since_ms)
    );
}

#[tokio::test]
async fn contacts_list_stops_at_the_limit_and_says_how_many_matched() {
    let (k, cfg) = mirror(120, "").await;
    let out = ghl(
        &cfg,
        &["contacts", "list", "--limit", "5", "--format", "csv"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,name,email,phone,company_name,tags,business_id,assigned_to,date_added,date_updated,location_id"
    );
    assert_eq!(lines.len(), 6);
    let live = k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL");
    assert!(
        text(&out.stderr).contains(&format!("5 of {live} matching contacts")),
        "{}",
        text(&out.stderr)
    );
    // The table is the default on a terminal and elsewhere.
    let table = ok(&cfg, &["contacts", "list", "--limit", "2"]).await;
    assert!(table.starts_with("id "), "{table}");
    assert_eq!(table.lines().count(), 3);
}

#[tokio::test]
async fn contacts_get_prints_the_stored_json_or_a_field_table_and_refuses_unknown_and_deleted_ids()
{
    let (k, cfg) = mirror(80, "").await;
    let id = k
        .store
        .query(
            "SELECT c.id FROM contacts c WHERE json_array_length(c.tags) >= 2 LIMIT 1",
            1,
        )
        .unwrap()
        .rows[0][0]
        .clone()
        .unwrap();
    let got: Value =
        serde_json::from_str(&ok(&cfg, &["contacts", "get", &id, "--format", "json"]).await)
            .unwrap();
    let mut stored: Value =
        serde_json::from_str(&k.store.contact_raw(LOC, &id).unwrap().unwrap()).unwrap();
    stored.as_object_mut().unwrap().remove("searchAfter");
    assert_eq!(got, stored);
    let line = ok(&cfg, &["contacts", "get", &id, "--format", "ndjson"]).await;
    assert_eq!(line.lines().count(), 1);
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), stored);

    let table = ok(&cfg, &["contacts", "get", &id, "--location", LOC]).await;
    let tags: Vec<&str> = stored["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let tag_line = table.lines().find(|l| l.starts_with("tags ")).unwrap();
    assert_eq!(tag_line.trim_start_matches("tags").trim(), tags.join(", "));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("id ") && l.ends_with(&id))
    );

    let out = ghl(&cfg, &["contacts", "get", "noSuchContact"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no contact noSuchContact in the mirror"),
        "{}",
        text(&out.stderr)
    );

    assert!(k.sandbox.delete_contact(LOC, &id));
    ok(&cfg, &["sync", "--full", "--stream", "contacts"]).await;
    let out = ghl(&cfg, &["contacts", "get", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("contact {id} was deleted upstream")),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn contacts_search_ranks_the_contact_whose_email_is_searched_first() {
    let (k, cfg) = mirror(200, "").await;
    let c = upstream_contacts(&k)
        .into_iter()
        .find(|c| c["email"].is_string())
        .unwrap();
    let email = str_of(&c, "email");
    let got = json(&cfg, &["contacts", "search", email, "--limit", "3"]).await;
    assert!(!got.is_empty() && got.len() <= 3);
    assert_eq!(got[0]["rank"], 1);
    assert_eq!(got[0]["id"], c["id"]);
    assert_eq!(got[0]["email"], c["email"]);
    assert_eq!(got[0]["location"], LOC);
    assert!(got[0]["score"].as_f64().unwrap() > 0.0);

    let out = ghl(&cfg, &["contacts", "search", " -- "]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nothing to search for"));
}

#[tokio::test]
async fn tasks_list_open_and_due_before_returns_exactly_the_sandboxs_matching_tasks_soonest_first()
{
    let (k, cfg) = mirror(300, "").await;
    let all: Vec<Value> = k
        .sandbox
        .live_contact_ids(LOC)
        .iter()
        .flat_map(|id| k.sandbox.tasks_json(LOC, id).unwrap())
        .collect();
    let mut dues: Vec<i64> = all
        .iter()
        .map(|t| ms_from_iso(str_of(t, "dueDate")).unwrap())
        .collect();
    dues.sort_unstable();
    let before_ms = dues[dues.len() / 2];
    let before = ghl_mirror::model::iso_from_ms(before_ms);
    let got = json(
        &cfg,
        &[
            "tasks",
            "list",
            "--open",
            "--due-before",
            &before,
            "--limit",
            "100000",
        ],
    )
    .await;
    let want: BTreeSet<String> = all
        .iter()
        .filter(|t| {
            t["completed"] == false && ms_from_iso(str_of(t, "dueDate")).unwrap() < before_ms
        })
        .map(|t| str_of(t, "id").to_string())
        .collect();
    assert!(!want.is_empty() && want.len() < all.len());
    assert_eq!(ids(&got, "id"), want);
    assert_eq!(got.len(), want.len(), "no task twice");
    let got_dues: Vec<i64> = got
        .iter()
        .map(|t| ms_from_iso(str_of(t, "due_date")).unwrap())
        .collect();
    assert!(
        got_dues.windows(2).all(|w| w[0] <= w[1]),
        "soonest due first"
    );
    for t in &got {
        assert_eq!(t["completed"], false);
        let contact = k
            .sandbox
            .contact_json(LOC, str_of(t, "contact_id"))
            .unwrap();
        assert_eq!(t["contact_name"], contact["name"]);
    }
    let sql = k.count(&format!(
        "SELECT COUNT(*) FROM open_tasks WHERE due_date_ms < {before_ms}"
    ));
    assert_eq!(got.len() as i64, sql, "the open_tasks view agrees");

    // A date and a duration are read too.
    let out = ok(&cfg, &["tasks", "list", "--due-before", "2000-01-01"]).await;
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    let out = ok(
        &cfg,
        &[
            "tasks",
            "list",
            "--due-before",
            "+3650d",
            "--limit",
            "100000",
            "--format",
            "ndjson",
        ],
    )
    .await;
    assert_eq!(out.lines().count(), all.len());
}

/// Marks a contact tombstoned without touching its records (as a crash between the two would
/// leave it), and one task of another contact tombstoned.
fn tombstone_directly(k: &Kit, contact: &str, task: &str) {
    let c = rusqlite::Connection::open(k.dir.path().join("mirror.db")).unwrap();
    c.execute(
        "UPDATE contacts SET deleted_at = '2025-01-01T00:00:00.000Z' WHERE id = ?1",
        [contact],
    )
    .unwrap();
    c.execute(
        "UPDATE tasks SET deleted_at = '2025-01-01T00:00:00.000Z' WHERE id = ?1",
        [task],
    )
    .unwrap();
}

#[tokio::test]
async fn lists_leave_out_tombstoned_records_and_every_record_of_a_tombstoned_contact() {
    let (k, cfg) = mirror(200, "").await;
    let pick = |sql: &str| k.store.query(sql, 1).unwrap().rows[0][0].clone().unwrap();
    // A contact with a task, a note and an appointment.
    let contact = pick(
        "SELECT t.contact_id FROM tasks t
         JOIN notes n ON n.contact_id = t.contact_id
         JOIN appointments a ON a.contact_id = t.contact_id LIMIT 1",
    );
    let task = pick(&format!(
        "SELECT id FROM tasks WHERE contact_id <> '{contact}' LIMIT 1"
    ));
    tombstone_directly(&k, &contact, &task);

    for (command, table) in [
        ("tasks", "tasks"),
        ("notes", "notes"),
        ("appointments", "appointments"),
    ] {
        let got = json(&cfg, &[command, "list", "--limit", "100000"]).await;
        assert!(
            got.iter().all(|r| r["contact_id"] != contact.as_str()),
            "{command}"
        );
        let live = k.count(&format!(
            "SELECT COUNT(*) FROM {table} r JOIN contacts c
               ON c.location_id = r.location_id AND c.id = r.contact_id
             WHERE r.deleted_at IS NULL AND c.deleted_at IS NULL"
        ));
        assert_eq!(got.len() as i64, live, "{command}");
        let of_contact = json(&cfg, &[command, "list", "--contact", &contact]).await;
        assert!(of_contact.is_empty(), "{command}");
    }
    let tasks = json(&cfg, &["tasks", "list", "--limit", "100000"]).await;
    assert!(tasks.iter().all(|t| t["id"] != task.as_str()));
}

#[tokio::test]
async fn notes_come_newest_first_and_upcoming_appointments_start_from_now_on() {
    // Seeded appointments start around today; contacts created now have appointments ahead too.
    let k = kit(150).await;
    k.sandbox.churn(LOC, 60, 0, 0);
    let cfg = write_config(k.dir.path(), &k.sandbox.base_url(), "", &[LOC]);
    ok(&cfg, &["sync"]).await;
    let notes = json(&cfg, &["notes", "list", "--limit", "100000"]).await;
    assert_eq!(
        notes.len() as i64,
        k.count("SELECT COUNT(*) FROM notes WHERE deleted_at IS NULL")
    );
    let added: Vec<i64> = notes
        .iter()
        .map(|n| ms_from_iso(str_of(n, "date_added")).unwrap())
        .collect();
    assert!(added.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let few = json(&cfg, &["notes", "list", "--limit", "7"]).await;
    assert_eq!(few, notes[..7]);

    let upcoming_sql = "SELECT COUNT(*) FROM appointments WHERE deleted_at IS NULL AND start_ms >= unixepoch('now') * 1000";
    let at_most = k.count(upcoming_sql);
    let got = json(
        &cfg,
        &["appointments", "list", "--upcoming", "--limit", "100000"],
    )
    .await;
    let at_least = k.count(upcoming_sql);
    assert!(
        (at_least..=at_most).contains(&(got.len() as i64)),
        "{} upcoming, SQL says {at_least}..={at_most}",
        got.len()
    );
    assert!(at_least > 0);
    let starts: Vec<&str> = got.iter().map(|a| str_of(a, "start_time")).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "by start time");
    let all = json(&cfg, &["appointments", "list", "--limit", "100000"]).await;
    assert_eq!(
        all.len() as i64,
        k.count("SELECT COUNT(*) FROM appointments WHERE deleted_at IS NULL")
    );
    assert!(all.len() > got.len(), "past appointments too");
}

#[tokio::test]
async fn an_export_writes_every_matching_contact_across_pages_to_a_csv_that_parses() {
    let (k, cfg) = mirror(
        2_500,
        "[subresources]\nkinds = []\n[businesses]\nenabled = false\n",
    )
    .await;
    let dir = k.dir.path();
    let file = dir.join("contacts.csv");
    let out = ghl(
        &cfg,
        &["export", "contacts", "--out", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let live = k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NULL");
    assert_eq!(
        text(&out.stderr).trim(),
        format!("exported {live} contacts to {} (CSV)", file.display())
    );
    assert!(text(&out.stdout).is_empty());
    let mut csv = csv::Reader::from_path(&file).unwrap();
    assert_eq!(csv.headers().unwrap().get(0), Some("id"));
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as i64, live);
    let exported: BTreeSet<String> = rows.iter().map(|r| r[0].to_string()).collect();
    assert_eq!(exported.len(), rows.len(), "no contact twice");
    let upstream: BTreeSet<String> = k.sandbox.live_contact_ids(LOC).into_iter().collect();
    assert_eq!(exported, upstream);

    // The same filters as the list; NDJSON from the extension.
    let (tag, _) = common_tags(&k);
    let file = dir.join("tagged.ndjson");
    ok(
        &cfg,
        &[
            "export",
            "contacts",
            "--tag",
            &tag,
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .await;
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tagged = k.count(&format!(
        "SELECT COUNT(DISTINCT c.pk) FROM contact_tags t JOIN contacts c ON c.pk = t.contact_pk
         WHERE c.deleted_at IS NULL AND lower(t.tag) = '{tag}'"
    ));
    assert_eq!(lines.len() as i64, tagged);
    assert!(
        lines
            .iter()
            .all(|c| has_tag(c, &tag) && c.get("searchAfter").is_none())
    );
}

#[tokio::test]
async fn an_export_of_tasks_notes_and_appointments_holds_every_live_record_in_the_format_asked() {
    let (k, cfg) = mirror(200, "").await;
    let dir = k.dir.path();
    let count = |table: &str| {
        k.count(&format!(
            "SELECT COUNT(*) FROM {table} WHERE deleted_at IS NULL"
        ))
    };

    let tasks = dir.join("tasks.out");
    ok(
        &cfg,
        &[
            "export",
            "tasks",
            "--out",
            tasks.to_str().unwrap(),
            "--format",
            "json",
        ],
    )
    .await;
    let got: Vec<Value> = serde_json::from_slice(&std::fs::read(&tasks).unwrap()).unwrap();
    assert_eq!(got.len() as i64, count("tasks"));

    let open = dir.join("open.jsonl");
    ok(
        &cfg,
        &["export", "tasks", "--open", "--out", open.to_str().unwrap()],
    )
    .await;
    let lines = std::fs::read_to_string(&open).unwrap();
    assert_eq!(
        lines.lines().count() as i64,
        k.count("SELECT COUNT(*) FROM open_tasks")
    );

    let notes = dir.join("notes.csv");
    ok(&cfg, &["export", "notes", "--out", notes.to_str().unwrap()]).await;
    let mut csv = csv::Reader::from_path(&notes).unwrap();
    assert_eq!(csv.records().count() as i64, count("notes"));

    let appointments = dir.join("appointments.json");
    ok(
        &cfg,
        &[
            "export",
            "appointments",
            "--out",
            appointments.to_str().unwrap(),
        ],
    )
    .await;
    let got: Vec<Value> = serde_json::from_slice(&std::fs::read(&appointments).unwrap()).unwrap();
    assert_eq!(got.len() as i64, count("appointments"));
}

/// The files in `dir`, by name.
fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn an_export_replaces_an_existing_file_whole_and_a_failed_one_leaves_it_as_it_was() {
    let (k, cfg) = mirror(50, "").await;
    let dir = k.dir.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("contacts.csv");
    std::fs::write(&file, "old contents\n").unwrap();
    let before = files(&dir);

    // Refused before anything is written: an unknown location.
    let out = ghl(
        &cfg,
        &[
            "export",
            "contacts",
            "--location",
            "nope",
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old contents\n");

    // Refused before anything is written: the target is a directory, which a file cannot replace.
    let target_dir = dir.join("taken");
    std::fs::create_dir(&target_dir).unwrap();
    let out = ghl(
        &cfg,
        &["export", "contacts", "--out", target_dir.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot replace"),
        "{}",
        text(&out.stderr)
    );
    assert!(target_dir.is_dir());
    std::fs::remove_dir(&target_dir).unwrap();
    assert_eq!(files(&dir), before, "no temporary file left behind");

    ok(
        &cfg,
        &["export", "contacts", "--out", file.to_str().unwrap()],
    )
    .await;
    let new = std::fs::read_to_string(&file).unwrap();
    assert!(new.starts_with("id,name,"), "{new}");
    assert_eq!(new.lines().count(), 51);
    assert_eq!(
        files(&dir),
        before,
        "replaced in place; no temporary file left behind"
    );
}

#[tokio::test]
async fn a_bad_time_an_unknown_location_or_a_missing_mirror_fail_with_a_message_saying_what_to_do()
{
    let (k, cfg) = mirror(20, "").await;
    let out = ghl(&cfg, &["contacts", "list", "--updated-since", "yesterday"]).await;
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let e = text(&out.stderr);
    assert!(
        e.contains("--updated-since") && e.contains("RFC 3339") && e.contains("7d"),
        "{e}"
    );
    let out = ghl(&cfg, &["tasks", "list", "--due-before", "soon"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--due-before"));

    let out = ghl(&cfg, &["notes", "list", "--location", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("unknown --location nope") && e.contains(LOC),
        "{e}"
    );

    let out = ghl(
        &cfg,
        &["export", "notes", "--out", "x.csv", "--format", "table"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "a file is CSV, JSON or NDJSON");

    let mut c = bin();
    let missing = k.dir.path().join("missing.db");
    c.arg("--db").arg(&missing).args(["contacts", "list"]);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no mirror at") && text(&out.stderr).contains("ghl-mirror sync"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists(), "no empty mirror is created");
}

#[tokio::test]
async fn without_a_location_every_mirrored_location_is_listed_and_named() {
    let k = kit_with(SandboxConfig::new(9, seeds(&[40, 30]))).await;
    let cfg = write_config(
        k.dir.path(),
        &k.sandbox.base_url(),
        "[subresources]\nkinds = []\n[businesses]\nenabled = false\n",
        &[LOC, LOC2],
    );
    ok(&cfg, &["sync"]).await;
    let all = json(&cfg, &["contacts", "list", "--limit", "1000"]).await;
    assert_eq!(all.len(), 70);
    let locations: BTreeSet<&str> = all.iter().map(|c| str_of(c, "locationId")).collect();
    assert_eq!(locations, BTreeSet::from([LOC, LOC2]));
    let dates: Vec<i64> = all
        .iter()
        .map(|c| ms_from_iso(str_of(c, "dateUpdated")).unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "merged newest first"
    );

    let csv = ok(
        &cfg,
        &["contacts", "list", "--limit", "1000", "--format", "csv"],
    )
    .await;
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let by_location: Vec<String> = r.records().map(|x| x.unwrap()[10].to_string()).collect();
    assert_eq!(by_location.iter().filter(|l| *l == LOC2).count(), 30);

    let second = json(&cfg, &["contacts", "list", "--location", LOC2]).await;
    assert_eq!(
        ids(&second, "id"),
        k.sandbox.live_contact_ids(LOC2).into_iter().collect()
    );

    // The newest few of both locations, not the first location's.
    let few = json(&cfg, &["contacts", "list", "--limit", "5"]).await;
    assert_eq!(few, all[..5]);
}

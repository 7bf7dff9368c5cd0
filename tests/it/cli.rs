//! The binary as a user runs it: config errors, exit codes, summary lines, status, and a sync
//! process killed with SIGKILL at arbitrary moments that still converges.

use crate::kit::*;
use ghl_mirror::sandbox::SandboxConfig;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ghl-mirror"));
    c.env_remove("GHL_MIRROR_CONFIG")
        .env_remove("GHL_TOKEN")
        .env_remove("GHL_LOCATION_ID")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Config lines that turn off every stream but contacts.
const CONTACTS_ONLY: &str = "[subresources]\nkinds = []\n[businesses]\nenabled = false\n";

/// A config for the kit's sandbox (no client-side rate limit: the sandbox sets the pace).
fn write_config(dir: &Path, base_url: &str, extra: &str) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    let text = format!(
        "[database]\npath = {:?}\n[upstream]\nbase_url = {base_url:?}\n\
         [upstream.rate_limit]\nburst_max = 10000\nsafety_margin = \"0ms\"\n{extra}\n[[locations]]\nid = \"{LOC}\"\ntoken_env = \"TEST_TOKEN\"\n",
        dir.join("mirror.db").display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

/// Runs `ghl-mirror --config <config> <command>` with the location's token in TEST_TOKEN.
async fn ghl(config: &Path, command: &str, token: &str) -> Output {
    let mut c = bin();
    c.arg("--config")
        .arg(config)
        .arg(command)
        .env("TEST_TOKEN", token);
    run(c).await
}

/// Starts `ghl-mirror --config <config> sync` in the background, output discarded.
fn spawn_sync(config: &Path) -> std::process::Child {
    spawn(config, "sync")
}

/// Starts `ghl-mirror --config <config> <command>` in the background, output discarded.
fn spawn(config: &Path, command: &str) -> std::process::Child {
    let mut c = bin();
    c.arg("--config")
        .arg(config)
        .arg(command)
        .env("TEST_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `ghl-mirror --config <file with text> sync`.
async fn sync_with_config(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    run({
        let mut c = bin();
        c.arg("--config").arg(&p).arg("sync");
        c
    })
    .await
}

#[tokio::test]
async fn a_bad_config_value_fails_with_a_message_naming_the_key() {
    let out = sync_with_config("[upstream.rate_limit]\nburst_max = 0\n").await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("upstream.rate_limit.burst_max"), "{err}");
    assert!(err.contains("from 1 to"), "{err}");
}

#[tokio::test]
async fn a_config_with_a_typo_or_wrong_type_is_rejected_with_its_location() {
    let out = sync_with_config("[sync]\npage_limit = \"lots\"\n").await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("page_limit"),
        "{err}"
    );
    let out = sync_with_config("[sync]\npage_limt = 10\n").await;
    let err = text(&out.stderr);
    assert!(err.contains("unknown field `page_limt`"), "{err}");
}

#[tokio::test]
async fn sync_without_any_location_says_how_to_configure_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = bin();
        c.current_dir(dir.path()).arg("sync");
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no location configured"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn sync_prints_one_summary_line_and_status_reports_the_location() {
    let k = kit(800).await;
    let cfg = write_config(k.dir.path(), &k.sandbox.base_url(), "");
    let out = ghl(&cfg, "sync", TOKEN).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per stream: {stdout}");
    assert!(
        lines[0].starts_with(&format!("{LOC}: full sync success")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("{LOC}: subresources sync success")),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("{LOC}: businesses sync success")),
        "{stdout}"
    );
    assert!(stdout.contains("800 received (800 new"), "{stdout}");
    assert!(!stdout.contains(TOKEN) && !text(&out.stderr).contains(TOKEN));

    let out = ghl(&cfg, "status", TOKEN).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains(&format!("location {LOC}: ok")), "{s}");
    assert!(s.contains("800 live, 0 tombstoned"), "{s}");
    assert!(s.contains("last run:       #1 full success"), "{s}");
    assert!(s.contains("tasks:          0 contacts due"), "{s}");
    assert!(s.contains("businesses, "), "{s}");
    assert!(s.contains("requests today: "), "{s}");
}

#[tokio::test]
async fn a_failed_location_gives_exit_code_1() {
    let k = kit(10).await;
    let cfg = write_config(k.dir.path(), &k.sandbox.base_url(), "");
    let out = ghl(&cfg, "sync", "wrong").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("failed"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn a_sync_killed_at_any_moment_converges_on_rerun_with_no_loss_or_duplicates() {
    let mut cfg = SandboxConfig::new(21, seeds(&[6_000]));
    cfg.latency = Duration::from_millis(40);
    let k = kit_with(cfg).await;
    let config = write_config(
        k.dir.path(),
        &k.sandbox.base_url(),
        &format!("[sync]\npage_limit = 200\n{CONTACTS_ONLY}"),
    );
    for kill_after_ms in [150u64, 400, 700] {
        let mut child = spawn_sync(&config);
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        if kill_after_ms == 400 {
            k.sandbox.churn(LOC, 20, 20, 0);
        }
    }
    let out = ghl(&config, "sync", TOKEN).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    k.assert_mirrors(LOC);
    let interrupted = k
        .store
        .query(
            "SELECT COUNT(*) FROM sync_runs WHERE outcome = 'interrupted'",
            1,
        )
        .unwrap();
    assert!(
        interrupted.rows[0][0].as_deref() != Some("0"),
        "killed runs are recorded"
    );
}

#[tokio::test]
async fn a_run_while_another_process_syncs_the_location_is_skipped_and_a_killed_one_frees_it() {
    let mut cfg = SandboxConfig::new(4, seeds(&[3_000]));
    cfg.latency = Duration::from_millis(100);
    let k = kit_with(cfg).await;
    let config = write_config(
        k.dir.path(),
        &k.sandbox.base_url(),
        &format!("[sync]\npage_limit = 200\n{CONTACTS_ONLY}"),
    );
    let mut child = spawn_sync(&config);
    // The child records its run right after taking the lock.
    let running = "SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running'";
    for _ in 0..200 {
        if k.count(running) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(k.count(running), 1, "the child started its run");

    let r = k.sync(&k.client(), &opts()).await;
    assert_eq!(r.outcome, ghl_mirror::model::Outcome::Skipped);
    let e = r.error.unwrap();
    assert!(e.contains("another ghl-mirror run is syncing"), "{e}");
    assert!(e.contains(".sandboxLocation00001.contacts.lock"), "{e}");
    assert_eq!(r.progress.requests, 0);

    child.kill().unwrap(); // SIGKILL: the kernel releases its lock
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_success(&k.sync(&k.client(), &opts()).await);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn the_daemon_refuses_an_overlapping_sync_and_sigterm_stops_it_without_loss() {
    let mut cfg = SandboxConfig::new(12, seeds(&[400]));
    cfg.latency = Duration::from_millis(15);
    let k = kit_with(cfg).await;
    let config = write_config(
        k.dir.path(),
        &k.sandbox.base_url(),
        "[schedule]\ncontacts = \"*/2 * * * * *\"\nsubresources = \"*/3 * * * * *\"\n\
         businesses = \"\"\nreconcile = \"\"\n[subresources]\nbulk_tasks = false\n",
    );
    let mut daemon = spawn(&config, "daemon");
    let fetched = || k.count("SELECT COUNT(*) FROM contact_fetches");
    let t = std::time::Instant::now();
    while fetched() < 100 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not start syncing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A sync started from system cron while the daemon's run is going is refused cleanly.
    let mut c = bin();
    c.arg("--config")
        .arg(&config)
        .args(["sync", "--stream", "subresources"])
        .env("TEST_TOKEN", TOKEN);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("another ghl-mirror run is syncing the subresources"),
        "{}",
        text(&out.stdout)
    );

    let pid = daemon.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || daemon.wait().unwrap())
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(
        k.count("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running'"),
        0
    );
    assert!(
        k.count(
            "SELECT COUNT(*) FROM sync_runs WHERE stream = 'subresources' AND outcome = 'partial'"
        ) >= 1
    );
    // Every answer that arrived was committed: at most the requests in flight were abandoned.
    let lost = k.count(
        "SELECT MAX(requests - pages) FROM sync_runs WHERE stream = 'subresources' AND outcome = 'partial'",
    );
    assert!(
        (0..=2).contains(&lost),
        "{lost} answered requests not committed"
    );
    let committed = fetched();

    // Nothing committed was lost; the next run finishes the job.
    let out = ghl(&config, "sync", TOKEN).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(fetched() >= committed);
    k.assert_mirrors(LOC);
    k.assert_subs_mirror(LOC);
}

#[tokio::test]
async fn status_shows_each_locations_health_when_one_token_is_revoked() {
    let k = kit_with(SandboxConfig::new(5, seeds(&[60, 40]))).await;
    k.sandbox.revoke_token(LOC2);
    let p = k.dir.path().join("two.toml");
    std::fs::write(
        &p,
        format!(
            "[database]\npath = {:?}\n[upstream]\nbase_url = {:?}\n[upstream.rate_limit]\nburst_max = 10000\n\
             [[locations]]\nid = \"{LOC}\"\ntoken_env = \"TEST_TOKEN\"\n\
             [[locations]]\nid = \"{LOC2}\"\ntoken_env = \"TEST_TOKEN2\"\n",
            k.dir.path().join("mirror.db").display().to_string(),
            k.sandbox.base_url()
        ),
    )
    .unwrap();
    let mut c = bin();
    c.arg("--config")
        .arg(&p)
        .arg("sync")
        .env("TEST_TOKEN", TOKEN)
        .env("TEST_TOKEN2", TOKEN2);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{LOC}: businesses sync success")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{LOC2}: full sync failed")),
        "{stdout}"
    );
    // `status` reads the mirror only: it needs no token.
    let mut c = bin();
    c.arg("--config").arg(&p).arg("status");
    let out = run(c).await;
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("location {LOC}: ok")),
        "{s}{}",
        text(&out.stderr)
    );
    assert!(s.contains(&format!("location {LOC2}: FAILING (")), "{s}");
    assert!(s.contains("rejected the token"), "{s}");
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn sql_answers_in_every_format_and_refuses_writes() {
    let k = kit(30).await;
    let cfg = write_config(k.dir.path(), &k.sandbox.base_url(), CONTACTS_ONLY);
    assert_eq!(ghl(&cfg, "sync", TOKEN).await.status.code(), Some(0));
    let sql = |args: &[&str]| {
        let mut c = bin();
        c.arg("--config").arg(&cfg).arg("sql").args(args);
        run(c)
    };
    let q = "SELECT id, dnd, date_updated_ms FROM contacts ORDER BY id LIMIT 3";
    let out = sql(&[q, "--format", "ndjson"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0]["date_updated_ms"].is_i64(),
        "typed values: {}",
        lines[0]
    );
    let ids = k.store.live_contact_ids(LOC).unwrap();
    assert_eq!(lines[0]["id"], ids[0].as_str());

    let out = sql(&[q, "--format", "csv"]).await;
    let csv = text(&out.stdout);
    assert!(csv.starts_with("id,dnd,date_updated_ms\n"), "{csv}");
    assert_eq!(csv.lines().count(), 4);
    let out = sql(&[q, "--format", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    let out = sql(&["SELECT COUNT(*) AS n FROM contacts"]).await;
    assert_eq!(text(&out.stdout), "n\n30\n");

    let out = sql(&["SELECT id FROM contacts", "--limit", "2", "--format", "csv"]).await;
    assert_eq!(text(&out.stdout).lines().count(), 3);
    assert!(
        text(&out.stderr).contains("only the first 2 rows"),
        "{}",
        text(&out.stderr)
    );

    let out = sql(&["DELETE FROM contacts"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("only SELECT"),
        "{}",
        text(&out.stderr)
    );
    let out = sql(&["SELEKT 1"]).await;
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("the query failed") && e.contains("syntax error"),
        "{e}"
    );
    let out = sql(&["SELECT 1", "--format", "xml"]).await;
    assert_eq!(out.status.code(), Some(2), "clap names the allowed formats");
    assert_eq!(
        k.count("SELECT COUNT(*) FROM contacts"),
        30,
        "nothing was deleted"
    );
}

#[tokio::test]
async fn sync_without_a_terminal_logs_its_plan_rates_and_time_left_in_plain_lines() {
    let k = kit(40).await;
    // 30 ms a request, two at a time: the sub-resources take over a second.
    k.sandbox.set_latency(Duration::from_millis(30));
    let p = write_config(k.dir.path(), &k.sandbox.base_url(), "");
    let mut c = bin();
    c.arg("--config")
        .arg(&p)
        .args(["sync", "--progress-every", "200ms"])
        .env("TEST_TOKEN", TOKEN);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains('\u{1b}'), "no terminal codes in a log: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.contains(&format!("{LOC} full: started").as_str()),
        "{err}"
    );
    assert!(
        lines.contains(&format!("{LOC} subresources: started").as_str()),
        "{err}"
    );
    // What the sub-resource run has before it, the budget, the pace and how long it takes.
    let plan = format!(
        "{LOC} subresources: 40 tasks, 40 notes and 40 appointments lists due; about 82 requests (budget 5,000) at up to "
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&plan) && l.ends_with(" at that pace")),
        "{err}"
    );
    // While it works: done/total, requests, rates and the time left, every 200 ms.
    let progress: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{LOC} subresources: ")) && l.contains(" lists, "))
        .collect();
    assert!(progress.len() >= 2, "{err}");
    for l in &progress {
        assert!(l.contains(" lists/s, ") && l.contains(" requests/s"), "{l}");
    }
    assert!(progress[0].ends_with(" left"), "{err}");
}

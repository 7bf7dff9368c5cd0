//! Output as pipelines use it: exports to standard output (`-`, no `--out`, `/dev/stdout`, a
//! FIFO), exports through a symlink, and readers that stop reading early (`| head -1`).

use crate::cli::{bin, text};
use crate::kit::*;
use crate::query_cli::{ghl, mirror, ok};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Output, Stdio};

const CONTACTS_ONLY: &str = "[subresources]\nkinds = []\n[businesses]\nenabled = false\n";

/// Runs `ghl-mirror --config <config> <args>` with stdout piped, reads its first line and
/// closes the pipe, as `| head -1` does; returns that line and the exit.
async fn head_1(config: &Path, args: &[&str]) -> (String, Output) {
    let mut c = bin();
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("TEST_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = c.spawn().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        drop(reader);
        (line, child.wait_with_output().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_reader_that_stops_reading_ends_the_command_quietly_with_success() {
    let (_k, cfg) = mirror(1_500, CONTACTS_ONLY).await;
    for args in [
        &["contacts", "list", "--limit", "2000", "--format", "csv"][..],
        &["contacts", "list", "--limit", "2000"],
        &["sql", "SELECT * FROM contacts", "--format", "csv"],
        &["sql", "SELECT * FROM contacts"],
        &["export", "contacts"],
        &[
            "export",
            "contacts",
            "--out",
            "/dev/stdout",
            "--format",
            "json",
        ],
    ] {
        // Far more than a pipe holds (64 KiB), so the writer meets the closed pipe.
        let whole = ok(&cfg, args).await;
        assert!(whole.len() > 256 * 1024, "{args:?}: {} bytes", whole.len());
        let (first, out) = head_1(&cfg, args).await;
        assert_eq!(first, whole.lines().next().unwrap().to_string() + "\n");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}: nothing on stderr");
    }
    // Another failure to write still fails.
    let full = std::fs::File::create("/dev/full").unwrap();
    let mut c = bin();
    c.arg("--config")
        .arg(&cfg)
        .args(["sql", "SELECT * FROM contacts"])
        .stdout(full);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("No space left"),
        "{}",
        text(&out.stderr)
    );
}

/// The rows of a CSV export, checked against the mirror's live contacts.
fn assert_all_contacts(csv: &str, k: &Kit) {
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(&r.headers().unwrap()[0], "id");
    let got: std::collections::BTreeSet<String> =
        r.records().map(|x| x.unwrap()[0].to_string()).collect();
    let live: std::collections::BTreeSet<String> =
        k.store.live_contact_ids(LOC).unwrap().into_iter().collect();
    assert_eq!(got, live);
}

#[tokio::test]
async fn an_export_without_out_or_to_dash_or_dev_stdout_streams_csv_to_standard_output() {
    let (k, cfg) = mirror(120, CONTACTS_ONLY).await;
    let cwd = k.dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let stdout_link = std::fs::symlink_metadata("/dev/stdout").ok();
    for args in [
        &["export", "contacts"][..],
        &["export", "contacts", "--out", "-"],
        &["export", "contacts", "--out", "/dev/stdout"],
    ] {
        let mut c = bin();
        c.current_dir(&cwd).arg("--config").arg(&cfg).args(args);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_all_contacts(&text(&out.stdout), &k);
        assert_eq!(
            std::fs::read_dir(&cwd).unwrap().count(),
            0,
            "{args:?}: no file named - or anything else"
        );
    }
    assert_eq!(
        std::fs::symlink_metadata("/dev/stdout")
            .ok()
            .map(|m| m.file_type()),
        stdout_link.map(|m| m.file_type()),
        "/dev/stdout is left as it was"
    );
    let out = ghl(
        &cfg,
        &["export", "contacts", "--out", "-", "--format", "ndjson"],
    )
    .await;
    assert_eq!(text(&out.stdout).lines().count(), 120);
    let help = ghl(&cfg, &["export", "contacts", "--help"]).await;
    assert!(
        text(&help.stdout).contains("standard output"),
        "{}",
        text(&help.stdout)
    );
}

#[tokio::test]
async fn an_export_through_a_symlink_replaces_its_target_and_keeps_the_link() {
    let (k, cfg) = mirror(60, CONTACTS_ONLY).await;
    let dir = k.dir.path().join("exports");
    let real = k.dir.path().join("real");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&real).unwrap();
    let target = real.join("contacts.csv");
    std::fs::write(&target, "old contents\n").unwrap();
    let link = dir.join("latest.csv");
    std::os::unix::fs::symlink("../real/contacts.csv", &link).unwrap();

    ok(
        &cfg,
        &["export", "contacts", "--out", link.to_str().unwrap()],
    )
    .await;
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is kept"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../real/contacts.csv")
    );
    assert_all_contacts(&std::fs::read_to_string(&target).unwrap(), &k);
    for d in [&dir, &real] {
        assert_eq!(
            std::fs::read_dir(d).unwrap().count(),
            1,
            "no temporary file left in {}",
            d.display()
        );
    }

    // A FIFO is written into, as a shell's `>` would.
    let fifo = k.dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        })
    };
    ok(
        &cfg,
        &["export", "contacts", "--out", fifo.to_str().unwrap()],
    )
    .await;
    assert_all_contacts(&reader.join().unwrap(), &k);
    assert!(
        !std::fs::symlink_metadata(&fifo).unwrap().is_file(),
        "still a FIFO"
    );
}

#[tokio::test]
async fn sync_with_its_stdout_closed_keeps_its_exit_code_and_does_not_panic() {
    let k = kit(30).await;
    let cfg =
        crate::query_cli::write_config(k.dir.path(), &k.sandbox.base_url(), CONTACTS_ONLY, &[LOC]);
    let mut c = bin();
    c.arg("--config")
        .arg(&cfg)
        .arg("sync")
        .env("TEST_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = c.spawn().unwrap();
        // The reader is gone before the summary line is written.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn the_demo_with_its_stdout_closed_ends_quietly_with_success_instead_of_panicking() {
    let (reader, writer) = std::io::pipe().unwrap();
    // The reader is gone before the demo writes its first line.
    drop(reader);
    let mut c = bin();
    c.args(["demo", "--contacts", "20", "--latency-ms", "0"])
        .stdout(writer)
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test]
async fn an_export_to_dev_fd_1_writes_into_a_pipe_and_appends_to_a_file_opened_for_appending() {
    let (k, cfg) = mirror(80, CONTACTS_ONLY).await;
    let args = ["export", "contacts", "--out", "/dev/fd/1"];
    // Standard output a pipe: the rows arrive through it.
    let out = ghl(&cfg, &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_all_contacts(&text(&out.stdout), &k);
    // Standard output a file opened for appending (`>> file`): what it held is kept.
    let file = k.dir.path().join("appended.csv");
    std::fs::write(&file, "earlier line\n").unwrap();
    let stdout = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    let mut c = bin();
    c.arg("--config")
        .arg(&cfg)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&file).unwrap();
    let rows = written
        .strip_prefix("earlier line\n")
        .unwrap_or_else(|| panic!("the earlier content was lost: {written:.200}"));
    assert_all_contacts(rows, &k);
}

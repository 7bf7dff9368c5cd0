//! The contacts sync against the sandbox: full, incremental, deletes, resumption, ties, faults.

use crate::kit::*;
use ghl_mirror::model::{Outcome, SweepKind};
use ghl_mirror::sandbox::{Faults, RateLimits, SandboxConfig};
use ghl_mirror::sync::{ListStrategy, SyncOptions};
use std::time::Duration;

#[tokio::test]
async fn a_full_sync_mirrors_every_contact_field_by_field_within_the_request_budget() {
    let n = 2_600;
    let k = kit(n).await;
    let r = k.sync(&k.client(), &opts()).await;
    assert_success(&r);
    assert_eq!(r.mode, "full");
    assert_eq!(r.progress.inserted, n as u64);
    assert!(
        r.progress.requests <= pages_for(n, 500) + 2,
        "requests {}",
        r.progress.requests
    );
    k.assert_mirrors(LOC);
    assert_eq!(k.sandbox.stats(LOC).rate_limited, 0);
    let st = k.state(LOC);
    assert!(st.sweep.is_none());
    assert!(st.watermark_ms.is_some());
    assert!(st.last_full_sweep_ms.is_some());
}

#[tokio::test]
async fn typed_columns_tags_and_custom_fields_are_filled_from_the_json() {
    let k = kit(300).await;
    assert_success(&k.sync(&k.client(), &opts()).await);
    let tagged = k.count("SELECT COUNT(*) FROM contacts WHERE json_array_length(tags) > 0");
    let tag_rows = k.count("SELECT COUNT(*) FROM contact_tags");
    let tag_total = k.count("SELECT COALESCE(SUM(json_array_length(tags)), 0) FROM contacts");
    assert!(tagged > 0);
    assert_eq!(tag_rows, tag_total);
    assert!(k.count("SELECT COUNT(*) FROM contact_custom_fields") > 0);
    let mismatched = k.count(
        "SELECT COUNT(*) FROM contacts WHERE email IS NOT json_extract(raw, '$.email')
           OR first_name IS NOT json_extract(raw, '$.firstName')
           OR date_updated IS NOT json_extract(raw, '$.dateUpdated')",
    );
    assert_eq!(mismatched, 0);
}

#[tokio::test]
async fn a_rerun_with_nothing_changed_is_a_no_op_costing_one_request() {
    let k = kit(1_200).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let changed = |k: &Kit| {
        k.store
            .query("SELECT MAX(changed_at) FROM contacts", 1)
            .unwrap()
            .rows
    };
    let before = changed(&k);
    let r = k.sync(&client, &opts()).await;
    assert_success(&r);
    assert_eq!(r.mode, "incremental");
    assert_eq!(
        (
            r.progress.inserted,
            r.progress.updated,
            r.progress.tombstoned
        ),
        (0, 0, 0)
    );
    assert_eq!(r.progress.requests, 1);
    assert_eq!(changed(&k), before, "no row was rewritten");
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn an_incremental_run_picks_up_creates_and_updates_only() {
    let k = kit(1_500).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let churn = k.sandbox.churn(LOC, 30, 40, 0);
    let r = k.sync(&client, &opts()).await;
    assert_success(&r);
    assert_eq!(r.mode, "incremental");
    assert_eq!(r.progress.inserted, churn.created.len() as u64);
    assert_eq!(r.progress.updated, churn.updated.len() as u64);
    assert!(
        r.progress.received < 200,
        "incremental read {}",
        r.progress.received
    );
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn deletes_are_tombstoned_only_after_a_complete_sweep() {
    let n = 2_000;
    let k = kit(n).await;
    let client = k.client();
    let small = SyncOptions {
        page_limit: 100,
        ..opts()
    };
    assert_success(&k.sync(&client, &small).await);
    let churn = k.sandbox.churn(LOC, 0, 0, 25);

    // Incremental runs cannot see deletes: nothing is tombstoned.
    let r = k.sync(&client, &small).await;
    assert_success(&r);
    assert_eq!(r.progress.tombstoned, 0);

    // An interrupted full sweep never tombstones anything.
    let full = SyncOptions {
        force_full: true,
        ..small.clone()
    };
    // Stopped after the first commit: at most that page, 8 queued and 2 in flight get written.
    let r = k.sync_stopping_after(&client, &full, 1).await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert_eq!(r.progress.tombstoned, 0);
    assert_eq!(
        k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NOT NULL"),
        0
    );
    assert_eq!(k.state(LOC).sweep.map(|s| s.kind), Some(SweepKind::Full));

    // The resumed sweep completes and tombstones exactly the deleted contacts.
    let r = k.sync(&client, &small).await;
    assert_success(&r);
    assert_eq!(r.progress.tombstoned, 25);
    let mut deleted = churn.deleted.clone();
    deleted.sort();
    assert_eq!(k.store.tombstoned_contact_ids(LOC).unwrap(), deleted);
    k.assert_mirrors(LOC);
    // Tombstones keep their data.
    assert!(k.store.contact_raw(LOC, &deleted[0]).unwrap().is_some());
}

#[tokio::test]
async fn an_interrupted_run_resumes_from_its_cursor_without_rereading() {
    let n = 20_000;
    let k = kit(n).await;
    let client = k.client();
    // Stopped after the first commit: at most 11 of the 40 pages are written.
    let r1 = k.sync_stopping_after(&client, &opts(), 1).await;
    assert_eq!(r1.outcome, Outcome::Partial);
    let saved = k.state(LOC).sweep.expect("cursor saved");
    assert!(saved.asc.is_some() || saved.desc.is_some());
    let r2 = k.sync(&client, &opts()).await;
    assert_success(&r2);
    assert_eq!(r2.mode, "full");
    assert_eq!(r1.progress.inserted + r2.progress.inserted, n as u64);
    assert!(r2.progress.received < n as u64);
    assert!(
        r1.progress.requests + r2.progress.requests <= pages_for(n, 500) + 3,
        "{} + {}",
        r1.progress.requests,
        r2.progress.requests
    );
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn ties_on_date_updated_across_page_boundaries_are_neither_lost_nor_duplicated() {
    // The seeded data has batches of 1,200 contacts sharing one dateUpdated, so boundaries of
    // 100-contact pages fall inside a tie group.
    let n = 3_000;
    let k = kit(n).await;
    let ties = k.count(
        "SELECT COALESCE(MAX(c), 0) FROM (SELECT COUNT(*) AS c FROM contacts GROUP BY date_updated_ms)",
    );
    assert_eq!(ties, 0, "empty mirror first");
    for in_flight in [1, 2] {
        let o = SyncOptions {
            page_limit: 100,
            max_in_flight: in_flight,
            force_full: true,
            ..opts()
        };
        let r = k.sync(&k.client(), &o).await;
        assert_success(&r);
        k.assert_mirrors(LOC);
    }
    let ties =
        k.count("SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM contacts GROUP BY date_updated_ms)");
    assert!(ties >= 1_200, "largest tie group {ties}");
}

#[tokio::test]
async fn the_legacy_list_strategy_mirrors_and_reconciles() {
    let k = kit(1_050).await;
    let client = k.client();
    let legacy = SyncOptions {
        strategy: ListStrategy::LegacyList,
        ..opts()
    };
    let r = k.sync(&client, &legacy).await;
    assert_success(&r);
    assert_eq!(r.mode, "legacy-list");
    assert_eq!(r.progress.requests, 11);
    k.assert_mirrors(LOC);
    let churn = k.sandbox.churn(LOC, 5, 5, 5);
    let r = k.sync(&client, &legacy).await;
    assert_success(&r);
    assert_eq!(r.progress.inserted, churn.created.len() as u64);
    assert_eq!(r.progress.updated, churn.updated.len() as u64);
    assert_eq!(r.progress.tombstoned, 5);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn the_sync_recovers_from_429s_5xx_timeouts_and_truncated_bodies() {
    let mut cfg = SandboxConfig::new(11, seeds(&[3_000]));
    cfg.faults = Faults {
        server_error: 0.15,
        rate_limit_storm: 0.05,
        storm_len: 2,
        timeout: 0.05,
        timeout_delay: Duration::from_millis(800),
        truncated: 0.1,
    };
    let k = kit_with(cfg).await;
    let mut s = k.settings(LOC, TOKEN);
    s.timeout = Duration::from_millis(300);
    s.max_attempts = 12;
    let client = ghl_mirror::upstream::Client::new(s).unwrap();
    let o = SyncOptions {
        page_limit: 200,
        ..opts()
    };
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert!(
        r.progress.retries > 0,
        "faults were injected, so retries happened"
    );
    k.sandbox.set_faults(Faults::default());
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn pacing_keeps_under_the_burst_limit_so_no_429_is_ever_received() {
    let mut cfg = SandboxConfig::new(3, seeds(&[2_500]));
    cfg.limits = Some(RateLimits {
        burst_max: 10,
        interval: Duration::from_millis(500),
        daily_max: 200_000,
    });
    let k = kit_with(cfg).await;
    let mut s = k.settings(LOC, TOKEN);
    s.burst_max = 10;
    s.interval = Duration::from_millis(500);
    s.safety_margin = Duration::from_millis(50);
    let client = ghl_mirror::upstream::Client::new(s).unwrap();
    let o = SyncOptions {
        page_limit: 100,
        ..opts()
    };
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    let stats = k.sandbox.stats(LOC);
    assert_eq!(stats.rate_limited, 0);
    assert!(
        stats.max_in_window <= 10,
        "max in window {}",
        stats.max_in_window
    );
    assert!(r.progress.requests >= 26);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn a_low_daily_quota_stops_the_run_cleanly_and_the_next_run_continues() {
    let mut cfg = SandboxConfig::new(5, seeds(&[3_000]));
    cfg.limits = Some(RateLimits::default());
    let k = kit_with(cfg).await;
    k.sandbox.set_daily_remaining(LOC, 5_003);
    let mut s = k.settings(LOC, TOKEN);
    s.daily_reserve = 5_000;
    let client = ghl_mirror::upstream::Client::new(s).unwrap();
    let o = SyncOptions {
        page_limit: 200,
        max_in_flight: 1,
        ..opts()
    };
    let r = k.sync(&client, &o).await;
    assert_eq!(r.outcome, Outcome::Partial);
    assert!(
        r.error.as_deref().unwrap_or("").contains("daily_reserve"),
        "{:?}",
        r.error
    );
    assert!(r.progress.requests <= 4, "requests {}", r.progress.requests);
    assert!(k.state(LOC).sweep.is_some());
    assert_eq!(
        k.count("SELECT COUNT(*) FROM contacts WHERE deleted_at IS NOT NULL"),
        0
    );

    k.sandbox.set_daily_remaining(LOC, 150_000);
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn two_locations_share_one_database_without_mixing() {
    let k = kit_with(SandboxConfig::new(9, seeds(&[700, 1_100]))).await;
    let c1 = k.client();
    let c2 = ghl_mirror::upstream::Client::new(k.settings(LOC2, TOKEN2)).unwrap();
    let o = opts();
    let (r1, r2) = tokio::join!(k.sync(&c1, &o), k.sync(&c2, &o));
    assert_success(&r1);
    assert_success(&r2);
    k.assert_mirrors(LOC);
    k.assert_mirrors(LOC2);
    assert_eq!(k.count("SELECT COUNT(*) FROM contacts"), 1_800);
    k.sandbox.churn(LOC2, 0, 0, 10);
    let r = k
        .sync(
            &c2,
            &SyncOptions {
                force_full: true,
                ..opts()
            },
        )
        .await;
    assert_eq!(r.progress.tombstoned, 10);
    assert_eq!(k.count("SELECT COUNT(*) FROM contacts WHERE location_id = 'sandboxLocation00001' AND deleted_at IS NOT NULL"), 0);
}

#[tokio::test]
async fn a_malformed_page_fails_the_run_without_writing_any_of_it() {
    let k = kit(5_000).await;
    let client = k.client();
    let o = SyncOptions {
        page_limit: 500,
        max_in_flight: 1,
        ..opts()
    };
    // A first run stops early (the page in flight when it stopped is still written) ...
    let first = k.sync_stopping_after(&client, &o, 1).await;
    assert_eq!(first.outcome, Outcome::Partial);
    let before = k.count("SELECT COUNT(*) FROM contacts");
    assert!((500..5_000).contains(&before), "{before}");
    // ... and the next page of the sweep arrives malformed.
    k.sandbox.break_next_pages(1);
    let r = k.sync(&client, &o).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let err = r.error.unwrap();
    assert!(err.contains("malformed response"), "{err}");
    assert_eq!(k.count("SELECT COUNT(*) FROM contacts"), before);
    let recorded = k
        .store
        .recent_runs(LOC, ghl_mirror::model::Stream::Contacts, 1)
        .unwrap();
    assert_eq!(recorded[0].outcome, "failed");
    assert!(
        recorded[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("malformed")
    );
    // The next run picks up where the good pages left off.
    assert_success(&k.sync(&client, &o).await);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn a_sweep_that_misses_most_contacts_tombstones_none_unless_allowed() {
    let k = kit(400).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    k.sandbox.churn(LOC, 0, 0, 300);
    let full = SyncOptions {
        force_full: true,
        ..opts()
    };
    let r = k.sync(&client, &full).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(e.contains("did not see 300 of the 400 contacts"), "{e}");
    assert!(e.contains("--allow-mass-delete"), "{e}");
    assert_eq!(
        k.store.live_contact_ids(LOC).unwrap().len(),
        400,
        "nothing stored is lost"
    );

    let allowed = SyncOptions {
        max_tombstone_share: 1.0,
        ..full
    };
    let r = k.sync(&client, &allowed).await;
    assert_success(&r);
    assert_eq!(r.progress.tombstoned, 300);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn two_runs_of_one_location_at_once_are_serialised_by_skipping_the_second() {
    let mut cfg = ghl_mirror::sandbox::SandboxConfig::new(8, seeds(&[1_500]));
    cfg.latency = Duration::from_millis(50);
    let k = kit_with(cfg).await;
    let (c1, c2) = (k.client(), k.client());
    let o = opts();
    let (r1, r2) = tokio::join!(k.sync(&c1, &o), k.sync(&c2, &o));
    let mut outcomes = [r1.outcome, r2.outcome];
    outcomes.sort_by_key(|o| o.as_str());
    assert_eq!(outcomes, [Outcome::Skipped, Outcome::Success]);
    k.assert_mirrors(LOC);
    assert_eq!(
        k.count("SELECT COUNT(*) FROM sync_runs"),
        1,
        "the skipped run left no trace"
    );
}

/// The newest `dateUpdated` in the mirror (ms).
fn newest_update(k: &Kit) -> i64 {
    k.count(&format!(
        "SELECT MAX(date_updated_ms) FROM contacts WHERE location_id = '{LOC}'"
    ))
}

/// Waits until the wall clock is past `ms` (the sandbox stamps edits with it, and the sync
/// plans by it: there is no event to wait for).
async fn wait_past(ms: i64) {
    let left = ms + 1 - ghl_mirror::model::now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

#[tokio::test]
async fn once_a_bulk_edit_has_settled_an_idle_run_costs_one_request() {
    let k = kit(400).await;
    let client = k.client();
    let o = SyncOptions {
        page_limit: 20,
        lookback: Duration::from_millis(400),
        ..opts()
    };
    assert_success(&k.sync(&client, &o).await);
    // A bulk edit: 150 contacts updated within the lookback of each other.
    let churn = k.sandbox.churn(LOC, 0, 150, 0);
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert_eq!(r.progress.updated, churn.updated.len() as u64);
    let edited_until = newest_update(&k);
    // The next run starts more than `lookback` after the edit: it re-reads the edit once, in
    // case search indexed part of it after the previous run started. Its start is dated by
    // HighLevel's `Date` header, which counts whole seconds, less the round trip: a second
    // and a half more lets that date pass the edit too.
    wait_past(edited_until + 400 + 1_500).await;
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert!(r.progress.received >= 150, "{}", r.progress.received);
    // From then on nothing changed: each run is the one request that finds nothing.
    for _ in 0..3 {
        let r = k.sync(&client, &o).await;
        assert_success(&r);
        assert_eq!(r.mode, "incremental");
        assert_eq!((r.progress.requests, r.progress.received), (1, 0));
    }
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn an_edit_indexed_after_a_run_started_is_caught_by_the_next_run() {
    let mut cfg = SandboxConfig::new(7, seeds(&[300]));
    cfg.search_lag = Duration::from_millis(300);
    let k = kit_with(cfg).await;
    let client = k.client();
    let o = SyncOptions {
        lookback: Duration::from_millis(800),
        ..opts()
    };
    assert_success(&k.sync(&client, &o).await);
    let churn = k.sandbox.churn(LOC, 0, 40, 0);
    let edited_at = ghl_mirror::model::now_ms();
    // Search does not show the edits yet: this run finds nothing new.
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert_eq!(r.progress.updated, 0);
    // Once search shows them, the next run reads them although they predate its start.
    wait_past(edited_at + 300 + churn.updated.len() as i64).await;
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert_eq!(r.progress.updated, churn.updated.len() as u64);
    k.assert_mirrors(LOC);
}

#[tokio::test]
async fn a_local_clock_ahead_of_highlevels_misses_no_edit_indexed_late() {
    let mut cfg = SandboxConfig::new(7, seeds(&[300]));
    cfg.search_lag = Duration::from_millis(300);
    // This machine's clock runs 3 s ahead of HighLevel's, more than the lookback.
    cfg.clock_offset_ms = -3_000;
    let k = kit_with(cfg).await;
    let client = k.client();
    let o = SyncOptions {
        lookback: Duration::from_millis(800),
        ..opts()
    };
    assert_success(&k.sync(&client, &o).await);
    let started = k
        .state(LOC)
        .last_sweep_started_ms
        .expect("HighLevel's clock was heard");
    assert!(
        started <= ghl_mirror::model::now_ms() - 2_000,
        "the start is dated by HighLevel's clock"
    );
    let churn = k.sandbox.churn(LOC, 0, 40, 0);
    let edited_at = ghl_mirror::model::now_ms();
    // Search does not show the edits yet: this run finds nothing new.
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert_eq!(r.progress.updated, 0);
    // Once search shows them, the next run reads them although they predate its start.
    wait_past(edited_at + 300 + churn.updated.len() as i64).await;
    let r = k.sync(&client, &o).await;
    assert_success(&r);
    assert_eq!(r.progress.updated, churn.updated.len() as u64);
    k.assert_mirrors(LOC);
}

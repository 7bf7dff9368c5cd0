//! Tasks, notes, appointments and businesses: exact replacement, budgets, resumption, the bulk
//! task path and its fallback, business links, overlapping runs, and one location failing while
//! another completes.

use crate::kit::*;
use ghl_mirror::daemon::{Job, StreamOptions, run_job};
use ghl_mirror::model::{Outcome, Stream, SubKind};
use ghl_mirror::sandbox::SandboxConfig;
use ghl_mirror::sync::{BusinessOptions, SubOptions, SubState, sync_businesses, sync_subresources};
use ghl_mirror::upstream::Client;
use serde_json::Value;
use std::collections::BTreeMap;

fn sub_opts(bulk: bool) -> SubOptions {
    SubOptions {
        bulk_tasks: bulk,
        run_requests: 1_000_000,
        daily_share: 1.0,
        ..SubOptions::default()
    }
}

fn stop() -> ghl_mirror::sync::StopSignal {
    tokio::sync::watch::channel(false).1
}

impl Kit {
    async fn subs(&self, client: &Client, o: &SubOptions) -> ghl_mirror::sync::SyncReport {
        sync_subresources(&self.store, client, o, stop(), None).await
    }

    /// Live items of `kind` in the mirror, per contact, sorted by id.
    pub fn mirrored(&self, location: &str, kind: SubKind) -> BTreeMap<String, Vec<Value>> {
        let sql = format!(
            "SELECT contact_id, raw FROM {} WHERE location_id = '{location}' AND deleted_at IS NULL ORDER BY id",
            kind.as_str()
        );
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for row in self.store.query(&sql, usize::MAX).unwrap().rows {
            let raw: Value = serde_json::from_str(row[1].as_deref().unwrap()).unwrap();
            out.entry(row[0].clone().unwrap()).or_default().push(raw);
        }
        out
    }

    /// The sandbox's items of `kind`, per live contact that has any, sorted by id.
    pub fn upstream(&self, location: &str, kind: SubKind) -> BTreeMap<String, Vec<Value>> {
        let mut out = BTreeMap::new();
        for id in self.sandbox.live_contact_ids(location) {
            let mut items = match kind {
                SubKind::Tasks => self.sandbox.tasks_json(location, &id),
                SubKind::Notes => self.sandbox.notes_json(location, &id),
                SubKind::Appointments => self.sandbox.appointments_json(location, &id),
            }
            .unwrap();
            if !items.is_empty() {
                items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                out.insert(id, items);
            }
        }
        out
    }

    /// Every live contact's tasks, notes and appointments are mirrored exactly, field by field.
    pub fn assert_subs_mirror(&self, location: &str) {
        for kind in SubKind::ALL {
            let (local, up) = (self.mirrored(location, kind), self.upstream(location, kind));
            assert_eq!(local.len(), up.len(), "{kind:?}: contacts with items");
            assert_eq!(local, up, "{kind:?}");
        }
    }
}

#[tokio::test]
async fn lists_are_replaced_exactly_through_adds_edits_and_removals() {
    let k = kit(300).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let first = k.subs(&client, &sub_opts(false)).await;
    assert_success(&first);
    assert_eq!(
        first.progress.requests, 900,
        "one request per contact and kind"
    );
    k.assert_subs_mirror(LOC);
    let n = k.count("SELECT COUNT(*) FROM tasks") + k.count("SELECT COUNT(*) FROM notes");
    assert!(
        n > 600,
        "the sandbox generates about 5 tasks and notes per contact: {n}"
    );

    let churn = k.sandbox.churn_subresources(LOC, 0.2, true);
    assert!(churn.contacts.len() >= 50, "{churn:?}");
    assert!(churn.tasks_deleted + churn.notes_deleted + churn.appointments_deleted > 0);
    assert!(churn.tasks_edited + churn.notes_edited + churn.appointments_edited > 0);
    assert!(churn.tasks_added + churn.notes_added + churn.appointments_added > 0);
    assert_success(&k.sync(&client, &opts()).await);
    let second = k.subs(&client, &sub_opts(false)).await;
    assert_success(&second);
    assert_eq!(
        second.progress.requests,
        3 * churn.contacts.len() as u64,
        "only the contacts whose dateUpdated moved are refetched"
    );
    assert!(second.progress.tombstoned > 0 && second.progress.updated > 0);
    k.assert_subs_mirror(LOC);
    let fresh = k.count(&format!(
        "SELECT COUNT(*) FROM contact_freshness WHERE location_id = '{LOC}'
           AND tasks_due = 0 AND notes_due = 0 AND appointments_due = 0
           AND tasks_fetched_at IS NOT NULL"
    ));
    assert_eq!(fresh, 300, "staleness is queryable and nothing is due");
}

#[tokio::test]
async fn the_budget_is_respected_to_the_request_and_the_next_run_continues() {
    let k = kit(200).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let before = k.sandbox.stats(LOC).requests;
    let o = SubOptions {
        run_requests: 137,
        ..sub_opts(false)
    };
    let r = k.subs(&client, &o).await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert!(
        r.error.as_deref().unwrap().contains("budget of 137"),
        "{:?}",
        r.error
    );
    assert_eq!(r.progress.requests, 137);
    assert_eq!(
        k.sandbox.stats(LOC).requests - before,
        137,
        "upstream saw exactly the budget"
    );
    assert_eq!(r.progress.pages, 137, "every fetched list was committed");

    let mut total = 137;
    let mut runs = 1;
    loop {
        let r = k.subs(&client, &o).await;
        total += r.progress.requests;
        runs += 1;
        assert!(r.progress.requests <= 137);
        if r.outcome == Outcome::Success {
            break;
        }
        assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
        assert!(runs < 10);
    }
    assert_eq!(total, 600, "no list was fetched twice across runs");
    k.assert_subs_mirror(LOC);
}

#[tokio::test]
async fn the_daily_share_caps_a_run() {
    let k = kit(100).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    k.sandbox.set_daily_remaining(LOC, 1_000);
    let o = SubOptions {
        daily_share: 0.05,
        ..sub_opts(false)
    };
    let r = k.subs(&client, &o).await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    // 5% of the ~1000 left when the run started.
    assert!(
        (49..=51).contains(&r.progress.requests),
        "{}",
        r.progress.requests
    );
}

#[tokio::test]
async fn bulk_tasks_replace_per_contact_calls_and_fall_back_without_the_scope() {
    let k = kit(400).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let s0 = k.sandbox.stats(LOC);
    let r = k.subs(&client, &sub_opts(true)).await;
    assert_success(&r);
    let s1 = k.sandbox.stats(LOC);
    let searches = s1.task_search_requests - s0.task_search_requests;
    // The search lists tasks in its own order: a contact with two tasks or more has its own
    // list read for HighLevel's order; no other per-contact task call is made.
    let several = k
        .upstream(LOC, SubKind::Tasks)
        .values()
        .filter(|t| t.len() > 1)
        .count() as u64;
    assert_eq!(s1.tasks_requests - s0.tasks_requests, several);
    // 35 contacts per search (70% of a 100-task page at 2 tasks each); a batch with 100 or
    // more tasks takes another page.
    assert!(
        (12..=16).contains(&searches),
        "{searches} task searches for 400 contacts"
    );
    assert_eq!(r.progress.requests, 800 + searches + several);
    k.assert_subs_mirror(LOC);

    // Tasks change without the contact's dateUpdated moving: the rolling refresh catches it,
    // still in batches.
    let churn = k.sandbox.churn_subresources(LOC, 0.1, false);
    assert!(
        churn.tasks_added + churn.tasks_edited + churn.tasks_deleted > 0,
        "{churn:?}"
    );
    let o = SubOptions {
        refresh_after: std::time::Duration::ZERO,
        kinds: vec![SubKind::Tasks],
        ..sub_opts(true)
    };
    let r = k.subs(&client, &o).await;
    assert_success(&r);
    assert!(r.progress.requests <= 16, "{}", r.progress.requests);
    assert!(r.progress.tombstoned > 0 || churn.tasks_deleted == 0);
    assert_eq!(
        k.mirrored(LOC, SubKind::Tasks),
        k.upstream(LOC, SubKind::Tasks)
    );

    // Without the scope: the refused searches, then per-contact calls; the mirror stays exact.
    k.sandbox.set_task_search_scope(LOC, false);
    k.sandbox.churn_subresources(LOC, 0.1, true);
    assert_success(&k.sync(&client, &opts()).await);
    let s2 = k.sandbox.stats(LOC);
    let o = SubOptions {
        refresh_after: std::time::Duration::ZERO,
        ..sub_opts(true)
    };
    let r = k.subs(&client, &o).await;
    assert_success(&r);
    let s3 = k.sandbox.stats(LOC);
    let refused = s3.task_search_requests - s2.task_search_requests;
    assert!(
        (1..=2).contains(&refused),
        "at most one per request in flight: {refused}"
    );
    assert_eq!(
        s3.tasks_requests - s2.tasks_requests,
        400,
        "rolling refresh per contact"
    );
    k.assert_subs_mirror(LOC);
    let state: SubState = k
        .store
        .load_json_state(LOC, Stream::Subresources)
        .unwrap()
        .unwrap();
    assert!(state.bulk_off_since_ms.is_some(), "{state:?}");
    // The refusal is remembered: the next run does not ask again, though tasks are due.
    let s4 = k.sandbox.stats(LOC);
    assert_success(&k.subs(&client, &o).await);
    let s5 = k.sandbox.stats(LOC);
    assert_eq!(s5.task_search_requests, s4.task_search_requests);
    assert_eq!(s5.tasks_requests - s4.tasks_requests, 400);
}

#[tokio::test]
async fn task_batches_cut_by_the_budget_resume_and_stay_exact_through_changes() {
    let mut cfg = SandboxConfig::new(21, seeds(&[1_000]));
    cfg.subresources.tasks = 0.5;
    cfg.subresources.notes = 0.0;
    cfg.subresources.appointments = 0.0;
    let k = kit_with(cfg).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let o = SubOptions {
        kinds: vec![SubKind::Tasks],
        run_requests: 7,
        ..sub_opts(true)
    };
    let r = k.subs(&client, &o).await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert_eq!(r.progress.requests, 7);
    let fetched = k.count("SELECT COUNT(*) FROM contact_fetches WHERE kind = 'tasks'");
    let searched = k.sandbox.stats(LOC).task_search_requests as i64;
    let own = k.sandbox.stats(LOC).tasks_requests as i64;
    assert_eq!(searched + own, 7);
    // Batches of 35 contacts; a contact with two tasks or more has its own list read next.
    assert!(
        fetched <= 35 * searched && fetched >= 30 * searched,
        "{searched} batches of 35 contacts and {own} contacts' own lists: {fetched}"
    );
    // Tasks are added, edited and deleted everywhere, before and after the point reached; no
    // contact's dateUpdated moves.
    let churn = k.sandbox.churn_subresources(LOC, 0.2, false);
    assert!(
        churn.tasks_deleted > 0 && churn.tasks_added > 0,
        "{churn:?}"
    );
    let mut runs = 0;
    while k.subs(&client, &o).await.outcome != Outcome::Success {
        runs += 1;
        assert!(runs < 25);
    }
    // Each contact is read once, but one whose own list the budget cut off is in the next
    // run's first search again.
    let searches = k.sandbox.stats(LOC).task_search_requests;
    assert!(
        searches <= 2 * (1_000 / 35 + 10),
        "each contact searched at most twice: {searches}"
    );
    let due = k.count(&format!(
        "SELECT COUNT(*) FROM contact_freshness WHERE location_id = '{LOC}' AND tasks_due"
    ));
    assert_eq!(due, 0);
    // Contacts read before the changes are refreshed by the rolling refresh.
    let rolling = SubOptions {
        refresh_after: std::time::Duration::ZERO,
        run_requests: 1_000,
        ..o
    };
    assert_success(&k.subs(&client, &rolling).await);
    assert_eq!(
        k.mirrored(LOC, SubKind::Tasks),
        k.upstream(LOC, SubKind::Tasks)
    );
}

/// Contact ids whose `kind` list has been fetched, and the location's contacts by recency (the
/// order due lists are served in: dateUpdated, then id, descending).
fn fetched_and_recency(k: &Kit, kind: SubKind) -> (Vec<String>, Vec<String>) {
    let ids = |sql: &str| -> Vec<String> {
        k.store
            .query(sql, usize::MAX)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect()
    };
    let fetched = ids(&format!(
        "SELECT contact_id FROM contact_fetches WHERE location_id = '{LOC}' AND kind = '{}'",
        kind.as_str()
    ));
    let recency = ids(&format!(
        "SELECT id FROM contacts WHERE location_id = '{LOC}' AND deleted_at IS NULL
         ORDER BY date_updated_ms DESC, id DESC"
    ));
    (fetched, recency)
}

#[tokio::test]
async fn a_small_budget_serves_every_kind_most_recently_updated_contact_first() {
    // The issue's case at small scale: every list of 200 contacts due, 30 requests a run.
    let k = kit(200).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let o = SubOptions {
        run_requests: 30,
        ..sub_opts(true)
    };
    let mut runs = 0;
    let mut done_before = BTreeMap::new();
    loop {
        let r = k.subs(&client, &o).await;
        runs += 1;
        assert!(r.progress.requests <= 30, "{}", r.progress.requests);
        for kind in SubKind::ALL {
            let (fetched, recency) = fetched_and_recency(&k, kind);
            let before = done_before.insert(kind, fetched.len()).unwrap_or(0);
            if runs == 1 {
                assert!(
                    !fetched.is_empty(),
                    "{kind:?}: the first run fetched none of these lists"
                );
            }
            if kind != SubKind::Tasks {
                // One request per list: exactly the most recently updated contacts are done.
                let mut want = recency[..fetched.len()].to_vec();
                let mut got = fetched.clone();
                want.sort();
                got.sort();
                assert_eq!(got, want, "run {runs}: {kind:?} out of recency order");
            } else if runs == 1 {
                // The first task batch holds the most recent contacts.
                let top: Vec<&String> = recency.iter().take(2 * 35).collect();
                assert!(fetched.iter().all(|c| top.contains(&c)), "{fetched:?}");
            }
            assert!(fetched.len() >= before);
        }
        if r.outcome == Outcome::Success {
            break;
        }
        assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
        assert!(runs < 30, "no progress after {runs} runs");
    }
    k.assert_subs_mirror(LOC);
}

#[tokio::test]
async fn business_links_follow_upstream() {
    let k = kit(500).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let b = BusinessOptions {
        page_limit: 20,
        ..BusinessOptions::default()
    };
    let r = sync_businesses(&k.store, &client, &b, stop()).await;
    assert_success(&r);
    let assert_links = || {
        let businesses = k.sandbox.businesses_json(LOC);
        assert!(!businesses.is_empty());
        assert_eq!(
            k.count(&format!(
                "SELECT COUNT(*) FROM businesses WHERE location_id = '{LOC}' AND deleted_at IS NULL"
            )),
            businesses.len() as i64
        );
        for biz in businesses {
            let id = biz["id"].as_str().unwrap();
            let mut want = k.sandbox.business_contact_ids(LOC, id);
            want.sort();
            let got = k
                .store
                .query(
                    &format!("SELECT contact_id FROM business_contacts WHERE location_id = '{LOC}' AND business_id = '{id}' ORDER BY contact_id"),
                    usize::MAX,
                )
                .unwrap()
                .rows
                .into_iter()
                .map(|r| r[0].clone().unwrap())
                .collect::<Vec<_>>();
            assert_eq!(got, want, "business {id}");
            let raw: Value = serde_json::from_str(
                &k.store
                    .query(&format!("SELECT raw FROM businesses WHERE id = '{id}'"), 1)
                    .unwrap()
                    .rows[0][0]
                    .clone()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(raw, biz);
        }
    };
    assert_links();
    let ids = k.sandbox.live_contact_ids(LOC);
    let businesses = k.sandbox.businesses_json(LOC);
    let (b0, b1) = (
        businesses[0]["id"].as_str().unwrap().to_string(),
        businesses[1]["id"].as_str().unwrap().to_string(),
    );
    assert!(k.sandbox.set_contact_business(LOC, &ids[0], Some(&b0)));
    assert!(k.sandbox.set_contact_business(LOC, &ids[1], Some(&b1)));
    assert!(k.sandbox.set_contact_business(LOC, &ids[2], None));
    assert_success(&sync_businesses(&k.store, &client, &b, stop()).await);
    assert_links();
}

#[tokio::test]
async fn overlapping_runs_of_a_stream_are_refused() {
    let mut cfg = SandboxConfig::new(4, seeds(&[150]));
    cfg.latency = std::time::Duration::from_millis(5);
    let k = kit_with(cfg).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let o = sub_opts(false);
    let (a, b) = tokio::join!(k.subs(&client, &o), k.subs(&client, &o));
    let mut outcomes = [a.outcome, b.outcome];
    outcomes.sort_by_key(|o| o.as_str());
    assert_eq!(outcomes, [Outcome::Skipped, Outcome::Success]);
    let skipped = if a.outcome == Outcome::Skipped {
        &a
    } else {
        &b
    };
    assert!(
        skipped
            .error
            .as_deref()
            .unwrap()
            .contains("syncing the subresources")
    );
    assert_eq!(skipped.progress.requests, 0);
    k.assert_subs_mirror(LOC);
}

#[tokio::test]
async fn a_revoked_token_fails_one_location_and_the_other_completes() {
    let k = kit_with(SandboxConfig::new(3, seeds(&[120, 80]))).await;
    let good = Client::new(k.settings(LOC, TOKEN)).unwrap();
    let bad = Client::new(k.settings(LOC2, TOKEN2)).unwrap();
    k.sandbox.revoke_token(LOC2);
    let opts = StreamOptions {
        contacts: opts(),
        subs: sub_opts(true),
        businesses: Some(BusinessOptions::default()),
    };
    let s = stop();
    let (g, b) = tokio::join!(
        run_job(&k.store, &good, Job::All, &opts, &s),
        run_job(&k.store, &bad, Job::All, &opts, &s)
    );
    assert_eq!(g.len(), 3);
    for r in &g {
        assert_success(r);
    }
    assert_eq!(b[0].outcome, Outcome::Failed, "{b:?}");
    assert_eq!(
        b[1].progress.requests, 0,
        "no contact mirrored, no list due: {b:?}"
    );
    assert_eq!(b[2].outcome, Outcome::Failed, "{b:?}");
    assert!(
        b[0].error
            .as_deref()
            .unwrap()
            .contains("rejected the token"),
        "{:?}",
        b[0].error
    );
    assert!(
        b[2].error
            .as_deref()
            .unwrap()
            .contains("rejected the token"),
        "{:?}",
        b[2].error
    );
    let state: Option<SubState> = k.store.load_json_state(LOC2, Stream::Subresources).unwrap();
    assert!(
        state.is_none_or(|s| s.bulk_off_since_ms.is_none()),
        "a revoked token is not a missing scope"
    );
    k.assert_mirrors(LOC);
    k.assert_subs_mirror(LOC);
}

#[tokio::test]
async fn a_deleted_contact_takes_its_lists_and_links_with_it() {
    let k = kit(200).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    assert_success(&k.subs(&client, &sub_opts(false)).await);
    assert_success(&sync_businesses(&k.store, &client, &BusinessOptions::default(), stop()).await);
    let ids = k.sandbox.live_contact_ids(LOC);
    let gone = ids
        .iter()
        .find(|id| {
            !k.sandbox.notes_json(LOC, id).unwrap().is_empty()
                && !k.sandbox.tasks_json(LOC, id).unwrap().is_empty()
        })
        .unwrap()
        .clone();
    let linked = k.count(&format!(
        "SELECT COUNT(*) FROM business_contacts WHERE contact_id = '{gone}'"
    ));
    assert!(k.sandbox.delete_contact(LOC, &gone));
    let full = ghl_mirror::sync::SyncOptions {
        force_full: true,
        ..opts()
    };
    let r = k.sync(&client, &full).await;
    assert_success(&r);
    assert_eq!(r.progress.tombstoned, 1);
    for table in ["tasks", "notes", "appointments"] {
        assert_eq!(
            k.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE contact_id = '{gone}' AND deleted_at IS NULL"
            )),
            0,
            "{table}"
        );
    }
    assert!(
        k.count(&format!(
            "SELECT COUNT(*) FROM notes WHERE contact_id = '{gone}'"
        )) > 0
    );
    assert_eq!(
        k.count(&format!(
            "SELECT COUNT(*) FROM business_contacts WHERE contact_id = '{gone}'"
        )),
        0,
        "it had {linked} links"
    );
    k.assert_subs_mirror(LOC);
}

/// A mock HighLevel whose contacts search returns contacts with these ids, in this order.
async fn mock_location(ids: &[String]) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let contacts: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"id": id, "locationId": "loc1", "dateUpdated": "2024-01-01T00:00:00.000Z",
                               "searchAfter": [i + 1, id]})
        })
        .collect();
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"contacts": contacts, "total": ids.len()})),
        )
        .mount(&server)
        .await;
    server
}

/// Ids `c00`, `c01`, ... for `n` contacts.
fn contact_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i:02}")).collect()
}

/// A fresh mirror of the mock location's contacts, and a client for it.
async fn mirror_of(
    server: &wiremock::MockServer,
) -> (tempfile::TempDir, ghl_mirror::store::Store, Client) {
    let dir = tempfile::tempdir().unwrap();
    let store = ghl_mirror::store::Store::open(&dir.path().join("m.db")).unwrap();
    let client = Client::new(crate::errors::mock_settings(server)).unwrap();
    assert_success(&ghl_mirror::sync::sync_contacts(&store, &client, &opts(), stop(), None).await);
    (dir, store, client)
}

/// A location with three contacts on a mock HighLevel: `c1`'s notes are malformed, the
/// appointments endpoint refuses the token's scope, everything else answers normally.
async fn poisoned_upstream() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let ids: Vec<String> = ["c1", "c2", "c3"].map(String::from).to_vec();
    let server = mock_location(&ids).await;
    for id in ["c1", "c2", "c3"] {
        let notes = if id == "c1" {
            serde_json::json!({"notes": [{"body": "a note without an id"}]})
        } else {
            serde_json::json!({"notes": [{"id": format!("n-{id}"), "body": "hi", "contactId": id}]})
        };
        Mock::given(method("GET"))
            .and(path(format!("/contacts/{id}/notes")))
            .respond_with(ResponseTemplate::new(200).set_body_json(notes))
            .mount(&server)
            .await;
        // c1's own list has a due date SQLite cannot use in a generated column.
        let due = if id == "c1" {
            "now"
        } else {
            "2024-02-01T10:00:00.000Z"
        };
        Mock::given(method("GET"))
            .and(path(format!("/contacts/{id}/tasks")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!(
                {"tasks": [{"id": format!("t-{id}"), "title": "call", "contactId": id, "dueDate": due}]}
            )))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/contacts/{id}/appointments")))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!(
                {"statusCode": 401, "message": "The token is not authorized for this scope."}
            )))
            .mount(&server)
            .await;
    }
    // The task search spoils any batch that holds c1 with an item without an id.
    Mock::given(method("POST"))
        .and(path("/locations/loc1/tasks/search"))
        .respond_with(|req: &wiremock::Request| {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let tasks: Vec<serde_json::Value> = body["contactId"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let c = c.as_str().unwrap();
                    if c == "c1" {
                        serde_json::json!({"title": "no id", "contactId": c})
                    } else {
                        serde_json::json!({"id": format!("t-{c}"), "title": "call", "contactId": c,
                                           "dueDate": "2024-02-01T10:00:00.000Z"})
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(serde_json::json!({ "tasks": tasks }))
        })
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_bad_item_in_a_task_batch_is_narrowed_down_to_its_contact() {
    let server = poisoned_upstream().await;
    let (_dir, store, client) = mirror_of(&server).await;
    let o = SubOptions {
        kinds: vec![SubKind::Tasks],
        ..sub_opts(true)
    };
    let r = sync_subresources(&store, &client, &o, stop(), None).await;
    assert_success(&r);
    assert_eq!(r.progress.warnings, 0, "nothing was skipped");
    let one = |sql: &str| -> String { store.query(sql, 1).unwrap().rows[0][0].clone().unwrap() };
    assert_eq!(
        one(
            "SELECT group_concat(contact_id) FROM (SELECT contact_id FROM tasks WHERE deleted_at IS NULL ORDER BY 1)"
        ),
        "c1,c2,c3",
        "c1's tasks came from its own list"
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM tasks WHERE due_date_ms IS NULL"),
        "1",
        "\"now\" is kept, not parsed"
    );
    let calls: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .filter(|p| p.contains("task"))
        .collect();
    // Halving: [c3 c2 c1] spoiled -> [c3] ok, [c2 c1] spoiled -> [c2] ok, [c1] spoiled -> its list.
    let searches = calls.iter().filter(|c| c.starts_with("POST")).count();
    assert_eq!(searches, 5, "{calls:?}");
    let gets: Vec<&String> = calls.iter().filter(|c| c.starts_with("GET")).collect();
    assert_eq!(gets, ["GET /contacts/c1/tasks"]);
}

#[tokio::test]
async fn one_unreadable_list_or_refused_kind_does_not_block_the_rest() {
    let server = poisoned_upstream().await;
    let (_dir, store, client) = mirror_of(&server).await;
    let o = sub_opts(false);
    let r = sync_subresources(&store, &client, &o, stop(), None).await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    let e = r.error.unwrap();
    assert!(
        e.contains("appointments") && e.contains("skipped for a day"),
        "{e}"
    );
    assert!(e.contains("not authorized for this scope"), "{e}");
    assert_eq!(r.progress.warnings, 1, "c1's malformed notes");
    let one = |sql: &str| -> String { store.query(sql, 1).unwrap().rows[0][0].clone().unwrap() };
    assert_eq!(
        one("SELECT COUNT(*) FROM tasks WHERE deleted_at IS NULL"),
        "3"
    );
    assert_eq!(
        one("SELECT group_concat(contact_id) FROM (SELECT contact_id FROM notes ORDER BY 1)"),
        "c2,c3"
    );
    let appointments = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/appointments"))
        .count();
    assert!(
        appointments <= 2,
        "a refused kind stops being asked at once: {appointments}"
    );
    // The next run neither retries the unreadable list nor asks for appointments again.
    let before = server.received_requests().await.unwrap().len();
    let again = sync_subresources(&store, &client, &o, stop(), None).await;
    assert_success(&again);
    assert_eq!(server.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn a_stop_signal_abandons_a_hung_request_within_the_grace_period() {
    let k = kit(50).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    k.sandbox.set_faults(ghl_mirror::sandbox::Faults {
        timeout: 1.0,
        timeout_delay: std::time::Duration::from_secs(60),
        ..Default::default()
    });
    let mut settings = k.settings(LOC, TOKEN);
    settings.timeout = std::time::Duration::from_secs(120);
    let slow = Client::new(settings).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let t = std::time::Instant::now();
    let run = tokio::spawn({
        let store = k.store.clone();
        async move { sync_subresources(&store, &slow, &sub_opts(false), rx, None).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    let r = run.await.unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(6),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert!(r.error.unwrap().contains("stopped by signal"));
}

#[tokio::test]
async fn a_kind_that_keeps_failing_is_set_aside_while_the_others_go_on() {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let server = mock_location(&contact_ids(12)).await;
    Mock::given(method("GET"))
        .and(path_regex("^/contacts/c[0-9]+/notes$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"notes": []})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/contacts/c[0-9]+/appointments$"))
        .respond_with(ResponseTemplate::new(422).set_body_json(serde_json::json!(
            {"statusCode": 422, "message": ["something changed"], "error": "Unprocessable Entity"}
        )))
        .mount(&server)
        .await;
    let (_dir, store, client) = mirror_of(&server).await;
    let o = SubOptions {
        kinds: vec![SubKind::Notes, SubKind::Appointments],
        ..sub_opts(false)
    };
    let r = sync_subresources(&store, &client, &o, stop(), None).await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    let e = r.error.unwrap();
    assert!(
        e.contains("appointments lists could not be read") && e.contains("something changed"),
        "{e}"
    );
    let one = |sql: &str| -> String { store.query(sql, 1).unwrap().rows[0][0].clone().unwrap() };
    assert_eq!(
        one("SELECT COUNT(*) FROM contact_fetches WHERE kind = 'notes'"),
        "12"
    );
    let recorded: i64 = one("SELECT COUNT(*) FROM contact_fetches WHERE kind = 'appointments'")
        .parse()
        .unwrap();
    assert!(
        recorded < 5,
        "a broken kind is not marked fetched for everyone: {recorded}"
    );
}

#[tokio::test]
async fn a_list_fetched_before_its_contact_was_tombstoned_is_not_brought_back() {
    let k = kit(20).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let id = k.sandbox.live_contact_ids(LOC)[0].clone();
    // The sub-resource run picked the list and fetched it ...
    let due = k.store.due_fetches(LOC, &[SubKind::Notes], 100).unwrap();
    let picked = due.into_iter().find(|d| d.contact_id == id).unwrap();
    let notes = vec![ghl_mirror::model::Record {
        id: "n1".into(),
        contact_id: Some(id.clone()),
        raw: format!(r#"{{"id":"n1","contactId":"{id}","body":"late"}}"#),
    }];
    // ... meanwhile a reconciling sweep tombstoned the contact ...
    assert!(k.sandbox.delete_contact(LOC, &id));
    let full = ghl_mirror::sync::SyncOptions {
        force_full: true,
        ..opts()
    };
    assert_eq!(k.sync(&client, &full).await.progress.tombstoned, 1);
    // ... and then the list is committed.
    let run_id = k
        .store
        .begin_run(LOC, Stream::Subresources, "subresources")
        .unwrap();
    let run = ghl_mirror::store::RunKey {
        location: LOC,
        stream: Stream::Subresources,
        run_id,
    };
    let list = ghl_mirror::store::ContactList {
        contact_id: id.clone(),
        kind: SubKind::Notes,
        seen_updated_ms: picked.updated_ms,
        items: Some(notes),
        ordered: true,
    };
    let mut p = ghl_mirror::model::RunProgress::default();
    k.store.commit_lists(run, &[list], &mut p).unwrap();
    assert_eq!(k.count("SELECT COUNT(*) FROM notes"), 0);
    assert_eq!(
        k.count(&format!(
            "SELECT COUNT(*) FROM contact_fetches WHERE contact_id = '{id}'"
        )),
        0
    );
}

#[tokio::test]
async fn contacts_deleted_upstream_do_not_set_a_kind_aside() {
    let k = kit(40).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    // The six most recently updated contacts (the head of the due queue) are deleted upstream;
    // no reconciling sweep has run yet.
    let newest = k
        .store
        .query(
            "SELECT id FROM contacts ORDER BY date_updated_ms DESC, id DESC LIMIT 6",
            6,
        )
        .unwrap()
        .rows;
    for row in &newest {
        assert!(k.sandbox.delete_contact(LOC, row[0].as_deref().unwrap()));
    }
    let r = k.subs(&client, &sub_opts(false)).await;
    assert_success(&r);
    let state: Option<SubState> = k.store.load_json_state(LOC, Stream::Subresources).unwrap();
    assert!(state.is_none_or(|s| s.kinds_off_since_ms.is_empty()));
    k.assert_subs_mirror(LOC);
}

#[tokio::test]
async fn a_task_search_that_always_fails_is_switched_off() {
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let server = mock_location(&contact_ids(40)).await;
    Mock::given(method("POST"))
        .and(path("/locations/loc1/tasks/search"))
        .respond_with(ResponseTemplate::new(422).set_body_json(serde_json::json!(
            {"statusCode": 422, "message": ["property contactId should not exist"], "error": "Unprocessable Entity"}
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/contacts/c[0-9]+/tasks$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"tasks": []})))
        .mount(&server)
        .await;
    let (_dir, store, client) = mirror_of(&server).await;
    let o = SubOptions {
        kinds: vec![SubKind::Tasks],
        ..sub_opts(true)
    };
    let r = sync_subresources(&store, &client, &o, stop(), None).await;
    assert_success(&r);
    let calls = server.received_requests().await.unwrap();
    let searches = calls
        .iter()
        .filter(|c| c.url.path().ends_with("/tasks/search"))
        .count();
    let gets = calls
        .iter()
        .filter(|c| c.url.path().ends_with("/tasks"))
        .count();
    assert!(
        searches <= 6,
        "switched off after a few failures: {searches}"
    );
    assert_eq!(gets, 40);
    let state: SubState = store
        .load_json_state("loc1", Stream::Subresources)
        .unwrap()
        .unwrap();
    assert!(state.bulk_off_since_ms.is_some());
}

#[tokio::test]
async fn reporting_views_flatten_only_what_exists_upstream() {
    let k = kit(150).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    assert_success(&k.subs(&client, &sub_opts(true)).await);
    assert_success(&sync_businesses(&k.store, &client, &BusinessOptions::default(), stop()).await);
    let gone = k.sandbox.live_contact_ids(LOC)[0].clone();
    assert!(k.sandbox.delete_contact(LOC, &gone));
    let full = ghl_mirror::sync::SyncOptions {
        force_full: true,
        ..opts()
    };
    assert_success(&k.sync(&client, &full).await);

    assert_eq!(k.count("SELECT COUNT(*) FROM live_contacts"), 149);
    assert_eq!(
        k.count(&format!(
            "SELECT COUNT(*) FROM live_contacts WHERE id = '{gone}'"
        )),
        0
    );
    // Every count in the flat view agrees with the sandbox.
    let upstream_open: usize = k
        .sandbox
        .live_contact_ids(LOC)
        .iter()
        .map(|id| {
            k.sandbox
                .tasks_json(LOC, id)
                .unwrap()
                .iter()
                .filter(|t| t["completed"] == false)
                .count()
        })
        .sum();
    assert_eq!(
        k.count("SELECT SUM(open_tasks) FROM live_contacts") as usize,
        upstream_open
    );
    assert_eq!(
        k.count("SELECT COUNT(*) FROM open_tasks") as usize,
        upstream_open
    );
    let upstream_notes: usize = k
        .sandbox
        .live_contact_ids(LOC)
        .iter()
        .map(|id| k.sandbox.notes_json(LOC, id).unwrap().len())
        .sum();
    assert_eq!(
        k.count("SELECT SUM(notes) FROM live_contacts") as usize,
        upstream_notes
    );
    assert!(k.count("SELECT COUNT(*) FROM live_contacts WHERE business_name IS NOT NULL") > 0);
    assert!(k.count("SELECT COUNT(*) FROM live_contacts WHERE tags LIKE '%, %'") > 0);
    assert_eq!(
        k.count(
            "SELECT COUNT(*) FROM upcoming_appointments WHERE start_ms < unixepoch('now') * 1000"
        ),
        0
    );
    assert!(k.count("SELECT COUNT(*) FROM live_custom_values") > 0);
}

#[tokio::test]
async fn custom_fields_are_reported_by_name() {
    let k = kit(120).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    assert_success(&sync_businesses(&k.store, &client, &BusinessOptions::default(), stop()).await);
    // The definitions are mirrored exactly (contact fields only).
    let sql = format!(
        "SELECT raw FROM custom_fields WHERE location_id = '{LOC}' AND deleted_at IS NULL ORDER BY position"
    );
    let local: Vec<Value> = k
        .store
        .query(&sql, 100)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| serde_json::from_str(r[0].as_deref().unwrap()).unwrap())
        .collect();
    let upstream = k.sandbox.custom_fields_json(LOC);
    assert_eq!(local.len(), 5);
    assert_eq!(local, upstream);
    // Every value of every live contact carries its field's name, in both views.
    assert_eq!(
        k.count("SELECT COUNT(*) FROM live_custom_values WHERE field_name IS NULL"),
        0
    );
    let names: std::collections::HashMap<String, String> = upstream
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().into(),
                f["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut checked = 0;
    for id in k.sandbox.live_contact_ids(LOC) {
        let contact = k.sandbox.contact_json(LOC, &id).unwrap();
        let want: serde_json::Map<String, Value> = contact["customFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (names[f["id"].as_str().unwrap()].clone(), f["value"].clone()))
            .collect();
        let row = k
            .store
            .query(
                &format!("SELECT custom_fields FROM live_contacts WHERE id = '{id}'"),
                1,
            )
            .unwrap();
        let got: Value = serde_json::from_str(row.rows[0][0].as_deref().unwrap()).unwrap();
        assert_eq!(got, Value::Object(want), "{id}");
        checked += usize::from(!contact["customFields"].as_array().unwrap().is_empty());
    }
    assert!(checked > 20, "{checked}");
}

#[tokio::test]
async fn without_the_custom_field_scope_the_business_run_still_succeeds_with_a_warning() {
    let k = kit(40).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    k.sandbox.set_custom_fields_scope(LOC, false);
    let r = sync_businesses(&k.store, &client, &BusinessOptions::default(), stop()).await;
    assert_success(&r);
    assert_eq!(r.progress.warnings, 1);
    assert_eq!(k.count("SELECT COUNT(*) FROM custom_fields"), 0);
    assert!(k.count("SELECT COUNT(*) FROM businesses WHERE deleted_at IS NULL") > 0);
    // The values stay reportable, by field id.
    assert!(k.count("SELECT COUNT(*) FROM live_custom_values WHERE field_name IS NULL") > 0);
    // Once the scope is granted, the next run names them.
    k.sandbox.set_custom_fields_scope(LOC, true);
    assert_success(&sync_businesses(&k.store, &client, &BusinessOptions::default(), stop()).await);
    assert_eq!(
        k.count("SELECT COUNT(*) FROM custom_fields WHERE deleted_at IS NULL"),
        5
    );
    assert_eq!(
        k.count("SELECT COUNT(*) FROM live_custom_values WHERE field_name IS NULL"),
        0
    );
}

#[tokio::test]
async fn a_contacts_own_task_list_sets_the_order_the_search_could_not() {
    let k = kit(5).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    let id = k.sandbox.live_contact_ids(LOC)[0].clone();
    let task = |t: &str| ghl_mirror::model::Record {
        id: t.into(),
        contact_id: Some(id.clone()),
        raw: format!(r#"{{"id":"{t}","contactId":"{id}","title":"{t}"}}"#),
    };
    let run_id = k
        .store
        .begin_run(LOC, Stream::Subresources, "subresources")
        .unwrap();
    let run = ghl_mirror::store::RunKey {
        location: LOC,
        stream: Stream::Subresources,
        run_id,
    };
    let commit = |items: Vec<ghl_mirror::model::Record>, ordered: bool| {
        let list = ghl_mirror::store::ContactList {
            contact_id: id.clone(),
            kind: SubKind::Tasks,
            seen_updated_ms: None,
            items: Some(items),
            ordered,
        };
        let mut p = ghl_mirror::model::RunProgress::default();
        k.store.commit_lists(run, &[list], &mut p).unwrap();
    };
    let served = || -> Vec<String> {
        k.store
            .list_of(SubKind::Tasks, LOC, &id)
            .unwrap()
            .items
            .iter()
            .map(|raw| serde_json::from_str::<Value>(raw).unwrap()["id"].to_string())
            .collect()
    };
    // Stored first in the search's order (as mirrors before the fix did) ...
    commit(vec![task("b"), task("a")], false);
    assert_eq!(served(), [r#""b""#, r#""a""#]);
    // ... the contact's own list puts them in its order, though they were stored the other way.
    commit(vec![task("a"), task("b")], true);
    assert_eq!(served(), [r#""a""#, r#""b""#]);
    // A task new to the search goes after the known ones, which keep their places.
    commit(vec![task("c"), task("b"), task("a")], false);
    assert_eq!(served(), [r#""a""#, r#""b""#, r#""c""#]);
}

#[tokio::test]
async fn a_failed_count_for_the_progress_display_does_not_fail_the_run() {
    let k = kit(120).await;
    let client = k.client();
    assert_success(&k.sync(&client, &opts()).await);
    // The plan shown to an observer counts business links too; a sub-resource run needs none.
    rusqlite::Connection::open(k.dir.path().join("mirror.db"))
        .unwrap()
        .execute_batch("DROP TABLE business_contacts")
        .unwrap();
    let plans = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = plans.clone();
    let obs: ghl_mirror::sync::Observer = std::sync::Arc::new(move |ev| {
        if matches!(ev, ghl_mirror::sync::SyncEvent::Plan { .. }) {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let r = sync_subresources(&k.store, &client, &sub_opts(false), stop(), Some(obs)).await;
    assert_success(&r);
    assert_eq!(plans.load(std::sync::atomic::Ordering::SeqCst), 0);
    k.assert_subs_mirror(LOC);
}

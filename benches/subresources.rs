//! Sub-resource benchmark (not a test): `cargo bench --bench subresources`.
//!
//! A sandbox location of N contacts (default 20,000) with about 2 tasks, 3 notes and 1
//! appointment each, HighLevel's rate limits (100 requests / 10 s, scaled by
//! `BENCH_LIMIT_SCALE`, default 1 = the real ones) and 100 ms latency:
//! 1. from empty: contacts, then every contact's tasks (bulk search), notes and appointments,
//!    then businesses and their links; requests per endpoint and wall time;
//! 2. after 1% churn (1% of the contacts get task/note/appointment adds, edits and removals,
//!    and their dateUpdated moves): the same streams again;
//! 3. the naive approach for comparison (1 request per contact for the contact, plus 3 for its
//!    lists, every time, since without change detection it must re-read everything), computed
//!    from N and the request rate measured in phase 1.
//!
//! Both phases check the mirror against the sandbox field by field.
//!
//! Environment: `BENCH_CONTACTS`, `BENCH_LIMIT_SCALE`, `BENCH_LATENCY_MS`, `BENCH_IN_FLIGHT`
//! (requests in flight per location, default 2).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark aborts on any setup failure

use ghl_mirror::daemon::{Job, StreamOptions, run_job};
use ghl_mirror::model::{Outcome, SubKind};
use ghl_mirror::sandbox::{LocationSeed, RateLimits, Sandbox, SandboxConfig, SandboxStats};
use ghl_mirror::store::Store;
use ghl_mirror::sync::{BusinessOptions, SubOptions, SyncOptions};
use ghl_mirror::upstream::{Client, ClientSettings};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LOC: &str = "sandboxLocation00001";
const TOKEN: &str = "pit-sandbox-token-1";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Phase {
    name: &'static str,
    requests: u64,
    wall: Duration,
    by_route: Vec<(&'static str, u64)>,
    rate_limited: u64,
}

fn delta(a: &SandboxStats, b: &SandboxStats) -> Vec<(&'static str, u64)> {
    vec![
        (
            "POST /contacts/search",
            b.search_requests - a.search_requests,
        ),
        (
            "GET /contacts/:id/tasks",
            b.tasks_requests - a.tasks_requests,
        ),
        (
            "GET /contacts/:id/notes",
            b.notes_requests - a.notes_requests,
        ),
        (
            "GET /contacts/:id/appointments",
            b.appointments_requests - a.appointments_requests,
        ),
        (
            "POST /locations/:id/tasks/search",
            b.task_search_requests - a.task_search_requests,
        ),
        (
            "GET /businesses/",
            b.business_requests - a.business_requests,
        ),
        (
            "GET /contacts/business/:id",
            b.business_contacts_requests - a.business_contacts_requests,
        ),
    ]
}

async fn phase(
    name: &'static str,
    sandbox: &Sandbox,
    store: &Store,
    client: &Client,
    opts: &StreamOptions,
) -> Phase {
    let before = sandbox.stats(LOC);
    let stop = tokio::sync::watch::channel(false).1;
    let t = Instant::now();
    let reports = run_job(store, client, Job::All, opts, &stop).await;
    let wall = t.elapsed();
    for r in &reports {
        assert_eq!(
            r.outcome,
            Outcome::Success,
            "{name}: {} {:?}",
            r.mode,
            r.error
        );
    }
    let after = sandbox.stats(LOC);
    Phase {
        name,
        requests: after.requests - before.requests,
        wall,
        by_route: delta(&before, &after),
        rate_limited: after.rate_limited - before.rate_limited,
    }
}

/// The mirror holds exactly the sandbox's tasks, notes and appointments.
fn check(sandbox: &Sandbox, store: &Store) {
    for kind in SubKind::ALL {
        let sql = format!(
            "SELECT contact_id, raw FROM {} WHERE location_id = '{LOC}' AND deleted_at IS NULL ORDER BY id",
            kind.as_str()
        );
        let mut local: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for row in store.query(&sql, usize::MAX).unwrap().rows {
            let raw: Value = serde_json::from_str(row[1].as_deref().unwrap()).unwrap();
            local.entry(row[0].clone().unwrap()).or_default().push(raw);
        }
        let mut up: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for id in sandbox.live_contact_ids(LOC) {
            let mut items = match kind {
                SubKind::Tasks => sandbox.tasks_json(LOC, &id),
                SubKind::Notes => sandbox.notes_json(LOC, &id),
                SubKind::Appointments => sandbox.appointments_json(LOC, &id),
            }
            .unwrap();
            if !items.is_empty() {
                items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                up.insert(id, items);
            }
        }
        assert_eq!(local, up, "{kind:?} differ from the sandbox");
    }
}

fn print(p: &Phase) {
    println!(
        "{}: {} requests in {:.1} s ({:.1} requests/s, {} answered 429)",
        p.name,
        p.requests,
        p.wall.as_secs_f64(),
        p.requests as f64 / p.wall.as_secs_f64(),
        p.rate_limited
    );
    for (route, n) in &p.by_route {
        if *n > 0 {
            println!("    {route:<34} {n:>7}");
        }
    }
}

fn main() {
    let contacts = env_num("BENCH_CONTACTS", 20_000) as usize;
    let scale = env_num("BENCH_LIMIT_SCALE", 1).max(1) as u32;
    let latency = env_num("BENCH_LATENCY_MS", 100);
    let in_flight = env_num("BENCH_IN_FLIGHT", 2) as usize;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut cfg = SandboxConfig::new(
            2026,
            vec![LocationSeed {
                id: LOC.into(),
                token: TOKEN.into(),
                contacts,
            }],
        );
        cfg.latency = Duration::from_millis(latency);
        let limits = RateLimits {
            burst_max: 100 * scale,
            ..RateLimits::default()
        };
        cfg.limits = Some(limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox = Sandbox::start(cfg, listener).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("bench.db")).unwrap();
        let client = Client::new(ClientSettings {
            base_url: sandbox.base_url().parse().unwrap(),
            api_version: "2021-07-28".into(),
            location_id: LOC.into(),
            credentials: ghl_mirror::upstream::Credentials::Static(SecretString::from(TOKEN.to_string())),
            timeout: Duration::from_secs(30),
            burst_max: limits.burst_max,
            interval: limits.interval,
            safety_margin: Duration::from_millis(200),
            daily_reserve: 5_000,
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
        })
        .unwrap();
        let opts = StreamOptions {
            contacts: SyncOptions {
                max_in_flight: in_flight,
                ..SyncOptions::default()
            },
            subs: SubOptions {
                run_requests: 10_000_000,
                daily_share: 1.0,
                max_in_flight: in_flight,
                ..SubOptions::default()
            },
            businesses: Some(BusinessOptions {
                run_requests: 10_000_000,
                daily_share: 1.0,
                ..BusinessOptions::default()
            }),
        };
        let items: usize = sandbox
            .live_contact_ids(LOC)
            .iter()
            .map(|id| {
                sandbox.tasks_json(LOC, id).unwrap().len()
                    + sandbox.notes_json(LOC, id).unwrap().len()
                    + sandbox.appointments_json(LOC, id).unwrap().len()
            })
            .sum();
        println!(
            "{contacts} contacts with {items} tasks, notes and appointments; limits {} requests / {:?}; {latency} ms latency; {in_flight} in flight",
            limits.burst_max, limits.interval
        );
        let empty = phase("from empty", &sandbox, &store, &client, &opts).await;
        print(&empty);
        check(&sandbox, &store);
        let churn = sandbox.churn_subresources(LOC, 0.01, true);
        println!("churn: {} contacts changed", churn.contacts.len());
        // Search is eventually consistent; let the churned contacts become visible.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = phase("after 1% churn", &sandbox, &store, &client, &opts).await;
        print(&after);
        check(&sandbox, &store);
        let rate = empty.requests as f64 / empty.wall.as_secs_f64();
        let naive = contacts as u64 * 4;
        println!(
            "naive (1 + 3 per contact, every run): {naive} requests per run, {:.0} s at the rate measured above; ours: {} from empty ({:.1}x fewer), {} after churn ({:.0}x fewer)",
            naive as f64 / rate,
            empty.requests,
            naive as f64 / empty.requests as f64,
            after.requests,
            naive as f64 / after.requests.max(1) as f64
        );
        sandbox.shutdown().await;
    });
}

//! The test kit: each test gets its own sandbox (port 0), temp database and fast retry settings.

use ghl_mirror::model::{Outcome, StreamState};
use ghl_mirror::sandbox::{LocationSeed, Sandbox, SandboxConfig};
use ghl_mirror::store::Store;
use ghl_mirror::sync::{Observer, SyncEvent, SyncOptions, SyncReport, sync_contacts};
use ghl_mirror::upstream::{Client, ClientSettings, Credentials};
use secrecy::SecretString;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tempfile::TempDir;

pub const LOC: &str = "sandboxLocation00001";
pub const TOKEN: &str = "pit-sandbox-token-1";
pub const LOC2: &str = "sandboxLocation00002";
pub const TOKEN2: &str = "pit-sandbox-token-2";

pub struct Kit {
    pub sandbox: Sandbox,
    pub store: Store,
    pub dir: TempDir,
}

pub fn seeds(contacts: &[usize]) -> Vec<LocationSeed> {
    contacts
        .iter()
        .enumerate()
        .map(|(i, n)| LocationSeed {
            id: format!("sandboxLocation{:05}", i + 1),
            token: format!("pit-sandbox-token-{}", i + 1),
            contacts: *n,
        })
        .collect()
}

/// A sandbox with one location of `contacts` contacts, no latency, no limits.
pub async fn kit(contacts: usize) -> Kit {
    kit_with(SandboxConfig::new(7, seeds(&[contacts]))).await
}

pub async fn kit_with(config: SandboxConfig) -> Kit {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(config, listener).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("mirror.db")).unwrap();
    Kit {
        sandbox,
        store,
        dir,
    }
}

impl Kit {
    /// Client settings for `location` of `sandbox` (fast retries, no client-side pacing),
    /// with a placeholder token to replace.
    pub fn settings_for(sandbox: &Sandbox, location: &str) -> ClientSettings {
        ClientSettings {
            base_url: sandbox.base_url().parse().unwrap(),
            api_version: "2021-07-28".into(),
            location_id: location.into(),
            credentials: Credentials::Static(SecretString::from(String::new())),
            timeout: Duration::from_secs(5),
            burst_max: 100_000,
            interval: Duration::from_secs(10),
            safety_margin: Duration::from_millis(0),
            daily_reserve: 0,
            max_attempts: 8,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        }
    }

    pub fn settings(&self, location: &str, token: &str) -> ClientSettings {
        ClientSettings {
            credentials: Credentials::Static(SecretString::from(token.to_string())),
            ..Self::settings_for(&self.sandbox, location)
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.settings(LOC, TOKEN)).unwrap()
    }

    pub async fn sync(&self, client: &Client, opts: &SyncOptions) -> SyncReport {
        let stop = tokio::sync::watch::channel(false).1;
        sync_contacts(&self.store, client, opts, stop, None).await
    }

    /// Syncs, and asks the run to stop once `pages` pages have been committed.
    pub async fn sync_stopping_after(
        &self,
        client: &Client,
        opts: &SyncOptions,
        pages: u64,
    ) -> SyncReport {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let seen = Arc::new(AtomicU64::new(0));
        let obs: Observer = Arc::new(move |ev| {
            if matches!(ev, SyncEvent::Page { .. })
                && seen.fetch_add(1, Ordering::SeqCst) + 1 >= pages
            {
                let _ = tx.send(true);
            }
        });
        sync_contacts(&self.store, client, opts, rx, Some(obs)).await
    }

    pub fn state(&self, location: &str) -> StreamState {
        self.store
            .load_state(location, ghl_mirror::model::Stream::Contacts)
            .unwrap()
    }

    /// The mirror holds exactly the sandbox's live contacts, each with the JSON search returns.
    pub fn assert_mirrors(&self, location: &str) {
        let upstream = self.sandbox.live_contact_ids(location);
        let local = self.store.live_contact_ids(location).unwrap();
        assert_eq!(local.len(), upstream.len(), "live contact count");
        assert_eq!(local, upstream, "live contact ids");
        for id in &upstream {
            let raw = self.store.contact_raw(location, id).unwrap().unwrap();
            let mut got: Value = serde_json::from_str(&raw).unwrap();
            let mut want = self.sandbox.contact_json(location, id).unwrap();
            strip(&mut got, &["searchAfter", "dndSettings"]);
            strip(&mut want, &["searchAfter", "dndSettings"]);
            assert_eq!(got, want, "contact {id}");
        }
        let dupes = self
            .store
            .query(
                "SELECT COUNT(*) FROM (SELECT location_id, id FROM contacts GROUP BY 1, 2 HAVING COUNT(*) > 1)",
                1,
            )
            .unwrap();
        assert_eq!(dupes.rows[0][0].as_deref(), Some("0"));
    }

    pub fn count(&self, sql: &str) -> i64 {
        let r = self.store.query(sql, 1).unwrap();
        r.rows[0][0].as_deref().unwrap().parse().unwrap()
    }
}

fn strip(v: &mut Value, keys: &[&str]) {
    if let Value::Object(m) = v {
        for k in keys {
            m.remove(*k);
        }
    }
}

pub fn opts() -> SyncOptions {
    SyncOptions::default()
}

pub fn assert_success(r: &SyncReport) {
    assert_eq!(r.outcome, Outcome::Success, "run failed: {:?}", r.error);
}

pub fn pages_for(n: usize, limit: usize) -> u64 {
    n.div_ceil(limit) as u64
}

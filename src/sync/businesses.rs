//! The business stream: the location's businesses (`GET /businesses/`), then each business's
//! contacts (`GET /contacts/business/:businessId`) as links, within the run's request budget.
//!
//! Businesses are listed completely every run (one request per 100), and only a complete list
//! tombstones. Links are refreshed business by business, the ones read longest ago first, and a
//! business's links are replaced only once all its pages are read; a run cut short by the budget
//! leaves the rest for the next run, which starts with them.

use super::{
    Halt, StopSignal, SyncError, SyncReport, blocking, close_run, count_requests, halt_reason,
    open_run,
};
use crate::model::{Record, RunProgress, Stream, now_ms};
use crate::store::{RunKey, Store};
use crate::upstream::{Budget, Client, UpstreamError};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BusinessOptions {
    pub page_limit: u32,
    pub run_requests: u64,
    pub daily_share: f64,
}

impl Default for BusinessOptions {
    fn default() -> Self {
        BusinessOptions {
            page_limit: 100,
            run_requests: 5_000,
            daily_share: 0.5,
        }
    }
}

struct BusinessRun<'a> {
    store: &'a Store,
    client: Client,
    opts: &'a BusinessOptions,
    stop: StopSignal,
    location: String,
    run_id: i64,
    progress: RunProgress,
}

/// Runs one business sync of the client's location.
pub async fn sync_businesses(
    store: &Store,
    client: &Client,
    opts: &BusinessOptions,
    stop: StopSignal,
) -> SyncReport {
    let started = Instant::now();
    let location = client.location_id().to_string();
    let report = SyncReport::new(&location, "businesses");
    let (_lock, run_id) = match open_run(store, &location, Stream::Businesses, "businesses").await {
        Ok(v) => v,
        Err(end) => return report.ended(end, RunProgress::default(), started),
    };
    let mut run = BusinessRun {
        store,
        client: client.for_run(Some(Budget::new(opts.run_requests, opts.daily_share))),
        opts,
        stop,
        location,
        run_id,
        progress: RunProgress::default(),
    };
    let result = run.execute().await;
    count_requests(&mut run.progress, &run.client);
    let end = close_run(store, run_id, result, &run.progress).await;
    report.ended(end, run.progress, started)
}

impl BusinessRun<'_> {
    async fn execute(&mut self) -> Result<(), Halt> {
        let limit = self.opts.page_limit;
        let started = now_ms();
        let mut skip = 0u64;
        loop {
            self.check()?;
            let page = self
                .client
                .businesses(skip, limit)
                .await
                .map_err(|e| self.upstream(e, "businesses.readonly"))?;
            let complete = page.len() < limit as usize;
            skip += page.len() as u64;
            self.commit_businesses(page, complete.then_some(started))
                .await?;
            if complete {
                break;
            }
        }
        let businesses = {
            let (store, loc) = (self.store.clone(), self.location.clone());
            blocking(move || Ok(store.businesses_by_link_age(&loc)?))
                .await
                .map_err(Halt::Failed)?
        };
        for business in businesses {
            let contacts = self.read_links(&business).await?;
            self.commit_links(business, contacts).await?;
        }
        Ok(())
    }

    /// Every contact id of one business, page by page.
    async fn read_links(&mut self, business: &str) -> Result<Vec<String>, Halt> {
        let limit = self.opts.page_limit;
        let mut ids: Vec<String> = Vec::new();
        loop {
            self.check()?;
            let page = self
                .client
                .business_contacts(business, ids.len() as u64, limit)
                .await
                .map_err(|e| self.upstream(e, "contacts.readonly"))?;
            let n = page.records.len();
            ids.extend(page.records.into_iter().map(|r| r.id));
            let all_read = page.count.is_some_and(|c| ids.len() as u64 >= c);
            if n < limit as usize || all_read {
                ids.sort();
                ids.dedup();
                return Ok(ids);
            }
        }
    }

    async fn commit_businesses(
        &mut self,
        page: Vec<Record>,
        complete_since: Option<i64>,
    ) -> Result<(), Halt> {
        self.refresh_counters();
        let (store, loc, run_id, mut p) = self.parts();
        self.progress = blocking(move || {
            let run = RunKey {
                location: &loc,
                stream: Stream::Businesses,
                run_id,
            };
            store.commit_businesses(run, &page, complete_since, &mut p)?;
            Ok(p)
        })
        .await
        .map_err(Halt::Failed)?;
        Ok(())
    }

    async fn commit_links(&mut self, business: String, contacts: Vec<String>) -> Result<(), Halt> {
        self.refresh_counters();
        let (store, loc, run_id, mut p) = self.parts();
        self.progress = blocking(move || {
            let run = RunKey {
                location: &loc,
                stream: Stream::Businesses,
                run_id,
            };
            store.replace_business_links(run, &business, &contacts, &mut p)?;
            Ok(p)
        })
        .await
        .map_err(Halt::Failed)?;
        Ok(())
    }

    fn parts(&self) -> (Store, String, i64, RunProgress) {
        (
            self.store.clone(),
            self.location.clone(),
            self.run_id,
            self.progress.clone(),
        )
    }

    fn check(&self) -> Result<(), Halt> {
        match halt_reason(&self.stop, &self.client) {
            Some(why) => Err(Halt::Stopped(why)),
            None => Ok(()),
        }
    }

    /// Budget exhaustion stops the run cleanly; a refused token names the scope to add.
    fn upstream(&self, e: UpstreamError, scope: &'static str) -> Halt {
        match e {
            UpstreamError::BudgetSpent { limit, .. } => Halt::Stopped(format!(
                "request budget of {limit} spent (budget.run_requests / budget.daily_share); the next run continues with the businesses whose links are oldest"
            )),
            e if e.is_scope_refusal() => Halt::Failed(SyncError::Scope {
                stream: "businesses",
                scope,
                source: e,
            }),
            e => Halt::Failed(e.into()),
        }
    }

    fn refresh_counters(&mut self) {
        count_requests(&mut self.progress, &self.client);
    }
}

//! The business stream: the location's custom field definitions
//! (`GET /locations/:id/customFields`, one request, so reports can name custom fields), the
//! location's businesses (`GET /businesses/`), then each business's contacts
//! (`GET /contacts/business/:businessId`) as links, within the run's request budget.
//!
//! Custom field definitions are reference data: a token without their scope
//! (`locations/customFields.readonly`) or an unreadable answer is a warning, never a failure.
//!
//! Businesses are listed completely every run (one request per 100), and only a complete list
//! tombstones. Links are refreshed business by business, the ones read longest ago first, and a
//! business's links are replaced only once all its pages are read; a run cut short by the budget
//! leaves the rest for the next run, which starts with them.

use super::run::RunCtx;
use super::{Halt, StopSignal, SyncError, SyncReport};
use crate::model::{Stream, now_ms};
use crate::store::Store;
use crate::upstream::{Budget, Client, UpstreamError};

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
    ctx: RunCtx,
    opts: &'a BusinessOptions,
}

/// Runs one business sync of the client's location.
pub async fn sync_businesses(
    store: &Store,
    client: &Client,
    opts: &BusinessOptions,
    stop: StopSignal,
) -> SyncReport {
    let budget = Budget::new(opts.run_requests, opts.daily_share);
    let ctx = match RunCtx::open(store, client, Stream::Businesses, Some(budget), stop, None).await
    {
        Ok(ctx) => ctx,
        Err(report) => return report,
    };
    let mut run = BusinessRun { ctx, opts };
    let result = run.execute().await;
    run.ctx.close(result).await
}

impl BusinessRun<'_> {
    async fn execute(&mut self) -> Result<(), Halt> {
        self.custom_fields().await?;
        let limit = self.opts.page_limit;
        let started = now_ms();
        let mut skip = 0u64;
        loop {
            self.ctx.check()?;
            let page = self
                .ctx
                .client
                .businesses(skip, limit)
                .await
                .map_err(|e| upstream(e, "businesses.readonly"))?;
            let complete = page.len() < limit as usize;
            skip += page.len() as u64;
            let since = complete.then_some(started);
            self.ctx
                .commit(move |store, run, p| store.commit_businesses(run, &page, since, p))
                .await?;
            if complete {
                break;
            }
        }
        let businesses = self
            .ctx
            .read(|store, loc| store.businesses_by_link_age(loc))
            .await?;
        for business in businesses {
            let contacts = self.read_links(&business).await?;
            self.ctx
                .commit(move |store, run, p| {
                    store.replace_business_links(run, &business, contacts.as_deref(), p)
                })
                .await?;
        }
        Ok(())
    }

    /// Replaces the custom field definitions; a refusal or an unreadable list is a warning.
    async fn custom_fields(&mut self) -> Result<(), Halt> {
        self.ctx.check()?;
        match self.ctx.client.custom_fields().await {
            Ok(fields) => {
                self.ctx
                    .commit(move |store, run, p| store.commit_custom_fields(run, &fields, p))
                    .await?;
            }
            Err(e) if e.is_scope_refusal() || e.is_item_error() => {
                tracing::warn!(location = %self.ctx.location, error = %e, "custom field names not read (needs the locations/customFields.readonly scope); reports show field ids instead");
                self.ctx.progress.warnings += 1;
            }
            Err(e) => return Err(upstream(e, "locations/customFields.readonly")),
        }
        Ok(())
    }

    /// Every contact id of one business, page by page: until `count` ids are read when
    /// HighLevel sends a count, else until an empty page. `None` when this business's pages
    /// cannot be read (a 4xx or a malformed body): it is skipped, its links kept as they were.
    async fn read_links(&mut self, business: &str) -> Result<Option<Vec<String>>, Halt> {
        let limit = self.opts.page_limit;
        let mut ids: Vec<String> = Vec::new();
        loop {
            self.ctx.check()?;
            let page = match self
                .ctx
                .client
                .business_contacts(business, ids.len() as u64, limit)
                .await
            {
                Ok(page) => page,
                Err(e) if e.is_item_error() => {
                    tracing::warn!(location = %self.ctx.location, business, error = %e, "business links skipped; kept as they were");
                    self.ctx.progress.warnings += 1;
                    return Ok(None);
                }
                Err(e) => return Err(upstream(e, "contacts.readonly")),
            };
            let n = page.records.len();
            ids.extend(page.records.into_iter().map(|r| r.id));
            let done = match page.count {
                Some(count) => ids.len() as u64 >= count || n == 0,
                None => n == 0,
            };
            if done {
                ids.sort();
                ids.dedup();
                return Ok(Some(ids));
            }
        }
    }
}

/// Budget exhaustion stops the run cleanly; a missing scope is named.
fn upstream(e: UpstreamError, scope: &'static str) -> Halt {
    match e {
        UpstreamError::BudgetSpent { limit, .. } => Halt::Stopped(format!(
            "request budget of {limit} spent (budget.run_requests / budget.daily_share); the next run continues with the businesses whose links are oldest"
        )),
        e if e.is_scope_refusal() => Halt::Failed(SyncError::Scope {
            stream: "businesses",
            scope,
            source: e,
        }),
        e => Halt::from_upstream(e),
    }
}

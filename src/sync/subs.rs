//! The sub-resource stream: each contact's tasks, notes and appointments, within a request
//! budget.
//!
//! A run spends its budget in this order:
//! 1. **Tasks in bulk** (`POST /locations/:id/tasks/search`, 100 per request) when the token has
//!    the scope and a pass is worth it: none done yet, the last one older than `refresh_after`,
//!    or more contacts due for tasks than a pass costs. A pass pages with `skip`; its position is
//!    saved with every page, so a pass cut short by the budget continues in the next run. Only a
//!    complete pass tombstones tasks. A 401/403 switches tasks to per-contact calls for a day.
//! 2. **Due lists**: contacts never fetched, or whose `dateUpdated` moved since their last
//!    fetch, most recently updated first. One request per (contact, kind).
//! 3. **Rolling refresh**: lists last fetched more than `refresh_after` ago, oldest first
//!    (changes that do not touch the contact's `dateUpdated` are caught here).
//!
//! Every list commits with its fetch record, so resuming needs no cursor: the next run
//! recomputes what is due. A run whose due lists did not all fit ends `partial`; a run that ran
//! out of budget during the rolling refresh has done its job and ends `success`.

use super::run::RunCtx;
use super::{Halt, StopSignal, SyncError, SyncReport};
use crate::model::{Record, Stream, SubKind, now_ms};
use crate::store::{ContactList, Due, Store, StoreError};
use crate::upstream::{Budget, Client, UpstreamError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SubOptions {
    pub kinds: Vec<SubKind>,
    pub run_requests: u64,
    pub daily_share: f64,
    pub refresh_after: Duration,
    pub bulk_tasks: bool,
    pub bulk_page_limit: u32,
    pub max_in_flight: usize,
    /// A bulk task pass refuses to tombstone more than this share of the live tasks.
    pub max_tombstone_share: f64,
}

impl Default for SubOptions {
    fn default() -> Self {
        SubOptions {
            kinds: SubKind::ALL.to_vec(),
            run_requests: 5_000,
            daily_share: 0.5,
            refresh_after: Duration::from_secs(7 * 24 * 3600),
            bulk_tasks: true,
            bulk_page_limit: 100,
            max_in_flight: 2,
            max_tombstone_share: 0.5,
        }
    }
}

/// Persisted between runs (the stream's JSON state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubState {
    /// A location-wide task pass in progress.
    pub task_pass: Option<TaskPass>,
    /// When the last complete task pass started.
    pub last_task_pass_ms: Option<i64>,
    /// When HighLevel last refused the bulk task search (401/403) or a pass looked unreliable.
    pub bulk_off_since_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPass {
    pub started_ms: i64,
    pub skip: u64,
}

/// How long tasks stay on per-contact calls after the bulk search was refused.
const BULK_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Lists committed together (one transaction).
const COMMIT_EVERY: usize = 64;
/// The longest a fetched list waits for its commit.
const COMMIT_WAIT: Duration = Duration::from_millis(500);
/// Due lists read from the store at a time.
const QUEUE_CHUNK: u64 = 1_000;

/// How a task pass ended.
enum PassEnd {
    Complete,
    /// Refused (401/403) or refused to tombstone: use per-contact calls.
    Unavailable,
}

/// How working through a queue ended.
enum QueueEnd {
    Drained,
    BudgetSpent,
}

struct SubRun<'a> {
    ctx: RunCtx,
    opts: &'a SubOptions,
}

/// Runs one sub-resource sync of the client's location.
pub async fn sync_subresources(
    store: &Store,
    client: &Client,
    opts: &SubOptions,
    stop: StopSignal,
) -> SyncReport {
    let budget = Budget::new(opts.run_requests, opts.daily_share);
    let ctx = match RunCtx::open(store, client, Stream::Subresources, Some(budget), stop).await {
        Ok(ctx) => ctx,
        Err(report) => return report,
    };
    let mut run = SubRun { ctx, opts };
    let result = run.execute().await;
    run.ctx.close(result).await
}

impl SubRun<'_> {
    async fn execute(&mut self) -> Result<(), Halt> {
        if self.opts.kinds.is_empty() {
            return Ok(());
        }
        let mut state: SubState = self
            .ctx
            .read(|store, loc| store.load_json_state(loc, Stream::Subresources))
            .await?
            .unwrap_or_default();
        let now = now_ms();
        let mut per_contact = self.opts.kinds.clone();
        let mut rolling = self.opts.kinds.clone();
        let wants_tasks = per_contact.contains(&SubKind::Tasks);
        let bulk_on = wants_tasks && self.opts.bulk_tasks && bulk_allowed(&state, now);
        if bulk_on {
            // Bulk passes are the tasks' rolling refresh.
            rolling.retain(|k| *k != SubKind::Tasks);
            if self.pass_worth_it(&state, now).await? {
                match self.task_pass(&mut state).await? {
                    PassEnd::Complete => per_contact.retain(|k| *k != SubKind::Tasks),
                    PassEnd::Unavailable => rolling = self.opts.kinds.clone(),
                }
            }
        }
        let kinds = per_contact;
        let due = self
            .work_queue(move |store, loc, limit| store.due_fetches(loc, &kinds, limit))
            .await?;
        if let QueueEnd::BudgetSpent = due {
            return Err(Halt::Stopped(self.budget_message(
                "before every contact whose dateUpdated moved was refreshed; the next run continues with the rest",
            )));
        }
        let before = now - i64::try_from(self.opts.refresh_after.as_millis()).unwrap_or(i64::MAX);
        self.work_queue(move |store, loc, limit| store.stale_fetches(loc, &rolling, before, limit))
            .await?;
        Ok(())
    }

    /// A pass is worth it when none completed yet, the last is older than `refresh_after`, or
    /// more contacts are due for tasks than a pass costs in requests.
    async fn pass_worth_it(&self, state: &SubState, now: i64) -> Result<bool, Halt> {
        if state.task_pass.is_some() {
            return Ok(true);
        }
        let Some(last) = state.last_task_pass_ms else {
            return Ok(true);
        };
        let age = Duration::from_millis(u64::try_from(now - last).unwrap_or(0));
        if age >= self.opts.refresh_after {
            return Ok(true);
        }
        let limit = u64::from(self.opts.bulk_page_limit);
        self.ctx
            .read(move |store, loc| {
                let pages = store.live_task_count(loc)? / limit + 1;
                let due = store.due_fetches(loc, &[SubKind::Tasks], pages)?;
                Ok(due.len() as u64 >= pages)
            })
            .await
    }

    /// Pages through every task of the location, saving the position with each page.
    async fn task_pass(&mut self, state: &mut SubState) -> Result<PassEnd, Halt> {
        let limit = self.opts.bulk_page_limit;
        let mut pass = state.task_pass.clone().unwrap_or(TaskPass {
            started_ms: now_ms(),
            skip: 0,
        });
        loop {
            self.ctx.check()?;
            let page = match self.ctx.client.search_tasks(pass.skip, limit).await {
                Ok(page) => page,
                Err(UpstreamError::BudgetSpent { .. }) => {
                    return Err(Halt::Stopped(self.budget_message(
                        "during the location-wide task pass; the next run continues it",
                    )));
                }
                Err(e) if e.is_scope_refusal() => {
                    tracing::info!(
                        location = %self.ctx.location,
                        error = %e,
                        "bulk task search refused; reading tasks per contact (add the locations/tasks.readonly scope to save requests)"
                    );
                    state.task_pass = None;
                    state.bulk_off_since_ms = Some(now_ms());
                    self.save_state(state).await?;
                    return Ok(PassEnd::Unavailable);
                }
                Err(e) => return Err(Halt::Failed(e.into())),
            };
            if page.is_empty() {
                return self.finish_pass(state, pass).await;
            }
            pass.skip += page.len() as u64;
            state.task_pass = Some(pass.clone());
            let st = state.clone();
            self.ctx
                .commit(move |store, run, p| store.commit_task_page(run, &page, &st, p))
                .await?;
        }
    }

    async fn finish_pass(&mut self, state: &mut SubState, pass: TaskPass) -> Result<PassEnd, Halt> {
        state.task_pass = None;
        state.last_task_pass_ms = Some(pass.started_ms);
        let share = self.opts.max_tombstone_share;
        let st = state.clone();
        let end = self
            .ctx
            .commit(move |store, run, p| {
                store.finish_task_pass(run, pass.started_ms, share, &st, p)
            })
            .await?;
        if let Some((unseen, live)) = end.refused {
            tracing::warn!(
                location = %self.ctx.location,
                unseen,
                live,
                "the bulk task search did not return {unseen} of {live} mirrored tasks; not trusting it: reading tasks per contact for a day"
            );
            state.bulk_off_since_ms = Some(now_ms());
            state.last_task_pass_ms = None;
            self.save_state(state).await?;
            return Ok(PassEnd::Unavailable);
        }
        Ok(PassEnd::Complete)
    }

    /// Fetches the lists `queue` yields, `max_in_flight` at a time, committing in groups, until
    /// the queue is empty or the budget is spent.
    async fn work_queue(
        &mut self,
        queue: impl Fn(&Store, &str, u64) -> Result<Vec<Due>, StoreError>
        + Send
        + Sync
        + Clone
        + 'static,
    ) -> Result<QueueEnd, Halt> {
        loop {
            self.ctx.check()?;
            let left = self
                .ctx
                .client
                .budget()
                .map_or(QUEUE_CHUNK, |b| b.limit().saturating_sub(b.used()));
            if left == 0 {
                return Ok(QueueEnd::BudgetSpent);
            }
            let q = queue.clone();
            let chunk = self
                .ctx
                .read(move |store, loc| q(store, loc, left.min(QUEUE_CHUNK)))
                .await?;
            if chunk.is_empty() {
                return Ok(QueueEnd::Drained);
            }
            if let Some(end) = self.fetch_chunk(chunk).await? {
                return Ok(end);
            }
        }
    }

    /// Fetches one chunk of due lists. `Some(BudgetSpent)` when the budget ran out.
    async fn fetch_chunk(&mut self, chunk: Vec<Due>) -> Result<Option<QueueEnd>, Halt> {
        let mut todo = chunk.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let mut done: Vec<ContactList> = Vec::new();
        let mut last_commit = Instant::now();
        let mut halt: Option<Halt> = None;
        let mut budget_spent = false;
        loop {
            while halt.is_none()
                && !budget_spent
                && in_flight.len() < self.opts.max_in_flight.max(1)
            {
                if let Err(h) = self.ctx.check() {
                    halt = Some(h);
                    break;
                }
                let Some(due) = todo.next() else { break };
                let client = self.ctx.client.clone();
                in_flight.push(async move {
                    let r = client.contact_list(due.kind, &due.contact_id).await;
                    (due, r)
                });
            }
            let Some((due, result)) = in_flight.next().await else {
                break;
            };
            match result {
                Ok(items) => done.push(list(due, Some(items))),
                Err(e) if contact_gone(&e) => {
                    tracing::info!(location = %self.ctx.location, contact = %due.contact_id, error = %e, "contact unknown upstream; its lists are kept until reconciliation decides");
                    self.ctx.progress.warnings += 1;
                    done.push(list(due, None));
                }
                Err(UpstreamError::BudgetSpent { .. }) => budget_spent = true,
                Err(e) => {
                    if halt.is_none() {
                        halt = Some(Halt::Failed(SyncError::Upstream(e)));
                    }
                }
            }
            if done.len() >= COMMIT_EVERY || last_commit.elapsed() >= COMMIT_WAIT {
                self.commit_lists(std::mem::take(&mut done)).await?;
                last_commit = Instant::now();
            }
        }
        self.commit_lists(done).await?;
        if let Some(h) = halt {
            return Err(h);
        }
        Ok(budget_spent.then_some(QueueEnd::BudgetSpent))
    }

    async fn commit_lists(&mut self, lists: Vec<ContactList>) -> Result<(), Halt> {
        if lists.is_empty() {
            return Ok(());
        }
        self.ctx
            .commit(move |store, run, p| store.commit_lists(run, &lists, p))
            .await?;
        Ok(())
    }

    async fn save_state(&self, state: &SubState) -> Result<(), Halt> {
        let st = state.clone();
        self.ctx
            .read(move |store, loc| store.save_json_state(loc, Stream::Subresources, &st))
            .await
    }

    fn budget_message(&self, when: &str) -> String {
        let limit = self.ctx.client.budget().map_or(0, |b| b.limit());
        format!(
            "request budget of {limit} spent {when} (budget.run_requests = {}, budget.daily_share = {})",
            self.opts.run_requests, self.opts.daily_share
        )
    }
}

fn list(due: Due, items: Option<Vec<Record>>) -> ContactList {
    ContactList {
        contact_id: due.contact_id,
        kind: due.kind,
        seen_updated_ms: due.updated_ms,
        items,
    }
}

/// Whether bulk task search may be tried now.
fn bulk_allowed(state: &SubState, now: i64) -> bool {
    state.bulk_off_since_ms.is_none_or(|t| {
        now.saturating_sub(t) >= i64::try_from(BULK_RETRY_AFTER.as_millis()).unwrap_or(i64::MAX)
    })
}

/// HighLevel answers a list request for a contact it does not know with 400 or 404.
fn contact_gone(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Rejected { status: 404, .. } => true,
        UpstreamError::Rejected {
            status: 400,
            message,
            ..
        } => message.to_ascii_lowercase().contains("not found"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_bulk_search_is_retried_after_a_day() {
        let mut s = SubState::default();
        assert!(bulk_allowed(&s, 0));
        s.bulk_off_since_ms = Some(1_000);
        assert!(!bulk_allowed(&s, 1_000 + 3_600_000));
        assert!(bulk_allowed(&s, 1_000 + 24 * 3_600_000));
    }

    #[test]
    fn only_not_found_errors_mean_the_contact_is_gone() {
        let rejected = |status, message: &str| UpstreamError::Rejected {
            endpoint: "x",
            status,
            message: message.into(),
        };
        assert!(contact_gone(&rejected(404, "")));
        assert!(contact_gone(&rejected(400, "Contact not found")));
        assert!(!contact_gone(&rejected(400, "bad request")));
        assert!(!contact_gone(&rejected(422, "not found")));
    }
}

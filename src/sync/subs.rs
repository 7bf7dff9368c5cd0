//! The sub-resource stream: each contact's tasks, notes and appointments, within a request
//! budget.
//!
//! A run works through two queues of (contact, kind) lists, committing each list with its fetch
//! record, so resuming needs no cursor: the next run recomputes what is due.
//! 1. **Due lists**: contacts never fetched, or whose `dateUpdated` moved since their last
//!    fetch, most recently updated first.
//! 2. **Rolling refresh**: lists last fetched more than `refresh_after` ago, oldest first
//!    (changes that do not touch the contact's `dateUpdated` are caught here).
//!
//! Notes and appointments cost one request per contact (`GET /contacts/:id/notes`, `/appointments`).
//! Tasks are read **in batches of contacts** through `POST /locations/:id/tasks/search` with
//! `contactId: [...]` when the token has the scope: one request covers about 35 contacts, and
//! because a batch is keyed by contacts (not by a `skip` offset over the whole location, which
//! shifts when tasks are added or deleted meanwhile) each contact's task set is exact. A 401/403
//! about scope switches tasks to per-contact calls for a day.
//!
//! Per-list failures never block the queue: an unreadable list (malformed body, a 4xx) is
//! recorded as fetched and kept as it was; a kind refused for the token is skipped for a day.
//! Only whole-token problems, an upstream that stays down, or several failures in a row fail
//! the run. A run whose due lists did not all fit in the budget ends `partial`; one that ran out
//! during the rolling refresh has done its job and ends `success`.

use super::run::RunCtx;
use super::{Halt, Observer, StopSignal, SyncError, SyncReport};
use crate::model::{Record, Stream, SubKind, now_ms};
use crate::store::{ContactList, Due, Store};
use crate::upstream::{Budget, Client, UpstreamError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SubOptions {
    pub kinds: Vec<SubKind>,
    pub run_requests: u64,
    pub daily_share: f64,
    pub refresh_after: Duration,
    pub bulk_tasks: bool,
    /// Tasks per bulk request (the `limit` of the task search).
    pub bulk_page_limit: u32,
    pub max_in_flight: usize,
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
        }
    }
}

/// Persisted between runs (the stream's JSON state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubState {
    /// When HighLevel last refused the bulk task search (401/403 about scope).
    #[serde(default)]
    pub bulk_off_since_ms: Option<i64>,
    /// Per-contact list kinds HighLevel refused for this token, and when.
    #[serde(default)]
    pub kinds_off_since_ms: BTreeMap<SubKind, i64>,
}

impl SubState {
    /// Kinds refused less than a day before `now`.
    fn kinds_off(&self, now: i64) -> Vec<SubKind> {
        self.kinds_off_since_ms
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) < day_ms())
            .map(|(k, _)| *k)
            .collect()
    }
}

/// How long a refusal (the bulk task search, or a kind's per-contact lists) is remembered.
const RETRY_REFUSED_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Item failures in a row (malformed lists, 4xx) after which the run gives up: upstream is
/// broken, not one contact.
const MAX_FAILURES_IN_A_ROW: u32 = 5;
/// Lists committed together (one transaction).
const COMMIT_EVERY: usize = 64;
/// The longest a fetched list waits for its commit.
const COMMIT_WAIT: Duration = Duration::from_millis(500);
/// Lists read from the store at a time.
const QUEUE_CHUNK: u64 = 20_000;
/// A task batch aims to fill this share of a page, so most batches take one request.
const BATCH_FILL: f64 = 0.7;
/// Tasks per contact assumed before any are mirrored.
const DEFAULT_TASKS_PER_CONTACT: f64 = 2.0;
/// The most contacts one task search names.
const MAX_BATCH: usize = 100;

/// Which lists a queue holds.
#[derive(Clone, Copy)]
enum Queue {
    /// Never fetched, or the contact's dateUpdated moved since.
    Due,
    /// Last fetched before this time (ms): the rolling refresh.
    FetchedBefore(i64),
}

/// How working through a queue ended.
enum QueueEnd {
    Drained,
    BudgetSpent,
}

/// One unit of work: one contact's list, or one batch of contacts' tasks.
enum Job {
    One(Due),
    Tasks(Vec<Due>),
}

/// Where a job's answers come from, for counting failures in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    List(SubKind),
    TaskSearch,
}

impl Job {
    fn source(&self) -> Source {
        match self {
            Job::One(d) => Source::List(d.kind),
            Job::Tasks(_) => Source::TaskSearch,
        }
    }

    /// A batch in two halves; a batch of one becomes that contact's own (unpaged) list.
    fn split(self) -> Vec<Job> {
        match self {
            Job::Tasks(mut batch) if batch.len() > 1 => {
                let second = batch.split_off(batch.len() / 2);
                vec![Job::Tasks(batch), Job::Tasks(second)]
            }
            Job::Tasks(mut batch) => batch.pop().map(Job::One).into_iter().collect(),
            one @ Job::One(_) => vec![one],
        }
    }
}

/// A job's answer: the items, or a batch page that came back full.
enum Answer {
    Items(Vec<Record>),
    Full,
}

/// What a job brought back.
type JobResult = (Job, Result<Answer, UpstreamError>);

struct SubRun<'a> {
    ctx: RunCtx,
    opts: &'a SubOptions,
    /// Read tasks through the bulk search (the token has the scope, as far as we know).
    bulk: bool,
    /// Contacts per task batch.
    batch: usize,
    /// Kinds off for this run: refused by HighLevel within the last day, or during the run.
    refused: Vec<SubKind>,
    /// Refusals that happened during this run, and HighLevel's message.
    newly_refused: Vec<SubKind>,
    bulk_refused: bool,
    refusal: Option<String>,
    /// Failures in a row per source; a success of the same source resets it.
    failing: HashMap<Source, u32>,
}

/// Runs one sub-resource sync of the client's location.
pub async fn sync_subresources(
    store: &Store,
    client: &Client,
    opts: &SubOptions,
    stop: StopSignal,
    observer: Option<Observer>,
) -> SyncReport {
    let budget = Budget::new(opts.run_requests, opts.daily_share);
    let ctx = match RunCtx::open(
        store,
        client,
        Stream::Subresources,
        Some(budget),
        stop,
        observer,
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(report) => return report,
    };
    let mut run = SubRun {
        ctx,
        opts,
        bulk: false,
        batch: 1,
        refused: Vec::new(),
        newly_refused: Vec::new(),
        bulk_refused: false,
        refusal: None,
        failing: HashMap::new(),
    };
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
        self.refused = state.kinds_off(now);
        self.bulk = self.opts.bulk_tasks && bulk_allowed(&state, now);
        let per_contact = self
            .ctx
            .read(|store, loc| store.tasks_per_contact(loc))
            .await?
            .unwrap_or(DEFAULT_TASKS_PER_CONTACT);
        self.batch = batch_size(self.opts.bulk_page_limit, per_contact);
        if self.active().is_empty() {
            return Err(Halt::Stopped(format!(
                "every configured kind ({}) was set aside within the last day after HighLevel refused or failed it; see the previous runs' errors. Nothing was fetched",
                self.refused
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if self.ctx.has_observer() {
            self.tell_plan().await;
        }
        let result = self.refresh(now).await;
        // Refusals seen during this run are remembered even if the run stops.
        if !self.newly_refused.is_empty() || self.bulk_refused {
            for k in &self.newly_refused {
                state.kinds_off_since_ms.insert(*k, now);
            }
            if self.bulk_refused {
                state.bulk_off_since_ms = Some(now);
            }
            let st = state.clone();
            self.ctx
                .read(move |store, loc| store.save_json_state(loc, Stream::Subresources, &st))
                .await?;
        }
        result?;
        if !self.newly_refused.is_empty() {
            let kinds: Vec<&str> = self.newly_refused.iter().map(|k| k.as_str()).collect();
            return Err(Halt::Stopped(format!(
                "the {} lists could not be read ({}); they are skipped for a day and the other kinds went on. If HighLevel refused the token, check its scopes (contacts.readonly covers these lists); otherwise drop them from subresources.kinds",
                kinds.join(" and "),
                self.refusal.as_deref().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Tells the observer how many lists are due per kind, about how many requests they take,
    /// the budget and the pace. Only the display needs it: a failed count is logged and the run
    /// goes on without a plan.
    async fn tell_plan(&self) {
        let kinds = self.active();
        let holdings = match self.ctx.read(|store, loc| store.holdings(loc)).await {
            Ok(h) => h,
            Err(Halt::Failed(e)) => {
                tracing::warn!(
                    error = %e,
                    "could not count the due lists for the progress display; syncing without it"
                );
                return;
            }
            Err(Halt::Stopped(_)) => return,
        };
        let due: Vec<(SubKind, u64)> = holdings
            .freshness
            .into_iter()
            .filter(|(k, _, _)| kinds.contains(k))
            .map(|(k, n, _)| (k, n))
            .collect();
        let requests_wanted = due
            .iter()
            .map(|(k, n)| match k {
                SubKind::Tasks if self.bulk => n.div_ceil(self.batch as u64),
                _ => *n,
            })
            .sum();
        let (pace_requests, pace_window) = self.ctx.client.pace();
        self.ctx.notify_plan(super::SubPlan {
            due,
            requests_wanted,
            budget: self.ctx.client.budget().map_or(u64::MAX, |b| b.limit()),
            pace_requests,
            pace_window,
        });
    }

    /// The due lists, then the rolling refresh, within the budget.
    async fn refresh(&mut self, now: i64) -> Result<(), Halt> {
        if let QueueEnd::BudgetSpent = self.work_queue(Queue::Due).await? {
            let kinds = self.active();
            let more = self
                .ctx
                .read(move |store, loc| store.due_fetches(loc, &kinds, 1))
                .await?;
            if more.is_empty() {
                return Ok(());
            }
            return Err(Halt::Stopped(self.budget_message(
                "before every contact whose dateUpdated moved was refreshed; the next run continues with the rest",
            )));
        }
        let before = now - i64::try_from(self.opts.refresh_after.as_millis()).unwrap_or(i64::MAX);
        self.work_queue(Queue::FetchedBefore(before)).await?;
        Ok(())
    }

    /// The configured kinds not refused.
    fn active(&self) -> Vec<SubKind> {
        self.opts
            .kinds
            .iter()
            .copied()
            .filter(|k| !self.refused.contains(k))
            .collect()
    }

    /// Fetches the lists `queue` selects, `max_in_flight` requests at a time, committing in
    /// groups, until none is left or the budget is spent. A kind refused during the run leaves
    /// the queue at once.
    async fn work_queue(&mut self, queue: Queue) -> Result<QueueEnd, Halt> {
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
            let kinds = self.active();
            if kinds.is_empty() {
                return Ok(QueueEnd::Drained);
            }
            // Batched tasks take a fraction of a request each; read enough to fill the budget.
            let limit = left.saturating_mul(self.batch as u64).min(QUEUE_CHUNK);
            let chunk = self
                .ctx
                .read(move |store, loc| match queue {
                    Queue::Due => store.due_fetches(loc, &kinds, limit),
                    Queue::FetchedBefore(ms) => store.stale_fetches(loc, &kinds, ms, limit),
                })
                .await?;
            if chunk.is_empty() {
                return Ok(QueueEnd::Drained);
            }
            self.ctx
                .notify_total(self.ctx.progress.pages + chunk.len() as u64);
            if let Some(end) = self.fetch_chunk(chunk).await? {
                return Ok(end);
            }
        }
    }

    /// Splits a chunk into jobs in the chunk's order (most recently updated contact first,
    /// every kind alike): task lists in batches (when bulk is on), the rest one by one. A task
    /// batch takes the place of its most recent contact and fills up with the next contacts
    /// whose tasks are due, so a small budget serves every kind in recency order.
    fn jobs(&self, chunk: Vec<Due>) -> Vec<Job> {
        jobs_in_order(chunk, self.bulk, self.batch)
    }

    /// Fetches one chunk of due lists. `Some(BudgetSpent)` when the budget ran out.
    async fn fetch_chunk(&mut self, chunk: Vec<Due>) -> Result<Option<QueueEnd>, Halt> {
        let mut todo: VecDeque<Job> = self.jobs(chunk).into();
        let mut in_flight = FuturesUnordered::new();
        let mut done: Vec<ContactList> = Vec::new();
        let mut last_commit = Instant::now();
        let mut halt: Option<Halt> = None;
        let mut budget_spent = false;
        let mut dispatched = 0usize;
        loop {
            while halt.is_none()
                && !budget_spent
                && in_flight.len() < self.opts.max_in_flight.max(1)
            {
                if let Err(h) = self.ctx.check() {
                    halt = Some(h);
                    break;
                }
                let Some(job) = next_wanted(&mut todo, |j| self.still_wanted(j)) else {
                    break;
                };
                dispatched += 1;
                in_flight.push(fetch(
                    self.ctx.client.clone(),
                    job,
                    self.opts.bulk_page_limit,
                ));
            }
            let Some((job, result)) = in_flight.next().await else {
                break;
            };
            match result {
                Ok(Answer::Items(items)) => {
                    self.failing.remove(&job.source());
                    let (ready, reread) = self.place_tasks(lists(job, items)).await?;
                    done.extend(ready);
                    // Their own lists are next: they belong to the most recent contacts.
                    for d in reread.into_iter().rev() {
                        todo.push_front(Job::One(d));
                    }
                }
                // A full page may hide more: never page a batch (skip drifts), split it.
                Ok(Answer::Full) => todo.extend(job.split()),
                Err(UpstreamError::BudgetSpent { .. }) => budget_spent = true,
                Err(e @ UpstreamError::Stopped { .. }) => {
                    halt.get_or_insert(Halt::from_upstream(e));
                }
                Err(e) if e.is_scope_refusal() => self.refused(&job, &e),
                Err(e) if e.needs_attention() => {
                    // The token itself (or the Version header) is the problem: nothing will work.
                    halt.get_or_insert(Halt::Failed(SyncError::Upstream(e)));
                }
                Err(e) if contact_gone(&e) && matches!(job, Job::One(_)) => {
                    // Deleted upstream, not yet reconciled: nothing is wrong with the kind.
                    tracing::info!(location = %self.ctx.location, error = %e, "contact unknown upstream; its list is kept until a reconciling sweep");
                    done.extend(unreadable(job));
                }
                Err(e) if contact_gone(&e) || e.is_item_error() => {
                    let failures = self.failing.entry(job.source()).or_default();
                    *failures += 1;
                    let broken = *failures >= MAX_FAILURES_IN_A_ROW;
                    if let Job::Tasks(_) = job {
                        // One bad item spoils a whole batch's answer: narrow it down, unless
                        // the search keeps failing whatever it is asked (then tasks go per
                        // contact, and these come back one by one).
                        if broken {
                            self.refused(&job, &e);
                        } else {
                            todo.extend(job.split());
                        }
                        continue;
                    }
                    // One list is gone or unreadable (malformed JSON, a 4xx): record the fetch
                    // without replacing anything, so it waits for its contact to change or for
                    // the rolling refresh instead of blocking the queue. A kind that keeps
                    // failing is broken as a whole: it is set aside like a refused one.
                    tracing::warn!(location = %self.ctx.location, error = %e, "list skipped; kept as it was");
                    self.ctx.progress.warnings += 1;
                    if broken {
                        self.refused(&job, &e);
                    } else {
                        done.extend(unreadable(job));
                    }
                }
                Err(e) => {
                    // Retries exhausted on 5xx, timeouts, connection errors: upstream is down.
                    halt.get_or_insert(Halt::Failed(SyncError::Upstream(e)));
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
        if budget_spent {
            return Ok(Some(QueueEnd::BudgetSpent));
        }
        // Every job of the chunk was of something refused meanwhile: never spin on them.
        Ok((dispatched == 0).then_some(QueueEnd::Drained))
    }

    /// Sets aside the task lists from a bulk search whose order cannot be told: the search lists
    /// tasks in its own order, so a contact's new tasks can only follow its known ones when
    /// there is at most one. A contact with more gets its own list read (returned as due), which
    /// gives HighLevel's order; its search answer is dropped.
    async fn place_tasks(
        &self,
        lists: Vec<ContactList>,
    ) -> Result<(Vec<ContactList>, Vec<Due>), Halt> {
        let ids: Vec<String> = lists
            .iter()
            .filter(|l| !l.ordered && l.kind == SubKind::Tasks)
            .flat_map(|l| l.items.iter().flatten().map(|r| r.id.clone()))
            .collect();
        if ids.len() < 2 {
            return Ok((lists, Vec::new()));
        }
        let placed = self
            .ctx
            .read(move |store, loc| store.placed_tasks(loc, &ids))
            .await?;
        let (mut ready, mut reread) = (Vec::new(), Vec::new());
        for l in lists {
            let unplaced = l
                .items
                .iter()
                .flatten()
                .filter(|r| !placed.contains(&r.id))
                .count();
            if !l.ordered && unplaced >= 2 {
                reread.push(Due {
                    contact_id: l.contact_id,
                    kind: l.kind,
                    updated_ms: l.seen_updated_ms,
                });
            } else {
                ready.push(l);
            }
        }
        Ok((ready, reread))
    }

    /// Whether a job still makes sense after refusals during the run.
    fn still_wanted(&self, job: &Job) -> bool {
        match job {
            Job::One(d) => !self.refused.contains(&d.kind),
            // A refused bulk search leaves these tasks due: they come back one by one.
            Job::Tasks(_) => self.bulk,
        }
    }

    /// A 401/403 about scope, or a source that keeps failing: the bulk task search falls back
    /// to per-contact calls; a kind is skipped for a day.
    fn refused(&mut self, job: &Job, e: &UpstreamError) {
        match job {
            Job::Tasks(_) => {
                if self.bulk {
                    tracing::info!(location = %self.ctx.location, error = %e, "bulk task search refused; reading tasks per contact (add the locations/tasks.readonly scope to save requests)");
                    self.bulk = false;
                    self.bulk_refused = true;
                }
            }
            Job::One(d) => {
                if !self.refused.contains(&d.kind) {
                    tracing::warn!(location = %self.ctx.location, kind = d.kind.as_str(), error = %e, "lists of this kind refused; skipping them for a day");
                    self.refused.push(d.kind);
                    self.newly_refused.push(d.kind);
                    self.refusal = Some(e.to_string());
                }
            }
        }
    }

    async fn commit_lists(&mut self, lists: Vec<ContactList>) -> Result<(), Halt> {
        if lists.is_empty() {
            return Ok(());
        }
        let n = lists.len() as u64;
        self.ctx
            .commit(move |store, run, p| store.commit_lists(run, &lists, p))
            .await?;
        self.ctx.notify_done(n);
        Ok(())
    }

    fn budget_message(&self, when: &str) -> String {
        let limit = self.ctx.client.budget().map_or(0, |b| b.limit());
        format!(
            "request budget of {limit} spent {when} (budget.run_requests = {}, budget.daily_share = {})",
            self.opts.run_requests, self.opts.daily_share
        )
    }
}

/// `SubRun::jobs`: one job per list, task lists gathered into batches of `batch` when `bulk`,
/// each job placed where its first (most recently updated) contact comes in `chunk`.
fn jobs_in_order(chunk: Vec<Due>, bulk: bool, batch: usize) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    // The task batch being filled, by its index in `jobs`.
    let mut open: Option<usize> = None;
    for d in chunk {
        if !(bulk && d.kind == SubKind::Tasks) {
            jobs.push(Job::One(d));
            continue;
        }
        match open.and_then(|i| jobs.get_mut(i)) {
            Some(Job::Tasks(b)) if b.len() < batch.max(1) => b.push(d),
            _ => {
                open = Some(jobs.len());
                jobs.push(Job::Tasks(vec![d]));
            }
        }
    }
    jobs
}

/// Runs one job: a contact's list, or one page of a batch's tasks.
async fn fetch(client: Client, job: Job, limit: u32) -> JobResult {
    let result = match &job {
        Job::One(d) => client
            .contact_list(d.kind, &d.contact_id)
            .await
            .map(Answer::Items),
        Job::Tasks(batch) => {
            let ids: Vec<&str> = batch.iter().map(|d| d.contact_id.as_str()).collect();
            client.search_tasks(&ids, 0, limit).await.map(|page| {
                if page.len() >= limit as usize {
                    Answer::Full
                } else {
                    Answer::Items(page)
                }
            })
        }
    };
    (job, result)
}

/// Pops the next job `wanted` accepts, dropping the others.
fn next_wanted(todo: &mut VecDeque<Job>, wanted: impl Fn(&Job) -> bool) -> Option<Job> {
    while let Some(job) = todo.pop_front() {
        if wanted(&job) {
            return Some(job);
        }
    }
    None
}

/// The lists a job's items make: one per contact of the job (empty when it has none).
fn lists(job: Job, items: Vec<Record>) -> Vec<ContactList> {
    match job {
        Job::One(d) => vec![list(d, Some(items), true)],
        Job::Tasks(batch) => {
            let mut by_contact: HashMap<String, Vec<Record>> = HashMap::new();
            for rec in items {
                if let Some(c) = rec.contact_id.clone() {
                    by_contact.entry(c).or_default().push(rec);
                }
            }
            batch
                .into_iter()
                .map(|d| {
                    let items = by_contact.remove(&d.contact_id).unwrap_or_default();
                    list(d, Some(items), false)
                })
                .collect()
        }
    }
}

/// Fetch records for a job whose answer could not be used: nothing is replaced.
fn unreadable(job: Job) -> Vec<ContactList> {
    match job {
        Job::One(d) => vec![list(d, None, true)],
        Job::Tasks(batch) => batch.into_iter().map(|d| list(d, None, false)).collect(),
    }
}

fn list(due: Due, items: Option<Vec<Record>>, ordered: bool) -> ContactList {
    ContactList {
        contact_id: due.contact_id,
        kind: due.kind,
        seen_updated_ms: due.updated_ms,
        items,
        ordered,
    }
}

/// Contacts per task search: enough to fill `BATCH_FILL` of a page at the mirrored ratio.
fn batch_size(page_limit: u32, tasks_per_contact: f64) -> usize {
    let fit = (f64::from(page_limit) * BATCH_FILL / tasks_per_contact.max(0.01)).floor();
    (fit as usize).clamp(1, MAX_BATCH)
}

/// Whether bulk task search may be tried now.
fn bulk_allowed(state: &SubState, now: i64) -> bool {
    state
        .bulk_off_since_ms
        .is_none_or(|t| now.saturating_sub(t) >= day_ms())
}

/// How long a refusal (bulk search, or a kind's lists) is remembered.
fn day_ms() -> i64 {
    i64::try_from(RETRY_REFUSED_AFTER.as_millis()).unwrap_or(i64::MAX)
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

    #[test]
    fn task_batches_fill_most_of_a_page() {
        assert_eq!(batch_size(100, 2.0), 35);
        assert_eq!(batch_size(100, 0.0), MAX_BATCH);
        assert_eq!(batch_size(100, 500.0), 1);
        assert_eq!(batch_size(25, 1.0), 17);
    }

    #[test]
    fn jobs_follow_contact_recency_across_kinds_with_task_batches_in_place() {
        let due = |c: &str, kind| Due {
            contact_id: c.into(),
            kind,
            updated_ms: None,
        };
        // Contacts a, b, c, d from most to least recently updated, every kind due.
        let mut chunk = Vec::new();
        for c in ["a", "b", "c", "d"] {
            for kind in SubKind::ALL {
                chunk.push(due(c, kind));
            }
        }
        let shape: Vec<String> = jobs_in_order(chunk, true, 2)
            .iter()
            .map(|j| match j {
                Job::One(d) => format!("{}:{}", d.contact_id, d.kind.as_str()),
                Job::Tasks(b) => format!(
                    "tasks[{}]",
                    b.iter().map(|d| d.contact_id.as_str()).collect::<String>()
                ),
            })
            .collect();
        let mut want = Vec::new();
        for c in ["a", "b", "c", "d"] {
            for kind in SubKind::ALL {
                match (kind, c) {
                    (SubKind::Tasks, "a") => want.push("tasks[ab]".to_string()),
                    (SubKind::Tasks, "c") => want.push("tasks[cd]".to_string()),
                    (SubKind::Tasks, _) => {}
                    _ => want.push(format!("{c}:{}", kind.as_str())),
                }
            }
        }
        assert_eq!(shape, want);
    }

    #[test]
    fn a_batch_splits_down_to_single_contact_lists() {
        let due = |c: &str| Due {
            contact_id: c.into(),
            kind: SubKind::Tasks,
            updated_ms: None,
        };
        let halves = Job::Tasks(vec![due("a"), due("b"), due("c")]).split();
        assert!(
            matches!(&halves[..], [Job::Tasks(x), Job::Tasks(y)] if x.len() == 1 && y.len() == 2)
        );
        let one = Job::Tasks(vec![due("a")]).split();
        assert!(matches!(&one[..], [Job::One(d)] if d.contact_id == "a"));
    }

    #[test]
    fn a_batch_gives_every_contact_its_exact_list() {
        let due = |c: &str| Due {
            contact_id: c.into(),
            kind: SubKind::Tasks,
            updated_ms: Some(1),
        };
        let task = |id: &str, c: Option<&str>| Record {
            id: id.into(),
            contact_id: c.map(str::to_string),
            raw: "{}".into(),
        };
        let out = lists(
            Job::Tasks(vec![due("a"), due("b")]),
            vec![
                task("t1", Some("a")),
                task("t2", Some("a")),
                task("t3", None),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].items.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            out[1].items.as_ref().map(Vec::len),
            Some(0),
            "b has none now"
        );
    }
}

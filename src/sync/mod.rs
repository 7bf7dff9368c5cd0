//! The sync engine: plans a sweep for a location (full, incremental or legacy-list), pages
//! through it, commits each page with its cursor, finishes passes and reconciles deletes.
//!
//! Search sweeps walk the (dateUpdated, id) order from both ends at once, so two requests are in
//! flight without any extra request; a full sweep ends with a catch-up pass over everything
//! updated since it started, then tombstones what it never saw.
//!
//! Architecture invariant: `sync` decides *what* to fetch and *when* to commit; it never builds
//! SQL or parses JSON. Every page commit carries the cursor that follows it, so a crash at any
//! point resumes without loss or duplicates.

use crate::model::{
    Outcome, PagedContact, Pass, RunProgress, SortKey, Stream, StreamState, SubKind, Sweep,
    SweepKind, now_ms,
};
use crate::store::{Reconcile, RunKey, Store, StoreError};
use crate::upstream::{Client, ContactsPage, Counters, SearchRequest, UpstreamError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

mod businesses;
mod run;
mod subs;
mod text;
pub use businesses::{BusinessOptions, sync_businesses};
pub use subs::{SubOptions, SubState, sync_subresources};
pub use text::index_text;

/// How contacts are listed upstream (mirrors `config::Strategy` without depending on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    Search,
    LegacyList,
}

#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub strategy: ListStrategy,
    pub page_limit: u32,
    pub legacy_page_limit: u32,
    pub lookback: Duration,
    pub reconcile_every: Duration,
    pub max_in_flight: usize,
    /// Start a full sweep now (abandoning an in-progress incremental one).
    pub force_full: bool,
    /// A reconciling sweep refuses to tombstone more than this share of the live contacts.
    pub max_tombstone_share: f64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            strategy: ListStrategy::Search,
            page_limit: 500,
            legacy_page_limit: 100,
            lookback: Duration::from_secs(300),
            reconcile_every: Duration::from_secs(24 * 3600),
            max_in_flight: 2,
            force_full: false,
            max_tombstone_share: 0.5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("internal task failed: {0}")]
    Task(String),
    #[error(
        "{stream}: {source}; this stream needs the {scope} scope: add it to the token (or turn the stream off in the config)"
    )]
    Scope {
        stream: &'static str,
        scope: &'static str,
        source: UpstreamError,
    },
    #[error(
        "the full sweep did not see {unseen} of the {live} contacts mirrored for location {location}; tombstoning more than {share_pct}% at once looks like an upstream fault, so nothing was tombstoned (sync.max_tombstone_share). If they really were deleted in HighLevel, run `ghl-mirror sync --full --allow-mass-delete`"
    )]
    MassDelete {
        location: String,
        unseen: u64,
        live: u64,
        share_pct: u32,
    },
}

/// Progress events for a progress bar or log.
#[derive(Clone, Debug)]
pub enum SyncEvent {
    Started {
        location: String,
        mode: &'static str,
    },
    /// What a sub-resource run has before it, told once it has looked.
    Plan {
        location: String,
        plan: SubPlan,
    },
    Total {
        location: String,
        total: u64,
    },
    /// `contacts` more contacts (or lists) committed; `requests` the run has made so far.
    Page {
        location: String,
        contacts: u64,
        requests: u64,
    },
}

/// A sub-resource run's work as it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct SubPlan {
    /// Contacts whose list of each kind is due (never fetched, or the contact changed since).
    pub due: Vec<(SubKind, u64)>,
    /// About how many requests the due lists take (task lists in batches when bulk is on).
    pub requests_wanted: u64,
    /// The most requests this run may make (`budget.run_requests`; the daily share may lower
    /// it once HighLevel reports the quota).
    pub budget: u64,
    /// The pace requests go at: at most this many ...
    pub pace_requests: u32,
    /// ... in any window this long.
    pub pace_window: Duration,
}

pub type Observer = Arc<dyn Fn(SyncEvent) + Send + Sync>;

/// A stop request (SIGINT/SIGTERM): the run stops issuing requests, commits what arrived, and
/// ends as `partial` with its cursor saved.
pub type StopSignal = tokio::sync::watch::Receiver<bool>;

/// What one run did.
#[derive(Clone, Debug)]
pub struct SyncReport {
    pub location: String,
    pub mode: &'static str,
    pub outcome: Outcome,
    pub progress: RunProgress,
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// Everything a run needs, borrowed for its duration.
struct Run<'a> {
    store: &'a Store,
    client: &'a Client,
    opts: &'a SyncOptions,
    stop: StopSignal,
    observer: Option<Observer>,
    location: String,
    run_id: i64,
    base: Counters,
    progress: RunProgress,
    state: StreamState,
    /// A background WAL checkpoint, and the contacts committed since the last one started.
    checkpoint: Option<JoinHandle<()>>,
    since_checkpoint: u64,
    /// Set when this run planned the sweep: a moment before it was planned, from which the
    /// first answer's `Date` header dates the sweep's start by HighLevel's clock.
    planned: Option<Instant>,
}

/// Contacts committed between background WAL checkpoints (about 10-20 MB of WAL).
const CHECKPOINT_EVERY: u64 = 10_000;

/// Why a run stopped on a signal.
const STOPPED: &str = "stopped by signal; what arrived is saved and the next run continues";

/// Why a pass ended before completing.
enum Halt {
    Stopped(String),
    Failed(SyncError),
}

impl Halt {
    /// A request abandoned because of a stop signal stops the run; any other error fails it.
    fn from_upstream(e: UpstreamError) -> Halt {
        match e {
            UpstreamError::Stopped { .. } => Halt::Stopped(STOPPED.into()),
            e => Halt::Failed(e.into()),
        }
    }
}

/// Runs one contacts sync of the client's location.
pub async fn sync_contacts(
    store: &Store,
    client: &Client,
    opts: &SyncOptions,
    stop: StopSignal,
    observer: Option<Observer>,
) -> SyncReport {
    let started = Instant::now();
    let location = client.location_id().to_string();
    let mut report = SyncReport {
        location: location.clone(),
        mode: "contacts",
        outcome: Outcome::Failed,
        progress: RunProgress::default(),
        error: None,
        elapsed: Duration::ZERO,
    };
    let client = &client.for_run(None, Some(stop.clone()));
    // One run per (location, stream) at a time, across processes too; held until we return.
    let _lock = match take_lock(store, &location, Stream::Contacts) {
        Ok(lock) => lock,
        Err((outcome, why)) => {
            report.outcome = outcome;
            report.error = Some(why);
            report.elapsed = started.elapsed();
            return report;
        }
    };
    let before_plan = Instant::now();
    let prepared = prepare(store, &location, opts).await;
    let (state, run_id, fresh) = match prepared {
        Ok(v) => v,
        Err(e) => {
            report.error = Some(e.to_string());
            report.elapsed = started.elapsed();
            return report;
        }
    };
    let mode = state
        .sweep
        .as_ref()
        .map_or("incremental", |s| s.kind.as_str());
    report.mode = mode;
    if let Some(obs) = &observer {
        obs(SyncEvent::Started {
            location: location.clone(),
            mode,
        });
    }
    let mut run = Run {
        store,
        client,
        opts,
        stop,
        observer,
        location,
        run_id,
        base: client.counters(),
        progress: RunProgress::default(),
        state,
        checkpoint: None,
        since_checkpoint: 0,
        planned: fresh.then_some(before_plan),
    };
    let result = run.execute().await;
    run.refresh_counters();
    let (outcome, error) = close_run(store, run_id, result, &run.progress).await;
    report.outcome = outcome;
    report.error = error;
    report.progress = run.progress;
    report.elapsed = started.elapsed();
    report
}

/// Loads the state, plans the sweep this run continues or starts, and records the run; true
/// when the sweep is new.
async fn prepare(
    store: &Store,
    location: &str,
    opts: &SyncOptions,
) -> Result<(StreamState, i64, bool), SyncError> {
    let store = store.clone();
    let location = location.to_string();
    let opts = opts.clone();
    blocking(move || {
        store.ensure_location(&location, None)?;
        let mut state = store.load_state(&location, Stream::Contacts)?;
        let saved = state.sweep.clone();
        plan(&mut state, &opts, now_ms());
        let fresh = state.sweep != saved;
        let mode = state
            .sweep
            .as_ref()
            .map_or("incremental", |s| s.kind.as_str());
        let run_id = store.begin_run(&location, Stream::Contacts, mode)?;
        store.save_state(&location, Stream::Contacts, &state)?;
        Ok((state, run_id, fresh))
    })
    .await
}

/// Decides the sweep of this run: continue the saved one when it fits the strategy, else start
/// a full, incremental or legacy sweep.
pub fn plan(state: &mut StreamState, opts: &SyncOptions, now: i64) {
    if let Some(s) = &state.sweep {
        let fits = match opts.strategy {
            ListStrategy::LegacyList => s.kind == SweepKind::Legacy,
            ListStrategy::Search => {
                s.kind == SweepKind::Full || (s.kind == SweepKind::Incremental && !opts.force_full)
            }
        };
        if fits {
            return;
        }
    }
    let reconcile_due = state.last_full_sweep_ms.is_none_or(|t| {
        now.saturating_sub(t) >= i64::try_from(opts.reconcile_every.as_millis()).unwrap_or(i64::MAX)
    });
    let sweep = match (opts.strategy, state.watermark_ms) {
        (ListStrategy::LegacyList, _) => {
            state.sweep_seq += 1;
            Sweep::new(SweepKind::Legacy, state.sweep_seq, now, None)
        }
        (ListStrategy::Search, Some(w)) if !opts.force_full && !reconcile_due => Sweep::new(
            SweepKind::Incremental,
            state.sweep_seq,
            now,
            Some(incremental_since(state, w, opts.lookback, now)),
        ),
        (ListStrategy::Search, _) => {
            state.sweep_seq += 1;
            Sweep::new(SweepKind::Full, state.sweep_seq, now, None)
        }
    };
    state.sweep = Some(sweep);
}

/// Where an incremental sweep starts: `lookback` before the start of the last completed sweep,
/// by HighLevel's clock.
///
/// That sweep read every contact search had indexed when it started; one updated shortly before
/// but indexed late (search lags by up to `lookback`) has a `dateUpdated` after this bound, and
/// so has one updated since. Everything older was read. Reaching back from the watermark instead
/// re-read every contact of a bulk edit on every run for as long as nothing newer changed.
///
/// `dateUpdated` is stamped by HighLevel's clock, so the start is too (see
/// [`Sweep::server_started_ms`]): by this machine's clock, one running ahead by more than
/// `lookback` less search's lag would miss contacts. When HighLevel's clock was not heard, or
/// the state predates it, the watermark (a HighLevel time as well) stands in.
fn incremental_since(state: &StreamState, watermark: i64, lookback: Duration, now: i64) -> i64 {
    let lookback = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
    let from = state
        .last_sweep_started_ms
        .map_or(watermark, |started| started.min(now));
    from.saturating_sub(lookback)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Asc,
    Desc,
}

type Fetch = JoinHandle<(Dir, Result<ContactsPage, UpstreamError>)>;

impl Run<'_> {
    fn sweep(&self) -> Result<&Sweep, Halt> {
        self.state
            .sweep
            .as_ref()
            .ok_or_else(|| Halt::Failed(SyncError::Task("no sweep planned".into())))
    }

    fn sweep_mut(&mut self) -> Result<&mut Sweep, Halt> {
        self.state
            .sweep
            .as_mut()
            .ok_or_else(|| Halt::Failed(SyncError::Task("no sweep planned".into())))
    }

    async fn execute(&mut self) -> Result<(), Halt> {
        loop {
            let kind = self.sweep()?.kind;
            match kind {
                SweepKind::Legacy => self.legacy_pass().await?,
                SweepKind::Full | SweepKind::Incremental => self.search_pass().await?,
            }
            let sweep = self.sweep()?.clone();
            if sweep.kind == SweepKind::Full && sweep.pass == Pass::Main {
                self.start_catch_up(&sweep).await?;
                continue;
            }
            return self.finish(&sweep).await;
        }
    }

    /// After a full sweep's main pass: re-read everything updated since the sweep started.
    async fn start_catch_up(&mut self, sweep: &Sweep) -> Result<(), Halt> {
        let lookback = i64::try_from(self.opts.lookback.as_millis()).unwrap_or(0);
        let mut next = Sweep::new(sweep.kind, sweep.seq, sweep.started_at_ms, None);
        next.pass = Pass::CatchUp;
        next.server_started_ms = sweep.server_started_ms;
        next.since_ms = Some(sweep.started_no_later_than() - lookback);
        next.max_seen_ms = sweep.max_seen_ms;
        self.state.sweep = Some(next);
        let (store, loc, state) = (
            self.store.clone(),
            self.location.clone(),
            self.state.clone(),
        );
        blocking(move || Ok(store.save_state(&loc, Stream::Contacts, &state)?))
            .await
            .map_err(Halt::Failed)
    }

    /// Completes the sweep: advance the watermark, and tombstone unseen contacts when the sweep
    /// read everything.
    async fn finish(&mut self, sweep: &Sweep) -> Result<(), Halt> {
        let now = now_ms();
        self.state.watermark_ms = next_watermark(self.state.watermark_ms, sweep, now);
        self.state.last_sweep_started_ms = sweep
            .server_started_ms
            .map(|_| sweep.started_no_later_than());
        if sweep.kind.reconciles() {
            self.state.last_full_sweep_ms = Some(now);
        }
        self.state.sweep = None;
        let reconcile = sweep.kind.reconciles().then_some(Reconcile {
            seq: sweep.seq,
            max_share: self.opts.max_tombstone_share,
        });
        let snap = self.snapshot();
        let (progress, end) = blocking(move || snap.finish_sweep(reconcile))
            .await
            .map_err(Halt::Failed)?;
        self.progress = progress;
        match end.refused {
            Some((unseen, live)) => Err(Halt::Failed(SyncError::MassDelete {
                location: self.location.clone(),
                unseen,
                live,
                share_pct: (self.opts.max_tombstone_share * 100.0).round() as u32,
            })),
            None => Ok(()),
        }
    }

    /// Owned copies of what a write on the blocking pool needs, counters refreshed.
    fn snapshot(&mut self) -> Snapshot {
        self.refresh_counters();
        Snapshot {
            store: self.store.clone(),
            location: self.location.clone(),
            run_id: self.run_id,
            state: self.state.clone(),
            progress: self.progress.clone(),
        }
    }

    fn refresh_counters(&mut self) {
        let c = self.client.counters();
        self.progress.requests = c.requests - self.base.requests;
        self.progress.retries = c.retries - self.base.retries;
        self.progress.rate_limited = c.rate_limited - self.base.rate_limited;
        self.progress.daily_remaining = self.client.daily_remaining();
    }

    /// Why this run must stop issuing requests now, if it must.
    fn stop_reason(&self) -> Option<String> {
        halt_reason(&self.stop, self.client)
    }

    fn spawn_search(&self, dir: Dir) -> Result<Fetch, Halt> {
        let sweep = self.sweep()?;
        let req = SearchRequest {
            since_ms: sweep.since_ms,
            descending: dir == Dir::Desc,
            after: match dir {
                Dir::Asc => sweep.asc.clone(),
                Dir::Desc => sweep.desc.clone(),
            },
            page_limit: self.opts.page_limit,
        };
        let client = self.client.clone();
        Ok(tokio::spawn(async move {
            (dir, client.search_contacts(&req).await)
        }))
    }

    /// One pass of a search sweep, from both ends, until the walks meet.
    ///
    /// Fetching and writing overlap: pages that arrive while a commit runs are queued and then
    /// written together in the next transaction (group commit), with the cursor after the last
    /// of them. Fetching pauses while `MAX_QUEUED_PAGES` wait, which bounds memory.
    async fn search_pass(&mut self) -> Result<(), Halt> {
        let mut p = PassState::default();
        let mut in_flight: FuturesUnordered<Fetch> = FuturesUnordered::new();
        let mut writing: Option<Commit> = None;
        loop {
            if p.halt.is_none() {
                p.halt = self.stop_reason().map(Halt::Stopped);
            }
            if p.halt.is_none() && p.queued.len() < MAX_QUEUED_PAGES {
                self.issue(&mut p, &mut in_flight)?;
            }
            if writing.is_none() && !p.queued.is_empty() {
                writing = Some(self.spawn_commit(std::mem::take(&mut p.queued))?);
            }
            let Some(commit) = writing.as_mut() else {
                // Nothing being written: wait for a page, or end when none is coming.
                match in_flight.next().await {
                    Some(joined) => self.receive(joined, &mut p)?,
                    None => break,
                }
                continue;
            };
            let contacts = commit.contacts;
            tokio::select! {
                done = &mut commit.handle => {
                    writing = None;
                    // A failed commit ends the pass at once: the in-memory cursor is already
                    // past its pages, so nothing after it may be committed with that cursor.
                    // Fetches in flight are dropped; the saved cursor is the last committed one.
                    self.take_commit(done, contacts)?;
                }
                Some(joined) = in_flight.next(), if !in_flight.is_empty() => {
                    self.receive(joined, &mut p)?;
                }
            }
        }
        match p.halt {
            Some(h) => Err(h),
            None => Ok(()),
        }
    }

    /// Sends the next request of each walk that is idle, as the pass allows.
    fn issue(
        &self,
        p: &mut PassState,
        in_flight: &mut FuturesUnordered<Fetch>,
    ) -> Result<(), Halt> {
        let limit = u64::from(self.opts.page_limit);
        let max = self.opts.max_in_flight.max(1);
        let s = self.sweep()?;
        if s.pass_complete() {
            return Ok(());
        }
        if !p.asc_busy
            && !s.asc_done
            && in_flight.len() < max
            && p.may_fetch_more(s.received, limit, true)
        {
            in_flight.push(self.spawn_search(Dir::Asc)?);
            p.asc_busy = true;
        }
        // The downward walk starts once the first page shows there is more than one page. The
        // catch-up pass walks upward only: contacts updated while it runs move up, ahead of an
        // upward walk, but could jump behind a downward one and be missed (then tombstoned).
        let two_ended = max >= 2
            && s.pass == Pass::Main
            && (s.desc.is_some() || p.total.is_some_and(|t| t > limit));
        if two_ended
            && !p.desc_busy
            && !s.desc_done
            && in_flight.len() < max
            && p.may_fetch_more(s.received, limit, false)
        {
            in_flight.push(self.spawn_search(Dir::Desc)?);
            p.desc_busy = true;
        }
        Ok(())
    }

    /// Takes one finished fetch: a page is advanced over and queued for writing; an error
    /// stops further requests (pages already received are still written).
    fn receive(
        &mut self,
        joined: Result<(Dir, Result<ContactsPage, UpstreamError>), tokio::task::JoinError>,
        p: &mut PassState,
    ) -> Result<(), Halt> {
        let (dir, result) = joined.map_err(|e| Halt::Failed(SyncError::Task(e.to_string())))?;
        match dir {
            Dir::Asc => p.asc_busy = false,
            Dir::Desc => p.desc_busy = false,
        }
        match result {
            Ok(page) => {
                self.date_start(page.server_date_ms)?;
                if let Some(t) = page.total {
                    p.total = Some(t);
                    if let Some(obs) = &self.observer {
                        obs(SyncEvent::Total {
                            location: self.location.clone(),
                            total: t,
                        });
                    }
                }
                self.advance(dir, &page.contacts, None)?;
                p.queued.push(page.contacts);
            }
            Err(e) => {
                p.halt.get_or_insert(Halt::from_upstream(e));
            }
        }
        Ok(())
    }

    /// Dates the start of a sweep this run planned by HighLevel's clock, from its first answer:
    /// its `Date` (whole seconds, rounded down) less the time since planning is no later than
    /// HighLevel's clock read when the sweep was planned.
    fn date_start(&mut self, server_date_ms: Option<i64>) -> Result<(), Halt> {
        let (Some(planned), Some(date)) = (self.planned, server_date_ms) else {
            return Ok(());
        };
        let since = i64::try_from(planned.elapsed().as_millis()).unwrap_or(i64::MAX);
        let sweep = self.sweep_mut()?;
        if sweep.server_started_ms.is_none() {
            sweep.server_started_ms = Some(date.saturating_sub(since));
        }
        Ok(())
    }

    /// One pass of the legacy list: serial by nature (the cursor comes from each page), but the
    /// next request is sent before the current page is committed.
    async fn legacy_pass(&mut self) -> Result<(), Halt> {
        let limit = self.opts.legacy_page_limit;
        let mut next: Option<JoinHandle<Result<ContactsPage, UpstreamError>>> = None;
        loop {
            if self.sweep()?.asc_done {
                return Ok(());
            }
            let handle = match next.take() {
                Some(h) => h,
                None => {
                    if let Some(why) = self.stop_reason() {
                        return Err(Halt::Stopped(why));
                    }
                    self.spawn_list(self.sweep()?.asc.clone(), limit)
                }
            };
            let page = handle
                .await
                .map_err(|e| Halt::Failed(SyncError::Task(e.to_string())))?
                .map_err(Halt::from_upstream)?;
            let total = page
                .total
                .or(page.meta.as_ref().and_then(|m| m.total.map(|t| t as u64)));
            if let (Some(t), Some(obs)) = (total, &self.observer) {
                obs(SyncEvent::Total {
                    location: self.location.clone(),
                    total: t,
                });
            }
            let n = page.contacts.len() as u32;
            let cursor = legacy_cursor(&page);
            let more = n >= limit && cursor.is_some();
            if more && self.stop_reason().is_none() {
                next = Some(self.spawn_list(cursor.clone(), limit));
            }
            self.advance(Dir::Asc, &page.contacts, Some((cursor, !more)))?;
            let commit = self.spawn_commit(vec![page.contacts])?;
            self.finish_commit(commit).await?;
        }
    }

    fn spawn_list(
        &self,
        after: Option<SortKey>,
        limit: u32,
    ) -> JoinHandle<Result<ContactsPage, UpstreamError>> {
        let client = self.client.clone();
        tokio::spawn(async move { client.list_contacts(after.as_ref(), limit).await })
    }

    /// Advances the in-memory sweep past one received page (positions, counts). Nothing is
    /// durable until `spawn_commit` writes the page together with the state that follows it.
    /// `legacy` gives the list's own cursor and whether the list ended.
    fn advance(
        &mut self,
        dir: Dir,
        contacts: &[PagedContact],
        legacy: Option<(Option<SortKey>, bool)>,
    ) -> Result<(), Halt> {
        let n = contacts.len() as u64;
        let limit = u64::from(self.opts.page_limit);
        let last = contacts.last().map(|c| c.key.clone());
        let max_updated = contacts
            .iter()
            .filter_map(|c| c.contact.date_updated_ms)
            .max();
        let warnings: u64 = contacts
            .iter()
            .map(|c| u64::from(c.contact.field_warnings))
            .sum();
        let sweep = self.sweep_mut()?;
        sweep.received += n;
        sweep.max_seen_ms = sweep.max_seen_ms.max(max_updated);
        match (dir, legacy) {
            (_, Some((cursor, ended))) => {
                if cursor.is_some() {
                    sweep.asc = cursor;
                }
                sweep.asc_done = ended;
            }
            (Dir::Asc, None) => {
                sweep.asc_done |= n < limit;
                if last.is_some() {
                    sweep.asc = last;
                }
            }
            (Dir::Desc, None) => {
                sweep.desc_done |= n < limit;
                if last.is_some() {
                    sweep.desc = last;
                }
            }
        }
        self.progress.received += n;
        self.progress.warnings += warnings;
        Ok(())
    }

    /// Starts writing `batch` (pages already passed to `advance`) with the current state and
    /// progress, in one transaction, on the blocking pool.
    fn spawn_commit(&mut self, batch: Vec<Vec<PagedContact>>) -> Result<Commit, Halt> {
        let mark = {
            let sweep = self.sweep()?;
            sweep.kind.reconciles().then_some(sweep.seq)
        };
        let snap = self.snapshot();
        let contacts: u64 = batch.iter().map(|p| p.len() as u64).sum();
        let handle = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let location = snap.location.clone();
            let progress = snap.commit_pages(&batch, mark)?;
            tracing::debug!(%location, pages = batch.len(), contacts, ms = t.elapsed().as_millis() as u64, "pages committed");
            Ok(progress)
        });
        Ok(Commit { handle, contacts })
    }

    /// Waits for a commit and takes its counts.
    async fn finish_commit(&mut self, commit: Commit) -> Result<(), Halt> {
        let joined = commit.handle.await;
        self.take_commit(joined, commit.contacts)
    }

    /// Starts a background WAL checkpoint when enough was written and none is running, so the
    /// copy into the database file overlaps with the next commits instead of stalling one.
    fn maybe_checkpoint(&mut self) {
        if self.since_checkpoint < CHECKPOINT_EVERY
            || self.checkpoint.as_ref().is_some_and(|h| !h.is_finished())
        {
            return;
        }
        self.since_checkpoint = 0;
        let store = self.store.clone();
        self.checkpoint = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = store.checkpoint() {
                tracing::debug!(error = %e, "background checkpoint failed; autocheckpoint remains");
            }
        }));
    }

    /// Takes a finished commit's counts.
    fn take_commit(
        &mut self,
        joined: Result<Result<RunProgress, SyncError>, tokio::task::JoinError>,
        contacts: u64,
    ) -> Result<(), Halt> {
        let progress = joined
            .map_err(|e| Halt::Failed(SyncError::Task(e.to_string())))?
            .map_err(Halt::Failed)?;
        // Counters that moved while the commit ran (received pages, requests) stay ours.
        self.progress.pages = progress.pages;
        self.progress.inserted = progress.inserted;
        self.progress.updated = progress.updated;
        self.progress.unchanged = progress.unchanged;
        self.since_checkpoint += contacts;
        self.maybe_checkpoint();
        if let Some(obs) = &self.observer {
            obs(SyncEvent::Page {
                location: self.location.clone(),
                contacts,
                requests: self.progress.requests,
            });
        }
        Ok(())
    }
}

/// Pages received but not yet written wait here; fetching pauses when this many wait.
const MAX_QUEUED_PAGES: usize = 8;

/// The in-memory side of one search pass.
#[derive(Default)]
struct PassState {
    asc_busy: bool,
    desc_busy: bool,
    total: Option<u64>,
    queued: Vec<Vec<PagedContact>>,
    halt: Option<Halt>,
}

impl PassState {
    /// Whether one more request may go out: always when none is in flight (one request, never
    /// two, confirms the end), else only while contacts remain that are neither received nor
    /// being fetched. `when_unknown` answers before the first page tells the `total`.
    fn may_fetch_more(&self, received: u64, limit: u64, when_unknown: bool) -> bool {
        let busy = u64::from(self.asc_busy) + u64::from(self.desc_busy);
        busy == 0
            || self
                .total
                .map_or(when_unknown, |t| t.saturating_sub(received) > busy * limit)
    }
}

/// What a write on the blocking pool needs, owned.
struct Snapshot {
    store: Store,
    location: String,
    run_id: i64,
    state: StreamState,
    progress: RunProgress,
}

impl Snapshot {
    fn key(&self) -> RunKey<'_> {
        RunKey {
            location: &self.location,
            stream: Stream::Contacts,
            run_id: self.run_id,
        }
    }

    /// `Store::commit_pages` with this snapshot's state; returns the progress after it.
    fn commit_pages(
        mut self,
        batch: &[Vec<PagedContact>],
        mark: Option<i64>,
    ) -> Result<RunProgress, SyncError> {
        let mut progress = std::mem::take(&mut self.progress);
        self.store
            .commit_pages(self.key(), batch, mark, &self.state, &mut progress)?;
        Ok(progress)
    }

    /// `Store::finish_sweep` with this snapshot's state; returns the progress after it.
    fn finish_sweep(
        mut self,
        reconcile: Option<Reconcile>,
    ) -> Result<(RunProgress, crate::store::SweepEnd), SyncError> {
        let mut progress = std::mem::take(&mut self.progress);
        let end = self
            .store
            .finish_sweep(self.key(), reconcile, &self.state, &mut progress)?;
        Ok((progress, end))
    }
}

/// A page batch being written.
struct Commit {
    handle: JoinHandle<Result<RunProgress, SyncError>>,
    contacts: u64,
}

/// The watermark after a completed sweep: the highest `dateUpdated` it saw, but never later than
/// now (a contact dated in the future must not hide later updates), and for a legacy sweep never
/// later than its start (it has no catch-up pass, so contacts it read early may have been
/// updated since).
fn next_watermark(old: Option<i64>, sweep: &Sweep, now: i64) -> Option<i64> {
    let ceiling = match sweep.kind {
        SweepKind::Legacy => sweep.started_at_ms.min(now),
        SweepKind::Full | SweepKind::Incremental => now,
    };
    let seen = sweep.max_seen_ms.map(|m| m.min(ceiling));
    match (old, seen) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The legacy list's next cursor: `meta.startAfter` + `meta.startAfterId` when HighLevel sends
/// them, else the last contact's (dateAdded, id).
fn legacy_cursor(page: &ContactsPage) -> Option<SortKey> {
    if let Some(m) = &page.meta {
        // When HighLevel sends `meta`, it is the authority: null ids mean "no next page".
        return match (m.start_after, m.start_after_id.clone()) {
            (Some(ms), Some(id)) => Some(SortKey { ms: ms as i64, id }),
            _ => None,
        };
    }
    page.contacts.last().map(|c| c.key.clone())
}

/// Why a run must stop issuing requests now, if it must: a stop signal, or the daily quota
/// reserve (trusted only once this run has heard from HighLevel: an earlier figure may predate
/// the daily reset).
fn halt_reason(stop: &StopSignal, client: &Client) -> Option<String> {
    if *stop.borrow() {
        return Some(STOPPED.into());
    }
    if client.counters().requests > 0 && client.quota_low() {
        return Some(format!(
            "daily quota reserve reached (X-RateLimit-Daily-Remaining {} < upstream.rate_limit.daily_reserve {}); what arrived is saved and the next run continues",
            client.daily_remaining().unwrap_or(0),
            client.daily_reserve()
        ));
    }
    None
}

impl SyncReport {
    fn new(location: &str, mode: &'static str) -> SyncReport {
        SyncReport {
            location: location.to_string(),
            mode,
            outcome: Outcome::Failed,
            progress: RunProgress::default(),
            error: None,
            elapsed: Duration::ZERO,
        }
    }

    fn ended(
        mut self,
        (outcome, error): (Outcome, Option<String>),
        progress: RunProgress,
        started: Instant,
    ) -> SyncReport {
        self.outcome = outcome;
        self.error = error;
        self.progress = progress;
        self.elapsed = started.elapsed();
        self
    }
}

/// Takes the run lock of a (location, stream) and records the run's start. The lock is held
/// until the returned guard drops.
async fn open_run(
    store: &Store,
    location: &str,
    stream: Stream,
    mode: &'static str,
) -> Result<(crate::store::StreamLock, i64), (Outcome, Option<String>)> {
    let lock = take_lock(store, location, stream).map_err(|(o, e)| (o, Some(e)))?;
    let (store, location) = (store.clone(), location.to_string());
    let run_id = blocking(move || {
        store.ensure_location(&location, None)?;
        Ok(store.begin_run(&location, stream, mode)?)
    })
    .await
    .map_err(|e| (Outcome::Failed, Some(e.to_string())))?;
    Ok((lock, run_id))
}

/// Takes the (location, stream) run lock, or says why this run cannot start.
fn take_lock(
    store: &Store,
    location: &str,
    stream: Stream,
) -> Result<crate::store::StreamLock, (Outcome, String)> {
    match store.try_lock_stream(location, stream) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err((
            Outcome::Skipped,
            format!(
                "another ghl-mirror run is syncing the {} of location {location} (lock {}); \
                 this run did nothing. Run it again when that one has finished",
                stream.as_str(),
                store.lock_path(location, stream).display()
            ),
        )),
        Err(e) => Err((Outcome::Failed, e.to_string())),
    }
}

/// Records how a run ended; returns its outcome and error text.
async fn close_run(
    store: &Store,
    run_id: i64,
    result: Result<(), Halt>,
    progress: &RunProgress,
) -> (Outcome, Option<String>) {
    let (outcome, error) = match result {
        Ok(()) => (Outcome::Success, None),
        Err(Halt::Stopped(why)) => (Outcome::Partial, Some(why)),
        Err(Halt::Failed(e)) => (Outcome::Failed, Some(e.to_string())),
    };
    let ended = blocking({
        let store = store.clone();
        let p = progress.clone();
        let e = error.clone();
        move || Ok(store.end_run(run_id, outcome.as_str(), &p, e.as_deref())?)
    })
    .await;
    match ended {
        Ok(()) => (outcome, error),
        Err(e) => (Outcome::Failed, Some(e.to_string())),
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_run_plans_a_full_sweep_then_incremental_ones() {
        let opts = SyncOptions::default();
        let mut st = StreamState::default();
        plan(&mut st, &opts, 1_000_000);
        assert_eq!(st.sweep.as_ref().map(|s| s.kind), Some(SweepKind::Full));
        assert_eq!(st.sweep_seq, 1);
        st.sweep = None;
        st.watermark_ms = Some(900_000);
        st.last_full_sweep_ms = Some(1_000_000);
        plan(&mut st, &opts, 1_000_001);
        let s = st.sweep.clone().unwrap();
        assert_eq!(s.kind, SweepKind::Incremental);
        assert_eq!(s.since_ms, Some(900_000 - 300_000));
    }

    #[test]
    fn the_watermark_never_passes_now_nor_a_legacy_sweeps_start() {
        let mut s = Sweep::new(SweepKind::Full, 1, 1_000, None);
        s.max_seen_ms = Some(5_000);
        assert_eq!(next_watermark(None, &s, 2_000), Some(2_000));
        assert_eq!(next_watermark(Some(3_000), &s, 9_000), Some(5_000));
        s.kind = SweepKind::Legacy;
        assert_eq!(next_watermark(None, &s, 9_000), Some(1_000));
        s.max_seen_ms = None;
        assert_eq!(next_watermark(Some(7), &s, 9_000), Some(7));
    }

    #[test]
    fn an_incremental_sweep_reaches_back_from_the_last_sweeps_start_not_the_watermark() {
        let opts = SyncOptions::default();
        let lookback = 300_000;
        // A bulk edit at 900_000 set the watermark; the last sweep started well after it.
        let mut st = StreamState {
            watermark_ms: Some(900_000),
            last_full_sweep_ms: Some(1_000_000),
            last_sweep_started_ms: Some(1_500_000),
            ..StreamState::default()
        };
        plan(&mut st, &opts, 1_600_000);
        assert_eq!(
            st.sweep.as_ref().and_then(|s| s.since_ms),
            Some(1_500_000 - lookback)
        );
        // A clock that went back never moves the window past now.
        st.sweep = None;
        plan(&mut st, &opts, 1_400_000);
        assert_eq!(
            st.sweep.as_ref().and_then(|s| s.since_ms),
            Some(1_400_000 - lookback)
        );
        // A state saved before the start was kept: the watermark stands in.
        st.sweep = None;
        st.last_sweep_started_ms = None;
        plan(&mut st, &opts, 1_600_000);
        assert_eq!(
            st.sweep.as_ref().and_then(|s| s.since_ms),
            Some(900_000 - lookback)
        );
    }

    #[test]
    fn a_sweep_starts_no_later_than_either_clock_says() {
        let mut s = Sweep::new(SweepKind::Incremental, 1, 10_000, None);
        assert_eq!(s.started_no_later_than(), 10_000);
        // This machine's clock ahead of HighLevel's: HighLevel's start counts.
        s.server_started_ms = Some(7_000);
        assert_eq!(s.started_no_later_than(), 7_000);
        // Behind it: this machine's.
        s.server_started_ms = Some(12_000);
        assert_eq!(s.started_no_later_than(), 10_000);
    }

    #[test]
    fn a_due_reconciliation_plans_a_full_sweep() {
        let opts = SyncOptions::default();
        let mut st = StreamState {
            watermark_ms: Some(5),
            last_full_sweep_ms: Some(0),
            ..StreamState::default()
        };
        plan(&mut st, &opts, 24 * 3600 * 1000);
        assert_eq!(st.sweep.map(|s| s.kind), Some(SweepKind::Full));
    }
}

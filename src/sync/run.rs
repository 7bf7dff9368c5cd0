//! The frame every budgeted run shares: the (location, stream) lock, the run's row in
//! `sync_runs`, its client scope (own counters, optional budget), stop checks, and store work on
//! the blocking pool with the run's progress committed alongside.

use super::{
    Halt, Observer, StopSignal, SyncError, SyncEvent, SyncReport, blocking, close_run, halt_reason,
    open_run,
};
use crate::model::{RunProgress, Stream};
use crate::store::{RunKey, Store, StoreError, StreamLock};
use crate::upstream::{Budget, Client};
use std::time::Instant;

pub(super) struct RunCtx {
    pub store: Store,
    pub client: Client,
    pub stop: StopSignal,
    pub location: String,
    pub progress: RunProgress,
    observer: Option<Observer>,
    stream: Stream,
    run_id: i64,
    started: Instant,
    report: SyncReport,
    _lock: StreamLock,
}

impl RunCtx {
    /// Takes the lock and records the run; `Err` is the report of a run that did not start
    /// (skipped: another run holds the lock; or failed).
    pub async fn open(
        store: &Store,
        client: &Client,
        stream: Stream,
        budget: Option<Budget>,
        stop: StopSignal,
        observer: Option<Observer>,
    ) -> Result<RunCtx, SyncReport> {
        let started = Instant::now();
        let location = client.location_id().to_string();
        let report = SyncReport::new(&location, stream.as_str());
        let (lock, run_id) = match open_run(store, &location, stream, stream.as_str()).await {
            Ok(v) => v,
            Err(end) => return Err(report.ended(end, RunProgress::default(), started)),
        };
        if let Some(obs) = &observer {
            obs(SyncEvent::Started {
                location: location.clone(),
                mode: stream.as_str(),
            });
        }
        Ok(RunCtx {
            observer,
            store: store.clone(),
            client: client.for_run(budget, Some(stop.clone())),
            stop,
            location,
            progress: RunProgress::default(),
            stream,
            run_id,
            started,
            report,
            _lock: lock,
        })
    }

    /// Records how the run ended and releases the lock.
    pub async fn close(mut self, result: Result<(), Halt>) -> SyncReport {
        self.count_requests();
        let end = close_run(&self.store, self.run_id, result, &self.progress).await;
        let report = self.report.clone();
        report.ended(end, self.progress, self.started)
    }

    /// Stops the run when a signal arrived or the daily quota reserve is reached.
    pub fn check(&self) -> Result<(), Halt> {
        match halt_reason(&self.stop, &self.client) {
            Some(why) => Err(Halt::Stopped(why)),
            None => Ok(()),
        }
    }

    /// Tells the observer (a progress bar) how much there is to do, or that `n` more are done.
    pub fn notify_total(&self, total: u64) {
        if let Some(obs) = &self.observer {
            obs(SyncEvent::Total {
                location: self.location.clone(),
                total,
            });
        }
    }

    pub fn notify_done(&self, n: u64) {
        if let Some(obs) = &self.observer {
            obs(SyncEvent::Page {
                location: self.location.clone(),
                contacts: n,
                requests: self.client.counters().requests,
            });
        }
    }

    /// Tells the observer what the run has before it.
    pub fn notify_plan(&self, plan: super::SubPlan) {
        if let Some(obs) = &self.observer {
            obs(SyncEvent::Plan {
                location: self.location.clone(),
                plan,
            });
        }
    }

    pub fn has_observer(&self) -> bool {
        self.observer.is_some()
    }

    pub fn count_requests(&mut self) {
        let c = self.client.counters();
        self.progress.requests = c.requests;
        self.progress.retries = c.retries;
        self.progress.rate_limited = c.rate_limited;
        self.progress.daily_remaining = self.client.daily_remaining();
    }

    /// Runs a write on the blocking pool with the run's key and progress (counters refreshed);
    /// the progress it leaves is kept.
    pub async fn commit<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Store, RunKey<'_>, &mut RunProgress) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Halt> {
        self.count_requests();
        let (store, loc, stream, run_id, mut p) = (
            self.store.clone(),
            self.location.clone(),
            self.stream,
            self.run_id,
            self.progress.clone(),
        );
        let (out, p) = blocking(move || {
            let run = RunKey {
                location: &loc,
                stream,
                run_id,
            };
            let out = f(&store, run, &mut p)?;
            Ok((out, p))
        })
        .await
        .map_err(Halt::Failed)?;
        self.progress = p;
        Ok(out)
    }

    /// Runs a read (or a write that carries no progress) on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Halt> {
        let (store, loc) = (self.store.clone(), self.location.clone());
        blocking(move || f(&store, &loc).map_err(SyncError::from))
            .await
            .map_err(Halt::Failed)
    }
}

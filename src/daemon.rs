//! Jobs and the scheduler: what one `sync` of a location runs, and `daemon`, which runs the same
//! jobs on cron schedules (tokio-cron-scheduler) until SIGINT/SIGTERM.
//!
//! Overlap is settled by the per-(location, stream) run lock: a tick that finds the previous run
//! of its stream still going (in this process or another, e.g. a `sync` from system cron) is
//! skipped and logged; it never waits on or interleaves with the other run. On a stop signal the
//! scheduler stops ticking, every run stops issuing requests, commits what arrived and ends
//! `partial`, and the daemon exits once they have.

use crate::config::ScheduleConfig;
use crate::store::Store;
use crate::sync::{
    BusinessOptions, StopSignal, SubOptions, SyncOptions, SyncReport, sync_businesses,
    sync_contacts, sync_subresources,
};
use crate::upstream::Client;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};

/// Every stream's options.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub contacts: SyncOptions,
    /// `kinds` empty: the stream is off.
    pub subs: SubOptions,
    /// `None`: the stream is off.
    pub businesses: Option<BusinessOptions>,
}

/// What a run does to one location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// An incremental contacts sweep (or whatever the contacts plan says is due).
    Contacts,
    /// A full contacts sweep that reconciles deletes.
    Reconcile,
    Subresources,
    Businesses,
    /// Contacts, then sub-resources, then businesses.
    All,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Contacts => "contacts",
            Job::Reconcile => "reconcile",
            Job::Subresources => "subresources",
            Job::Businesses => "businesses",
            Job::All => "all",
        }
    }
}

/// Runs a job on one location: its streams one after another (sub-resources follow contacts so
/// they see the contacts just mirrored). A stream that is off is not run.
pub async fn run_job(
    store: &Store,
    client: &Client,
    job: Job,
    opts: &StreamOptions,
    stop: &StopSignal,
) -> Vec<SyncReport> {
    let mut reports = Vec::new();
    let contacts = matches!(job, Job::Contacts | Job::Reconcile | Job::All);
    let subs = matches!(job, Job::Subresources | Job::All) && !opts.subs.kinds.is_empty();
    let businesses = matches!(job, Job::Businesses | Job::All);
    if contacts {
        let mut o = opts.contacts.clone();
        o.force_full |= job == Job::Reconcile;
        reports.push(sync_contacts(store, client, &o, stop.clone(), None).await);
    }
    if subs && !*stop.borrow() {
        reports.push(sync_subresources(store, client, &opts.subs, stop.clone(), None).await);
    }
    if let Some(b) = opts.businesses.as_ref().filter(|_| businesses)
        && !*stop.borrow()
    {
        reports.push(sync_businesses(store, client, b, stop.clone()).await);
    }
    // What the runs changed becomes searchable by text; a failure here loses nothing (the
    // changes stay marked) and is retried after the next run.
    if let Err(e) = crate::sync::index_text(store, stop).await {
        tracing::warn!(error = %e, "full-text index not caught up; the next run retries");
    }
    reports
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error("nothing to schedule: every schedule.* entry is empty")]
    NothingScheduled,
}

/// Called with each run's report as it ends.
pub type OnReport = Arc<dyn Fn(&SyncReport) + Send + Sync>;

/// State shared by the scheduled jobs.
struct Runner {
    store: Store,
    clients: Vec<Client>,
    opts: StreamOptions,
    stop: StopSignal,
    on_report: OnReport,
    tasks: Mutex<JoinSet<()>>,
}

impl Runner {
    /// Starts `job` on every location, each in its own task.
    fn tick(self: &Arc<Self>, job: Job) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: `drain` takes the set only after the stop flag is up, so a
        // tick either lands in the set it drains or sees the flag.
        if *self.stop.borrow() {
            return;
        }
        while let Some(done) = tasks.try_join_next() {
            log_join(done);
        }
        for client in &self.clients {
            let (me, client) = (self.clone(), client.clone());
            tasks.spawn(async move {
                let reports = run_job(&me.store, &client, job, &me.opts, &me.stop).await;
                for r in &reports {
                    (me.on_report)(r);
                }
            });
        }
    }

    /// Waits for every running job (they stop on the signal).
    async fn drain(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while let Some(done) = tasks.join_next().await {
            log_join(done);
        }
    }
}

/// A run's task ended; a panic is logged (its run row stays `running` until the next run of
/// the stream marks it `interrupted`).
fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a scheduled run crashed; the next run of its stream resumes");
    }
}

/// Runs jobs on their schedules until `stop` flips, then waits for the runs in flight to commit
/// and end.
pub async fn run_daemon(
    store: Store,
    clients: Vec<Client>,
    opts: StreamOptions,
    schedule: &ScheduleConfig,
    stop: StopSignal,
    on_report: OnReport,
) -> Result<(), DaemonError> {
    let mut jobs: Vec<(Job, String)> = Vec::new();
    for (job, expr) in [
        (Job::Contacts, &schedule.contacts),
        (Job::Subresources, &schedule.subresources),
        (Job::Businesses, &schedule.businesses),
        (Job::Reconcile, &schedule.reconcile),
    ] {
        if let Some(e) = expr {
            jobs.push((job, e.clone()));
        }
    }
    if jobs.is_empty() {
        return Err(DaemonError::NothingScheduled);
    }
    let runner = Arc::new(Runner {
        store,
        clients,
        opts,
        stop: stop.clone(),
        on_report,
        tasks: Mutex::new(JoinSet::new()),
    });
    let sched_err =
        |e: tokio_cron_scheduler::JobSchedulerError| DaemonError::Scheduler(e.to_string());
    let mut sched = JobScheduler::new().await.map_err(sched_err)?;
    for (job, expr) in &jobs {
        let r = runner.clone();
        let job = *job;
        let cron = CronJob::new_async(expr.as_str(), move |_, _| {
            let r = r.clone();
            Box::pin(async move { r.tick(job) })
        })
        .map_err(sched_err)?;
        sched.add(cron).await.map_err(sched_err)?;
        tracing::info!(job = job.as_str(), schedule = %expr, "scheduled");
    }
    if schedule.run_at_start {
        runner.tick(Job::All);
    }
    sched.start().await.map_err(sched_err)?;
    let mut stop = stop;
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sched.shutdown()).await;
    runner.drain().await;
    Ok(())
}

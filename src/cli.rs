//! The command line and the composition root: parses arguments, loads config, opens the store,
//! builds one upstream client per location, and runs `sync`, `status`, `sandbox` or `demo`.
//!
//! Exit codes: 0 success, 1 failure (any location failed, or bad input), 2 usage error (clap),
//! 3 partial (a run stopped early on purpose: quota reserve or signal; the next run continues;
//! or it was skipped because another run of the same location holds its lock).

use self::progress::ProgressUi;
use crate::config::{Config, LocationConfig, ProcessEnv, Strategy};
use crate::daemon::{Job, StreamOptions, run_daemon, run_job};
use crate::model::{Outcome, iso_from_ms, ms_from_iso, now_ms};
use crate::output::Format;
use crate::sandbox::{LocationSeed, RateLimits, Sandbox, SandboxConfig};
use crate::store::Store;
use crate::sync::{
    BusinessOptions, ListStrategy, SubOptions, SyncOptions, SyncReport, sync_businesses,
    sync_contacts, sync_subresources,
};
use crate::upstream::{Client, ClientSettings};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod auth;
mod progress;
mod query;

#[derive(Parser, Debug)]
#[command(
    name = "ghl-mirror",
    version,
    about = "Local-first offline mirror of HighLevel contacts in SQLite"
)]
pub struct Cli {
    /// Config file (TOML; see config.example.toml). Without one, defaults + environment.
    #[arg(long, global = true, env = "GHL_MIRROR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database file, overriding `database.path`.
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// More log output (-v debug, -vv trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one sync of every configured location (contacts, then sub-resources, then
    /// businesses), then exit.
    Sync(SyncArgs),
    /// Keep every location fresh on the cron schedules in the config, until SIGINT/SIGTERM.
    Daemon(DaemonArgs),
    /// Answer HighLevel's read paths (and /mirror/*, /metrics, /health) from the mirror over
    /// HTTP, until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Show each location's and stream's last run, counts, watermark, quota and staleness.
    Status,
    /// Create the mirror file, or bring an existing one to this version's schema (`sync` and
    /// `daemon` do this too; the reading commands only open a mirror that is up to date).
    Migrate,
    /// Run one read-only SQL query on the mirror: SELECT, WITH and reporting PRAGMAs
    /// (writes, ATTACH and VACUUM are refused), stopped after `--timeout`.
    Sql(SqlArgs),
    /// Show, list or search the mirrored contacts (reads the mirror only; no token needed).
    #[command(subcommand)]
    Contacts(query::ContactsCommand),
    /// List the mirrored tasks of live contacts.
    #[command(subcommand)]
    Tasks(query::TasksCommand),
    /// List the mirrored notes of live contacts.
    #[command(subcommand)]
    Notes(query::NotesCommand),
    /// List the mirrored appointments of live contacts.
    #[command(subcommand)]
    Appointments(query::AppointmentsCommand),
    /// Write every matching contact, task, note or appointment to a CSV, JSON or NDJSON file,
    /// replacing it only once complete.
    Export(query::ExportArgs),
    /// OAuth 2.0: log in (authorization code), and show each location's token health.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Run the simulated HighLevel API on 127.0.0.1 until Ctrl-C.
    Sandbox(SandboxArgs),
    /// Start a sandbox in-process, sync it, apply churn, sync again, and show what changed.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Start a full sweep now (detects deleted contacts), whatever the schedule says.
    #[arg(long)]
    pub full: bool,
    /// Let this run tombstone any share of the contacts (see sync.max_tombstone_share).
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Only this location id (repeatable). Default: all configured locations.
    #[arg(long = "location")]
    pub locations: Vec<String>,
    /// Only this stream (repeatable). Default: every stream the config turns on.
    #[arg(long = "stream", value_enum)]
    pub streams: Vec<StreamArg>,
    /// When stderr is not a terminal (cron, a log file): print a progress line this often.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub progress_every: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamArg {
    Contacts,
    Subresources,
    Businesses,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Also serve the local HTTP API (as `ghl-mirror serve` does) while syncing.
    #[arg(long)]
    pub serve: bool,
    /// Address for the API, overriding `serve.listen` (implies --serve).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port, overriding `serve.listen` (default 127.0.0.1:8484). Beyond loopback
    /// the API token (serve.token_env) must be set.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// One SQL statement, e.g. "SELECT name, email FROM contacts WHERE deleted_at IS NULL".
    pub query: String,
    /// Output: an aligned table, a JSON array, one JSON object per line, or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// At most this many rows (a note on stderr says when more were left out).
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// Stop the query after this long, e.g. "30s", "2m" (default: `[sql] timeout`, 5s).
    #[arg(long, value_parser = positive_duration)]
    pub timeout: Option<Duration>,
}

/// A duration above zero ("30s", "2m").
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero, e.g. 30s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e}; write e.g. 30s or 2m")),
    }
}

#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// Port to listen on (127.0.0.1). 0 picks a free one.
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Contacts per location.
    #[arg(long, default_value_t = 1000)]
    pub contacts: usize,
    /// Number of locations.
    #[arg(long, default_value_t = 1)]
    pub locations: usize,
    /// Seed for the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Latency added to every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Turn off the rate limits (default: HighLevel's 100 per 10 s and 200,000 per day).
    #[arg(long)]
    pub no_limits: bool,
    /// Lifetime of the OAuth access tokens it issues, e.g. "86399s", "5m" (HighLevel's: 86399s).
    #[arg(long, default_value = "86399s", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// How long a used OAuth refresh token may be replayed for the same new pair ("0s": single use).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub refresh_grace: Duration,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Contacts in the sandbox.
    #[arg(long, default_value_t = 20_000)]
    pub contacts: usize,
    /// Latency added to every sandbox response, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Keep the mirror in this file (default: a temporary file, removed at the end).
    #[arg(long = "keep-db")]
    pub keep_db: Option<PathBuf>,
}

/// Sets up logging to stderr; `RUST_LOG` overrides the verbosity flag.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "ghl_mirror=debug,info",
        _ => "ghl_mirror=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(run_async(cli));
    // Dropping the runtime would wait for every blocking task still running (a query whose
    // request was given up); the process exits instead after at most this long.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        // A reader that stopped reading (`| head`) ends the output, not in an error.
        Err(_) if crate::output::reader_gone() => Ok(ExitCode::SUCCESS),
        r => r,
    }
}

async fn run_async(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Sandbox(a) => run_sandbox(a).await,
        Command::Demo(a) => run_demo(a).await,
        Command::Sync(a) => {
            let config = load_config(&cli)?;
            run_sync(&config, a).await
        }
        Command::Daemon(a) => {
            let config = load_config(&cli)?;
            run_daemon_cmd(&config, a).await
        }
        Command::Serve(a) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            run_serve(&config, a).await
        }
        Command::Status => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            run_status(&config).await
        }
        Command::Migrate => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            run_migrate(&config)
        }
        Command::Sql(a) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            run_sql(&config, a)
        }
        Command::Contacts(c) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            query::run_contacts(&config, c)
        }
        Command::Tasks(c) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            query::run_tasks(&config, c)
        }
        Command::Notes(c) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            query::run_notes(&config, c)
        }
        Command::Appointments(c) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            query::run_appointments(&config, c)
        }
        Command::Export(a) => {
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            query::run_export(&config, a)
        }
        Command::Auth(c) => {
            // Private Integration Tokens do not matter here; `login` checks the client secret.
            let config = load_config_with(&cli, &NoTokensNeeded)?;
            auth::run(&config, c).await
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    load_config_with(cli, &ProcessEnv)
}

fn load_config_with(cli: &Cli, env: &dyn crate::config::Env) -> Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), env)?;
    if let Some(db) = &cli.db {
        config.database = db.clone();
    }
    Ok(config)
}

/// Opens (creating or migrating) the mirror: for the commands that sync.
fn open_store(path: &Path) -> Result<Store> {
    Ok(Store::open(path)?)
}

/// Opens an existing mirror read-only: for the commands that only read it.
fn open_read_only(path: &Path) -> Result<Store> {
    Ok(Store::open_read_only(path)?)
}

/// `migrate`: creates the mirror file, or brings it to this version's schema.
fn run_migrate(config: &Config) -> Result<ExitCode> {
    let path = &config.database;
    let before = Store::contents_of(path)?;
    drop(open_store(path)?);
    let current = crate::store::current_schema_version();
    let what = match before {
        None => "created".to_string(),
        Some(crate::store::Contents::Empty) => "set up in the empty file".to_string(),
        Some(crate::store::Contents::Mirror(v)) if v == current => "already up to date".to_string(),
        Some(crate::store::Contents::Mirror(v)) => format!("migrated from version {v}"),
    };
    let mut out = crate::output::stdout();
    writeln!(out, "{}: schema version {current} ({what})", path.display())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The engine's options from the config.
pub fn sync_options(config: &Config, force_full: bool) -> SyncOptions {
    SyncOptions {
        strategy: match config.sync.strategy {
            Strategy::Search => ListStrategy::Search,
            Strategy::LegacyList => ListStrategy::LegacyList,
        },
        page_limit: config.sync.page_limit,
        legacy_page_limit: config.sync.legacy_page_limit,
        lookback: config.sync.lookback,
        reconcile_every: config.sync.reconcile_every,
        max_in_flight: config.upstream.max_in_flight,
        force_full,
        max_tombstone_share: config.sync.max_tombstone_share,
    }
}

/// Every stream's options from the config.
pub fn stream_options(config: &Config, force_full: bool) -> StreamOptions {
    let b = &config.budget;
    StreamOptions {
        contacts: sync_options(config, force_full),
        subs: SubOptions {
            kinds: config.subresources.kinds.clone(),
            run_requests: b.run_requests,
            daily_share: b.daily_share,
            refresh_after: config.subresources.refresh_after,
            bulk_tasks: config.subresources.bulk_tasks,
            bulk_page_limit: config.subresources.bulk_page_limit,
            max_in_flight: config.upstream.max_in_flight,
        },
        businesses: config.businesses.enabled.then_some(BusinessOptions {
            page_limit: config.businesses.page_limit,
            run_requests: b.run_requests,
            daily_share: b.daily_share,
        }),
    }
}

/// A client for one location from the config (`tokens`: the OAuth token manager, when the
/// config has an `[oauth]` section).
pub fn client_for(
    config: &Config,
    loc: &LocationConfig,
    tokens: Option<&Arc<crate::auth::Tokens>>,
) -> Result<Client> {
    let up = &config.upstream;
    Ok(Client::new(ClientSettings {
        base_url: up.base_url.clone(),
        api_version: up.api_version.clone(),
        location_id: loc.id.clone(),
        credentials: auth::credentials(loc, tokens, &config.required_scopes())?,
        timeout: up.timeout,
        burst_max: up.burst_max,
        interval: up.interval,
        safety_margin: up.safety_margin,
        daily_reserve: up.daily_reserve,
        max_attempts: up.max_attempts,
        base_delay: up.base_delay,
        max_delay: up.max_delay,
    })?)
}

/// A client for each of `locations` that can be authorized. Each that cannot is reported on
/// stderr and left out, so the others still sync; the flag says whether one was.
fn authorized_clients<'a>(
    config: &Config,
    locations: impl IntoIterator<Item = &'a LocationConfig>,
    tokens: Option<&Arc<crate::auth::Tokens>>,
) -> (Vec<(&'a LocationConfig, Client)>, bool) {
    let mut refused = false;
    let mut clients = Vec::new();
    for loc in locations {
        match client_for(config, loc, tokens) {
            Ok(c) => clients.push((loc, c)),
            Err(e) => {
                eprintln!("location {}: not synced: {e:#}", loc.id);
                refused = true;
            }
        }
    }
    (clients, refused)
}

/// What a sync says when a signal stops it.
const SYNC_STOPPING: &str =
    "stopping: finishing the pages in flight and saving the cursor (Ctrl-C again to abort)";

/// A stop signal that flips on SIGINT or SIGTERM, saying `message` when it does.
fn stop_on_signals(message: impl std::fmt::Display + Send + 'static) -> crate::sync::StopSignal {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("{message}");
        let _ = tx.send(true);
        wait_for_signal().await;
        std::process::exit(130);
    });
    rx
}

/// Resolves on SIGINT or SIGTERM; the handlers are in place as soon as this returns, so a
/// signal that comes before the future is awaited is not lost (nor fatal).
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            match (int, term) {
                (Some(mut int), Some(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run_sync(config: &Config, args: &SyncArgs) -> Result<ExitCode> {
    let tokens = auth::tokens(config)?;
    let all = auth::locations(config, tokens.as_ref()).await?;
    let locations: Vec<&LocationConfig> = all
        .iter()
        .filter(|l| args.locations.is_empty() || args.locations.contains(&l.id))
        .collect();
    if locations.is_empty() {
        if all.is_empty() {
            bail!(
                "no location configured: add a [[locations]] block to the config file (see config.example.toml), \
                 or set GHL_LOCATION_ID and GHL_TOKEN; to try ghl-mirror without an account run `ghl-mirror demo`"
            );
        }
        bail!(
            "none of the --location ids {:?} is in the config",
            args.locations
        );
    }
    let store = open_store(&config.database)?;
    for l in &locations {
        store.ensure_location(&l.id, l.name.as_deref())?;
    }
    let mut opts = stream_options(config, args.full);
    if args.allow_mass_delete {
        opts.contacts.max_tombstone_share = 1.0;
    }
    let wants = |s: StreamArg| args.streams.is_empty() || args.streams.contains(&s);
    if !wants(StreamArg::Subresources) {
        opts.subs.kinds.clear();
    }
    if !wants(StreamArg::Businesses) {
        opts.businesses = None;
    }
    let contacts = wants(StreamArg::Contacts);
    let stop = stop_on_signals(SYNC_STOPPING);
    let progress = ProgressUi::new(std::io::stderr().is_terminal(), args.progress_every);
    let mut runs = Vec::new();
    let (clients, refused) = authorized_clients(config, locations, tokens.as_ref());
    for (_, client) in clients {
        let (store, opts, stop, obs) = (
            store.clone(),
            opts.clone(),
            stop.clone(),
            progress.observer(),
        );
        runs.push(tokio::spawn(async move {
            // Contacts and sub-resources show progress bars; businesses are quick.
            let mut reports = Vec::new();
            if contacts {
                let c = sync_contacts(
                    &store,
                    &client,
                    &opts.contacts,
                    stop.clone(),
                    Some(obs.clone()),
                )
                .await;
                reports.push(c);
            }
            if !opts.subs.kinds.is_empty() && !*stop.borrow() {
                let s =
                    sync_subresources(&store, &client, &opts.subs, stop.clone(), Some(obs)).await;
                reports.push(s);
            }
            reports.extend(run_job(&store, &client, Job::Businesses, &opts, &stop).await);
            reports
        }));
    }
    let mut reports = Vec::new();
    for r in runs {
        reports.extend(r.await.context("a sync task panicked")?);
    }
    progress.finish();
    // A closed stdout must neither panic nor hide the runs' exit code.
    let mut out = crate::output::stdout();
    let _ = reports
        .iter()
        .try_for_each(|r| writeln!(out, "{}", summary_line(r)))
        .and_then(|()| out.flush());
    Ok(if refused {
        ExitCode::from(1)
    } else {
        exit_code(&reports)
    })
}

/// Binds the local API (refusing an exposed address without a token) and serves it until `stop`.
async fn start_api(
    config: &Config,
    store: &Store,
    listen: Option<std::net::SocketAddr>,
    mut stop: crate::sync::StopSignal,
) -> Result<tokio::task::JoinHandle<Result<(), crate::serve::ServeError>>> {
    let addr = listen.unwrap_or(config.serve.listen);
    let token = config.serve.token.clone();
    crate::serve::check_exposure(addr, token.as_ref(), &config.serve.token_env)?;
    let listener = crate::serve::bind(addr).await?;
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!(
        "ghl-mirror API on http://{bound} (HighLevel paths such as /contacts/:id, plus /mirror/status, /mirror/search?q=, /metrics, /health){}",
        if token.is_some() {
            "; bearer token required"
        } else {
            ""
        }
    );
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok(tokio::spawn(crate::serve::serve_with(
        store.clone(),
        token,
        listener,
        shutdown,
        config.serve.timeouts,
    )))
}

async fn run_serve(config: &Config, a: &ServeArgs) -> Result<ExitCode> {
    let store = open_read_only(&config.database)?;
    let stop = stop_on_signals(format!(
        "stopping: no new connections; requests in flight get {} to finish, then every connection is closed (Ctrl-C again to abort)",
        humantime::format_duration(config.serve.timeouts.grace)
    ));
    start_api(config, &store, a.listen, stop).await?.await??;
    Ok(ExitCode::SUCCESS)
}

async fn run_daemon_cmd(config: &Config, a: &DaemonArgs) -> Result<ExitCode> {
    let tokens = auth::tokens(config)?;
    let locations = auth::locations(config, tokens.as_ref()).await?;
    if locations.is_empty() {
        bail!(
            "no location configured: add a [[locations]] block to the config file (see config.example.toml), \
             or set GHL_LOCATION_ID and GHL_TOKEN"
        );
    }
    let store = open_store(&config.database)?;
    let mut clients = Vec::new();
    for (l, c) in authorized_clients(config, &locations, tokens.as_ref()).0 {
        store.ensure_location(&l.id, l.name.as_deref())?;
        clients.push(c);
    }
    if clients.is_empty() {
        bail!("no location can be synced (see above)");
    }
    let schedule = &config.schedule;
    eprintln!(
        "ghl-mirror daemon: {} location(s) into {}; schedules: contacts {:?}, subresources {:?}, businesses {:?}, reconcile {:?}; SIGINT/SIGTERM stops it",
        clients.len(),
        config.database.display(),
        schedule.contacts.as_deref().unwrap_or("off"),
        schedule.subresources.as_deref().unwrap_or("off"),
        schedule.businesses.as_deref().unwrap_or("off"),
        schedule.reconcile.as_deref().unwrap_or("off"),
    );
    let stop = stop_on_signals(SYNC_STOPPING);
    let api = if a.serve || a.listen.is_some() {
        Some(start_api(config, &store, a.listen, stop.clone()).await?)
    } else {
        None
    };
    let on_report: crate::daemon::OnReport = Arc::new(|r: &SyncReport| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", summary_line(r)).and_then(|()| out.flush());
    });
    run_daemon(
        store,
        clients,
        stream_options(config, false),
        schedule,
        stop,
        on_report,
    )
    .await?;
    if let Some(api) = api {
        api.await??;
    }
    eprintln!("ghl-mirror daemon: stopped; every run in flight committed what it had");
    Ok(ExitCode::SUCCESS)
}

/// 1 if any location failed, else 3 if any stopped early or was skipped, else 0.
pub fn exit_code(reports: &[SyncReport]) -> ExitCode {
    if reports.iter().any(|r| r.outcome == Outcome::Failed) {
        ExitCode::from(1)
    } else if reports
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Partial | Outcome::Skipped))
    {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line per run: what it did and what it cost.
pub fn summary_line(r: &SyncReport) -> String {
    let p = &r.progress;
    let mut line = format!(
        "{}: {} sync {} in {:.1}s: {} received ({} new, {} updated, {} unchanged, {} tombstoned), {} requests ({} retries, {} rate-limited)",
        r.location,
        r.mode,
        r.outcome.as_str(),
        r.elapsed.as_secs_f64(),
        p.received,
        p.inserted,
        p.updated,
        p.unchanged,
        p.tombstoned,
        p.requests,
        p.retries,
        p.rate_limited
    );
    if let Some(d) = p.daily_remaining {
        line.push_str(&format!(", daily quota left {d}"));
    }
    if p.warnings > 0 {
        line.push_str(&format!(
            ", {} field warnings (kept in raw JSON)",
            p.warnings
        ));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!(": {e}"));
    }
    line
}

async fn run_status(config: &Config) -> Result<ExitCode> {
    let store = open_read_only(&config.database)?;
    let rows = store.status()?;
    let mut out = crate::output::stdout();
    if rows.is_empty() {
        writeln!(
            out,
            "{}: no locations synced yet",
            config.database.display()
        )?;
    }
    let now = now_ms();
    let mut by_location: Vec<(String, Vec<crate::store::StreamStatus>)> = Vec::new();
    for r in rows {
        match by_location.last_mut() {
            Some((id, list)) if *id == r.location_id => list.push(r),
            _ => by_location.push((r.location_id.clone(), vec![r])),
        }
    }
    let age = |iso: &str| -> Option<String> {
        let t = ms_from_iso(iso)?;
        Some(
            humantime::format_duration(Duration::from_secs(((now - t).max(0) / 1000) as u64))
                .to_string(),
        )
    };
    for (location, streams) in by_location {
        let first = &streams[0];
        let name = first
            .location_name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        writeln!(out, "location {location}{name}: {}", health(&streams))?;
        writeln!(
            out,
            "  requests today: {} (daily quota left: {})",
            first.requests_today,
            first
                .daily_remaining
                .map_or("unknown".into(), |d| d.to_string())
        )?;
        let h = store.holdings(&location)?;
        for s in &streams {
            if s.last_run.is_none() && s.watermark_ms.is_none() && s.stream != "contacts" {
                continue;
            }
            writeln!(out, "  {}:", s.stream)?;
            match s.stream.as_str() {
                "contacts" => {
                    writeln!(
                        out,
                        "    mirrored:       {} live, {} tombstoned",
                        s.live, s.tombstoned
                    )?;
                    writeln!(
                        out,
                        "    watermark:      {}",
                        s.watermark_ms
                            .map_or("none (no sweep completed)".into(), iso_from_ms)
                    )?;
                    if let Some(sw) = &s.sweep_in_progress {
                        writeln!(out, "    in progress:    {sw} (the next run continues it)")?;
                    }
                }
                "subresources" => {
                    writeln!(
                        out,
                        "    mirrored:       {} tasks, {} notes, {} appointments",
                        h.tasks, h.notes, h.appointments
                    )?;
                    for (kind, due, oldest) in &h.freshness {
                        writeln!(
                            out,
                            "    {:<15} {due} contacts due, oldest fetch {}",
                            format!("{}:", kind.as_str()),
                            oldest.as_deref().map_or("never".into(), |t| format!(
                                "{t} ({} ago)",
                                age(t).unwrap_or_default()
                            ))
                        )?;
                    }
                }
                _ => writeln!(
                    out,
                    "    mirrored:       {} businesses, {} business-contact links",
                    h.businesses, h.business_links
                )?,
            }
            match &s.last_run {
                Some(r) => {
                    writeln!(
                        out,
                        "    last run:       #{} {} {} started {} ({} pages, {} received, {} new, {} updated, {} tombstoned, {} requests)",
                        r.id,
                        r.mode,
                        r.outcome,
                        r.started_at,
                        r.pages,
                        r.received,
                        r.inserted,
                        r.updated,
                        r.tombstoned,
                        r.requests
                    )?;
                    if let Some(e) = &r.error {
                        writeln!(out, "    last error:     {e}")?;
                    }
                }
                None => writeln!(out, "    last run:       none")?,
            }
            writeln!(
                out,
                "    last success:   {}",
                match s.last_success_end.as_deref() {
                    Some(t) => format!("{t} ({} ago)", age(t).unwrap_or_default()),
                    None => "never".into(),
                }
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn run_sql(config: &Config, a: &SqlArgs) -> Result<ExitCode> {
    let store = open_read_only(&config.database)?;
    let timeout = a.timeout.unwrap_or(config.sql.timeout);
    let table = store.query_guarded(&a.query, a.limit, timeout).map_err(|e| match e {
        crate::store::StoreError::Sqlite { source, .. } => anyhow::anyhow!(
            "the query failed: {source}. Tables and views are listed by `ghl-mirror sql \"SELECT name, type FROM sqlite_schema\"`"
        ),
        e => e.into(),
    })?;
    let mut out = crate::output::stdout();
    crate::output::write(&mut out, &table, a.format).context("cannot write the results")?;
    out.flush().context("cannot write the results")?;
    if table.truncated {
        eprintln!("(only the first {} rows; raise --limit for more)", a.limit);
    }
    Ok(ExitCode::SUCCESS)
}

/// A location's health from the last run of each stream: the worst of them, with its error.
fn health(streams: &[crate::store::StreamStatus]) -> String {
    let last = |outcome: &str| {
        streams.iter().find_map(|s| {
            s.last_run
                .as_ref()
                .filter(|r| r.outcome == outcome)
                .map(|r| (s.stream.as_str(), r.error.clone().unwrap_or_default()))
        })
    };
    if let Some((stream, e)) = last("failed") {
        format!("FAILING ({stream}: {e})")
    } else if let Some((stream, _)) = last("interrupted") {
        format!("behind ({stream} run was interrupted; the next run resumes it)")
    } else if let Some((stream, e)) = last("partial") {
        format!("behind ({stream}: {e})")
    } else if streams.iter().all(|s| s.last_run.is_none()) {
        "never synced".into()
    } else {
        "ok".into()
    }
}

/// Sandbox settings for `n` locations with predictable ids and tokens.
pub fn sandbox_locations(n: usize, contacts: usize) -> Vec<LocationSeed> {
    (0..n.max(1))
        .map(|i| LocationSeed {
            id: format!("sandboxLocation{:05}", i + 1),
            token: format!("pit-sandbox-token-{}", i + 1),
            contacts,
        })
        .collect()
}

async fn run_sandbox(a: &SandboxArgs) -> Result<ExitCode> {
    // Before the port opens: once it answers, SIGTERM ends the sandbox cleanly.
    let signalled = wait_for_signal();
    let mut cfg = SandboxConfig::new(a.seed, sandbox_locations(a.locations, a.contacts));
    cfg.latency = Duration::from_millis(a.latency_ms);
    cfg.limits = (!a.no_limits).then(RateLimits::default);
    cfg.oauth.access_ttl = a.token_ttl;
    cfg.oauth.refresh_grace = a.refresh_grace;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}; pick another --port", a.port))?;
    let sandbox = Sandbox::start(cfg.clone(), listener).await?;
    let mut banner = format!(
        "HighLevel sandbox listening on {}\nTry it with this config (save as sandbox.toml):\n\n\
         [database]\npath = \"./sandbox-mirror.db\"\n\n[upstream]\nbase_url = \"{}\"\n\n",
        sandbox.base_url(),
        sandbox.base_url()
    );
    if cfg.limits.is_none() {
        // The client paces itself at HighLevel's 100 per 10 s unless told otherwise.
        banner.push_str(
            "# --no-limits: the sandbox does not pace, so neither does the client\n\
             [upstream.rate_limit]\n\
             burst_max = 10000\n\
             interval = \"1s\"\n\
             safety_margin = \"0ms\"\n\n",
        );
    }
    for l in &cfg.locations {
        let var = format!(
            "SANDBOX_TOKEN_{}",
            l.id.trim_start_matches("sandboxLocation")
        );
        banner.push_str(&format!(
            "[[locations]]\nid = \"{}\"\ntoken_env = \"{var}\"   # export {var}={}\n\n",
            l.id, l.token
        ));
    }
    let o = &cfg.oauth;
    banner.push_str(&format!(
        "OAuth app (access tokens live {}, refresh grace {}):\n  \
         client_id     = {}\n  client_secret = {}\n  company_id    = {}\n  app_id        = {}\n  \
         authorize URL = {}/oauth/chooselocation   (approves at once; add ?locationId= to pick a location)\n  \
         token URL     = {}/oauth/token\n\n",
        humantime::format_duration(o.access_ttl),
        humantime::format_duration(o.refresh_grace),
        o.client_id,
        o.client_secret,
        o.company_id,
        o.app_id,
        sandbox.base_url(),
        sandbox.base_url()
    ));
    banner.push_str("Ctrl-C stops it.\n");
    // A closed stdout (e.g. piped into `head`) must not stop the sandbox.
    let mut out = crate::output::stdout();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    signalled.await;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Writes one line of the demo's story to `$out` and shows it at once.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).and_then(|()| $out.flush())?
    };
}

async fn run_demo(a: &DemoArgs) -> Result<ExitCode> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = a
        .keep_db
        .clone()
        .unwrap_or_else(|| tmp.path().join("demo.db"));
    let locations = sandbox_locations(1, a.contacts);
    let loc = locations[0].clone();
    let mut cfg = SandboxConfig::new(42, locations);
    cfg.latency = Duration::from_millis(a.latency_ms);
    cfg.limits = Some(RateLimits::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let t0 = Instant::now();
    let sandbox = Sandbox::start(cfg, listener).await?;
    // Each step is shown as it ends; a reader that is gone ends the demo quietly (cli::run).
    let mut out = crate::output::stdout();
    say!(
        out,
        "1. Started a simulated HighLevel at {} with {} contacts ({} ms latency, real rate limits: 100 requests / 10 s) in {:.1}s",
        sandbox.base_url(),
        a.contacts,
        a.latency_ms,
        t0.elapsed().as_secs_f64()
    );
    let config = Config::from_toml(
        &format!(
            "[database]\npath = {:?}\n[upstream]\nbase_url = {:?}\n[[locations]]\nid = {:?}\ntoken_env = \"GHL_MIRROR_DEMO_TOKEN\"\n",
            db.display().to_string(),
            sandbox.base_url(),
            loc.id
        ),
        &DemoEnv(loc.token.clone()),
    )?;
    let store = open_store(&config.database)?;
    let client = client_for(&config, &config.locations[0], None)?;
    say!(out, "   mirror file: {}", db.display());

    let run = |full: bool| {
        let (store, client, opts) = (store.clone(), client.clone(), sync_options(&config, full));
        let stop = tokio::sync::watch::channel(false).1;
        async move { sync_contacts(&store, &client, &opts, stop, None).await }
    };
    let full = run(false).await;
    say!(out, "2. Full sync:        {}", summary_line(&full));
    let churn = sandbox.churn(&loc.id, 150, 300, 50);
    say!(
        out,
        "3. Churn upstream:   {} contacts created, {} updated, {} deleted",
        churn.created.len(),
        churn.updated.len(),
        churn.deleted.len()
    );
    let incr = run(false).await;
    say!(out, "4. Incremental sync: {}", summary_line(&incr));
    let recon = run(true).await;
    say!(out, "5. Reconciliation:   {}", summary_line(&recon));

    let live = store.live_contact_ids(&loc.id)?;
    let upstream = sandbox.live_contact_ids(&loc.id);
    say!(
        out,
        "6. Check: mirror has {} live contacts, the sandbox has {}: {}",
        live.len(),
        upstream.len(),
        if live == upstream {
            "identical id sets"
        } else {
            "MISMATCH"
        }
    );
    // Sub-resources cost one request per contact and kind; a small budget shows how a run
    // spends it (most recently updated contacts first) and ends cleanly for the next to go on.
    let subs_opts = SubOptions {
        run_requests: DEMO_SUB_BUDGET,
        bulk_tasks: false,
        ..stream_options(&config, false).subs
    };
    let stop = tokio::sync::watch::channel(false).1;
    let subs = sync_subresources(&store, &client, &subs_opts, stop.clone(), None).await;
    say!(
        out,
        "7. Tasks, notes, appointments with a budget of {DEMO_SUB_BUDGET} requests: {}",
        summary_line(&subs)
    );
    let biz_opts = stream_options(&config, false)
        .businesses
        .unwrap_or_default();
    let biz = sync_businesses(&store, &client, &biz_opts, stop.clone()).await;
    crate::sync::index_text(&store, &stop).await?;
    say!(
        out,
        "8. Businesses and their contacts: {}",
        summary_line(&biz)
    );
    say!(
        out,
        "9. Example queries, answered locally with zero API requests:"
    );
    for sql in DEMO_QUERIES {
        let t = Instant::now();
        let res = store.query_table(sql, 5)?;
        say!(
            out,
            "\n   {sql}   -- {:.2} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
        crate::output::write_text(&mut out, &res, "   ")?;
        out.flush()?;
    }
    let api_ok = demo_api(&store, &loc.id, &mut out).await?;
    sandbox.shutdown().await;
    let ok = [&full, &incr, &recon, &biz]
        .iter()
        .all(|r| r.outcome == Outcome::Success)
        && subs.outcome != Outcome::Failed
        && live == upstream
        && api_ok;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Serves the mirror on a free loopback port and reads it the way an integration would:
/// HighLevel's own paths, then the mirror's full-text search. True when every answer is a 200.
async fn demo_api(store: &Store, location: &str, out: &mut impl Write) -> Result<bool> {
    let listener = crate::serve::bind(([127, 0, 0, 1], 0).into()).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve::serve(store.clone(), None, listener, async {
        let _ = rx.await;
    }));
    say!(
        out,
        "\n10. The local API (`ghl-mirror serve`) answering HighLevel's paths at {base}:"
    );
    let sample = store.query_table(
        "SELECT id, email FROM contacts WHERE deleted_at IS NULL AND email IS NOT NULL \
         ORDER BY date_updated_ms DESC LIMIT 1",
        1,
    )?;
    let (id, email) = match sample.rows.first().map(Vec::as_slice) {
        Some([id, email]) => (
            id.as_str().unwrap_or_default().to_string(),
            email.as_str().unwrap_or_default().to_string(),
        ),
        _ => (String::new(), String::new()),
    };
    let http = reqwest::Client::new();
    let search = serde_json::json!({
        "locationId": location, "pageLimit": 3,
        "filters": [{"field": "email", "operator": "eq", "value": email}]
    });
    let word = email
        .split(['@', '.'])
        .next()
        .unwrap_or_default()
        .to_string();
    let calls = [
        ("GET", format!("/contacts/{id}"), None),
        ("GET", format!("/contacts/{id}/notes"), None),
        ("POST", "/contacts/search".to_string(), Some(search)),
        ("GET", format!("/mirror/search?q={word}&limit=3"), None),
    ];
    let mut ok = true;
    for (method, path, body) in calls {
        let t = Instant::now();
        let req = match &body {
            Some(b) => http.post(format!("{base}{path}")).json(b),
            None => http.get(format!("{base}{path}")),
        };
        let resp = req.send().await?;
        let status = resp.status();
        let fresh = resp
            .headers()
            .get("x-mirror-age-seconds")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        let text = resp.text().await?;
        ok &= status.is_success();
        let shown: String = text.chars().take(140).collect();
        say!(
            out,
            "   {method} {path} -> {status} in {:.2} ms (data {fresh} s old)\n      {shown}…",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
    let _ = tx.send(());
    server.await??;
    Ok(ok)
}

/// Requests the demo's sub-resource run may spend (about 15 s at HighLevel's limits).
const DEMO_SUB_BUDGET: u64 = 150;

const DEMO_QUERIES: &[&str] = &[
    "SELECT tag, COUNT(*) AS contacts FROM contact_tags GROUP BY tag ORDER BY contacts DESC",
    "SELECT id, name, email, date_updated FROM contacts WHERE deleted_at IS NULL ORDER BY date_updated_ms DESC",
    "SELECT COUNT(*) AS tombstoned, MAX(deleted_at) AS last_deleted FROM contacts WHERE deleted_at IS NOT NULL",
    "SELECT c.name, t.title, t.due_date, t.completed FROM tasks t JOIN contacts c ON c.location_id = t.location_id AND c.id = t.contact_id WHERE t.deleted_at IS NULL ORDER BY t.due_date_ms",
    "SELECT COUNT(*) AS contacts, SUM(notes_fetched_at IS NOT NULL) AS notes_fetched, SUM(notes_due) AS notes_due FROM contact_freshness",
    "SELECT b.name, COUNT(l.contact_id) AS contacts FROM businesses b LEFT JOIN business_contacts l ON l.location_id = b.location_id AND l.business_id = b.id GROUP BY b.pk ORDER BY contacts DESC",
    "SELECT stream, outcome, mode, pages, received, requests FROM sync_runs ORDER BY id",
];

/// The environment for commands that only read the mirror (`status`): tokens that are not set
/// do not matter.
struct NoTokensNeeded;

impl crate::config::Env for NoTokensNeeded {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnv
            .var(name)
            .or_else(|| (name != crate::config::DEFAULT_LOCATION_ENV).then(String::new))
    }
}

struct DemoEnv(String);

impl crate::config::Env for DemoEnv {
    fn var(&self, name: &str) -> Option<String> {
        (name == "GHL_MIRROR_DEMO_TOKEN").then(|| self.0.clone())
    }
}

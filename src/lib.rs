//! ghl-mirror: a local-first offline mirror of HighLevel (GoHighLevel) contacts in SQLite.
//!
//! # Code map
//! - `config`   raw TOML + environment -> validated `Config` (URLs, durations, `SecretString`s).
//! - `model`    our vocabulary: `Contact`, `SortKey`, `Sweep`, `StreamState`, `RunProgress`;
//!   `model::query` is what a contact query asks for (`ContactQuery`: filters, sort, cursor). No I/O.
//! - `upstream` the HighLevel client: headers, pacing (`limiter`), retries, errors; `wire` owns
//!   HighLevel's JSON.
//! - `store`    SQLite: open + migrate (`migrations/`), page commits with their cursor,
//!   tombstones, run history, read queries (`store::read` compiles a `ContactQuery` to SQL and
//!   runs full-text search; `store::listing` streams tasks, notes and appointments;
//!   `store::open` tells a mirror from another file and opens one read-only for the reading
//!   commands; `store::guard` is `sql`'s authorizer and time limit);
//!   `store::tokens` is the OAuth token store, a separate owner-only file.
//! - `auth`     OAuth tokens that never lock the user out: refresh single-flight across tasks
//!   and processes, durable before use, crash recovery, agency-minted location tokens; it
//!   implements `upstream::TokenSource`.
//! - `sync`     the engines: contacts (plans full / incremental / legacy sweeps, walks search from
//!   both ends, commits page by page, reconciles deletes), sub-resources (tasks, notes,
//!   appointments within a request budget) and businesses.
//! - `daemon`   jobs (which streams a run covers) and the cron scheduler that runs them.
//! - `output`   query results as a text table, JSON, NDJSON or CSV.
//! - `serve`    the local HTTP API (axum): HighLevel's read paths and JSON shapes answered from
//!   the store, `/mirror/*`, `/metrics`, `/health`; `serve::params` validates HighLevel's inputs.
//! - `sandbox`  a simulated HighLevel API on loopback for the demo, tests and benchmarks.
//! - `cli`      clap commands; the composition root that wires the parts together
//!   (`cli::query`: the read commands `contacts`, `tasks`, `notes`, `appointments`, `export`;
//!   `cli::progress`: what `sync` shows while it works, bars on a terminal, plain lines in a log).
//!
//! # Architecture invariants
//! - Dependencies point one way: `upstream` and `store` know `model` only; `sync` and `auth`
//!   use both (`upstream` gets its OAuth tokens through the `TokenSource` trait, so it never
//!   knows `auth`);
//!   `serve` reads `store` (never `upstream`: the local API makes no upstream calls); only `cli`
//!   knows everything. `sandbox` knows nothing of the rest (it is the other side of
//!   the wire, with its own copy of HighLevel's shapes).
//! - Only `upstream` knows HighLevel's JSON on the way in, only `serve` on the way out (it
//!   serves the stored raw JSON, reshaped as each route returns it), and only `store` knows
//!   SQL. Unknown upstream fields are kept in the raw JSON, never dropped.
//! - The local API serves only live rows: a tombstoned contact answers like an unknown one.
//! - A page's rows and the cursor after it commit in one transaction: a crash at any moment
//!   loses nothing and duplicates nothing.
//! - Deletes are inferred only from a *complete* reconciling sweep; an interrupted sweep never
//!   tombstones anything.
//! - Secrets live in `SecretString` and never reach logs, `Debug` output or errors.

pub mod auth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod model;
pub mod output;
pub mod sandbox;
pub mod serve;
pub mod store;
pub mod sync;
pub mod upstream;

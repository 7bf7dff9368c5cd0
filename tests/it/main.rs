//! The one integration-test binary: every test owns its sandbox (port 0) and temp database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests assert by unwrapping

mod auth;
mod cli;
mod errors;
mod kit;
mod pipes;
mod portable;
mod query_cli;
mod read_only;
mod sandbox_cli;
mod sdk;
mod serve;
mod serve_limits;
mod subs;
mod sync;

//! The one integration-test binary: every test owns its sandbox (port 0) and temp database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests assert by unwrapping

mod auth;
mod cli;
mod errors;
mod kit;
mod portable;
mod query_cli;
mod serve;
mod subs;
mod sync;

//! Catching the full-text index up: the store marks every contact whose searchable text changed
//! (in the same transaction as the change); this indexes the marked contacts in batches, off the
//! async workers, after a run's page commits rather than inside them.

use super::StopSignal;
use crate::store::{Store, StoreError};
use std::time::Instant;

/// Contacts indexed per transaction.
const BATCH: usize = 2_000;

/// Indexes every marked contact, batch by batch, until none is left or `stop` is raised (the
/// rest stays marked for the next call). Returns how many were indexed.
pub async fn index_text(store: &Store, stop: &StopSignal) -> Result<u64, StoreError> {
    let started = Instant::now();
    let mut done = 0u64;
    while !*stop.borrow() {
        let s = store.clone();
        let n = tokio::task::spawn_blocking(move || s.index_text(BATCH))
            .await
            .unwrap_or(Ok(0))?;
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    if done > 0 {
        tracing::info!(
            contacts = done,
            seconds = started.elapsed().as_secs_f64(),
            "full-text index caught up"
        );
    }
    Ok(done)
}

//! Cross-process exclusion of runs: one lock file per (location, stream) beside the database,
//! held with an OS file lock (`flock`) that the kernel releases when the process ends, even on
//! SIGKILL, so a crash never leaves a stale lock behind.

use super::{Store, StoreError};
use crate::model::Stream;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

/// Held while a run of one (location, stream) is in progress; released on drop.
#[derive(Debug)]
pub struct StreamLock {
    _file: File,
    pub path: PathBuf,
}

impl Store {
    /// The lock file of a (location, stream): `<database>.<location>.<stream>.lock`.
    pub fn lock_path(&self, location: &str, stream: Stream) -> PathBuf {
        let safe: String = location
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = self.path().as_os_str().to_owned();
        name.push(format!(".{safe}.{}.lock", stream.as_str()));
        PathBuf::from(name)
    }

    /// Takes the lock of a (location, stream) if no other run holds it; `None` when one does.
    pub fn try_lock_stream(
        &self,
        location: &str,
        stream: Stream,
    ) -> Result<Option<StreamLock>, StoreError> {
        let path = self.lock_path(location, stream);
        let lock_err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StreamLock { _file: file, path })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(lock_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let held = store.try_lock_stream("loc1", Stream::Contacts).unwrap();
        assert!(held.is_some());
        assert!(
            store
                .try_lock_stream("loc1", Stream::Contacts)
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .try_lock_stream("loc2", Stream::Contacts)
                .unwrap()
                .is_some()
        );
        drop(held);
        assert!(
            store
                .try_lock_stream("loc1", Stream::Contacts)
                .unwrap()
                .is_some()
        );
    }
}

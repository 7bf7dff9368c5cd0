//! Cross-process exclusion of runs: one lock file per (location, stream) beside the database,
//! held with an OS file lock (`flock`) that the kernel releases when the process ends, even on
//! SIGKILL, so a crash never leaves a stale lock behind.

use super::{Store, StoreError};
use crate::model::Stream;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held while a run of one (location, stream) is in progress; released on drop.
#[derive(Debug)]
pub struct StreamLock {
    _file: File,
    pub path: PathBuf,
}

impl Store {
    /// The lock file of a (location, stream): `<database>.<location>.<stream>.lock`.
    pub fn lock_path(&self, location: &str, stream: Stream) -> PathBuf {
        lock_path(self.path(), &format!("{location}.{}", stream.as_str()))
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
        let file = open_lock_file(&path).map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StreamLock { _file: file, path })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(lock_err(e)),
        }
    }
}

/// `<base>.<name>.lock`, with every character of `name` but letters, digits, `-`, `_` and `.`
/// replaced by `_`.
pub(super) fn lock_path(base: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut path = base.as_os_str().to_owned();
    path.push(format!(".{safe}.lock"));
    PathBuf::from(path)
}

/// Opens (creating) a lock file; the OS lock on it is taken by the caller, blocking or not.
pub(super) fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
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

//! The lock that says which sparekey process has a store open: a file `<store>.lock` next to
//! the store's directory (`store.lock` in the data dir), locked with the OS's advisory file lock
//! for as long as the store is open, and holding that process's id so that the "in use" error
//! can name it. Deciding on this file, rather than on the wording of sled's own lock error,
//! keeps the answer sparekey's; sled's lock stays underneath as a second guard.
//!
//! Owns only that file. It must never delete it: a process that removed the file while another
//! waited for it would let two processes lock two different files for one store.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::core::store::StoreError;

/// The held lock of one store: released when dropped (the file stays).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Where the lock of the store at `store` lives: beside it, named after it.
pub(crate) fn lock_path(store: &Path) -> PathBuf {
    let mut name: OsString = store.file_name().unwrap_or("store".as_ref()).into();
    name.push(".lock");
    store.with_file_name(name)
}

/// Takes the lock of the store at `store` without waiting, and writes this process's id into
/// it. Fails with [`StoreError::Busy`] (naming the holder's id when it can be read) if another
/// open store holds it, in this process or another.
pub(crate) fn try_lock(store: &Path) -> Result<StoreLock, StoreError> {
    let path = lock_path(store);
    let fail = |e: std::io::Error| {
        StoreError::Io(format!(
            "cannot lock the store at {}: {} ({e})",
            store.display(),
            path.display()
        ))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    // Owner-only whatever the umask; an existing file keeps its mode (it holds only a pid).
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(fail)?;
            writeln!(file, "{}", std::process::id()).map_err(fail)?;
            Ok(StoreLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => Err(StoreError::Busy {
            path: store.display().to_string(),
            pid: holder(&mut file),
        }),
        Err(TryLockError::Error(e)) => Err(fail(e)),
    }
}

/// The process id the holder wrote, if it has written it yet.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

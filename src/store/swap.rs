//! Putting a restored store in the place of the live one: the new store is built and synced
//! under `<store>.restoring`, renamed whole to `<store>.restored` (it is then complete), and
//! installed by two renames: the old store aside to `<store>.replaced-<UTC time>`, the new one
//! into place. Whoever holds the store's lock (see [`lock`](crate::store::lock)) may do this;
//! [`SledStore::open`](crate::store::sled_store::SledStore::open) finishes an install a killed
//! process left half done, so a kill at any moment leaves the old store or the new one in place,
//! never none and never an empty one. Must never delete a store.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::core::clock::UnixTime;

fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = store.file_name().unwrap_or("store".as_ref()).into();
    name.push(suffix);
    store.with_file_name(name)
}

/// Where a restore builds the new store (incomplete while it has this name).
pub(crate) fn staging_path(store: &Path) -> PathBuf {
    sibling(store, ".restoring")
}

/// Where a complete, synced new store waits to be installed.
pub(crate) fn restored_path(store: &Path) -> PathBuf {
    sibling(store, ".restored")
}

/// A name for the replaced store that no other file has: `<store>.replaced-<ISO UTC time>`,
/// with `-2`, `-3`, ... after it if that is taken.
fn aside_path(store: &Path, now: UnixTime) -> PathBuf {
    // ISO 8601 basic format: no ':' in a file name.
    let stamp = crate::core::time_text::utc_iso(now).replace([':', '-'], "");
    let first = sibling(store, &format!(".replaced-{stamp}"));
    let mut candidate = first.clone();
    let mut n = 2;
    while candidate.symlink_metadata().is_ok() {
        candidate = sibling(store, &format!(".replaced-{stamp}-{n}"));
        n += 1;
    }
    candidate
}

/// Syncs a directory, so the renames in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Installs `<store>.restored` as `store`, moving an existing store aside; returns where the
/// old one went. The caller holds the store's lock.
pub(crate) fn install(store: &Path, now: UnixTime) -> std::io::Result<Option<PathBuf>> {
    let parent = store.parent().unwrap_or(Path::new("."));
    let aside = match store.symlink_metadata() {
        Ok(_) => {
            let aside = aside_path(store, now);
            std::fs::rename(store, &aside)?;
            Some(aside)
        }
        Err(_) => None,
    };
    std::fs::rename(restored_path(store), store)?;
    sync_dir(parent)?;
    Ok(aside)
}

/// Finishes an install that a stopped restore left: a complete `<store>.restored` is put in
/// place (the restore was asked for and had finished building). The caller holds the lock.
pub(crate) fn finish_interrupted(store: &Path, now: UnixTime) -> std::io::Result<Option<PathBuf>> {
    if restored_path(store).is_dir() {
        install(store, now)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aside_names_are_iso_times_and_never_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let first = aside_path(&store, 1_795_867_200);
        assert!(
            first.ends_with("store.replaced-20261128T120000Z"),
            "{first:?}"
        );
        std::fs::create_dir(&first).unwrap();
        let second = aside_path(&store, 1_795_867_200);
        assert!(
            second.ends_with("store.replaced-20261128T120000Z-2"),
            "{second:?}"
        );
    }

    #[test]
    fn every_stop_between_the_renames_leaves_a_store_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let put = |path: &Path, what: &str| {
            std::fs::create_dir_all(path).unwrap();
            std::fs::write(path.join("which"), what).unwrap();
        };
        let which = || std::fs::read_to_string(store.join("which")).unwrap();
        // Stopped before the old store was moved: the new one is installed, the old kept.
        put(&store, "old");
        put(&restored_path(&store), "new");
        let aside = finish_interrupted(&store, 0).unwrap().unwrap();
        assert_eq!(which(), "new");
        assert_eq!(std::fs::read_to_string(aside.join("which")).unwrap(), "old");
        // Stopped between the two renames: the new one is put in place.
        put(&restored_path(&store), "newer");
        std::fs::rename(&store, dir.path().join("gone")).unwrap();
        assert_eq!(finish_interrupted(&store, 0).unwrap(), None);
        assert_eq!(which(), "newer");
        // Nothing pending: nothing happens.
        assert_eq!(finish_interrupted(&store, 0).unwrap(), None);
        assert_eq!(which(), "newer");
    }
}

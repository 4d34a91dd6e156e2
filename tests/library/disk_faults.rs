//! Disk faults on a real file system: a full disk and a read-only data dir, simulated with a
//! small tmpfs mounted for the test. This needs root, as CI has; elsewhere each test prints
//! `skipped: needs root to mount a tmpfs: <its name>` and checks nothing, and under
//! `SPAREKEY_FULL_TESTS=1` (CI) a skip fails instead. Each must give one clear error, no panic,
//! and a store that is consistent once the fault is gone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::support::*;
use sparekey::app::Paths;
use sparekey::core::clock::ManualClock;
use sparekey::core::error::{Error, ErrorKind, RejectReason};
use sparekey::core::service::Config;
use sparekey::core::service::Service;
use sparekey::core::store::StoreError;
use sparekey::core::throttle::ThrottlePolicy;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size`, or `None` (said visibly by [`skip`]) where none can be mounted.
    fn new(size: &str) -> Option<Self> {
        if !needs_root("mount a tmpfs") {
            return None;
        }
        let dir = tempfile::tempdir().ok()?.keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Self(dir))
        } else {
            // Root without the right to mount, as in some containers.
            skip("root, but mounting a tmpfs failed");
            // `keep()` gave up the tempdir's own clean-up.
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn paths(root: &Path, key_dir: &Path) -> Paths {
    Paths::resolve(Some(root.join("data")), Some(key_dir.join("key"))).unwrap()
}

fn open(paths: &Paths, clock: &Arc<ManualClock>) -> Result<Service, Error> {
    open_disk(paths, clock, 31)
}

/// Fills the file system until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).and_then(|_| file.sync_all()).is_ok() {}
    filler
}

#[test]
fn a_full_disk_is_one_clear_error_and_nothing_is_lost() {
    let Some(mount) = Mount::new("8m") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let paths = paths(&mount.0, keys.path());
    let clock = Arc::new(ManualClock::new(T0));
    let service = open(&paths, &clock).unwrap();
    let (_, codes) = enrolled(&service, &clock, "alice");
    service.login("alice", PASSWORD, Some(&codes[0])).unwrap();

    let filler = fill(&mount.0);
    // Keep trying until sled's buffers are exhausted too; every answer is an error or a
    // success, never a panic, and an error is the store's kind.
    let mut saw_store_error = false;
    let mut accepted = vec![codes[0].clone()];
    for code in &codes[1..] {
        match service.login("alice", PASSWORD, Some(code)) {
            Ok(_) => accepted.push(code.clone()),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Store, "{e}");
                assert!(
                    matches!(e, Error::Store(StoreError::Unavailable(_))),
                    "a full disk is Unavailable, not a generic I/O error: {e:?}"
                );
                assert!(e.to_string().contains("No space left on device"), "{e}");
                assert!(e.to_string().lines().count() == 1);
                saw_store_error = true;
                break;
            }
        }
    }
    assert!(saw_store_error, "the disk never filled up");
    drop(service);

    std::fs::remove_file(filler).unwrap();
    let service = open(&paths, &clock).expect("the store opens once space is back");
    for code in &accepted {
        let err = service
            .login("alice", PASSWORD, Some(code))
            .expect_err("accepted twice");
        assert_eq!(reason(err), RejectReason::BackupCodeAlreadyUsed);
        service.unlock("alice").unwrap();
    }
    // Every accepted code stays used. The one whose login failed on the full disk may or may not
    // have been written before the error; the codes after it were never tried.
    let failed = &codes[accepted.len()];
    let status = service.code_status("alice").unwrap();
    assert!(status.remaining <= 10 - accepted.len(), "{status:?}");
    assert!(status.remaining >= 10 - accepted.len() - 1, "{status:?}");
    // The failed one is whatever the count says it is: still usable, or used.
    if status.remaining == 10 - accepted.len() {
        service
            .login("alice", PASSWORD, Some(failed))
            .expect("a code not written as used still logs in");
    } else {
        let err = service
            .login("alice", PASSWORD, Some(failed))
            .expect_err("a code written as used is refused");
        assert_eq!(reason(err), RejectReason::BackupCodeAlreadyUsed);
        service.unlock("alice").unwrap();
    }
    // A code never tried still logs in.
    if let Some(untried) = codes.get(accepted.len() + 1) {
        service
            .login("alice", PASSWORD, Some(untried))
            .expect("an untried code still logs in");
    }
}

#[test]
fn on_a_full_disk_nothing_is_verified_and_every_answered_guess_was_counted() {
    let Some(mount) = Mount::new("8m") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let paths = paths(&mount.0, keys.path());
    let clock = Arc::new(ManualClock::new(T0));
    // No delay and no lock in reach, so every guess until the disk is full is verified.
    let config = || Config {
        throttle: ThrottlePolicy {
            free_failures: 10_000,
            lock_after: 10_000,
            ..ThrottlePolicy::default()
        },
        ..test_config()
    };
    let open = || {
        sparekey::app::open_with(
            &paths,
            config(),
            clock.clone(),
            Box::new(sparekey::core::entropy::SeededEntropy::new(32)),
        )
    };
    let service = open().unwrap();
    service.create_account("bob", PASSWORD).unwrap();

    let filler = fill(&mount.0);
    let mut answered = 0;
    let mut refused = None;
    for _ in 0..5_000 {
        match service.login("bob", "a wrong guess", None) {
            Err(Error::Rejected(_)) => answered += 1,
            Err(e @ Error::Store(_)) => {
                refused = Some(e);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert!(
        matches!(refused, Error::Store(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    // The store cannot count an attempt any more: the right password and a wrong one get the
    // same answer, and neither is checked.
    let hashes = service.hash_evaluations();
    let right = service.login("bob", PASSWORD, None).unwrap_err();
    let wrong = service.login("bob", "a wrong guess", None).unwrap_err();
    assert_eq!(right, wrong);
    assert!(
        matches!(right, Error::Store(StoreError::Unavailable(_))),
        "{right:?}"
    );
    assert_eq!(service.hash_evaluations(), hashes, "no Argon2id was spent");
    drop(service);

    std::fs::remove_file(filler).unwrap();
    let service = open().expect("the store opens once space is back");
    let counted = service.account_summary("bob").unwrap().consecutive_failures as usize;
    assert!(
        counted >= answered,
        "every guess that got an answer was counted first: {counted} < {answered}"
    );
    eprintln!("{answered} guesses answered before the disk was full, {counted} counted");
}

#[test]
fn a_read_only_data_dir_is_one_clear_error() {
    let Some(mount) = Mount::new("16m") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let paths = paths(&mount.0, keys.path());
    let clock = Arc::new(ManualClock::new(T0));
    drop(open(&paths, &clock).unwrap());
    mount.remount("ro");
    let err = open(&paths, &clock).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("Read-only"), "{err}");
    mount.remount("rw");
    assert!(open(&paths, &clock).is_ok());
}

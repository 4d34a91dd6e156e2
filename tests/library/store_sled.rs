//! The sled store under the service: atomic single use under threads, exact failure counts,
//! throttling that survives a restart, schema and key checks, permissions.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::*;
use sparekey::app::{self, Paths};
use sparekey::core::audit::AuditKind;
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::error::{Error, ErrorKind};
use sparekey::core::store::StoreError;
use sparekey::store::sled_store::SledStore;

fn paths(dir: &tempfile::TempDir) -> Paths {
    Paths::resolve(
        Some(dir.path().join("data")),
        Some(dir.path().join("config/key")),
    )
    .unwrap()
}

fn race<T: Send>(threads: usize, f: impl Fn() -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn one_backup_code_redeemed_by_many_threads_succeeds_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let service = open_disk(&paths(&dir), &clock, 1).unwrap();
    let (_, codes) = enrolled(&service, &clock, "alice");
    let results = race(8, || service.login("alice", PASSWORD, Some(&codes[4])));
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    // The losers are refused as replays, or, once five have failed, by the throttle.
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e.kind(), ErrorKind::Rejected | ErrorKind::Throttled)),
        "{results:?}"
    );
    assert_eq!(service.code_status("alice").unwrap().remaining, 9);
    // The one spend and its event are one transaction: exactly one event, for that slot.
    let used: Vec<_> = service
        .audit_log(Some("alice"), 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, AuditKind::BackupCodeUsed { .. }))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        used,
        [AuditKind::BackupCodeUsed {
            slot: 4,
            remaining: 9
        }]
    );
}

#[test]
fn one_totp_step_accepted_once_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let service = open_disk(&paths(&dir), &clock, 2).unwrap();
    let (secret, _) = enrolled(&service, &clock, "bob");
    let code = code_for(&secret, T0 + 30);
    let results = race(8, || service.login("bob", PASSWORD, Some(&code)));
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
}

#[test]
fn parallel_failures_are_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let service = open_disk(&paths(&dir), &clock, 3).unwrap();
    service.create_account("carol", PASSWORD).unwrap();
    // Four at once stay under the free-failure limit, so none is refused by the gate.
    let results = race(4, || service.login("carol", "not the password", None));
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Rejected)
    );
    assert_eq!(
        service
            .account_summary("carol")
            .unwrap()
            .consecutive_failures,
        4
    );
}

#[test]
fn throttling_and_consumption_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    let codes = {
        let service = open_disk(&paths, &clock, 4).unwrap();
        let (_, codes) = enrolled(&service, &clock, "dan");
        service.login("dan", PASSWORD, Some(&codes[0])).unwrap();
        for _ in 0..5 {
            service
                .login("dan", "not the password", Some("000000"))
                .unwrap_err();
        }
        codes
    };
    let service = open_disk(&paths, &clock, 5).unwrap();
    let r = service.login("dan", PASSWORD, Some(&codes[1]));
    assert!(matches!(r, Err(Error::Throttled { .. })), "{r:?}");
    clock.advance(31);
    assert!(
        service.login("dan", PASSWORD, Some(&codes[0])).is_err(),
        "a used code stays used"
    );
    service.unlock("dan").unwrap();
    assert_eq!(
        service
            .login("dan", PASSWORD, Some(&codes[1]))
            .unwrap()
            .remaining_codes,
        8
    );
}

#[test]
fn a_second_opener_is_refused_naming_the_holder_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    std::fs::create_dir_all(&paths.data_dir).unwrap();
    let held = SledStore::open(&paths.store, Duration::ZERO).unwrap();
    let err = SledStore::open(&paths.store, Duration::from_millis(200)).unwrap_err();
    let pid = std::process::id();
    assert_eq!(
        err,
        StoreError::Busy {
            path: paths.store.display().to_string(),
            pid: Some(pid),
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the store at {} is in use by sparekey process {pid}",
            paths.store.display()
        )
    );
    drop(held);
    let reopened = SledStore::open(&paths.store, Duration::ZERO);
    assert!(reopened.is_ok(), "{reopened:?}");
}

/// The lock is sparekey's own file beside the store, not sled's lock: a holder of that file
/// alone (here this test, standing in for another process) keeps the store closed to others.
#[test]
fn the_store_lock_file_alone_decides_that_the_store_is_in_use() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    drop(SledStore::open(&store, Duration::ZERO).unwrap());
    let lock_path = dir.path().join("store.lock");
    let mut holder = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.try_lock().unwrap();
    holder.set_len(0).unwrap();
    writeln!(holder, "4242").unwrap();
    let err = SledStore::open(&store, Duration::from_millis(100)).unwrap_err();
    assert_eq!(
        err,
        StoreError::Busy {
            path: store.display().to_string(),
            pid: Some(4242),
        }
    );
    drop(holder);
    drop(SledStore::open(&store, Duration::ZERO).unwrap());
}

/// The lock file is created owner-only whatever the umask, holds the holder's pid, and stays
/// in place when the store closes (deleting it could let two processes lock two files).
#[test]
fn the_store_lock_file_is_private_names_its_holder_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let lock_path = dir.path().join("store.lock");
    let held = SledStore::open(&store, Duration::ZERO).unwrap();
    let mode = std::fs::metadata(&lock_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        format!("{}\n", std::process::id())
    );
    drop(held);
    assert!(lock_path.exists());
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    std::fs::create_dir_all(&paths.data_dir).unwrap();
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        db.insert("schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(&paths.store, Duration::ZERO).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade sparekey"));
    let db = SledStore::raw_open(&paths.store).unwrap();
    assert_eq!(
        db.get("schema_version").unwrap().unwrap().as_ref(),
        &99u32.to_be_bytes()
    );
}

#[test]
fn key_file_is_private_and_bound_to_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    drop(open_disk(&paths, &clock, 6).unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&paths.key_file), 0o600);
    assert_eq!(mode(&paths.data_dir), 0o700);
    let original = std::fs::read(&paths.key_file).unwrap();

    // Another key for the same store: one clear error, nothing rewritten.
    std::fs::write(&paths.key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let err = open_disk(&paths, &clock, 7).unwrap_err();
    assert!(
        err.to_string().contains("does not belong to this store"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Store);

    // A missing key for a store that has one: refused, and no new key left behind.
    std::fs::remove_file(&paths.key_file).unwrap();
    let err = open_disk(&paths, &clock, 8).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
    assert!(!paths.key_file.exists());

    // Put back readable by others: refused with the fix, until it is private again.
    std::fs::write(&paths.key_file, &original).unwrap();
    std::fs::set_permissions(&paths.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = open_disk(&paths, &clock, 9).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&paths.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(open_disk(&paths, &clock, 10).is_ok());
}

#[test]
fn nothing_secret_is_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    let (secret, codes) = {
        let service = open_disk(&paths, &clock, 10).unwrap();
        enrolled(&service, &clock, "erin")
    };
    let mut bytes = Vec::new();
    for entry in walk(&paths.data_dir) {
        bytes.extend(std::fs::read(entry).unwrap());
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(secret.as_bytes()), "raw TOTP secret on disk");
    assert!(!contains(secret.to_base32().as_bytes()));
    assert!(!contains(PASSWORD.as_bytes()));
    for code in &codes {
        assert!(!contains(code.replace('-', "").as_bytes()));
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

#[test]
fn the_account_list_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let service = open_disk(&paths(&dir), &clock, 11).unwrap();
    let (_, codes) = enrolled(&service, &clock, "fred");
    service.create_account("gina", PASSWORD).unwrap();
    service.login("fred", PASSWORD, Some(&codes[0])).unwrap();
    service.login("gina", "not the password", None).unwrap_err();
    let list = service.list_accounts().unwrap();
    let names: Vec<_> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fred", "gina"]);
    assert_eq!((list[0].remaining_codes, list[0].total_codes), (9, 10));
    assert!(
        list[0].two_factor && list[0].needs_attention,
        "last login used a backup code"
    );
    assert_eq!(list[1].consecutive_failures, 1);
    service.remove_account("gina").unwrap();
    assert_eq!(service.list_accounts().unwrap().len(), 1);
}

#[test]
fn the_issuer_stays_with_the_authenticator() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    let code = {
        let config = sparekey::core::service::Config {
            issuer: "Acme VPN".into(),
            ..test_config()
        };
        let service = app::open_with(
            &paths,
            config,
            clock.clone(),
            Box::new(SeededEntropy::new(12)),
        )
        .unwrap();
        service.create_account("hana", PASSWORD).unwrap();
        let enrollment = service.begin_enrollment("hana", None).unwrap();
        assert!(enrollment.otpauth_uri.contains("issuer=Acme%20VPN"));
        drop(service);
        // Confirmed by a run with the default issuer: the pending one's issuer wins.
        let service = open_disk(&paths, &clock, 13).unwrap();
        let issued = service
            .confirm_enrollment("hana", &code_for(&enrollment.secret, T0))
            .unwrap();
        assert_eq!(issued.issuer, "Acme VPN");
        issued.codes[0].display().to_string()
    };
    let service = open_disk(&paths, &clock, 14).unwrap();
    let proof = service.step_up("hana", PASSWORD, &code).unwrap();
    assert_eq!(
        service.regenerate_codes("hana", &proof).unwrap().issuer,
        "Acme VPN"
    );
}

#[test]
fn accounts_page_by_page_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let sled = open_disk(&paths(&dir), &clock, 15).unwrap();
    let (memory, _) = memory_service(15);
    for service in [&sled, &memory] {
        for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
            service.create_account(name, PASSWORD).unwrap();
        }
        let names = |after: Option<&str>, limit| -> Vec<String> {
            service
                .list_accounts_page(after, limit)
                .unwrap()
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(names(None, 2), ["alpha", "bravo"]);
        assert_eq!(names(Some("bravo"), 2), ["charlie", "delta"]);
        assert_eq!(names(Some("delta"), 10), ["echo"]);
        assert_eq!(names(Some("echo"), 10), Vec::<String>::new());
        assert_eq!(
            names(Some("b"), 1),
            ["bravo"],
            "after a name that is not an account"
        );
    }
}

#[test]
fn the_audit_log_is_bounded_to_its_newest_events() {
    use sparekey::core::audit::{AuditEvent, AuditKind};
    use sparekey::core::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("store"), Duration::ZERO).unwrap();
    for i in 0..1_200 {
        let event = AuditEvent {
            at: i,
            account: format!("a{}", i % 3),
            kind: AuditKind::Unlocked,
        };
        store.append_audit(&event).unwrap();
    }
    store.prune_audit(500).unwrap();
    let events = store.audit_events(None, 10_000).unwrap();
    assert_eq!(events.len(), 500);
    assert_eq!(
        (events[0].at, events[499].at),
        (700, 1_199),
        "the oldest went first"
    );
    assert_eq!(
        store
            .audit_events(Some("a1"), 3)
            .unwrap()
            .iter()
            .map(|e| e.at)
            .collect::<Vec<_>>(),
        [1_192, 1_195, 1_198]
    );
}

/// Stores written before sparekey numbered its audit events itself hold them under ids from
/// sled's `generate_id`, which jump by millions at every restart: new events must still come
/// after the newest of those, in order, and keep counting from there after a reopen.
#[test]
fn new_audit_events_follow_those_under_older_ids() {
    use sparekey::core::audit::{AuditEvent, AuditKind};
    use sparekey::core::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let event = |at| AuditEvent {
        at,
        account: "old".into(),
        kind: AuditKind::Unlocked,
    };
    {
        // What an older sparekey left: events under ids of a few restarts in.
        let store = SledStore::open(&path, Duration::ZERO).unwrap();
        drop(store);
        let db = SledStore::raw_open(&path).unwrap();
        let audit = db.open_tree("audit").unwrap();
        for (id, at) in [(2_000_000u64, 1), (4_000_003, 2), (6_000_001, 3)] {
            audit
                .insert(id.to_be_bytes(), sparekey::store::encode(&event(at)))
                .unwrap();
        }
        db.flush().unwrap();
    }
    for at in 4..=5 {
        let store = open_store(&path).unwrap();
        store.append_audit(&event(at)).unwrap();
    }
    let store = open_store(&path).unwrap();
    let ats: Vec<i64> = store
        .audit_events(None, 100)
        .unwrap()
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(ats, [1, 2, 3, 4, 5]);
    drop(store);
    let ids = |path: &std::path::Path| -> Vec<u64> {
        let db = SledStore::raw_open(path).unwrap();
        db.open_tree("audit")
            .unwrap()
            .iter()
            .keys()
            .map(|k| u64::from_be_bytes(k.unwrap().as_ref().try_into().unwrap()))
            .collect()
    };
    assert_eq!(
        ids(&path),
        [2_000_000, 4_000_003, 6_000_001, 6_000_002, 6_000_003]
    );

    // The stored next number, not the newest key, says where numbering goes on (the newest
    // event may have been removed), unless an older sparekey wrote past it since.
    {
        let db = SledStore::raw_open(&path).unwrap();
        db.open_tree("audit")
            .unwrap()
            .remove(6_000_003u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    open_store(&path).unwrap().append_audit(&event(6)).unwrap();
    {
        let db = SledStore::raw_open(&path).unwrap();
        db.open_tree("audit")
            .unwrap()
            .insert(
                9_000_000u64.to_be_bytes(),
                sparekey::store::encode(&event(7)),
            )
            .unwrap();
        db.flush().unwrap();
    }
    open_store(&path).unwrap().append_audit(&event(8)).unwrap();
    assert_eq!(
        ids(&path),
        [
            2_000_000, 4_000_003, 6_000_001, 6_000_002, 6_000_004, 9_000_000, 9_000_001
        ]
    );
}

/// sled writes a page too large for a quarter of a log segment to its own file under `blobs/`;
/// sparekey's sled syncs that file before the log can point at it (vendor/sled/PATCHES.md).
/// A value of 40 KiB takes that path: it must come back intact after a reopen.
#[test]
fn a_page_stored_as_a_blob_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let value: Vec<u8> = (0..40 * 1024).map(|i| (i % 251) as u8).collect();
    {
        let db = SledStore::raw_open(&store).unwrap();
        db.insert(b"large", value.as_slice()).unwrap();
        db.flush().unwrap();
    }
    let blobs = std::fs::read_dir(store.join("blobs")).unwrap().count();
    assert!(blobs > 0, "the value went to a blob file");
    let db = SledStore::raw_open(&store).unwrap();
    assert_eq!(
        db.get(b"large").unwrap().unwrap().as_ref(),
        value.as_slice()
    );
}

/// sled writes a new snapshot as `snap.N.generating` and renames it once synced. A process
/// killed before the rename leaves that file behind, and it sorts after the last complete
/// snapshot: sled read it as the newest and refused a half-written one as corruption, so the
/// store would not open again. sparekey's sled ignores it (vendor/sled/PATCHES.md, patch 4)
/// and removes it with the next snapshot.
#[test]
fn a_snapshot_left_half_written_by_a_killed_process_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    {
        let db = SledStore::raw_open(&store).unwrap();
        db.insert(b"kept", b"value").unwrap();
        db.flush().unwrap();
    }
    let stale = store.join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&stale, b"half").unwrap();
    {
        let db = SledStore::raw_open(&store).unwrap();
        assert_eq!(db.get(b"kept").unwrap().unwrap().as_ref(), b"value");
        db.insert(b"more", b"value").unwrap();
        db.flush().unwrap();
    }
    let db = SledStore::raw_open(&store).unwrap();
    assert_eq!(db.get(b"more").unwrap().unwrap().as_ref(), b"value");
    drop(db);
    assert!(!stale.exists(), "the next snapshot removes it");
}

/// A stopped process can also leave a `.generating` file under the very name the next snapshot
/// takes (same log position). sled wrote over it without truncating, so a longer leftover kept
/// its tail behind the new snapshot's checksum, and the store refused to open after the rename.
#[test]
fn a_longer_leftover_under_the_next_snapshots_name_is_overwritten_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let twin = dir.path().join("twin");
    {
        let db = SledStore::raw_open(&store).unwrap();
        db.insert(b"kept", b"value").unwrap();
        db.flush().unwrap();
    }
    std::fs::create_dir(&twin).unwrap();
    for entry in std::fs::read_dir(&store).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), twin.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir(twin.join("blobs")).unwrap();
    let before = snapshot_files(&store);
    drop(SledStore::raw_open(&store).unwrap());
    let next = snapshot_files(&store)
        .into_iter()
        .find(|name| !before.contains(name))
        .expect("an open after a write takes a new snapshot");
    std::fs::write(twin.join(format!("{next}.generating")), vec![0x5a; 1 << 20]).unwrap();
    drop(SledStore::raw_open(&twin).unwrap());
    let db = SledStore::raw_open(&twin).unwrap();
    assert_eq!(db.get(b"kept").unwrap().unwrap().as_ref(), b"value");
}

/// Short rounds of open, write, close, as a CLI makes them (two writing rounds, then a
/// read-only one): each leaves exactly one complete snapshot and every value written.
#[test]
fn short_rounds_of_open_write_close_leave_one_complete_snapshot_and_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut written = 0u32;
    for round in 0u32..100 {
        {
            let db = SledStore::raw_open(&store).unwrap();
            if round % 3 != 2 {
                db.insert(written.to_be_bytes(), &written.to_le_bytes())
                    .unwrap();
                db.flush().unwrap();
                written += 1;
            }
            for earlier in 0..written {
                assert_eq!(
                    db.get(earlier.to_be_bytes()).unwrap().as_deref(),
                    Some(&earlier.to_le_bytes()[..]),
                    "round {round}: value {earlier}"
                );
            }
        }
        let snapshots = snapshot_files(&store);
        if round > 0 {
            assert_eq!(snapshots.len(), 1, "round {round}: {snapshots:?}");
            assert!(
                !snapshots[0].ends_with(".generating"),
                "round {round}: {snapshots:?}"
            );
        }
    }
}

// ----- schema 2: migration, record integrity, names -------------------------------------------

/// A private copy of the schema-1 fixture store (made by the release at 8bd8069, see
/// tests/fixtures/schema1/generator.rs) and its key, with the fixture's manifest.
fn schema_one_copy(dir: &tempfile::TempDir) -> (Paths, serde_json::Value) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema1");
    let paths = paths(dir);
    let private = std::fs::Permissions::from_mode(0o700);
    std::fs::create_dir_all(paths.store.join("blobs")).unwrap();
    std::fs::set_permissions(&paths.data_dir, private.clone()).unwrap();
    for file in ["conf", "db"] {
        std::fs::copy(fixture.join("store").join(file), paths.store.join(file)).unwrap();
    }
    std::fs::create_dir_all(paths.key_file.parent().unwrap()).unwrap();
    std::fs::set_permissions(paths.key_file.parent().unwrap(), private).unwrap();
    std::fs::copy(fixture.join("key"), &paths.key_file).unwrap();
    std::fs::set_permissions(&paths.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let manifest = std::fs::read_to_string(fixture.join("manifest.json")).unwrap();
    (paths, serde_json::from_str(&manifest).unwrap())
}

/// The schema version and every key and value of the schema-2 account tree, read below the
/// trait.
/// Every key and value of a tree, in order.
type RawTree = Vec<(Vec<u8>, Vec<u8>)>;

fn raw_state(store: &std::path::Path) -> (Vec<u8>, RawTree) {
    let db = SledStore::raw_open(store).unwrap();
    let schema = db.get("schema_version").unwrap().unwrap().to_vec();
    let tree = db.open_tree("accounts.v2").unwrap();
    let records = tree
        .iter()
        .map(|e| e.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    (schema, records)
}

#[test]
fn a_schema_one_store_migrates_keeping_every_account_code_step_and_count() {
    use sparekey::core::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let (paths, manifest) = schema_one_copy(&dir);
    assert_eq!(raw_state_schema(&paths.store), 1u32.to_be_bytes());
    // Doctor reads a schema-1 store as it is, and leaves it so.
    let checks = app::doctor(&paths, T0);
    let check = |name: &str| checks.iter().find(|c| c.name == name).unwrap().clone();
    assert!(
        check("schema").detail.contains("version 1: it is migrated"),
        "{checks:#?}"
    );
    assert_eq!(check("records").status, app::Status::Ok, "{checks:#?}");
    assert_eq!(raw_state_schema(&paths.store), 1u32.to_be_bytes());
    let end = manifest["clock_at_end"].as_i64().unwrap();
    let clock = Arc::new(ManualClock::new(end + 3_600));
    drop(open_disk(&paths, &clock, 1).unwrap());
    let (schema, migrated) = raw_state(&paths.store);
    assert_eq!(schema, 2u32.to_be_bytes());
    assert_eq!(migrated.len(), 3);
    // A second open changes no byte.
    drop(open_disk(&paths, &clock, 2).unwrap());
    assert_eq!(raw_state(&paths.store), (schema, migrated));

    let store = open_store_keyed(&paths.store, &paths.key_file).unwrap();
    let alice = store.load_account("alice").unwrap().unwrap();
    let codes = alice.codes.as_ref().unwrap();
    let used: Vec<usize> = (0..codes.slots.len())
        .filter(|&i| codes.slots[i].used_at.is_some())
        .collect();
    assert_eq!(used, [0, 3]);
    assert!(!codes.bound, "schema-1 digests carry no associated data");
    // Schema 1 kept no confirmation: its sets count as confirmed when issued, and the list
    // facts, written again by the migration, say so (and still list every account).
    assert_eq!(codes.confirmed_at, Some(codes.created_at));
    let facts = store.list_accounts().unwrap();
    assert_eq!(facts.len(), 3);
    assert!(facts.iter().all(|f| !f.codes_never_confirmed), "{facts:?}");
    let totp = alice.totp.as_ref().unwrap();
    assert_eq!(totp.last_step, manifest["alice_last_step"].as_u64());
    assert!(
        totp.burned_ahead.is_empty(),
        "schema 1 burned no step ahead"
    );
    assert_eq!(alice.failures.consecutive, 2);
    assert_eq!(
        store
            .load_account("bob")
            .unwrap()
            .unwrap()
            .failures
            .consecutive,
        3
    );
    assert!(
        store
            .load_account("carol")
            .unwrap()
            .unwrap()
            .pending
            .is_some()
    );
    assert_eq!(store.operator_failures().unwrap().consecutive, 1);
    assert!(store.operator_password().unwrap().is_some());
    drop(store);

    // And they all still work: passwords, unused and used codes, the TOTP step, the operator.
    let service = open_disk(&paths, &clock, 3).unwrap();
    let password = |name: &str| manifest["passwords"][name].as_str().unwrap().to_string();
    let code = |i: usize| manifest["alice_codes"][i].as_str().unwrap().to_string();
    let spent = service.login("alice", &password("alice"), Some(&code(0)));
    assert_eq!(
        reason(spent.unwrap_err()),
        sparekey::core::error::RejectReason::BackupCodeAlreadyUsed
    );
    let ok = service
        .login("alice", &password("alice"), Some(&code(1)))
        .unwrap();
    assert_eq!(ok.remaining_codes, 7);
    let secret = sparekey::core::totp::TotpSecret::from_base32(
        manifest["alice_secret_base32"].as_str().unwrap(),
    )
    .unwrap();
    let last = manifest["alice_last_step"].as_i64().unwrap();
    let replay = service.login(
        "alice",
        &password("alice"),
        Some(&code_for(&secret, last * 30)),
    );
    assert!(replay.is_err(), "the last step before migration stays used");
    clock.advance(30);
    let now = clock.now_for_tests();
    assert!(
        service
            .login("alice", &password("alice"), Some(&code_for(&secret, now)))
            .is_ok()
    );
    assert!(service.login("bob", &password("bob"), None).is_ok());
    assert!(
        service
            .start_operator_session(&password("operator"))
            .is_ok()
    );
}

fn raw_state_schema(store: &std::path::Path) -> Vec<u8> {
    let db = SledStore::raw_open(store).unwrap();
    db.get("schema_version").unwrap().unwrap().to_vec()
}

#[test]
fn a_migration_stopped_before_it_switched_over_leaves_the_schema_one_store_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, _) = schema_one_copy(&dir);
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    {
        // What a migration killed before its last write leaves: its tagged note, and part of
        // the new tree.
        let db = SledStore::raw_open(&paths.store).unwrap();
        let note = sparekey::store::records::encode_migration_marker(key.store_key().records(), 2);
        db.insert("migration_in_progress", note).unwrap();
        let tree = db.open_tree("accounts.v2").unwrap();
        tree.insert("alice", b"half-written".as_slice()).unwrap();
        db.flush().unwrap();
    }
    let store = open_store(&paths.store).unwrap();
    assert_eq!(store.schema(), 1);
    drop(store);
    let clock = Arc::new(ManualClock::new(T0 + 86_400));
    let service = open_disk(&paths, &clock, 1).unwrap();
    assert_eq!(service.list_accounts().unwrap().len(), 3);
    drop(service);
    assert_eq!(raw_state(&paths.store).1.len(), 3);
}

#[test]
fn schema_one_names_that_differ_only_by_case_are_refused_by_the_migration() {
    use sparekey::core::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let (paths, _) = schema_one_copy(&dir);
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        let tree = db.open_tree("accounts").unwrap();
        let mut bob = tree.get("bob").unwrap().unwrap().to_vec();
        // "bob" -> "Bob": the name is the record's first field (length, then bytes).
        bob[1] = b'B';
        tree.insert("Bob", bob).unwrap();
        db.flush().unwrap();
    }
    let store = open_store(&paths.store).unwrap();
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    let err = store.bind_key(&key.store_key()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(line) if line.contains("'Bob' and 'bob' differ only by case")),
        "{err}"
    );
    assert_eq!(store.schema(), 1, "nothing switched over");
}

#[test]
fn names_are_unique_regardless_of_case() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    let service = open_disk(&paths, &clock, 1).unwrap();
    service.create_account("Alice", PASSWORD).unwrap();
    for twin in ["alice", "ALICE", "aLiCe"] {
        let err = service.create_account(twin, PASSWORD).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{twin}: {err}");
    }
    service.remove_account("Alice").unwrap();
    service.create_account("alice", PASSWORD).unwrap();
    let refused = service
        .create_account("ali\u{202E}ce", PASSWORD)
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Invalid, "{refused}");
}

#[test]
fn a_record_edited_below_the_trait_is_damaged_naming_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = open_disk(&paths, &clock, 1).unwrap();
        enrolled(&service, &clock, "alice");
        service
            .create_account("mallory", "mallory's own password")
            .unwrap();
        service.create_account("bob", PASSWORD).unwrap();
        for _ in 0..3 {
            let _ = service.login("bob", "wrong", None);
        }
    }
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        let tree = db.open_tree("accounts.v2").unwrap();
        // Mallory's record (his password hash) under alice's name.
        let mallory = tree.get("mallory").unwrap().unwrap();
        tree.insert("alice", mallory).unwrap();
        // Bob's failure counter edited: one bit of the record body.
        let mut bob = tree.get("bob").unwrap().unwrap().to_vec();
        let at = bob.len() - 40;
        bob[at] ^= 1;
        tree.insert("bob", bob).unwrap();
        db.flush().unwrap();
    }
    let service = open_disk(&paths, &clock, 2).unwrap();
    let err = service
        .login("alice", "mallory's own password", None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    let line = err.to_string();
    assert!(
        line.contains("account 'alice' fails its integrity check"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    let err = service.login("bob", PASSWORD, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("account 'bob' fails its integrity check"),
        "{err}"
    );
    drop(service);
    let checks = app::doctor(&paths, T0);
    let records = checks.iter().find(|c| c.name == "records").unwrap();
    assert_eq!(records.status, app::Status::Fix, "{records:?}");
    assert!(records.detail.starts_with("2 records fail"), "{records:?}");
    assert!(
        records.detail.contains("'alice'") && records.detail.contains("'bob'"),
        "{records:?}"
    );
    assert!(!records.detail.contains("'mallory'"), "{records:?}");
}

/// Renames the schema-1 record and list facts of `from` to `to` below the trait (both start
/// with the name: a one-byte length, then its bytes).
fn rename_schema_one(store: &std::path::Path, from: &str, to: &str) {
    let db = SledStore::raw_open(store).unwrap();
    for tree in ["accounts", "account_facts"] {
        let tree = db.open_tree(tree).unwrap();
        let old = tree.remove(from).unwrap().unwrap();
        assert_eq!(old[0] as usize, from.len());
        let mut new = vec![to.len() as u8];
        new.extend_from_slice(to.as_bytes());
        new.extend_from_slice(&old[1 + from.len()..]);
        tree.insert(to, new).unwrap();
    }
    db.flush().unwrap();
}

/// Renames the schema-2 account `from` to `to` below the trait, with a record tagged by the
/// store's own key (what only a bug could write: creation refuses such names).
pub(crate) fn insert_tagged_rename(paths: &Paths, from: &str, to: &str) {
    use sparekey::store::records;
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    let db = SledStore::raw_open(&paths.store).unwrap();
    let accounts = db.open_tree("accounts.v2").unwrap();
    let bytes = accounts.remove(from).unwrap().unwrap();
    let mut account = records::decode_account(key.store_key().records(), from, &bytes).unwrap();
    account.name = to.to_string();
    accounts
        .insert(
            to,
            records::encode_account(key.store_key().records(), &account),
        )
        .unwrap();
    let facts = db.open_tree("account_facts").unwrap();
    facts.remove(from).unwrap();
    facts
        .insert(to, sparekey::store::encode(&account.facts()))
        .unwrap();
    let folds = db.open_tree("account_folds").unwrap();
    folds
        .remove(sparekey::core::account::folded_name(from))
        .unwrap();
    folds
        .insert(sparekey::core::account::folded_name(to), to)
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn a_stored_name_with_terminal_escapes_is_shown_escaped_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    // Creation and the migration refuse such names; a record written by a bug might not.
    let evil = "b\u{1b}[2J\u{202E}b";
    {
        let service = open_disk(&paths, &clock, 1).unwrap();
        service.create_account("bob", PASSWORD).unwrap();
    }
    insert_tagged_rename(&paths, "bob", evil);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sparekey"))
            .args(args)
            .env("SPAREKEY_DATA_DIR", &paths.data_dir)
            .env("SPAREKEY_KEY_FILE", &paths.key_file)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202E}'),
            "{text:?}"
        );
        text
    };
    let list = run(&["account", "list"]);
    assert!(list.contains("b\\u{001B}[2J\\u{202E}b"), "{list}");
    let unlock = run(&["unlock", evil]);
    assert!(unlock.contains("b\\u{001B}[2J\\u{202E}b"), "{unlock}");
    let audit = run(&["audit"]);
    assert!(audit.contains("b\\u{001B}[2J\\u{202E}b"), "{audit}");
}

#[test]
fn a_removed_operator_password_is_damage_not_an_unset_password() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = open_disk(&paths, &clock, 1).unwrap();
        assert!(!service.has_operator_password().unwrap());
        service.set_operator_password("operator pw 1").unwrap();
    }
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        assert!(db.remove("operator_password.v2").unwrap().is_some());
        db.flush().unwrap();
    }
    let service = open_disk(&paths, &clock, 2).unwrap();
    let err = service.has_operator_password().unwrap_err();
    assert!(
        err.to_string()
            .contains("operator password record is missing"),
        "{err}"
    );
    // Nor can a new one be set over the hole: the kiosk stays the operator's.
    assert!(service.set_operator_password("attacker's pw").is_err());
}

/// The store contract of `confirm_codes` on `store`, which holds `name` with a set whose id is
/// `set_id`, not confirmed: the first confirmation is written with its event, a second or one
/// for another set changes nothing, and the list facts follow.
fn confirm_codes_contract(store: &dyn sparekey::core::store::Store, name: &str, set_id: u64) {
    use sparekey::core::store::CodesConfirmation;
    let audit = |outcome: &CodesConfirmation| match outcome {
        CodesConfirmation::Confirmed => vec![AuditKind::CodesConfirmed],
        _ => Vec::new(),
    };
    let facts = |store: &dyn sparekey::core::store::Store| {
        let list = store.list_accounts().unwrap();
        list.into_iter().find(|f| f.name == name).unwrap()
    };
    let events = |store: &dyn sparekey::core::store::Store| {
        (store.audit_events(Some(name), 1_000).unwrap().into_iter())
            .filter(|e| e.kind == AuditKind::CodesConfirmed)
            .map(|e| e.at)
            .collect::<Vec<_>>()
    };
    assert!(facts(store).codes_never_confirmed);
    let confirmed_at = |store: &dyn sparekey::core::store::Store| {
        let account = store.load_account(name).unwrap().unwrap();
        account.codes.unwrap().confirmed_at
    };
    assert_eq!(
        store.confirm_codes(name, set_id ^ 1, 100, &audit).unwrap(),
        CodesConfirmation::SetReplaced
    );
    assert_eq!(confirmed_at(store), None);
    assert_eq!(
        store.confirm_codes(name, set_id, 200, &audit).unwrap(),
        CodesConfirmation::Confirmed
    );
    assert_eq!(
        store.confirm_codes(name, set_id, 300, &audit).unwrap(),
        CodesConfirmation::AlreadyConfirmed
    );
    assert_eq!(
        store.confirm_codes("nobody", set_id, 300, &audit).unwrap(),
        CodesConfirmation::NoAccount
    );
    assert_eq!(confirmed_at(store), Some(200));
    assert_eq!(events(store), [200], "one event, written with the change");
    assert!(!facts(store).codes_never_confirmed);
}

#[test]
fn confirming_codes_keeps_the_contract_on_memory_and_on_sled_across_a_reopen() {
    use sparekey::core::store::Store;
    // Memory: the reference implementation.
    let memory = sparekey::store::memory::MemoryStore::new();
    let (service, clock) = {
        let clock = Arc::new(ManualClock::new(T0));
        let key = sparekey::core::keys::MasterKey::generate(&mut SeededEntropy::new(3));
        let service = sparekey::core::service::Service::new(
            Box::new(memory.clone()),
            clock.clone(),
            Box::new(SeededEntropy::new(4)),
            key,
            test_config(),
        )
        .unwrap();
        (service, clock)
    };
    let set_id = unconfirmed(&service, &clock, "alice");
    confirm_codes_contract(&memory, "alice", set_id);

    // Sled, then again after a reopen: the confirmation was durable.
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    let set_id = {
        let service = open_disk(&paths, &clock, 5).unwrap();
        unconfirmed(&service, &clock, "alice")
    };
    {
        let store = open_store_keyed(&paths.store, &paths.key_file).unwrap();
        confirm_codes_contract(&store, "alice", set_id);
    }
    let store = open_store_keyed(&paths.store, &paths.key_file).unwrap();
    let account = store.load_account("alice").unwrap().unwrap();
    assert_eq!(account.codes.unwrap().confirmed_at, Some(200));
    assert!(!store.list_accounts().unwrap()[0].codes_never_confirmed);
}

/// Enrolls `name` and leaves its codes unconfirmed; the set's id.
fn unconfirmed(service: &sparekey::core::service::Service, clock: &ManualClock, name: &str) -> u64 {
    service.create_account(name, PASSWORD).unwrap();
    let e = service.begin_enrollment(name, None).unwrap();
    let issued = service
        .confirm_enrollment(name, &code_for(&e.secret, clock.now_for_tests()))
        .unwrap();
    issued.set_id
}

// ----- edits below the trait that try to pass for a state sparekey wrote (review of issue 12) --

/// Alice with 2FA, then her record written back as an untagged schema-1 record with 2FA
/// stripped, and the untagged schema version set to 1: what a migration would tag as it stands.
fn downgrade_with_alice_stripped(paths: &Paths, clock: &Arc<ManualClock>) {
    {
        let service = open_disk(paths, clock, 1).unwrap();
        enrolled(&service, clock, "alice");
        assert!(service.login("alice", PASSWORD, None).is_err());
    }
    let db = SledStore::raw_open(&paths.store).unwrap();
    let v2 = db.open_tree("accounts.v2").unwrap();
    let bytes = v2.get("alice").unwrap().unwrap();
    let mut alice =
        sparekey::store::records::decode_account_body(&bytes[..bytes.len() - 32]).unwrap();
    alice.totp = None;
    alice.codes = None;
    alice.pending = None;
    let v1 = db.open_tree("accounts").unwrap();
    v1.insert("alice", sparekey::store::records::encode_account_v1(&alice))
        .unwrap();
    db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_schema_version_set_back_to_one_migrates_no_forged_record() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    downgrade_with_alice_stripped(&paths, &clock);
    clock.advance(60);
    let err = open_disk(&paths, &clock, 2).map(drop).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    let line = err.to_string();
    assert!(
        line.contains("says schema 1 but was already at schema 2"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    // Nothing was migrated: the store still says 1, and its tagged alice still has 2FA.
    assert_eq!(raw_state_schema(&paths.store), 1u32.to_be_bytes());
    let checks = app::doctor(&paths, T0);
    let records = checks.iter().find(|c| c.name == "records").unwrap();
    assert_eq!(records.status, app::Status::Fix, "{checks:#?}");
    assert!(
        records
            .detail
            .contains("says schema 1 but was already at schema 2"),
        "{records:?}"
    );
}

#[test]
fn a_downgrade_that_also_removes_the_tagged_meta_records_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    downgrade_with_alice_stripped(&paths, &clock);
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        for meta in [
            "schema_marker",
            "operator_password.v2",
            "operator_failures.v2",
        ] {
            assert!(db.remove(meta).unwrap().is_some(), "{meta}");
        }
        db.flush().unwrap();
    }
    // The schema-2 trees are still there, with no migration's note: a store set back.
    let err = open_disk(&paths, &clock, 2).map(drop).unwrap_err();
    assert!(
        err.to_string().contains("but was already at schema 2"),
        "{err}"
    );
}

#[test]
fn a_schema_two_store_without_its_marker_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    drop(open_disk(&paths, &clock, 1).unwrap());
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        assert!(db.remove("schema_marker").unwrap().is_some());
        db.flush().unwrap();
    }
    let err = open_disk(&paths, &clock, 2).map(drop).unwrap_err();
    assert!(
        err.to_string().contains("schema marker record is missing"),
        "{err}"
    );
    let checks = app::doctor(&paths, T0);
    let records = checks.iter().find(|c| c.name == "records").unwrap();
    assert_eq!(records.status, app::Status::Fix, "{checks:#?}");
}

#[test]
fn removing_the_fingerprint_and_operator_password_hands_no_kiosk_over() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = open_disk(&paths, &clock, 1).unwrap();
        service.set_operator_password("operator pw 1").unwrap();
    }
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        assert!(db.remove("operator_password.v2").unwrap().is_some());
        assert!(db.remove("key_fingerprint").unwrap().is_some());
        db.flush().unwrap();
    }
    // The store was in use (an audit event, the marker): no fresh "unset" record for it.
    let err = open_disk(&paths, &clock, 2).map(drop).unwrap_err();
    assert!(
        err.to_string().contains("key fingerprint is missing"),
        "{err}"
    );
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        assert!(db.get("operator_password.v2").unwrap().is_none());
        assert!(db.get("key_fingerprint").unwrap().is_none());
    }
    let checks = app::doctor(&paths, T0);
    let binding = checks.iter().find(|c| c.name == "key binding").unwrap();
    assert_eq!(binding.status, app::Status::Fix, "{checks:#?}");
    assert!(
        binding.detail.contains("fingerprint is missing"),
        "{binding:?}"
    );
}

#[test]
fn removing_the_operators_failure_record_unlocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = open_disk(&paths, &clock, 1).unwrap();
        service.set_operator_password("operator pw 1").unwrap();
        for _ in 0..100 {
            let _ = service.start_operator_session("wrong one");
            clock.advance(4000);
        }
        assert!(service.start_operator_session("operator pw 1").is_err());
    }
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        assert!(db.remove("operator_failures.v2").unwrap().is_some());
        db.flush().unwrap();
    }
    let service = open_disk(&paths, &clock, 2).unwrap();
    let err = service
        .start_operator_session("operator pw 1")
        .map(drop)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("operator's failure record is missing"),
        "{err}"
    );
    drop(service);
    let checks = app::doctor(&paths, T0);
    let records = checks.iter().find(|c| c.name == "records").unwrap();
    assert_eq!(records.status, app::Status::Fix, "{checks:#?}");
}

#[test]
fn a_fresh_store_has_its_operator_failure_record_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    drop(open_disk(&paths, &clock, 1).unwrap());
    {
        // Removed before any attempt was made: still damage, not "no attempt yet".
        let db = SledStore::raw_open(&paths.store).unwrap();
        assert!(db.remove("operator_failures.v2").unwrap().is_some());
        db.flush().unwrap();
    }
    let service = open_disk(&paths, &clock, 2).unwrap();
    service.set_operator_password("operator pw 1").unwrap();
    assert!(service.start_operator_session("operator pw 1").is_err());
}

#[test]
fn removing_a_fold_allows_no_case_twin_and_doctor_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = open_disk(&paths, &clock, 1).unwrap();
        service.create_account("alice", PASSWORD).unwrap();
        service.create_account("bob", PASSWORD).unwrap();
    }
    {
        let db = SledStore::raw_open(&paths.store).unwrap();
        let folds = db.open_tree("account_folds").unwrap();
        assert!(folds.remove("alice").unwrap().is_some());
        // And one that names no account, taking "carol" away.
        folds.insert("carol", "carol").unwrap();
        db.flush().unwrap();
    }
    let service = open_disk(&paths, &clock, 2).unwrap();
    let err = service.create_account("Alice", PASSWORD).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(
        err.to_string()
            .contains("name index has no entry for account 'alice'"),
        "{err}"
    );
    assert_eq!(service.list_accounts().unwrap().len(), 2);
    // A twin the index still knows is refused as before.
    assert!(matches!(
        service.create_account("BOB", PASSWORD),
        Err(Error::AlreadyExists(_))
    ));
    drop(service);
    let checks = app::doctor(&paths, T0);
    let records = checks.iter().find(|c| c.name == "records").unwrap();
    assert_eq!(records.status, app::Status::Fix, "{checks:#?}");
    assert!(
        records.detail.contains("no entry for account 'alice'")
            && records
                .detail
                .contains("entry for 'carol', which is no account"),
        "{records:?}"
    );
}

#[test]
fn a_schema_one_name_that_creation_refuses_is_not_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, _) = schema_one_copy(&dir);
    // Schema 1 checked less: a bidi control (and an escape) in a name it stored.
    rename_schema_one(&paths.store, "bob", "b\u{1b}[2J\u{202E}b");
    let clock = Arc::new(ManualClock::new(T0 + 86_400));
    let err = open_disk(&paths, &clock, 1).map(drop).unwrap_err();
    let line = err.to_string();
    assert!(
        line.contains("schema-1 account 'b\\u{001B}[2J\\u{202E}b' cannot be migrated"),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}') && !line.contains('\u{202E}'),
        "{line:?}"
    );
    assert_eq!(raw_state_schema(&paths.store), 1u32.to_be_bytes());
}

#[test]
fn a_migration_stopped_before_it_switched_over_is_told_from_a_store_set_back() {
    let dir = tempfile::tempdir().unwrap();
    let (paths, _) = schema_one_copy(&dir);
    {
        // Schema-2 records but no migration's note (or one made with another key).
        let db = SledStore::raw_open(&paths.store).unwrap();
        let other = sparekey::core::keys::MasterKey::from_bytes([9; 32]);
        let note =
            sparekey::store::records::encode_migration_marker(other.store_key().records(), 2);
        db.insert("migration_in_progress", note).unwrap();
        let tree = db.open_tree("accounts.v2").unwrap();
        tree.insert("alice", b"half-written".as_slice()).unwrap();
        db.flush().unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0 + 86_400));
    let err = open_disk(&paths, &clock, 1).map(drop).unwrap_err();
    assert!(err.to_string().contains("already at schema 2"), "{err}");
}

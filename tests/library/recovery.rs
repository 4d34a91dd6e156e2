//! Backup, restore and doctor: a backup taken from a store in use restores to the same state,
//! a damaged backup is refused, restore never deletes the store it replaces, doctor finds
//! what is wrong and says how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use crate::support::*;
use sparekey::app::{self, Paths, Status};
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::error::ErrorKind;
use sparekey::core::service::{Config, Service};
use sparekey::core::store::Store;
use sparekey::store::sled_store::SledStore;

fn paths(dir: &std::path::Path) -> Paths {
    Paths::resolve(Some(dir.join("data")), Some(dir.join("key"))).unwrap()
}

/// Opens with entropy seeded from the path, so stores in different dirs get different keys.
fn open(paths: &Paths, clock: &Arc<ManualClock>) -> Service {
    let seed = paths
        .data_dir
        .to_string_lossy()
        .bytes()
        .map(u64::from)
        .sum();
    open_disk(paths, clock, seed).unwrap()
}

#[test]
fn backup_then_restore_gives_back_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let backup_file = dir.path().join("backup.bin");
    let codes = {
        let service = open(&paths, &clock);
        let (_, codes) = enrolled(&service, &clock, "alice");
        service.login("alice", PASSWORD, Some(&codes[0])).unwrap();
        drop(service);
        let store = open_store(&paths.store).unwrap();
        let summary = app::backup(&store, &backup_file).unwrap();
        assert_eq!(summary.accounts, 1);
        assert!(summary.audit_events >= 4);
        codes
    };
    assert_eq!(
        std::fs::metadata(&backup_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // A backup is never overwritten.
    let store = open_store(&paths.store).unwrap();
    let refused = app::backup(&store, &backup_file).unwrap_err();
    assert!(
        refused.to_string().contains("never overwrites"),
        "{refused}"
    );
    // Lose a code after the backup: the restore brings back the state at backup time.
    drop(store);
    {
        let service = open(&paths, &clock);
        service.login("alice", PASSWORD, Some(&codes[1])).unwrap();
    }
    let restored = app::restore(&paths, &backup_file, T0 + 100).unwrap();
    let aside = restored.previous_store.expect("the old store is kept");
    assert!(aside.exists() && aside.ends_with(format!("store.replaced-{}", T0 + 100)));
    let service = open(&paths, &clock);
    assert_eq!(service.code_status("alice").unwrap().remaining, 9);
    assert!(
        service.login("alice", PASSWORD, Some(&codes[0])).is_err(),
        "used before the backup"
    );
    assert!(service.login("alice", PASSWORD, Some(&codes[2])).is_ok());
}

#[test]
fn a_damaged_backup_is_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    {
        let service = open(&paths, &clock);
        service.create_account("bob", PASSWORD).unwrap();
    }
    {
        let store = open_store(&paths.store).unwrap();
        app::backup(&store, &file).unwrap();
    }
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let damaged = dir.path().join("damaged.bin");
    std::fs::write(&damaged, &bytes).unwrap();
    let err = app::restore(&paths, &damaged, T0).unwrap_err();
    assert!(err.to_string().contains("checksum does not match"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let truncated = dir.path().join("truncated.bin");
    std::fs::write(&truncated, &bytes[..10]).unwrap();
    assert!(app::restore(&paths, &truncated, T0).is_err());
    assert!(!paths.data_dir.join(format!("store.replaced-{T0}")).exists());
    assert_eq!(open(&paths, &clock).list_accounts().unwrap().len(), 1);
}

#[test]
fn a_backup_from_another_key_is_refused_and_the_store_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let other = paths(&dir.path().join("other"));
    let file = dir.path().join("other.bin");
    {
        let service = open(&other, &clock);
        service.create_account("eve", PASSWORD).unwrap();
        drop(service);
        app::backup(&open_store(&other.store).unwrap(), &file).unwrap();
    }
    let mine = paths(&dir.path().join("mine"));
    open(&mine, &clock)
        .create_account("carol", PASSWORD)
        .unwrap();
    let err = app::restore(&mine, &file, T0).unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");
    let names: Vec<_> = open(&mine, &clock)
        .list_accounts()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["carol"]);
}

#[test]
fn doctor_names_what_is_wrong_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    drop(open(&paths, &clock));
    let checks = app::doctor(&paths, T0);
    assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    assert!(checks.iter().any(|c| c.name == "records"));
    assert!(checks.iter().any(|c| c.name == "secrets"));

    std::fs::set_permissions(&paths.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&paths.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let checks = app::doctor(&paths, 0);
    let failed = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.status == Status::Ok, c.detail.clone()))
            .unwrap()
    };
    let status =
        |checks: &[app::Check], name: &str| checks.iter().find(|c| c.name == name).unwrap().status;
    assert!(!failed("key file").0 && failed("key file").1.contains("chmod 600"));
    assert!(!failed("data dir").0 && failed("data dir").1.contains("chmod 700"));
    assert!(!failed("clock").0 && failed("clock").1.contains("NTP"));
    // A key file others may read is not used, so what needs the key is skipped, not passed.
    assert_eq!(status(&checks, "key binding"), Status::Skipped);
    assert_eq!(status(&checks, "secrets"), Status::Skipped);
    assert_eq!(status(&checks, "records"), Status::Ok);

    std::fs::set_permissions(&paths.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&paths.key_file, format!("{}\n", "cd".repeat(32))).unwrap();
    let checks = app::doctor(&paths, T0);
    let binding = checks.iter().find(|c| c.name == "key binding").unwrap();
    assert!(
        binding.status == Status::Fix && binding.detail.contains("use the right --key-file"),
        "{binding:?}"
    );

    // While another process holds the store, doctor says so instead of failing.
    std::fs::set_permissions(&paths.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _held = open_store(&paths.store).unwrap();
    let checks = app::doctor(&paths, T0);
    let store = checks.iter().find(|c| c.name == "store").unwrap();
    assert!(
        store.status == Status::Skipped && store.detail.contains("in use"),
        "{store:?}"
    );
    for name in ["schema", "key binding", "records", "secrets"] {
        assert_eq!(status(&checks, name), Status::Skipped, "{name}");
    }
    let _ = _held.list_accounts();
}

#[test]
fn doctor_flags_hashes_below_the_owasp_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let real = |seed| {
        app::open_with(
            &paths,
            Config::default(),
            clock.clone(),
            Box::new(SeededEntropy::new(seed)),
        )
    };
    let hash_check = || {
        let checks = app::doctor(&paths, T0);
        let found = checks.iter().find(|c| c.name == "hash parameters");
        found.cloned().unwrap_or_else(|| panic!("{checks:#?}"))
    };
    {
        let service = real(1).unwrap();
        enrolled(&service, &clock, "strong");
        service.set_operator_password("operator secret").unwrap();
    }
    let check = hash_check();
    assert!(
        check.status == Status::Ok && check.detail.contains("OWASP minimum"),
        "{check:?}"
    );

    // Cheap hashes (the test parameters) for one account's password and codes.
    let (_, weak_codes) = enrolled(&open(&paths, &clock), &clock, "weak");
    let check = hash_check();
    assert!(check.status == Status::Fix, "{check:?}");
    assert!(check.detail.contains("the passwords of weak;"), "{check:?}");
    assert!(
        check
            .detail
            .contains("the backup codes of weak (run 'sparekey codes regenerate"),
        "{check:?}"
    );
    assert!(
        !check.detail.contains("strong") && !check.detail.contains("operator"),
        "{check:?}"
    );

    // New codes made with the real parameters leave only the password to report.
    let service = real(2).unwrap();
    let proof = service.step_up("weak", PASSWORD, &weak_codes[0]).unwrap();
    service.regenerate_codes("weak", &proof).unwrap();
    drop(service);
    let check = hash_check();
    assert!(
        check.status == Status::Fix && !check.detail.contains("backup codes"),
        "{check:?}"
    );
}

#[test]
fn a_large_restore_is_chunked_and_an_interrupted_one_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let small = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let template = {
        let service = open(&small, &clock);
        enrolled(&service, &clock, "template");
        drop(service);
        let store = open_store(&small.store).unwrap();
        store.export_image().unwrap()
    };
    // 2,500 accounts: more than two chunks.
    let mut image = template.clone();
    image.accounts = (0..2_500)
        .map(|i| {
            let mut a = template.accounts[0].clone();
            a.name = format!("user{i:05}");
            a
        })
        .collect();
    let other = paths(&dir.path().join("big"));
    std::fs::create_dir_all(&other.data_dir).unwrap();
    {
        let store = open_store(&other.store).unwrap();
        store.import_image(&image).unwrap();
        let listed = store.list_accounts().unwrap();
        assert_eq!(listed.len(), 2_500);
        assert_eq!(listed[2_499].name, "user02499");
        assert!(
            listed
                .iter()
                .all(|f| f.two_factor && f.remaining_codes == 10)
        );
    }
    // A restore that stopped half-way leaves its marker: the store is refused, not half-used.
    {
        let db = SledStore::raw_open(&other.store).unwrap();
        db.insert("restore_in_progress", &[1u8]).unwrap();
        db.flush().unwrap();
    }
    let err = open_store(&other.store).unwrap_err();
    assert!(err.to_string().contains("restore into"), "{err}");
    assert!(
        err.to_string()
            .contains("run 'sparekey restore FILE' again"),
        "{err}"
    );
}

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
        let summary = app::backup_store(&paths, &backup_file).unwrap();
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
    let refused = app::backup_store(&paths, &backup_file).unwrap_err();
    assert!(
        refused.to_string().contains("never overwrites"),
        "{refused}"
    );
    // Lose a code after the backup: the restore brings back the state at backup time.
    {
        let service = open(&paths, &clock);
        service.login("alice", PASSWORD, Some(&codes[1])).unwrap();
    }
    let restored = app::restore(&paths, &backup_file, T0 + 100).unwrap();
    let aside = restored.previous_store.expect("the old store is kept");
    assert!(aside.exists() && aside.ends_with("store.replaced-20261128T120140Z"));
    // The code used since the backup works again, and the restore says so.
    assert_eq!(restored.codes_revived, ["alice"]);
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
    app::backup_store(&paths, &file).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let damaged = dir.path().join("damaged.bin");
    std::fs::write(&damaged, &bytes).unwrap();
    let err = app::restore(&paths, &damaged, T0).unwrap_err();
    assert!(err.to_string().contains("truncated or altered"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let truncated = dir.path().join("truncated.bin");
    std::fs::write(&truncated, &bytes[..10]).unwrap();
    assert!(app::restore(&paths, &truncated, T0).is_err());
    assert!(
        !paths
            .data_dir
            .join("store.replaced-20261128T120000Z")
            .exists()
    );
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
        app::backup_store(&other, &file).unwrap();
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
    // All but the clock's sync, which asks this machine (unit-tested in app::doctor).
    let about_the_store = checks.iter().filter(|c| c.name != "clock sync");
    assert!(
        about_the_store.clone().all(|c| c.status == Status::Ok),
        "{checks:#?}"
    );
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
    // So are the records: their integrity tags need the key.
    assert_eq!(status(&checks, "records"), Status::Skipped);

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
        let store = open_store_keyed(&small.store, &small.key_file).unwrap();
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
        let key = sparekey::core::keys::MasterKey::from_bytes([4; 32]);
        store.bind_key(&key.store_key()).unwrap();
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

// ----- attacks on backups --------------------------------------------------------------------

/// A backup forged in the format of sparekey up to 8bd8069: the image and an unkeyed SHA-256
/// that anyone can recompute after an edit.
fn forge_unkeyed(image: &sparekey::core::store::StoreImage, file: &std::path::Path) {
    use sha2::Digest;
    let mut bytes = b"SPAREKEY-BACKUP\x00\x01".to_vec();
    bytes.extend(sparekey::store::encode(image));
    let sum = sha2::Sha256::digest(&bytes);
    bytes.extend(sum);
    std::fs::write(file, bytes).unwrap();
}

/// A backup in today's format, tagged with a key the forger made up (he has no other).
fn forge_with_own_key(image: &sparekey::core::store::StoreImage, file: &std::path::Path) {
    let forger = sparekey::core::keys::MasterKey::from_bytes([0xEE; 32]);
    let mut image = image.clone();
    image.key_fingerprint = None;
    std::fs::write(file, app::backup_file::encode_for_tests(&image, &forger)).unwrap();
}

/// Alice and mallory, both enrolled; a real backup of them; the image it holds.
fn two_accounts_backed_up(
    paths: &Paths,
    clock: &Arc<ManualClock>,
    file: &std::path::Path,
) -> (Vec<String>, Vec<String>, sparekey::core::store::StoreImage) {
    let service = open(paths, clock);
    let (_, alice_codes) = enrolled(&service, clock, "alice");
    service
        .create_account("mallory", "mallory's own password")
        .unwrap();
    let enrollment = service.begin_enrollment("mallory", None).unwrap();
    let code = code_for(&enrollment.secret, clock.now_for_tests());
    let issued = service.confirm_enrollment("mallory", &code).unwrap();
    let mallory_codes = issued
        .codes
        .iter()
        .map(|c| c.display().to_string())
        .collect();
    service
        .login("alice", PASSWORD, Some(&alice_codes[0]))
        .unwrap();
    drop(service);
    // What the store holds, exported apart from the backup, so the backup can be checked
    // against it.
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    let store = SledStore::open(&paths.store, std::time::Duration::from_secs(3)).unwrap();
    store.bind_key(&key.store_key()).unwrap();
    let image = store.export_image().unwrap();
    drop(store);
    app::backup_store(paths, file).unwrap();
    (alice_codes, mallory_codes, image)
}

/// The live store still holds alice as she was: her password and unused codes work, mallory's
/// do not.
fn alice_untouched(
    paths: &Paths,
    clock: &Arc<ManualClock>,
    alice_codes: &[String],
    mallory_codes: &[String],
) {
    let service = open(paths, clock);
    let taken = service.login("alice", "mallory's own password", Some(&mallory_codes[1]));
    assert!(taken.is_err(), "mallory got in as alice");
    assert!(
        service
            .login("alice", PASSWORD, Some(&alice_codes[1]))
            .is_ok()
    );
}

#[test]
fn a_tampered_backup_swapping_accounts_is_refused_and_the_store_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (alice_codes, mallory_codes, image) = two_accounts_backed_up(&paths, &clock, &file);
    // Mallory's password hash and code set copied into alice's record.
    let mut swapped = image.clone();
    let mallory = swapped
        .accounts
        .iter()
        .find(|a| a.name == "mallory")
        .unwrap()
        .clone();
    let alice = swapped
        .accounts
        .iter_mut()
        .find(|a| a.name == "alice")
        .unwrap();
    alice.password = mallory.password.clone();
    alice.codes = mallory.codes.clone();
    alice.totp = mallory.totp.clone();
    for (forge, why) in [
        (forge_unkeyed as fn(&_, &_), "unauthenticated checksum"),
        (forge_with_own_key, "tag does not match"),
    ] {
        let forged = dir.path().join("forged.bin");
        forge(&swapped, &forged);
        let err = app::restore(&paths, &forged, T0 + 100).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains(why), "{err}");
        assert!(!err.to_string().contains('\n'));
        std::fs::remove_file(&forged).unwrap();
    }
    let asides = std::fs::read_dir(&paths.data_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("replaced")
        })
        .count();
    assert_eq!(asides, 0, "the live store was never moved");
    alice_untouched(&paths, &clock, &alice_codes, &mallory_codes);
}

#[test]
fn swapped_verifiers_do_not_verify_on_another_account_even_below_the_backup() {
    // Even an image the store itself imports (its records freshly tagged) cannot move a
    // password hash or a code set: each is bound to its account by Argon2's associated data.
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (_, mallory_codes, image) = two_accounts_backed_up(&paths, &clock, &file);
    let mut swapped = image.clone();
    let mallory = swapped
        .accounts
        .iter()
        .find(|a| a.name == "mallory")
        .unwrap()
        .clone();
    let alice = swapped
        .accounts
        .iter_mut()
        .find(|a| a.name == "alice")
        .unwrap();
    alice.password = mallory.password.clone();
    alice.codes = mallory.codes.clone();
    std::fs::remove_dir_all(&paths.store).unwrap();
    {
        let store = open_store_keyed(&paths.store, &paths.key_file).unwrap();
        store.import_image(&swapped).unwrap();
    }
    let service = open(&paths, &clock);
    let err = service.login("alice", "mallory's own password", Some(&mallory_codes[2]));
    assert_eq!(
        reason(err.unwrap_err()),
        sparekey::core::error::RejectReason::WrongNameOrPassword
    );
    // With alice's own password, mallory's code set does not match either.
    let mut only_codes = image.clone();
    let alice = only_codes
        .accounts
        .iter_mut()
        .find(|a| a.name == "alice")
        .unwrap();
    alice.codes = mallory.codes.clone();
    drop(service);
    std::fs::remove_dir_all(&paths.store).unwrap();
    {
        let store = open_store_keyed(&paths.store, &paths.key_file).unwrap();
        store.import_image(&only_codes).unwrap();
    }
    let service = open(&paths, &clock);
    let err = service.login("alice", PASSWORD, Some(&mallory_codes[2]));
    assert_eq!(
        reason(err.unwrap_err()),
        sparekey::core::error::RejectReason::WrongCode
    );
}

#[test]
fn a_backup_with_two_factor_stripped_or_a_spent_code_revived_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (alice_codes, mallory_codes, image) = two_accounts_backed_up(&paths, &clock, &file);
    let mut stripped = image.clone();
    let alice = stripped
        .accounts
        .iter_mut()
        .find(|a| a.name == "alice")
        .unwrap();
    alice.totp = None;
    alice.codes = None;
    let mut revived = image.clone();
    let alice = revived
        .accounts
        .iter_mut()
        .find(|a| a.name == "alice")
        .unwrap();
    alice.codes.as_mut().unwrap().slots[0].used_at = None;
    alice.failures = Default::default();
    for forged_image in [&stripped, &revived] {
        for forge in [forge_unkeyed as fn(&_, &_), forge_with_own_key] {
            let forged = dir.path().join("forged.bin");
            forge(forged_image, &forged);
            let err = app::restore(&paths, &forged, T0 + 100).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
            std::fs::remove_file(&forged).unwrap();
        }
    }
    // One flipped bit of the real backup is refused too.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    assert!(app::restore(&paths, &file, T0 + 100).is_err());
    alice_untouched(&paths, &clock, &alice_codes, &mallory_codes);
    let service = open(&paths, &clock);
    let spent = service.login("alice", PASSWORD, Some(&alice_codes[0]));
    assert!(spent.is_err(), "the spent code stays spent");
}

#[test]
fn restore_validates_every_record_as_creation_would() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (_, _, image) = two_accounts_backed_up(&paths, &clock, &file);
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    type Edit = Box<dyn Fn(&mut sparekey::core::account::Account)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "control character",
            Box::new(|a| a.name = "ali\u{1b}[2Jce".into()),
        ),
        ("U+202E", Box::new(|a| a.name = "\u{202E}ecila".into())),
        (
            "password hash",
            Box::new(|a| a.password = Some("plain".into())),
        ),
        (
            "backup-code set",
            Box::new(|a| a.codes.as_mut().unwrap().slots.clear()),
        ),
        (
            "backup-code set",
            Box::new(|a| a.codes.as_mut().unwrap().params.m_kib = u32::MAX),
        ),
        (
            "authenticator",
            Box::new(|a| a.totp.as_mut().unwrap().params.digits = 99),
        ),
        (
            "authenticator",
            Box::new(|a| a.totp.as_mut().unwrap().secret.ciphertext = vec![0; 5000]),
        ),
        (
            "differ only by case",
            Box::new(|a| a.name = "Mallory".into()),
        ),
    ];
    for (why, edit) in cases {
        let mut bad = image.clone();
        edit(bad.accounts.iter_mut().find(|a| a.name == "alice").unwrap());
        let forged = dir.path().join("bad.bin");
        // Tagged with the right key: what is refused here is the content.
        std::fs::write(&forged, app::backup_file::encode_for_tests(&bad, &key)).unwrap();
        let err = app::restore(&paths, &forged, T0 + 100).unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
        assert!(!err.to_string().contains('\u{1b}'), "{err:?}");
        std::fs::remove_file(&forged).unwrap();
    }
}

#[test]
fn a_restore_is_audited_and_never_reuses_an_aside_name() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (alice_codes, _, _) = two_accounts_backed_up(&paths, &clock, &file);
    open(&paths, &clock)
        .login("alice", PASSWORD, Some(&alice_codes[1]))
        .unwrap();
    let first = app::restore(&paths, &file, T0 + 100).unwrap();
    assert_eq!(first.codes_revived, ["alice"]);
    use sparekey::core::audit::AuditKind;
    let events = open(&paths, &clock).audit_log(None, 1_000).unwrap();
    let last: Vec<_> = events
        .iter()
        .rev()
        .take(2)
        .map(|e| (e.account.as_str(), &e.kind))
        .collect();
    assert_eq!(
        last,
        [
            ("alice", &AuditKind::UsedCodesRevived { count: 1 }),
            ("store:restore", &AuditKind::StoreRestored { accounts: 2 }),
        ]
    );
    let second = app::restore(&paths, &file, T0 + 100).unwrap();
    assert!(second.codes_revived.is_empty(), "nothing used since");
    let (a, b) = (
        first.previous_store.unwrap(),
        second.previous_store.unwrap(),
    );
    assert!(a.ends_with("store.replaced-20261128T120140Z"), "{a:?}");
    assert!(b.ends_with("store.replaced-20261128T120140Z-2"), "{b:?}");
    assert!(a.exists() && b.exists());
    assert!(!paths.data_dir.join("store.restoring").exists());
    assert!(!paths.data_dir.join("store.restored").exists());
}

#[test]
fn a_restore_killed_at_any_moment_leaves_the_old_store_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    open(&paths, &clock)
        .create_account("alice", PASSWORD)
        .unwrap();
    app::backup_store(&paths, &file).unwrap();
    let (old, new): (&[&str], &[&str]) = (&["alice", "bob"], &["alice"]);
    open(&paths, &clock)
        .create_account("bob", PASSWORD)
        .unwrap();
    let (mut saw_old, mut saw_new) = (0, 0);
    for round in 0..16u64 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sparekey"))
            .args(["restore", "--yes", file.to_str().unwrap()])
            .env("SPAREKEY_DATA_DIR", &paths.data_dir)
            .env("SPAREKEY_KEY_FILE", &paths.key_file)
            .env("HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kills from at once to 56 ms in, in 4 ms steps; the last round lets it finish.
        if round < 15 {
            std::thread::sleep(std::time::Duration::from_millis(round * 4));
            let _ = child.kill();
        }
        child.wait().unwrap();
        let service = open(&paths, &clock);
        let names: Vec<String> = service
            .list_accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        if names == old {
            saw_old += 1;
        } else {
            assert_eq!(
                names, new,
                "round {round}: neither the old store nor the new one"
            );
            saw_new += 1;
            service.create_account("bob", PASSWORD).unwrap();
        }
    }
    println!("kills left the old store {saw_old} times, the restored one {saw_new} times");
    assert!(saw_new > 0, "the restore left to finish did not restore");
}

#[test]
fn a_backup_carries_whether_the_codes_were_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let backup_file = dir.path().join("backup.bin");
    {
        let service = open(&paths, &clock);
        enrolled(&service, &clock, "alice");
        service.create_account("bob", PASSWORD).unwrap();
        let e = service.begin_enrollment("bob", None).unwrap();
        service
            .confirm_enrollment("bob", &code_for(&e.secret, clock.now_for_tests()))
            .unwrap();
    }
    app::backup_store(&paths, &backup_file).unwrap();
    app::restore(&paths, &backup_file, T0 + 100).unwrap();
    let service = open(&paths, &clock);
    let confirmed = |name: &str| service.code_status(name).unwrap().confirmed_at;
    assert_eq!(confirmed("alice"), Some(T0), "confirmed when enrolled");
    assert_eq!(confirmed("bob"), None);
    let list = service.list_accounts().unwrap();
    let flags: Vec<_> = list
        .iter()
        .map(|a| (a.name.as_str(), a.codes_never_confirmed))
        .collect();
    assert_eq!(flags, [("alice", false), ("bob", true)]);
}

// ----- the streamed format (3) and the one before it (2) -------------------------------------

/// Each frame of a format-3 backup: its kind and its bytes' range (prefix and payload).
fn frames(bytes: &[u8]) -> Vec<(u8, std::ops::Range<usize>)> {
    use app::backup_file::{FRAME_END, FRAME_PREFIX};
    let magic = b"SPAREKEY-BACKUP\x00\x03";
    assert!(bytes.starts_with(magic), "a backup is written in format 3");
    let (mut at, mut frames) = (magic.len(), Vec::new());
    loop {
        let kind = bytes[at];
        let len = u32::from_be_bytes(bytes[at + 1..at + FRAME_PREFIX].try_into().unwrap());
        let end = at + FRAME_PREFIX + len as usize;
        frames.push((kind, at..end));
        at = end;
        if kind == FRAME_END {
            break;
        }
    }
    assert_eq!(bytes.len() - at, 32, "the tag follows the end frame");
    frames
}

#[test]
fn every_tampering_of_a_streamed_backup_is_refused_with_one_line() {
    use app::backup_file::{FRAME_ACCOUNT, FRAME_AUDIT, FRAME_END, FRAME_HEADER, FRAME_PREFIX};
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (alice_codes, mallory_codes, image) = two_accounts_backed_up(&paths, &clock, &file);
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let frames = frames(&bytes);
    let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
    let events = image.audit.len();
    assert!(events >= 2);
    let expected: Vec<u8> = [FRAME_HEADER, FRAME_ACCOUNT, FRAME_ACCOUNT]
        .into_iter()
        .chain(std::iter::repeat_n(FRAME_AUDIT, events))
        .chain([FRAME_END])
        .collect();
    assert_eq!(kinds, expected);
    let tag_at = bytes.len() - 32;
    let part = |i: usize| bytes[frames[i].1.clone()].to_vec();
    let (first_account, first_event, last_event) = (1, 3, 2 + events);

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let flip = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        b
    };
    // One flipped bit in each part: the magic, each frame's kind, length and payload, the tag.
    cases.push(("magic".into(), flip(5)));
    for (i, (_, range)) in frames.iter().enumerate() {
        cases.push((format!("kind of frame {i}"), flip(range.start)));
        cases.push((format!("length of frame {i}"), flip(range.start + 4)));
        cases.push((format!("payload of frame {i}"), flip(range.end - 1)));
        if range.len() > FRAME_PREFIX + 2 {
            let mid = (range.start + FRAME_PREFIX + range.end) / 2;
            cases.push((format!("middle of frame {i}"), flip(mid)));
        }
    }
    cases.push(("tag".into(), flip(tag_at + 7)));
    // Cut at every frame boundary, inside a frame, before and inside the tag, in the magic.
    for (i, (_, range)) in frames.iter().enumerate() {
        cases.push((
            format!("cut before frame {i}"),
            bytes[..range.start].to_vec(),
        ));
        cases.push((
            format!("cut inside frame {i}"),
            bytes[..range.end - 1].to_vec(),
        ));
    }
    cases.push(("cut before the tag".into(), bytes[..tag_at].to_vec()));
    cases.push((
        "cut inside the tag".into(),
        bytes[..bytes.len() - 1].to_vec(),
    ));
    cases.push(("cut in the magic".into(), bytes[..10].to_vec()));
    // Two frames swapped.
    let swapped = |a: usize, b: usize| {
        let (ra, rb) = (frames[a].1.clone(), frames[b].1.clone());
        [
            &bytes[..ra.start],
            &bytes[rb.clone()],
            &bytes[ra.end..rb.start],
            &bytes[ra],
            &bytes[rb.end..],
        ]
        .concat()
    };
    cases.push(("two accounts swapped".into(), swapped(1, 2)));
    cases.push((
        "two events swapped".into(),
        swapped(first_event, last_event),
    ));
    cases.push((
        "an account and an event swapped".into(),
        swapped(2, first_event),
    ));
    cases.push(("the header and an account swapped".into(), swapped(0, 1)));
    // A frame dropped or duplicated (in place), each in turn.
    for (i, (_, range)) in frames.iter().enumerate() {
        let dropped = [&bytes[..range.start], &bytes[range.end..]].concat();
        cases.push((format!("frame {i} dropped"), dropped));
        let doubled = [&bytes[..range.end], &part(i), &bytes[range.end..]].concat();
        cases.push((format!("frame {i} duplicated"), doubled));
    }
    // Frames added after the end: before the tag, after it.
    let end = frames[frames.len() - 1].1.clone();
    let before_tag = [&bytes[..end.end], &part(first_account), &bytes[end.end..]].concat();
    cases.push(("an account after the end frame".into(), before_tag));
    cases.push((
        "an account after the tag".into(),
        [bytes.clone(), part(first_account)].concat(),
    ));
    cases.push((
        "an event after the tag".into(),
        [bytes.clone(), part(first_event)].concat(),
    ));

    let forged = dir.path().join("forged.bin");
    let refused = |what: &str, content: &[u8]| -> String {
        std::fs::write(&forged, content).unwrap();
        let err = app::read_backup(&forged, &key).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{what}: {text}");
        assert!(!text.contains('\n'), "{what}: {text}");
        std::fs::remove_file(&forged).unwrap();
        text
    };
    for (what, content) in &cases {
        assert_ne!(content, &bytes, "{what}: nothing was changed");
        let text = refused(what, content);
        let said = ["truncated or altered", "unknown format", "another key"];
        assert!(said.iter().any(|s| text.contains(s)), "{what}: {text}");
    }
    // A swap, a drop or a duplicate keeps every frame whole: only the tag can tell.
    for what in [
        "two accounts swapped",
        "frame 3 dropped",
        "frame 1 duplicated",
    ] {
        let content = &cases.iter().find(|c| c.0 == what).unwrap().1;
        assert!(
            refused(what, content).contains("tag does not match"),
            "{what}"
        );
    }

    // A hostile length is refused before anything that size is allocated.
    let mut huge = bytes.clone();
    let at = frames[first_account].1.start + 1;
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let text = refused("a frame of 4 GiB", &huge);
    assert!(text.contains("4294967295 bytes, more than"), "{text}");

    // Another key: said as such.
    let other = sparekey::core::keys::MasterKey::from_bytes([0x17; 32]);
    std::fs::write(&forged, &bytes).unwrap();
    let err = app::read_backup(&forged, &other).unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");

    // The untouched file reads back as the image it was made of.
    assert_eq!(app::read_backup(&file, &key).unwrap(), image);

    // And a restore of a tampered one changes nothing.
    std::fs::write(&forged, swapped(1, 2)).unwrap();
    let err = app::restore(&paths, &forged, T0 + 100).unwrap_err();
    assert!(err.to_string().contains("tag does not match"), "{err}");
    assert!(
        !std::fs::read_dir(&paths.data_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("replaced")),
        "the live store was never moved"
    );
    alice_untouched(&paths, &clock, &alice_codes, &mallory_codes);
}

#[test]
fn a_backup_in_format_2_still_restores() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths(dir.path());
    let clock = Arc::new(ManualClock::new(T0));
    let file = dir.path().join("b.bin");
    let (alice_codes, _, image) = two_accounts_backed_up(&paths, &clock, &file);
    let key = app::key_file::read_key(&paths.key_file).unwrap();
    let v2 = dir.path().join("v2.bin");
    let bytes = app::backup_file::encode_v2_for_tests(&image, &key);
    assert!(bytes.starts_with(b"SPAREKEY-BACKUP\x00\x02"));
    std::fs::write(&v2, &bytes).unwrap();
    assert_eq!(app::read_backup(&v2, &key).unwrap(), image);
    // Altered, or read with another key, it is refused as before.
    let mut altered = bytes.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 1;
    let forged = dir.path().join("altered.bin");
    std::fs::write(&forged, &altered).unwrap();
    let err = app::read_backup(&forged, &key).unwrap_err();
    assert!(err.to_string().contains("tag does not match"), "{err}");
    let other = sparekey::core::keys::MasterKey::from_bytes([0x17; 32]);
    let err = app::read_backup(&v2, &other).unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");

    // A code used since comes back; the store is the backup's, with the restore's events.
    open(&paths, &clock)
        .login("alice", PASSWORD, Some(&alice_codes[1]))
        .unwrap();
    let restored = app::restore(&paths, &v2, T0 + 100).unwrap();
    assert_eq!(
        (restored.accounts, restored.audit_events),
        (2, image.audit.len())
    );
    assert_eq!(restored.codes_revived, ["alice"]);
    let now = open_store_keyed(&paths.store, &paths.key_file)
        .unwrap()
        .export_image()
        .unwrap();
    assert_eq!(now.accounts, image.accounts);
    assert_eq!(now.operator_password, image.operator_password);
    assert_eq!(now.audit[..image.audit.len()], image.audit[..]);
    let service = open(&paths, &clock);
    assert!(
        service
            .login("alice", PASSWORD, Some(&alice_codes[1]))
            .is_ok()
    );
}

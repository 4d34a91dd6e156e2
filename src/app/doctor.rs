//! `sparekey doctor`: one function per check of the environment (data dir, key file, store,
//! schema, key binding, records and their integrity tags, sealed secrets, clock), each
//! returning its own finding with what to fix. Owns the list and order of checks. Must never change anything on disk, and never
//! report a check it could not run as passed: that one is skipped, and says why.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::key_file::read_key;
use super::paths::Paths;
use crate::core::keys::MasterKey;
use crate::core::store::{Store, StoreError, StoreImage};
use crate::store::SCHEMA_VERSION;
use crate::store::sled_store::SledStore;

/// How long doctor waits for a store held by another process before skipping its checks.
const DOCTOR_LOCK_WAIT: Duration = Duration::from_millis(500);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Something needs fixing; the detail says what to do.
    Fix,
    /// The check could not run (the detail says why); it says nothing either way.
    Skipped,
}

/// One finding of `sparekey doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found, and when not ok, what to do about it.
    pub detail: String,
}

impl Check {
    fn ok(name: &'static str, detail: String) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail,
        }
    }
    fn fix(name: &'static str, detail: String) -> Self {
        Self {
            name,
            status: Status::Fix,
            detail,
        }
    }
    fn skipped(name: &'static str, why: &str) -> Self {
        Self {
            name,
            status: Status::Skipped,
            detail: format!("skipped: {why}"),
        }
    }
}

/// Runs every check, in order, and changes nothing.
pub fn doctor(paths: &Paths, now: i64) -> Vec<Check> {
    let (key_check, key) = key_file(paths);
    let (store_check, store) = store(paths);
    // Only the record key, in memory: doctor binds nothing and migrates nothing.
    if let (Some(store), Some(key)) = (&store, &key) {
        store.attach_key(&key.store_key());
    }
    let checkable = store
        .as_ref()
        .filter(|s| key.is_some() || s.schema() < SCHEMA_VERSION);
    let image = checkable.map(|s| s.export_image());
    let readable = match &image {
        Some(Ok(image)) => Some(image),
        _ => None,
    };
    vec![
        data_dir(paths),
        key_check,
        store_check,
        schema(store.as_ref()),
        key_binding(store.as_ref(), key.as_ref()),
        records(store.as_ref(), checkable),
        secrets(readable, key.as_ref()),
        hash_strength(readable),
        clock(now),
    ]
}

fn data_dir(paths: &Paths) -> Check {
    let dir = paths.data_dir.display();
    match fs::metadata(&paths.data_dir).map(|m| m.permissions().mode() & 0o777) {
        Err(_) => Check::fix(
            "data dir",
            format!("{dir} does not exist yet: it is created on first use"),
        ),
        Ok(0o700) => Check::ok("data dir", format!("{dir} (0700)")),
        Ok(m) => Check::fix("data dir", format!("{dir} is {m:04o}: run chmod 700 {dir}")),
    }
}

/// The key file check, and the key when it is usable.
fn key_file(paths: &Paths) -> (Check, Option<MasterKey>) {
    if paths.key_file.symlink_metadata().is_err() {
        let detail = format!(
            "{} is missing: if a store exists it cannot be used without it; restore it from your backup",
            paths.key_file.display()
        );
        return (Check::fix("key file", detail), None);
    }
    match read_key(&paths.key_file) {
        Err(e) => (Check::fix("key file", e.to_string()), None),
        Ok(key) => {
            let detail = format!(
                "{} (private to you, fingerprint {})",
                paths.key_file.display(),
                key.fingerprint()
            );
            (Check::ok("key file", detail), Some(key))
        }
    }
}

/// The store check, and the store when it opens.
fn store(paths: &Paths) -> (Check, Option<SledStore>) {
    if !paths.store.exists() {
        let detail = format!(
            "{} does not exist yet: it is created on first use",
            paths.store.display()
        );
        return (Check::ok("store", detail), None);
    }
    match SledStore::open(&paths.store, DOCTOR_LOCK_WAIT) {
        Ok(store) => {
            let detail = format!("{} opens", paths.store.display());
            (Check::ok("store", detail), Some(store))
        }
        Err(e @ StoreError::Busy { .. }) => {
            let why = format!("{e}; the checks of its contents are skipped too");
            (Check::skipped("store", &why), None)
        }
        Err(e) => {
            let detail = format!("{e}: restore it with 'sparekey restore FILE' from a backup");
            (Check::fix("store", detail), None)
        }
    }
}

/// Opening the store checked its schema version.
fn schema(store: Option<&SledStore>) -> Check {
    match store.map(SledStore::schema) {
        Some(SCHEMA_VERSION) => Check::ok("schema", format!("version {SCHEMA_VERSION}")),
        Some(old) => Check::ok(
            "schema",
            format!(
                "version {old}: it is migrated to version {SCHEMA_VERSION} the next time sparekey opens it with its key"
            ),
        ),
        None => Check::skipped("schema", "the store is not open"),
    }
}

fn key_binding(store: Option<&SledStore>, key: Option<&MasterKey>) -> Check {
    let (Some(store), Some(key)) = (store, key) else {
        return Check::skipped(
            "key binding",
            "needs a readable store and a usable key file",
        );
    };
    match store.key_fingerprint() {
        Err(e) => Check::fix("key binding", format!("{e}: restore from a backup")),
        // A store in use is never bound afresh: its fingerprint was removed.
        Ok(None) if store.holds_data() => Check::fix(
            "key binding",
            "the store holds data but its key fingerprint is missing (removed below sparekey): restore from a backup".into(),
        ),
        Ok(fingerprint) => binding_of(fingerprint, key),
    }
}

fn binding_of(fingerprint: Option<String>, key: &MasterKey) -> Check {
    match &fingerprint {
        Some(fp) if *fp != key.fingerprint() => Check::fix(
            "key binding",
            format!(
                "the store belongs to key {fp}, not to {}: use the right --key-file",
                key.fingerprint()
            ),
        ),
        Some(_) => Check::ok("key binding", "the key file belongs to this store".into()),
        None => Check::ok(
            "key binding",
            "the store is bound to no key yet: the next open binds it to this one".into(),
        ),
    }
}

/// Every record decodes and, in schema 2, its integrity tag verifies with the key.
fn records(store: Option<&SledStore>, checkable: Option<&SledStore>) -> Check {
    let Some(store) = checkable else {
        let why = match store {
            None => "the store is not open",
            Some(_) => "needs a usable key file to check every record's integrity tag",
        };
        return Check::skipped("records", why);
    };
    let audit = store.audit_events(None, usize::MAX).map(|e| e.len());
    match (store.check_records(), audit) {
        (Err(e), _) | (_, Err(e)) => Check::fix("records", format!("{e}: restore from a backup")),
        (Ok((count, damaged)), Ok(events)) if damaged.is_empty() => Check::ok(
            "records",
            format!("{count} accounts, {events} audit events, all readable and unaltered"),
        ),
        (Ok((_, damaged)), _) => Check::fix(
            "records",
            format!("{} records fail: {}", damaged.len(), damaged.join("; ")),
        ),
    }
}

/// Every sealed TOTP secret opens with the key.
fn secrets(image: Option<&StoreImage>, key: Option<&MasterKey>) -> Check {
    let (Some(image), Some(key)) = (image, key) else {
        return Check::skipped("secrets", "needs readable records and a usable key file");
    };
    let opens = image.accounts.iter().all(|a| {
        a.totp
            .as_ref()
            .is_none_or(|t| key.open(&t.secret, &a.name).is_ok())
    });
    if opens {
        Check::ok("secrets", "every TOTP secret opens with this key".into())
    } else {
        Check::fix(
            "secrets",
            "some TOTP secrets do not open with this key: wrong key file or altered records".into(),
        )
    }
}

/// Every stored hash costs at least the OWASP minimum; names those that do not.
fn hash_strength(image: Option<&StoreImage>) -> Check {
    const NAME: &str = "hash parameters";
    let Some(image) = image else {
        return Check::skipped(NAME, "needs readable records");
    };
    let weak = |phc: &str| crate::core::password::phc_params(phc).is_none_or(|p| p.below_owasp());
    let passwords: Vec<&str> = (image.accounts.iter())
        .filter(|a| weak(&a.password))
        .map(|a| a.name.as_str())
        .collect();
    let codes: Vec<&str> = (image.accounts.iter())
        .filter(|a| a.codes.as_ref().is_some_and(|c| c.params.below_owasp()))
        .map(|a| a.name.as_str())
        .collect();
    let mut found = Vec::new();
    if !passwords.is_empty() {
        found.push(format!("the passwords of {}", passwords.join(", ")));
    }
    if !codes.is_empty() {
        let names = codes.join(", ");
        found.push(format!(
            "the backup codes of {names} (run 'sparekey codes regenerate NAME')"
        ));
    }
    if image.operator_password.as_deref().is_some_and(weak) {
        found.push("the operator password".to_string());
    }
    if found.is_empty() {
        let detail = "every stored hash meets the OWASP minimum (Argon2id, 19 MiB, 2 passes)";
        Check::ok(NAME, detail.into())
    } else {
        Check::fix(
            NAME,
            format!("hashed below the OWASP minimum: {}", found.join("; ")),
        )
    }
}

fn clock(now: i64) -> Check {
    // 2024-01-01 .. 2100-01-01: outside that the clock is surely wrong, and TOTP codes with it.
    if (1_704_067_200..4_102_444_800).contains(&now) {
        Check::ok(
            "clock",
            "the system clock looks sane (TOTP needs it within a minute of real time)".into(),
        )
    } else {
        Check::fix("clock", "the system clock is far off (not between 2024 and 2100): TOTP codes will not match; set the time (e.g. enable NTP)".into())
    }
}

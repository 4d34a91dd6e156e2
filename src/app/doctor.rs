//! `sparekey doctor`: one function per check of the environment (data dir, key file, store,
//! schema, key binding, records and their integrity tags, sealed secrets, clock; on PostgreSQL
//! also the server's durability settings), each returning its own finding with what to fix.
//! Owns the list and order of checks. A fresh install (nothing created yet) is fine, not a
//! failure. Must never change anything on disk, and never report a check it could not run as
//! passed: that one is skipped, and says why.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::key_file::read_key;
use super::paths::Paths;
use crate::core::keys::{MasterKey, StoreKey};
use crate::core::store::{Store, StoreError, StoreImage};
use crate::store::SCHEMA_VERSION;
use crate::store::location::PostgresTarget;
use crate::store::postgres::PostgresStore;
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

/// What doctor reads of a store beyond the trait, from either backend.
trait Inspected: Store {
    fn schema(&self) -> u32;
    fn attach_key(&self, key: &StoreKey);
    fn key_fingerprint(&self) -> Result<Option<String>, StoreError>;
    fn check_records(&self) -> Result<(usize, Vec<String>), StoreError>;
}

macro_rules! inspected {
    ($t:ty) => {
        impl Inspected for $t {
            fn schema(&self) -> u32 {
                <$t>::schema(self)
            }
            fn attach_key(&self, key: &StoreKey) {
                <$t>::attach_key(self, key)
            }
            fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
                <$t>::key_fingerprint(self)
            }
            fn check_records(&self) -> Result<(usize, Vec<String>), StoreError> {
                <$t>::check_records(self)
            }
        }
    };
}
inspected!(SledStore);
inspected!(PostgresStore);

/// Runs every check, in order, and changes nothing.
pub fn doctor(paths: &Paths, now: i64) -> Vec<Check> {
    let (key_check, key) = key_file(paths);
    let (store_check, store, durability) = match &paths.postgres {
        Some(target) => postgres_store(target),
        None => {
            let (check, store) = store(paths);
            (
                check,
                store.map(|s| Box::new(s) as Box<dyn Inspected>),
                None,
            )
        }
    };
    let store = store.as_deref();
    // Only the record key, in memory: doctor binds nothing and migrates nothing.
    if let (Some(store), Some(key)) = (store, &key) {
        store.attach_key(&key.store_key());
    }
    let checkable = store.filter(|s| key.is_some() || s.schema() < SCHEMA_VERSION);
    let image = checkable.map(|s| s.export_image());
    let readable = match &image {
        Some(Ok(image)) => Some(image),
        _ => None,
    };
    let data_dir = match &paths.postgres {
        Some(_) => Check::skipped("data dir", "the store is a PostgreSQL database"),
        None => data_dir(paths),
    };
    let mut checks = vec![
        data_dir,
        key_check,
        store_check,
        schema(store),
        key_binding(store, key.as_ref()),
        records(store, checkable),
        secrets(readable, key.as_ref()),
        hash_strength(readable),
        clock(now),
        clock_sync(system_clock_sync()),
        audit_times(readable, now),
    ];
    checks.extend(durability);
    checks
}

/// The PostgreSQL store check (never creating anything), the store when it opens, and the
/// check of the server's durability settings.
fn postgres_store(target: &PostgresTarget) -> (Check, Option<Box<dyn Inspected>>, Option<Check>) {
    match PostgresStore::open(target, false) {
        Ok(store) => {
            let durability = durability(&store);
            let detail = format!("PostgreSQL at {} opens", target.display);
            (
                Check::ok("store", detail),
                Some(Box::new(store)),
                Some(durability),
            )
        }
        Err(e) => (Check::fix("store", e.to_string()), None, None),
    }
}

/// What a used code needs to stay used across a crash or a failover: commits flushed
/// (`fsync`, `synchronous_commit`), and for a failover a synchronous standby.
fn durability(store: &PostgresStore) -> Check {
    const NAME: &str = "durability";
    let settings = match store.server_settings() {
        Ok(settings) => settings,
        Err(e) => return Check::fix(NAME, e.to_string()),
    };
    let get = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let shown = settings
        .iter()
        .map(|(n, v)| format!("{n}={}", if v.is_empty() { "''" } else { v }))
        .collect::<Vec<_>>()
        .join(", ");
    if get("fsync") != "on" {
        return Check::fix(
            NAME,
            format!("{shown}: set fsync = on, or a crash can bring used codes back"),
        );
    }
    if get("synchronous_standby_names").is_empty() {
        return Check::ok(
            NAME,
            format!(
                "{shown}: commits are durable on this server; no synchronous standby, so a failover to a replica can lose the last changes (see README, Several login hosts)"
            ),
        );
    }
    Check::ok(
        NAME,
        format!("{shown}: commits wait for a synchronous standby"),
    )
}

/// What a check says about something a fresh install has not made yet: nothing to fix.
const NOT_CREATED: &str =
    "(not created yet: the first command that creates an account or an operator password makes it)";

fn data_dir(paths: &Paths) -> Check {
    let dir = paths.data_dir.display();
    match fs::metadata(&paths.data_dir).map(|m| m.permissions().mode() & 0o777) {
        Err(_) => Check::ok("data dir", format!("{dir} {NOT_CREATED}")),
        Ok(0o700) => Check::ok("data dir", format!("{dir} (0700)")),
        Ok(m) => Check::fix("data dir", format!("{dir} is {m:04o}: run chmod 700 {dir}")),
    }
}

/// The key file check, and the key when it is usable.
fn key_file(paths: &Paths) -> (Check, Option<MasterKey>) {
    if paths.key_file.symlink_metadata().is_err() {
        if !paths.store.exists() {
            let detail = format!("{} {NOT_CREATED}", paths.key_file.display());
            return (Check::ok("key file", detail), None);
        }
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
        let detail = format!("{} {NOT_CREATED}", paths.store.display());
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
fn schema(store: Option<&dyn Inspected>) -> Check {
    match store.map(|s| s.schema()) {
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

fn key_binding(store: Option<&dyn Inspected>, key: Option<&MasterKey>) -> Check {
    let (Some(store), Some(key)) = (store, key) else {
        return Check::skipped(
            "key binding",
            "needs a readable store and a usable key file",
        );
    };
    match store.key_fingerprint() {
        Err(e) => Check::fix("key binding", format!("{e}: restore from a backup")),
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
fn records(store: Option<&dyn Inspected>, checkable: Option<&dyn Inspected>) -> Check {
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
        .filter(|a| a.password.as_deref().is_some_and(weak))
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

/// Whether the system keeps the clock synchronised, as far as it can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClockSync {
    Synchronised,
    NotSynchronised,
    /// Nothing could tell (no timedatectl, no systemd, no answer): the reason.
    Unknown(String),
}

/// How long doctor waits for `timedatectl` before it gives up on asking.
const TIMEDATECTL_WAIT: Duration = Duration::from_secs(3);

/// Asks systemd (`timedatectl show -p NTPSynchronized`) whether the clock is synchronised. The
/// kernel's own answer (adjtimex) is not reachable without unsafe code here, so where systemd
/// cannot answer the check is skipped, never passed.
fn system_clock_sync() -> ClockSync {
    use std::process::{Command, Stdio};
    let child = Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return ClockSync::Unknown(format!("timedatectl cannot be run ({e})")),
    };
    let deadline = std::time::Instant::now() + TIMEDATECTL_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return ClockSync::Unknown("timedatectl did not answer".into());
            }
        }
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => {
            parse_ntp_synchronized(&String::from_utf8_lossy(&out.stdout))
        }
        Ok(_) => ClockSync::Unknown("timedatectl could not ask systemd (no systemd here?)".into()),
        Err(e) => ClockSync::Unknown(format!("timedatectl failed ({e})")),
    }
}

/// Reads `NTPSynchronized=yes|no` from `timedatectl show` output.
fn parse_ntp_synchronized(output: &str) -> ClockSync {
    let value = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("NTPSynchronized="));
    match value {
        Some("yes") => ClockSync::Synchronised,
        Some("no") => ClockSync::NotSynchronised,
        _ => ClockSync::Unknown("timedatectl did not say whether the clock is synchronised".into()),
    }
}

fn clock_sync(sync: ClockSync) -> Check {
    const NAME: &str = "clock sync";
    match sync {
        ClockSync::Synchronised => Check::ok(NAME, "the system clock is synchronised (NTP, per timedatectl)".into()),
        ClockSync::NotSynchronised => Check::fix(
            NAME,
            "the system clock is not synchronised: TOTP codes fail once it drifts; enable NTP (timedatectl set-ntp true) or start chrony or ntpd".into(),
        ),
        ClockSync::Unknown(why) => Check::skipped(
            NAME,
            &format!("cannot tell whether the clock is synchronised: {why}"),
        ),
    }
}

/// How far in the future an audit event may be dated before the clock is suspect: more than
/// the drift TOTP tolerates.
const FUTURE_SLACK_SECS: i64 = 120;

/// Audit events dated after `now`: written while the clock ran ahead, or the clock is behind
/// now. Either way TOTP and throttling went by a wrong time.
fn audit_times(image: Option<&StoreImage>, now: i64) -> Check {
    const NAME: &str = "audit times";
    let Some(image) = image else {
        return Check::skipped(NAME, "needs readable records");
    };
    let future: Vec<i64> = (image.audit.iter())
        .map(|e| e.at)
        .filter(|&at| at > now + FUTURE_SLACK_SECS)
        .collect();
    match future.iter().max() {
        None => Check::ok(NAME, "no audit event is dated in the future".into()),
        Some(&latest) => Check::fix(
            NAME,
            format!(
                "{} dated in the future (the latest {}): the clock is behind now, or was ahead then; check it against real time",
                if future.len() == 1 {
                    "1 audit event is".to_string()
                } else {
                    format!("{} audit events are", future.len())
                },
                crate::core::time_text::utc_iso(latest)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedatectl_output_is_read_and_anything_else_is_unknown() {
        assert_eq!(
            parse_ntp_synchronized("NTPSynchronized=yes\n"),
            ClockSync::Synchronised
        );
        assert_eq!(
            parse_ntp_synchronized("NTPSynchronized=no\n"),
            ClockSync::NotSynchronised
        );
        for unclear in [
            "",
            "NTPSynchronized=\n",
            "Timezone=UTC\n",
            "NTPSynchronized=maybe",
        ] {
            assert!(
                matches!(parse_ntp_synchronized(unclear), ClockSync::Unknown(_)),
                "{unclear:?}"
            );
        }
    }

    #[test]
    fn an_unknown_sync_state_is_skipped_never_ok() {
        let check = clock_sync(ClockSync::Unknown("no timedatectl".into()));
        assert_eq!(check.status, Status::Skipped);
        assert!(check.detail.starts_with("skipped: "), "{}", check.detail);
        assert_eq!(clock_sync(ClockSync::NotSynchronised).status, Status::Fix);
        assert_eq!(clock_sync(ClockSync::Synchronised).status, Status::Ok);
    }

    #[test]
    fn a_fresh_install_is_ok_not_created_yet() {
        let dir = tempfile::tempdir().unwrap();
        let paths =
            Paths::resolve(Some(dir.path().join("data")), Some(dir.path().join("key"))).unwrap();
        let checks = doctor(&paths, 1_800_000_000);
        for name in ["data dir", "key file", "store"] {
            let check = checks.iter().find(|c| c.name == name).unwrap();
            assert_eq!(check.status, Status::Ok, "{check:?}");
            assert!(check.detail.contains("(not created yet"), "{check:?}");
        }
        assert!(checks.iter().all(|c| c.status != Status::Fix), "{checks:?}");
        assert!(!dir.path().join("data").exists() && !dir.path().join("key").exists());
    }
}

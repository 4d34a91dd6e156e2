//! Shared set-up of every integration test binary (each includes this module by path): a
//! service with a manual clock, seeded entropy and cheap Argon2 parameters (these tests are not
//! about the parameters), and in [`console`] the console driven by key events. Each binary uses
//! only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod console;
pub mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sparekey::app::Paths;
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::error::{Error, RejectReason};
use sparekey::core::password::HashParams;
use sparekey::core::service::{Config, Service};
use sparekey::core::store::StoreError;
use sparekey::core::totp::{self, TotpSecret};
use sparekey::store::sled_store::SledStore;

/// The password of every account the tests create.
pub const PASSWORD: &str = "correct horse battery";

/// The library tests' start: 2026-11-28T12:00:00Z, on a 30 s step boundary, so a test can move
/// a whole step without landing in the next one by accident.
pub const T0: i64 = 1_795_867_200;

/// The console tests' start: 2024-05-01T12:34:50Z, 20 s into a TOTP step. The snapshots and the
/// README's pictures show dates, ages and countdowns from it, so it differs from [`T0`] on
/// purpose and must not change.
pub const CONSOLE_T0: i64 = 1_714_566_890;

pub fn test_config() -> Config {
    Config {
        hash_params: HashParams::TEST_ONLY,
        ..Config::default()
    }
}

pub fn memory_service(seed: u64) -> (Service, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = sparekey::app::open_in_memory(
        test_config(),
        clock.clone(),
        Box::new(SeededEntropy::new(seed)),
    );
    (service, clock)
}

/// A service on the sled store at `paths`, with the test config, `clock` and entropy seeded
/// with `seed`.
pub fn open_disk(paths: &Paths, clock: &Arc<ManualClock>, seed: u64) -> Result<Service, Error> {
    sparekey::app::open_with(
        paths,
        test_config(),
        clock.clone(),
        Box::new(SeededEntropy::new(seed)),
    )
}

/// Opens the sled store at `path` directly, waiting up to 5 s for a process that still holds it
/// (a service just dropped, a child just killed) to let go. Tests of the lock itself pass their
/// own wait to `SledStore::open`.
pub fn open_store(path: &Path) -> Result<SledStore, StoreError> {
    SledStore::open(path, Duration::from_secs(5))
}

/// Writes `line` to the terminal even while the test harness captures output (it captures only
/// `print!`/`eprint!`), so a skip or a loop count shows in a plain `cargo test`.
pub fn notice(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Set to `1` (`.ci/run` exports it) for the full counts of the long loops; unset, they run a
/// quick count so a local `cargo test` stays short. It also makes a test that cannot run here
/// (see [`needs_root`]) fail instead of skipping: CI must run everything.
pub const FULL_TESTS_VAR: &str = "SPAREKEY_FULL_TESTS";

fn full_run() -> bool {
    std::env::var(FULL_TESTS_VAR).as_deref() == Ok("1")
}

/// Says `skipped: <why>: <test>` visibly, for a test about to return without checking
/// anything. Under [`FULL_TESTS_VAR`]`=1` (CI) it fails the test instead: CI must run every test,
/// so a skip there is a broken set-up, not a pass.
pub fn skip(why: &str) {
    // libtest names each test's thread after the test.
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        !full_run(),
        "{test} could not run ({why}), and {FULL_TESTS_VAR}=1 runs every test"
    );
    notice(&format!("skipped: {why}: {test}"));
}

/// Whether the process runs as root; if not, [`skip`]s with `needs root to <what>`.
pub fn needs_root(what: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user: no system call of our own needed.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        skip(&format!("needs root to {what}"));
    }
    root
}

/// How many rounds a long loop runs: the number in `override_var` if it is set, else `full`
/// with [`FULL_TESTS_VAR`]`=1`, else `quick`. Prints the count and where it came from, so a
/// log shows how much a run proved.
pub fn rounds(what: &str, override_var: &str, quick: usize, full: usize) -> usize {
    let overridden = std::env::var(override_var)
        .ok()
        .and_then(|v| v.parse().ok());
    let (count, source) = match overridden {
        Some(n) => (n, format!("from {override_var}")),
        None if full_run() => (full, format!("full count, {FULL_TESTS_VAR}=1")),
        None => (
            quick,
            format!("quick count; {FULL_TESTS_VAR}=1 runs {full}"),
        ),
    };
    notice(&format!(
        "{what}: {count} ({source}; {override_var}=N sets it)"
    ));
    count
}

/// [`open_store`] with the key of `key_file` bound (schema 2 checks every record with it, and
/// migrates a schema-1 store).
pub fn open_store_keyed(path: &Path, key_file: &Path) -> Result<SledStore, StoreError> {
    use sparekey::core::store::Store;
    let store = open_store(path)?;
    let key = sparekey::app::key_file::read_key(key_file).expect("a readable key file");
    store.bind_key(&key.store_key())?;
    Ok(store)
}

/// The reason of a refused login; panics on any other error.
pub fn reason(e: Error) -> RejectReason {
    match e {
        Error::Rejected(r) => r.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

pub fn code_for(secret: &TotpSecret, at: i64) -> String {
    totp::code_at(secret.as_bytes(), at, Default::default()).expect("valid params")
}

/// Creates `name`, enrolls and confirms an authenticator; returns its secret and the codes in
/// display form. The clock is left one step after the confirming code's step.
pub fn enrolled(service: &Service, clock: &ManualClock, name: &str) -> (TotpSecret, Vec<String>) {
    service.create_account(name, PASSWORD).unwrap();
    let enrollment = service.begin_enrollment(name, Some(PASSWORD)).unwrap();
    let code = code_for(&enrollment.secret, clock.now_for_tests());
    let issued = service.confirm_enrollment(name, &code).unwrap();
    clock.advance(30);
    let codes = issued
        .codes
        .iter()
        .map(|c| c.display().to_string())
        .collect();
    (enrollment.secret, codes)
}

pub trait NowForTests {
    fn now_for_tests(&self) -> i64;
}

impl NowForTests for ManualClock {
    fn now_for_tests(&self) -> i64 {
        use sparekey::core::clock::Clock;
        self.now()
    }
}

/// Names of the snapshot files (`snap.*`, complete or `.generating`) in a sled store's
/// directory, sorted.
pub fn snapshot_files(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snap."))
        .collect();
    names.sort();
    names
}

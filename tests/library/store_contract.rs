//! The store contract, one body per property, run unchanged against every backend: the memory
//! store, sled, and PostgreSQL (its own schema per test, so tests run in parallel); the
//! properties of stored bytes (a tampered record) on sled and PostgreSQL only, since the memory
//! store keeps no bytes. Parallel attempts run on one handle shared by threads where a backend
//! allows only one (sled), else on a handle per thread (memory, PostgreSQL: a connection each).
//! Without
//! `SPAREKEY_TEST_POSTGRES_URL` the PostgreSQL cases say "skipped: no PostgreSQL"; under
//! `SPAREKEY_FULL_TESTS=1` (CI) they fail instead.

use std::sync::{Arc, Barrier};

use crate::support::*;
use sparekey::core::account::Account;
use sparekey::core::audit::AuditKind;
use sparekey::core::clock::ManualClock;
use sparekey::core::clock::UnixTime;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::error::{Error, ErrorKind, RejectReason};
use sparekey::core::keys::MasterKey;
use sparekey::core::kiosk::OPERATOR_AUDIT_NAME;
use sparekey::core::service::{Config, Service};
use sparekey::core::store::{KeyBinding, Reservation, SettleCheck, Settlement, Store, StoreError};
use sparekey::core::throttle::{Gate, ThrottlePolicy};
use sparekey::store::location::{PostgresTarget, StoreLocation};
use sparekey::store::memory::MemoryStore;
use sparekey::store::postgres::PostgresStore;

/// The test server, as `.ci/postgres` exports it.
pub const POSTGRES_URL_VAR: &str = "SPAREKEY_TEST_POSTGRES_URL";

/// Replaces, below the trait, the stored record of the first account with the second's.
type Tamper = Box<dyn Fn(&str, &str)>;

/// A meta record that binding writes, by what it holds (each backend names its own).
#[derive(Debug, Clone, Copy)]
pub enum Meta {
    Fingerprint,
    OperatorPassword,
    OperatorFailures,
}

/// Removes a meta record below the trait; whether it was there.
type RemoveMeta = Box<dyn Fn(Meta) -> bool>;

/// One backend under test: opens handles on the same store (sled: one at a time).
pub struct Backend {
    open: Box<dyn Fn() -> Box<dyn Store>>,
    /// Whether several handles may be open at once (else threads share one).
    many_handles: bool,
    /// Whether the store times changes by its own clock rather than the caller's `at` (see
    /// the `Store` trait's doc): PostgreSQL, which takes the database's.
    own_clock: bool,
    /// Edits a stored record below the trait (`None`: the backend stores no bytes).
    tamper: Option<Tamper>,
    /// Removes a meta record below the trait (`None`: the backend stores no bytes).
    remove_meta: Option<RemoveMeta>,
    _keep: Box<dyn std::any::Any>,
}

/// The key every handle of one test shares, as the hosts sharing a database share the key file.
fn test_key() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

impl Backend {
    pub fn store(&self) -> Box<dyn Store> {
        (self.open)()
    }

    /// A new handle with the test key bound.
    pub fn bound(&self) -> Box<dyn Store> {
        let store = self.store();
        let binding = store.bind_key(&test_key().store_key()).unwrap();
        assert!(
            !matches!(binding, KeyBinding::Mismatch { .. }),
            "{binding:?}"
        );
        store
    }

    /// A service on a new handle, with the test key.
    pub fn service(&self, clock: &Arc<ManualClock>) -> Service {
        self.service_with(clock, test_config())
    }

    /// Checks that a change made at `at` was stamped `stamped`: `at` itself, or on a store
    /// with its own clock the real time (within a minute), whatever `at` said.
    pub fn assert_stamp(&self, stamped: UnixTime, at: UnixTime) {
        if self.own_clock {
            let now = unix_now();
            assert!(
                (stamped - now).abs() <= 60,
                "stamped {stamped}, not by the store's clock (now {now}; the caller said {at})"
            );
        } else {
            assert_eq!(stamped, at);
        }
    }

    /// Lets `seconds` pass for the store: at once for a store on the caller's clock (its
    /// callers pass later times), by sleeping for one with its own.
    pub fn let_pass(&self, seconds: u64) {
        if self.own_clock {
            std::thread::sleep(std::time::Duration::from_millis(seconds * 1_000 + 100));
        }
    }

    pub fn service_with(&self, clock: &Arc<ManualClock>, config: Config) -> Service {
        Service::new(
            self.bound(),
            clock.clone(),
            Box::new(SeededEntropy::new(11)),
            test_key(),
            config,
        )
        .unwrap()
    }
}

pub fn unix_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as UnixTime
}

pub fn memory() -> Backend {
    let store = MemoryStore::new();
    Backend {
        open: Box::new(move || Box::new(store.clone())),
        many_handles: true,
        own_clock: false,
        tamper: None,
        remove_meta: None,
        _keep: Box::new(()),
    }
}

pub fn sled() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (raw, raw_meta) = (path.clone(), path.clone());
    Backend {
        open: Box::new(move || Box::new(open_store(&path).unwrap())),
        many_handles: false,
        own_clock: false,
        tamper: Some(Box::new(move |victim, source| {
            let db = sparekey::store::sled_store::SledStore::raw_open(&raw).unwrap();
            let tree = db.open_tree("accounts.v2").unwrap();
            let record = tree.get(source).unwrap().unwrap();
            tree.insert(victim, record).unwrap();
            db.flush().unwrap();
        })),
        remove_meta: Some(Box::new(move |meta| {
            let db = sparekey::store::sled_store::SledStore::raw_open(&raw_meta).unwrap();
            let key = match meta {
                Meta::Fingerprint => "key_fingerprint",
                Meta::OperatorPassword => "operator_password.v2",
                Meta::OperatorFailures => "operator_failures.v2",
            };
            let was = db.remove(key).unwrap().is_some();
            db.flush().unwrap();
            was
        })),
        _keep: Box::new(dir),
    }
}

/// A schema of its own in the test server, dropped at the end; `None` (after saying so) when
/// there is no server. Its sessions carry the schema's name as their application name, so a
/// test can find (and cut) its own.
pub struct PgSchema {
    pub target: PostgresTarget,
    /// The location string of this schema, for `--store`.
    pub url: String,
    /// The server's own URL, for set-up and inspection.
    pub admin: String,
    pub schema: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = ::postgres::Client::connect(&self.admin, ::postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

pub fn pg_schema() -> Option<PgSchema> {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        skip(&format!(
            "no PostgreSQL (set {POSTGRES_URL_VAR}, e.g. '. .ci/postgres')"
        ));
        return None;
    };
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls)
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set but unreachable: {e}"));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let scoped = if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}&application_name={schema}")
    } else {
        format!("{url} options='-c search_path={schema}' application_name={schema}")
    };
    let StoreLocation::Postgres(target) = StoreLocation::parse(&scoped).unwrap() else {
        panic!("{POSTGRES_URL_VAR} is not a PostgreSQL location: {url}");
    };
    Some(PgSchema {
        target: *target,
        url: scoped,
        admin: url,
        schema,
    })
}

pub fn postgres() -> Option<Backend> {
    let schema = pg_schema()?;
    let target = schema.target.clone();
    let (admin, name) = (schema.admin.clone(), schema.schema.clone());
    let (meta_admin, meta_schema) = (admin.clone(), name.clone());
    Some(Backend {
        open: Box::new(move || Box::new(PostgresStore::open(&target, true).unwrap())),
        many_handles: true,
        own_clock: true,
        tamper: Some(Box::new(move |victim, source| {
            let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls).unwrap();
            let sql = format!(
                "UPDATE {name}.sparekey_accounts SET record = \
                 (SELECT record FROM {name}.sparekey_accounts WHERE name = $2) WHERE name = $1"
            );
            assert_eq!(client.execute(&sql, &[&victim, &source]).unwrap(), 1);
        })),
        remove_meta: Some(Box::new(move |meta| {
            let mut client = ::postgres::Client::connect(&meta_admin, ::postgres::NoTls).unwrap();
            let key = match meta {
                Meta::Fingerprint => "key_fingerprint",
                Meta::OperatorPassword => "operator_password",
                Meta::OperatorFailures => "operator_failures",
            };
            let sql = format!("DELETE FROM {meta_schema}.sparekey_meta WHERE key = $1");
            client.execute(&sql, &[&key]).unwrap() == 1
        })),
        _keep: Box::new(schema),
    })
}

/// One `#[test]` per backend for each body.
macro_rules! contract {
    ($($body:ident),* $(,)?) => {
        mod memory { $( #[test] fn $body() { super::$body(&super::memory()) } )* }
        mod sled { $( #[test] fn $body() { super::$body(&super::sled()) } )* }
        mod postgres {
            $( #[test] fn $body() {
                if let Some(backend) = super::postgres() { super::$body(&backend) }
            } )*
        }
    };
}

/// [`contract!`] for the properties of stored bytes: sled and PostgreSQL.
macro_rules! contract_stored {
    ($($body:ident),* $(,)?) => {
        mod stored_sled { $( #[test] fn $body() { super::$body(&super::sled()) } )* }
        mod stored_postgres {
            $( #[test] fn $body() {
                if let Some(backend) = super::postgres() { super::$body(&backend) }
            } )*
        }
    };
}

contract!(
    backup_code_is_consumed_once,
    totp_step_replay_is_refused,
    failures_are_counted_and_cleared,
    regenerate_replaces_the_whole_set,
    racing_logins_spend_one_code_once,
    pages_follow_name_order,
    key_binding_is_kept,
    operator_password_is_set_once,
    an_operator_settle_writes_its_events,
    export_then_import_gives_the_same_image,
    changes_survive_a_new_handle,
    parallel_attempts_never_verify_more_than_the_policy,
    events_are_written_with_their_change_and_only_then,
    the_events_of_one_change_keep_their_order,
    refusals_in_one_delay_window_are_one_event,
    names_are_unique_regardless_of_case,
);

contract_stored!(
    a_tampered_record_is_damage,
    a_store_in_use_is_never_bound_afresh,
    a_removed_operator_failure_record_unlocks_nothing,
    the_operator_failure_record_is_there_from_the_first_bind,
);

fn backup_code_is_consumed_once(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    let (_, codes) = enrolled(&service, &clock, "alice");
    service.login("alice", PASSWORD, Some(&codes[3])).unwrap();
    let again = service
        .login("alice", PASSWORD, Some(&codes[3]))
        .unwrap_err();
    assert_eq!(reason(again), RejectReason::BackupCodeAlreadyUsed);
    assert_eq!(service.code_status("alice").unwrap().remaining, 9);
    // The spend and its event were one step: exactly one event for that slot.
    let used: Vec<_> = service
        .audit_log(Some("alice"), 100)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, AuditKind::BackupCodeUsed { .. }))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        used,
        [AuditKind::BackupCodeUsed {
            slot: 3,
            remaining: 9
        }]
    );
}

fn totp_step_replay_is_refused(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    let (secret, _) = enrolled(&service, &clock, "bob");
    let code = code_for(&secret, clock.now_for_tests());
    service.login("bob", PASSWORD, Some(&code)).unwrap();
    let again = service.login("bob", PASSWORD, Some(&code)).unwrap_err();
    assert_eq!(reason(again), RejectReason::TotpReplay);
    clock.advance(30);
    let next = code_for(&secret, clock.now_for_tests());
    service.login("bob", PASSWORD, Some(&next)).unwrap();
}

fn failures_are_counted_and_cleared(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    enrolled(&service, &clock, "carol");
    for _ in 0..3 {
        let e = service
            .login("carol", PASSWORD, Some("000000"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
    }
    assert_eq!(
        service
            .account_summary("carol")
            .unwrap()
            .consecutive_failures,
        3
    );
    service.unlock("carol").unwrap();
    assert_eq!(
        service
            .account_summary("carol")
            .unwrap()
            .consecutive_failures,
        0
    );
}

fn regenerate_replaces_the_whole_set(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    let (secret, old) = enrolled(&service, &clock, "dave");
    let proof = service
        .step_up("dave", PASSWORD, &code_for(&secret, clock.now_for_tests()))
        .unwrap();
    let new = service.regenerate_codes("dave", &proof).unwrap();
    for code in &old[..2] {
        let e = service.login("dave", PASSWORD, Some(code)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected, "an old code still works");
    }
    let fresh = new.codes[0].display().to_string();
    service.login("dave", PASSWORD, Some(&fresh)).unwrap();
    assert_eq!(service.code_status("dave").unwrap().remaining, 9);
}

fn racing_logins_spend_one_code_once(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    let (_, codes) = enrolled(&service, &clock, "erin");
    let barrier = Barrier::new(6);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    service.login("erin", PASSWORD, Some(&codes[0])).is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    assert_eq!(service.code_status("erin").unwrap().remaining, 9);
}

fn pages_follow_name_order(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    // Byte order: upper case before lower case, non-ASCII last, on every backend.
    for name in ["delta", "Bravo", "alpha", "émile", "charlie"] {
        service.create_account(name, PASSWORD).unwrap();
    }
    let names = |page: Vec<sparekey::core::account::AccountSummary>| {
        page.into_iter().map(|a| a.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(service.list_accounts_page(None, 2).unwrap()),
        ["Bravo", "alpha"]
    );
    assert_eq!(
        names(service.list_accounts_page(Some("alpha"), 2).unwrap()),
        ["charlie", "delta"]
    );
    assert_eq!(
        names(service.list_accounts_page(Some("delta"), 2).unwrap()),
        ["émile"]
    );
    assert!(
        service
            .list_accounts_page(Some("émile"), 2)
            .unwrap()
            .is_empty()
    );
    assert_eq!(names(service.list_accounts().unwrap()).len(), 5);
}

fn key_binding_is_kept(backend: &Backend) {
    let store = backend.store();
    let (first, second) = (
        MasterKey::from_bytes([1; 32]),
        MasterKey::from_bytes([2; 32]),
    );
    assert_eq!(
        store.bind_key(&first.store_key()).unwrap(),
        KeyBinding::Bound
    );
    assert_eq!(
        store.bind_key(&first.store_key()).unwrap(),
        KeyBinding::Matches
    );
    assert_eq!(
        store.bind_key(&second.store_key()).unwrap(),
        KeyBinding::Mismatch {
            stored: first.fingerprint()
        }
    );
    drop(store);
    // A new handle, as the next process opens the store, gets the same answers.
    let again = backend.store();
    assert_eq!(
        again.bind_key(&second.store_key()).unwrap(),
        KeyBinding::Mismatch {
            stored: first.fingerprint()
        }
    );
    drop(again);
    let again = backend.store();
    assert_eq!(
        again.bind_key(&first.store_key()).unwrap(),
        KeyBinding::Matches
    );
}

fn operator_password_is_set_once(backend: &Backend) {
    let store = backend.bound();
    let none = |_: &bool| Vec::new();
    assert_eq!(store.operator_password().unwrap(), None);
    assert!(
        store
            .set_operator_password("$argon2id$first", T0, &none)
            .unwrap()
    );
    assert!(
        !store
            .set_operator_password("$argon2id$second", T0, &none)
            .unwrap()
    );
    assert_eq!(
        store.operator_password().unwrap().as_deref(),
        Some("$argon2id$first")
    );
    let policy = ThrottlePolicy::default();
    for at in [T0, T0 + 5] {
        let reserved = store.reserve_operator_attempt(&policy, at).unwrap();
        assert!(
            matches!(reserved, Reservation::Reserved { .. }),
            "{reserved:?}"
        );
        store.record_operator_failure(at, &|_| Vec::new()).unwrap();
    }
    let record = store.operator_failures().unwrap();
    assert_eq!(record.consecutive, 2);
    backend.assert_stamp(record.last_failure_at.unwrap(), T0 + 5);
    store
        .clear_operator_failures(T0 + 6, &|_| Vec::new())
        .unwrap();
    assert_eq!(store.operator_failures().unwrap().consecutive, 0);
}

fn an_operator_settle_writes_its_events(backend: &Backend) {
    let store = backend.bound();
    let policy = ThrottlePolicy::default();
    store.reserve_operator_attempt(&policy, T0).unwrap();
    let check = SettleCheck { policy };
    let signed_in = |outcome: &Settlement| match outcome {
        Settlement::Settled => vec![AuditKind::OperatorSignedIn],
        _ => Vec::new(),
    };
    assert_eq!(
        store
            .settle_operator_attempt(T0 + 1, &check, &signed_in)
            .unwrap(),
        Settlement::Settled
    );
    assert_eq!(store.operator_failures().unwrap().consecutive, 0);
    let events = store.audit_events(Some(OPERATOR_AUDIT_NAME), 10).unwrap();
    let kinds: Vec<&AuditKind> = events.iter().map(|e| &e.kind).collect();
    assert_eq!(kinds, [&AuditKind::OperatorSignedIn]);
    backend.assert_stamp(events[0].at, T0 + 1);
}

fn export_then_import_gives_the_same_image(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let image = {
        let service = backend.service(&clock);
        let (_, codes) = enrolled(&service, &clock, "frank");
        service.create_account("grace", PASSWORD).unwrap();
        service.login("frank", PASSWORD, Some(&codes[1])).unwrap();
        drop(service);
        backend.bound().export_image().unwrap()
    };
    assert_eq!(image.accounts.len(), 2);
    assert!(!image.audit.is_empty());
    // Into a fresh store of each kind: what comes back out is what went in.
    let others = std::env::var_os(POSTGRES_URL_VAR).and_then(|_| postgres());
    for target in [memory(), sled()].into_iter().chain(others) {
        let store = target.bound();
        store.import_image(&image).unwrap();
        assert_eq!(store.export_image().unwrap(), image);
        assert!(matches!(
            store.import_image(&image),
            Err(StoreError::Conflict(_))
        ));
    }
}

fn changes_survive_a_new_handle(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let codes = {
        let service = backend.service(&clock);
        let (_, codes) = enrolled(&service, &clock, "heidi");
        service.login("heidi", PASSWORD, Some(&codes[0])).unwrap();
        codes
    };
    let service = backend.service(&clock);
    let e = service
        .login("heidi", PASSWORD, Some(&codes[0]))
        .unwrap_err();
    assert_eq!(reason(e), RejectReason::BackupCodeAlreadyUsed);
    assert_eq!(service.code_status("heidi").unwrap().remaining, 9);
}

fn parallel_attempts_never_verify_more_than_the_policy(backend: &Backend) {
    // No delay before the lock, so only the lock bounds the attempts: every thread that got
    // past a stale gate check would verify, and count, one more guess. Wrong passwords: one
    // reservation per attempt, so the count is exact (store_postgres checks the same of wrong
    // codes sent by separate processes).
    let policy = ThrottlePolicy {
        free_failures: 1_000,
        lock_after: 3,
        ..ThrottlePolicy::default()
    };
    let config = Config {
        throttle: policy,
        ..test_config()
    };
    let clock = Arc::new(ManualClock::new(T0));
    let shared = backend.service_with(&clock, config.clone());
    let (secret, _) = enrolled(&shared, &clock, "uma");
    let threads = 8;
    // A handle (a connection) per thread where the backend allows several.
    let services: Vec<Option<Service>> = (0..threads)
        .map(|_| {
            backend
                .many_handles
                .then(|| backend.service_with(&clock, config.clone()))
        })
        .collect();
    let barrier = Barrier::new(threads);
    let right = code_for(&secret, clock.now_for_tests());
    let answers: Vec<Error> = std::thread::scope(|s| {
        let handles: Vec<_> = services
            .iter()
            .map(|own| {
                let service = own.as_ref().unwrap_or(&shared);
                let (barrier, right) = (&barrier, &right);
                s.spawn(move || {
                    barrier.wait();
                    service
                        .login("uma", "not the password", Some(right))
                        .unwrap_err()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let verified = answers
        .iter()
        .filter(|e| matches!(e, Error::Rejected(_)))
        .count();
    let locked = answers
        .iter()
        .filter(|e| matches!(e, Error::Locked(_)))
        .count();
    assert_eq!((verified, locked), (3, threads - 3), "{answers:?}");
    let summary = shared.account_summary("uma").unwrap();
    assert_eq!((summary.consecutive_failures, summary.locked), (3, true));
    // Locked at exactly the policy: now even the right password and code are refused.
    let refused = shared.login("uma", PASSWORD, Some(&right)).unwrap_err();
    assert!(matches!(refused, Error::Locked(_)), "{refused:?}");
}

/// The account `name` as the service created it (a template for records made below it).
fn created(backend: &Backend, name: &str) -> Account {
    let clock = Arc::new(ManualClock::new(T0));
    backend
        .service(&clock)
        .create_account(name, PASSWORD)
        .unwrap();
    backend.bound().load_account(name).unwrap().unwrap()
}

fn events_are_written_with_their_change_and_only_then(backend: &Backend) {
    let mut account = created(backend, "tom");
    account.name = "ursula".into();
    let store = backend.bound();
    let created = |_: &bool| vec![AuditKind::AccountCreated];
    assert!(store.insert_account(&account, &created).unwrap());
    assert!(!store.insert_account(&account, &created).unwrap(), "taken");
    let unlocked = |_: &bool| vec![AuditKind::Unlocked];
    assert!(store.clear_failures("ursula", T0 + 7, &unlocked).unwrap());
    // No change, no events: an absent account, a set that is not the stored one.
    assert!(!store.clear_failures("nobody", T0 + 8, &unlocked).unwrap());
    assert!(!store.delete_account("nobody", T0 + 8, &unlocked).unwrap());
    let check = sparekey::core::store::SettleCheck {
        policy: ThrottlePolicy::default(),
    };
    let consumed = store
        .consume_backup_code("ursula", 999, 0, T0 + 9, &check, &|_| {
            vec![AuditKind::Unlocked]
        })
        .unwrap();
    assert_eq!(
        consumed,
        sparekey::core::store::CodeConsumption::SetReplaced
    );
    let events = store.audit_events(Some("ursula"), 100).unwrap();
    let kinds: Vec<&AuditKind> = events.iter().map(|e| &e.kind).collect();
    assert_eq!(kinds, [&AuditKind::AccountCreated, &AuditKind::Unlocked]);
    backend.assert_stamp(events[0].at, account.created_at);
    backend.assert_stamp(events[1].at, T0 + 7);
    assert!(store.audit_events(Some("nobody"), 100).unwrap().is_empty());
}

/// Several events of one change (a backup-code login writes two) are logged in the order the
/// rule gives them, on an insert and on a change of a stored record alike.
fn the_events_of_one_change_keep_their_order(backend: &Backend) {
    let mut account = created(backend, "tess");
    account.name = "ulla".into();
    let store = backend.bound();
    let first = [
        AuditKind::TwoFactorEnrolled,
        AuditKind::AccountCreated,
        AuditKind::Locked,
    ];
    assert!(store.insert_account(&account, &|_| first.to_vec()).unwrap());
    let then = [
        AuditKind::Unlocked,
        AuditKind::TwoFactorReset,
        AuditKind::AccountRemoved,
    ];
    assert!(
        store
            .clear_failures("ulla", T0 + 7, &|_| then.to_vec())
            .unwrap()
    );
    let logged: Vec<AuditKind> = store
        .audit_events(Some("ulla"), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(logged, [first, then].concat());
}

fn refusals_in_one_delay_window_are_one_event(backend: &Backend) {
    created(backend, "vera");
    let store = backend.bound();
    let policy = ThrottlePolicy {
        free_failures: 1,
        base_delay_secs: 3,
        max_delay_secs: 3,
        lock_after: 10,
    };
    let reserved = |r: Reservation| matches!(r, Reservation::Reserved { .. });
    // One free failure, then a delay: the next attempts are refused, counted in one event.
    assert!(reserved(
        store.reserve_attempt("vera", &policy, T0).unwrap()
    ));
    for _ in 0..5 {
        let refused = store.reserve_attempt("vera", &policy, T0 + 1).unwrap();
        assert!(
            matches!(refused, Reservation::Refused(Gate::Delayed { .. })),
            "{refused:?}"
        );
    }
    store
        .note_refused_attempt("vera", Gate::Delayed { seconds_left: 1 }, T0 + 2)
        .unwrap();
    // A later window (the delay ran out, one more failure) starts a new event.
    backend.let_pass(3);
    let later = T0 + 100_000;
    assert!(reserved(
        store.reserve_attempt("vera", &policy, later).unwrap()
    ));
    let refused = store.reserve_attempt("vera", &policy, later + 1).unwrap();
    assert!(matches!(refused, Reservation::Refused(_)), "{refused:?}");
    let refusals: Vec<_> = store
        .audit_events(Some("vera"), 100)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, AuditKind::AttemptsRefused { .. }))
        .collect();
    let kinds: Vec<&AuditKind> = refusals.iter().map(|e| &e.kind).collect();
    assert_eq!(
        kinds,
        [
            &AuditKind::AttemptsRefused {
                count: 6,
                locked: false
            },
            &AuditKind::AttemptsRefused {
                count: 1,
                locked: false
            },
        ]
    );
    // Each event is stamped with its window's first refusal.
    backend.assert_stamp(refusals[0].at, T0 + 1);
    backend.assert_stamp(refusals[1].at, later + 1);
    // Refusals counted nothing: only the two reservations are failures.
    let failures = store.load_account("vera").unwrap().unwrap().failures;
    assert_eq!(failures.consecutive, 2);
    backend.assert_stamp(failures.last_failure_at.unwrap(), later);
}

fn names_are_unique_regardless_of_case(backend: &Backend) {
    let template = created(backend, "Émile");
    let store = backend.bound();
    let none = |_: &bool| Vec::new();
    // Another case, and the same letters decomposed (E, combining acute): one account.
    for other in ["émile", "ÉMILE", "E\u{301}mile", "e\u{301}MILE"] {
        let account = Account {
            name: other.into(),
            ..template.clone()
        };
        assert!(!store.insert_account(&account, &none).unwrap(), "{other:?}");
        assert!(store.load_account(other).unwrap().is_none(), "{other:?}");
    }
    // Removing the account frees its folded name.
    assert!(store.delete_account("Émile", T0, &none).unwrap());
    let account = Account {
        name: "émile".into(),
        ..template
    };
    assert!(store.insert_account(&account, &none).unwrap());
    assert_eq!(store.list_accounts().unwrap().len(), 1);
}

fn a_tampered_record_is_damage(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = backend.service(&clock);
        service.create_account("alice", PASSWORD).unwrap();
        service
            .create_account("mallory", "mallory's own password")
            .unwrap();
    }
    // Mallory's record (his password hash) under alice's name.
    (backend.tamper.as_ref().unwrap())("alice", "mallory");
    let service = backend.service(&clock);
    let err = service
        .login("alice", "mallory's own password", None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    let line = err.to_string();
    assert!(
        line.contains("account 'alice' fails its integrity check"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    // Nothing was counted or changed on the tampered record, and the others still work.
    service
        .login("mallory", "mallory's own password", None)
        .unwrap();
}

fn a_store_in_use_is_never_bound_afresh(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = backend.service(&clock);
        service.set_operator_password("operator pw 1").unwrap();
        service.create_account("wendy", PASSWORD).unwrap();
    }
    // The key's fingerprint removed, and the operator password with it: a fresh bind would
    // write "no operator password" for whoever sets one next.
    let remove = backend.remove_meta.as_ref().unwrap();
    assert!(remove(Meta::Fingerprint));
    assert!(remove(Meta::OperatorPassword));
    for key in [MasterKey::from_bytes([8; 32]), test_key()] {
        let err = backend.store().bind_key(&key.store_key()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Damaged(m) if m.contains("key fingerprint is missing")),
            "{err}"
        );
    }
    // Nothing was written afresh: both are still missing.
    assert!(!remove(Meta::Fingerprint));
    assert!(!remove(Meta::OperatorPassword));
}

/// A service whose throttle never delays, so only the operator's lock bounds the attempts.
fn undelayed(backend: &Backend, clock: &Arc<ManualClock>) -> Service {
    let config = Config {
        throttle: ThrottlePolicy {
            free_failures: 1_000,
            ..ThrottlePolicy::default()
        },
        ..test_config()
    };
    backend.service_with(clock, config)
}

/// What a missing operator failure record must be: a store error, never a count from zero.
fn assert_missing_failure_record(result: Result<(), Error>) {
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(
        err.to_string()
            .contains("operator's failure record is missing"),
        "{err}"
    );
}

fn a_removed_operator_failure_record_unlocks_nothing(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = undelayed(backend, &clock);
        service.set_operator_password("operator pw 1").unwrap();
        while service
            .start_operator_session("wrong one")
            .is_err_and(|e| e.kind() == ErrorKind::Rejected)
        {}
        let locked = service.start_operator_session("operator pw 1").map(drop);
        assert!(locked.is_err(), "the operator is not locked");
    }
    assert!((backend.remove_meta.as_ref().unwrap())(
        Meta::OperatorFailures
    ));
    let service = undelayed(backend, &clock);
    assert_missing_failure_record(service.start_operator_session("operator pw 1").map(drop));
    drop(service);
    let read = backend.bound().operator_failures();
    assert!(matches!(read, Err(StoreError::Damaged(_))), "{read:?}");
}

fn the_operator_failure_record_is_there_from_the_first_bind(backend: &Backend) {
    drop(backend.bound());
    // Removed before any attempt was made: still damage, not "no attempt yet".
    assert!((backend.remove_meta.as_ref().unwrap())(
        Meta::OperatorFailures
    ));
    let clock = Arc::new(ManualClock::new(T0));
    let service = backend.service(&clock);
    service.set_operator_password("operator pw 1").unwrap();
    assert_missing_failure_record(service.start_operator_session("operator pw 1").map(drop));
}

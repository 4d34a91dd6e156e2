//! The store contract, one body per property, run unchanged against every backend: the memory
//! store, sled, and PostgreSQL (its own schema per test, so tests run in parallel). Without
//! `SPAREKEY_TEST_POSTGRES_URL` the PostgreSQL cases say "skipped: no PostgreSQL"; under
//! `SPAREKEY_FULL_TESTS=1` (CI) they fail instead.

use std::sync::{Arc, Barrier};

use crate::support::*;
use sparekey::core::audit::AuditKind;
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::error::{ErrorKind, RejectReason};
use sparekey::core::keys::MasterKey;
use sparekey::core::service::Service;
use sparekey::core::store::{KeyBinding, Store, StoreError};
use sparekey::store::location::{PostgresTarget, StoreLocation};
use sparekey::store::memory::MemoryStore;
use sparekey::store::postgres::PostgresStore;

/// The test server, as `.ci/postgres` exports it.
pub const POSTGRES_URL_VAR: &str = "SPAREKEY_TEST_POSTGRES_URL";

/// One backend under test: opens handles on the same store (sled: one at a time).
pub struct Backend {
    open: Box<dyn Fn() -> Box<dyn Store>>,
    _keep: Box<dyn std::any::Any>,
}

impl Backend {
    pub fn store(&self) -> Box<dyn Store> {
        (self.open)()
    }

    /// A service on a new handle, with a fixed key (every handle of one test shares it, as the
    /// hosts sharing a database share the key file).
    pub fn service(&self, clock: &Arc<ManualClock>) -> Service {
        let key = MasterKey::from_bytes([7; 32]);
        let store = self.store();
        let binding = store.bind_key(&key.fingerprint()).unwrap();
        assert!(
            !matches!(binding, KeyBinding::Mismatch { .. }),
            "{binding:?}"
        );
        Service::new(
            store,
            clock.clone(),
            Box::new(SeededEntropy::new(11)),
            key,
            test_config(),
        )
        .unwrap()
    }
}

pub fn memory() -> Backend {
    let store = MemoryStore::new();
    Backend {
        open: Box::new(move || Box::new(store.clone())),
        _keep: Box::new(()),
    }
}

pub fn sled() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    Backend {
        open: Box::new(move || Box::new(open_store(&path).unwrap())),
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
    Some(Backend {
        open: Box::new(move || Box::new(PostgresStore::open(&target, true).unwrap())),
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

contract!(
    backup_code_is_consumed_once,
    totp_step_replay_is_refused,
    failures_are_counted_and_cleared,
    regenerate_replaces_the_whole_set,
    racing_logins_spend_one_code_once,
    pages_follow_name_order,
    key_binding_is_kept,
    operator_password_is_set_once,
    export_then_import_gives_the_same_image,
    changes_survive_a_new_handle,
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
    let (_, old) = enrolled(&service, &clock, "dave");
    let new = service.regenerate_codes("dave", PASSWORD).unwrap();
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
    assert_eq!(store.bind_key("fp-1").unwrap(), KeyBinding::Bound);
    assert_eq!(store.bind_key("fp-1").unwrap(), KeyBinding::Matches);
    assert_eq!(
        store.bind_key("fp-2").unwrap(),
        KeyBinding::Mismatch {
            stored: "fp-1".into()
        }
    );
}

fn operator_password_is_set_once(backend: &Backend) {
    let store = backend.store();
    assert_eq!(store.operator_password().unwrap(), None);
    assert!(store.set_operator_password("$argon2id$first").unwrap());
    assert!(!store.set_operator_password("$argon2id$second").unwrap());
    assert_eq!(
        store.operator_password().unwrap().as_deref(),
        Some("$argon2id$first")
    );
    store.record_operator_failure(T0).unwrap();
    let record = store.record_operator_failure(T0 + 5).unwrap();
    assert_eq!(record.consecutive, 2);
    assert_eq!(store.operator_failures().unwrap(), record);
    store.clear_operator_failures().unwrap();
    assert_eq!(store.operator_failures().unwrap().consecutive, 0);
}

fn export_then_import_gives_the_same_image(backend: &Backend) {
    let clock = Arc::new(ManualClock::new(T0));
    let image = {
        let service = backend.service(&clock);
        let (_, codes) = enrolled(&service, &clock, "frank");
        service.create_account("grace", PASSWORD).unwrap();
        service.login("frank", PASSWORD, Some(&codes[1])).unwrap();
        drop(service);
        backend.store().export_image().unwrap()
    };
    assert_eq!(image.accounts.len(), 2);
    assert!(!image.audit.is_empty());
    // Into a fresh store of each kind: what comes back out is what went in.
    let others = std::env::var_os(POSTGRES_URL_VAR).and_then(|_| postgres());
    for target in [memory(), sled()].into_iter().chain(others) {
        let store = target.store();
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

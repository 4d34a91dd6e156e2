//! What only the PostgreSQL store has: migrations (applied once under concurrent first uses,
//! never by a read-only open, a newer schema refused), a lost connection reported and
//! recovered, and separate processes racing for one backup code through one database.

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::store_contract::pg_schema;
use crate::support::*;
use sparekey::core::audit::AuditKind;
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::service::Service;
use sparekey::core::store::{Store, StoreError};
use sparekey::store::location::{PostgresTarget, StoreLocation};
use sparekey::store::postgres::PostgresStore;

/// A service on the PostgreSQL store at `target` (created if need be) bound to master key
/// `key`, with the test config and randomness seeded by `seed`.
fn bound_service(
    target: &PostgresTarget,
    key: [u8; 32],
    clock: &Arc<ManualClock>,
    seed: u64,
) -> Service {
    let store = PostgresStore::open(target, true).unwrap();
    let key = sparekey::core::keys::MasterKey::from_bytes(key);
    store.bind_key(&key.store_key()).unwrap();
    let entropy = Box::new(SeededEntropy::new(seed));
    Service::new(Box::new(store), clock.clone(), entropy, key, test_config()).unwrap()
}

/// A service on the PostgreSQL store at `target` (created if need be) with the key of
/// `key_file`, made there (from `seed`) if it is missing, as the CLI makes it: for tests whose
/// processes then use the same store and key file.
pub(crate) fn key_file_service(
    target: &PostgresTarget,
    key_file: &std::path::Path,
    clock: &Arc<ManualClock>,
    seed: u64,
) -> Service {
    let store = PostgresStore::open(target, true).unwrap();
    let key =
        sparekey::app::load_or_create_key(key_file, &store, &mut SeededEntropy::new(seed)).unwrap();
    let entropy = Box::new(SeededEntropy::new(seed + 1));
    Service::new(Box::new(store), clock.clone(), entropy, key, test_config()).unwrap()
}

/// The store at `schema`, opened read-only with the key of `key_file` bound.
fn keyed(schema: &crate::store_contract::PgSchema, key_file: &std::path::Path) -> PostgresStore {
    let store = PostgresStore::open(&schema.target, false).unwrap();
    let key = sparekey::app::key_file::read_key(key_file).unwrap();
    store.bind_key(&key.store_key()).unwrap();
    store
}

fn admin(schema: &crate::store_contract::PgSchema) -> ::postgres::Client {
    let mut client = ::postgres::Client::connect(&schema.admin, ::postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("SET search_path = {}", schema.schema))
        .unwrap();
    client
}

/// The value of meta row `key` in the store at `schema`, as stored.
fn meta_row(schema: &crate::store_contract::PgSchema, key: &str) -> Option<Vec<u8>> {
    admin(schema)
        .query_opt("SELECT value FROM sparekey_meta WHERE key = $1", &[&key])
        .unwrap()
        .map(|row| row.get(0))
}

/// Sets meta row `key` to `value`, or removes it, below sparekey.
fn set_meta_row(schema: &crate::store_contract::PgSchema, key: &str, value: Option<&[u8]>) {
    let mut client = admin(schema);
    client
        .execute("DELETE FROM sparekey_meta WHERE key = $1", &[&key])
        .unwrap();
    if let Some(value) = value {
        client
            .execute(
                "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2)",
                &[&key, &value],
            )
            .unwrap();
    }
}

#[test]
fn the_record_format_row_is_tagged_so_no_edit_passes_for_a_bound_store() {
    // The review of schema 2 on sled: a version set back below the tagged records is damage,
    // never taken at its word. Here the record format row itself carries the tag.
    use sparekey::core::keys::MasterKey;
    use sparekey::store::records::encode_schema_marker;
    let Some(schema) = pg_schema() else { return };
    let key = MasterKey::from_bytes([3; 32]);
    let store = PostgresStore::open(&schema.target, true).unwrap();
    // Before the first bind: the version alone, as the first migration wrote it.
    let version = 2u32.to_be_bytes().to_vec();
    assert_eq!(meta_row(&schema, "record_schema"), Some(version.clone()));
    store.bind_key(&key.store_key()).unwrap();
    drop(store);
    let tagged = meta_row(&schema, "record_schema").unwrap();
    assert_eq!(tagged, encode_schema_marker(key.store_key().records(), 2));
    // Written back as a never-bound store holds it, or tagged under another key: damage at
    // the bind, left as it is, and named by doctor's record check.
    let other = MasterKey::from_bytes([4; 32]);
    for forged in [
        version,
        encode_schema_marker(other.store_key().records(), 2),
    ] {
        set_meta_row(&schema, "record_schema", Some(&forged));
        let store = PostgresStore::open(&schema.target, true).unwrap();
        let err = store.bind_key(&key.store_key()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Damaged(m) if m.contains("record format")),
            "{err}"
        );
        assert_eq!(meta_row(&schema, "record_schema"), Some(forged));
        store.attach_key(&key.store_key());
        let (_, damaged) = store.check_records().unwrap();
        assert!(
            damaged.iter().any(|line| line.contains("record format")),
            "{damaged:?}"
        );
    }
    // Set back to format 1 (even under the right key), or removed: refused at the open, with
    // or without create, and never written afresh.
    let one = encode_schema_marker(key.store_key().records(), 1);
    for value in [Some(one.as_slice()), None] {
        set_meta_row(&schema, "record_schema", value);
        for create in [true, false] {
            let err = PostgresStore::open(&schema.target, create).unwrap_err();
            assert!(matches!(err, StoreError::Damaged(_)), "{err}");
        }
        assert_eq!(meta_row(&schema, "record_schema").as_deref(), value);
    }
    // Put back as it was, the store binds again.
    set_meta_row(&schema, "record_schema", Some(&tagged));
    let store = PostgresStore::open(&schema.target, false).unwrap();
    assert_eq!(
        store.bind_key(&key.store_key()).unwrap(),
        sparekey::core::store::KeyBinding::Matches
    );
}

#[test]
fn a_store_bound_by_the_build_before_the_tags_is_upgraded_by_its_next_bind() {
    // An earlier build bound a store without tagging its record format row and wrote the
    // operator's failure record only with the first operator attempt. Migration 3 marks such a
    // store, and the next bind with its key finishes the job; a read-only open upgrades nothing.
    use sparekey::core::keys::MasterKey;
    use sparekey::core::store::KeyBinding;
    use sparekey::core::throttle::FailureRecord;
    use sparekey::store::records::encode_schema_marker;
    let Some(schema) = pg_schema() else { return };
    let key = MasterKey::from_bytes([5; 32]);
    let store = PostgresStore::open(&schema.target, true).unwrap();
    store.bind_key(&key.store_key()).unwrap();
    drop(store);
    // The store as that build left it: schema 2, the bare version, no failure record.
    let mut client = admin(&schema);
    client
        .execute("DELETE FROM schema_migrations WHERE version = 3", &[])
        .unwrap();
    drop(client);
    let bare = 2u32.to_be_bytes().to_vec();
    set_meta_row(&schema, "record_schema", Some(&bare));
    set_meta_row(&schema, "operator_failures", None);
    let err = PostgresStore::open(&schema.target, false).unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("upgrades")),
        "{err}"
    );
    assert_eq!(meta_row(&schema, "record_schema"), Some(bare));
    let migrated = PostgresStore::open(&schema.target, true).unwrap();
    assert!(meta_row(&schema, "bound_before_tags").is_some());
    // Bound on the next open, as another host or the next process binds: its open already
    // finds the schema current, and the mark still sends its bind the whole way.
    let store = PostgresStore::open(&schema.target, false).unwrap();
    drop(migrated);
    assert_eq!(
        store.bind_key(&key.store_key()).unwrap(),
        KeyBinding::Matches
    );
    assert_eq!(
        meta_row(&schema, "record_schema"),
        Some(encode_schema_marker(key.store_key().records(), 2))
    );
    assert_eq!(store.operator_failures().unwrap(), FailureRecord::default());
    assert_eq!(meta_row(&schema, "bound_before_tags"), None);
    let (_, damaged) = store.check_records().unwrap();
    assert!(damaged.is_empty(), "{damaged:?}");
    // Done once: a bare row written back later is damage again.
    set_meta_row(&schema, "record_schema", Some(&2u32.to_be_bytes()));
    let store = PostgresStore::open(&schema.target, true).unwrap();
    let err = store.bind_key(&key.store_key()).unwrap_err();
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
}

#[test]
fn concurrent_first_uses_apply_the_migrations_once() {
    let Some(schema) = pg_schema() else { return };
    let barrier = Barrier::new(4);
    let opened: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PostgresStore::open(&schema.target, true).is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(opened, [true; 4]);
    let rows = admin(&schema)
        .query("SELECT version FROM schema_migrations", &[])
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get(0)).collect::<Vec<i32>>(),
        [1, 2, 3]
    );
}

#[test]
fn a_read_only_open_never_creates_the_tables() {
    let Some(schema) = pg_schema() else { return };
    let error = PostgresStore::open(&schema.target, false).unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict(m) if m.contains("no sparekey store yet")),
        "{error}"
    );
    let tables: i64 = admin(&schema)
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    // Once created, a read-only open works.
    PostgresStore::open(&schema.target, true).unwrap();
    PostgresStore::open(&schema.target, false).unwrap();
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let Some(schema) = pg_schema() else { return };
    PostgresStore::open(&schema.target, true).unwrap();
    let mut client = admin(&schema);
    client
        .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .unwrap();
    for create in [true, false] {
        let error = PostgresStore::open(&schema.target, create).unwrap_err();
        assert!(
            matches!(error, StoreError::NewerSchema { found: 99, .. }),
            "{error}"
        );
    }
    let newest: i32 = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(newest, 99);
}

#[test]
fn a_lost_connection_is_one_clear_error_and_the_next_call_reconnects() {
    let Some(schema) = pg_schema() else { return };
    let clock = Arc::new(ManualClock::new(T0));
    let service = bound_service(&schema.target, [3; 32], &clock, 5);
    let (_, codes) = enrolled(&service, &clock, "ivan");
    // Cut every session of this schema's store from the server side, as a failover would.
    let mut client = admin(&schema);
    let cut: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&schema.schema],
        )
        .unwrap()
        .get(0);
    assert!(cut >= 1, "no sparekey session to cut");
    let first = service.login("ivan", PASSWORD, Some(&codes[0]));
    if let Err(e) = &first {
        let text = e.to_string();
        assert!(
            text.contains("lost the connection") || text.contains("cannot connect"),
            "{text}"
        );
    }
    // Whatever the first call saw, the next ones work on a new connection, and the code was
    // spent exactly when a login said so.
    let remaining = service.code_status("ivan").unwrap().remaining;
    assert_eq!(remaining, if first.is_ok() { 9 } else { 10 });
    let again = service.login("ivan", PASSWORD, Some(&codes[0]));
    assert_eq!(again.is_ok(), first.is_err());
}

#[test]
fn an_unknown_name_on_a_store_that_cannot_be_written_answers_as_a_real_one() {
    // A login reserves its attempt before any hash, and an unknown name is reserved too: the
    // store must make a write for it, or a store that cannot be written tells the two apart
    // (a real name: a store error; an unknown one: a dummy hash and "wrong name or password").
    // A read-only session or a standby refuses the row lock itself, for both alike; what
    // differs is a write that fails once the lock is taken, as on a full disk: here every
    // write statement fails so, naming its table, as the server names a file.
    use sparekey::core::error::{Error, RejectReason};
    let Some(schema) = pg_schema() else { return };
    let clock = Arc::new(ManualClock::new(T0));
    let service = bound_service(&schema.target, [5; 32], &clock, 7);
    service.create_account("sam", PASSWORD).unwrap();
    let mut admin = admin(&schema);
    admin
        .batch_execute(
            "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'could not extend the file of %: No space left on device', \
             TG_TABLE_NAME USING ERRCODE = 'disk_full'; END $$",
        )
        .unwrap();
    for table in ["sparekey_accounts", "sparekey_meta", "sparekey_audit"] {
        admin
            .batch_execute(&format!(
                "CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes()"
            ))
            .unwrap();
    }
    let hashes = service.hash_evaluations();
    let real = service.login("sam", "not it at all", None).map(drop);
    let unknown = service.login("nobody", "not it at all", None).map(drop);
    assert!(
        matches!(&real, Err(Error::Store(StoreError::Unavailable(_)))),
        "{real:?}"
    );
    assert_eq!(unknown, real, "an unknown name told itself apart");
    assert_eq!(service.hash_evaluations(), hashes, "no dummy hash either");
    // Once writes work, the unknown name is the usual "wrong name or password".
    admin
        .batch_execute("DROP FUNCTION refuse_writes() CASCADE")
        .unwrap();
    assert_eq!(
        reason(service.login("nobody", "not it at all", None).unwrap_err()),
        RejectReason::WrongNameOrPassword
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Within a minute of the real clock, which the test server's is (one machine).
fn assert_database_time(what: &str, at: i64) {
    let now = unix_now();
    assert!(
        (at - now).abs() <= 60,
        "{what} at {at}, not the database's time (now {now})"
    );
}

#[test]
fn throttle_times_come_from_the_database_clock_not_the_hosts() {
    // Two hosts on one database, one clock an hour ahead of real time, one an hour behind:
    // the delay that failures through one start holds on the other until it has passed by the
    // database's clock, and the stored failure time and every audit stamp are the database's.
    use sparekey::core::error::{Error, RejectReason};
    use sparekey::core::throttle::ThrottlePolicy;
    let Some(schema) = pg_schema() else { return };
    let now = unix_now();
    let (ahead, behind) = (
        Arc::new(ManualClock::new(now + 3_600)),
        Arc::new(ManualClock::new(now - 3_600)),
    );
    let delay = 5;
    let config = sparekey::core::service::Config {
        throttle: ThrottlePolicy {
            free_failures: 2,
            base_delay_secs: delay,
            max_delay_secs: delay,
            lock_after: 100,
        },
        ..test_config()
    };
    let key = || sparekey::core::keys::MasterKey::from_bytes([6; 32]);
    let host = |clock: &Arc<ManualClock>, seed: u64| {
        let store = PostgresStore::open(&schema.target, true).unwrap();
        store.bind_key(&key().store_key()).unwrap();
        let entropy = Box::new(SeededEntropy::new(seed));
        Service::new(
            Box::new(store),
            clock.clone(),
            entropy,
            key(),
            config.clone(),
        )
        .unwrap()
    };
    let (early, late) = (host(&ahead, 1), host(&behind, 2));
    early.create_account("zoe", PASSWORD).unwrap();
    for _ in 0..2 {
        let wrong = early.login("zoe", "not the password", None).unwrap_err();
        assert_eq!(reason(wrong), RejectReason::WrongNameOrPassword);
    }
    let started = std::time::Instant::now();
    // Refused on both: the host ahead, whose clock says the delay ended an hour ago, and the
    // host behind, whose clock says it has not begun; each is told the time left by the
    // database's clock.
    for (name, host) in [("ahead", &early), ("behind", &late)] {
        match host.login("zoe", PASSWORD, None) {
            Err(Error::Throttled { seconds_left }) => {
                assert!(
                    (1..=delay).contains(&seconds_left),
                    "{name}: {seconds_left}"
                )
            }
            other => panic!("the host {name} was not refused: {other:?}"),
        }
    }
    assert!(
        started.elapsed().as_secs() < delay as u64 - 1,
        "too slow to check the delay"
    );
    let store = PostgresStore::open(&schema.target, false).unwrap();
    store.bind_key(&key().store_key()).unwrap();
    let zoe = store.load_account("zoe").unwrap().unwrap();
    assert_eq!(zoe.failures.consecutive, 2);
    assert_database_time("the last failure", zoe.failures.last_failure_at.unwrap());
    let events = store.audit_events(Some("zoe"), 100).unwrap();
    let failed = events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::FailedAttempt { .. }))
        .count();
    let refused = events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::AttemptsRefused { .. }))
        .count();
    assert_eq!((failed, refused), (2, 1), "{events:#?}");
    for event in &events {
        assert_database_time(&format!("{:?}", event.kind), event.at);
    }
    // Past the delay by the database's clock, the host behind gets in (its own clock would
    // have held it an hour longer), and the login's time is the database's too.
    std::thread::sleep(std::time::Duration::from_secs(delay as u64) + Duration::from_millis(200));
    late.login("zoe", PASSWORD, None).unwrap();
    let zoe = store.load_account("zoe").unwrap().unwrap();
    assert_eq!(zoe.failures.consecutive, 0);
    assert_database_time("the login", zoe.last_login.unwrap().at);
    // TOTP stays on the host's clock, the authenticator's: a code for the host ahead's time
    // logs in through it, and the step it used is of that time.
    let (secret, _) = enrolled(&early, &ahead, "yann");
    let code = code_for(&secret, ahead.now_for_tests());
    early.login("yann", PASSWORD, Some(&code)).unwrap();
    let yann = store.load_account("yann").unwrap().unwrap();
    let step_time = yann.totp.unwrap().last_step.unwrap() as i64 * 30;
    assert!((ahead.now_for_tests() - step_time) < 30, "{step_time}");
    assert_database_time("the TOTP login", yann.last_login.unwrap().at);
}

/// `name` enrolled through the store at `schema`, with a key file in `dir` that the binary
/// can use. The confirming code is the previous step's, so the current step is still free.
fn enrolled_for_processes(
    schema: &crate::store_contract::PgSchema,
    dir: &std::path::Path,
    name: &str,
) -> (
    std::path::PathBuf,
    sparekey::core::totp::TotpSecret,
    Vec<String>,
) {
    let key_file = dir.join("key");
    let now = unix_now();
    let clock = Arc::new(ManualClock::new(now - now % 30 - 30));
    let service = key_file_service(&schema.target, &key_file, &clock, 9);
    let (secret, codes) = enrolled(&service, &clock, name);
    (key_file, secret, codes)
}

/// `count` sparekey processes started at once, each logging in as `name` with `code`; their
/// exit codes and output.
fn racing_logins(
    schema: &crate::store_contract::PgSchema,
    dir: &std::path::Path,
    key_file: &std::path::Path,
    name: &str,
    code: &str,
    count: usize,
) -> Vec<(i32, String)> {
    let config = std::path::Path::new("/dev/null");
    racing_logins_with(schema, dir, key_file, config, name, code, count)
}

/// [`racing_logins`] with the config file `config`.
fn racing_logins_with(
    schema: &crate::store_contract::PgSchema,
    dir: &std::path::Path,
    key_file: &std::path::Path,
    config: &std::path::Path,
    name: &str,
    code: &str,
    count: usize,
) -> Vec<(i32, String)> {
    use std::io::Write;
    let children: Vec<_> = (0..count)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_sparekey"))
                .args(["--json", "login", name])
                .env("SPAREKEY_STORE", &schema.url)
                .env("SPAREKEY_KEY_FILE", key_file)
                .env("SPAREKEY_CONFIG", config)
                .env("HOME", dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every process is running before any gets its input, so the logins overlap.
    children
        .into_iter()
        .map(|mut child| {
            writeln!(child.stdin.take().unwrap(), "{PASSWORD}\n{code}").unwrap();
            child
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.code().unwrap_or(-1), text)
        })
        .collect()
}

/// Exactly one process accepted; the others were refused (a replay) or throttled, never a
/// store error.
fn assert_one_accepted(outcomes: &[(i32, String)]) {
    let accepted = outcomes.iter().filter(|(code, _)| *code == 0).count();
    assert_eq!(accepted, 1, "{outcomes:#?}");
    assert!(
        outcomes.iter().all(|(code, _)| [0, 1, 3].contains(code)),
        "{outcomes:#?}"
    );
}

#[test]
fn sixteen_processes_redeeming_one_code_accept_it_once() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key_file, _, codes) = enrolled_for_processes(&schema, dir.path(), "judy");
    let outcomes = racing_logins(&schema, dir.path(), &key_file, "judy", &codes[7], 16);
    assert_one_accepted(&outcomes);
    let store = keyed(&schema, &key_file);
    let account = store.load_account("judy").unwrap().unwrap();
    let used = account
        .codes
        .unwrap()
        .slots
        .iter()
        .filter(|s| s.used_at.is_some())
        .count();
    assert_eq!(used, 1);
    let events = store.audit_events(Some("judy"), 1_000).unwrap();
    let spent: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::BackupCodeUsed { .. }))
        .collect();
    assert_eq!(spent.len(), 1, "{events:#?}");
}

#[test]
fn sixteen_processes_sending_one_totp_code_accept_it_once() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key_file, secret, _) = enrolled_for_processes(&schema, dir.path(), "mallory");
    // The current step's code: later than the confirming one, and inside the window even if
    // the step ends during the race.
    let code = code_for(&secret, unix_now());
    let outcomes = racing_logins(&schema, dir.path(), &key_file, "mallory", &code, 16);
    assert_one_accepted(&outcomes);
    let store = PostgresStore::open(&schema.target, false).unwrap();
    let logins = store
        .audit_events(Some("mallory"), 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, AuditKind::LoginSucceeded { .. }))
        .count();
    assert_eq!(logins, 1);
}

#[test]
fn eight_processes_sending_wrong_codes_lock_the_account_at_exactly_the_policy() {
    // Issue 15: processes on one database, each reserving its attempt before it verifies, so
    // together they never verify more wrong codes than the policy allows. A one-call login
    // keeps its password's reservation for its code (Service::login: no release), so every
    // login that verifies a code is exactly one count: the account locks at exactly
    // `lock_after` wrong codes, and the stored count is always the codes verified. Then the
    // right code is refused too. Bursts of 8 until it locks (the free failures and the short
    // delay in between refuse some).
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key_file, secret, _) = enrolled_for_processes(&schema, dir.path(), "quentin");
    let config = dir.path().join("sparekey.toml");
    std::fs::write(
        &config,
        "[throttle]\nfree_failures = 2\nlock_after = 3\nbase_delay_secs = 1\nmax_delay_secs = 1\n",
    )
    .unwrap();
    let wrong = code_for(&secret, unix_now() + 10_000_000);
    let store = keyed(&schema, &key_file);
    let mut verified = 0;
    let mut locked = false;
    for _ in 0..20 {
        let outcomes = racing_logins_with(
            &schema,
            dir.path(),
            &key_file,
            &config,
            "quentin",
            &wrong,
            8,
        );
        assert!(
            outcomes.iter().all(|(code, _)| [1, 3].contains(code)),
            "{outcomes:#?}"
        );
        verified += outcomes.iter().filter(|(code, _)| *code == 1).count();
        assert!(
            verified <= 3,
            "more wrong codes verified than allowed: {outcomes:#?}"
        );
        // One count per code verified: none given back, none left over.
        let failures = store.load_account("quentin").unwrap().unwrap().failures;
        assert_eq!(failures.consecutive as usize, verified, "{outcomes:#?}");
        if failures.consecutive >= 3 {
            locked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1_100));
    }
    assert!(locked, "20 bursts of wrong codes did not lock the account");
    // Locked at exactly the policy: as many wrong codes verified as it allows.
    assert_eq!(
        verified, 3,
        "wrong codes verified before the lock (policy: 3)"
    );
    let right = code_for(&secret, unix_now());
    let outcome = racing_logins_with(
        &schema,
        dir.path(),
        &key_file,
        &config,
        "quentin",
        &right,
        1,
    );
    assert_eq!(outcome[0].0, 3, "{outcome:?}");
    assert!(outcome[0].1.contains("locked"), "{outcome:?}");
    let events = store.audit_events(Some("quentin"), 1_000).unwrap();
    let logins = events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::LoginSucceeded { .. }))
        .count();
    assert_eq!(logins, 0, "{events:#?}");
}

/// Runs the binary with `args` and `stdin`, no config file and a private home; returns the
/// exit code and what it printed.
fn sparekey(home: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
        .args(args)
        .env_remove("SPAREKEY_STORE")
        .env("SPAREKEY_CONFIG", "/dev/null")
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn moving_from_sled_to_postgres_is_a_backup_and_a_restore() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("key"));
    let paths = sparekey::app::Paths::resolve(Some(data.clone()), Some(key.clone())).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let codes = {
        let service = open_disk(&paths, &clock, 21).unwrap();
        let (_, codes) = enrolled(&service, &clock, "kim");
        service.login("kim", PASSWORD, Some(&codes[0])).unwrap();
        codes
    };
    let (data, key, file) = (
        data.to_str().unwrap(),
        key.to_str().unwrap(),
        dir.path().join("move.backup"),
    );
    let file = file.to_str().unwrap();
    let (code, out) = sparekey(
        dir.path(),
        &["--data-dir", data, "--key-file", key, "backup", file],
        "",
    );
    assert_eq!(code, 0, "{out}");
    let on_pg = |args: &[&str], stdin: &str| {
        let mut all = vec!["--store", schema.url.as_str(), "--key-file", key];
        all.extend(args);
        sparekey(dir.path(), &all, stdin)
    };
    let (code, out) = on_pg(&["restore", file], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restored 1 account "), "{out}");
    // The code used on sled stays used on PostgreSQL; the others work there.
    let (code, out) = on_pg(&["login", "kim"], &format!("{PASSWORD}\n{}\n", codes[0]));
    assert_eq!(code, 1, "{out}");
    let (code, out) = on_pg(&["login", "kim"], &format!("{PASSWORD}\n{}\n", codes[1]));
    assert_eq!(code, 0, "{out}");
    let (code, out) = on_pg(&["--json", "codes", "status", "kim"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"remaining\":8"), "{out}");
    // A second restore into the now non-empty database is refused and changes nothing.
    let (code, out) = on_pg(&["restore", file], "");
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("not empty"), "{out}");
}

#[test]
fn tls_verifies_the_certificate_and_the_host_name() {
    let (Ok(port), Ok(ca)) = (
        std::env::var("SPAREKEY_TEST_POSTGRES_TLS_PORT"),
        std::env::var("SPAREKEY_TEST_POSTGRES_CA"),
    ) else {
        skip("no PostgreSQL with TLS (. .ci/postgres sets one up)");
        return;
    };
    let Some(schema) = pg_schema() else { return };
    PostgresStore::open(&schema.target, true).unwrap();
    let name = format!("{}_tls", schema.schema);
    let open = |host: &str, tls: &str| {
        let text = format!(
            "host={host} port={port} user=sparekey dbname=postgres application_name={name} \
             options='-c search_path={}' {tls}",
            schema.schema
        );
        let StoreLocation::Postgres(target) = StoreLocation::parse(&text).unwrap() else {
            panic!("not PostgreSQL: {text}");
        };
        PostgresStore::open(&target, false)
    };
    // The certificate is for "localhost", signed by the test CA.
    let store = open(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    )
    .unwrap();
    let encrypted: bool = admin(&schema)
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert!(encrypted, "the verified session is not encrypted");
    drop(store);
    // The right CA but another host name than the certificate's: refused.
    let error = open(
        "127.0.0.1",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    )
    .unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(m) if m.contains("cannot connect")),
        "{error}"
    );
    // The right name, but a CA the system does not trust: refused.
    let error = open("localhost", "sslmode=verify-full").unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(m) if m.contains("cannot connect")),
        "{error}"
    );
    // Both refusals say it is the certificate; an sslrootcert that holds none is one line.
    for (host, why) in [
        ("127.0.0.1", "not valid for name"),
        ("localhost", "UnknownIssuer"),
    ] {
        let tls = if host == "localhost" {
            "sslmode=verify-full".to_string()
        } else {
            format!("sslmode=verify-full sslrootcert={ca}")
        };
        let error = open(host, &tls).unwrap_err().to_string();
        assert!(
            error.contains("certificate") && error.contains(why),
            "{error}"
        );
    }
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
    let error = open(
        "localhost",
        &format!(
            "sslmode=verify-full sslrootcert={}",
            not_pem.path().display()
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("holds no PEM certificate"), "{error}");
}

#[test]
fn doctor_on_postgres_reports_the_durability_settings_and_creates_nothing() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let paths =
        sparekey::app::Paths::resolve(Some(dir.path().join("data")), Some(dir.path().join("key")))
            .unwrap()
            .with_location(StoreLocation::Postgres(Box::new(schema.target.clone())));
    // Before first use: the store check says what creates it, and no table appears.
    let checks = sparekey::app::doctor(&paths, unix_now());
    let store = checks.iter().find(|c| c.name == "store").unwrap();
    assert_eq!(store.status, sparekey::app::Status::Fix, "{store:?}");
    assert!(store.detail.contains("no sparekey store yet"), "{store:?}");
    assert!(PostgresStore::open(&schema.target, false).is_err());
    // Once created, the server's settings are shown.
    PostgresStore::open(&schema.target, true).unwrap();
    let checks = sparekey::app::doctor(&paths, unix_now());
    let durability = checks.iter().find(|c| c.name == "durability").unwrap();
    assert_eq!(
        durability.status,
        sparekey::app::Status::Ok,
        "{durability:?}"
    );
    for setting in [
        "fsync=on",
        "synchronous_commit=on",
        "synchronous_standby_names=",
    ] {
        assert!(durability.detail.contains(setting), "{durability:?}");
    }
    // The embedded store's data dir is not this store's business.
    let data_dir = checks.iter().find(|c| c.name == "data dir").unwrap();
    assert_eq!(data_dir.status, sparekey::app::Status::Skipped);
}

#[test]
fn a_session_that_would_commit_without_waiting_is_raised_to_on() {
    // `off` reports a commit before its WAL is flushed, `local` before a synchronous standby
    // has it: either could lose a used code that was reported accepted. A stronger setting
    // stays.
    let Some(schema) = pg_schema() else { return };
    PostgresStore::open(&schema.target, true).unwrap();
    for (start, expected) in [
        ("off", "on"),
        ("local", "on"),
        ("on", "on"),
        ("remote_apply", "remote_apply"),
    ] {
        let options = format!(
            "-c search_path={} -c synchronous_commit={start}",
            schema.schema
        );
        let location = if schema.admin.contains("://") {
            let sep = if schema.admin.contains('?') { '&' } else { '?' };
            format!(
                "{}{sep}options={}",
                schema.admin,
                options.replace(' ', "%20").replace('=', "%3D")
            )
        } else {
            format!("{} options='{options}'", schema.admin)
        };
        let StoreLocation::Postgres(target) = StoreLocation::parse(&location).unwrap() else {
            panic!("not a PostgreSQL location: {location}");
        };
        let store = PostgresStore::open(&target, false).unwrap();
        let settings = store.server_settings().unwrap();
        assert!(
            settings.contains(&("synchronous_commit".to_string(), expected.to_string())),
            "{start}: {settings:?}"
        );
    }
}

#[test]
fn a_backup_of_postgres_holds_exactly_the_exported_image_and_restores_into_sled() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let key_file = dir.path().join("key");
    let service = key_file_service(&schema.target, &key_file, &clock, 4);
    let key = sparekey::app::key_file::read_key(&key_file).unwrap();
    let (_, codes) = enrolled(&service, &clock, "nina");
    service.login("nina", PASSWORD, Some(&codes[2])).unwrap();
    for name in ["oscar", "peggy", "émile"] {
        service.create_account(name, PASSWORD).unwrap();
    }
    drop(service);
    let paths =
        sparekey::app::Paths::resolve(Some(dir.path().join("data")), Some(dir.path().join("key")))
            .unwrap()
            .with_location(StoreLocation::Postgres(Box::new(schema.target.clone())));
    let file = dir.path().join("pg.backup");
    let summary = sparekey::app::backup_store(&paths, &file).unwrap();
    let expected = keyed(&schema, &dir.path().join("key"))
        .export_image()
        .unwrap();
    assert_eq!(summary.accounts, 4);
    assert_eq!(summary.audit_events, expected.audit.len());
    assert_eq!(sparekey::app::read_backup(&file, &key).unwrap(), expected);
    // And it restores into the embedded store.
    let sled_dir = tempfile::tempdir().unwrap();
    let sled = open_store(&sled_dir.path().join("store")).unwrap();
    sled.bind_key(&key.store_key()).unwrap();
    sled.import_image(&sparekey::app::read_backup(&file, &key).unwrap())
        .unwrap();
    assert_eq!(sled.export_image().unwrap(), expected);
}

#[test]
fn clients_killed_mid_login_never_split_a_spend_from_its_event() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kills = rounds(
        "PostgreSQL clients killed mid-login",
        "SPAREKEY_PG_KILLS",
        20,
        50,
    );
    // A fresh code for every kill: ten per account.
    let key_file = dir.path().join("key");
    let names: Vec<String> = (0..kills.div_ceil(10))
        .map(|i| format!("olga{i}"))
        .collect();
    let codes: Vec<Vec<String>> = {
        let clock = Arc::new(ManualClock::new(T0));
        let service = key_file_service(&schema.target, &key_file, &clock, 12);
        names
            .iter()
            .map(|n| enrolled(&service, &clock, n).1)
            .collect()
    };
    for round in 0..kills {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
            .args(["login", &names[round / 10]])
            .env("SPAREKEY_STORE", &schema.url)
            .env("SPAREKEY_KEY_FILE", &key_file)
            .env("SPAREKEY_CONFIG", "/dev/null")
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let code = &codes[round / 10][round % 10];
        let _ = writeln!(child.stdin.take().unwrap(), "{PASSWORD}\n{code}");
        // Spread over the whole login: start-up, hashing, the transaction, the exit.
        let delay = (round * 7_919) % 25;
        std::thread::sleep(std::time::Duration::from_millis(delay as u64));
        let _ = child.kill();
        let _ = child.wait();
    }
    // A killed client's transaction committed whole or not at all: every used slot has exactly
    // one event, and no event names an unused slot.
    let store = keyed(&schema, &key_file);
    let mut spent = 0;
    let check = tempfile::tempdir().unwrap();
    for (name, codes) in names.iter().zip(&codes) {
        let set = store.load_account(name).unwrap().unwrap().codes.unwrap();
        let events = store.audit_events(Some(name), 10_000).unwrap();
        for (slot, entry) in set.slots.iter().enumerate() {
            let events_for_slot = events
                .iter()
                .filter(|e| {
                    matches!(e.kind, AuditKind::BackupCodeUsed { slot: s, .. } if s as usize == slot)
                })
                .count();
            let used = entry.used_at.is_some();
            spent += usize::from(used);
            assert_eq!(
                events_for_slot,
                usize::from(used),
                "{name} slot {slot}: {events:#?}"
            );
            // And the code still works exactly when it was not spent (failures cleared
            // first, so the throttle does not answer instead).
            store.clear_failures(name, T0, &|_| Vec::new()).unwrap();
            let outcome = racing_logins(&schema, check.path(), &key_file, name, &codes[slot], 1);
            assert_eq!(outcome[0].0 == 0, !used, "{name} slot {slot}: {outcome:?}");
        }
    }
    notice(&format!(
        "{spent} of {kills} codes were spent before their client was killed"
    ));
}

#[test]
fn sessions_ended_by_the_server_mid_login_never_report_an_uncommitted_spend() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key_file, _, codes) = enrolled_for_processes(&schema, dir.path(), "pavel");
    let mut admin = admin(&schema);
    let mut outcomes = Vec::new();
    // Ten logins, each with a fresh code, each with every session of this store cut by the
    // server at a different moment.
    for (round, code) in codes.iter().enumerate() {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
            .args(["--json", "login", "pavel"])
            .env("SPAREKEY_STORE", &schema.url)
            .env("SPAREKEY_KEY_FILE", &key_file)
            .env("SPAREKEY_CONFIG", "/dev/null")
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASSWORD}\n{code}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis((round * 3) as u64));
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&schema.schema],
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        outcomes.push((out.status.code().unwrap_or(-1), text));
    }
    let store = keyed(&schema, &key_file);
    let set = store.load_account("pavel").unwrap().unwrap().codes.unwrap();
    for (slot, (code, text)) in outcomes.iter().enumerate() {
        let used = set.slots[slot].used_at.is_some();
        match code {
            // Accepted only after its commit.
            0 => assert!(used, "slot {slot} reported accepted but is unused: {text}"),
            // A lost session is one store error; the spend may or may not have committed.
            4 => assert!(
                text.contains("lost the connection") || text.contains("cannot connect"),
                "{text}"
            ),
            other => panic!("slot {slot}: exit {other}: {text}"),
        }
    }
    let accepted = outcomes.iter().filter(|(c, _)| *c == 0).count();
    let cut = outcomes.iter().filter(|(c, _)| *c == 4).count();
    notice(&format!(
        "sessions cut mid-login: {accepted} accepted, {cut} lost the connection"
    ));
}

#[test]
fn retention_drops_noise_before_any_security_event() {
    let Some(schema) = pg_schema() else { return };
    let store = PostgresStore::open(&schema.target, true).unwrap();
    let event = |at: i64, kind: AuditKind| sparekey::core::audit::AuditEvent {
        at,
        account: "amy".into(),
        kind,
    };
    let security = |i: i64| {
        event(
            i,
            AuditKind::FailedAttempt {
                reason: sparekey::core::audit::FailureReason::WrongPassword,
                consecutive: i as u32,
            },
        )
    };
    let noise = |i: i64| {
        event(
            i,
            AuditKind::AttemptsRefused {
                count: 1,
                locked: false,
            },
        )
    };
    // Oldest first: 10 security events, then 20 refusals, then one more login.
    for i in 0..10 {
        store.append_audit(&security(i)).unwrap();
    }
    for i in 10..30 {
        store.append_audit(&noise(i)).unwrap();
    }
    let login = AuditKind::LoginSucceeded {
        method: sparekey::core::audit::LoginMethod::Password,
    };
    store.append_audit(&event(30, login)).unwrap();
    let times = |store: &PostgresStore| -> Vec<i64> {
        let events = store.audit_events(None, 100).unwrap();
        events.iter().map(|e| e.at).collect()
    };
    store.prune_audit(13).unwrap();
    let mut expected: Vec<i64> = (0..10).collect();
    expected.extend([28, 29, 30]);
    assert_eq!(times(&store), expected, "the oldest refusals went first");
    // Past the noise, the oldest security events go.
    store.prune_audit(4).unwrap();
    assert_eq!(times(&store), [7, 8, 9, 30]);
}

/// The automatic pruning, on a change that writes its record and two events in one statement:
/// the log crosses its bound only when the second event's id is the pruning mark.
#[test]
fn a_change_whose_second_event_reaches_the_prune_mark_keeps_the_log_within_its_bound() {
    use sparekey::store::sled_store::AUDIT_RETENTION;
    const PRUNE_EVERY: i64 = 512;
    let Some(schema) = pg_schema() else { return };
    let clock = Arc::new(ManualClock::new(T0));
    let service = bound_service(&schema.target, [5; 32], &clock, 1);
    service.create_account("amy", PASSWORD).unwrap();
    drop(service);
    let mut client = admin(&schema);
    let count = |client: &mut ::postgres::Client| -> i64 {
        let row = client
            .query_one(
                "SELECT count(*), coalesce(max(id), 0) FROM sparekey_audit",
                &[],
            )
            .unwrap();
        assert_eq!(
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            "ids without gaps"
        );
        row.get(0)
    };
    // Filler (another account's, never decoded) up to just past the bound, ending one id
    // short of the mark, so the change's first event is not on it and its second is.
    let start = count(&mut client);
    let mut last = AUDIT_RETENTION as i64 + 100;
    while last % PRUNE_EVERY != PRUNE_EVERY - 2 {
        last += 1;
    }
    client
        .execute(
            "INSERT INTO sparekey_audit (account, event, noise) \
             SELECT 'filler', '\\x00'::bytea, false FROM generate_series(1, $1::bigint)",
            &[&(last - start)],
        )
        .unwrap();
    assert_eq!(count(&mut client), last);
    let store = PostgresStore::open(&schema.target, false).unwrap();
    let key = sparekey::core::keys::MasterKey::from_bytes([5; 32]);
    store.bind_key(&key.store_key()).unwrap();
    let kinds = [AuditKind::Unlocked, AuditKind::TwoFactorReset];
    assert!(
        store
            .clear_failures("amy", T0 + 1, &|_| kinds.to_vec())
            .unwrap()
    );
    let left: i64 = client
        .query_one("SELECT count(*) FROM sparekey_audit", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, AUDIT_RETENTION as i64, "pruned to the bound");
    let logged: Vec<AuditKind> = (store.audit_events(Some("amy"), 10).unwrap())
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(logged, kinds, "the oldest went, the change's events stayed");
}

/// `count` accounts named `user00000`, `user00001`, … (so name order is number order), copies
/// of one real record, and one event per account, loaded into the PostgreSQL store at
/// `schema` (COPY, no hashing) with `key` bound.
fn many_accounts(
    schema: &crate::store_contract::PgSchema,
    key: &sparekey::core::keys::MasterKey,
    count: usize,
) -> (PostgresStore, sparekey::core::store::StoreImage) {
    let memory = sparekey::store::memory::MemoryStore::new();
    let service = Service::new(
        Box::new(memory.clone()),
        Arc::new(ManualClock::new(T0)),
        Box::new(SeededEntropy::new(31)),
        sparekey::core::keys::MasterKey::from_bytes([0x42; 32]),
        test_config(),
    )
    .unwrap();
    service.create_account("template", PASSWORD).unwrap();
    let template = memory.load_account("template").unwrap().unwrap();
    let mut image = sparekey::core::store::StoreImage {
        key_fingerprint: Some(key.fingerprint()),
        operator_password: None,
        accounts: Vec::new(),
        audit: Vec::new(),
    };
    for i in 0..count {
        let mut account = template.clone();
        account.name = format!("user{i:05}");
        image.audit.push(sparekey::core::audit::AuditEvent {
            at: T0 + i as i64,
            account: account.name.clone(),
            kind: AuditKind::AccountCreated,
        });
        image.accounts.push(account);
    }
    let store = PostgresStore::open(&schema.target, true).unwrap();
    store.bind_key(&key.store_key()).unwrap();
    store.import_image(&image).unwrap();
    (store, image)
}

#[test]
fn the_postgres_export_hands_over_each_record_as_it_reads_it() {
    use sparekey::core::store::ImageItem;
    use sparekey::store::postgres::EXPORT_BATCH;
    let Some(schema) = pg_schema() else { return };
    let key = sparekey::core::keys::MasterKey::from_bytes([0x42; 32]);
    let batch = EXPORT_BATCH as usize;
    let (store, image) = many_accounts(&schema, &key, 2 * batch + 7);
    // More accounts than one batch: all of them, in name order, then every event in order.
    let (mut names, mut events, mut headers) = (Vec::new(), Vec::new(), 0);
    store
        .export_to(&mut |item| {
            match item {
                ImageItem::Header { .. } => headers += 1,
                ImageItem::Account(a) => names.push(a.name.clone()),
                ImageItem::Audit(e) => events.push(e.clone()),
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(headers, 1);
    let expected: Vec<String> = image.accounts.iter().map(|a| a.name.clone()).collect();
    assert_eq!(names.len(), expected.len());
    assert_eq!(names, expected);
    assert_eq!(events, image.audit);

    // A sink that refuses its first account stops the export with its own error.
    let mut seen = 0;
    let stop = StoreError::Conflict("the sink is full".into());
    let err = store
        .export_to(&mut |item| match item {
            ImageItem::Account(_) => {
                seen += 1;
                Err(stop.clone())
            }
            _ => Ok(()),
        })
        .unwrap_err();
    assert_eq!((err, seen), (stop, 1));

    // The session cut while the sink holds the first account: the rest of the first batch was
    // fetched with it, nothing after it (an export that fetched every row first would go on
    // handing them over).
    let mut admin_client = admin(&schema);
    let mut seen = 0;
    let err = store
        .export_to(&mut |item| {
            if let ImageItem::Account(_) = item {
                seen += 1;
                if seen == 1 {
                    let cut: i64 = admin_client
                        .query_one(
                            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity \
                             WHERE application_name = $1 AND pid <> pg_backend_pid()",
                            &[&schema.schema],
                        )
                        .unwrap()
                        .get(0);
                    assert_eq!(cut, 1, "the exporting session");
                }
            }
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("lost the connection")),
        "{err}"
    );
    assert_eq!(seen, batch, "accounts handed over after the cut");

    // A record altered below sparekey in the second batch: the sink has had every account
    // before it (so none was held back until the rest was read), then the export stops there.
    let damaged = format!("user{:05}", batch + 3);
    admin(&schema)
        .execute(
            "UPDATE sparekey_accounts SET record = set_byte(record, 3, get_byte(record, 3) # 1) \
             WHERE name = $1",
            &[&damaged],
        )
        .unwrap();
    let mut seen = Vec::new();
    let err = store
        .export_to(&mut |item| {
            if let ImageItem::Account(a) = item {
                seen.push(a.name.clone());
            }
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged(m) if m.contains(&damaged)),
        "{err}"
    );
    assert_eq!(seen, expected[..batch + 3]);

    // A backup that stops so leaves no file behind, and no temporary one.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stopped.backup");
    let err = sparekey::app::backup(&store, &key, &file).unwrap_err();
    assert!(err.to_string().contains(&damaged), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Every account, code state, meta value and event of a store.
fn image_of(store: &dyn Store) -> sparekey::core::store::StoreImage {
    store.export_image().unwrap()
}

#[test]
fn a_backup_moves_every_record_from_sled_to_postgres_and_back() {
    let Some(schema) = pg_schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    let sled_paths =
        sparekey::app::Paths::resolve(Some(dir.path().join("data")), Some(key_file.clone()))
            .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    {
        let service = open_disk(&sled_paths, &clock, 41).unwrap();
        let (_, codes) = enrolled(&service, &clock, "ada");
        service.login("ada", PASSWORD, Some(&codes[3])).unwrap();
        clock.advance(5);
        assert!(service.login("ada", PASSWORD, Some("000000")).is_err());
        let (_, codes) = enrolled(&service, &clock, "bert");
        service.login("bert", PASSWORD, Some(&codes[0])).unwrap();
        service.create_account("cleo", PASSWORD).unwrap();
        service
            .set_operator_password("a long operator passphrase, 7341")
            .unwrap();
    }
    let sled_image = image_of(&open_store_keyed(&sled_paths.store, &key_file).unwrap());
    assert!(sled_image.operator_password.is_some());
    let to_pg = dir.path().join("sled.backup");
    let summary = sparekey::app::backup_store(&sled_paths, &to_pg).unwrap();
    assert_eq!(
        (summary.accounts, summary.audit_events),
        (3, sled_image.audit.len())
    );

    // Into PostgreSQL: everything, then the restore's own event.
    let pg_paths = sled_paths
        .clone()
        .with_location(StoreLocation::Postgres(Box::new(schema.target.clone())));
    sparekey::app::restore(&pg_paths, &to_pg, T0 + 500).unwrap();
    let pg_image = image_of(&keyed(&schema, &key_file));
    let restored = |image: &sparekey::core::store::StoreImage| {
        let mut image = image.clone();
        image.audit.push(sparekey::core::audit::AuditEvent {
            at: T0 + 500,
            account: sparekey::app::backup_file::RESTORE_AUDIT_NAME.into(),
            kind: AuditKind::StoreRestored { accounts: 3 },
        });
        image
    };
    assert_eq!(pg_image, restored(&sled_image));

    // And back, from PostgreSQL into a new sled store with the same key file.
    let to_sled = dir.path().join("pg.backup");
    sparekey::app::backup_store(&pg_paths, &to_sled).unwrap();
    let back_paths =
        sparekey::app::Paths::resolve(Some(dir.path().join("data2")), Some(key_file.clone()))
            .unwrap();
    sparekey::app::restore(&back_paths, &to_sled, T0 + 500).unwrap();
    let back = image_of(&open_store_keyed(&back_paths.store, &key_file).unwrap());
    assert_eq!(back, restored(&pg_image));
}

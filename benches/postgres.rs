//! The PostgreSQL store's targets (issue 15), on the server `SPAREKEY_TEST_POSTGRES_URL` names
//! (`. .ci/postgres` starts a private one), always reached over TCP on 127.0.0.1:
//! - **logins**: a whole `sparekey login NAME` process on PostgreSQL against the same login on
//!   sled, paired in ABBA order (`benches/support/login.rs`, as `login_process` runs it), for a
//!   TOTP login and a backup-code login; the target is loopback plaintext (what the store allows
//!   without `sslmode` on 127.0.0.1), and verified TLS (`sslmode=verify-full` to `localhost`
//!   with the cluster's CA) is printed beside it when `SPAREKEY_TEST_POSTGRES_CA` is set;
//! - **throughput**: backup-code logins of 1, 2, 4 and 8 clients at once, each a thread with
//!   its own `Service` and its own connection, every login a real accepted one with a fresh
//!   code, next to this machine's Argon2id bound (cores / the two hashes a login needs, timed
//!   single-threaded in the same run) and to the same threads doing only those two hashes
//!   (alternated with the logins, so it sees the same load): the store's cost is what the
//!   logins lose against the hashes alone, as a share of the bound; and the time each login
//!   spends inside `Store` calls (the bench's own timing wrapper, [`Timed`]), median and p99;
//! - **console**: `app::open_console`, its first page and one frame at 200x60 on a database of
//!   100,000 accounts, and a page deep in the list against the first (keyset pagination).
//!
//! Run: `. .ci/postgres && cargo bench --bench postgres; sparekey_postgres_stop`. The login and
//! throughput databases are made afresh; the console's (`sparekey_bench_console_N`, its key file
//! under `target/sparekey-fixtures/postgres-console-N/`) is kept and used again while the server
//! lives. `SPAREKEY_BENCH_ACCOUNTS` sets the console's size (default 100000; 1000 in criterion's
//! test mode, e.g. `cargo test --benches`, which runs everything once and quotes no figure).
//! Without a server it prints "skipped: no PostgreSQL", and fails under `SPAREKEY_FULL_TESTS=1`.

#[path = "support/mod.rs"]
mod support;

#[path = "support/console.rs"]
mod console;

#[path = "support/fixture.rs"]
mod fixture;

#[path = "support/login.rs"]
mod login;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use sparekey::app::{self, Paths};
use sparekey::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use sparekey::core::argon_memory::ArgonMemory;
use sparekey::core::audit::{AuditEvent, LoginMethod};
use sparekey::core::clock::{SystemClock, UnixTime};
use sparekey::core::code_set::CodeSet;
use sparekey::core::entropy::{OsEntropy, SeededEntropy};
use sparekey::core::keys::{MasterKey, StoreKey};
use sparekey::core::password::{self, Binding, HashParams};
use sparekey::core::service::{Config, Service};
use sparekey::core::store::{
    Activation, AuditFor, CodeConsumption, CodesConfirmation, ImageSink, KeyBinding, Reservation,
    SettleCheck, Settlement, StepConsumption, Store, StoreError, StoreImage,
};
use sparekey::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use sparekey::store::location::{PostgresTarget, StoreLocation};
use sparekey::store::postgres::PostgresStore;
use sparekey::tui::app::Screen;

use console::{console, draw};
use login::{CODER, Cli, Logins};

const URL_VAR: &str = "SPAREKEY_TEST_POSTGRES_URL";
const CA_VAR: &str = "SPAREKEY_TEST_POSTGRES_CA";
const FULL_TESTS_VAR: &str = "SPAREKEY_FULL_TESTS";

/// Rows 19 (TOTP) and 20 (backup code): a login on PostgreSQL / the same login on sled.
const LOGIN_RATIO: f64 = 1.2;
/// Row 21: at 4 clients, the share of the Argon2id bound the store may cost.
const STORE_SHARE: f64 = 0.10;
/// Row 22: the console's start to its first frame.
const FIRST_FRAME: Duration = Duration::from_millis(100);

/// The test server, and how to reach one of its databases over loopback TCP.
struct Server {
    /// The server's own URL (`SPAREKEY_TEST_POSTGRES_URL`, a Unix socket under `.ci/postgres`),
    /// for creating databases.
    admin: postgres::Config,
    user: String,
    port: u16,
    /// The CA of the server's certificate (for `localhost`), for the TLS figure.
    ca: Option<String>,
}

impl Server {
    /// The server from the environment; `None` (after saying so) when there is none.
    fn from_env() -> Option<Self> {
        let Ok(url) = std::env::var(URL_VAR) else {
            let why = format!("no PostgreSQL (set {URL_VAR}, e.g. '. .ci/postgres')");
            assert!(
                std::env::var(FULL_TESTS_VAR).as_deref() != Ok("1"),
                "the PostgreSQL benches could not run ({why}), and {FULL_TESTS_VAR}=1 runs everything"
            );
            println!("skipped: {why}: benches/postgres.rs");
            return None;
        };
        let admin: postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("{URL_VAR} is not a PostgreSQL URL: {e}"));
        assert!(
            admin.get_password().is_none(),
            "a password in {URL_VAR} is not passed on by this bench: use trust authentication, as .ci/postgres does"
        );
        Some(Self {
            user: admin.get_user().unwrap_or("postgres").to_string(),
            port: admin.get_ports().first().copied().unwrap_or(5432),
            ca: std::env::var(CA_VAR).ok(),
            admin,
        })
    }

    fn client(&self, dbname: Option<&str>) -> postgres::Client {
        let mut config = self.admin.clone();
        if let Some(db) = dbname {
            config.dbname(db);
        }
        config
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("{URL_VAR} is set but unreachable: {e}"))
    }

    fn exists(&self, db: &str) -> bool {
        self.client(None)
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&db],
            )
            .expect("look up the database")
            .get(0)
    }

    /// An empty database `db` (dropped first if it was there).
    fn fresh(&self, db: &str) {
        let mut client = self.client(None);
        // One statement each: neither may run inside a transaction block.
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db}"),
        ] {
            client.batch_execute(&sql).expect("create the database");
        }
    }

    /// The store string of `db` over loopback TCP without TLS: the store allows plaintext to
    /// 127.0.0.1 when the string names no `sslmode`.
    fn plain(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={db}",
            self.port, self.user
        )
    }

    /// The same over verified TLS: the server's certificate is for `localhost`.
    fn tls(&self, db: &str) -> Option<String> {
        let ca = self.ca.as_ref()?;
        Some(format!(
            "host=localhost port={} user={} dbname={db} sslmode=verify-full sslrootcert={ca}",
            self.port, self.user
        ))
    }
}

fn target(location: &str) -> PostgresTarget {
    match StoreLocation::parse(location) {
        Ok(StoreLocation::Postgres(target)) => *target,
        other => panic!("{location} is not a PostgreSQL location: {other:?}"),
    }
}

/// `data_dir` and `key_file` with the store at `location`.
fn pg_paths(location: &str, data_dir: &Path, key_file: &Path) -> Paths {
    Paths::resolve(Some(data_dir.to_path_buf()), Some(key_file.to_path_buf()))
        .expect("paths")
        .with_location(StoreLocation::Postgres(target(location).into()))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "NOT MET" }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile (0..=1) of `v`, by the nearest rank.
fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

// ----- rows 19 and 20: login processes --------------------------------------------------------------

fn logins(server: &Server, c: &mut Criterion, test_mode: bool, dir: &Path) -> Vec<String> {
    let accounts = if test_mode { 32 } else { 512 };
    let sled_fixture =
        fixture::generate_in(&dir.join("sled"), accounts).expect("generate the sled fixture");
    let sled = Logins::new(Cli::of(&sled_fixture.paths, None), &sled_fixture);

    let db = "sparekey_bench_login";
    server.fresh(db);
    let location = server.plain(db);
    let paths = pg_paths(&location, &dir.join("pg/data"), &dir.join("pg/key"));
    let store = PostgresStore::open(&target(&location), true).expect("open the database");
    let pg_fixture = fixture::fill(&store, paths.clone(), accounts, 0, fixture::Method::Import)
        .expect("fill the PostgreSQL fixture");
    drop(store);
    let plain_cli = Cli::of(&paths, Some(location));
    let pg = Logins::new(plain_cli, &pg_fixture);
    let tls_cli = server.tls(db).map(|tls| Cli {
        store: Some(tls),
        ..pg.cli.clone()
    });

    {
        let mut group = support::configure(c, "postgres_login", Duration::from_secs(2));
        for (side, logins) in [("sled", &sled), ("postgres", &pg)] {
            let id = format!("postgres_login/login_totp/{side}");
            group.bench_function(format!("login_totp/{side}"), |b| {
                support::timed_with_setup(
                    b,
                    &id,
                    || logins.next_totp(),
                    |(name, stdin)| logins.login(&name, &stdin),
                )
            });
            let id = format!("postgres_login/login_backup_code/{side}");
            group.bench_function(format!("login_backup_code/{side}"), |b| {
                support::timed_with_setup(
                    b,
                    &id,
                    || logins.next_backup(),
                    |stdin| logins.login(CODER, &stdin),
                )
            });
        }
        group.finish();
    }

    // A and B each need a fresh input per round: the setup prepares both and keeps B's here.
    let rounds = if test_mode { 2 } else { 30 };
    let sled_input = RefCell::new(None);
    let mut lines = Vec::new();
    let mut pair = |label: &str, via: &Cli, totp: bool, target: Option<f64>, rounds: usize| {
        let row = match (target, totp) {
            (None, _) => "beside rows 19-20",
            (Some(_), true) => "row 19",
            (Some(_), false) => "row 20",
        };
        let p = support::paired_with_setup(
            rounds,
            || {
                let (a, b) = if totp {
                    (pg.next_totp(), sled.next_totp())
                } else {
                    (
                        (CODER.to_string(), pg.next_backup()),
                        (CODER.to_string(), sled.next_backup()),
                    )
                };
                *sled_input.borrow_mut() = Some(b);
                a
            },
            |(name, stdin)| pg.login_with(via, &name, &stdin),
            || {
                let (name, stdin) = sled_input.borrow_mut().take().expect("prepared");
                sled.login(&name, &stdin)
            },
        );
        support::print_paired(label, &p, target);
        let met = target.map_or(String::new(), |max| {
            format!(" (target <= {max}: {})", verdict(p.ratio <= max))
        });
        lines.push(format!(
            "{row}  {label}: {:.3}{met}  [{:.1} / {:.1} ms, {} ABBA rounds, load {}]",
            p.ratio,
            ms(p.a),
            ms(p.b),
            p.rounds,
            load_average()
        ));
    };
    println!("== postgres: login processes, PostgreSQL (A) / sled (B), paired ==");
    let plain = &pg.cli;
    pair(
        "login process, TOTP, PostgreSQL loopback / sled",
        plain,
        true,
        Some(LOGIN_RATIO),
        rounds,
    );
    pair(
        "login process, backup code, PostgreSQL loopback / sled",
        plain,
        false,
        Some(LOGIN_RATIO),
        rounds,
    );
    if let Some(tls) = &tls_cli {
        // Fewer rounds: a comparison, not a target.
        let rounds = rounds.min(15);
        pair(
            "login process, TOTP, PostgreSQL TLS / sled",
            tls,
            true,
            None,
            rounds,
        );
        pair(
            "login process, backup code, PostgreSQL TLS / sled",
            tls,
            false,
            None,
            rounds,
        );
    }
    // Where a login's difference comes from: the store's open and close alone (a `codes
    // status` process: connect or recover, check the schema, bind the key, one read, close).
    let open_close = support::paired(
        rounds,
        || pg.cli.ok(&["codes", "status", CODER, "--json"], ""),
        || sled.cli.ok(&["codes", "status", CODER, "--json"], ""),
    );
    support::print_paired(
        "codes status process, PostgreSQL loopback / sled",
        &open_close,
        None,
    );
    lines.push(format!(
        "rows 19-20  of that, the store's open and close (a codes status process), PostgreSQL - sled: {:+.1} ms (median difference; {:.1} / {:.1} ms)",
        open_close.difference_secs * 1e3,
        ms(open_close.a),
        ms(open_close.b)
    ));
    lines
}

// ----- row 21: concurrent backup-code logins ------------------------------------------------

/// A store that adds the wall time spent inside its calls to `spent` (nanoseconds): the
/// database time of whatever runs on it; each call's time is also tallied under its name in
/// [`CALLS`]. Every call is forwarded unchanged.
struct Timed {
    inner: PostgresStore,
    spent: Arc<AtomicU64>,
}

/// Time and number of the [`Timed`] calls of each name, since it was last taken.
static CALLS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn tally_call(name: &'static str, elapsed: Duration) {
    let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    let entry = calls.entry(name).or_default();
    entry.0 += elapsed;
    entry.1 += 1;
}

/// The mean time of each store call since the last time, per call and how many per login.
fn take_calls(logins: usize) -> String {
    let calls = std::mem::take(&mut *CALLS.lock().unwrap_or_else(|p| p.into_inner()));
    (calls.iter())
        .map(|(name, (time, n))| {
            format!(
                "{name} {:.2} ms x {:.1}",
                ms(time.div_f64(*n as f64)),
                *n as f64 / logins as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! timed_store {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store for Timed {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                let start = Instant::now();
                let result = self.inner.$name($($arg),*);
                let elapsed = start.elapsed();
                self.spent.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
                tally_call(stringify!($name), elapsed);
                result
            })*
        }
    };
}

timed_store! {
    fn bind_key(&self, key: &StoreKey) -> Result<KeyBinding, StoreError>;
    fn insert_account(&self, account: &Account, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError>;
    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError>;
    fn list_accounts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<AccountFacts>, StoreError>;
    fn delete_account(&self, name: &str, at: UnixTime, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn set_pending(&self, name: &str, pending: &PendingTotp, at: UnixTime, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn activate_pending(&self, name: &str, pending_id: u64, totp: &ActiveTotp, codes: &CodeSet, at: UnixTime, audit: AuditFor<'_, Activation>) -> Result<Activation, StoreError>;
    fn reserve_attempt(&self, name: &str, policy: &ThrottlePolicy, at: UnixTime) -> Result<Reservation, StoreError>;
    fn release_attempt(&self, name: &str, previous: FailureRecord, reserved: FailureRecord) -> Result<bool, StoreError>;
    fn note_refused_attempt(&self, name: &str, gate: Gate, at: UnixTime) -> Result<(), StoreError>;
    fn consume_totp_step(&self, name: &str, step: u64, at: UnixTime, check: &SettleCheck, audit: AuditFor<'_, StepConsumption>) -> Result<StepConsumption, StoreError>;
    fn consume_backup_code(&self, name: &str, set_id: u64, slot: usize, at: UnixTime, check: &SettleCheck, audit: AuditFor<'_, CodeConsumption>) -> Result<CodeConsumption, StoreError>;
    fn record_password_login(&self, name: &str, at: UnixTime, check: &SettleCheck, audit: AuditFor<'_, Settlement>) -> Result<Settlement, StoreError>;
    fn record_failure(&self, name: &str, at: UnixTime, burn_ahead: Option<u64>, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn clear_failures(&self, name: &str, at: UnixTime, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn replace_codes(&self, name: &str, codes: &CodeSet, at: UnixTime, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn confirm_codes(&self, name: &str, set_id: u64, at: UnixTime, audit: AuditFor<'_, CodesConfirmation>) -> Result<CodesConfirmation, StoreError>;
    fn remove_two_factor(&self, name: &str, at: UnixTime, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn operator_password(&self) -> Result<Option<String>, StoreError>;
    fn set_operator_password(&self, phc: &str, at: UnixTime, audit: AuditFor<'_, bool>) -> Result<bool, StoreError>;
    fn operator_failures(&self) -> Result<FailureRecord, StoreError>;
    fn reserve_operator_attempt(&self, policy: &ThrottlePolicy, at: UnixTime) -> Result<Reservation, StoreError>;
    fn settle_operator_attempt(&self, at: UnixTime, check: &SettleCheck, audit: AuditFor<'_, Settlement>) -> Result<Settlement, StoreError>;
    fn record_operator_failure(&self, at: UnixTime, audit: AuditFor<'_, FailureRecord>) -> Result<FailureRecord, StoreError>;
    fn clear_operator_failures(&self, at: UnixTime, audit: AuditFor<'_, ()>) -> Result<(), StoreError>;
    fn export_to(&self, sink: ImageSink<'_>) -> Result<(), StoreError>;
    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError>;
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    fn audit_events(&self, account: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
}

/// Codes per fixture account (each account's set has them all unused).
const CODES_PER_ACCOUNT: usize = 20;
const KEY_BYTES: [u8; 32] = [0x5a; 32];

/// The accounts of the throughput database, handed out whole so that no two clients share
/// one: each code is used once, and no login waits for another's row lock.
struct Pool {
    codes: Vec<String>,
    accounts: usize,
    next: AtomicUsize,
}

impl Pool {
    /// `logins` (account, code) pairs, each a code not used before.
    fn take(&self, logins: usize) -> Vec<(String, String)> {
        let mut pairs = Vec::with_capacity(logins);
        while pairs.len() < logins {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            assert!(
                i < self.accounts,
                "the throughput fixture ran out of accounts"
            );
            let name = fixture::account_name(i);
            let left = logins - pairs.len();
            pairs.extend((self.codes.iter().take(left)).map(|code| (name.clone(), code.clone())));
        }
        pairs
    }
}

/// A database of `accounts` accounts, each with the same 20 unused backup codes hashed with
/// production parameters (one hash for the set, one for the password, cloned to every account
/// as `fixture::Template` does), the key bound.
fn throughput_fixture(server: &Server, accounts: usize) -> (PostgresTarget, Pool) {
    let db = "sparekey_bench_throughput";
    server.fresh(db);
    let target = target(&server.plain(db));
    let store = PostgresStore::open(&target, true).expect("open the database");
    let key = MasterKey::from_bytes(KEY_BYTES);
    assert!(matches!(
        store.bind_key(&key.store_key()).expect("bind"),
        KeyBinding::Bound
    ));
    let fingerprint = key.fingerprint();
    let template = fixture::Template::with_codes(key, HashParams::OWASP, CODES_PER_ACCOUNT);
    let mut e = SeededEntropy::new(3);
    let image = StoreImage {
        key_fingerprint: Some(fingerprint),
        operator_password: None,
        accounts: (0..accounts)
            .map(|i| {
                let mut account = template.account(i, &mut e);
                for slot in account
                    .codes
                    .iter_mut()
                    .flat_map(|set| set.slots.iter_mut())
                {
                    slot.used_at = None;
                }
                account.failures = FailureRecord::default();
                account
            })
            .collect(),
        audit: Vec::new(),
    };
    store.import_image(&image).expect("import the accounts");
    let pool = Pool {
        codes: template.codes(),
        accounts,
        next: AtomicUsize::new(0),
    };
    (target, pool)
}

/// The two Argon2id evaluations of a backup-code login (its password, its code), as the
/// service makes them: production parameters, in memory reused from the previous login.
struct Hashes {
    phc: String,
}

impl Hashes {
    fn new() -> Self {
        let phc = password::hash_password(
            HashParams::OWASP,
            &[7; 32],
            fixture::PASSWORD,
            &Binding::account("floor"),
            &mut SeededEntropy::new(1),
            &mut ArgonMemory::new(),
        );
        Self { phc }
    }

    fn two(&self, memory: &mut ArgonMemory) {
        let ok = password::verify_password(
            &[7; 32],
            fixture::PASSWORD,
            &self.phc,
            &Binding::account("floor"),
            memory,
        );
        assert!(ok);
        let digest = password::digest(
            HashParams::OWASP,
            &[7; 32],
            b"0000111122223333",
            &[9; 16],
            Some(&Binding::code_set("floor", 1)),
            memory,
        );
        std::hint::black_box(digest);
    }
}

/// One timed window of `clients` threads, each running `per_client` logins (or, with
/// `hashes_only`, that many pairs of hashes): how many ran, from the common start until the
/// last thread's last one, each login's time inside the store, and the CPU time used meanwhile.
struct Window {
    done: usize,
    elapsed: Duration,
    db: Vec<Duration>,
    cpu: Cpu,
}

/// CPU time (user + system) of this process and of the PostgreSQL server, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    server: Duration,
}

impl Cpu {
    /// Now, the server being the postmaster started with `port=PORT` (as `.ci/postgres` starts
    /// it), the children it reaped and its live children (the connections' backends, the WAL
    /// writer). Zero for what cannot be read (another user's server).
    fn now(port: u16) -> Self {
        // The /proc times are in USER_HZ, 100 per second on Linux.
        let ticks = |n: u64| Duration::from_millis(n * 10);
        // The fields after the command's closing parenthesis: [1] ppid, [11] utime, [12]
        // stime, [13] cutime, [14] cstime.
        let fields = |pid: &str| -> Option<Vec<u64>> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = stat.rsplit_once(") ")?.1;
            Some(rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect())
        };
        let pids: Vec<String> = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
            })
            .into_iter()
            .flatten()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let port_arg = format!("port={port}");
        let postmaster = pids.iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|&b| b == 0).any(|arg| arg == port_arg.as_bytes())
                    && c.starts_with(b"/usr/lib/postgresql/")
            })
        });
        let mut server = 0;
        if let Some(postmaster) = postmaster {
            let parent: u64 = postmaster.parse().unwrap_or(0);
            for pid in &pids {
                match fields(pid) {
                    Some(f) if pid == postmaster => server += f[11] + f[12] + f[13] + f[14],
                    Some(f) if f[1] == parent => server += f[11] + f[12],
                    _ => {}
                }
            }
        }
        let own = fields("self").map_or(0, |f| f[11] + f[12]);
        Self {
            client: ticks(own),
            server: ticks(server),
        }
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            client: self.client.saturating_sub(earlier.client),
            server: self.server.saturating_sub(earlier.server),
        }
    }
}

fn window(
    clients: usize,
    per_client: usize,
    hashes_only: bool,
    server: &Server,
    target: &PostgresTarget,
    pool: &Pool,
    hashes: &Hashes,
) -> Window {
    let barrier = Barrier::new(clients + 1);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut db = Vec::new();
                    if hashes_only {
                        let mut memory = ArgonMemory::new();
                        barrier.wait();
                        for _ in 0..per_client {
                            hashes.two(&mut memory);
                        }
                        return (Instant::now(), db);
                    }
                    // Untimed: the connection, the key's check and this client's codes.
                    let key = MasterKey::from_bytes(KEY_BYTES);
                    let inner = PostgresStore::open(target, false).expect("open");
                    inner.bind_key(&key.store_key()).expect("bind");
                    let spent = Arc::new(AtomicU64::new(0));
                    let store = Timed {
                        inner,
                        spent: spent.clone(),
                    };
                    let service = Service::new(
                        Box::new(store),
                        Arc::new(SystemClock),
                        Box::new(OsEntropy),
                        key,
                        Config::default(),
                    )
                    .expect("service");
                    let pairs = pool.take(per_client);
                    barrier.wait();
                    for (name, code) in pairs {
                        let before = spent.load(Ordering::Relaxed);
                        let success = service
                            .login(&name, fixture::PASSWORD, Some(&code))
                            .expect("an accepted backup-code login");
                        assert_eq!(success.method, LoginMethod::BackupCode);
                        let after = spent.load(Ordering::Relaxed);
                        db.push(Duration::from_nanos(after - before));
                    }
                    (Instant::now(), db)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let cpu = Cpu::now(server.port);
        let mut window = Window {
            done: clients * per_client,
            elapsed: Duration::ZERO,
            db: Vec::new(),
            cpu: Cpu::default(),
        };
        for thread in threads {
            let (finished, db) = thread.join().expect("client thread");
            window.elapsed = window.elapsed.max(finished - start);
            window.db.extend(db);
        }
        window.cpu = Cpu::now(server.port).since(cpu);
        window
    })
}

fn throughput(server: &Server, test_mode: bool) -> Vec<String> {
    const CLIENTS: [usize; 4] = [1, 2, 4, 8];
    // Logins per window, shared out among its clients: every window takes about as long.
    let (per_window, rounds): (usize, usize) = if test_mode { (8, 1) } else { (40, 8) };
    let per_client = |clients: usize| per_window / clients;
    let accounts: usize = (CLIENTS.iter())
        .map(|&c| c * per_client(c).div_ceil(CODES_PER_ACCOUNT) * rounds)
        .sum();
    let (target, pool) = throughput_fixture(server, accounts);
    let hashes = Hashes::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "== postgres: concurrent backup-code logins ({per_window} per window shared by its clients, {rounds} windows of logins and {rounds} of hashes alone each, {cores} cores) =="
    );
    let mut lines = Vec::new();
    for clients in CLIENTS {
        let per_client = per_client(clients);
        let (mut logins, mut login_time) = (0, Duration::ZERO);
        let (mut hashed, mut hash_time) = (0, Duration::ZERO);
        let mut db = Vec::new();
        let mut two = Vec::new();
        let mut costs = Vec::new();
        let (mut login_cpu, mut hash_cpu) = (Vec::new(), Vec::new());
        // The machine's bound, cores / two hashes; fewer clients than cores use only theirs.
        let used = clients.min(cores);
        for round in 0..rounds {
            // The bound's two hashes, single-threaded, beside each round.
            let mut memory = ArgonMemory::new();
            hashes.two(&mut memory);
            let mut this_round = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                hashes.two(&mut memory);
                this_round.push(start.elapsed().as_secs_f64());
            }
            two.extend(&this_round);
            let bound = used as f64 / support::median_f64(this_round);
            // Logins and the same threads doing only their hashes alternate, first one then
            // the other (ABBA). What the store costs is what the logins lose against the hashes
            // alone: with every core busy a hash takes longer than alone (shared cache and
            // memory), which no store can win back and the loss against the bound would count.
            // Each round gives one figure, as the machine's speed drifts between rounds (a
            // single-threaded pair of hashes here takes 35-45 ms).
            let (mut round_logins, mut round_hashes) = (0.0, 0.0);
            for hashes_only in [round % 2 == 1, round % 2 == 0] {
                let w = window(
                    clients,
                    per_client,
                    hashes_only,
                    server,
                    &target,
                    &pool,
                    &hashes,
                );
                let w_rate = w.done as f64 / w.elapsed.as_secs_f64();
                if hashes_only {
                    round_hashes = w_rate;
                    (hashed, hash_time) = (hashed + w.done, hash_time + w.elapsed);
                    hash_cpu.push(w.cpu);
                } else {
                    round_logins = w_rate;
                    (logins, login_time) = (logins + w.done, login_time + w.elapsed);
                    db.extend(w.db);
                    login_cpu.push(w.cpu);
                }
            }
            costs.push((round_hashes - round_logins) / bound);
        }
        let rate = logins as f64 / login_time.as_secs_f64();
        let hash_rate = hashed as f64 / hash_time.as_secs_f64();
        let two_hashes = support::median_f64(two);
        let bound = used as f64 / two_hashes;
        let (low, high) = costs
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &c| (l.min(c), h.max(c)));
        let cost = support::median_f64(costs);
        let (median, p99) = (quantile(&mut db, 0.5), quantile(&mut db, 0.99));
        let line = format!(
            "{clients} client(s): {rate:.1} logins/s, the same threads doing only the two hashes {hash_rate:.1}/s; Argon2id bound {bound:.1}/s ({used} core(s) / {:.1} ms), \
             reached {:.3} by the hashes alone and {:.3} by the logins; store cost (hashes alone - logins) {:.1} % of the bound (median of {rounds} paired rounds, {:.1} to {:.1} %); \
             database time per login median {:.2} ms, p99 {:.2} ms ({} logins)",
            two_hashes * 1e3,
            hash_rate / bound,
            rate / bound,
            cost * 100.0,
            low * 100.0,
            high * 100.0,
            ms(median),
            ms(p99),
            db.len(),
        );
        println!("  {line}");
        println!("    store calls (mean x per login): {}", take_calls(logins));
        // CPU per login and per pair of hashes: what the store's work takes from the cores.
        let per = |cpu: &[Cpu], n: usize, side: fn(&Cpu) -> Duration| {
            ms(cpu.iter().map(side).sum::<Duration>()) / n as f64
        };
        let (client, server_ms) = (
            per(&login_cpu, logins, |c| c.client),
            per(&login_cpu, logins, |c| c.server),
        );
        let (hash_client, hash_server) = (
            per(&hash_cpu, hashed, |c| c.client),
            per(&hash_cpu, hashed, |c| c.server),
        );
        println!(
            "    CPU per login: this process {client:.1} ms, the server {server_ms:.1} ms; per pair of hashes alone {hash_client:.1} ms (server {hash_server:.1} ms): the store's CPU is {:.1} % of the hashes' (10 ms ticks)",
            ((client - hash_client) + (server_ms - hash_server)) / hash_client * 100.0
        );
        if clients == 4 {
            lines.push(format!(
                "row 21  {line} (target: store cost <= {:.0} % of the bound at 4 clients: {}) [load {}]",
                STORE_SHARE * 100.0,
                verdict(cost <= STORE_SHARE),
                load_average()
            ));
        } else {
            lines.push(format!("row 21  {line}"));
        }
    }
    lines
}

// ----- row 22: the console on 100,000 accounts -----------------------------------------------

/// A directory under the target dir that outlives the run (the console fixture's key file).
fn cache_dir(label: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    base.join("sparekey-fixtures").join(label)
}

/// The paths of a database of `accounts` fixture accounts: the one kept from an earlier run if
/// its key file still matches it and it holds that many accounts, else made now.
fn console_fixture(server: &Server, accounts: usize) -> Paths {
    let db = format!("sparekey_bench_console_{accounts}");
    let dir = cache_dir(&format!("postgres-console-{accounts}"));
    let location = server.plain(&db);
    let paths = pg_paths(&location, &dir.join("data"), &dir.join("key"));
    let kept = server.exists(&db)
        && paths.key_file.exists()
        && (|| {
            let store = PostgresStore::open(&target(&location), false).ok()?;
            let key = app::key_file::read_key(&paths.key_file).ok()?;
            let bound = store.bind_key(&key.store_key()).ok()?;
            let count: i64 = server
                .client(Some(&db))
                .query_one("SELECT count(*) FROM sparekey_accounts", &[])
                .ok()?
                .get(0);
            Some(bound == KeyBinding::Matches && count == accounts as i64)
        })()
        .unwrap_or(false);
    if kept {
        println!("console fixture: {accounts} accounts kept from an earlier run in {db}");
        return paths;
    }
    server.fresh(&db);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fixture dir");
    let store = PostgresStore::open(&target(&location), true).expect("open the database");
    let generated = fixture::fill(&store, paths.clone(), accounts, 0, fixture::Method::Import)
        .expect("fill the console fixture");
    println!(
        "console fixture: {accounts} accounts generated in {:.2} s into {db}",
        generated.elapsed.as_secs_f64()
    );
    paths
}

fn console_start(server: &Server, c: &mut Criterion, test_mode: bool) -> Vec<String> {
    let accounts = fixture::accounts_from_env(if test_mode { 1_000 } else { 100_000 });
    let paths = console_fixture(server, accounts);
    // The names in order, for a page at the far end of the list.
    let names: Vec<String> = {
        let service = app::open(&paths, Config::default()).expect("open");
        let list = service.list_accounts().expect("list");
        assert_eq!(list.len(), accounts);
        list.into_iter().map(|s| s.name).collect()
    };
    let deep = names[names.len().saturating_sub(201)].clone();
    let service = app::open(&paths, Config::default()).expect("open");
    {
        let mut group = support::configure(c, "postgres_console", Duration::from_secs(2));
        let id = format!("postgres_console/first_frame_200x60/{accounts}");
        group.bench_function(format!("first_frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || {
                let driver = console(&paths);
                let cells = draw(&driver);
                // Closed after the clock stops.
                (driver, cells)
            })
        });
        let id = format!("postgres_console/first_page/{accounts}");
        group.bench_function(format!("first_page/{accounts}"), |b| {
            support::timed(b, &id, || {
                service.list_accounts_page(None, 200).expect("page")
            })
        });
        let id = format!("postgres_console/last_page/{accounts}");
        group.bench_function(format!("last_page/{accounts}"), |b| {
            support::timed(b, &id, || {
                service.list_accounts_page(Some(&deep), 200).expect("page")
            })
        });
        group.finish();
    }

    // The figure: the median of separate starts, each closed after its clock stopped.
    let starts = if test_mode { 1 } else { 25 };
    let mut times = Vec::new();
    let mut loaded = 0;
    for _ in 0..starts {
        let start = Instant::now();
        let driver = console(&paths);
        draw(&driver);
        times.push(start.elapsed());
        let Screen::Accounts(list) = &driver.app.screen else {
            panic!("the console did not start on the accounts list")
        };
        loaded = list.loaded_len();
    }
    let first_frame = quantile(&mut times, 0.5);
    let pages = support::paired(
        if test_mode { 2 } else { 30 },
        || service.list_accounts_page(Some(&deep), 200).expect("page"),
        || service.list_accounts_page(None, 200).expect("page"),
    );
    println!("== postgres: the console on {accounts} accounts ==");
    support::print_paired(
        "a page of 200 at the end of the list / the first page",
        &pages,
        None,
    );
    vec![
        format!(
            "row 22  console start to its first frame at 200x60 on PostgreSQL, {accounts} accounts ({loaded} loaded for it): \
             median {:.1} ms of {starts} starts (p90 {:.1} ms) (target <= {} ms: {}) [load {}]",
            ms(first_frame),
            ms(quantile(&mut times, 0.9)),
            FIRST_FRAME.as_millis(),
            verdict(first_frame <= FIRST_FRAME),
            load_average()
        ),
        format!(
            "row 22  keyset pagination: the last page of 200 / the first: {:.3} ({:.2} / {:.2} ms)",
            pages.ratio,
            ms(pages.a),
            ms(pages.b)
        ),
    ]
}

fn main() {
    let Some(server) = Server::from_env() else {
        return;
    };
    let test_mode = support::test_mode();
    let dir = fixture::scratch_dir("postgres");
    let mut c = Criterion::default().configure_from_args();
    let mut summary = logins(&server, &mut c, test_mode, &dir);
    summary.extend(throughput(&server, test_mode));
    summary.extend(console_start(&server, &mut c, test_mode));
    c.final_summary();
    support::print_summary("postgres (criterion groups, measured one after the other)");
    println!(
        "== postgres: targets{} ==",
        if test_mode {
            " (quick mode: one pass on small fixtures, not figures to quote)"
        } else {
            ""
        }
    );
    for line in &summary {
        println!("  {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

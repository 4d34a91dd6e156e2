//! The large fixture store: N synthetic accounts with 2FA on, written through the `Store` trait
//! without one Argon2 hash per account. One password PHC string is computed once and shared,
//! one code set is hashed once (with cheap parameters) and cloned with a distinct id and some
//! slots marked used, and each account's TOTP secret is sealed to its own name with the real
//! master key. So every fixture account logs in with [`PASSWORD`] and the printed TOTP secret
//! or backup codes, and the store opens with the written key file like any real one.
//!
//! Shared by `examples/gen_store.rs` and the benches; [`fill`] writes it into a store already
//! open (the PostgreSQL bench fills databases with it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sparekey::app::{self, Paths};
use sparekey::core::account::{Account, ActiveTotp, LastLogin};
use sparekey::core::argon_memory::ArgonMemory;
use sparekey::core::audit::{AuditEvent, AuditKind, LoginMethod};
use sparekey::core::backup_code::{self, BackupCode};
use sparekey::core::code_set::CodeSet;
use sparekey::core::entropy::{Entropy, OsEntropy, SeededEntropy};
use sparekey::core::error::Error;
use sparekey::core::keys::MasterKey;
use sparekey::core::password::{self, HashParams};
use sparekey::core::store::{Store, StoreImage};
use sparekey::core::throttle::FailureRecord;
use sparekey::core::totp::{TotpParams, TotpSecret};
use sparekey::store::sled_store::SledStore;

/// The password of every fixture account.
pub const PASSWORD: &str = "fixture password";
/// 2026-11-28T12:00:00Z.
pub const NOW: i64 = 1_795_867_200;

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoë", "amir",
    "chen", "dmitri", "fatima", "gustavo", "hana", "ingrid", "jamal", "kenji", "lucía",
];
const LAST: &[&str] = &[
    "smith", "jones", "garcia", "müller", "rossi", "dubois", "tanaka", "kowalski", "novak",
    "silva", "nguyen", "kim", "okafor", "hansen", "ivanova", "cohen", "haddad", "larsen", "petrov",
    "santos", "wright", "yilmaz", "zhang", "andersen", "baker", "costa", "diaz",
];
const DOMAINS: &[&str] = &[
    "example.org",
    "corp.example",
    "mail.example.net",
    "lab.example",
];

/// The name of fixture account `i` (unique, <= 64 characters, some non-ASCII).
pub fn account_name(i: usize) -> String {
    let first = FIRST[i % FIRST.len()];
    let last = LAST[(i / FIRST.len()) % LAST.len()];
    let domain = DOMAINS[(i / 7) % DOMAINS.len()];
    format!("{first}.{last}{i}@{domain}")
}

/// How the records go in, both through the `Store` trait only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One `Store::import_image` of all accounts: one transaction, one flush.
    Import,
    /// One `Store::insert_account` per account from `threads` threads (each one is flushed).
    Insert { threads: usize },
}

#[derive(Debug)]
pub struct Generated {
    pub paths: Paths,
    pub accounts: usize,
    pub audit_events: usize,
    pub elapsed: Duration,
    /// The shared TOTP secret, base32 (for logging in to any fixture account).
    pub totp_secret: String,
    /// The shared backup codes (valid on every account whose slot is still unused).
    pub codes: Vec<String>,
}

/// What every synthetic record is cloned from: computed once.
pub struct Template {
    key: MasterKey,
    phc: String,
    totp: TotpSecret,
    codes: Vec<BackupCode>,
    set: CodeSet,
}

impl Template {
    pub fn new(key: MasterKey) -> Self {
        Self::with_codes(key, HashParams::TEST_ONLY, 10)
    }

    /// A template whose code set has `count` codes hashed with `params` (production
    /// parameters where a bench logs in with the codes and counts the hashes).
    pub fn with_codes(key: MasterKey, params: HashParams, count: usize) -> Self {
        let secret = key.hash_secret();
        let mut e = SeededEntropy::new(42);
        // The one production-cost hash of the whole fixture.
        let mut memory = ArgonMemory::new();
        // Unbound (as schema 1 wrote them), since every account gets a clone; the store's
        // record MAC binds each clone to its account.
        let phc = password::hash_password_unbound(
            HashParams::OWASP,
            secret.as_ref(),
            PASSWORD,
            &mut e,
            &mut memory,
        );
        let totp = TotpSecret::generate(&mut e);
        let codes = backup_code::generate_set(&mut e, count);
        let set =
            CodeSet::create_unbound(&codes, params, secret.as_ref(), &mut e, NOW, &mut memory);
        Self {
            key,
            phc,
            totp,
            codes,
            set,
        }
    }

    /// The shared backup codes, as typed.
    pub fn codes(&self) -> Vec<String> {
        self.codes.iter().map(|c| c.display().to_string()).collect()
    }

    /// Account `i`: 2FA on, 0 to 7 codes used, some with a last login or a few failures.
    pub fn account(&self, i: usize, e: &mut dyn Entropy) -> Account {
        let name = account_name(i);
        let mut set = self.set.clone();
        set.id = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
        for slot in set.slots.iter_mut().take(i % 8) {
            slot.used_at = Some(NOW - 86_400);
        }
        let secret = self.key.seal(e, self.totp.as_bytes(), &name);
        Account {
            password: Some(self.phc.clone()),
            created_at: NOW - 30 * 86_400 - i as i64,
            totp: Some(ActiveTotp {
                secret,
                issuer: "sparekey".into(),
                params: TotpParams::default(),
                last_step: None,
                enrolled_at: NOW - 29 * 86_400,
                burned_ahead: Vec::new(),
            }),
            pending: None,
            codes: Some(set),
            failures: FailureRecord {
                consecutive: if i.is_multiple_of(50) { 2 } else { 0 },
                last_failure_at: (i.is_multiple_of(50)).then_some(NOW - 600),
            },
            last_login: i.is_multiple_of(3).then_some(LastLogin {
                at: NOW - 3_600,
                method: if i.is_multiple_of(8) {
                    LoginMethod::Totp
                } else {
                    LoginMethod::BackupCode
                },
            }),
            name,
        }
    }
}

/// Sum of the sizes of the files under `dir`: (apparent bytes, allocated bytes as `du` counts).
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path());
            total.0 += a;
            total.1 += b;
        } else {
            total.0 += meta.len();
            total.1 += meta.blocks() * 512;
        }
    }
    total
}

/// Writes `accounts` fixture accounts (and `audit_events` audit events) into a new store under
/// `data_dir`, with a new key file at `key_file`. Refuses a data dir that already has a store.
pub fn generate(
    data_dir: &Path,
    key_file: &Path,
    accounts: usize,
    audit_events: usize,
    method: Method,
) -> Result<Generated, Error> {
    let paths = Paths::resolve(Some(data_dir.to_path_buf()), Some(key_file.to_path_buf()))?;
    if paths.store.exists() {
        return Err(Error::Invalid(format!(
            "{} already exists",
            paths.store.display()
        )));
    }
    let start = Instant::now();
    app::create_private_dir(&paths.data_dir)?;
    let store = SledStore::open(&paths.store, app::LOCK_WAIT)?;
    let mut generated = fill(&store, paths, accounts, audit_events, method)?;
    drop(store);
    generated.elapsed = start.elapsed();
    Ok(generated)
}

/// [`generate`] of `accounts` accounts (no extra events, filled by import) under `dir`, in
/// `dir/data` with the key file `dir/key`: the benches' fixture.
pub fn generate_in(dir: &Path, accounts: usize) -> Result<Generated, Error> {
    generate(
        &dir.join("data"),
        &dir.join("key"),
        accounts,
        0,
        Method::Import,
    )
}

/// [`generate`] into `store`, already open and empty (a sled store, or a PostgreSQL database
/// with `paths.postgres` set), with a new key file at `paths.key_file`.
pub fn fill(
    store: &dyn Store,
    paths: Paths,
    accounts: usize,
    audit_events: usize,
    method: Method,
) -> Result<Generated, Error> {
    let start = Instant::now();
    let key = app::load_or_create_key(&paths.key_file, store, &mut OsEntropy)?;
    let fingerprint = key.fingerprint();
    let template = Template::new(key);
    let audit: Vec<AuditEvent> = (0..audit_events)
        .map(|k| AuditEvent {
            at: NOW - (audit_events - k) as i64,
            account: account_name((k * 7919) % accounts.max(1)),
            kind: AuditKind::LoginSucceeded {
                method: LoginMethod::Totp,
            },
        })
        .collect();
    match method {
        Method::Import => {
            let mut e = SeededEntropy::new(7);
            let image = StoreImage {
                key_fingerprint: Some(fingerprint),
                operator_password: None,
                accounts: (0..accounts).map(|i| template.account(i, &mut e)).collect(),
                audit,
            };
            store.import_image(&image)?;
        }
        Method::Insert { threads } => {
            let threads = threads.max(1);
            std::thread::scope(|s| -> Result<(), Error> {
                let workers: Vec<_> = (0..threads)
                    .map(|t| {
                        let template = &template;
                        s.spawn(move || -> Result<(), Error> {
                            let mut e = SeededEntropy::new(100 + t as u64);
                            for i in (t..accounts).step_by(threads) {
                                if !store
                                    .insert_account(&template.account(i, &mut e), &|_| Vec::new())?
                                {
                                    return Err(Error::AlreadyExists(account_name(i)));
                                }
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for worker in workers {
                    worker.join().expect("generator thread panicked")?;
                }
                Ok(())
            })?;
            for event in &audit {
                store.append_audit(event)?;
            }
        }
    }
    Ok(Generated {
        paths,
        accounts,
        audit_events,
        elapsed: start.elapsed(),
        totp_secret: data_encoding::BASE32_NOPAD.encode(template.totp.as_bytes()),
        codes: template.codes(),
    })
}

/// A fresh temporary directory under the target dir (kept out of /tmp, which may be a tmpfs
/// that would flatter disk figures).
pub fn scratch_dir(label: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = base
        .join("sparekey-fixtures")
        .join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch dir");
    dir
}

/// Reads a `/proc/self/status` field in KiB (e.g. `VmHWM`, peak RSS).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The fixture size: `SPAREKEY_BENCH_ACCOUNTS` (underscores allowed, e.g. `100_000`), else
/// `default`.
pub fn accounts_from_env(default: usize) -> usize {
    std::env::var("SPAREKEY_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

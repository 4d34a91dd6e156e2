//! The PostgreSQL backend, for several login hosts sharing one store. Each account is one row:
//! its name, the same encoded record bytes the sled backend writes, and its encoded list facts
//! (so listing and keyset pagination never decode full records); audit events are rows under a
//! generated id; meta values (key fingerprint, record format, operator password) are rows of
//! their own. The tables come from versioned migrations embedded in the binary.
//!
//! Every mutation is one transaction that locks the account's row (`SELECT … FOR UPDATE`),
//! applies the pure rule from [`mutation`], writes the record back and inserts its audit events,
//! then commits: the same semantics as sled's by construction, across hosts. Serialization and
//! deadlock failures are retried a bounded number of times; `statement_timeout` and
//! `lock_timeout` keep a login from hanging. Must never report a change done before its COMMIT
//! returned, never apply migrations from a read-only open, and never touch a database whose
//! schema is newer than this build's.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, KeyBinding, StepConsumption, Store, StoreError,
    StoreImage,
};
use crate::core::throttle::FailureRecord;
use crate::store::location::{PostgresTarget, TlsPolicy};
use crate::store::mutation::{self, Applied};
use crate::store::sled_store::AUDIT_RETENTION;
use crate::store::{SCHEMA_VERSION, decode, encode};

/// The schema, one migration per version, applied in order and recorded in
/// `schema_migrations`. Never edit a released one: add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
    CREATE TABLE sparekey_meta (
        key   text PRIMARY KEY,
        value bytea NOT NULL
    );
    -- "C": names sort by their bytes, as on sled and in memory, so pages match.
    CREATE TABLE sparekey_accounts (
        name   text COLLATE "C" PRIMARY KEY,
        record bytea NOT NULL,
        facts  bytea NOT NULL
    );
    CREATE TABLE sparekey_audit (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account text COLLATE "C" NOT NULL,
        event   bytea NOT NULL
    );
    CREATE INDEX sparekey_audit_account ON sparekey_audit (account, id);
    "#,
)];

/// The newest schema this build knows.
const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Serializes migrations of concurrent first uses (an arbitrary constant: "sparekey").
const MIGRATION_LOCK: i64 = 0x7370_6172_656b_6579;

const META_KEY: &str = "key_fingerprint";
const META_RECORDS: &str = "record_schema";
const META_OPERATOR: &str = "operator_password";
const META_OPERATOR_FAILURES: &str = "operator_failures";

/// Tries of a transaction that failed on a serialization failure or a deadlock.
const ATTEMPTS: u32 = 5;
/// How long one statement, and one wait for a row lock, may take: a login fails clearly
/// instead of hanging behind a stuck host.
const STATEMENT_TIMEOUT: &str = "10s";
const LOCK_TIMEOUT: &str = "5s";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The audit log is pruned to [`AUDIT_RETENTION`] whenever the id crosses a multiple of this.
const PRUNE_EVERY: i64 = 512;

pub struct PostgresStore {
    target: PostgresTarget,
    /// `None` after the connection was lost: the next call connects again.
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", self.target.display)
    }
}

/// Why a transaction body stopped: the database (perhaps worth retrying), or the store's rules.
enum Failure {
    Db(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

type Step<T> = Result<T, Failure>;

/// The connection is gone: the socket closed, or the server ended the session (an
/// administrator, a shutdown, a failover). Whatever was in flight may or may not have committed.
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || match e.code() {
            None => true,
            Some(code) => matches!(
                *code,
                SqlState::ADMIN_SHUTDOWN | SqlState::CRASH_SHUTDOWN | SqlState::CANNOT_CONNECT_NOW
            ),
        }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
    )
}

impl PostgresStore {
    /// Connects and checks the schema. With `create`, applies any missing migration (the first
    /// use creates the tables); without it, a database without the current schema is refused.
    pub fn open(target: &PostgresTarget, create: bool) -> Result<Self, StoreError> {
        let store = Self {
            target: target.clone(),
            client: Mutex::new(None),
        };
        store.migrate(create)?;
        store.check_records()?;
        Ok(store)
    }

    pub fn display(&self) -> &str {
        &self.target.display
    }

    /// The server settings a used code's durability depends on, for `doctor`: `fsync`,
    /// `synchronous_commit` (this session's: sparekey raises `off` to `on`) and
    /// `synchronous_standby_names`.
    pub fn server_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT name, setting FROM pg_settings WHERE name IN \
                 ('fsync', 'synchronous_commit', 'synchronous_standby_names') ORDER BY name",
                &[],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut config = self.target.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let connected = match &self.target.tls {
            TlsPolicy::Plain => config.connect(NoTls),
            TlsPolicy::Verify { root_cert } => config.connect(self.tls_connector(root_cert)?),
        };
        let mut client = connected.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to the PostgreSQL store at {}: {}",
                self.target.display,
                one_line(&e)
            ))
        })?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '{LOCK_TIMEOUT}'; \
                 SET idle_in_transaction_session_timeout = '60s'"
            ))
            .map_err(|e| self.error(e))?;
        // An accepted code must be durable when reported: never commit asynchronously, whatever
        // the server's default (a stronger server setting, such as remote_apply, is kept).
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .map_err(|e| self.error(e))?
            .get(0);
        if sync == "off" {
            client
                .batch_execute("SET synchronous_commit = on")
                .map_err(|e| self.error(e))?;
        }
        Ok(client)
    }

    fn tls_connector(
        &self,
        root_cert: &Option<std::path::PathBuf>,
    ) -> Result<postgres_native_tls::MakeTlsConnector, StoreError> {
        let mut builder = native_tls::TlsConnector::builder();
        builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        if let Some(path) = root_cert {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Io(format!("cannot read sslrootcert {}: {e}", path.display()))
            })?;
            let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
                StoreError::Io(format!(
                    "sslrootcert {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            // As libpq: the given root is the only one trusted.
            builder
                .disable_built_in_roots(true)
                .add_root_certificate(cert);
        }
        let connector = builder
            .build()
            .map_err(|e| StoreError::Io(format!("cannot set up TLS: {e}")))?;
        Ok(postgres_native_tls::MakeTlsConnector::new(connector))
    }

    /// The connection, made again if it was lost.
    fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect()?);
        }
        Ok(guard)
    }

    /// A database error as a store error, in the store's terms.
    fn error(&self, e: postgres::Error) -> StoreError {
        let at = &self.target.display;
        let code = match e.code() {
            Some(code) if !connection_lost(&e) => code,
            _ => {
                return StoreError::Unavailable(format!(
                    "lost the connection to the PostgreSQL store at {at} ({}); the last change was not reported done",
                    one_line(&e)
                ));
            }
        };
        let what = e
            .as_db_error()
            .map_or_else(|| one_line(&e), |d| d.message().to_string());
        match *code {
            SqlState::LOCK_NOT_AVAILABLE => StoreError::Unavailable(format!(
                "the record is held by another sparekey for longer than {LOCK_TIMEOUT} at {at}; nothing was changed"
            )),
            SqlState::QUERY_CANCELED => StoreError::Unavailable(format!(
                "the PostgreSQL store at {at} did not answer within {STATEMENT_TIMEOUT}; nothing was changed"
            )),
            SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED => {
                StoreError::Unavailable(format!(
                    "the change kept conflicting with concurrent ones at {at} ({ATTEMPTS} tries); nothing was changed"
                ))
            }
            SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::Unavailable(format!(
                "the PostgreSQL server at {at} is read-only (a standby?); nothing was changed"
            )),
            SqlState::DISK_FULL | SqlState::OUT_OF_MEMORY | SqlState::TOO_MANY_CONNECTIONS => {
                StoreError::Unavailable(format!("{what} at {at}"))
            }
            _ => StoreError::Io(format!("PostgreSQL at {at}: {what}")),
        }
    }

    /// Runs `body` in one transaction and commits, retrying on serialization failures and
    /// deadlocks (the body reads everything again, so a retry applies the rule afresh). The
    /// result is returned only after COMMIT succeeded.
    fn transact<T>(
        &self,
        isolation: IsolationLevel,
        read_only: bool,
        mut body: impl FnMut(&mut Transaction<'_>) -> Step<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.client()?;
        let mut attempt = 1;
        loop {
            let client = guard.as_mut().expect("connected above");
            match run_once(client, isolation, read_only, &mut body) {
                Ok(value) => return Ok(value),
                Err(Failure::Db(e)) if retryable(&e) && attempt < ATTEMPTS => {
                    // Back off a little, longer each time, so the competitors spread out.
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(Failure::Db(e)) => {
                    if connection_lost(&e) {
                        *guard = None;
                    }
                    return Err(self.error(e));
                }
                Err(Failure::Store(e)) => return Err(e),
            }
        }
    }

    /// A read-write transaction at READ COMMITTED: enough, because every change locks the one
    /// row it reads.
    fn write<T>(&self, body: impl FnMut(&mut Transaction<'_>) -> Step<T>) -> Result<T, StoreError> {
        self.transact(IsolationLevel::ReadCommitted, false, body)
    }

    fn read<T>(&self, body: impl FnMut(&mut Transaction<'_>) -> Step<T>) -> Result<T, StoreError> {
        self.transact(IsolationLevel::ReadCommitted, true, body)
    }

    fn migrate(&self, create: bool) -> Result<(), StoreError> {
        let display = self.target.display.clone();
        self.write(|tx| {
            // The common case, a store at the current schema, takes no lock: every login opens
            // the store, and concurrent logins must not queue here.
            let found = schema_version(tx)?;
            if found == Some(LATEST) {
                return Ok(());
            }
            if let Some(found) = found.filter(|v| *v > LATEST) {
                return Err(StoreError::NewerSchema {
                    path: display.clone(),
                    found: found as u32,
                    supported: LATEST as u32,
                }
                .into());
            }
            if !create {
                return Err(StoreError::Conflict(match found {
                    None => format!(
                        "the PostgreSQL database {display} has no sparekey store yet: a command that writes (such as 'sparekey account add' or 'sparekey restore') creates it"
                    ),
                    Some(found) => format!(
                        "the PostgreSQL store at {display} has schema version {found} and needs {LATEST}: a command that writes upgrades it"
                    ),
                })
                .into());
            }
            // One migrator at a time; whoever waited sees what the first one applied.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )?;
            let found = schema_version(tx)?.unwrap_or(0);
            if found > LATEST {
                return Err(StoreError::NewerSchema {
                    path: display.clone(),
                    found: found as u32,
                    supported: LATEST as u32,
                }
                .into());
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )?;
            }
            tx.execute(
                "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&META_RECORDS, &SCHEMA_VERSION.to_be_bytes().to_vec()],
            )?;
            Ok(())
        })
    }

    /// The records' own format (the version sled keeps as its schema): written by the first
    /// migration run, refused when newer, as on sled.
    fn check_records(&self) -> Result<(), StoreError> {
        let display = self.target.display.clone();
        self.read(|tx| {
            let Some(bytes) = meta(tx, META_RECORDS)? else {
                return Err(
                    StoreError::Damaged("the record format version is missing".into()).into(),
                );
            };
            let found = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| {
                    StoreError::Damaged("the record format version is malformed".into())
                })?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: display.clone(),
                    found,
                    supported: SCHEMA_VERSION,
                }
                .into());
            }
            if found < SCHEMA_VERSION {
                return Err(StoreError::Damaged(format!(
                    "record format {found} is not one this sparekey can read or migrate"
                ))
                .into());
            }
            Ok(())
        })
    }

    /// One account's change: lock its row, apply `rule`, write the record back and the events
    /// `audit` makes of the outcome, all in one transaction. `missing` when there is no such
    /// account. Every mutating method of the trait is this with its rule.
    fn mutate<T: Clone>(
        &self,
        name: &str,
        missing: T,
        at: UnixTime,
        audit: AuditFor<'_, T>,
        rule: impl Fn(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                "SELECT record FROM sparekey_accounts WHERE name = $1 FOR UPDATE",
                &[&name],
            )?
            else {
                return Ok(missing.clone());
            };
            let mut account: Account =
                decode(row.get(0), &format!("the record of account '{name}'"))?;
            let applied = rule(&mut account);
            if !applied.changed {
                return Ok(applied.outcome);
            }
            tx.execute(
                "UPDATE sparekey_accounts SET record = $2, facts = $3 WHERE name = $1",
                &[&name, &encode(&account), &encode(&account.facts())],
            )?;
            insert_events(tx, at, name, audit(&applied.outcome))?;
            Ok(applied.outcome)
        })
    }

    /// [`mutate`](Self::mutate) for changes that record no events of their own.
    fn modify<T: Clone>(
        &self,
        name: &str,
        missing: T,
        rule: impl Fn(&mut Account) -> Applied<T>,
    ) -> Result<T, StoreError> {
        self.mutate(name, missing, UnixTime::default(), &|_| Vec::new(), rule)
    }

    /// Writes everything from one REPEATABLE READ snapshot as the encoding of a
    /// [`StoreImage`] (the very bytes `encode(&self.export_image()?)` would give), one row at a
    /// time, so a backup of a large store never holds it in memory. Returns the numbers of
    /// accounts and audit events written. Every record is decoded on the way, so a damaged one
    /// fails the backup as it fails [`Store::export_image`].
    pub fn export_to(&self, out: &mut dyn Write) -> Result<(usize, usize), StoreError> {
        let mut started = false;
        self.transact(IsolationLevel::RepeatableRead, true, |tx| {
            // A read-only snapshot meets no serialization failure; should a retry come anyway,
            // what was already written cannot be taken back.
            if std::mem::replace(&mut started, true) {
                return Err(StoreError::Unavailable("the backup's snapshot was interrupted".into()).into());
            }
            tx.batch_execute("SET LOCAL statement_timeout = 0")?;
            let row = tx.query_one(
                "SELECT (SELECT count(*) FROM sparekey_accounts), (SELECT count(*) FROM sparekey_audit)",
                &[],
            )?;
            let counts = (row.get::<_, i64>(0) as usize, row.get::<_, i64>(1) as usize);
            let head = [
                encode(&meta_text(tx, META_KEY)?),
                encode(&meta_text(tx, META_OPERATOR)?),
                encode(&counts.0),
            ];
            head.iter().try_for_each(|bytes| write_all(out, bytes))?;
            stream_rows(tx, "SELECT record FROM sparekey_accounts ORDER BY name", &mut |bytes| {
                let account: Account = decode(bytes, "an account record")?;
                write_all(out, &encode(&account))
            })?;
            write_all(out, &encode(&counts.1))?;
            stream_rows(tx, "SELECT event FROM sparekey_audit ORDER BY id", &mut |bytes| {
                let event: AuditEvent = decode(bytes, "an audit event")?;
                write_all(out, &encode(&event))
            })?;
            Ok(counts)
        })
    }

    fn facts_rows(rows: Vec<postgres::Row>) -> Step<Vec<AccountFacts>> {
        rows.iter()
            .map(|row| Ok(decode(row.get(0), "the list facts of an account")?))
            .collect()
    }
}

fn run_once<T>(
    client: &mut Client,
    isolation: IsolationLevel,
    read_only: bool,
    body: &mut impl FnMut(&mut Transaction<'_>) -> Step<T>,
) -> Step<T> {
    let mut tx = client
        .build_transaction()
        .isolation_level(isolation)
        .read_only(read_only)
        .start()?;
    let value = body(&mut tx)?;
    tx.commit()?;
    Ok(value)
}

fn write_all(out: &mut dyn Write, bytes: &[u8]) -> Step<()> {
    out.write_all(bytes)
        .map_err(|e| StoreError::Io(format!("cannot write the backup: {e}")).into())
}

/// Runs `sql` and hands each row's first column to `each`, fetching rows as they come instead
/// of collecting them all.
fn stream_rows(
    tx: &mut Transaction<'_>,
    sql: &str,
    each: &mut dyn FnMut(&[u8]) -> Step<()>,
) -> Step<()> {
    let mut rows = tx.query_raw(
        sql,
        std::iter::empty::<&(dyn postgres::types::ToSql + Sync)>(),
    )?;
    while let Some(row) = rows.next()? {
        each(row.get(0))?;
    }
    Ok(())
}

fn one_line(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// The newest applied migration; `None` when there is no sparekey schema at all.
fn schema_version(tx: &mut Transaction<'_>) -> Step<Option<i32>> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(Some(
        tx.query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0),
    ))
}

fn meta(tx: &mut Transaction<'_>, key: &str) -> Step<Option<Vec<u8>>> {
    Ok(tx
        .query_opt("SELECT value FROM sparekey_meta WHERE key = $1", &[&key])?
        .map(|row| row.get(0)))
}

fn meta_text(tx: &mut Transaction<'_>, key: &str) -> Step<Option<String>> {
    Ok(meta(tx, key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Inserts the events stamped with `at` and `account`, and keeps the log within its bound.
fn insert_events(
    tx: &mut Transaction<'_>,
    at: UnixTime,
    account: &str,
    kinds: Vec<AuditKind>,
) -> Step<()> {
    for kind in kinds {
        let event = AuditEvent {
            at,
            account: account.to_string(),
            kind,
        };
        let id: i64 = tx
            .query_one(
                "INSERT INTO sparekey_audit (account, event) VALUES ($1, $2) RETURNING id",
                &[&account, &encode(&event)],
            )?
            .get(0);
        if id % PRUNE_EVERY == 0 {
            tx.execute(
                "DELETE FROM sparekey_audit WHERE id <= $1",
                &[&(id - AUDIT_RETENTION as i64)],
            )?;
        }
    }
    Ok(())
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    fn bind_key(&self, fingerprint: &str) -> Result<KeyBinding, StoreError> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&META_KEY, &fingerprint.as_bytes()],
            )?;
            if inserted == 1 {
                return Ok(KeyBinding::Bound);
            }
            let stored = meta_text(tx, META_KEY)?.unwrap_or_default();
            Ok(if stored == fingerprint {
                KeyBinding::Matches
            } else {
                KeyBinding::Mismatch { stored }
            })
        })
    }

    fn insert_account(&self, account: &Account) -> Result<bool, StoreError> {
        let (record, facts) = (encode(account), encode(&account.facts()));
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO sparekey_accounts (name, record, facts) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                &[&account.name, &record, &facts],
            )?;
            Ok(inserted == 1)
        })
    }

    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.read(|tx| {
            match tx.query_opt(
                "SELECT record FROM sparekey_accounts WHERE name = $1",
                &[&name],
            )? {
                Some(row) => Ok(Some(decode(
                    row.get(0),
                    &format!("the record of account '{name}'"),
                )?)),
                None => Ok(None),
            }
        })
    }

    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError> {
        self.read(|tx| {
            Self::facts_rows(tx.query("SELECT facts FROM sparekey_accounts ORDER BY name", &[])?)
        })
    }

    fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<AccountFacts>, StoreError> {
        let n = limit(limit_to);
        // Keyset pagination: the primary key's index gives the next page without counting the
        // rows before it.
        self.read(|tx| {
            let rows = match after {
                Some(after) => tx.query(
                    "SELECT facts FROM sparekey_accounts WHERE name > $1 ORDER BY name LIMIT $2",
                    &[&after, &n],
                )?,
                None => tx.query(
                    "SELECT facts FROM sparekey_accounts ORDER BY name LIMIT $1",
                    &[&n],
                )?,
            };
            Self::facts_rows(rows)
        })
    }

    fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute("DELETE FROM sparekey_accounts WHERE name = $1", &[&name])? == 1)
        })
    }

    fn set_pending(&self, name: &str, pending: &PendingTotp) -> Result<bool, StoreError> {
        self.modify(name, false, |a| mutation::set_pending(a, pending))
    }

    fn activate_pending(
        &self,
        name: &str,
        pending_id: u64,
        totp: &ActiveTotp,
        codes: &CodeSet,
    ) -> Result<Activation, StoreError> {
        self.modify(name, Activation::NoAccount, |a| {
            mutation::activate_pending(a, pending_id, totp, codes)
        })
    }

    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError> {
        self.mutate(name, StepConsumption::NotEnrolled, at, audit, |a| {
            mutation::consume_totp_step(a, step, at)
        })
    }

    fn spend_totp_step(&self, name: &str, step: u64) -> Result<bool, StoreError> {
        self.modify(name, false, |a| mutation::spend_totp_step(a, step))
    }

    fn consume_backup_code(
        &self,
        name: &str,
        set_id: u64,
        slot: usize,
        at: UnixTime,
        audit: AuditFor<'_, CodeConsumption>,
    ) -> Result<CodeConsumption, StoreError> {
        self.mutate(name, CodeConsumption::NoAccount, at, audit, |a| {
            mutation::consume_backup_code(a, set_id, slot, at)
        })
    }

    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, at, audit, |a| {
            mutation::record_password_login(a, at)
        })
    }

    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, Option<FailureRecord>>,
    ) -> Result<Option<FailureRecord>, StoreError> {
        self.mutate(name, None, at, audit, |a| mutation::record_failure(a, at))
    }

    fn clear_failures(&self, name: &str) -> Result<bool, StoreError> {
        self.modify(name, false, mutation::clear_failures)
    }

    fn replace_codes(&self, name: &str, codes: &CodeSet) -> Result<bool, StoreError> {
        self.modify(name, false, |a| mutation::replace_codes(a, codes))
    }

    fn remove_two_factor(&self, name: &str) -> Result<bool, StoreError> {
        self.modify(name, false, mutation::remove_two_factor)
    }

    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        self.read(|tx| meta_text(tx, META_OPERATOR))
    }

    fn set_operator_password(&self, phc: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&META_OPERATOR, &phc.as_bytes()],
            )? == 1)
        })
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        self.read(|tx| match meta(tx, META_OPERATOR_FAILURES)? {
            Some(bytes) => Ok(decode(&bytes, "the operator's failure record")?),
            None => Ok(FailureRecord::default()),
        })
    }

    fn record_operator_failure(&self, at: UnixTime) -> Result<FailureRecord, StoreError> {
        self.write(|tx| {
            // The row exists first, so that concurrent first failures queue on its lock.
            tx.execute(
                "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&META_OPERATOR_FAILURES, &encode(&FailureRecord::default())],
            )?;
            let row = tx.query_one(
                "SELECT value FROM sparekey_meta WHERE key = $1 FOR UPDATE",
                &[&META_OPERATOR_FAILURES],
            )?;
            let mut record: FailureRecord = decode(row.get(0), "the operator's failure record")?;
            record.consecutive = record.consecutive.saturating_add(1);
            record.last_failure_at = Some(at);
            tx.execute(
                "UPDATE sparekey_meta SET value = $2 WHERE key = $1",
                &[&META_OPERATOR_FAILURES, &encode(&record)],
            )?;
            Ok(record)
        })
    }

    fn clear_operator_failures(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM sparekey_meta WHERE key = $1",
                &[&META_OPERATOR_FAILURES],
            )?;
            Ok(())
        })
    }

    fn export_image(&self) -> Result<StoreImage, StoreError> {
        // One snapshot for everything, whatever other hosts change meanwhile; no statement
        // limit, since a large store takes longer than a login.
        self.transact(IsolationLevel::RepeatableRead, true, |tx| {
            tx.batch_execute("SET LOCAL statement_timeout = 0")?;
            let accounts = tx
                .query("SELECT record FROM sparekey_accounts ORDER BY name", &[])?
                .iter()
                .map(|row| Ok(decode(row.get(0), "an account record")?))
                .collect::<Step<Vec<Account>>>()?;
            let audit = tx
                .query("SELECT event FROM sparekey_audit ORDER BY id", &[])?
                .iter()
                .map(|row| Ok(decode(row.get(0), "an audit event")?))
                .collect::<Step<Vec<AuditEvent>>>()?;
            Ok(StoreImage {
                key_fingerprint: meta_text(tx, META_KEY)?,
                operator_password: meta_text(tx, META_OPERATOR)?,
                accounts,
                audit,
            })
        })
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        let display = self.target.display.clone();
        // One transaction: a restore that fails leaves the store as empty as it was.
        self.write(|tx| {
            tx.batch_execute(
                "SET LOCAL statement_timeout = 0; \
                 LOCK TABLE sparekey_accounts, sparekey_audit IN EXCLUSIVE MODE",
            )?;
            let occupied: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM sparekey_accounts) \
                     OR EXISTS (SELECT 1 FROM sparekey_audit)",
                    &[],
                )?
                .get(0);
            if occupied {
                return Err(StoreError::Conflict(format!(
                    "the PostgreSQL store at {display} is not empty: restore only fills an empty store"
                ))
                .into());
            }
            copy_accounts(tx, &image.accounts)?;
            copy_audit(tx, &image.audit)?;
            for (key, value) in [
                (META_KEY, &image.key_fingerprint),
                (META_OPERATOR, &image.operator_password),
            ] {
                if let Some(value) = value {
                    tx.execute(
                        "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        &[&key, &value.as_bytes()],
                    )?;
                }
            }
            Ok(())
        })
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(|tx| insert_events(tx, event.at, &event.account, vec![event.kind.clone()]))
    }

    fn audit_events(
        &self,
        account: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let n = limit(limit_to);
        self.read(|tx| {
            let rows = match account {
                Some(account) => tx.query(
                    "SELECT event FROM sparekey_audit WHERE account = $1 ORDER BY id DESC LIMIT $2",
                    &[&account, &n],
                )?,
                None => tx.query(
                    "SELECT event FROM sparekey_audit ORDER BY id DESC LIMIT $1",
                    &[&n],
                )?,
            };
            let mut events = rows
                .iter()
                .map(|row| Ok(decode(row.get(0), "an audit event")?))
                .collect::<Step<Vec<AuditEvent>>>()?;
            events.reverse();
            Ok(events)
        })
    }
}

/// Loads accounts with COPY: one stream instead of a round trip per row.
fn copy_accounts(tx: &mut Transaction<'_>, accounts: &[Account]) -> Step<()> {
    let sink = tx.copy_in("COPY sparekey_accounts (name, record, facts) FROM STDIN BINARY")?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::BYTEA, Type::BYTEA],
    );
    for account in accounts {
        writer.write(&[&account.name, &encode(account), &encode(&account.facts())])?;
    }
    writer.finish()?;
    Ok(())
}

/// Loads audit events with COPY, in their order (the identity numbers them).
fn copy_audit(tx: &mut Transaction<'_>, events: &[AuditEvent]) -> Step<()> {
    let sink = tx.copy_in("COPY sparekey_audit (account, event) FROM STDIN BINARY")?;
    let mut writer =
        postgres::binary_copy::BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::BYTEA]);
    for event in events {
        writer.write(&[&event.account, &encode(event)])?;
    }
    writer.finish()?;
    Ok(())
}

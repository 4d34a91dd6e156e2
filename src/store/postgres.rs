//! The PostgreSQL backend, for several login hosts sharing one store. Each account is one row:
//! its name, its case-folded name (a UNIQUE index: two names that differ only by case cannot
//! both exist), the same tagged record bytes the sled backend writes (see [`records`]), its
//! encoded list facts (so listing and keyset pagination never decode full records) and its
//! refusal note (see [`mutation::RefusalNote`]); audit events are rows under a generated id,
//! flagged when they are noise so retention drops those first; meta values (key fingerprint,
//! record format, the tagged operator values) are rows of their own. The record format row is
//! tagged by the first bind (see [`META_RECORDS`]), as sled's schema marker is, so a bound
//! store's format cannot be edited, not even back to what a never-bound store holds. The tables
//! come from versioned migrations embedded in the binary; the record key comes from
//! [`Store::bind_key`].
//!
//! Every mutation is one transaction that locks the account's row (`SELECT … FOR UPDATE`),
//! checks its tag, applies the pure rule from [`mutation`], writes the tagged record back and
//! inserts its audit events, then commits: the same semantics as sled's by construction, across
//! hosts. Serialization and deadlock failures are retried a bounded number of times;
//! `statement_timeout` and `lock_timeout` keep a login from hanging. Every process opens the
//! store and loads an account, so those go as single statements outside a transaction (one
//! snapshot each, one round trip): a round trip is most of what a statement costs here.
//!
//! Times come from the database's clock, not the hosts': every mutation reads it in its own
//! transaction, folded into the query that locks its row (see `db_now!`), and ignores the
//! caller's `at`, so the throttle gate, the failure times and the audit stamps agree across
//! hosts whose clocks differ (see the [`Store`] trait's doc). What a host builds into a record
//! (an account's creation time, an enrollment's start) and TOTP steps stay on the host's clock.
//!
//! Must never report a change done before its COMMIT returned, never apply migrations from a
//! read-only open, never accept a record (or a bound store's record format) whose tag fails, and
//! never touch a database whose schema is newer than this build's.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::core::account::{
    Account, AccountFacts, ActiveTotp, PendingTotp, folded_name, printable,
};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::keys::{MacKey, StoreKey, TAG_LEN};
use crate::core::kiosk::OPERATOR_AUDIT_NAME;
use crate::core::store::{
    Activation, AuditFor, CodeConsumption, CodesConfirmation, ImageItem, ImageSink, KeyBinding,
    Reservation, SettleCheck, Settlement, StepConsumption, Store, StoreError, StoreImage,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use crate::store::location::{PostgresTarget, TlsPolicy};
use crate::store::mutation::{self, Applied, RefusalNote};
use crate::store::records;
use crate::store::sled_store::AUDIT_RETENTION;
use crate::store::{SCHEMA_VERSION, decode, encode};

/// The schema, one migration per version, applied in order and recorded in
/// `schema_migrations`. Never edit a released one: add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    (
        2,
        r#"
    -- Record format 2: tagged records, names unique regardless of case (the folding is
    -- sparekey's own, computed by the client), refusal notes, noise kept apart for retention.
    ALTER TABLE sparekey_accounts ADD COLUMN folded text COLLATE "C";
    ALTER TABLE sparekey_accounts ADD COLUMN refusal bytea;
    CREATE UNIQUE INDEX sparekey_accounts_folded ON sparekey_accounts (folded);
    ALTER TABLE sparekey_audit ADD COLUMN noise boolean NOT NULL DEFAULT false;
    CREATE INDEX sparekey_audit_noise ON sparekey_audit (id) WHERE noise;
    "#,
    ),
    (
        3,
        r#"
    -- A store bound before the bind tagged the record format row and wrote the operator's
    -- failure record: the next bind with the store's key finishes that (see META_UPGRADE).
    INSERT INTO sparekey_meta (key, value)
    SELECT 'bound_before_tags', '\x01'::bytea
    WHERE EXISTS (SELECT 1 FROM sparekey_meta WHERE key = 'key_fingerprint');
    "#,
    ),
];

/// The newest schema this build knows.
const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Serializes migrations of concurrent first uses (an arbitrary constant: "sparekey").
const MIGRATION_LOCK: i64 = 0x7370_6172_656b_6579;

const META_KEY: &str = "key_fingerprint";
/// The record format: its version (4 bytes, big-endian) as the first migration writes it, and
/// from the first bind on the same version tagged under the record key (the tagged schema
/// marker of [`records::encode_schema_marker`], as sled keeps beside its version), so an edit
/// below sparekey, even one that writes back what a never-bound store holds, is damage.
const META_RECORDS: &str = "record_schema";
const META_OPERATOR: &str = "operator_password";
const META_OPERATOR_FAILURES: &str = "operator_failures";
/// Written by the reservation of a name that has no account (see [`Store::reserve_attempt`]),
/// one of [`PROBE_ROWS`] rows chosen by the name, so a flood of unknown names does not queue
/// on one row lock (a wait that real names, each on its own row, would not show).
const META_PROBE: &str = "write_probe";
const PROBE_ROWS: u32 = 64;
/// Set by migration 3 on a store an earlier build bound: its record format row is the bare
/// version and its operator's failure record appears only with the first operator attempt.
/// The next bind with the store's key tags the one, writes the other as a tagged zero if it is
/// missing, and removes this row, in one transaction. Writing this row below sparekey gains
/// nothing: the version is tagged only if it is this build's, and a zero failure record is
/// what any rollback of that tagged record gives (see SECURITY.md).
const META_UPGRADE: &str = "bound_before_tags";

/// Tries of a transaction that failed on a serialization failure or a deadlock.
const ATTEMPTS: u32 = 5;
/// How long one statement, and one wait for a row lock, may take: a login fails clearly
/// instead of hanging behind a stuck host.
const STATEMENT_TIMEOUT: &str = "10s";
const LOCK_TIMEOUT: &str = "5s";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The audit log is pruned to [`AUDIT_RETENTION`] whenever the id crosses a multiple of this.
const PRUNE_EVERY: i64 = 512;

/// The database's time, in whole seconds: every change takes its time from this, read in its
/// own transaction (folded into the query that locks its row), never from the caller's `at`,
/// so hosts whose clocks differ agree on delays, failure times and audit stamps. The clock at
/// that moment, not the transaction's start: a change that waited for a row lock is timed
/// after the change it waited for.
macro_rules! db_now {
    () => {
        "floor(extract(epoch FROM clock_timestamp()))::bigint"
    };
}

/// The audit insert of one change: the events of account `$1` from the arrays `$2` (encoded
/// events) and `$3` (their noise flags), in their order, so their ids follow the rule's order.
macro_rules! insert_events {
    () => {
        "INSERT INTO sparekey_audit (account, event, noise) \
         SELECT $1, e.event, e.noise FROM unnest($2, $3) WITH ORDINALITY AS e(event, noise, n) \
         ORDER BY e.n RETURNING id"
    };
}

pub struct PostgresStore {
    target: PostgresTarget,
    /// `None` after the connection was lost: the next call connects again.
    client: Mutex<Option<Client>>,
    /// The key records are tagged with, from [`Store::bind_key`] or [`PostgresStore::attach_key`].
    key: OnceLock<StoreKey>,
    /// The meta rows a bind checks, as the open read them (see [`PostgresStore::open_current`]),
    /// taken by the first bind.
    opened: Mutex<Option<Metas>>,
}

type Metas = std::collections::HashMap<String, Vec<u8>>;

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
            key: OnceLock::new(),
            opened: Mutex::new(None),
        };
        if !store.open_current()? {
            store.migrate(create)?;
        }
        Ok(store)
    }

    /// The open of a store at this build's schema and record format, which is every open but
    /// the first: one statement on its own, no lock. It also reads, in the same snapshot, the
    /// rows a bind checks, so the bind of a store already bound to the key sends nothing (see
    /// [`Store::bind_key`]). `false` when there are no tables yet, another version or a format
    /// row to refuse: [`migrate`](Self::migrate) then checks it in full and says what is wrong.
    /// Any other error is the open's.
    fn open_current(&self) -> Result<bool, StoreError> {
        let mut guard = self.client()?;
        let client = guard.as_mut().expect("connected above");
        let found = client.query_typed(
            "SELECT (SELECT coalesce(max(version), 0) FROM schema_migrations), m.key, m.value \
             FROM (VALUES (1)) AS one (x) LEFT JOIN sparekey_meta m ON m.key = ANY($1)",
            &[(
                &&[META_KEY, META_UPGRADE, META_RECORDS][..],
                Type::TEXT_ARRAY,
            )],
        );
        let rows = match found {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(false),
            Err(e) => {
                if connection_lost(&e) {
                    *guard = None;
                }
                return Err(self.error(e));
            }
        };
        let version: i32 = rows.first().map_or(0, |row| row.get(0));
        let metas: Metas = rows
            .iter()
            .filter_map(|row| Some((row.get::<_, Option<String>>(1)?, row.get(2))))
            .collect();
        if version != LATEST
            || format_check(&metas.get(META_RECORDS).cloned(), &self.target.display).is_err()
        {
            return Ok(false);
        }
        *self.opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(metas);
        Ok(true)
    }

    pub fn display(&self) -> &str {
        &self.target.display
    }

    /// The server settings a used code's durability depends on, for `doctor`: `fsync`,
    /// `synchronous_commit` (this session's: sparekey raises `off` and `local` to `on`) and
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
        // One round trip. An accepted code must be durable when reported: never commit
        // asynchronously, whatever the server's default (`off` and `local` become `on`; a
        // stronger setting, such as remote_apply, is kept).
        client
            .batch_execute(&format!(
                "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '{LOCK_TIMEOUT}'; \
                 SET idle_in_transaction_session_timeout = '60s'; \
                 SELECT set_config('synchronous_commit', 'on', false) \
                 WHERE current_setting('synchronous_commit') IN ('off', 'local')"
            ))
            .map_err(|e| self.error(e))?;
        Ok(client)
    }

    /// TLS through rustls: certificate and host-name verification against the roots of
    /// `root_cert` (every certificate in that PEM file, as libpq's `sslrootcert`: the only
    /// roots trusted) or else the system's, TLS 1.2 or newer.
    fn tls_connector(
        &self,
        root_cert: &Option<std::path::PathBuf>,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match root_cert {
            Some(path) => {
                let bad = |e: &dyn std::fmt::Display| {
                    StoreError::Io(format!(
                        "sslrootcert {} cannot be used: {e}",
                        path.display()
                    ))
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(&e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&e))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(bad(&"it holds no PEM certificate"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(StoreError::Io(
                        "no trusted root certificates on this system: give sslrootcert=FILE".into(),
                    ));
                }
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Io(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
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
            // The server's line names the file, which would tell the table apart: an unknown
            // name's probe from a real account's count.
            SqlState::DISK_FULL => StoreError::Unavailable(format!(
                "the PostgreSQL server at {at} is out of disk space; nothing was changed"
            )),
            SqlState::OUT_OF_MEMORY | SqlState::TOO_MANY_CONNECTIONS => {
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
        self.with_client(|client| run_once(client, isolation, read_only, &mut body))
    }

    /// Runs `run` on the connection, with the retries and the error translation of
    /// [`transact`](Self::transact); a lost connection is dropped, so the next call connects
    /// again. A read of one statement goes through here on its own: the statement is its own
    /// transaction (one snapshot), two round trips fewer than [`read`](Self::read).
    fn with_client<T>(&self, mut run: impl FnMut(&mut Client) -> Step<T>) -> Result<T, StoreError> {
        let mut guard = self.client()?;
        let mut attempt = 1;
        loop {
            let client = guard.as_mut().expect("connected above");
            match run(client) {
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
            // A store at the current schema takes no lock here either (the open's statement
            // found it otherwise, and concurrent first uses must not queue behind a check).
            let found = schema_version(tx)?;
            if found == Some(LATEST) {
                return check_record_format(tx, &display);
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
            check_record_format(tx, &display)
        })
    }

    /// Hands the store its record key without binding anything: for `doctor`, which reads and
    /// checks every record but never writes.
    pub fn attach_key(&self, key: &StoreKey) {
        let _ = self.key.set(key.share());
    }

    /// The record format of the data (checked at open: always this build's).
    pub fn schema(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// The record key; an error (never a panic) if the store is used before its key is bound.
    fn mac(&self) -> Result<&MacKey, StoreError> {
        self.key.get().map(StoreKey::records).ok_or_else(|| {
            StoreError::Conflict(
                "the store's records cannot be checked before its key is bound".into(),
            )
        })
    }

    /// The fingerprint of the key this store is bound to, if any (read only).
    pub fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.read(|tx| meta_text(tx, META_KEY))
    }

    /// Whether the database holds accounts or audit events (for `doctor`: a store in use whose
    /// key fingerprint is missing was tampered with). An error reads as "holds data": doctor
    /// then asks for a fix rather than passing.
    pub fn holds_data(&self) -> bool {
        self.read(|tx| {
            let row = tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM sparekey_accounts) OR EXISTS (SELECT 1 FROM sparekey_audit)",
                &[],
            )?;
            Ok(row.get::<_, bool>(0))
        })
        .unwrap_or(true)
    }

    /// Reads and checks every account record and operator value; returns how many accounts
    /// there are and one line for each record that fails (for `doctor`).
    pub fn check_records(&self) -> Result<(usize, Vec<String>), StoreError> {
        let key = self.mac()?;
        let (count, mut damaged) = self.read(|tx| {
            let rows = tx.query(
                "SELECT name, record FROM sparekey_accounts ORDER BY name",
                &[],
            )?;
            let damaged = rows
                .iter()
                .filter_map(|row| records::decode_account(key, row.get(0), row.get(1)).err())
                .map(|e| e.to_string())
                .collect::<Vec<_>>();
            Ok((rows.len(), damaged))
        })?;
        for result in [
            self.operator_password().map(|_| ()),
            self.operator_failures().map(|_| ()),
            self.check_format_tag(key),
        ] {
            if let Err(e) = result {
                damaged.push(e.to_string());
            }
        }
        Ok((count, damaged))
    }

    /// What a bind would refuse about the record format row of a bound store (read only: for
    /// `doctor`); a store never bound has nothing to vouch for yet.
    fn check_format_tag(&self, key: &MacKey) -> Result<(), StoreError> {
        self.read(|tx| match meta(tx, META_KEY)? {
            Some(_) => Ok(check_marker(meta(tx, META_RECORDS)?, key)?),
            None => Ok(()),
        })
    }

    /// One account's change: lock its row, check its tag, apply `rule` at the database's time
    /// (see `db_now!`), write the tagged record back and the events `audit` makes of the
    /// outcome, all in one transaction. `missing` when there is no such account. Every
    /// record-changing method of the trait is this with its rule.
    fn mutate<T: Clone>(
        &self,
        name: &str,
        missing: T,
        audit: AuditFor<'_, T>,
        rule: impl Fn(&mut Account, UnixTime) -> Applied<T>,
    ) -> Result<T, StoreError> {
        let key = self.mac()?;
        self.write(|tx| {
            let Some((mut account, now)) = lock_account(tx, key, name)? else {
                return Ok(missing.clone());
            };
            let applied = rule(&mut account, now);
            if !applied.changed {
                return Ok(applied.outcome);
            }
            put_account_with_events(tx, key, &account, now, audit(&applied.outcome))?;
            Ok(applied.outcome)
        })
    }

    /// The kiosk operator's failure record changed by `f` under its row lock, at the database's
    /// time, with its events.
    fn modify_operator<T>(
        &self,
        audit: AuditFor<'_, T>,
        f: impl Fn(&mut FailureRecord, UnixTime) -> Applied<T>,
    ) -> Result<T, StoreError> {
        let key = self.mac()?;
        self.write(|tx| {
            // Written by the bind, so concurrent first failures queue on its lock; a missing
            // one was removed, and counting from zero would unlock a locked operator.
            let Some(row) = tx.query_opt(
                concat!(
                    "SELECT value, ",
                    db_now!(),
                    " FROM sparekey_meta WHERE key = $1 FOR UPDATE"
                ),
                &[&META_OPERATOR_FAILURES],
            )?
            else {
                return Err(missing_failure_record().into());
            };
            let now: UnixTime = row.get(1);
            let mut record = records::decode_operator_failures(key, row.get(0))?;
            let applied = f(&mut record, now);
            if applied.changed {
                tx.execute(
                    "UPDATE sparekey_meta SET value = $2 WHERE key = $1",
                    &[
                        &META_OPERATOR_FAILURES,
                        &records::encode_operator_failures(key, &record),
                    ],
                )?;
                insert_events(tx, now, OPERATOR_AUDIT_NAME, audit(&applied.outcome))?;
            }
            Ok(applied.outcome)
        })
    }

    /// Keeps at most `retention` audit events: noise first, oldest first, and only then the
    /// oldest security events, as sled does, so a flood of refusals can never rotate a login,
    /// a failure or a lock out of the log.
    pub fn prune_audit(&self, retention: usize) -> Result<(), StoreError> {
        self.write(|tx| prune(tx, retention))
    }

    /// Loads an image into this store, which must be empty, with `events` after the image's
    /// own: one transaction, so a restore that fails leaves the store as empty as it was.
    pub fn restore_image(
        &self,
        image: &StoreImage,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let key = self.mac()?;
        let mut seen = std::collections::HashMap::new();
        for account in &image.accounts {
            if let Some(other) = seen.insert(folded_name(&account.name), &account.name) {
                return Err(case_collision(other, &account.name));
            }
        }
        let display = self.target.display.clone();
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
            copy_accounts(tx, key, &image.accounts)?;
            copy_audit(tx, image.audit.iter().chain(events))?;
            if let Some(fingerprint) = &image.key_fingerprint {
                upsert_meta(tx, META_KEY, fingerprint.as_bytes())?;
            }
            let operator = records::encode_operator_password(key, image.operator_password.as_deref());
            upsert_meta(tx, META_OPERATOR, &operator)?;
            Ok(())
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

/// The records' own format (the version sled keeps as its schema): written by the first
/// migration run, refused when newer, as on sled. Read before any key is bound, so only its
/// version is read here; [`Store::bind_key`] checks its tag (see [`META_RECORDS`]). Part of
/// [`migrate`](PostgresStore::migrate)'s transaction; the open's one statement applies
/// [`format_check`] to the row it read.
fn check_record_format(tx: &mut Transaction<'_>, display: &str) -> Step<()> {
    Ok(format_check(&meta(tx, META_RECORDS)?, display)?)
}

/// What [`check_record_format`] says of the row's `value`.
fn format_check(value: &Option<Vec<u8>>, display: &str) -> Result<(), StoreError> {
    let found = record_format(value)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: display.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::Damaged(format!(
            "record format {found} is not one this sparekey can read or migrate"
        )));
    }
    Ok(())
}

/// The newest applied migration; `None` when there is no sparekey schema at all.
fn schema_version(tx: &mut Transaction<'_>) -> Step<Option<i32>> {
    let exists: bool = tx
        .query_typed_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(Some(
        tx.query_typed_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0),
    ))
}

fn meta(tx: &mut Transaction<'_>, key: &str) -> Step<Option<Vec<u8>>> {
    Ok(tx
        .query_typed_opt(
            "SELECT value FROM sparekey_meta WHERE key = $1",
            &[(&key, Type::TEXT)],
        )?
        .map(|row| row.get(0)))
}

/// The version a record format row holds (see [`META_RECORDS`]), tagged or not yet; missing or
/// malformed is damage.
fn record_format(value: &Option<Vec<u8>>) -> Result<u32, StoreError> {
    let Some(bytes) = value else {
        return Err(StoreError::Damaged(
            "the record format version is missing (removed below sparekey): restore from a backup"
                .into(),
        ));
    };
    if ![4, 4 + TAG_LEN].contains(&bytes.len()) {
        return Err(StoreError::Damaged(
            "the record format version is malformed".into(),
        ));
    }
    let mut version = [0; 4];
    version.copy_from_slice(&bytes[..4]);
    Ok(u32::from_be_bytes(version))
}

/// A bound store's record format row (`value`) carries its tag, and vouches for this build's
/// format.
fn check_marker(value: Option<Vec<u8>>, key: &MacKey) -> Result<(), StoreError> {
    record_format(&value)?;
    let bytes = value.unwrap_or_default();
    if bytes.len() == 4 {
        return Err(StoreError::Damaged(
            "the record format version of this bound store is not tagged (rewritten below sparekey): restore from a backup".into(),
        ));
    }
    let tagged = records::decode_schema_marker(key, &bytes).map_err(|_| {
        StoreError::Damaged(
            "the record format version fails its integrity check (altered, or written with another key): restore from a backup".into(),
        )
    })?;
    match tagged {
        SCHEMA_VERSION => Ok(()),
        other => Err(StoreError::Damaged(format!(
            "the tagged record format says version {other}, not {SCHEMA_VERSION}: restore from a backup"
        ))),
    }
}

/// What an earlier build's bind left undone (see [`META_UPGRADE`]): the bare record format
/// row, if it says this build's version, becomes the tagged one; a missing operator failure
/// record becomes the tagged zero. Anything else is left for [`check_marker`] to refuse.
fn finish_upgrade(tx: &mut Transaction<'_>, marker: &[u8], no_failures: &[u8]) -> Step<()> {
    tx.execute(
        "UPDATE sparekey_meta SET value = $2 WHERE key = $1 AND value = $3",
        &[
            &META_RECORDS,
            &marker,
            &SCHEMA_VERSION.to_be_bytes().to_vec(),
        ],
    )?;
    tx.execute(
        "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&META_OPERATOR_FAILURES, &no_failures],
    )?;
    tx.execute("DELETE FROM sparekey_meta WHERE key = $1", &[&META_UPGRADE])?;
    Ok(())
}

/// The probe row of an unknown `name` (see [`META_PROBE`]): any fixed spread will do.
fn probe_row(name: &str) -> String {
    let spread = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{META_PROBE}/{}", spread % PROBE_ROWS)
}

/// The meta rows of `keys` that exist, in one round trip.
fn metas(
    tx: &mut Transaction<'_>,
    keys: &[&str],
) -> Step<std::collections::HashMap<String, Vec<u8>>> {
    let rows = tx.query_typed(
        "SELECT key, value FROM sparekey_meta WHERE key = ANY($1)",
        &[(&keys, Type::TEXT_ARRAY)],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

fn meta_text(tx: &mut Transaction<'_>, key: &str) -> Step<Option<String>> {
    Ok(meta(tx, key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

fn upsert_meta(tx: &mut Transaction<'_>, key: &str, value: &[u8]) -> Step<()> {
    tx.execute_typed(
        "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[(&key, Type::TEXT), (&value, Type::BYTEA)],
    )?;
    Ok(())
}

/// The record of `name`, its row locked until the transaction ends and its tag checked (see
/// [`records::decode_account`]), and the database's time (see `db_now!`).
fn lock_account(
    tx: &mut Transaction<'_>,
    key: &MacKey,
    name: &str,
) -> Step<Option<(Account, UnixTime)>> {
    let locked = tx.query_typed_opt(
        concat!(
            "SELECT record, ",
            db_now!(),
            " FROM sparekey_accounts WHERE name = $1 FOR UPDATE"
        ),
        &[(&name, Type::TEXT)],
    )?;
    match locked {
        Some(row) => Ok(Some((
            records::decode_account(key, name, row.get(0))?,
            row.get(1),
        ))),
        None => Ok(None),
    }
}

/// Writes `account`'s tagged record and its list facts over its row.
fn put_account(tx: &mut Transaction<'_>, key: &MacKey, account: &Account) -> Step<()> {
    put_account_with_events(tx, key, account, 0, Vec::new())
}

/// Writes `account`'s tagged record and list facts over its row and inserts the events stamped
/// with `at`, in one statement (one round trip), and keeps the log within its bound.
fn put_account_with_events(
    tx: &mut Transaction<'_>,
    key: &MacKey,
    account: &Account,
    at: UnixTime,
    kinds: Vec<AuditKind>,
) -> Step<()> {
    let (events, noise) = event_rows(at, &account.name, kinds);
    let ids = tx.query_typed(
        concat!(
            "WITH written AS (UPDATE sparekey_accounts SET record = $4, facts = $5 WHERE name = $1) ",
            insert_events!()
        ),
        &[
            (&account.name, Type::TEXT),
            (&events, Type::BYTEA_ARRAY),
            (&noise, Type::BOOL_ARRAY),
            (&records::encode_account(key, account), Type::BYTEA),
            (&encode(&account.facts()), Type::BYTEA),
        ],
    )?;
    keep_bound(tx, ids)?;
    Ok(())
}

/// Inserts the events stamped with `at` and `account`, in one statement; returns the id of the
/// first (0 if there were none), and keeps the log within its bound.
fn insert_events(
    tx: &mut Transaction<'_>,
    at: UnixTime,
    account: &str,
    kinds: Vec<AuditKind>,
) -> Step<i64> {
    if kinds.is_empty() {
        return Ok(0);
    }
    let (events, noise) = event_rows(at, account, kinds);
    let ids = tx.query_typed(
        insert_events!(),
        &[
            (&account, Type::TEXT),
            (&events, Type::BYTEA_ARRAY),
            (&noise, Type::BOOL_ARRAY),
        ],
    )?;
    keep_bound(tx, ids)
}

/// The encoded events and their noise flags, as the audit insert's two arrays.
fn event_rows(at: UnixTime, account: &str, kinds: Vec<AuditKind>) -> (Vec<Vec<u8>>, Vec<bool>) {
    kinds
        .into_iter()
        .map(|kind| {
            let noise = kind.is_noise();
            let event = AuditEvent {
                at,
                account: account.to_string(),
                kind,
            };
            (encode(&event), noise)
        })
        .unzip()
}

/// Prunes the log when an inserted id crossed a multiple of [`PRUNE_EVERY`]; returns the
/// first (lowest) of the inserted ids, 0 if there were none.
fn keep_bound(tx: &mut Transaction<'_>, inserted: Vec<postgres::Row>) -> Step<i64> {
    let ids: Vec<i64> = inserted.iter().map(|row| row.get(0)).collect();
    if ids.iter().any(|id| id % PRUNE_EVERY == 0) {
        prune(tx, AUDIT_RETENTION)?;
    }
    Ok(ids.into_iter().min().unwrap_or(0))
}

/// See [`PostgresStore::prune_audit`].
fn prune(tx: &mut Transaction<'_>, retention: usize) -> Step<()> {
    let count: i64 = tx
        .query_one("SELECT count(*) FROM sparekey_audit", &[])?
        .get(0);
    let excess = count - limit(retention);
    if excess <= 0 {
        return Ok(());
    }
    let noise = tx.execute(
        "DELETE FROM sparekey_audit WHERE id IN \
         (SELECT id FROM sparekey_audit WHERE noise ORDER BY id LIMIT $1)",
        &[&excess],
    )? as i64;
    if excess > noise {
        tx.execute(
            "DELETE FROM sparekey_audit WHERE id IN \
             (SELECT id FROM sparekey_audit ORDER BY id LIMIT $1)",
            &[&(excess - noise)],
        )?;
    }
    Ok(())
}

/// Adds a refused attempt to the account's refusal event for `window`, or starts one (see
/// [`mutation::note_refusal`]); the note is a column of the account's row, which the caller
/// holds locked.
fn note_refusal(
    tx: &mut Transaction<'_>,
    name: &str,
    window: FailureRecord,
    gate: Gate,
    at: UnixTime,
) -> Step<()> {
    let old: Option<RefusalNote> = tx
        .query_one(
            "SELECT refusal FROM sparekey_accounts WHERE name = $1",
            &[&name],
        )?
        .get::<_, Option<Vec<u8>>>(0)
        // A note that cannot be read only costs one more event.
        .and_then(|bytes| decode(&bytes, "a refusal note").ok());
    let (mut note, existing) = mutation::note_refusal(old, window, at);
    let kind = AuditKind::AttemptsRefused {
        count: note.count,
        locked: gate == Gate::Locked,
    };
    let id = i64::try_from(note.event).unwrap_or(0);
    // The event may have been pruned meanwhile: then the count goes on in a new one.
    let current = match existing {
        true => tx
            .query_opt("SELECT event FROM sparekey_audit WHERE id = $1", &[&id])?
            .and_then(|row| decode::<AuditEvent>(row.get(0), "an audit event").ok()),
        false => None,
    };
    let same = current
        .is_some_and(|e| e.account == name && matches!(e.kind, AuditKind::AttemptsRefused { .. }));
    if same {
        let event = AuditEvent {
            at: note.first_at,
            account: name.to_string(),
            kind,
        };
        tx.execute(
            "UPDATE sparekey_audit SET event = $2 WHERE id = $1",
            &[&id, &encode(&event)],
        )?;
    } else {
        note.event = insert_events(tx, at, name, vec![kind])? as u64;
    }
    tx.execute(
        "UPDATE sparekey_accounts SET refusal = $2 WHERE name = $1",
        &[&name, &encode(&note)],
    )?;
    Ok(())
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn missing_operator_record() -> StoreError {
    StoreError::Damaged(
        "the operator password record is missing (removed below sparekey): restore from a backup"
            .into(),
    )
}

fn missing_failure_record() -> StoreError {
    StoreError::Damaged(
        "the operator's failure record is missing (removed below sparekey): restore from a backup"
            .into(),
    )
}

/// A store in use whose key fingerprint is gone (see [`Store::bind_key`]).
fn missing_fingerprint() -> StoreError {
    StoreError::Damaged(
        "the store holds data but its key fingerprint is missing (removed below sparekey): restore from a backup".into(),
    )
}

/// Two names that count as one account.
fn case_collision(first: &str, second: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the accounts '{}' and '{}' differ only by case, and account names must be unique regardless of case",
        printable(first),
        printable(second)
    ))
}

impl Store for PostgresStore {
    fn bind_key(&self, key: &StoreKey) -> Result<KeyBinding, StoreError> {
        let fingerprint = key.fingerprint();
        let unset = records::encode_operator_password(key.records(), None);
        let no_failures =
            records::encode_operator_failures(key.records(), &FailureRecord::default());
        let marker = records::encode_schema_marker(key.records(), SCHEMA_VERSION);
        let opened = self.opened.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut rows) = opened.filter(|rows| {
            rows.get(META_KEY)
                .is_some_and(|v| v == fingerprint.as_bytes())
                && !rows.contains_key(META_UPGRADE)
        }) {
            // Bound to this key, as the open read it: the common case, with nothing to send.
            // Nothing the full bind would see can have changed since: a fingerprint, once
            // written, is only ever written again with the same value (a restore binds its key
            // first and takes only a backup of that key), and the upgrade mark is written only by a
            // migration. The format row's tag is checked as the full bind checks it.
            check_marker(rows.remove(META_RECORDS), key.records())?;
            self.attach_key(key);
            return Ok(KeyBinding::Matches);
        }
        let binding = self.write(|tx| {
            let inserted = tx.execute_typed(
                "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[(&META_KEY, Type::TEXT), (&fingerprint.as_bytes(), Type::BYTEA)],
            )?;
            if inserted == 1 {
                // Never bound afresh over a store that was in use (accounts, events, or what an
                // earlier bind wrote): its fingerprint was removed below sparekey, and a fresh
                // "no operator password" would hand the kiosk to whoever sets one next. The
                // transaction ends without the new fingerprint.
                let in_use: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM sparekey_accounts) \
                         OR EXISTS (SELECT 1 FROM sparekey_audit) \
                         OR EXISTS (SELECT 1 FROM sparekey_meta WHERE key IN ($1, $2)) \
                         OR EXISTS (SELECT 1 FROM sparekey_meta WHERE key = $3 AND length(value) <> 4)",
                        &[&META_OPERATOR, &META_OPERATOR_FAILURES, &META_RECORDS],
                    )?
                    .get(0);
                if in_use {
                    return Err(missing_fingerprint().into());
                }
                // From now on a missing operator record is damage, as on sled: "no password"
                // and "no failure" are tagged records too, so removing one unlocks nothing.
                tx.execute(
                    "INSERT INTO sparekey_meta (key, value) VALUES ($1, $2), ($3, $4)",
                    &[&META_OPERATOR, &unset, &META_OPERATOR_FAILURES, &no_failures],
                )?;
                // The record format, tagged from now on (see META_RECORDS).
                tx.execute(
                    "UPDATE sparekey_meta SET value = $2 WHERE key = $1",
                    &[&META_RECORDS, &marker],
                )?;
                return Ok(KeyBinding::Bound);
            }
            // Every process binds: what it checks comes in one round trip.
            let mut rows = metas(tx, &[META_KEY, META_UPGRADE, META_RECORDS])?;
            let stored = rows
                .remove(META_KEY)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            Ok(if stored == fingerprint {
                let mut format = rows.remove(META_RECORDS);
                if rows.contains_key(META_UPGRADE) {
                    finish_upgrade(tx, &marker, &no_failures)?;
                    format = meta(tx, META_RECORDS)?;
                }
                check_marker(format, key.records())?;
                KeyBinding::Matches
            } else {
                KeyBinding::Mismatch { stored }
            })
        })?;
        if !matches!(binding, KeyBinding::Mismatch { .. }) {
            self.attach_key(key);
        }
        Ok(binding)
    }

    fn insert_account(
        &self,
        account: &Account,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        let key = self.mac()?;
        let (record, facts) = (
            records::encode_account(key, account),
            encode(&account.facts()),
        );
        let folded = folded_name(&account.name);
        self.write(|tx| {
            // Either unique index (the name, the folded name) makes a taken name a no-op.
            let inserted = tx.query_opt(
                concat!(
                    "INSERT INTO sparekey_accounts (name, folded, record, facts) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING ",
                    db_now!()
                ),
                &[&account.name, &folded, &record, &facts],
            )?;
            // Its event at the database's time; the creation time in the record is the
            // caller's, built into the record it hands over.
            if let Some(row) = &inserted {
                insert_events(tx, row.get(0), &account.name, audit(&true))?;
            }
            Ok(inserted.is_some())
        })
    }

    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let key = self.mac()?;
        self.with_client(|client| {
            match client.query_typed_opt(
                "SELECT record FROM sparekey_accounts WHERE name = $1",
                &[(&name, Type::TEXT)],
            )? {
                Some(row) => Ok(Some(records::decode_account(key, name, row.get(0))?)),
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

    fn delete_account(
        &self,
        name: &str,
        _at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mac()?;
        self.write(|tx| {
            let deleted = tx.query_opt(
                concat!(
                    "DELETE FROM sparekey_accounts WHERE name = $1 RETURNING ",
                    db_now!()
                ),
                &[&name],
            )?;
            if let Some(row) = &deleted {
                insert_events(tx, row.get(0), name, audit(&true))?;
            }
            Ok(deleted.is_some())
        })
    }

    fn set_pending(
        &self,
        name: &str,
        pending: &PendingTotp,
        _at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, audit, |a, _| mutation::set_pending(a, pending))
    }

    fn activate_pending(
        &self,
        name: &str,
        pending_id: u64,
        totp: &ActiveTotp,
        codes: &CodeSet,
        _at: UnixTime,
        audit: AuditFor<'_, Activation>,
    ) -> Result<Activation, StoreError> {
        self.mutate(name, Activation::NoAccount, audit, |a, _| {
            mutation::activate_pending(a, pending_id, totp, codes)
        })
    }

    fn reserve_attempt(
        &self,
        name: &str,
        policy: &ThrottlePolicy,
        _at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        let key = self.mac()?;
        self.write(|tx| {
            let Some((mut account, now)) = lock_account(tx, key, name)? else {
                // A write as for a real account: a lock on no row writes nothing, so without
                // it a store that cannot be written (a full disk) would answer an unknown name
                // with a dummy hash and "wrong name or password", and a real one with the
                // store's error. One upsert of one row, committed as a real count is.
                upsert_meta(tx, &probe_row(name), &[1])?;
                return Ok(Reservation::NoAccount);
            };
            let applied = mutation::reserve_attempt(&mut account, policy, now);
            match applied.outcome {
                Reservation::Refused(gate) => note_refusal(tx, name, account.failures, gate, now)?,
                // Committed before anything is verified: a crash must not give the attempt back.
                _ => put_account(tx, key, &account)?,
            }
            Ok(applied.outcome)
        })
    }

    fn release_attempt(
        &self,
        name: &str,
        previous: FailureRecord,
        reserved: FailureRecord,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, &|_| Vec::new(), |a, _| {
            mutation::release_attempt(a, previous, reserved)
        })
    }

    fn note_refused_attempt(
        &self,
        name: &str,
        gate: Gate,
        _at: UnixTime,
    ) -> Result<(), StoreError> {
        let key = self.mac()?;
        self.write(|tx| {
            if let Some((account, now)) = lock_account(tx, key, name)? {
                note_refusal(tx, name, account.failures, gate, now)?;
            }
            Ok(())
        })
    }

    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        _at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError> {
        self.mutate(name, StepConsumption::NotEnrolled, audit, |a, now| {
            mutation::consume_totp_step(a, step, now, check)
        })
    }

    fn consume_backup_code(
        &self,
        name: &str,
        set_id: u64,
        slot: usize,
        _at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, CodeConsumption>,
    ) -> Result<CodeConsumption, StoreError> {
        self.mutate(name, CodeConsumption::NoAccount, audit, |a, now| {
            mutation::consume_backup_code(a, set_id, slot, now, check)
        })
    }

    fn record_password_login(
        &self,
        name: &str,
        _at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.mutate(name, Settlement::NoAccount, audit, |a, now| {
            mutation::record_password_login(a, now, check)
        })
    }

    fn record_failure(
        &self,
        name: &str,
        _at: UnixTime,
        burn_ahead: Option<u64>,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, audit, |a, _| {
            mutation::record_failure(a, burn_ahead)
        })
    }

    fn clear_failures(
        &self,
        name: &str,
        _at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, audit, |a, _| mutation::clear_failures(a))
    }

    fn replace_codes(
        &self,
        name: &str,
        codes: &CodeSet,
        _at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, audit, |a, _| mutation::replace_codes(a, codes))
    }

    fn confirm_codes(
        &self,
        name: &str,
        set_id: u64,
        _at: UnixTime,
        audit: AuditFor<'_, CodesConfirmation>,
    ) -> Result<CodesConfirmation, StoreError> {
        self.mutate(name, CodesConfirmation::NoAccount, audit, |a, now| {
            mutation::confirm_codes(a, set_id, now)
        })
    }

    fn remove_two_factor(
        &self,
        name: &str,
        _at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        self.mutate(name, false, audit, |a, _| mutation::remove_two_factor(a))
    }

    fn operator_password(&self) -> Result<Option<String>, StoreError> {
        let (value, bound) =
            self.read(|tx| Ok((meta(tx, META_OPERATOR)?, meta(tx, META_KEY)?.is_some())))?;
        match value {
            Some(bytes) => records::decode_operator_password(self.mac()?, &bytes),
            // Never bound to a key: nothing was ever set.
            None if !bound => Ok(None),
            None => Err(missing_operator_record()),
        }
    }

    fn set_operator_password(
        &self,
        phc: &str,
        _at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError> {
        let key = self.mac()?;
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                concat!(
                    "SELECT value, ",
                    db_now!(),
                    " FROM sparekey_meta WHERE key = $1 FOR UPDATE"
                ),
                &[&META_OPERATOR],
            )?
            else {
                return Err(missing_operator_record().into());
            };
            let now: UnixTime = row.get(1);
            // Checked, so damage is not read as "already set".
            if records::decode_operator_password(key, row.get(0))?.is_some() {
                return Ok(false);
            }
            tx.execute(
                "UPDATE sparekey_meta SET value = $2 WHERE key = $1",
                &[
                    &META_OPERATOR,
                    &records::encode_operator_password(key, Some(phc)),
                ],
            )?;
            insert_events(tx, now, OPERATOR_AUDIT_NAME, audit(&true))?;
            Ok(true)
        })
    }

    fn operator_failures(&self) -> Result<FailureRecord, StoreError> {
        let (value, bound) = self.read(|tx| {
            Ok((
                meta(tx, META_OPERATOR_FAILURES)?,
                meta(tx, META_KEY)?.is_some(),
            ))
        })?;
        match value {
            Some(bytes) => records::decode_operator_failures(self.mac()?, &bytes),
            // Never bound to a key: no attempt was ever made.
            None if !bound => Ok(FailureRecord::default()),
            None => Err(missing_failure_record()),
        }
    }

    fn reserve_operator_attempt(
        &self,
        policy: &ThrottlePolicy,
        _at: UnixTime,
    ) -> Result<Reservation, StoreError> {
        self.modify_operator(&|_| Vec::new(), |r, now| mutation::reserve(r, policy, now))
    }

    fn settle_operator_attempt(
        &self,
        _at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError> {
        self.modify_operator(audit, |r, _| mutation::settle(r, check))
    }

    fn record_operator_failure(
        &self,
        _at: UnixTime,
        audit: AuditFor<'_, FailureRecord>,
    ) -> Result<FailureRecord, StoreError> {
        self.modify_operator(audit, |r, _| Applied {
            outcome: *r,
            changed: true,
        })
    }

    fn clear_operator_failures(
        &self,
        _at: UnixTime,
        audit: AuditFor<'_, ()>,
    ) -> Result<(), StoreError> {
        self.modify_operator(audit, |r, _| {
            *r = FailureRecord::default();
            Applied {
                outcome: (),
                changed: true,
            }
        })
    }

    fn export_to(&self, sink: ImageSink<'_>) -> Result<(), StoreError> {
        let key = self.mac()?;
        let mut started = false;
        // One snapshot for everything, whatever other hosts change meanwhile; no statement
        // limit, since a large store takes longer than a login.
        self.transact(IsolationLevel::RepeatableRead, true, |tx| {
            // The sink has seen the first try's items: a second one would hand them over
            // twice. (A read-only snapshot has no serialization failures to retry anyway.)
            if std::mem::replace(&mut started, true) {
                return Err(StoreError::Unavailable(format!(
                    "the export from {} was interrupted after it had begun; run it again",
                    self.target.display
                ))
                .into());
            }
            tx.batch_execute("SET LOCAL statement_timeout = 0")?;
            let operator_password = match meta(tx, META_OPERATOR)? {
                Some(bytes) => records::decode_operator_password(key, &bytes)?,
                None => return Err(missing_operator_record().into()),
            };
            sink(ImageItem::Header {
                key_fingerprint: meta_text(tx, META_KEY)?.as_deref(),
                operator_password: operator_password.as_deref(),
            })?;
            for_each_row(
                tx,
                "SELECT name, record FROM sparekey_accounts ORDER BY name",
                &mut |row| {
                    let account = records::decode_account(key, row.get(0), row.get(1))?;
                    sink(ImageItem::Account(&account))
                },
            )?;
            for_each_row(
                tx,
                "SELECT event FROM sparekey_audit ORDER BY id",
                &mut |row| sink(ImageItem::Audit(&decode(row.get(0), "an audit event")?)),
            )
        })
    }

    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError> {
        self.restore_image(image, &[])
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(|tx| {
            insert_events(tx, event.at, &event.account, vec![event.kind.clone()])?;
            Ok(())
        })
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

/// Rows an export fetches at a time: its memory is one batch, whatever the store's size.
pub const EXPORT_BATCH: i32 = 256;

/// Runs `query` through a portal and hands its rows to `each` [`EXPORT_BATCH`] at a time, so
/// a row is handed over before the ones after it are fetched.
fn for_each_row(
    tx: &mut Transaction<'_>,
    query: &str,
    each: &mut dyn FnMut(&postgres::Row) -> Result<(), StoreError>,
) -> Step<()> {
    let portal = tx.bind(query, &[])?;
    loop {
        let rows = tx.query_portal(&portal, EXPORT_BATCH)?;
        for row in &rows {
            each(row)?;
        }
        if rows.len() < EXPORT_BATCH as usize {
            return Ok(());
        }
    }
}

/// Loads accounts with COPY: one stream instead of a round trip per row.
fn copy_accounts(tx: &mut Transaction<'_>, key: &MacKey, accounts: &[Account]) -> Step<()> {
    let sink =
        tx.copy_in("COPY sparekey_accounts (name, folded, record, facts) FROM STDIN BINARY")?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::TEXT, Type::BYTEA, Type::BYTEA],
    );
    for account in accounts {
        writer.write(&[
            &account.name,
            &folded_name(&account.name),
            &records::encode_account(key, account),
            &encode(&account.facts()),
        ])?;
    }
    writer.finish()?;
    Ok(())
}

/// Loads audit events with COPY, in their order (the identity numbers them).
fn copy_audit<'a>(
    tx: &mut Transaction<'_>,
    events: impl Iterator<Item = &'a AuditEvent>,
) -> Step<()> {
    let sink = tx.copy_in("COPY sparekey_audit (account, event, noise) FROM STDIN BINARY")?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::BYTEA, Type::BOOL],
    );
    for event in events {
        writer.write(&[&event.account, &encode(event), &event.kind.is_noise()])?;
    }
    writer.finish()?;
    Ok(())
}

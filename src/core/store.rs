//! The storage interface the core needs, shaped by the use cases ("consume this code if it is
//! unused", "count one more failure"), not by any database's API, so a second backend on a shared
//! SQL database can implement it with one conditional UPDATE per method.
//!
//! Contract for every implementation: each mutating method is atomic (it applies entirely or not
//! at all, even against concurrent callers in other threads or processes), together with the
//! audit events it is given, and durable on return (flushed to disk before `Ok`), because the
//! core reports security-relevant successes right after. Throttle rules are applied inside that
//! atomic step from the stored record (see [`Store::reserve_attempt`]), never from a copy the
//! caller read earlier.
//!
//! Times: a method's `at` is the caller's clock, the moment of the change, which the throttle
//! gate, the failure record, a code's or a login's time and the audit stamps take. A store
//! shared by several hosts may use its own clock instead, read inside the same atomic step (the
//! PostgreSQL store uses the database's), so hosts whose clocks differ agree on when a delay
//! ends; a caller's own look at the gate before that step is then only a first look. Times the
//! caller builds into what it hands over (an account's creation, an enrollment's start, an
//! event given to [`Store::append_audit`]) and TOTP steps stay the caller's: a step is the
//! authenticator's time.

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::keys::StoreKey;
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};

/// Why the store could not do what was asked, in terms of the store, never of one backend: a
/// face reacts to these without knowing which database is behind the trait. Key files, terminals
/// and exported files are not the store's business: their errors live in
/// [`crate::core::error::Error`]. Every variant reads as one clear line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Another open store holds it: `pid` is the holding sparekey process, if known.
    Busy { path: String, pid: Option<u32> },
    /// The store cannot be written right now (disk full, or the backend refuses every write
    /// after an earlier failure); nothing was changed.
    Unavailable(String),
    /// The store is not in the state the request needs (e.g. a restore into a store that is
    /// not empty); nothing was changed.
    Conflict(String),
    /// The store was written by a newer sparekey; it is refused, never rewritten.
    NewerSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    /// A record or the store itself cannot be read back.
    Damaged(String),
    /// The operating system refused (permissions, a missing directory, ...).
    Io(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Busy {
                path,
                pid: Some(pid),
            } => write!(f, "the store at {path} is in use by sparekey process {pid}"),
            StoreError::Busy { path, pid: None } => {
                write!(
                    f,
                    "the store at {path} is in use by another sparekey process"
                )
            }
            StoreError::Unavailable(what) => {
                write!(f, "the store cannot be written right now: {what}")
            }
            StoreError::Conflict(what) => f.write_str(what),
            StoreError::NewerSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "the store at {path} has schema version {found}, newer than this sparekey supports ({supported}): upgrade sparekey"
            ),
            StoreError::Damaged(what) => write!(f, "the store is damaged: {what}"),
            StoreError::Io(what) => write!(f, "store error: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Result of binding the master key's fingerprint to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBinding {
    /// The store was made with this key.
    Matches,
    /// The store had no key yet and is now bound to this one.
    Bound,
    /// The store was made with another key.
    Mismatch { stored: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Activated,
    /// The pending enrollment was replaced or removed meanwhile.
    PendingChanged,
    NoAccount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepConsumption {
    /// The step was later than the last accepted one and is now the last accepted one.
    Accepted,
    /// The step was already used, or an earlier one than the last used.
    Replay,
    /// No account or no active authenticator.
    NotEnrolled,
    /// Failures counted by other attempts locked the account meanwhile: nothing changed.
    Locked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeConsumption {
    Consumed {
        remaining: usize,
        total: usize,
    },
    AlreadyUsed,
    /// The set the code was checked against was regenerated meanwhile.
    SetReplaced,
    /// Failures counted by other attempts locked the account meanwhile: nothing changed.
    Locked,
    NoAccount,
}

/// The outcome of recording that a code set's holder kept it (see [`Store::confirm_codes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodesConfirmation {
    Confirmed,
    /// It was confirmed before: the first time stands, and nothing changed.
    AlreadyConfirmed,
    /// The account now holds another set (or none): nothing changed.
    SetReplaced,
    NoAccount,
}

/// The outcome of counting an attempt before it is verified (see [`Store::reserve_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The attempt is counted as a failure: `reserved` is the record now stored, `previous`
    /// the one before. A success settles it (clears the count); a first factor that still
    /// waits for its second releases it.
    Reserved {
        previous: FailureRecord,
        reserved: FailureRecord,
    },
    /// The gate was closed (a delay runs, or the account is locked): nothing was counted, and
    /// the refusal was noted in the audit log, coalesced per delay window.
    Refused(Gate),
    NoAccount,
}

/// The outcome of settling a successful attempt that needs no code or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The failure count is cleared and the success recorded.
    Settled,
    /// Failures counted by other attempts locked the account meanwhile: nothing changed.
    Locked,
    NoAccount,
}

/// What a success path needs to re-check the throttle inside its own atomic step: the policy,
/// applied to the failures counted by attempts other than the one being settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleCheck {
    pub policy: ThrottlePolicy,
}

/// Everything a store holds, for backups: records stay as stored (hashed, sealed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreImage {
    pub key_fingerprint: Option<String>,
    pub operator_password: Option<String>,
    pub accounts: Vec<Account>,
    pub audit: Vec<AuditEvent>,
}

/// One piece of a store's export, handed over as it is read (see [`Store::export_to`]): the
/// header first, then every account in name order, then every audit event oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageItem<'a> {
    Header {
        key_fingerprint: Option<&'a str>,
        operator_password: Option<&'a str>,
    },
    Account(&'a Account),
    Audit(&'a AuditEvent),
}

/// What receives an export, item by item; an error stops the export with that error.
pub type ImageSink<'a> = &'a mut dyn FnMut(ImageItem<'_>) -> Result<(), StoreError>;

/// Builds, from a change's outcome, the audit events that record it. The store calls it only
/// when the change was made, and writes the events (stamped with the change's time and
/// account) in the same atomic step: an accepted code never lacks its event, and no event
/// records a change that did not happen.
pub type AuditFor<'a, T> = &'a dyn Fn(&T) -> Vec<AuditKind>;

/// Persistent storage of accounts and the audit log. See the module doc for the contract.
pub trait Store: Send + Sync {
    /// Records which master key this store belongs to, or checks it; unless it is another
    /// key's, the store keeps `key`'s record key to check and tag every record with, and a
    /// store of an older schema is migrated now. Called once, before any other method.
    fn bind_key(&self, key: &StoreKey) -> Result<KeyBinding, StoreError>;

    /// Inserts a new account, with `audit`'s events; `false` if the name is taken, regardless
    /// of case.
    fn insert_account(
        &self,
        account: &Account,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;
    fn load_account(&self, name: &str) -> Result<Option<Account>, StoreError>;
    /// The list facts of every account, sorted by name (never the full records).
    fn list_accounts(&self) -> Result<Vec<AccountFacts>, StoreError>;
    /// At most `limit` list facts of the accounts named after `after` (from the first if
    /// `None`), sorted by name: a screenful without reading the rest.
    fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountFacts>, StoreError>;
    /// Removes an account, with `audit`'s events; `false` if there is none.
    fn delete_account(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;

    /// Stores (or replaces) the pending enrollment, with `audit`'s events; `false` if there is
    /// no such account.
    fn set_pending(
        &self,
        name: &str,
        pending: &PendingTotp,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;
    /// Turns the pending enrollment `pending_id` into the active authenticator and installs the
    /// new code set, in one step with `audit`'s events.
    fn activate_pending(
        &self,
        name: &str,
        pending_id: u64,
        totp: &ActiveTotp,
        codes: &CodeSet,
        at: UnixTime,
        audit: AuditFor<'_, Activation>,
    ) -> Result<Activation, StoreError>;

    /// Counts an attempt as a failure *before* it is verified, in one atomic step with the
    /// throttle gate: if `policy` refuses an attempt now (checked against the stored record,
    /// not the caller's copy), nothing is counted and the refusal is noted (at most one event
    /// per account and delay window, with a count). So parallel attempts can never verify more
    /// than the policy allows, and an attempt whose count cannot be written is never verified.
    /// For a name with no account it still makes a write (and commits it as a count is), so a
    /// store that cannot be written answers an unknown name with the same error as a real one.
    fn reserve_attempt(
        &self,
        name: &str,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError>;
    /// Gives back the count of a reserved attempt whose first factor was right and which now
    /// waits for its second (the console's two-step login: its second step reserves again):
    /// the record returns to `previous` if it is still `reserved`, else loses one count if
    /// later attempts were counted on top of it, else (cleared meanwhile) stays. So releases
    /// of overlapping attempts that arrive out of order can leave a count standing (the
    /// earlier attempt's comes first and takes one count off the top; the later one's then
    /// finds the record below its own count): the error is toward locking, never toward more
    /// guesses. `false` if there is no such account.
    fn release_attempt(
        &self,
        name: &str,
        previous: FailureRecord,
        reserved: FailureRecord,
    ) -> Result<bool, StoreError>;
    /// Notes an attempt refused by the gate before it was reserved (coalesced as in
    /// [`Store::reserve_attempt`]).
    fn note_refused_attempt(&self, name: &str, gate: Gate, at: UnixTime) -> Result<(), StoreError>;

    /// Accepts TOTP step `step` if it is later than the last accepted one and not burned; on
    /// success also settles the attempt (clears the failure counter, after `check`) and
    /// records the login, with `audit`'s events.
    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError>;
    /// Marks `slot` of set `set_id` used if it is unused; on success also settles the attempt
    /// (after `check`) and records the login, with `audit`'s events.
    fn consume_backup_code(
        &self,
        name: &str,
        set_id: u64,
        slot: usize,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, CodeConsumption>,
    ) -> Result<CodeConsumption, StoreError>;
    /// Records a successful password-only login (no second factor enrolled) and settles the
    /// attempt (after `check`), with `audit`'s events.
    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError>;

    /// Records why a reserved attempt failed (its count was taken by
    /// [`Store::reserve_attempt`]), with `audit`'s events; `burn_ahead` is a TOTP step that a
    /// code from a clock running ahead matched, refused from now on. `false`: no such account.
    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        burn_ahead: Option<u64>,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;
    /// Clears the failure counter (operator unlock), with `audit`'s events; `false` if there is
    /// no such account.
    fn clear_failures(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;

    /// Replaces the whole code set at once, with `audit`'s events; `false` if there is no such
    /// account.
    fn replace_codes(
        &self,
        name: &str,
        codes: &CodeSet,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;
    /// Records that the holder kept code set `set_id` (typed a code back, or it was delivered
    /// where it stays), with `audit`'s events, if that set is still the account's and was not
    /// confirmed before.
    fn confirm_codes(
        &self,
        name: &str,
        set_id: u64,
        at: UnixTime,
        audit: AuditFor<'_, CodesConfirmation>,
    ) -> Result<CodesConfirmation, StoreError>;
    /// Removes the authenticator, any pending enrollment and the codes, with `audit`'s events.
    fn remove_two_factor(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;

    /// The kiosk operator's password hash (PHC), if one was set.
    fn operator_password(&self) -> Result<Option<String>, StoreError>;
    /// Sets the kiosk operator's password hash only if none is set, with `audit`'s events;
    /// `false` if one already was.
    fn set_operator_password(
        &self,
        phc: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;
    /// The kiosk operator's consecutive failures.
    fn operator_failures(&self) -> Result<FailureRecord, StoreError>;
    /// [`Store::reserve_attempt`] for the kiosk operator password (refusals are not noted).
    /// Never [`Reservation::NoAccount`].
    fn reserve_operator_attempt(
        &self,
        policy: &ThrottlePolicy,
        at: UnixTime,
    ) -> Result<Reservation, StoreError>;
    /// Settles a right operator password: clears the failures unless `check` finds the
    /// operator locked by other attempts, with `audit`'s events. Never
    /// [`Settlement::NoAccount`].
    fn settle_operator_attempt(
        &self,
        at: UnixTime,
        check: &SettleCheck,
        audit: AuditFor<'_, Settlement>,
    ) -> Result<Settlement, StoreError>;
    /// Records a wrong operator password (counted by the reservation) with `audit`'s events.
    fn record_operator_failure(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, FailureRecord>,
    ) -> Result<FailureRecord, StoreError>;
    /// Clears the operator's failures (shell recovery), with `audit`'s events.
    fn clear_operator_failures(
        &self,
        at: UnixTime,
        audit: AuditFor<'_, ()>,
    ) -> Result<(), StoreError>;

    /// Hands everything to `sink` as it is read, in [`ImageItem`]'s order, never holding the
    /// whole store in memory; every record is checked as it is read. Consistent as long as the
    /// caller is the store's only writer (the process holds the store's lock, and each face
    /// runs its effects one at a time), or, on a shared database, one snapshot.
    fn export_to(&self, sink: ImageSink<'_>) -> Result<(), StoreError>;

    /// [`Store::export_to`] collected into one value, for stores small enough to hold.
    fn export_image(&self) -> Result<StoreImage, StoreError> {
        let mut image = StoreImage {
            key_fingerprint: None,
            operator_password: None,
            accounts: Vec::new(),
            audit: Vec::new(),
        };
        self.export_to(&mut |item| {
            match item {
                ImageItem::Header {
                    key_fingerprint,
                    operator_password,
                } => {
                    image.key_fingerprint = key_fingerprint.map(str::to_owned);
                    image.operator_password = operator_password.map(str::to_owned);
                }
                ImageItem::Account(account) => image.accounts.push(account.clone()),
                ImageItem::Audit(event) => image.audit.push(event.clone()),
            }
            Ok(())
        })?;
        Ok(image)
    }
    /// Loads an image into this store, which must be empty; durable on return.
    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError>;

    /// Appends an event that records no change of the store's (every change writes its own
    /// events with it): for imports and tools.
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The newest `limit` events (of one account, or all), oldest first.
    fn audit_events(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}

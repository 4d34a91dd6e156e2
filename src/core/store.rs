//! The storage interface the core needs, shaped by the use cases ("consume this code if it is
//! unused", "count one more failure"), not by any database's API, so a second backend on a shared
//! SQL database can implement it with one conditional UPDATE per method.
//!
//! Contract for every implementation: each mutating method is atomic (it applies entirely or not
//! at all, even against concurrent callers in other threads or processes) and durable on return
//! (flushed to disk before `Ok`), because the core reports security-relevant successes right after.

use crate::core::account::{Account, AccountFacts, ActiveTotp, PendingTotp};
use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::keys::StoreKey;
use crate::core::throttle::FailureRecord;

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
    NoAccount,
}

/// Everything a store holds, for backups: records stay as stored (hashed, sealed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreImage {
    pub key_fingerprint: Option<String>,
    pub operator_password: Option<String>,
    pub accounts: Vec<Account>,
    pub audit: Vec<AuditEvent>,
}

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

    /// Inserts a new account; `false` if the name is taken, regardless of case.
    fn insert_account(&self, account: &Account) -> Result<bool, StoreError>;
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
    fn delete_account(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores (or replaces) the pending enrollment; `false` if there is no such account.
    fn set_pending(&self, name: &str, pending: &PendingTotp) -> Result<bool, StoreError>;
    /// Turns the pending enrollment `pending_id` into the active authenticator and installs the
    /// new code set, in one step.
    fn activate_pending(
        &self,
        name: &str,
        pending_id: u64,
        totp: &ActiveTotp,
        codes: &CodeSet,
    ) -> Result<Activation, StoreError>;

    /// Accepts TOTP step `step` if it is later than the last accepted one; on success also
    /// clears the failure counter and records the login, with `audit`'s events.
    fn consume_totp_step(
        &self,
        name: &str,
        step: u64,
        at: UnixTime,
        audit: AuditFor<'_, StepConsumption>,
    ) -> Result<StepConsumption, StoreError>;
    /// Marks TOTP step `step` (and every earlier one) as used without logging in; `false` if
    /// there is no such account or authenticator.
    fn spend_totp_step(&self, name: &str, step: u64) -> Result<bool, StoreError>;
    /// Marks `slot` of set `set_id` used if it is unused; on success also clears the failure
    /// counter and records the login, with `audit`'s events.
    fn consume_backup_code(
        &self,
        name: &str,
        set_id: u64,
        slot: usize,
        at: UnixTime,
        audit: AuditFor<'_, CodeConsumption>,
    ) -> Result<CodeConsumption, StoreError>;
    /// Records a successful password-only login (no second factor enrolled) and clears
    /// failures, with `audit`'s events.
    fn record_password_login(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, bool>,
    ) -> Result<bool, StoreError>;

    /// Counts one more consecutive failure, with `audit`'s events; returns the new record
    /// (`None`: no such account).
    fn record_failure(
        &self,
        name: &str,
        at: UnixTime,
        audit: AuditFor<'_, Option<FailureRecord>>,
    ) -> Result<Option<FailureRecord>, StoreError>;
    /// Clears the failure counter (operator unlock); `false` if there is no such account.
    fn clear_failures(&self, name: &str) -> Result<bool, StoreError>;

    /// Replaces the whole code set at once; `false` if there is no such account.
    fn replace_codes(&self, name: &str, codes: &CodeSet) -> Result<bool, StoreError>;
    /// Removes the authenticator, any pending enrollment and the codes.
    fn remove_two_factor(&self, name: &str) -> Result<bool, StoreError>;

    /// The kiosk operator's password hash (PHC), if one was set.
    fn operator_password(&self) -> Result<Option<String>, StoreError>;
    /// Sets the kiosk operator's password hash only if none is set; `false` if one already was.
    fn set_operator_password(&self, phc: &str) -> Result<bool, StoreError>;
    /// The kiosk operator's consecutive failures.
    fn operator_failures(&self) -> Result<FailureRecord, StoreError>;
    /// Counts one more operator failure; returns the new record.
    fn record_operator_failure(&self, at: UnixTime) -> Result<FailureRecord, StoreError>;
    fn clear_operator_failures(&self) -> Result<(), StoreError>;

    /// A copy of everything, consistent as long as the caller is the store's only writer
    /// (the process holds the store's lock, and each face runs its effects one at a time).
    fn export_image(&self) -> Result<StoreImage, StoreError>;
    /// Loads an image into this store, which must be empty; durable on return.
    fn import_image(&self, image: &StoreImage) -> Result<(), StoreError>;

    /// Appends an event that records no change of its own (a throttled attempt) or follows one
    /// that is already durable (new codes, an unlock).
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The newest `limit` events (of one account, or all), oldest first.
    fn audit_events(
        &self,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}

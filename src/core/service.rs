//! The use cases of sparekey as one API: create accounts, enroll and confirm an authenticator,
//! log in with a TOTP code or a backup code, regenerate codes, unlock, reset, read the audit log.
//! Both faces (CLI and TUI) call only this. It owns the order of checks on every attempt:
//! throttle gate, cheap input checks, then the attempt is counted durably (reserved) and only
//! then the password or code verified; a success settles the count. So a typo or a throttled
//! attempt never costs a hash and never counts as a failure, parallel attempts can never verify
//! more than the policy allows, and an attempt whose count cannot be written is never verified.
//!
//! Must never print, log or keep a secret beyond the call that needs it, and never report a
//! success before the store has made it durable.

use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::core::account::{self, Account, AccountSummary, ActiveTotp, LOW_CODES, PendingTotp};
use crate::core::argon_memory::SharedMemory;
use crate::core::audit::{AuditEvent, AuditKind, FailureReason, KioskEvent, LoginMethod};
use crate::core::backup_code::{self, BackupCode};
use crate::core::clock::{Clock, UnixTime};
use crate::core::code_set::{self, CodeSet, SlotMatch};
use crate::core::entropy::Entropy;
use crate::core::error::{Error, RejectReason, Rejection};
use crate::core::keys::MasterKey;
use crate::core::kiosk::{
    OPERATOR_AUDIT_NAME, OPERATOR_LOCK_AFTER, OPERATOR_RECOVERY_COMMAND, OperatorSession,
};
use crate::core::notify::{self, Facts, NoNotifier, Notifier};
use crate::core::password::{self, Binding, HashParams};
use crate::core::step_up::{self, StepUp};
use crate::core::store::{
    Activation, CodeConsumption, CodesConfirmation, Reservation, SettleCheck, Settlement,
    StepConsumption, Store,
};
use crate::core::throttle::{FailureRecord, Gate, ThrottlePolicy};
use crate::core::totp::{self, TotpParams, TotpRejection, TotpSecret};

/// Settings of the service; the defaults are the production ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// Shown in authenticator apps above the account name.
    pub issuer: String,
    /// Codes per set, 5 to 20.
    pub code_count: usize,
    pub hash_params: HashParams,
    pub throttle: ThrottlePolicy,
    pub totp: TotpParams,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: "sparekey".into(),
            code_count: code_set::DEFAULT_CODES,
            hash_params: HashParams::OWASP,
            throttle: ThrottlePolicy::default(),
            totp: TotpParams::default(),
        }
    }
}

impl Config {
    /// Checks the settings once, so the use cases can rely on them.
    pub fn validate(&self) -> Result<(), Error> {
        if !(code_set::MIN_CODES..=code_set::MAX_CODES).contains(&self.code_count) {
            return Err(Error::Invalid(format!(
                "the number of backup codes must be between {} and {}",
                code_set::MIN_CODES,
                code_set::MAX_CODES
            )));
        }
        if !self.hash_params.is_valid() {
            return Err(Error::Invalid("invalid Argon2id parameters".into()));
        }
        if self.issuer.is_empty() || self.issuer.contains(':') {
            return Err(Error::Invalid(
                "the issuer must be non-empty and must not contain ':'".into(),
            ));
        }
        Ok(())
    }
}

/// An authenticator waiting to be scanned and confirmed. Holds the secret in clear: show it,
/// then drop it.
#[derive(Debug)]
pub struct Enrollment {
    pub account: String,
    pub issuer: String,
    pub secret: TotpSecret,
    pub otpauth_uri: Zeroizing<String>,
    pub params: TotpParams,
}

/// A new set of backup codes, in clear for the one time they are shown.
#[derive(Debug)]
pub struct IssuedCodes {
    pub account: String,
    /// The set these codes belong to, for [`Service::confirm_codes`] (not secret).
    pub set_id: u64,
    pub issuer: String,
    pub issued_at: UnixTime,
    pub codes: Vec<BackupCode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSuccess {
    pub method: LoginMethod,
    pub remaining_codes: usize,
    pub total_codes: usize,
    /// Nobody confirmed keeping the account's codes (see [`CodeSet::confirmed`]).
    pub codes_never_confirmed: bool,
}

impl LoginSuccess {
    /// Codes are running low: the face should urge regeneration.
    pub fn low_on_codes(&self) -> bool {
        self.total_codes > 0 && self.remaining_codes <= LOW_CODES
    }

    /// The face should offer a new set: few codes are left, or nobody confirmed keeping them.
    pub fn should_regenerate(&self) -> bool {
        self.low_on_codes() || (self.total_codes > 0 && self.codes_never_confirmed)
    }
}

/// How long a checked password waits for its second factor.
pub const PENDING_LOGIN_TTL_SECS: i64 = 300;

/// A login whose password was checked and which waits for its second factor. Only the service
/// makes one (its fields are private), so a face cannot skip the password step.
#[derive(Debug)]
pub struct PendingLogin {
    account: String,
    password_checked_at: UnixTime,
}

impl PendingLogin {
    pub fn account(&self) -> &str {
        &self.account
    }
}

/// The outcome of [`Service::start_login`].
#[derive(Debug)]
pub enum LoginStep {
    Done(LoginSuccess),
    SecondFactorNeeded(PendingLogin),
}

/// A second factor as typed, classified without any hashing.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(Zeroizing<String>),
    BackupCode(BackupCode),
}

/// What [`Service::probe_second_factor`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorState {
    /// An authenticator to check, and the gate open.
    Ready,
    NoAccount,
    /// The account exists but has no confirmed authenticator.
    NoAuthenticator,
}

impl SecondFactorState {
    /// A stable snake_case name for scripts.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::NoAccount => "no_account",
            Self::NoAuthenticator => "no_authenticator",
        }
    }
}

/// The state of an account's backup codes, for settings screens and `codes status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeStatus {
    pub remaining: usize,
    pub total: usize,
    pub created_at: Option<UnixTime>,
    /// For each slot, when it was used (never the code).
    pub used_at: Vec<Option<UnixTime>>,
    /// When the holder confirmed keeping the set; `None` with a set: never confirmed, so a
    /// new set should be generated (see [`CodeSet::confirmed`]).
    pub confirmed_at: Option<UnixTime>,
}

/// Why a second factor is being checked: it decides the audit events written with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Login,
    /// Minting a [`StepUp`]: the action it is for is audited instead.
    StepUp,
}

/// What re-enrollment is called in refusals.
const REPLACING: &str = "replacing the authenticator";

/// The service. Cheap to share across threads (`&self` everywhere).
pub struct Service {
    store: Box<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Mutex<Box<dyn Entropy>>,
    /// The key and its sub-keys, in their one place (see [`MasterKey`]).
    key: MasterKey,
    config: Config,
    /// Where every Argon2id evaluation of this service works (see [`SharedMemory`]).
    hash_memory: SharedMemory,
    /// Argon2id evaluations so far, so tests can prove a path spent none.
    #[cfg(any(test, feature = "test-support"))]
    hashes: std::sync::atomic::AtomicU64,
    /// Told about committed events the owner should hear of (see [`notify`]).
    notifier: Arc<dyn Notifier>,
}

/// An attempt counted before it is verified (see [`Store::reserve_attempt`]): a failure
/// records why with [`Service::fail`], a right first factor whose second comes in a later call
/// gives the count back with [`Service::release`], a success settles it in its own store step.
/// A one-call login keeps the password's attempt for its code.
struct Attempt<'a> {
    account: &'a Account,
    previous: FailureRecord,
    reserved: FailureRecord,
}

/// What a right login password leads to.
enum FirstFactor<'a> {
    /// An account without a second factor, logged in (its attempt settled).
    Done(LoginSuccess),
    /// The attempt, still reserved, for the second factor.
    SecondFactorNeeded(Attempt<'a>),
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub fn new(
        store: Box<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Box<dyn Entropy>,
        key: MasterKey,
        config: Config,
    ) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            store,
            clock,
            entropy: Mutex::new(entropy),
            key,
            config,
            hash_memory: SharedMemory::default(),
            #[cfg(any(test, feature = "test-support"))]
            hashes: Default::default(),
            notifier: Arc::new(NoNotifier),
        })
    }

    /// The service, telling `notifier` of committed events its owner should hear of.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Hands the notifications of `kinds`, just committed for `name`, to the notifier. Called
    /// only after the store step that wrote them returned.
    fn notify(&self, name: &str, kinds: &[AuditKind], facts: Facts) {
        let at = self.now();
        let events: Vec<AuditEvent> = (kinds.iter())
            .map(|kind| AuditEvent {
                at,
                account: name.to_string(),
                kind: kind.clone(),
            })
            .collect();
        for notification in notify::for_events(&events, facts) {
            self.notifier.notify(&notification);
        }
    }

    /// Argon2id evaluations this service made (test-support only).
    #[cfg(any(test, feature = "test-support"))]
    pub fn hash_evaluations(&self) -> u64 {
        self.hashes.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn count_hashes(&self, _n: u64) {
        #[cfg(any(test, feature = "test-support"))]
        self.hashes
            .fetch_add(_n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn with_entropy<T>(&self, f: impl FnOnce(&mut dyn Entropy) -> T) -> T {
        // A panic while holding the lock leaves the RNG itself intact: keep using it.
        let mut guard = self.entropy.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.as_mut())
    }

    fn load(&self, name: &str) -> Result<Account, Error> {
        self.store
            .load_account(name)?
            .ok_or_else(|| Error::no_account(name))
    }

    /// Checks a new password against the rules and hashes it (one Argon2id evaluation).
    /// `context` are words the password must not be made of (the account name); `bound_to` is
    /// what the hash is bound to.
    fn hash_new_password(
        &self,
        password: &str,
        context: &[&str],
        bound_to: &Binding,
    ) -> Result<String, Error> {
        let mut context = context.to_vec();
        context.extend(["sparekey", self.config.issuer.as_str()]);
        password::check_new_password(password, &context).map_err(Error::Invalid)?;
        self.count_hashes(1);
        Ok(self.with_entropy(|e| {
            self.hash_memory.with_memory(|memory| {
                password::hash_password(
                    self.config.hash_params,
                    self.key.hash_secret().as_slice(),
                    password,
                    bound_to,
                    e,
                    memory,
                )
            })
        }))
    }

    /// One Argon2id evaluation: `password` against a stored PHC string.
    fn verify_password(&self, password: &str, phc: &str, bound_to: &Binding) -> bool {
        self.count_hashes(1);
        self.hash_memory.with_memory(|memory| {
            password::verify_password(
                self.key.hash_secret().as_slice(),
                password,
                phc,
                bound_to,
                memory,
            )
        })
    }

    // ----- accounts -------------------------------------------------------------------------

    pub fn create_account(&self, name: &str, password: &str) -> Result<(), Error> {
        account::validate_name(name).map_err(Error::Invalid)?;
        let phc = self.hash_new_password(password, &[name], &Binding::account(name))?;
        self.insert_new_account(name, Some(phc))
    }

    /// Creates an account with no sparekey password: its first factor is checked elsewhere
    /// (the system password, by `pam_unix`), and only its second factor here, with
    /// [`Service::verify_second_factor`]. The simulated login refuses it.
    pub fn create_second_factor_only_account(&self, name: &str) -> Result<(), Error> {
        account::validate_name(name).map_err(Error::Invalid)?;
        self.insert_new_account(name, None)
    }

    /// `password` is already hashed and bound to `name`; `None` has nothing to bind.
    fn insert_new_account(&self, name: &str, password: Option<String>) -> Result<(), Error> {
        let record = Account {
            name: name.to_string(),
            password,
            created_at: self.now(),
            totp: None,
            pending: None,
            codes: None,
            failures: Default::default(),
            last_login: None,
        };
        if !self
            .store
            .insert_account(&record, &|_| vec![AuditKind::AccountCreated])?
        {
            return Err(Error::AlreadyExists(format!(
                "an account named '{name}' already exists"
            )));
        }
        Ok(())
    }

    pub fn remove_account(&self, name: &str) -> Result<(), Error> {
        let removed = self
            .store
            .delete_account(name, self.now(), &|_| vec![AuditKind::AccountRemoved])?;
        if !removed {
            return Err(Error::no_account(name));
        }
        Ok(())
    }

    pub fn list_accounts(&self) -> Result<Vec<AccountSummary>, Error> {
        Ok(self
            .store
            .list_accounts()?
            .iter()
            .map(|facts| AccountSummary::from_facts(facts, &self.config.throttle))
            .collect())
    }

    /// At most `limit` accounts named after `after` (from the first if `None`), sorted by name:
    /// lets a face show the first screenful of 100,000 accounts at once and load the rest later.
    pub fn list_accounts_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountSummary>, Error> {
        Ok(self
            .store
            .list_accounts_page(after, limit)?
            .iter()
            .map(|facts| AccountSummary::from_facts(facts, &self.config.throttle))
            .collect())
    }

    pub fn account_summary(&self, name: &str) -> Result<AccountSummary, Error> {
        Ok(AccountSummary::of(&self.load(name)?, &self.config.throttle))
    }

    /// Whether an attempt on this account may go ahead now (for live countdowns).
    pub fn gate(&self, name: &str) -> Result<Gate, Error> {
        let account = self.load(name)?;
        Ok(self.early_gate(&self.config.throttle, &account.failures))
    }

    // ----- enrollment -----------------------------------------------------------------------

    /// Starts enrolling a first authenticator; the password, when given, is checked too. An
    /// account that already has one is refused before any hashing or counting, and nothing
    /// changes: replacing it is [`Service::begin_reenrollment`], which needs a [`StepUp`].
    pub fn begin_enrollment(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<Enrollment, Error> {
        let account = self.load(name)?;
        if account.totp.is_some() {
            return Err(step_up::needed(REPLACING));
        }
        if let Some(pw) = password {
            self.check_password(&account, pw)?;
        }
        self.start_enrollment(name)
    }

    /// Starts replacing the authenticator, on a second factor just completed. The old one keeps
    /// working until the new one is confirmed with [`Service::confirm_reenrollment`].
    pub fn begin_reenrollment(&self, name: &str, proof: &StepUp) -> Result<Enrollment, Error> {
        let account = self.load(name)?;
        self.check_step_up(&account, proof, REPLACING)?;
        self.start_enrollment(name)
    }

    fn start_enrollment(&self, name: &str) -> Result<Enrollment, Error> {
        let params = self.config.totp;
        let (secret, sealed, id) = self.with_entropy(|e| {
            let secret = TotpSecret::generate(e);
            let sealed = self.key.seal(e, secret.as_bytes(), name);
            let mut id = [0u8; 8];
            e.fill(&mut id);
            (secret, sealed, u64::from_le_bytes(id))
        });
        let otpauth_uri = totp::otpauth_uri(&self.config.issuer, name, &secret, params)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let pending = PendingTotp {
            id,
            issuer: self.config.issuer.clone(),
            secret: sealed,
            params,
            started_at: self.now(),
        };
        let stored = self.store.set_pending(name, &pending, self.now(), &|_| {
            vec![AuditKind::EnrollmentStarted]
        })?;
        if !stored {
            return Err(Error::no_account(name));
        }
        Ok(Enrollment {
            account: name.to_string(),
            issuer: self.config.issuer.clone(),
            secret,
            otpauth_uri,
            params,
        })
    }

    /// Confirms a first authenticator with a code from it, turns two-factor on, and issues a
    /// fresh set of backup codes (shown once). The confirming code's step is recorded as used, so
    /// the same code cannot then log in. An account that already has an authenticator is
    /// refused and nothing changes: that is [`Service::confirm_reenrollment`].
    pub fn confirm_enrollment(&self, name: &str, code: &str) -> Result<IssuedCodes, Error> {
        let account = self.load(name)?;
        if account.totp.is_some() {
            return Err(step_up::needed(REPLACING));
        }
        self.pass_gate(&account)?;
        self.confirm_pending(&account, code)
    }

    /// Confirms a replacement authenticator, on a second factor just completed (with the old
    /// one): the new one, and a new code set, replace the old ones.
    pub fn confirm_reenrollment(
        &self,
        name: &str,
        code: &str,
        proof: &StepUp,
    ) -> Result<IssuedCodes, Error> {
        let account = self.load(name)?;
        self.check_step_up(&account, proof, REPLACING)?;
        self.confirm_pending(&account, code)
    }

    /// Checks `code` against the pending authenticator and activates it with a new code set.
    fn confirm_pending(&self, account: &Account, code: &str) -> Result<IssuedCodes, Error> {
        let name = account.name.as_str();
        let pending = account.pending.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "'{name}' has no enrollment waiting: run enroll first"
            ))
        })?;
        if !totp::is_well_formed(code, pending.params) {
            return Err(Error::Invalid(
                TotpRejection::Malformed.message(pending.params),
            ));
        }
        let secret = self.open_secret(&pending.secret, name)?;
        let attempt = self.reserve(account)?;
        let step = match totp::verify(&secret, code, self.now(), pending.params, None) {
            Ok(step) => step,
            Err(TotpRejection::Malformed) => {
                self.release(&attempt)?;
                return Err(Error::Invalid(
                    TotpRejection::Malformed.message(pending.params),
                ));
            }
            Err(rejection) => {
                let (reason, audit_reason) = totp_failure(rejection, pending.params);
                return Err(self.fail(&attempt, reason, audit_reason, None, None)?);
            }
        };
        let (codes, set) = self.new_code_set(name);
        let active = ActiveTotp {
            issuer: pending.issuer.clone(),
            secret: pending.secret.clone(),
            params: pending.params,
            last_step: Some(step),
            enrolled_at: self.now(),
            burned_ahead: Vec::new(),
        };
        let count = codes.len() as u32;
        let audit = |outcome: &Activation| match outcome {
            Activation::Activated => vec![
                AuditKind::TwoFactorEnrolled,
                AuditKind::CodesRegenerated { count },
            ],
            _ => Vec::new(),
        };
        match self
            .store
            .activate_pending(name, pending.id, &active, &set, self.now(), &audit)?
        {
            Activation::Activated if account.totp.is_some() => {
                let facts = Facts {
                    replacing: true,
                    ..Facts::default()
                };
                self.notify(name, &[AuditKind::TwoFactorEnrolled], facts);
            }
            Activation::Activated => {}
            Activation::PendingChanged => {
                self.release(&attempt)?;
                return Err(Error::Invalid(
                    "the enrollment was replaced meanwhile: scan the new code and try again".into(),
                ));
            }
            Activation::NoAccount => return Err(Error::no_account(name)),
        }
        Ok(self.issued(name, &pending.issuer, &set, codes))
    }

    /// Enrolls an authenticator that already exists elsewhere (a google-authenticator file, an
    /// otpauth URI), so the user's phone keeps working, and issues a fresh set of backup codes
    /// (shown once). An account that does not exist yet is created second-factor-only (its
    /// password is the system's, as it was for google-authenticator); one that already has an
    /// authenticator is refused (an operator resets it first). Audited as an enrollment.
    pub fn import_authenticator(
        &self,
        name: &str,
        imported: &crate::core::import::Imported,
    ) -> Result<IssuedCodes, Error> {
        account::validate_name(name).map_err(Error::Invalid)?;
        if !imported.params.is_valid() {
            return Err(Error::Invalid(
                "the imported TOTP parameters are invalid".into(),
            ));
        }
        let account = match self.store.load_account(name)? {
            Some(account) => account,
            None => {
                self.create_second_factor_only_account(name)?;
                self.load(name)?
            }
        };
        if account.totp.is_some() {
            return Err(Error::Invalid(format!(
                "'{name}' already has an authenticator: an operator resets it first with \
                 `sparekey reset`"
            )));
        }
        // An issuer the otpauth URI format cannot carry falls back to ours.
        let issuer = imported
            .issuer
            .clone()
            .filter(|i| totp::otpauth_uri(i, name, &imported.secret, imported.params).is_ok())
            .unwrap_or_else(|| self.config.issuer.clone());
        let (sealed, id) = self.with_entropy(|e| {
            let sealed = self.key.seal(e, imported.secret.as_bytes(), name);
            let mut id = [0u8; 8];
            e.fill(&mut id);
            (sealed, u64::from_le_bytes(id))
        });
        let pending = PendingTotp {
            id,
            issuer: issuer.clone(),
            secret: sealed.clone(),
            params: imported.params,
            started_at: self.now(),
        };
        if !self.store.set_pending(name, &pending, self.now(), &|_| {
            vec![AuditKind::EnrollmentStarted]
        })? {
            return Err(Error::no_account(name));
        }
        let (codes, set) = self.new_code_set(name);
        let active = ActiveTotp {
            issuer: issuer.clone(),
            secret: sealed,
            params: imported.params,
            // The phone's current code works at once: no step of ours was used yet.
            last_step: None,
            enrolled_at: self.now(),
            burned_ahead: Vec::new(),
        };
        let count = codes.len() as u32;
        let audit = |outcome: &Activation| match outcome {
            Activation::Activated => vec![
                AuditKind::TwoFactorEnrolled,
                AuditKind::CodesRegenerated { count },
            ],
            _ => Vec::new(),
        };
        match self
            .store
            .activate_pending(name, id, &active, &set, self.now(), &audit)?
        {
            Activation::Activated => Ok(self.issued(name, &issuer, &set, codes)),
            Activation::PendingChanged => Err(Error::Invalid(
                "an enrollment of this account started meanwhile: import again".into(),
            )),
            Activation::NoAccount => Err(Error::no_account(name)),
        }
    }

    // ----- login ----------------------------------------------------------------------------

    /// Classifies a typed second factor with no hashing: 6 digits (spaces ignored) are a TOTP
    /// code, anything else must be a well-formed backup code. A typo in a backup code is caught
    /// here by its check character and costs no attempt.
    pub fn parse_second_factor(&self, input: &str) -> Result<SecondFactor, Error> {
        parse_second_factor(input, self.config.totp)
    }

    /// The simulated login in one call (the CLI's): password, then a second factor (TOTP or
    /// backup code) when the account has one. Exactly one Argon2id evaluation for the password
    /// and, for a backup code, one more. A malformed code is refused before any hashing.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        second_factor: Option<&str>,
    ) -> Result<LoginSuccess, Error> {
        // Parsed first so a typo costs neither a hash nor an attempt.
        let factor = second_factor
            .map(|input| self.parse_second_factor(input))
            .transpose()?;
        let account = self.login_account(name, password)?;
        match self.check_login_password(&account, password)? {
            FirstFactor::Done(success) => Ok(success),
            // The password's reservation is kept for the code: one durable count per login,
            // settled or failed by the code's own step (which re-checks the gate).
            FirstFactor::SecondFactorNeeded(attempt) => match factor {
                Some(factor) => self.accept_second_factor_with(&attempt, factor, Purpose::Login),
                None => {
                    self.release(&attempt)?;
                    Err(Error::Invalid(
                        "this account has two-factor authentication: give a code from the authenticator or a backup code".into(),
                    ))
                }
            },
        }
    }

    /// First step of a two-step login (the console's): checks the password. An account without
    /// a second factor is then logged in; otherwise the returned [`PendingLogin`] is finished
    /// with [`Service::finish_login`]. Whether the account has a second factor is revealed only
    /// once the password is right, and an unknown name costs the same hash and gets the same
    /// answer as a wrong password, and on a store that cannot be written the same store error
    /// as a real account, with no hash spent. What remains: after 5 failures a real account answers
    /// "throttled" where an unknown name does not, the price of per-account throttling.
    pub fn start_login(&self, name: &str, password: &str) -> Result<LoginStep, Error> {
        let account = self.login_account(name, password)?;
        match self.check_login_password(&account, password)? {
            FirstFactor::Done(success) => Ok(LoginStep::Done(success)),
            FirstFactor::SecondFactorNeeded(attempt) => {
                // The second factor may come much later, or never: the count is given back
                // (finish_login reserves again). Releases of overlapping logins that arrive
                // out of order can leave one standing (see Store::release_attempt).
                self.release(&attempt)?;
                Ok(LoginStep::SecondFactorNeeded(PendingLogin {
                    account: name.to_string(),
                    password_checked_at: self.now(),
                }))
            }
        }
    }

    /// The account a login names. An unknown name is reserved as a real account's attempt is,
    /// so a store that cannot count answers with the same error for a name that does not
    /// exist, before any hash is spent (a store must make this write for a missing account
    /// too; sled and PostgreSQL write a probe); then it costs the dummy hash and gets the
    /// wrong-password answer.
    fn login_account(&self, name: &str, password: &str) -> Result<Account, Error> {
        if let Some(account) = self.store.load_account(name)? {
            return Ok(account);
        }
        self.store
            .reserve_attempt(name, &self.config.throttle, self.now())?;
        let _ = self.verify_password(password, DUMMY_PHC, &Binding::account(name));
        Err(Error::Rejected(Rejection {
            reason: RejectReason::WrongNameOrPassword,
            attempts_before_lock: None,
            next_delay_secs: None,
            now_locked: false,
        }))
    }

    /// Gate, reservation and the password of a login: a wrong one fails the attempt; a right
    /// one logs in an account without a second factor, or hands the still reserved attempt to
    /// the caller, which settles, fails or releases it.
    fn check_login_password<'a>(
        &self,
        account: &'a Account,
        password: &str,
    ) -> Result<FirstFactor<'a>, Error> {
        let name = account.name.as_str();
        let Some(phc) = account.password.as_deref() else {
            return Err(second_factor_only(name));
        };
        self.pass_gate(account)?;
        let attempt = self.reserve(account)?;
        if !self.verify_password(password, phc, &Binding::account(name)) {
            return Err(self.fail(
                &attempt,
                RejectReason::WrongNameOrPassword,
                FailureReason::WrongPassword,
                None,
                None,
            )?);
        }
        if account.totp.is_some() {
            return Ok(FirstFactor::SecondFactorNeeded(attempt));
        }
        let audit = |outcome: &Settlement| match outcome {
            Settlement::Settled => vec![AuditKind::LoginSucceeded {
                method: LoginMethod::Password,
            }],
            _ => Vec::new(),
        };
        match self
            .store
            .record_password_login(name, self.now(), &self.settle_check(), &audit)?
        {
            Settlement::Settled => {}
            Settlement::Locked => return Err(locked(name)),
            Settlement::NoAccount => return Err(Error::no_account(name)),
        }
        Ok(FirstFactor::Done(LoginSuccess {
            method: LoginMethod::Password,
            remaining_codes: 0,
            total_codes: 0,
            codes_never_confirmed: false,
        }))
    }

    /// Second step: a TOTP code or a backup code for a login whose password was checked. May be
    /// retried with the same `pending` (each wrong code counts) until it expires.
    pub fn finish_login(
        &self,
        pending: &PendingLogin,
        second_factor: &str,
    ) -> Result<LoginSuccess, Error> {
        let factor = self.parse_second_factor(second_factor)?;
        self.finish_with(pending, factor)
    }

    /// [`Service::finish_login`], and a [`StepUp`] for what the signed-in holder may do next
    /// (regenerate codes, replace the authenticator, turn 2FA off) without another code.
    pub fn finish_login_with_step_up(
        &self,
        pending: &PendingLogin,
        second_factor: &str,
    ) -> Result<(LoginSuccess, StepUp), Error> {
        // Bound to the record as it was before the code was checked: were the account removed
        // and created again meanwhile, the proof would fit neither.
        let before = self.load(&pending.account)?;
        let success = self.finish_login(pending, second_factor)?;
        Ok((success, StepUp::mint(&before, self.now())))
    }

    /// A whole login in one call whose only product is a [`StepUp`]: the password, then a
    /// current TOTP code or an unused backup code, consumed. Throttled and counted like a
    /// login, but not audited as one: the action the step-up is for writes its own event (and a
    /// backup code its use).
    pub fn step_up(
        &self,
        name: &str,
        password: &str,
        second_factor: &str,
    ) -> Result<StepUp, Error> {
        let account = self.load(name)?;
        if account.totp.is_none() {
            return Err(Error::Invalid(format!(
                "'{name}' has no two-factor authentication: there is no second factor to confirm"
            )));
        }
        // Parsed first so a typo costs neither a hash nor an attempt; by the account's own
        // digits, as an imported authenticator may show 8.
        let params = account.totp.as_ref().map_or(self.config.totp, |t| t.params);
        let factor = parse_second_factor(second_factor, params)?;
        // Refuses a second-factor-only account: it has one factor here, and a step-up is two.
        self.check_password(&account, password)?;
        self.accept_second_factor(&account, factor, Purpose::StepUp)?;
        Ok(StepUp::mint(&account, self.now()))
    }

    /// Refuses a proof that does not fit `account` now, and an account whose throttle is
    /// closed (locked by failures meanwhile).
    fn check_step_up(&self, account: &Account, proof: &StepUp, what: &str) -> Result<(), Error> {
        proof.check(account, self.now(), what)?;
        self.pass_gate(account)
    }

    fn finish_with(
        &self,
        pending: &PendingLogin,
        factor: SecondFactor,
    ) -> Result<LoginSuccess, Error> {
        let age = self.now().saturating_sub(pending.password_checked_at);
        if !(0..=PENDING_LOGIN_TTL_SECS).contains(&age) {
            return Err(Error::LoginExpired);
        }
        let account = self.load(&pending.account)?;
        // The throttle may have started, or an operator locked it, since the password step.
        self.pass_gate(&account)?;
        self.accept_second_factor(&account, factor, Purpose::Login)
    }

    /// Checks only the second factor of an account whose first factor was checked elsewhere
    /// (the PAM module's `sparekey verify`): a TOTP code or a backup code, with the throttle,
    /// replay refusal, single use and audit of a login. A typo is refused before anything is
    /// counted. Works on any account with an authenticator; for one with a sparekey password it
    /// is that account's second step without the first, so only callers that checked the
    /// first factor themselves (root, through PAM) may use it.
    pub fn verify_second_factor(&self, name: &str, input: &str) -> Result<LoginSuccess, Error> {
        let account = self.second_factor_account(name)?;
        // By the account's own digits: an imported authenticator may show 8.
        let params = account.totp.as_ref().map_or(self.config.totp, |t| t.params);
        let factor = parse_second_factor(input, params)?;
        self.pass_gate(&account)?;
        self.accept_second_factor(&account, factor, Purpose::Login)
    }

    /// Whether `name` has a second factor that [`Service::verify_second_factor`] can check
    /// now. No account and no authenticator (yet) are answers, not errors, so a caller can tell
    /// them from a failure; a closed gate is the throttled or locked error. Reads only: counts
    /// and writes nothing.
    pub fn probe_second_factor(&self, name: &str) -> Result<SecondFactorState, Error> {
        let Some(account) = self.store.load_account(name)? else {
            return Ok(SecondFactorState::NoAccount);
        };
        if account.totp.is_none() {
            return Ok(SecondFactorState::NoAuthenticator);
        }
        match self.early_gate(&self.config.throttle, &account.failures) {
            Gate::Open => Ok(SecondFactorState::Ready),
            gate => Err(refused(name, gate)),
        }
    }

    fn second_factor_account(&self, name: &str) -> Result<Account, Error> {
        let account = self.load(name)?;
        if account.totp.is_none() {
            return Err(Error::Invalid(format!(
                "'{name}' has no authenticator: enroll one with `sparekey enroll`"
            )));
        }
        Ok(account)
    }

    /// Counts, checks and consumes a second factor; on failure records why and returns the
    /// rejection. A login records itself in the same step; a step-up's action records its own
    /// event.
    fn accept_second_factor(
        &self,
        account: &Account,
        factor: SecondFactor,
        purpose: Purpose,
    ) -> Result<LoginSuccess, Error> {
        let name = account.name.as_str();
        if account.totp.is_none() {
            return Err(Error::Invalid(format!(
                "'{name}' has no two-factor authentication"
            )));
        }
        let attempt = self.reserve(account)?;
        self.accept_second_factor_with(&attempt, factor, purpose)
    }

    /// Checks and consumes a second factor under an attempt already reserved (by this call's
    /// caller or by the password before it); the consuming step settles it, a failure records
    /// why.
    fn accept_second_factor_with(
        &self,
        attempt: &Attempt<'_>,
        factor: SecondFactor,
        purpose: Purpose,
    ) -> Result<LoginSuccess, Error> {
        let Some(active) = attempt.account.totp.as_ref() else {
            self.release(attempt)?;
            return Err(Error::Invalid(format!(
                "'{}' has no two-factor authentication",
                attempt.account.name
            )));
        };
        match factor {
            SecondFactor::Totp(code) => self.accept_totp(attempt, active, &code, purpose),
            SecondFactor::BackupCode(code) => self.accept_backup_code(attempt, &code, purpose),
        }
    }

    /// The events of a successful second factor, by purpose.
    fn logged_in(purpose: Purpose, method: LoginMethod) -> Vec<AuditKind> {
        match purpose {
            Purpose::Login => vec![AuditKind::LoginSucceeded { method }],
            Purpose::StepUp => Vec::new(),
        }
    }

    fn accept_totp(
        &self,
        attempt: &Attempt<'_>,
        active: &ActiveTotp,
        code: &str,
        purpose: Purpose,
    ) -> Result<LoginSuccess, Error> {
        let account = attempt.account;
        let name = account.name.as_str();
        let secret = self.open_secret(&active.secret, name)?;
        let spent = totp::Spent {
            last_step: active.last_step,
            burned: &active.burned_ahead,
        };
        match totp::verify_spent(&secret, code, self.now(), active.params, spent) {
            Ok(step) => {
                let audit = |outcome: &StepConsumption| match outcome {
                    StepConsumption::Accepted => Self::logged_in(purpose, LoginMethod::Totp),
                    _ => Vec::new(),
                };
                let check = self.settle_check();
                match self
                    .store
                    .consume_totp_step(name, step, self.now(), &check, &audit)?
                {
                    StepConsumption::Accepted => {
                        let (remaining, total) = code_counts(account);
                        Ok(LoginSuccess {
                            method: LoginMethod::Totp,
                            remaining_codes: remaining,
                            total_codes: total,
                            codes_never_confirmed: never_confirmed(account),
                        })
                    }
                    // Another attempt took this step between our check and the write.
                    StepConsumption::Replay => self.totp_replay(attempt),
                    StepConsumption::Locked => Err(locked(name)),
                    StepConsumption::NotEnrolled => Err(Error::Invalid(format!(
                        "'{name}' has no two-factor authentication"
                    ))),
                }
            }
            Err(TotpRejection::Malformed) => {
                // The account's digits differ from the service's: a typo all the same.
                self.release(attempt)?;
                Err(Error::Invalid(
                    TotpRejection::Malformed.message(active.params),
                ))
            }
            Err(TotpRejection::Replay) => self.totp_replay(attempt),
            Err(rejection) => {
                // A code right for a step still to come: saying so confirms it, so that step
                // (and only that one) is burned with the failure, or a guess confirmed as
                // "ahead" would simply work a few minutes later. The steps before it stay
                // usable, so the current code works as soon as the clock is fixed.
                let burn = match rejection {
                    TotpRejection::ClockDrift { steps } if steps > 0 => {
                        totp::step_at(self.now(), active.params.period)
                            .map(|s| s.saturating_add(steps.unsigned_abs()))
                    }
                    _ => None,
                };
                let (reason, audit_reason) = totp_failure(rejection, active.params);
                Err(self.fail(attempt, reason, audit_reason, None, burn)?)
            }
        }
    }

    fn accept_backup_code(
        &self,
        attempt: &Attempt<'_>,
        code: &BackupCode,
        purpose: Purpose,
    ) -> Result<LoginSuccess, Error> {
        let account = attempt.account;
        let name = account.name.as_str();
        let wrong = || {
            self.fail(
                attempt,
                RejectReason::WrongCode,
                FailureReason::WrongBackupCode,
                None,
                None,
            )
        };
        let Some(set) = account.codes.as_ref() else {
            return Err(wrong()?);
        };
        self.count_hashes(1);
        let Some(digest) = self.hash_memory.with_memory(|memory| {
            set.digest_of(name, code, self.key.hash_secret().as_slice(), memory)
        }) else {
            return Err(Error::Store(crate::core::store::StoreError::Damaged(
                format!("account '{name}': its backup-code set has impossible Argon2id parameters"),
            )));
        };
        let slot = match set.find(&digest) {
            SlotMatch::Unused(slot) => slot,
            SlotMatch::AlreadyUsed(_) => return self.backup_replay(attempt),
            SlotMatch::NoMatch => return Err(wrong()?),
        };
        let audit = |outcome: &CodeConsumption| match outcome {
            CodeConsumption::Consumed { remaining, .. } => {
                let mut kinds = vec![AuditKind::BackupCodeUsed {
                    slot: slot as u32,
                    remaining: *remaining as u32,
                }];
                kinds.extend(Self::logged_in(purpose, LoginMethod::BackupCode));
                kinds
            }
            _ => Vec::new(),
        };
        let check = self.settle_check();
        match self
            .store
            .consume_backup_code(name, set.id, slot, self.now(), &check, &audit)?
        {
            // Using a code does not confirm the set: whoever copied it off an unattended
            // screen could use it too, and its holder would lose the warning.
            CodeConsumption::Consumed { remaining, total } => {
                let used = AuditKind::BackupCodeUsed {
                    slot: slot as u32,
                    remaining: remaining as u32,
                };
                let facts = Facts {
                    total_codes: Some(total as u32),
                    ..Facts::default()
                };
                self.notify(name, &[used], facts);
                Ok(LoginSuccess {
                    method: LoginMethod::BackupCode,
                    remaining_codes: remaining,
                    total_codes: total,
                    codes_never_confirmed: never_confirmed(account),
                })
            }
            CodeConsumption::AlreadyUsed => self.backup_replay(attempt),
            CodeConsumption::SetReplaced => Err(wrong()?),
            CodeConsumption::Locked => Err(locked(name)),
            CodeConsumption::NoAccount => Err(Error::no_account(name)),
        }
    }

    fn totp_replay(&self, attempt: &Attempt<'_>) -> Result<LoginSuccess, Error> {
        Err(self.fail(
            attempt,
            RejectReason::TotpReplay,
            FailureReason::WrongTotp,
            Some(AuditKind::ReplayRefused {
                method: LoginMethod::Totp,
            }),
            None,
        )?)
    }

    fn backup_replay(&self, attempt: &Attempt<'_>) -> Result<LoginSuccess, Error> {
        Err(self.fail(
            attempt,
            RejectReason::BackupCodeAlreadyUsed,
            FailureReason::WrongBackupCode,
            Some(AuditKind::ReplayRefused {
                method: LoginMethod::BackupCode,
            }),
            None,
        )?)
    }

    /// Refuses at once, without hashing or counting, while a delay runs or the account is
    /// locked. The refusal is noted in the audit log, coalesced per delay window; a note that
    /// cannot be written changes nothing about the refusal.
    fn pass_gate(&self, account: &Account) -> Result<(), Error> {
        let gate = self.early_gate(&self.config.throttle, &account.failures);
        if gate == Gate::Open {
            return Ok(());
        }
        let _ = self
            .store
            .note_refused_attempt(&account.name, gate, self.now());
        Err(refused(&account.name, gate))
    }

    /// The gate of `record` by this host's clock, for refusing before the store's step. A record
    /// whose last failure is later than this clock was timed by another (a store shared by
    /// several hosts may keep its own, see [`Store`]): this host cannot tell when its delay
    /// ends, so the delay is left to the store's step, which applies the gate with the time
    /// the record was stamped by, rather than held as long as this clock lags behind. A lock
    /// needs no clock and is always refused here.
    fn early_gate(&self, policy: &ThrottlePolicy, record: &FailureRecord) -> Gate {
        let now = self.now();
        match policy.gate(record, now) {
            Gate::Delayed { .. } if record.last_failure_at.is_some_and(|at| at > now) => Gate::Open,
            gate => gate,
        }
    }

    /// Counts an attempt, durably, before anything is verified; refused (and not counted) if
    /// the stored record closes the gate meanwhile. If the count cannot be written, the store's
    /// error is the answer, whatever was typed: nothing is verified.
    fn reserve<'a>(&self, account: &'a Account) -> Result<Attempt<'a>, Error> {
        let name = &account.name;
        match self
            .store
            .reserve_attempt(name, &self.config.throttle, self.now())?
        {
            Reservation::Reserved { previous, reserved } => Ok(Attempt {
                account,
                previous,
                reserved,
            }),
            Reservation::Refused(gate) => Err(refused(name, gate)),
            Reservation::NoAccount => Err(Error::no_account(name)),
        }
    }

    /// Gives back the count of an attempt whose first factor was right and which waits for its
    /// second (or whose input turned out malformed): only a failure, or a full success, counts.
    fn release(&self, attempt: &Attempt<'_>) -> Result<(), Error> {
        self.store
            .release_attempt(&attempt.account.name, attempt.previous, attempt.reserved)?;
        Ok(())
    }

    fn settle_check(&self) -> SettleCheck {
        SettleCheck {
            policy: self.config.throttle,
        }
    }

    /// Records why a reserved attempt failed (an explanation such as a refused replay goes
    /// first; `burn_ahead` is a TOTP step to refuse from now on) and builds the rejection.
    /// `Err` only if the store failed; the count stands either way. A wrong password gets no
    /// attempt count or delay in its answer: an unknown name has none to give, and the
    /// difference would tell which names exist.
    fn fail(
        &self,
        attempt: &Attempt<'_>,
        reason: RejectReason,
        audit_reason: FailureReason,
        explanation: Option<AuditKind>,
        burn_ahead: Option<u64>,
    ) -> Result<Error, Error> {
        let policy = &self.config.throttle;
        let record = attempt.reserved;
        let mut kinds: Vec<AuditKind> = explanation.into_iter().collect();
        kinds.push(AuditKind::FailedAttempt {
            reason: audit_reason,
            consecutive: record.consecutive,
        });
        if policy.is_locked(&record) && record.consecutive == policy.lock_after {
            kinds.push(AuditKind::Locked);
        }
        let audit = |_: &bool| kinds.clone();
        let name = &attempt.account.name;
        if !self
            .store
            .record_failure(name, self.now(), burn_ahead, &audit)?
        {
            return Ok(Error::no_account(name));
        }
        self.notify(name, &kinds, Facts::default());
        if reason == RejectReason::WrongNameOrPassword {
            return Ok(Error::Rejected(Rejection {
                reason,
                attempts_before_lock: None,
                next_delay_secs: None,
                now_locked: false,
            }));
        }
        Ok(Error::Rejected(Rejection {
            reason,
            attempts_before_lock: Some(policy.attempts_before_lock(&record)),
            next_delay_secs: policy.delay_after(record.consecutive),
            now_locked: policy.is_locked(&record),
        }))
    }

    fn check_password(&self, account: &Account, password: &str) -> Result<(), Error> {
        let Some(phc) = account.password.as_deref() else {
            return Err(Error::Invalid(format!(
                "'{}' has no sparekey password (its password is the system's): an operator \
                 resets its two-factor with `sparekey reset` and enrolls it again",
                account.name
            )));
        };
        self.pass_gate(account)?;
        let attempt = self.reserve(account)?;
        if self.verify_password(password, phc, &Binding::account(&account.name)) {
            self.release(&attempt)
        } else {
            Err(self.fail(
                &attempt,
                RejectReason::WrongPassword,
                FailureReason::WrongPassword,
                None,
                None,
            )?)
        }
    }

    fn open_secret(
        &self,
        sealed: &crate::core::keys::SealedSecret,
        name: &str,
    ) -> Result<TotpSecret, Error> {
        let bytes = self.key.open(sealed, name).map_err(|e| {
            Error::Store(crate::core::store::StoreError::Damaged(format!(
                "account '{name}': {e}"
            )))
        })?;
        Ok(TotpSecret::from_bytes(bytes.to_vec()))
    }

    fn new_code_set(&self, name: &str) -> (Vec<BackupCode>, CodeSet) {
        self.with_entropy(|e| {
            let codes = backup_code::generate_set(e, self.config.code_count);
            self.count_hashes(codes.len() as u64);
            let set = self.hash_memory.with_memory(|memory| {
                CodeSet::create(
                    name,
                    &codes,
                    self.config.hash_params,
                    self.key.hash_secret().as_slice(),
                    e,
                    self.now(),
                    memory,
                )
            });
            (codes, set)
        })
    }

    /// Hands a new set over, in clear for this one time (its event was written with it).
    fn issued(
        &self,
        name: &str,
        issuer: &str,
        set: &CodeSet,
        codes: Vec<BackupCode>,
    ) -> IssuedCodes {
        IssuedCodes {
            account: name.to_string(),
            set_id: set.id,
            issuer: issuer.to_string(),
            issued_at: self.now(),
            codes,
        }
    }

    // ----- codes and administration ---------------------------------------------------------

    pub fn code_status(&self, name: &str) -> Result<CodeStatus, Error> {
        let account = self.load(name)?;
        Ok(match account.codes {
            Some(set) => CodeStatus {
                remaining: set.remaining(),
                total: set.total(),
                created_at: Some(set.created_at),
                used_at: set.slots.iter().map(|s| s.used_at).collect(),
                confirmed_at: set.confirmed_at,
            },
            None => CodeStatus {
                remaining: 0,
                total: 0,
                created_at: None,
                used_at: vec![],
                confirmed_at: None,
            },
        })
    }

    /// Replaces the whole set, on a second factor just completed; every old code is refused
    /// afterwards.
    pub fn regenerate_codes(&self, name: &str, proof: &StepUp) -> Result<IssuedCodes, Error> {
        let account = self.load(name)?;
        let Some(active) = account.totp.as_ref() else {
            return Err(Error::Invalid(format!(
                "'{name}' has no two-factor authentication: enroll an authenticator first"
            )));
        };
        self.check_step_up(&account, proof, "regenerating the backup codes")?;
        let (codes, set) = self.new_code_set(name);
        let count = codes.len() as u32;
        let replaced = self.store.replace_codes(name, &set, self.now(), &|_| {
            vec![AuditKind::CodesRegenerated { count }]
        })?;
        if !replaced {
            return Err(Error::no_account(name));
        }
        Ok(self.issued(name, &active.issuer, &set, codes))
    }

    /// Records that the holder kept the codes of set `set_id` (the face that showed them saw one
    /// typed back, or delivered them to a file or stream that keeps them); until then the set
    /// shows as "never confirmed". Needs no step-up: it grants nothing, and only the face that
    /// issued the set knows its id. Confirming again changes nothing; a set replaced meanwhile
    /// is refused, so a late confirmation never vouches for codes nobody saw.
    pub fn confirm_codes(&self, name: &str, set_id: u64) -> Result<(), Error> {
        let audit = |outcome: &CodesConfirmation| match outcome {
            CodesConfirmation::Confirmed => vec![AuditKind::CodesConfirmed],
            _ => Vec::new(),
        };
        match self.store.confirm_codes(name, set_id, self.now(), &audit)? {
            CodesConfirmation::Confirmed | CodesConfirmation::AlreadyConfirmed => Ok(()),
            CodesConfirmation::SetReplaced => Err(Error::Invalid(format!(
                "the backup codes of '{name}' were replaced meanwhile: these codes are void"
            ))),
            CodesConfirmation::NoAccount => Err(Error::no_account(name)),
        }
    }

    /// Operator: clears the failure counter of a locked or throttled account.
    pub fn unlock(&self, name: &str) -> Result<(), Error> {
        let cleared = self
            .store
            .clear_failures(name, self.now(), &|_| vec![AuditKind::Unlocked])?;
        if !cleared {
            return Err(Error::no_account(name));
        }
        Ok(())
    }

    /// Operator: turns two-factor off (authenticator, pending enrollment and codes).
    pub fn reset_two_factor(&self, name: &str) -> Result<(), Error> {
        let removed = self
            .store
            .remove_two_factor(name, self.now(), &|_| vec![AuditKind::TwoFactorReset])?;
        if !removed {
            return Err(Error::no_account(name));
        }
        self.notify(name, &[AuditKind::TwoFactorReset], Facts::default());
        Ok(())
    }

    /// The account holder turns two-factor off, on a second factor just completed.
    pub fn disable_two_factor(&self, name: &str, proof: &StepUp) -> Result<(), Error> {
        let account = self.load(name)?;
        if account.totp.is_none() {
            return Err(Error::Invalid(format!(
                "'{name}' has no two-factor authentication"
            )));
        }
        self.check_step_up(&account, proof, "turning two-factor authentication off")?;
        let removed = self
            .store
            .remove_two_factor(name, self.now(), &|_| vec![AuditKind::TwoFactorDisabled])?;
        if !removed {
            return Err(Error::no_account(name));
        }
        self.notify(name, &[AuditKind::TwoFactorDisabled], Facts::default());
        Ok(())
    }

    // ----- kiosk operator --------------------------------------------------------------------

    /// Whether the kiosk operator password has been set (it is set at the first kiosk start).
    pub fn has_operator_password(&self) -> Result<bool, Error> {
        Ok(self.store.operator_password()?.is_some())
    }

    /// Sets the kiosk operator password; refused if one is already set.
    pub fn set_operator_password(&self, password: &str) -> Result<(), Error> {
        let phc = self.hash_new_password(password, &["operator", "kiosk"], &Binding::operator())?;
        if self
            .store
            .set_operator_password(&phc, self.now(), &|_| vec![AuditKind::OperatorPasswordSet])?
        {
            Ok(())
        } else {
            Err(Error::AlreadyExists(
                "the operator password is already set".into(),
            ))
        }
    }

    /// Checks the kiosk operator password (one Argon2id evaluation) and, if it is right, starts
    /// an operator session: the only way to get an [`OperatorSession`]. Throttled like a login,
    /// and locked after [`OPERATOR_LOCK_AFTER`] consecutive failures; once locked, even the
    /// right password is refused until a shell operator runs [`Service::clear_operator_failures`]
    /// (the CLI's `kiosk reset-operator-password`).
    pub fn start_operator_session(&self, password: &str) -> Result<OperatorSession, Error> {
        let Some(phc) = self.store.operator_password()? else {
            return Err(Error::Invalid("no operator password is set".into()));
        };
        let policy = ThrottlePolicy {
            lock_after: OPERATOR_LOCK_AFTER,
            ..self.config.throttle
        };
        let failures = self.store.operator_failures()?;
        match self.early_gate(&policy, &failures) {
            Gate::Open => {}
            Gate::Delayed { seconds_left } => return Err(Error::Throttled { seconds_left }),
            Gate::Locked => return Err(operator_locked()),
        }
        // Counted before it is checked, as a login is (see `Service::reserve`).
        let reserved = match self.store.reserve_operator_attempt(&policy, self.now())? {
            Reservation::Reserved { reserved, .. } => reserved,
            Reservation::Refused(Gate::Delayed { seconds_left }) => {
                return Err(Error::Throttled { seconds_left });
            }
            Reservation::Refused(_) | Reservation::NoAccount => return Err(operator_locked()),
        };
        if self.verify_password(password, &phc, &Binding::operator()) {
            let check = SettleCheck { policy };
            let audit = |outcome: &Settlement| match outcome {
                Settlement::Settled => vec![AuditKind::OperatorSignedIn],
                Settlement::Locked | Settlement::NoAccount => Vec::new(),
            };
            return match self
                .store
                .settle_operator_attempt(self.now(), &check, &audit)?
            {
                Settlement::Settled => Ok(OperatorSession::start(self.now())),
                Settlement::Locked | Settlement::NoAccount => Err(operator_locked()),
            };
        }
        let now_locked = policy.is_locked(&reserved) && reserved.consecutive == policy.lock_after;
        // The failure's event goes in the step that records it, so the log never misses one.
        self.store.record_operator_failure(self.now(), &|record| {
            let mut kinds = vec![AuditKind::OperatorFailedAttempt {
                consecutive: record.consecutive,
            }];
            if now_locked {
                kinds.push(AuditKind::OperatorLocked);
            }
            kinds
        })?;
        if policy.is_locked(&reserved) {
            return Err(operator_locked());
        }
        Err(Error::Rejected(Rejection {
            reason: RejectReason::WrongPassword,
            attempts_before_lock: None,
            next_delay_secs: policy.delay_after(reserved.consecutive),
            now_locked: false,
        }))
    }

    /// Shell operator: clears the kiosk operator's failure counter, so a locked-out operator can
    /// try the password again. Audited under [`crate::core::kiosk::OPERATOR_AUDIT_NAME`].
    pub fn clear_operator_failures(&self) -> Result<(), Error> {
        self.store
            .clear_operator_failures(self.now(), &|_| vec![AuditKind::OperatorFailuresCleared])?;
        Ok(())
    }

    /// Records a kiosk's own event (start, quit, idle clear) under
    /// [`crate::core::kiosk::OPERATOR_AUDIT_NAME`]: these change nothing in the store, so they
    /// are appended on their own.
    pub fn kiosk_event(&self, event: KioskEvent) -> Result<(), Error> {
        self.store.append_audit(&AuditEvent {
            at: self.now(),
            account: OPERATOR_AUDIT_NAME.to_string(),
            kind: event.kind(),
        })?;
        Ok(())
    }

    /// The newest `limit` audit events, oldest first.
    pub fn audit_log(&self, name: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, Error> {
        Ok(self.store.audit_events(name, limit)?)
    }
}

/// The answer to an attempt the gate refused.
fn refused(name: &str, gate: Gate) -> Error {
    match gate {
        Gate::Delayed { seconds_left } => Error::Throttled { seconds_left },
        Gate::Locked | Gate::Open => locked(name),
    }
}

fn second_factor_only(name: &str) -> Error {
    Error::Invalid(format!(
        "'{name}' is a second-factor-only account: its password is checked by the system \
         (e.g. pam_unix), not here; check its code with `sparekey verify`"
    ))
}

fn locked(name: &str) -> Error {
    Error::Locked(format!(
        "the account '{name}' is locked after too many failed attempts: an operator must unlock it"
    ))
}

/// (remaining, total) backup codes of an account.
fn code_counts(account: &Account) -> (usize, usize) {
    account
        .codes
        .as_ref()
        .map(|c| (c.remaining(), c.total()))
        .unwrap_or((0, 0))
}

/// Whether the account holds codes nobody confirmed keeping.
fn never_confirmed(account: &Account) -> bool {
    account.codes.as_ref().is_some_and(|c| !c.confirmed())
}

fn operator_locked() -> Error {
    Error::Locked(format!(
        "the operator password is locked after {OPERATOR_LOCK_AFTER} failed attempts: \
         recover it from a shell with `{OPERATOR_RECOVERY_COMMAND}`"
    ))
}

/// A fixed, valid PHC string for timing-equalising checks of unknown account names.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3BhcmVrZXlkdW1teXNhbHQ$8mMBC0L4BVDeC46E9k+6iSV7l3OoR0FDDCc/2yGeQm0";

pub use crate::core::password::MIN_PASSWORD_CHARS;

fn totp_failure(rejection: TotpRejection, params: TotpParams) -> (RejectReason, FailureReason) {
    match rejection {
        TotpRejection::ClockDrift { steps } => (
            RejectReason::ClockDrift {
                steps,
                period: params.period,
            },
            FailureReason::TotpClockDrift { steps },
        ),
        TotpRejection::Replay => (RejectReason::TotpReplay, FailureReason::WrongTotp),
        TotpRejection::Malformed | TotpRejection::Wrong => {
            (RejectReason::WrongCode, FailureReason::WrongTotp)
        }
    }
}

/// See [`Service::parse_second_factor`].
pub fn parse_second_factor(input: &str, params: TotpParams) -> Result<SecondFactor, Error> {
    let squeezed: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t'))
            .collect(),
    );
    if squeezed.is_empty() {
        return Err(Error::Invalid(
            "enter the code from your authenticator or a backup code".into(),
        ));
    }
    if squeezed.chars().all(|c| c.is_ascii_digit()) && squeezed.len() <= params.digits as usize {
        if squeezed.len() == params.digits as usize {
            return Ok(SecondFactor::Totp(squeezed));
        }
        return Err(Error::Invalid(TotpRejection::Malformed.message(params)));
    }
    BackupCode::parse(input)
        .map(SecondFactor::BackupCode)
        .map_err(Error::InvalidBackupCode)
}

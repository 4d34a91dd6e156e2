//! Step-up: proof that the account holder has just completed a second factor. Owns [`StepUp`],
//! its lifetime and its binding to one account. The use cases that could replace the second
//! factor (regenerating codes, replacing the authenticator, the holder turning 2FA off) take a
//! `&StepUp`, so the password alone can never reach them.
//!
//! Must never be minted outside the core: its fields are private and only
//! [`crate::core::service::Service`] makes one, at the end of a finished login (the password,
//! then a current TOTP code or an unused backup code, consumed). Operator overrides (`reset`,
//! `unlock`) do not use it: they are explicit and audited instead.
//!
//! # Lifetime
//! [`STEP_UP_TTL_SECS`], five minutes: long enough to scan a QR code and type the new
//! authenticator's code in one sitting (the re-enrollment's confirm needs the step-up too), and
//! no longer than the wait a checked password gets for its code
//! ([`crate::core::service::PENDING_LOGIN_TTL_SECS`]), so a step-up never outlives the login
//! that made it by more than a login would. A kiosk drops it sooner: clearing an idle screen
//! drops the screen that holds it.

use sha2::{Digest, Sha256};

use crate::core::account::Account;
use crate::core::clock::UnixTime;
use crate::core::error::Error;

/// How long a completed second factor stands in for a new one.
pub const STEP_UP_TTL_SECS: i64 = 300;

/// A completed second factor, bound to one account: its name, its creation time and a digest of
/// its password hash (whose salt is new for every account), so an account removed and created
/// again under the same name, even within the second, is another account. Not `Clone`: the
/// face holds one, and lends or drops it.
pub struct StepUp {
    account: String,
    account_created_at: UnixTime,
    verifier: [u8; 32],
    proven_at: UnixTime,
}

impl std::fmt::Debug for StepUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUp")
            .field("account", &self.account)
            .field("proven_at", &self.proven_at)
            .finish_non_exhaustive()
    }
}

/// What binds a step-up to one account record and the factors it proved: the password hash,
/// the code set's id and the authenticator's enrollment (its time and the sealed secret's
/// nonce, new for every secret). A step-up minted before codes were regenerated or the
/// authenticator replaced stops working then, so one proof authorizes one change of a factor,
/// never the next (a pending enrollment is not part of it: the confirm of the enrollment a
/// step-up began needs that same step-up).
fn verifier_of(account: &Account) -> [u8; 32] {
    let mut digest = Sha256::new();
    // Length-prefixed parts, so no two records give the same input.
    let mut part = |bytes: &[u8]| {
        digest.update((bytes.len() as u64).to_be_bytes());
        digest.update(bytes);
    };
    // A second-factor-only account has no hash here (and is never stepped up: see
    // `Service::step_up`); its creation time still binds the proof.
    part(account.password.as_deref().unwrap_or_default().as_bytes());
    match &account.codes {
        Some(codes) => part(&codes.id.to_be_bytes()),
        None => part(&[]),
    }
    match &account.totp {
        Some(totp) => {
            part(&totp.enrolled_at.to_be_bytes());
            part(&totp.secret.nonce);
        }
        None => part(&[]),
    }
    digest.finalize().into()
}

impl StepUp {
    /// Only the service calls this, once a second factor was accepted for `account` at `now`.
    pub(in crate::core) fn mint(account: &Account, now: UnixTime) -> Self {
        Self {
            account: account.name.clone(),
            account_created_at: account.created_at,
            verifier: verifier_of(account),
            proven_at: now,
        }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// When this proof stops working.
    pub fn expires_at(&self) -> UnixTime {
        self.proven_at.saturating_add(STEP_UP_TTL_SECS)
    }

    /// Whether it still works at `now`: a face asks for a new code when it does not. A clock set
    /// back before the proof counts as expired, so a clock jump cannot stretch it.
    pub fn is_fresh(&self, now: UnixTime) -> bool {
        (0..=STEP_UP_TTL_SECS).contains(&now.saturating_sub(self.proven_at))
    }

    /// Refuses a proof made for another account (or an earlier account of the same name) or
    /// one that expired. `what` names the use case in the message ("regenerating codes").
    pub(in crate::core) fn check(
        &self,
        account: &Account,
        now: UnixTime,
        what: &str,
    ) -> Result<(), Error> {
        if self.account != account.name
            || self.account_created_at != account.created_at
            || self.verifier != verifier_of(account)
        {
            return Err(Error::StepUpNeeded(format!(
                "{what} for '{}' needs that account's own current code",
                account.name
            )));
        }
        if !self.is_fresh(now) {
            return Err(Error::StepUpNeeded(format!(
                "the second factor was checked more than {} min ago: {what} needs the password \
                 and a current code again",
                STEP_UP_TTL_SECS / 60
            )));
        }
        Ok(())
    }
}

/// The refusal of a use case asked for with the password alone. `what` names it.
pub fn needed(what: &str) -> Error {
    Error::StepUpNeeded(format!(
        "{what} needs a current code from the authenticator or an unused backup code, \
         not only the password: nothing was changed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;

    fn account(name: &str, created_at: UnixTime) -> Account {
        Account {
            name: name.into(),
            password: Some("$argon2id$salt-a".into()),
            created_at,
            totp: None,
            pending: None,
            codes: None,
            failures: Default::default(),
            last_login: None,
        }
    }

    #[test]
    fn works_for_its_account_until_it_expires() {
        let alice = account("alice", 10);
        let proof = StepUp::mint(&alice, 1_000);
        assert!(proof.check(&alice, 1_000, "x").is_ok());
        assert!(proof.check(&alice, 1_000 + STEP_UP_TTL_SECS, "x").is_ok());
        let late = proof
            .check(&alice, 1_001 + STEP_UP_TTL_SECS, "regenerating codes")
            .unwrap_err();
        assert_eq!(late.kind(), ErrorKind::Rejected);
        assert!(late.to_string().contains("more than 5 min ago"), "{late}");
        // A clock set back does not make an old proof new.
        assert!(proof.check(&alice, 999, "x").is_err());
        assert_eq!(proof.expires_at(), 1_300);
    }

    #[test]
    fn is_bound_to_the_account_and_its_creation() {
        let proof = StepUp::mint(&account("alice", 10), 1_000);
        assert!(proof.check(&account("bob", 10), 1_000, "x").is_err());
        // Removed and created again under the same name: another account, even in the same
        // second (the new password hash has a new salt).
        assert!(proof.check(&account("alice", 11), 1_000, "x").is_err());
        let mut again = account("alice", 10);
        again.password = Some("$argon2id$salt-b".into());
        assert!(proof.check(&again, 1_000, "x").is_err());
    }

    #[test]
    fn stops_working_once_a_factor_it_proved_was_replaced() {
        use crate::core::code_set::CodeSet;
        use crate::core::keys::SealedSecret;
        let mut alice = account("alice", 10);
        alice.codes = Some(CodeSet {
            id: 1,
            salt: [0; 16],
            params: crate::core::password::HashParams::TEST_ONLY,
            created_at: 10,
            slots: Vec::new(),
            bound: true,
            confirmed_at: None,
        });
        alice.totp = Some(crate::core::account::ActiveTotp {
            issuer: "sparekey".into(),
            secret: SealedSecret {
                nonce: [1; 24],
                ciphertext: vec![2; 36],
            },
            params: Default::default(),
            last_step: Some(5),
            enrolled_at: 10,
            burned_ahead: Vec::new(),
        });
        let proof = StepUp::mint(&alice, 1_000);
        // A login moves the last step: the same factors, the proof still works.
        alice.totp.as_mut().unwrap().last_step = Some(6);
        assert!(proof.check(&alice, 1_000, "x").is_ok());
        let mut regenerated = alice.clone();
        regenerated.codes.as_mut().unwrap().id = 2;
        assert!(proof.check(&regenerated, 1_000, "x").is_err());
        let mut reenrolled = alice.clone();
        reenrolled.totp.as_mut().unwrap().secret.nonce = [3; 24];
        assert!(proof.check(&reenrolled, 1_000, "x").is_err());
        let mut stripped = alice.clone();
        stripped.totp = None;
        assert!(proof.check(&stripped, 1_000, "x").is_err());
    }
}

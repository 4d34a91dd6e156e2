//! The account record as the store keeps it, and the summary the faces show. Owns account-name
//! rules. Must never hold a secret in clear: the TOTP secret is sealed, the password and codes
//! are Argon2id hashes.

use serde::{Deserialize, Serialize};

use crate::core::audit::LoginMethod;
use crate::core::clock::UnixTime;
use crate::core::code_set::CodeSet;
use crate::core::keys::SealedSecret;
use crate::core::throttle::{FailureRecord, ThrottlePolicy};
use crate::core::totp::TotpParams;

/// Longest account name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveTotp {
    /// The issuer the authenticator shows, kept so later exports name the same one.
    pub issuer: String,
    pub secret: SealedSecret,
    pub params: TotpParams,
    /// The last accepted time step: only a later one is accepted (RFC 6238 section 5.2).
    pub last_step: Option<u64>,
    pub enrolled_at: UnixTime,
    /// Steps after `last_step` that a code from a clock running ahead matched: refused from
    /// then on, while the steps before them still work once the clock is fixed (at most
    /// `store::mutation::MAX_BURNED_AHEAD`, ascending).
    #[serde(default)]
    pub burned_ahead: Vec<u64>,
}

/// An authenticator being enrolled: waits here until confirmed with a code, or replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTotp {
    pub id: u64,
    pub issuer: String,
    pub secret: SealedSecret,
    pub params: TotpParams,
    pub started_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastLogin {
    pub at: UnixTime,
    pub method: LoginMethod,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    /// Argon2id PHC string of the sparekey password; `None` for a second-factor-only account,
    /// whose first factor is checked elsewhere (the system password, by `pam_unix`).
    #[serde(with = "password_or_none")]
    pub password: Option<String>,
    pub created_at: UnixTime,
    pub totp: Option<ActiveTotp>,
    pub pending: Option<PendingTotp>,
    pub codes: Option<CodeSet>,
    pub failures: FailureRecord,
    pub last_login: Option<LastLogin>,
}

/// The few facts about an account that a list needs, kept small so that listing 100,000
/// accounts never decodes 100,000 full records. Backends may store it beside the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFacts {
    pub name: String,
    pub two_factor: bool,
    pub enrollment_pending: bool,
    pub remaining_codes: u32,
    pub total_codes: u32,
    pub failures: FailureRecord,
    pub last_login: Option<LastLogin>,
}

impl Account {
    pub fn facts(&self) -> AccountFacts {
        let (remaining, total) = self
            .codes
            .as_ref()
            .map(|c| (c.remaining(), c.total()))
            .unwrap_or((0, 0));
        AccountFacts {
            name: self.name.clone(),
            two_factor: self.totp.is_some(),
            enrollment_pending: self.pending.is_some(),
            remaining_codes: remaining as u32,
            total_codes: total as u32,
            failures: self.failures,
            last_login: self.last_login,
        }
    }
}

/// Schema 1 keeps the password as a plain string; a second-factor-only account stores it empty,
/// which no PHC string can be, so records written before such accounts existed read unchanged
/// and an older sparekey reading the new record finds a password that nothing verifies against.
mod password_or_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let phc = String::deserialize(d)?;
        Ok(Some(phc).filter(|p| !p.is_empty()))
    }
}

impl Account {
    /// Whether the first factor is checked elsewhere (no sparekey password).
    pub fn second_factor_only(&self) -> bool {
        self.password.is_none()
    }
}

/// What a list of accounts shows: no hashes, no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    pub name: String,
    pub two_factor: bool,
    pub enrollment_pending: bool,
    pub remaining_codes: usize,
    pub total_codes: usize,
    pub locked: bool,
    pub consecutive_failures: u32,
    pub last_login: Option<LastLogin>,
    /// Two-factor is on and at most [`LOW_CODES`] codes remain: regenerate.
    pub codes_low: bool,
    /// The last login spent a backup code: the authenticator may be lost; re-enroll.
    pub last_login_used_backup_code: bool,
    /// Either of the two above.
    pub needs_attention: bool,
}

/// Codes at or under this count are "running low".
pub const LOW_CODES: usize = 3;

impl AccountSummary {
    pub fn of(account: &Account, policy: &ThrottlePolicy) -> Self {
        Self::from_facts(&account.facts(), policy)
    }

    pub fn from_facts(facts: &AccountFacts, policy: &ThrottlePolicy) -> Self {
        let remaining = facts.remaining_codes as usize;
        let codes_low = facts.two_factor && remaining <= LOW_CODES;
        let last_login_used_backup_code = facts.two_factor
            && facts
                .last_login
                .is_some_and(|l| l.method == LoginMethod::BackupCode);
        Self {
            name: facts.name.clone(),
            two_factor: facts.two_factor,
            enrollment_pending: facts.enrollment_pending,
            remaining_codes: remaining,
            total_codes: facts.total_codes as usize,
            locked: policy.is_locked(&facts.failures),
            consecutive_failures: facts.failures.consecutive,
            last_login: facts.last_login,
            codes_low,
            last_login_used_backup_code,
            needs_attention: codes_low || last_login_used_backup_code,
        }
    }
}

/// Checks an account name: 1 to 64 characters, no control characters, no ':' (it separates
/// issuer and account in otpauth URIs), no leading or trailing space.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the account name is empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the account name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the account name contains a control character".into());
    }
    if name.contains(':') {
        return Err("the account name must not contain ':' (it separates issuer and account in the otpauth URI)".into());
    }
    if name.trim() != name {
        return Err("the account name must not start or end with a space".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("alice@example.com").is_ok());
        assert!(validate_name("Zoë").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a:b").unwrap_err().contains("':'"));
        assert!(validate_name("a\u{7}b").is_err());
        assert!(validate_name(" alice").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert!(validate_name(&"x".repeat(64)).is_ok());
    }

    fn record(password: Option<&str>) -> Account {
        Account {
            name: "bob".into(),
            password: password.map(str::to_string),
            created_at: 0,
            totp: None,
            pending: None,
            codes: None,
            failures: Default::default(),
            last_login: None,
        }
    }

    #[test]
    fn second_factor_only_records_round_trip_and_old_records_read_unchanged() {
        let only = record(None);
        let bytes = postcard::to_allocvec(&only).unwrap();
        let back: Account = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, only);
        assert!(back.second_factor_only());

        let with = record(Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"));
        let back: Account = postcard::from_bytes(&postcard::to_allocvec(&with).unwrap()).unwrap();
        assert_eq!(back, with);
        // A schema-1 record (the password a plain string) is the same bytes as before.
        #[derive(serde::Serialize)]
        struct Before<'a> {
            name: &'a str,
            password: &'a str,
        }
        let before = postcard::to_allocvec(&Before {
            name: "bob",
            password: with.password.as_deref().unwrap(),
        })
        .unwrap();
        assert!(postcard::to_allocvec(&with).unwrap().starts_with(&before));
    }
}

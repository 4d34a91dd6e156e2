//! The account record as the store keeps it, and the summary the faces show. Owns account-name
//! rules (what may be a name, when two names are the same account, how a name is shown) and the
//! sanity rules of a whole record, which a restore applies as creation would. Must never hold a
//! secret in clear: the TOTP secret is sealed, the password and codes are Argon2id hashes.

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
    /// Argon2id PHC string.
    pub password: String,
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

/// Checks an account name: 1 to 64 characters in Unicode NFC, no ':' (it separates issuer and
/// account in otpauth URIs), no leading or trailing space, and none of the characters that make
/// two names look alike or text render other than it reads: control, format (U+200B, BOM, ...),
/// bidi controls (U+202E, ...), separators other than the ASCII space (U+00A0, U+2028, ...) and
/// private-use characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    use unicode_normalization::{IsNormalized, is_nfc_quick};
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
    if let Some(c) = name.chars().find(|&c| c != ' ' && hidden(c)) {
        return Err(format!(
            "the account name contains U+{:04X}, an invisible, spacing or private-use character",
            c as u32
        ));
    }
    if name.contains(':') {
        return Err("the account name must not contain ':' (it separates issuer and account in the otpauth URI)".into());
    }
    if name.trim() != name {
        return Err("the account name must not start or end with a space".into());
    }
    let nfc = match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => true,
        _ => unicode_normalization::is_nfc(name),
    };
    if !nfc {
        return Err(
            "the account name is not in Unicode NFC form (type it again, or use its composed form)"
                .into(),
        );
    }
    Ok(())
}

/// The form two names share when they name the same account: case-folded (upper then lower
/// case, so "ß" and "SS" agree) and NFC. The store keeps names unique in this form.
pub fn folded_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.to_uppercase().to_lowercase().nfc().collect()
}

/// Characters that show as nothing, as space other than the ASCII one, change the direction of
/// what follows, or mean nothing agreed (Unicode 15 categories Cf, Zs, Zl, Zp, Co).
fn hidden(c: char) -> bool {
    matches!(c as u32,
        // Zs, Zl, Zp
        0x20 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
        // Cf
        | 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        // Co
        | 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
}

/// `text` (a name, an audit line) safe to put on a terminal: every control, invisible, spacing
/// (but the ASCII space) or private-use character is shown as `\u{XXXX}`, so no stored name
/// can move the cursor, recolour the screen or hide part of itself. A backslash stays as it is
/// (names like `DOMAIN\user` are common), so the escape form is readable, not reversible.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let escape = |c: char| c.is_control() || (c != ' ' && hidden(c));
    if !text.chars().any(escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if escape(c) => out.push_str(&format!("\\u{{{:04X}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Longest issuer kept with an authenticator, in characters.
const MAX_ISSUER_CHARS: usize = 64;
/// Bytes of a sealed TOTP secret: 10 to 64 secret bytes and the 16-byte Poly1305 tag.
const SEALED_SECRET_BYTES: std::ops::RangeInclusive<usize> = 26..=80;

/// Checks a whole record as creation would have made it: the name, the password hash's form and
/// cost, the authenticators' parameters and sizes, the code set's size and cost. For records
/// that come from outside (a restored backup); one line naming the account and what is wrong.
pub fn check_record(account: &Account) -> Result<(), String> {
    let name = printable(&account.name);
    let bad = |what: &str| format!("account '{name}': {what}");
    validate_name(&account.name).map_err(|e| bad(&e))?;
    let valid_hash =
        crate::core::password::phc_params(&account.password).is_some_and(|p| p.is_valid());
    if !valid_hash {
        return Err(bad("its password hash is not a usable Argon2id hash"));
    }
    let sealed_ok = |issuer: &str, len: usize, params: crate::core::totp::TotpParams| {
        params.is_valid()
            && SEALED_SECRET_BYTES.contains(&len)
            && !issuer.is_empty()
            && !issuer.contains(':')
            && issuer.chars().count() <= MAX_ISSUER_CHARS
            && !issuer
                .chars()
                .any(|c| c.is_control() || (c != ' ' && hidden(c)))
    };
    if let Some(t) = &account.totp
        && !sealed_ok(&t.issuer, t.secret.ciphertext.len(), t.params)
    {
        return Err(bad("its authenticator has impossible parameters or size"));
    }
    if let Some(p) = &account.pending
        && !sealed_ok(&p.issuer, p.secret.ciphertext.len(), p.params)
    {
        return Err(bad(
            "its pending enrollment has impossible parameters or size",
        ));
    }
    if let Some(c) = &account.codes {
        let count = crate::core::code_set::MIN_CODES..=crate::core::code_set::MAX_CODES;
        if !count.contains(&c.slots.len()) || !c.params.is_valid() {
            return Err(bad(
                "its backup-code set has an impossible size or parameters",
            ));
        }
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
        assert!(validate_name("alice smith").is_ok());
    }

    #[test]
    fn invisible_bidi_spacing_and_private_characters_are_refused() {
        for bad in [
            "ali\u{200B}ce",
            "\u{202E}ecila",
            "alice\u{2028}x",
            "\u{FEFF}alice",
            "ali\u{00A0}ce",
            "ali\u{2066}ce",
            "ali\u{E000}ce",
            "ali\u{AD}ce",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.contains("U+"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn names_must_be_nfc_and_are_the_same_regardless_of_case() {
        assert!(validate_name("Zo\u{EB}").is_ok());
        let err = validate_name("Zoe\u{308}").unwrap_err();
        assert!(err.contains("NFC"), "{err}");
        assert_eq!(folded_name("Alice"), folded_name("alice"));
        assert_eq!(folded_name("STRASSE"), folded_name("stra\u{DF}e"));
        assert_eq!(folded_name("Zoe\u{308}"), folded_name("ZO\u{CB}"));
        assert_ne!(folded_name("alice"), folded_name("alicia"));
    }

    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("alice smith"), "alice smith");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{001B}[2Jb");
        assert_eq!(printable("\u{202E}x"), "\\u{202E}x");
        assert_eq!(printable("DOMAIN\\user"), "DOMAIN\\user");
        assert_eq!(printable("a\nb\u{85}"), "a\\u{000A}b\\u{0085}");
    }
}

//! TOTP (RFC 6238) on top of HOTP (RFC 4226): the code maths, the shared secret and its base32
//! and `otpauth://` forms, and verification of a typed code against the accepted window, with
//! replay and clock-drift detection. Pure functions only: it must never read the clock or the OS
//! random number generator itself (time and [`Entropy`] are passed in), and never stores anything
//! (the caller persists the last accepted step and hands it back).

use std::fmt;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::core::entropy::Entropy;

/// The HMAC hash behind the codes. SHA-1 is the default because it is the only one every
/// authenticator app implements; HMAC-SHA-1 is not affected by SHA-1's collision weaknesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub enum Algorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The spelling used by the `algorithm` parameter of `otpauth://` URIs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

/// How codes are derived. Stored next to the secret because changing any field after enrolment
/// invalidates the user's authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: u32,
    /// Seconds per step.
    pub period: u64,
}

impl Default for TotpParams {
    /// SHA-1, 6 digits, 30 seconds: the combination with the widest authenticator support (some
    /// apps silently ignore the other parameters and would show wrong codes).
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        }
    }
}

impl TotpParams {
    /// Whether codes can be computed at all: params come from stored data, so a corrupted
    /// record must be refused rather than divide by zero or overflow.
    pub fn is_valid(&self) -> bool {
        (6..=8).contains(&self.digits) && self.period > 0
    }
}

/// Steps either side of the current one that are accepted, absorbing typing time and small
/// clock differences (RFC 6238 section 5.2 recommends at most one).
pub const WINDOW_STEPS: u64 = 1;

/// How far outside the window to look for the code so a wrong clock can be diagnosed instead of
/// reported as a wrong code. Such a match is never accepted.
pub const DRIFT_SEARCH_STEPS: u64 = 10;

// Both are tiny; signed copies keep the offset arithmetic free of casts.
const WINDOW: i64 = WINDOW_STEPS as i64;
const DRIFT_SEARCH: i64 = DRIFT_SEARCH_STEPS as i64;

/// The HOTP value for `counter`, zero-padded to `digits` (RFC 4226 section 5.3).
pub fn hotp(secret: &[u8], counter: u64, algorithm: Algorithm, digits: u32) -> String {
    debug_assert!(
        (6..=8).contains(&digits),
        "RFC 4226 codes have 6 to 8 digits, not {digits}"
    );
    let message = counter.to_be_bytes();
    let binary = match algorithm {
        Algorithm::Sha1 => truncated_hmac::<Hmac<sha1::Sha1>>(secret, &message),
        Algorithm::Sha256 => truncated_hmac::<Hmac<sha2::Sha256>>(secret, &message),
        Algorithm::Sha512 => truncated_hmac::<Hmac<sha2::Sha512>>(secret, &message),
    };
    // Release builds must not panic on an out-of-range digit count from corrupt data: past u64's
    // range every 31-bit value is already below the modulus, so it is left as is.
    let code = match 10u64.checked_pow(digits) {
        Some(modulus) => u64::from(binary) % modulus,
        None => u64::from(binary),
    };
    format!("{code:0width$}", width = digits as usize)
}

fn truncated_hmac<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> u32 {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    let digest = mac.finalize().into_bytes();
    // Dynamic truncation: the low nibble of the last byte picks where the 31 bits come from.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bytes = [
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ];
    u32::from_be_bytes(bytes)
}

/// The TOTP step containing `unix_time`, or `None` before the epoch (no authenticator can show a
/// code for it) or for a zero period.
pub fn step_at(unix_time: i64, period: u64) -> Option<u64> {
    u64::try_from(unix_time).ok()?.checked_div(period)
}

/// The code an authenticator shows at `unix_time`, or `None` when there is none: before the epoch,
/// or when `params` are not [valid](TotpParams::is_valid).
pub fn code_at(secret: &[u8], unix_time: i64, params: TotpParams) -> Option<String> {
    if !params.is_valid() {
        return None;
    }
    let step = step_at(unix_time, params.period)?;
    Some(hotp(secret, step, params.algorithm, params.digits))
}

/// The shared TOTP key. Zeroed on drop and never printed, since anyone holding it can mint codes.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// 160 bits: the length RFC 4226 recommends and the HMAC-SHA-1 output size.
    pub const LEN: usize = 20;

    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; Self::LEN]);
        entropy.fill(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32, upper case, without padding: the form authenticators expect.
    pub fn to_base32(&self) -> Zeroizing<String> {
        // Allocating the exact size up front means no reallocation leaves an unzeroed copy behind.
        let mut text = Zeroizing::new(String::with_capacity(BASE32_NOPAD.encode_len(self.0.len())));
        BASE32_NOPAD.encode_append(&self.0, &mut text);
        text
    }

    /// [`to_base32`](Self::to_base32) in groups of four separated by spaces, so it can be read
    /// aloud or typed by hand without losing one's place.
    pub fn grouped_base32(&self) -> Zeroizing<String> {
        let plain = self.to_base32();
        let mut grouped = Zeroizing::new(String::with_capacity(plain.len() + plain.len() / 4));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        grouped
    }

    /// Parses a secret as people type or paste it: any case, with spaces (including the groups of
    /// [`grouped_base32`](Self::grouped_base32)) and `=` padding ignored.
    pub fn from_base32(text: &str) -> Result<Self, SecretParseError> {
        let mut canonical = Zeroizing::new(String::with_capacity(text.len()));
        canonical.extend(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase()),
        );
        if canonical.is_empty() {
            return Err(SecretParseError::Empty);
        }
        let bytes = BASE32_NOPAD
            .decode(canonical.as_bytes())
            .map_err(|_| SecretParseError::InvalidBase32)?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// Why a typed secret could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretParseError {
    /// Nothing but spaces and padding.
    Empty,
    /// A character outside the base32 alphabet, or a length no encoding can produce.
    InvalidBase32,
}

impl fmt::Display for SecretParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the secret is empty",
            Self::InvalidBase32 => "not a valid base32 secret",
        })
    }
}

impl std::error::Error for SecretParseError {}

/// Which half of the `ISSUER:ACCOUNT` label a [`LabelError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelPart {
    Issuer,
    Account,
}

impl LabelPart {
    fn name(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::Account => "account",
        }
    }
}

/// An issuer or account name that cannot go into an `otpauth://` URI unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelError {
    /// Empty or only whitespace: the authenticator entry would be unidentifiable.
    Empty(LabelPart),
    /// Authenticators split the label at the first ':', even when percent-encoded.
    Colon(LabelPart),
    /// Control characters render unpredictably in authenticator apps.
    ControlCharacter(LabelPart),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty(part) => write!(f, "the {} must not be empty", part.name()),
            Self::Colon(part) => write!(
                f,
                "the {} must not contain ':' (it separates issuer and account in the otpauth URI)",
                part.name()
            ),
            Self::ControlCharacter(part) => {
                write!(f, "the {} must not contain control characters", part.name())
            }
        }
    }
}

impl std::error::Error for LabelError {}

fn check_label(text: &str, part: LabelPart) -> Result<(), LabelError> {
    if text.trim().is_empty() {
        Err(LabelError::Empty(part))
    } else if text.contains(':') {
        Err(LabelError::Colon(part))
    } else if text.chars().any(char::is_control) {
        Err(LabelError::ControlCharacter(part))
    } else {
        Ok(())
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters. Stricter than the URI
/// grammar requires, because authenticator apps' parsers disagree about everything else.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// The Key Uri Format URI that authenticators import (usually via a QR code). The issuer goes in
/// both the label prefix and the `issuer` parameter, as older apps read only one of them.
/// `algorithm`, `digits` and `period` are written only when they differ from the format's
/// defaults (SHA1, 6, 30), which every app assumes when they are absent: a shorter URI is a
/// smaller QR code, one that fits an 80x24 terminal.
pub fn otpauth_uri(
    issuer: &str,
    account: &str,
    secret: &TotpSecret,
    params: TotpParams,
) -> Result<Zeroizing<String>, LabelError> {
    check_label(issuer, LabelPart::Issuer)?;
    check_label(account, LabelPart::Account)?;
    let issuer = percent_encode(issuer);
    let account = percent_encode(account);
    let secret = secret.to_base32();
    let defaults = TotpParams::default();
    let digits = params.digits.to_string();
    let period = params.period.to_string();
    let mut parts: Vec<&str> = vec![
        "otpauth://totp/",
        &issuer,
        ":",
        &account,
        "?secret=",
        &secret,
        "&issuer=",
        &issuer,
    ];
    if params.algorithm != defaults.algorithm {
        parts.extend(["&algorithm=", params.algorithm.name()]);
    }
    if params.digits != defaults.digits {
        parts.extend(["&digits=", &digits]);
    }
    if params.period != defaults.period {
        parts.extend(["&period=", &period]);
    }
    // Sized exactly so growing the buffer never leaves a copy of the secret unzeroed.
    let mut uri = Zeroizing::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for part in parts {
        uri.push_str(part);
    }
    Ok(uri)
}

/// Why a typed code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpRejection {
    /// Not `digits` ASCII digits; decided before any HMAC is computed.
    Malformed,
    /// No match in the window or the drift search.
    Wrong,
    /// The code belongs to a step at or before the last accepted one (RFC 6238 section 5.2).
    Replay,
    /// The code matches a step outside the window but within [`DRIFT_SEARCH_STEPS`]: the code is
    /// right but a clock is wrong. Positive when the authenticator is ahead.
    ClockDrift { steps: i64 },
}

impl TotpRejection {
    /// One sentence for the person at the console.
    pub fn message(&self, params: TotpParams) -> String {
        match self {
            Self::Malformed => format!(
                "enter the {}-digit code from your authenticator",
                params.digits
            ),
            Self::Wrong => "wrong code".to_owned(),
            Self::Replay => "that code was already used: wait for the next one".to_owned(),
            Self::ClockDrift { steps } => drift_advice(*steps, params.period),
        }
    }
}

/// What to do about a drifted clock, and what will then work: the code shown after the fix
/// is accepted at once, because a code from a clock running ahead burns only the step it
/// matched, never the steps before it.
pub fn drift_advice(steps: i64, period: u64) -> String {
    format!(
        "{}; correct its time and the code it shows works at once",
        drift_description(steps, period)
    )
}

/// How far off the authenticator's clock is, in whole minutes since that is how people set
/// clocks; never "0 minutes", which would read as "nothing wrong".
pub fn drift_description(steps: i64, period: u64) -> String {
    let direction = match steps.signum() {
        1 => "ahead",
        -1 => "behind",
        _ => return "the authenticator's clock is slightly off".to_owned(),
    };
    // u128 so that no step count and period can overflow.
    let seconds = u128::from(steps.unsigned_abs()) * u128::from(period);
    let minutes = ((seconds + 30) / 60).max(1);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!("the authenticator's clock is about {minutes} {unit} {direction}")
}

/// The steps that may no longer be accepted: every one up to the last accepted step, and the
/// few later ones a code from a clock running ahead matched (burned).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent<'a> {
    pub last_step: Option<u64>,
    pub burned: &'a [u64],
}

impl Spent<'_> {
    fn is_fresh(&self, step: u64) -> bool {
        self.last_step.is_none_or(|last| step > last) && !self.burned.contains(&step)
    }
}

/// The typed code without the spaces authenticators show ("123 456"), if it has the right
/// number of digits.
fn typed_digits(input: &str, params: TotpParams) -> Option<Zeroizing<Vec<u8>>> {
    let typed = Zeroizing::new(
        input
            .trim()
            .bytes()
            .filter(|&b| b != b' ')
            .collect::<Vec<u8>>(),
    );
    (typed.len() == params.digits as usize && typed.iter().all(u8::is_ascii_digit)).then_some(typed)
}

/// Whether `input` has the form of a code for `params`, decided with no HMAC: a typo caught
/// here costs no attempt.
pub fn is_well_formed(input: &str, params: TotpParams) -> bool {
    typed_digits(input, params).is_some()
}

/// Checks a typed code at time `now`. `last_step` is the step of the last accepted code, if any;
/// on success the caller must store the returned step and pass it next time, so that a code seen
/// over someone's shoulder cannot be used again.
pub fn verify(
    secret: &TotpSecret,
    input: &str,
    now: i64,
    params: TotpParams,
    last_step: Option<u64>,
) -> Result<u64, TotpRejection> {
    let spent = Spent {
        last_step,
        burned: &[],
    };
    verify_spent(secret, input, now, params, spent)
}

/// [`verify`], refusing the burned steps of `spent` too (as replays).
pub fn verify_spent(
    secret: &TotpSecret,
    input: &str,
    now: i64,
    params: TotpParams,
    spent: Spent<'_>,
) -> Result<u64, TotpRejection> {
    if !params.is_valid() {
        // Corrupt stored params: nothing the user types can be right.
        return Err(TotpRejection::Wrong);
    }
    let Some(typed) = typed_digits(input, params) else {
        return Err(TotpRejection::Malformed);
    };

    // i128 step arithmetic: `now` may be negative or near i64::MAX, and steps are unsigned, so
    // offsets are computed where nothing can overflow and then clamped to real (>= 0) steps.
    let current = i128::from(now).div_euclid(i128::from(params.period));
    let matches_at = |offset: i64| -> Option<(u64, Choice)> {
        let step = u64::try_from(current + i128::from(offset)).ok()?;
        let code = hotp(secret.as_bytes(), step, params.algorithm, params.digits);
        Some((step, code.as_bytes().ct_eq(&typed)))
    };
    let is_fresh = |step: u64| spent.is_fresh(step);

    // Every candidate is computed and folded in without branching on the comparison, so timing
    // does not reveal which step (if any) matched.
    let mut accepted = Choice::from(0);
    let mut accepted_step = 0u64;
    let mut replayed = Choice::from(0);
    for offset in -WINDOW..=WINDOW {
        let Some((step, matched)) = matches_at(offset) else {
            continue;
        };
        let fresh = Choice::from(u8::from(is_fresh(step)));
        // Ascending order, so the latest acceptable match wins: accepting an earlier step would
        // leave the later code replayable.
        accepted_step.conditional_assign(&step, matched & fresh);
        accepted |= matched & fresh;
        replayed |= matched & !fresh;
    }
    if bool::from(accepted) {
        return Ok(accepted_step);
    }
    if bool::from(replayed) {
        return Err(TotpRejection::Replay);
    }

    // Nearest first, so a chance collision far away cannot mask the real drift.
    let mut drift: Option<(i64, u64)> = None;
    for distance in (WINDOW + 1)..=DRIFT_SEARCH {
        for offset in [distance, -distance] {
            if let Some((step, matched)) = matches_at(offset)
                && bool::from(matched)
                && drift.is_none()
            {
                drift = Some((offset, step));
            }
        }
    }
    match drift {
        // An old code that was already accepted is a replay, not evidence of a wrong clock.
        Some((_, step)) if !is_fresh(step) => Err(TotpRejection::Replay),
        Some((steps, _)) => Err(TotpRejection::ClockDrift { steps }),
        None => Err(TotpRejection::Wrong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entropy::SeededEntropy;
    use proptest::prelude::*;

    const RFC_SEED_SHA1: &[u8] = b"12345678901234567890";
    const RFC_SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const RFC_SEED_SHA512: &[u8] =
        b"1234567890123456789012345678901234567890123456789012345678901234";

    fn params() -> TotpParams {
        TotpParams::default()
    }

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SEED_SHA1.to_vec())
    }

    /// A time in the middle of a step, far from the epoch.
    const NOW: i64 = 1_700_000_015;

    fn code_for_step(step: u64) -> String {
        hotp(RFC_SEED_SHA1, step, Algorithm::Sha1, 6)
    }

    fn current_step() -> u64 {
        step_at(NOW, 30).unwrap()
    }

    #[test]
    fn rfc4226_appendix_d() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(
                hotp(RFC_SEED_SHA1, counter as u64, Algorithm::Sha1, 6),
                *want,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        let rows: [(i64, [&str; 3]); 6] = [
            (59, ["94287082", "46119246", "90693936"]),
            (1111111109, ["07081804", "68084774", "25091201"]),
            (1111111111, ["14050471", "67062674", "99943326"]),
            (1234567890, ["89005924", "91819424", "93441116"]),
            (2000000000, ["69279037", "90698825", "38618901"]),
            (20000000000, ["65353130", "77737706", "47863826"]),
        ];
        let algorithms = [
            (Algorithm::Sha1, RFC_SEED_SHA1),
            (Algorithm::Sha256, RFC_SEED_SHA256),
            (Algorithm::Sha512, RFC_SEED_SHA512),
        ];
        for (time, codes) in rows {
            for ((algorithm, seed), want) in algorithms.iter().zip(codes) {
                let params = TotpParams {
                    algorithm: *algorithm,
                    digits: 8,
                    period: 30,
                };
                assert_eq!(
                    code_at(seed, time, params).as_deref(),
                    Some(want),
                    "{algorithm:?} at {time}"
                );
            }
        }
    }

    #[test]
    fn codes_are_zero_padded() {
        assert_eq!(
            code_at(RFC_SEED_SHA1, 1111111109, params()).as_deref(),
            Some("081804")
        );
    }

    #[test]
    fn steps_and_codes_before_the_epoch_or_with_bad_params() {
        assert_eq!(step_at(-1, 30), None);
        assert_eq!(step_at(0, 30), Some(0));
        assert_eq!(step_at(59, 30), Some(1));
        assert_eq!(step_at(60, 30), Some(2));
        assert_eq!(step_at(100, 0), None);
        assert_eq!(code_at(RFC_SEED_SHA1, -1, params()), None);
        let zero_period = TotpParams {
            period: 0,
            ..params()
        };
        assert_eq!(code_at(RFC_SEED_SHA1, 100, zero_period), None);
        let nine_digits = TotpParams {
            digits: 9,
            ..params()
        };
        assert_eq!(code_at(RFC_SEED_SHA1, 100, nine_digits), None);
    }

    #[test]
    fn algorithm_names_and_default_params() {
        assert_eq!(Algorithm::Sha1.name(), "SHA1");
        assert_eq!(Algorithm::Sha256.name(), "SHA256");
        assert_eq!(Algorithm::Sha512.name(), "SHA512");
        assert_eq!(
            TotpParams::default(),
            TotpParams {
                algorithm: Algorithm::Sha1,
                digits: 6,
                period: 30
            }
        );
    }

    #[test]
    fn base32_known_value_and_round_trip() {
        let secret = secret();
        assert_eq!(*secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            *secret.grouped_base32(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
        for text in [
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
            "  GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ==== ",
        ] {
            let parsed = TotpSecret::from_base32(text).unwrap();
            assert_eq!(parsed.as_bytes(), RFC_SEED_SHA1, "{text:?}");
        }

        let generated = TotpSecret::generate(&mut SeededEntropy::new(7));
        assert_eq!(generated.as_bytes().len(), TotpSecret::LEN);
        assert_ne!(generated.as_bytes(), &[0u8; TotpSecret::LEN]);
        let encoded = generated.to_base32();
        assert!(!encoded.contains('='));
        assert_eq!(*encoded, encoded.to_ascii_uppercase());
        let back = TotpSecret::from_base32(&generated.grouped_base32()).unwrap();
        assert_eq!(back.as_bytes(), generated.as_bytes());
    }

    #[test]
    fn base32_rejects_garbage() {
        assert_eq!(
            TotpSecret::from_base32("  = ").unwrap_err(),
            SecretParseError::Empty
        );
        for text in ["GEZD1GNB", "GEZDGNBV!", "A"] {
            assert_eq!(
                TotpSecret::from_base32(text).unwrap_err(),
                SecretParseError::InvalidBase32,
                "{text:?}"
            );
        }
        assert_eq!(
            SecretParseError::InvalidBase32.to_string(),
            "not a valid base32 secret"
        );
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let secret = secret();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "TotpSecret(..)");
        assert!(!format!("{secret:#?}").contains("49"));
    }

    #[test]
    fn otpauth_uri_exact() {
        let uri = otpauth_uri("sparekey", "alice@example.com", &secret(), params()).unwrap();
        assert_eq!(
            *uri,
            "otpauth://totp/sparekey:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=sparekey"
        );
        let other = TotpParams {
            algorithm: Algorithm::Sha512,
            digits: 8,
            period: 60,
        };
        let uri = otpauth_uri("My Bank", "José", &secret(), other).unwrap();
        assert_eq!(
            *uri,
            "otpauth://totp/My%20Bank:Jos%C3%A9?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=My%20Bank&algorithm=SHA512&digits=8&period=60"
        );
        // Each parameter is left out on its own when it is the default.
        let only_period = TotpParams {
            period: 60,
            ..TotpParams::default()
        };
        let uri = otpauth_uri("sparekey", "bob", &secret(), only_period).unwrap();
        assert!(uri.ends_with("&issuer=sparekey&period=60"), "{}", *uri);
        let only_digits = TotpParams {
            digits: 8,
            ..TotpParams::default()
        };
        let uri = otpauth_uri("sparekey", "bob", &secret(), only_digits).unwrap();
        assert!(uri.ends_with("&issuer=sparekey&digits=8"), "{}", *uri);
        assert_eq!(percent_encode("a-._~Z9/?&=+%"), "a-._~Z9%2F%3F%26%3D%2B%25");
    }

    #[test]
    fn otpauth_uri_refuses_bad_labels() {
        let s = secret();
        let p = params();
        assert_eq!(
            otpauth_uri("spare:key", "alice", &s, p).unwrap_err(),
            LabelError::Colon(LabelPart::Issuer)
        );
        assert_eq!(
            otpauth_uri("sparekey", "alice:admin", &s, p).unwrap_err(),
            LabelError::Colon(LabelPart::Account)
        );
        assert_eq!(
            otpauth_uri("", "alice", &s, p).unwrap_err(),
            LabelError::Empty(LabelPart::Issuer)
        );
        assert_eq!(
            otpauth_uri("sparekey", " ", &s, p).unwrap_err(),
            LabelError::Empty(LabelPart::Account)
        );
        assert_eq!(
            otpauth_uri("sparekey", "alice\n", &s, p).unwrap_err(),
            LabelError::ControlCharacter(LabelPart::Account)
        );
        assert_eq!(
            LabelError::Colon(LabelPart::Issuer).to_string(),
            "the issuer must not contain ':' (it separates issuer and account in the otpauth URI)"
        );
        assert_eq!(
            LabelError::Empty(LabelPart::Account).to_string(),
            "the account must not be empty"
        );
    }

    #[test]
    fn verify_accepts_the_window() {
        let s = current_step();
        for step in [s - 1, s, s + 1] {
            assert_eq!(
                verify(&secret(), &code_for_step(step), NOW, params(), None),
                Ok(step)
            );
        }
        // Spaced like authenticators display it, with surrounding whitespace.
        let code = code_for_step(s);
        let spaced = format!(" {} {}\n", &code[..3], &code[3..]);
        assert_eq!(verify(&secret(), &spaced, NOW, params(), None), Ok(s));
    }

    #[test]
    fn verify_reports_drift_and_wrong() {
        let s = current_step();
        assert_eq!(
            verify(&secret(), &code_for_step(s + 2), NOW, params(), None),
            Err(TotpRejection::ClockDrift { steps: 2 })
        );
        assert_eq!(
            verify(&secret(), &code_for_step(s - 2), NOW, params(), None),
            Err(TotpRejection::ClockDrift { steps: -2 })
        );
        assert_eq!(
            verify(&secret(), &code_for_step(s + 10), NOW, params(), None),
            Err(TotpRejection::ClockDrift { steps: 10 })
        );
        assert_eq!(
            verify(&secret(), &code_for_step(s + 11), NOW, params(), None),
            Err(TotpRejection::Wrong)
        );
        assert_eq!(
            verify(&secret(), &code_for_step(s - 11), NOW, params(), None),
            Err(TotpRejection::Wrong)
        );
    }

    #[test]
    fn verify_refuses_replays() {
        let s = current_step();
        let same = verify(&secret(), &code_for_step(s), NOW, params(), Some(s));
        assert_eq!(same, Err(TotpRejection::Replay));
        let earlier = verify(&secret(), &code_for_step(s - 1), NOW, params(), Some(s));
        assert_eq!(earlier, Err(TotpRejection::Replay));
        let later = verify(&secret(), &code_for_step(s + 1), NOW, params(), Some(s));
        assert_eq!(later, Ok(s + 1));
        // An accepted code retyped minutes later is a replay, not a clock problem.
        let old = verify(&secret(), &code_for_step(s - 4), NOW, params(), Some(s - 4));
        assert_eq!(old, Err(TotpRejection::Replay));
    }

    #[test]
    fn verify_rejects_malformed_input_before_hmac() {
        for input in [
            "12345",
            "12345a",
            "",
            "   ",
            "１２３４５６",
            "1234567",
            "-12345",
            "12 34 5",
        ] {
            assert_eq!(
                verify(&secret(), input, NOW, params(), None),
                Err(TotpRejection::Malformed),
                "{input:?}"
            );
        }
        let eight = TotpParams {
            digits: 8,
            ..params()
        };
        assert_eq!(
            verify(&secret(), &code_for_step(current_step()), NOW, eight, None),
            Err(TotpRejection::Malformed)
        );
    }

    #[test]
    fn verify_edges_do_not_overflow() {
        // Step 0 is reachable from just before the epoch but nothing earlier exists.
        assert_eq!(
            verify(&secret(), &code_for_step(0), 0, params(), None),
            Ok(0)
        );
        assert_eq!(
            verify(&secret(), &code_for_step(0), -1, params(), None),
            Ok(0)
        );
        assert_eq!(
            verify(&secret(), &code_for_step(0), -31, params(), None),
            Err(TotpRejection::ClockDrift { steps: 2 })
        );
        assert_eq!(
            verify(&secret(), &code_for_step(0), 0, params(), Some(u64::MAX)),
            Err(TotpRejection::Replay)
        );
        let one_second = TotpParams {
            period: 1,
            ..params()
        };
        let top = u64::try_from(i64::MAX).unwrap();
        assert_eq!(
            verify(
                &secret(),
                &code_for_step(top + 1),
                i64::MAX,
                one_second,
                None
            ),
            Ok(top + 1)
        );
        for now in [i64::MIN, i64::MAX] {
            assert!(verify(&secret(), "000000", now, params(), Some(u64::MAX)).is_err());
        }
        let broken = TotpParams {
            period: 0,
            ..params()
        };
        assert_eq!(
            verify(&secret(), "000000", NOW, broken, None),
            Err(TotpRejection::Wrong)
        );
    }

    #[test]
    fn drift_wording() {
        assert_eq!(
            drift_description(2, 30),
            "the authenticator's clock is about 1 minute ahead"
        );
        assert_eq!(
            drift_description(-10, 30),
            "the authenticator's clock is about 5 minutes behind"
        );
        assert_eq!(
            drift_description(10, 30),
            "the authenticator's clock is about 5 minutes ahead"
        );
        // Rounds to nearest, but never down to zero.
        assert_eq!(
            drift_description(-1, 10),
            "the authenticator's clock is about 1 minute behind"
        );
        assert_eq!(
            drift_description(3, 30),
            "the authenticator's clock is about 2 minutes ahead"
        );
        assert!(drift_description(i64::MIN, u64::MAX).contains("behind"));
    }

    #[test]
    fn rejection_messages() {
        let p = params();
        assert_eq!(
            TotpRejection::Malformed.message(p),
            "enter the 6-digit code from your authenticator"
        );
        assert_eq!(TotpRejection::Wrong.message(p), "wrong code");
        assert_eq!(
            TotpRejection::Replay.message(p),
            "that code was already used: wait for the next one"
        );
        assert_eq!(
            TotpRejection::ClockDrift { steps: -10 }.message(p),
            "the authenticator's clock is about 5 minutes behind; correct its time and the code it \
             shows works at once"
        );
    }

    fn any_params() -> impl Strategy<Value = TotpParams> {
        (
            prop_oneof![
                Just(Algorithm::Sha1),
                Just(Algorithm::Sha256),
                Just(Algorithm::Sha512)
            ],
            6u32..=8,
            1u64..=120,
        )
            .prop_map(|(algorithm, digits, period)| TotpParams {
                algorithm,
                digits,
                period,
            })
    }

    proptest! {
        #[test]
        fn verify_never_panics(
            input in prop_oneof![any::<String>(), "[0-9 ]{0,10}"],
            now in any::<i64>(),
            last_step in any::<Option<u64>>(),
            params in any_params(),
        ) {
            let result = verify(&secret(), &input, now, params, last_step);
            let normalized: String = input.trim().chars().filter(|&c| c != ' ').collect();
            let well_formed = normalized.len() == params.digits as usize
                && normalized.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(result == Err(TotpRejection::Malformed), !well_formed);
            if let Ok(step) = result {
                prop_assert!(last_step.is_none_or(|last| step > last));
                prop_assert_eq!(hotp(RFC_SEED_SHA1, step, params.algorithm, params.digits), normalized);
            }
        }

        #[test]
        fn code_at_is_digits_and_verifies(
            seed in proptest::collection::vec(any::<u8>(), 1..64),
            now in 0i64..=i64::MAX,
            params in any_params(),
        ) {
            let code = code_at(&seed, now, params).unwrap();
            prop_assert_eq!(code.len(), params.digits as usize);
            prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
            let secret = TotpSecret::from_bytes(seed);
            let step = verify(&secret, &code, now, params, None);
            // The current step or, by a one-in-a-million collision, the next one.
            let current = step_at(now, params.period).unwrap();
            prop_assert!(matches!(step, Ok(s) if s == current || s == current + 1), "{step:?}");
        }
    }
}

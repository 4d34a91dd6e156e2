//! Argon2id hashing, shared by account passwords and backup codes. Owns the cost parameters,
//! the PHC string format of password hashes and what each verifier is bound to (Argon2's
//! associated data: the account name, and for backup codes the set id too), so a hash moved to
//! another account never verifies there, and the rules a new password must meet
//! ([`check_new_password`]). Must never log, store or return a plaintext.
//!
//! Hashes written before verifiers were bound (schema 1) carry no associated data; they are
//! still verified as they are, because the record MAC of schema 2 binds them to their account
//! (see `crate::store::records`), and a PHC string that names other associated data than the
//! account's never verifies.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::core::argon_memory::ArgonMemory;
use crate::core::entropy::Entropy;

/// Argon2id cost parameters, stored with every hash so a later release can raise them without
/// invalidating what is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl HashParams {
    /// OWASP's minimum recommendation for Argon2id (m=19 MiB, t=2, p=1).
    pub const OWASP: HashParams = HashParams {
        m_kib: 19_456,
        t: 2,
        p: 1,
    };
    /// Cheap parameters for in-process tests that are not about the parameters. Never for real
    /// data, and never reachable from the binary.
    #[cfg(any(test, feature = "test-support"))]
    pub const TEST_ONLY: HashParams = HashParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    fn argon2<'k>(
        &self,
        secret: &'k [u8],
        output_len: usize,
        bound_to: Option<&Binding>,
    ) -> Argon2<'k> {
        let mut builder = argon2::ParamsBuilder::new();
        builder
            .m_cost(self.m_kib)
            .t_cost(self.t)
            .p_cost(self.p)
            .output_len(output_len);
        if let Some(binding) = bound_to {
            builder
                .data(argon2::AssociatedData::new(&binding.0).expect("32 bytes fit Argon2's data"));
        }
        let params = builder
            .build()
            .expect("HashParams are validated when configured");
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params)
            .expect("the Argon2 secret is 32 bytes")
    }

    /// Valid for Argon2 and within bounds this machine can afford. Parameters read back from a
    /// store are checked against this before anything is allocated: a damaged record must be an
    /// error, not a 4 TiB allocation or an hour-long hash.
    pub fn is_valid(&self) -> bool {
        self.m_kib <= MAX_M_KIB
            && self.t <= MAX_T
            && self.p <= MAX_P
            && Params::new(self.m_kib, self.t, self.p, Some(32)).is_ok()
    }
}

/// What a verifier is bound to, as Argon2's associated data: a SHA-256 over a purpose label
/// and the account name (and set id), since Argon2 takes at most 32 bytes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding([u8; 32]);

impl Binding {
    fn over(kind: &str, parts: &[&[u8]]) -> Self {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        for part in std::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Self(hash.finalize().into())
    }

    /// An account's password hash.
    pub fn account(name: &str) -> Self {
        Self::over("sparekey password v1", &[name.as_bytes()])
    }

    /// The kiosk operator's password hash.
    pub fn operator() -> Self {
        Self::over("sparekey operator password v1", &[])
    }

    /// The codes of set `set_id` of account `name`.
    pub fn code_set(name: &str, set_id: u64) -> Self {
        Self::over(
            "sparekey code set v1",
            &[name.as_bytes(), &set_id.to_be_bytes()],
        )
    }
}

/// Upper bounds on stored Argon2id parameters: 1 GiB, 64 passes, 64 lanes.
const MAX_M_KIB: u32 = 1 << 20;
const MAX_T: u32 = 64;
const MAX_P: u32 = 64;

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Bytes of a backup-code digest. 128 bits: a code has 75 bits, so guessing codes stays far
/// cheaper than attacking the digest, and each stored slot is 16 bytes smaller than with
/// Argon2's default 32 (the store's size per account is a target).
pub const DIGEST_LEN: usize = 16;

/// A backup code's digest.
pub type Digest = [u8; DIGEST_LEN];

/// One raw Argon2id evaluation with an explicit salt: the digest stored for a backup code.
/// `bound_to` is `None` only for sets written before sets were bound (schema 1).
pub fn digest(
    params: HashParams,
    secret: &[u8],
    input: &[u8],
    salt: &[u8],
    bound_to: Option<&Binding>,
    memory: &mut ArgonMemory,
) -> Zeroizing<Digest> {
    let mut out = Zeroizing::new([0u8; DIGEST_LEN]);
    evaluate(
        &params.argon2(secret, DIGEST_LEN, bound_to),
        input,
        salt,
        out.as_mut(),
        memory,
    )
    .expect("salt and output lengths are fixed and valid");
    out
}

/// Bytes of a password hash in its PHC string (Argon2's default).
const PASSWORD_HASH_LEN: usize = 32;

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…,data=…$salt$hash`), bound
/// to `bound_to`.
pub fn hash_password(
    params: HashParams,
    secret: &[u8],
    password: &str,
    bound_to: &Binding,
    entropy: &mut dyn Entropy,
    memory: &mut ArgonMemory,
) -> String {
    hash_with(params, secret, password, Some(bound_to), entropy, memory)
}

/// A password hash as schema 1 wrote it, bound to no account: for benchmarks that clone one
/// hash onto many accounts, and for tests of schema-1 records.
#[cfg(any(test, feature = "test-support"))]
pub fn hash_password_unbound(
    params: HashParams,
    secret: &[u8],
    password: &str,
    entropy: &mut dyn Entropy,
    memory: &mut ArgonMemory,
) -> String {
    hash_with(params, secret, password, None, entropy, memory)
}

fn hash_with(
    params: HashParams,
    secret: &[u8],
    password: &str,
    bound_to: Option<&Binding>,
    entropy: &mut dyn Entropy,
    memory: &mut ArgonMemory,
) -> String {
    let mut salt = [0u8; 16];
    entropy.fill(&mut salt);
    let argon2 = params.argon2(secret, PASSWORD_HASH_LEN, bound_to);
    let mut out = Zeroizing::new([0u8; PASSWORD_HASH_LEN]);
    evaluate(&argon2, password.as_bytes(), &salt, out.as_mut(), memory)
        .expect("salt and output lengths are fixed and valid");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).expect("valid parameters print"),
        salt: Some(Salt::new(&salt).expect("16 bytes are a valid salt")),
        hash: Some(Output::new(out.as_ref()).expect("32 bytes are a valid output")),
    }
    .to_string()
}

/// Checks a password against its PHC string, with the parameters stored in the string. A
/// malformed stored hash, one of another algorithm, or one bound to anything but `bound_to`
/// never verifies; one bound to nothing (schema 1) is checked as it is.
pub fn verify_password(
    secret: &[u8],
    password: &str,
    phc: &str,
    bound_to: &Binding,
    memory: &mut ArgonMemory,
) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let argon2 = match (hash.algorithm.as_str(), Params::try_from(&hash)) {
        ("argon2id", Ok(params)) => {
            let bounded = HashParams {
                m_kib: params.m_cost(),
                t: params.t_cost(),
                p: params.p_cost(),
            };
            if !bounded.is_valid() {
                return false;
            }
            if !params.data().is_empty() && params.data() != bound_to.0 {
                return false;
            }
            match Argon2::new_with_secret(secret, Algorithm::Argon2id, version, params) {
                Ok(a) => a,
                Err(_) => return false,
            }
        }
        _ => return false,
    };
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let hashed = evaluate(&argon2, password.as_bytes(), salt, &mut out, memory).is_ok();
    hashed && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Every Argon2id evaluation goes through here, so that each works in `memory` and leaves it
/// wiped.
fn evaluate(
    argon2: &Argon2,
    input: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut ArgonMemory,
) -> argon2::Result<()> {
    memory.with_blocks(argon2.params().block_count(), |blocks| {
        argon2.hash_password_into_with_memory(input, salt, out, blocks)
    })
}

/// The cost parameters of a stored PHC string, if it is a readable Argon2id hash.
pub fn phc_params(phc: &str) -> Option<HashParams> {
    let hash = PasswordHash::new(phc).ok()?;
    let params = Params::try_from(&hash).ok()?;
    (hash.algorithm.as_str() == "argon2id").then(|| HashParams {
        m_kib: params.m_cost(),
        t: params.t_cost(),
        p: params.p_cost(),
    })
}

impl HashParams {
    /// Cheaper than the OWASP minimum in memory or passes: no release writes such a hash.
    pub fn below_owasp(&self) -> bool {
        self.m_kib < Self::OWASP.m_kib || self.t < Self::OWASP.t
    }
}

/// Shortest password accepted (NIST SP 800-63B section 5.1.1.1: at least 8 characters).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Longest password accepted, in bytes: enough for any passphrase, bounded so a hash input
/// cannot be made huge.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The rules for a new password (an account's or the kiosk operator's), per NIST SP 800-63B
/// section 5.1.1.2: a length bound, and no password that is commonly used, known from breaches,
/// a dictionary word, repetitive or sequential, or made of `context` (the account name, the
/// service's name). The blocklist is zxcvbn's (its frequency lists of breached passwords, words
/// and names, with keyboard patterns, sequences, dates and l33t variants); a password it expects
/// to fall within a million guesses is refused. No composition rules (section 5.1.1.2 says
/// not to). `Err` is the one line to show.
pub fn check_new_password(password: &str, context: &[&str]) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if estimate.score() >= zxcvbn::Score::Two {
        return Ok(());
    }
    let why = estimate
        .feedback()
        .and_then(|f| f.warning())
        .map(|w| w.to_string())
        .unwrap_or_else(|| "it is built from common words, names or patterns".into());
    Err(format!(
        "this password is common or found in breaches and would be guessed quickly ({}): \
         choose a longer one, such as a few unrelated words",
        why.trim_end_matches('.')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    use crate::core::entropy::SeededEntropy;

    const B: Binding = Binding([9; 32]);

    #[test]
    fn password_round_trip_and_secret_binding() {
        let mut e = SeededEntropy::new(3);
        let phc = hash_password(
            HashParams::TEST_ONLY,
            &[7; 32],
            "correct horse",
            &B,
            &mut e,
            &mut ArgonMemory::new(),
        );
        assert!(
            phc.starts_with("$argon2id$v=19$m=64,t=1,p=1,data="),
            "{phc}"
        );
        assert!(!phc.contains("correct horse"));
        assert!(verify_password(
            &[7; 32],
            "correct horse",
            &phc,
            &B,
            &mut ArgonMemory::new()
        ));
        assert!(!verify_password(
            &[7; 32],
            "correct horsf",
            &phc,
            &B,
            &mut ArgonMemory::new()
        ));
        // The same hash under another key file's secret must not verify: that is the pepper.
        assert!(!verify_password(
            &[8; 32],
            "correct horse",
            &phc,
            &B,
            &mut ArgonMemory::new()
        ));
        assert!(!verify_password(
            &[7; 32],
            "correct horse",
            "not a phc string",
            &B,
            &mut ArgonMemory::new()
        ));
    }

    #[test]
    fn stored_parameters_are_honoured_on_verify() {
        let mut e = SeededEntropy::new(4);
        let params = HashParams {
            m_kib: 128,
            t: 2,
            p: 1,
        };
        let phc = hash_password(params, &[1; 32], "pw", &B, &mut e, &mut ArgonMemory::new());
        assert!(phc.contains("m=128,t=2,p=1"));
        assert!(verify_password(
            &[1; 32],
            "pw",
            &phc,
            &B,
            &mut ArgonMemory::new()
        ));
    }

    /// Reused memory gives the answers of fresh memory, and of argon2's own allocation:
    /// after an evaluation of the same size, and after one of another size (a hash with older
    /// parameters).
    #[test]
    fn reused_memory_changes_no_result() {
        let params = HashParams {
            m_kib: 256,
            t: 1,
            p: 1,
        };
        let secret = [3; 32];
        let own = params.argon2(&secret, PASSWORD_HASH_LEN, Some(&B));
        let mut memory = ArgonMemory::new();
        let phc = hash_password(
            params,
            &secret,
            "pw",
            &B,
            &mut SeededEntropy::new(5),
            &mut memory,
        );
        let mut salt = [0u8; 16];
        SeededEntropy::new(5).fill(&mut salt);
        let expected = own.hash_password_with_salt(b"pw", &salt).unwrap();
        assert_eq!(phc, expected.to_string());
        let again = hash_password(
            params,
            &secret,
            "pw",
            &B,
            &mut SeededEntropy::new(5),
            &mut memory,
        );
        assert_eq!(again, phc);
        let older = hash_password(
            HashParams::TEST_ONLY,
            &secret,
            "pw",
            &B,
            &mut SeededEntropy::new(6),
            &mut memory,
        );
        assert!(verify_password(&secret, "pw", &phc, &B, &mut memory));
        assert!(!verify_password(&secret, "pv", &phc, &B, &mut memory));
        assert!(verify_password(&secret, "pw", &older, &B, &mut memory));

        let mut fresh = [0u8; DIGEST_LEN];
        params
            .argon2(&secret, DIGEST_LEN, None)
            .hash_password_into(b"code", &[4; 16], &mut fresh)
            .unwrap();
        let fresh_memory = digest(
            params,
            &secret,
            b"code",
            &[4; 16],
            None,
            &mut ArgonMemory::new(),
        );
        assert_eq!(*fresh_memory, fresh);
        for _ in 0..2 {
            assert_eq!(
                *digest(params, &secret, b"code", &[4; 16], None, &mut memory),
                fresh
            );
        }
    }

    #[test]
    fn digest_depends_on_every_input() {
        let p = HashParams::TEST_ONLY;
        let base = digest(
            p,
            &[1; 32],
            b"code",
            b"saltsaltsaltsalt",
            None,
            &mut ArgonMemory::new(),
        );
        assert_eq!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"code",
                b"saltsaltsaltsalt",
                None,
                &mut ArgonMemory::new()
            )
        );
        assert_ne!(
            *base,
            *digest(
                p,
                &[2; 32],
                b"code",
                b"saltsaltsaltsalt",
                None,
                &mut ArgonMemory::new()
            )
        );
        assert_ne!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"codf",
                b"saltsaltsaltsalt",
                None,
                &mut ArgonMemory::new()
            )
        );
        assert_ne!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"code",
                b"saltsaltsaltsalu",
                None,
                &mut ArgonMemory::new()
            )
        );
        assert!(HashParams::OWASP.is_valid());
        assert!(
            !HashParams {
                m_kib: u32::MAX,
                t: 2,
                p: 1
            }
            .is_valid()
        );
        assert!(
            !HashParams {
                m_kib: 19_456,
                t: 1_000,
                p: 1
            }
            .is_valid()
        );
        // A stored hash with absurd parameters is refused before anything is allocated.
        let huge =
            "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAA";
        assert!(!verify_password(
            &[1; 32],
            "pw",
            huge,
            &B,
            &mut ArgonMemory::new()
        ));
        let bound = Some(&B);
        assert_ne!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"code",
                b"saltsaltsaltsalt",
                bound,
                &mut ArgonMemory::new()
            )
        );
        assert!(
            !HashParams {
                m_kib: 1,
                t: 1,
                p: 1
            }
            .is_valid()
        );
    }

    #[test]
    fn a_password_hash_verifies_only_for_the_account_it_was_made_for() {
        let mut memory = ArgonMemory::new();
        let (alice, mallory) = (Binding::account("alice"), Binding::account("mallory"));
        let p = HashParams::TEST_ONLY;
        let phc = hash_password(
            p,
            &[1; 32],
            "pw",
            &mallory,
            &mut SeededEntropy::new(1),
            &mut memory,
        );
        assert!(phc.contains(",data="), "{phc}");
        assert!(verify_password(&[1; 32], "pw", &phc, &mallory, &mut memory));
        assert!(!verify_password(&[1; 32], "pw", &phc, &alice, &mut memory));
        // Stripping the data parameter does not help: the hash was computed with it.
        let stripped = regex_free_strip_data(&phc);
        assert!(!stripped.contains("data="));
        assert!(!verify_password(
            &[1; 32],
            "pw",
            &stripped,
            &alice,
            &mut memory
        ));
        // A schema-1 hash (no associated data) still verifies: its record MAC binds it.
        let legacy = p.argon2(&[1; 32], PASSWORD_HASH_LEN, None);
        let legacy = legacy
            .hash_password_with_salt(b"pw", &[3; 16])
            .unwrap()
            .to_string();
        assert!(verify_password(
            &[1; 32],
            "pw",
            &legacy,
            &alice,
            &mut memory
        ));
        assert_ne!(Binding::code_set("alice", 1), Binding::code_set("alice", 2));
        assert_ne!(Binding::code_set("alice", 1), Binding::code_set("bob", 1));
        assert_ne!(Binding::operator(), Binding::account(""));
    }

    fn regex_free_strip_data(phc: &str) -> String {
        let start = phc.find(",data=").unwrap();
        let end = start + phc[start..].find('$').unwrap();
        format!("{}{}", &phc[..start], &phc[end..])
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn common_breached_and_contextual_passwords_are_refused_with_a_reason() {
        for common in [
            "password",
            "password1",
            "12345678",
            "qwertyuiop",
            "iloveyou1",
        ] {
            let err = check_new_password(common, &[]).unwrap_err();
            assert!(
                err.contains("common or found in breaches"),
                "{common}: {err}"
            );
        }
        let top = check_new_password("password", &[]).unwrap_err();
        assert!(top.to_lowercase().contains("common password"), "{top}");
        // The account's own name is no password, however long.
        assert!(check_new_password("mallory-the-admin", &[]).is_ok());
        assert!(check_new_password("malloryadmin", &["malloryadmin"]).is_err());
    }

    #[test]
    fn passphrases_pass_and_length_is_bounded() {
        for good in ["correct horse battery", "operator-pass", "fixture password"] {
            assert_eq!(check_new_password(good, &[]), Ok(()), "{good}");
        }
        assert!(
            check_new_password("Tr0ub4!", &[])
                .unwrap_err()
                .contains("at least 8")
        );
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(
            check_new_password(&long, &[])
                .unwrap_err()
                .contains("longer than")
        );
    }
}

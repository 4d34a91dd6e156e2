//! Argon2id hashing, shared by account passwords and backup codes. Owns the cost parameters and
//! the PHC string format of password hashes. Must never log, store or return a plaintext.

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::core::argon_memory::HashMemory;
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

    fn argon2<'k>(&self, secret: &'k [u8], output_len: usize) -> Argon2<'k> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(output_len))
            .expect("HashParams are validated when configured");
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params)
            .expect("the Argon2 secret is 32 bytes")
    }

    /// Argon2 blocks (1 KiB each) one evaluation works in: the size of its [`HashMemory`].
    pub fn block_count(&self) -> usize {
        self.argon2(&[], PASSWORD_HASH_LEN).params().block_count()
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
pub fn digest(
    params: HashParams,
    secret: &[u8],
    input: &[u8],
    salt: &[u8],
    memory: &HashMemory,
) -> Zeroizing<Digest> {
    let mut out = Zeroizing::new([0u8; DIGEST_LEN]);
    let argon2 = params.argon2(secret, DIGEST_LEN);
    let mut blocks = memory.take(argon2.params().block_count());
    argon2
        .hash_password_into_with_memory(input, salt, out.as_mut(), &mut blocks)
        .expect("salt and output lengths are fixed and valid");
    memory.give_back(blocks);
    out
}

/// Bytes of a password hash in its PHC string (Argon2's default).
const PASSWORD_HASH_LEN: usize = 32;

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn hash_password(
    params: HashParams,
    secret: &[u8],
    password: &str,
    entropy: &mut dyn Entropy,
) -> String {
    let mut salt = [0u8; 16];
    entropy.fill(&mut salt);
    // argon2's own allocation is fine here: a password is hashed once per account, not on the
    // attempt path.
    params
        .argon2(secret, PASSWORD_HASH_LEN)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("salt and parameters are valid")
        .to_string()
}

/// Checks a password against its PHC string, with the parameters stored in the string. A
/// malformed stored hash, or one of another algorithm, never verifies.
pub fn verify_password(secret: &[u8], password: &str, phc: &str, memory: &HashMemory) -> bool {
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
            match Argon2::new_with_secret(secret, Algorithm::Argon2id, version, params) {
                Ok(a) => a,
                Err(_) => return false,
            }
        }
        _ => return false,
    };
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let mut blocks = memory.take(argon2.params().block_count());
    let hashed = argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks)
        .is_ok();
    memory.give_back(blocks);
    hashed && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entropy::SeededEntropy;

    #[test]
    fn password_round_trip_and_secret_binding() {
        let mut e = SeededEntropy::new(3);
        let phc = hash_password(HashParams::TEST_ONLY, &[7; 32], "correct horse", &mut e);
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify_password(
            &[7; 32],
            "correct horse",
            &phc,
            &HashMemory::ON_DEMAND
        ));
        assert!(!verify_password(
            &[7; 32],
            "correct horsf",
            &phc,
            &HashMemory::ON_DEMAND
        ));
        // The same hash under another key file's secret must not verify: that is the pepper.
        assert!(!verify_password(
            &[8; 32],
            "correct horse",
            &phc,
            &HashMemory::ON_DEMAND
        ));
        assert!(!verify_password(
            &[7; 32],
            "correct horse",
            "not a phc string",
            &HashMemory::ON_DEMAND
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
        let phc = hash_password(params, &[1; 32], "pw", &mut e);
        assert!(phc.contains("m=128,t=2,p=1"));
        assert!(verify_password(
            &[1; 32],
            "pw",
            &phc,
            &HashMemory::ON_DEMAND
        ));
    }

    /// Memory set up ahead gives the same answers as fresh memory: for the evaluations it was
    /// set up for, one beyond them, and one of another size (a hash with older parameters).
    #[test]
    fn memory_set_up_ahead_changes_no_result() {
        let params = HashParams {
            m_kib: 256,
            t: 1,
            p: 1,
        };
        let mut e = SeededEntropy::new(5);
        let phc = hash_password(params, &[3; 32], "pw", &mut e);
        let older = hash_password(HashParams::TEST_ONLY, &[3; 32], "pw", &mut e);
        let fresh = digest(params, &[3; 32], b"code", &[4; 16], &HashMemory::ON_DEMAND);
        let ahead = HashMemory::ahead(params.block_count(), 2);
        assert!(verify_password(&[3; 32], "pw", &phc, &ahead));
        assert!(!verify_password(&[3; 32], "pv", &phc, &ahead));
        assert!(verify_password(&[3; 32], "pw", &older, &ahead));
        assert_eq!(*digest(params, &[3; 32], b"code", &[4; 16], &ahead), *fresh);
        assert_eq!(*digest(params, &[3; 32], b"code", &[4; 16], &ahead), *fresh);
    }

    #[test]
    fn digest_depends_on_every_input() {
        let p = HashParams::TEST_ONLY;
        let base = digest(
            p,
            &[1; 32],
            b"code",
            b"saltsaltsaltsalt",
            &HashMemory::ON_DEMAND,
        );
        assert_eq!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"code",
                b"saltsaltsaltsalt",
                &HashMemory::ON_DEMAND
            )
        );
        assert_ne!(
            *base,
            *digest(
                p,
                &[2; 32],
                b"code",
                b"saltsaltsaltsalt",
                &HashMemory::ON_DEMAND
            )
        );
        assert_ne!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"codf",
                b"saltsaltsaltsalt",
                &HashMemory::ON_DEMAND
            )
        );
        assert_ne!(
            *base,
            *digest(
                p,
                &[1; 32],
                b"code",
                b"saltsaltsaltsalu",
                &HashMemory::ON_DEMAND
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
            &HashMemory::ON_DEMAND
        ));
        assert!(
            !HashParams {
                m_kib: 1,
                t: 1,
                p: 1
            }
            .is_valid()
        );
    }
}

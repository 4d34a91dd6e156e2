//! A stored set of backup codes and the check of one attempt against it.
//!
//! # One Argon2id evaluation per attempt
//! Every code of a set is hashed with the **same random per-set salt** (and the key file's
//! secret). An attempt therefore costs exactly one Argon2id evaluation, whatever the number of
//! unused codes, and its 128-bit digest is compared in constant time against *every* slot, used or not,
//! so codes work in any order and timing reveals neither which slot matched nor how many are used.
//!
//! Trade-off: with a shared salt, someone holding both the store and the key file can test one
//! guess against all codes of a set at once, gaining a factor of at most 20 (4.3 bits) over
//! per-code salts. Codes carry 75 random bits, so that leaves over 2^70 Argon2id evaluations per
//! expected hit; peers that salt per code instead pay n hashes on *every* login (devise-two-factor,
//! GitLab, Nextcloud) or force codes to be used in order (Keycloak). A slot marker inside the code
//! would also give one hash per attempt, but makes codes longer and leaks which slot is which.
//!
//! Must never keep or return a code in clear: only digests are stored.

use serde::{Deserialize, Serialize};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::core::argon_memory::ArgonMemory;
use crate::core::backup_code::BackupCode;
use crate::core::clock::UnixTime;
use crate::core::entropy::Entropy;
use crate::core::password::{self, Digest, HashParams};

/// Allowed number of codes per set.
pub const MIN_CODES: usize = 5;
pub const MAX_CODES: usize = 20;
pub const DEFAULT_CODES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSlot {
    pub digest: Digest,
    pub used_at: Option<UnixTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSet {
    /// Random identifier: a consumption names the set it matched, so a code checked against a
    /// set that was regenerated meanwhile is never consumed from the new one.
    pub id: u64,
    pub salt: [u8; 16],
    pub params: HashParams,
    pub created_at: UnixTime,
    pub slots: Vec<CodeSlot>,
    /// The digests are bound to the account name and this set's id (Argon2's associated data,
    /// see [`password::Binding::code_set`]). `false` only for sets written by schema 1, which
    /// the record MAC binds instead.
    pub bound: bool,
}

/// What every digest of a new set is computed with.
struct Context<'a> {
    params: HashParams,
    secret: &'a [u8],
    now: UnixTime,
}

/// Where an attempt's digest landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMatch {
    Unused(usize),
    AlreadyUsed(usize),
    NoMatch,
}

impl CodeSet {
    /// Hashes a freshly generated set for account `account` (one Argon2id evaluation per code,
    /// paid once).
    pub fn create(
        account: &str,
        codes: &[BackupCode],
        params: HashParams,
        secret: &[u8],
        entropy: &mut dyn Entropy,
        now: UnixTime,
        memory: &mut ArgonMemory,
    ) -> Self {
        let context = Context {
            params,
            secret,
            now,
        };
        Self::build(Some(account), codes, context, entropy, memory)
    }

    /// A set as schema 1 wrote it, bound to no account: for tests and benchmarks that clone one
    /// set onto many accounts, and for tests of schema-1 records.
    #[cfg(any(test, feature = "test-support"))]
    pub fn create_unbound(
        codes: &[BackupCode],
        params: HashParams,
        secret: &[u8],
        entropy: &mut dyn Entropy,
        now: UnixTime,
        memory: &mut ArgonMemory,
    ) -> Self {
        let context = Context {
            params,
            secret,
            now,
        };
        Self::build(None, codes, context, entropy, memory)
    }

    fn build(
        account: Option<&str>,
        codes: &[BackupCode],
        context: Context<'_>,
        entropy: &mut dyn Entropy,
        memory: &mut ArgonMemory,
    ) -> Self {
        let mut salt = [0u8; 16];
        entropy.fill(&mut salt);
        let mut id = [0u8; 8];
        entropy.fill(&mut id);
        let id = u64::from_le_bytes(id);
        let binding = account.map(|name| password::Binding::code_set(name, id));
        let slots = codes
            .iter()
            .map(|code| CodeSlot {
                digest: *password::digest(
                    context.params,
                    context.secret,
                    code.canonical().as_bytes(),
                    &salt,
                    binding.as_ref(),
                    memory,
                ),
                used_at: None,
            })
            .collect();
        Self {
            id,
            salt,
            params: context.params,
            created_at: context.now,
            slots,
            bound: binding.is_some(),
        }
    }

    /// The one Argon2id evaluation of an attempt on account `account`'s set.
    /// `None` when the set's stored parameters are not sane (a damaged record).
    pub fn digest_of(
        &self,
        account: &str,
        code: &BackupCode,
        secret: &[u8],
        memory: &mut ArgonMemory,
    ) -> Option<Digest> {
        let binding = password::Binding::code_set(account, self.id);
        self.params.is_valid().then(|| {
            *password::digest(
                self.params,
                secret,
                code.canonical().as_bytes(),
                &self.salt,
                self.bound.then_some(&binding),
                memory,
            )
        })
    }

    /// Compares a digest with every slot in constant time (no early exit, no branch on a
    /// secret-dependent value until the single result is known).
    pub fn find(&self, digest: &Digest) -> SlotMatch {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        let mut used = subtle::Choice::from(0);
        for (i, slot) in self.slots.iter().enumerate() {
            let hit = slot.digest.ct_eq(digest);
            found |= hit;
            index.conditional_assign(&(i as u32), hit);
            let is_used = subtle::Choice::from(u8::from(slot.used_at.is_some()));
            used.conditional_assign(&is_used, hit);
        }
        match (bool::from(found), bool::from(used)) {
            (false, _) => SlotMatch::NoMatch,
            (true, false) => SlotMatch::Unused(index as usize),
            (true, true) => SlotMatch::AlreadyUsed(index as usize),
        }
    }

    pub fn total(&self) -> usize {
        self.slots.len()
    }

    pub fn remaining(&self) -> usize {
        self.slots.iter().filter(|s| s.used_at.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backup_code::generate_set;
    use crate::core::entropy::SeededEntropy;

    fn set_of(n: usize) -> (Vec<BackupCode>, CodeSet) {
        let mut e = SeededEntropy::new(9);
        let codes = generate_set(&mut e, n);
        let set = CodeSet::create(
            "alice",
            &codes,
            HashParams::TEST_ONLY,
            &[5; 32],
            &mut e,
            1_000,
            &mut ArgonMemory::new(),
        );
        (codes, set)
    }

    #[test]
    fn every_code_matches_its_own_slot_in_any_order() {
        let (codes, set) = set_of(10);
        assert_eq!(set.total(), 10);
        assert_eq!(set.remaining(), 10);
        for (i, code) in codes.iter().enumerate().rev() {
            assert_eq!(
                set.find(
                    &set.digest_of("alice", code, &[5; 32], &mut ArgonMemory::new())
                        .unwrap()
                ),
                SlotMatch::Unused(i)
            );
        }
    }

    #[test]
    fn used_slots_and_strangers_are_told_apart() {
        let (codes, mut set) = set_of(5);
        set.slots[3].used_at = Some(2_000);
        assert_eq!(set.remaining(), 4);
        assert_eq!(
            set.find(
                &set.digest_of("alice", &codes[3], &[5; 32], &mut ArgonMemory::new())
                    .unwrap()
            ),
            SlotMatch::AlreadyUsed(3)
        );
        let mut e = SeededEntropy::new(99);
        let stranger = BackupCode::generate(&mut e);
        assert_eq!(
            set.find(
                &set.digest_of("alice", &stranger, &[5; 32], &mut ArgonMemory::new())
                    .unwrap()
            ),
            SlotMatch::NoMatch
        );
        // A different key file secret gives different digests: the store alone is not enough.
        assert_eq!(
            set.find(
                &set.digest_of("alice", &codes[0], &[6; 32], &mut ArgonMemory::new())
                    .unwrap()
            ),
            SlotMatch::NoMatch
        );
    }

    #[test]
    fn a_set_matches_only_on_its_own_account() {
        let (codes, set) = set_of(5);
        let digest = |account: &str, set: &CodeSet| {
            set.digest_of(account, &codes[0], &[5; 32], &mut ArgonMemory::new())
                .unwrap()
        };
        assert_eq!(set.find(&digest("alice", &set)), SlotMatch::Unused(0));
        assert_eq!(set.find(&digest("mallory", &set)), SlotMatch::NoMatch);
        // Nor under another set id: a set's digests cannot be relabelled as another set.
        let mut relabelled = set.clone();
        relabelled.id ^= 1;
        assert_eq!(
            relabelled.find(&digest("alice", &relabelled)),
            SlotMatch::NoMatch
        );
    }

    #[test]
    fn digests_do_not_contain_the_codes() {
        let (codes, set) = set_of(5);
        let encoded = postcard::to_allocvec(&set).unwrap();
        for code in &codes {
            let needle = code.canonical().as_bytes();
            assert!(!encoded.windows(needle.len()).any(|w| w == needle));
        }
    }
}

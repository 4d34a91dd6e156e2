//! Key material: the one master key that makes a stolen store useless on its own. Owns the
//! derivation of sub-keys (one for sealing TOTP secrets with XChaCha20-Poly1305, one used as
//! Argon2's secret input for password and backup-code hashes, one authenticating store records
//! and one authenticating backup files, both with HMAC-SHA256) and sealing/opening of secrets.
//! Must never write the key anywhere (the key file lives outside the core) or print it, and
//! never copy it: the master key and its sub-keys are derived once, in place, in heap
//! allocations wiped on drop (the master key, the hash secret, the seal key and the backup
//! MAC key in one; the record MAC key in the [`StoreKey`] that every store shares); the
//! handles move as pointers, and none of them is `Clone`: [`MasterKey::store_key`] hands out
//! another pointer to the same record key, never a copy of its bytes.
//! (The process keeps them out of core dumps too: see `cli::disable_core_dumps`.)

use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::core::entropy::Entropy;

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// The master key and the sub-keys derived from it once, where they stay until wiped.
#[derive(Zeroize, ZeroizeOnDrop)]
struct Material {
    master: [u8; MASTER_KEY_LEN],
    hash_secret: [u8; 32],
    seal: [u8; 32],
    backup: MacKey,
}

/// The master key. Debug never prints it; not `Clone` (see the module doc).
pub struct MasterKey {
    material: Box<Material>,
    /// Derived with the rest, once; shared with every store bound to this key.
    store: StoreKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// A TOTP secret sealed with the master key, bound to its account name (the AEAD's associated
/// data), so a record copied onto another account fails to open rather than granting a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

/// Opening a sealed secret failed: the key is wrong or the record was altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealBroken;

impl std::fmt::Display for SealBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a stored TOTP secret does not open with this key: wrong key file or altered store",
        )
    }
}
impl std::error::Error for SealBroken {}

/// Writes HMAC-SHA256(`key`, `label`) into `out`, wiping the intermediate tag.
fn derive_into(key: &[u8], label: &str, out: &mut [u8; 32]) {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    mac.update(label.as_bytes());
    let mut tag = mac.finalize().into_bytes();
    out.copy_from_slice(&tag);
    tag.as_mut_slice().zeroize();
}

const HASH_SECRET_LABEL: &str = "sparekey argon2 secret v1";
const SEAL_LABEL: &str = "sparekey totp seal v1";
const RECORD_MAC_LABEL: &str = "sparekey record mac v1";
const BACKUP_MAC_LABEL: &str = "sparekey backup mac v1";
const FINGERPRINT_LABEL: &str = "sparekey key fingerprint v1";

/// The public identifier of `master` (see [`MasterKey::fingerprint`]).
fn fingerprint_of(master: &[u8; MASTER_KEY_LEN]) -> String {
    let mut id = Zeroizing::new([0u8; 32]);
    derive_into(master, FINGERPRINT_LABEL, &mut id);
    data_encoding::HEXLOWER.encode(&id[..8])
}

impl MasterKey {
    /// Fills the one allocation with `fill`'s master key, then derives the sub-keys beside it.
    fn build(fill: impl FnOnce(&mut [u8; MASTER_KEY_LEN])) -> Self {
        let mut material = Box::new(Material {
            master: [0; MASTER_KEY_LEN],
            hash_secret: [0; 32],
            seal: [0; 32],
            backup: MacKey(Zeroizing::new([0; 32])),
        });
        fill(&mut material.master);
        let m = &mut *material;
        derive_into(&m.master, HASH_SECRET_LABEL, &mut m.hash_secret);
        derive_into(&m.master, SEAL_LABEL, &mut m.seal);
        derive_into(&m.master, BACKUP_MAC_LABEL, &mut m.backup.0);
        let store = StoreKey::derive(&m.master);
        Self { material, store }
    }

    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        Self::build(|master| entropy.fill(master))
    }

    /// The key from its bytes; `bytes` is wiped, so the only copy left is the key's own.
    pub fn from_bytes(mut bytes: [u8; MASTER_KEY_LEN]) -> Self {
        let key = Self::build(|master| master.copy_from_slice(&bytes));
        bytes.zeroize();
        key
    }

    /// The key from a slice of exactly [`MASTER_KEY_LEN`] bytes, copied straight into place.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == MASTER_KEY_LEN).then(|| Self::build(|m| m.copy_from_slice(bytes)))
    }

    pub fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.material.master
    }

    #[cfg(test)]
    fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        derive_into(&self.material.master, label, &mut out);
        out
    }

    /// A public, non-reversible identifier of this key, stored beside the data so a wrong key
    /// file is reported as such instead of as "every secret is corrupt".
    pub fn fingerprint(&self) -> String {
        self.store.fingerprint().to_string()
    }

    /// The secret input to every Argon2id evaluation (a "pepper"): without the key file, hashes
    /// in a stolen store cannot be attacked offline.
    pub fn hash_secret(&self) -> &[u8; 32] {
        &self.material.hash_secret
    }

    /// What a store needs of the key: its fingerprint and the key that authenticates records.
    /// Another handle to the one record key derived with this key (its bytes are not copied).
    pub fn store_key(&self) -> StoreKey {
        self.store.share()
    }

    /// The key that authenticates backup files (its own label: a record's tag is never a valid
    /// backup tag, nor the other way round).
    pub fn backup_key(&self) -> &MacKey {
        &self.material.backup
    }

    pub fn seal(
        &self,
        entropy: &mut dyn Entropy,
        plaintext: &[u8],
        bound_to: &str,
    ) -> SealedSecret {
        let cipher = <XChaCha20Poly1305 as KeyInit>::new_from_slice(&self.material.seal)
            .expect("the sub-key is 32 bytes");
        let mut nonce = [0u8; 24];
        entropy.fill(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: bound_to.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a short secret cannot fail");
        SealedSecret { nonce, ciphertext }
    }

    pub fn open(
        &self,
        sealed: &SealedSecret,
        bound_to: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SealBroken> {
        let cipher = <XChaCha20Poly1305 as KeyInit>::new_from_slice(&self.material.seal)
            .expect("the sub-key is 32 bytes");
        cipher
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealBroken)
    }
}

/// An HMAC-SHA256 key derived from the master key for one purpose. Debug never prints it; not
/// `Clone`, and made only here, in place in the allocation that keeps it.
#[derive(Zeroize)]
pub struct MacKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// Bytes of a tag made by [`MacKey::tag`].
pub const TAG_LEN: usize = 32;

impl MacKey {
    fn mac(&self, kind: &str, subject: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes keys of any length");
        // Length-prefixed, so no (kind, subject, body) can be re-split into another.
        for part in [kind.as_bytes(), subject.as_bytes(), body] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The tag of `body`, a value of kind `kind` bound to `subject` (an account name, or empty).
    pub fn tag(&self, kind: &str, subject: &str, body: &[u8]) -> [u8; TAG_LEN] {
        self.mac(kind, subject, body).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `body` as kind `kind` bound to `subject` (constant time).
    pub fn verify(&self, kind: &str, subject: &str, body: &[u8], tag: &[u8]) -> bool {
        self.mac(kind, subject, body).verify_slice(tag).is_ok()
    }

    /// A tag over a body fed in pieces, for a file written or read as a stream whose length is
    /// not known up front. The kind and subject are length-prefixed as in [`MacKey::tag`]; the
    /// body is not (its framing must delimit it), so a kind used here must never be used with
    /// [`MacKey::tag`].
    pub fn stream(&self, kind: &str, subject: &str) -> MacStream {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes keys of any length");
        for part in [kind.as_bytes(), subject.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        MacStream(mac)
    }
}

/// An HMAC-SHA256 computed incrementally (see [`MacKey::stream`]).
pub struct MacStream(Hmac<Sha256>);

impl MacStream {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; TAG_LEN] {
        self.0.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of everything fed (constant time).
    pub fn verify(self, tag: &[u8]) -> bool {
        self.0.verify_slice(tag).is_ok()
    }
}

/// What a store needs of the master key: the fingerprint it is bound to and the key that
/// authenticates its records. Never the master key itself. A handle to one shared allocation:
/// the service's master key, a sled store and a reopening store each hold one, and the record
/// key's bytes exist once, wiped when the last handle goes. Not `Clone`:
/// [`StoreKey::share`] says what it does.
#[derive(Debug)]
pub struct StoreKey(Arc<StoreKeyInner>);

#[derive(Debug)]
struct StoreKeyInner {
    fingerprint: String,
    records: MacKey,
}

impl StoreKey {
    /// Derives the record key of `master` in place, in its own allocation.
    fn derive(master: &[u8; MASTER_KEY_LEN]) -> Self {
        let mut inner = Arc::new(StoreKeyInner {
            fingerprint: fingerprint_of(master),
            records: MacKey(Zeroizing::new([0; 32])),
        });
        let fresh = Arc::get_mut(&mut inner).expect("a new Arc has no other owner");
        derive_into(master, RECORD_MAC_LABEL, &mut fresh.records.0);
        Self(inner)
    }

    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    pub fn records(&self) -> &MacKey {
        &self.0.records
    }

    /// Another handle to the same key: a pointer, the key's bytes are not copied.
    pub(crate) fn share(&self) -> Self {
        Self(Arc::clone(&self.0))
    }

    /// Whether `other` is a handle to this same allocation (for tests that the key is never
    /// copied).
    pub fn is_shared_with(&self, other: &StoreKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entropy::SeededEntropy;

    #[test]
    fn sealed_secret_opens_only_with_same_key_and_account() {
        let mut e = SeededEntropy::new(1);
        let key = MasterKey::generate(&mut e);
        let other = MasterKey::generate(&mut e);
        let sealed = key.seal(&mut e, b"secret bytes", "alice");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open(&sealed, "alice").unwrap().as_slice(),
            b"secret bytes"
        );
        assert_eq!(key.open(&sealed, "bob"), Err(SealBroken));
        assert_eq!(other.open(&sealed, "alice"), Err(SealBroken));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(key.open(&tampered, "alice"), Err(SealBroken));
    }

    #[test]
    fn derived_material_differs_per_key_and_purpose() {
        let mut e = SeededEntropy::new(2);
        let a = MasterKey::generate(&mut e);
        let b = MasterKey::generate(&mut e);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.fingerprint());
        // The same bytes make the same key, whichever way they come in.
        let same = MasterKey::from_slice(a.as_bytes()).unwrap();
        assert_eq!(same.fingerprint(), a.fingerprint());
        assert_eq!(same.hash_secret(), a.hash_secret());
        assert_eq!(
            MasterKey::from_bytes(*a.as_bytes()).fingerprint(),
            a.fingerprint()
        );
        assert!(MasterKey::from_slice(&[1; 31]).is_none());
        // The sub-keys are the documented derivations, made once.
        assert_eq!(a.hash_secret(), &*a.derive(HASH_SECRET_LABEL));
        assert_eq!(a.backup_key().0, a.derive(BACKUP_MAC_LABEL));
        assert_eq!(a.store_key().records().0, a.derive(RECORD_MAC_LABEL));
        // Derived once: every handle points at the same bytes.
        assert!(a.store_key().is_shared_with(&a.store_key()));
        assert!(std::ptr::eq(a.backup_key(), a.backup_key()));
        assert!(!a.store_key().is_shared_with(&b.store_key()));
        assert_eq!(a.fingerprint().len(), 16);
        assert_ne!(a.hash_secret().as_ref(), b.hash_secret().as_ref());
        assert_ne!(a.hash_secret().as_ref(), a.as_bytes());
        assert_eq!(format!("{a:?}"), "MasterKey(..)");
    }

    #[test]
    fn a_streamed_tag_depends_on_the_bytes_not_on_how_they_were_fed() {
        let key = MasterKey::generate(&mut SeededEntropy::new(5));
        let mac = key.backup_key();
        let fed = |pieces: &[&[u8]], kind: &str| {
            let mut stream = mac.stream(kind, "");
            for piece in pieces {
                stream.update(piece);
            }
            stream.finish()
        };
        let whole = fed(&[b"header frame end"], "file");
        assert_eq!(fed(&[b"head", b"er fr", b"", b"ame end"], "file"), whole);
        assert_ne!(fed(&[b"header frame enD"], "file"), whole);
        assert_ne!(fed(&[b"header frame end"], "other"), whole);
        let mut stream = mac.stream("file", "");
        stream.update(b"header frame end");
        assert!(stream.verify(&whole));
        let mut stream = mac.stream("file", "");
        stream.update(b"header frame");
        assert!(!stream.verify(&whole), "a truncated stream");
    }

    #[test]
    fn tags_bind_kind_subject_body_and_key() {
        let mut e = SeededEntropy::new(3);
        let key = MasterKey::generate(&mut e);
        let records = key.store_key();
        let tag = records.records().tag("account", "alice", b"body");
        assert!(records.records().verify("account", "alice", b"body", &tag));
        assert!(!records.records().verify("account", "bob", b"body", &tag));
        assert!(!records.records().verify("operator", "alice", b"body", &tag));
        assert!(!records.records().verify("account", "alice", b"bodY", &tag));
        assert!(!records.records().verify("account", "alic", b"ebody", &tag));
        assert!(
            !records
                .records()
                .verify("account", "alice", b"body", &tag[..31])
        );
        assert!(!key.backup_key().verify("account", "alice", b"body", &tag));
        let other = MasterKey::generate(&mut e).store_key();
        assert!(!other.records().verify("account", "alice", b"body", &tag));
        assert_eq!(records.fingerprint(), key.fingerprint());
    }
}

//! Implementations of the core's [`Store`](crate::core::store::Store) trait: sled on disk
//! ([`sled_store::SledStore`]); the same sled store held only while it is used
//! ([`reopening::ReopeningStore`], the console's, so CLI commands can run beside it);
//! PostgreSQL shared by several hosts ([`postgres::PostgresStore`], chosen by a
//! [`location::StoreLocation`]); and memory ([`memory::VolatileStore`]: `MemoryStore` for tests
//! and UI snapshots under the `test-support` feature, and the store of `sparekey tui --demo`).
//! The record-level rules every backend applies (when a step is later, when a slot is unused)
//! live once, in [`mutation`], so the backends differ only in how they make them atomic.
//! Nothing here decides policy: that stays in the core.

#[cfg(any(test, feature = "test-support"))]
pub mod faulty;
pub mod location;
pub mod lock;
pub mod memory;
pub mod mutation;
pub mod postgres;
pub mod records;
pub mod reopening;
pub mod sled_store;
pub mod swap;

/// The schema version this build writes. Version 1: postcard-encoded `Account` records under
/// their name, audit events under a big-endian sequence number, meta keys as plain strings.
/// Version 2 (see [`records`]): every account record and operator value tagged with HMAC-SHA256
/// under a key derived from the master key and bound to the account name, code sets bound to
/// their account, names unique regardless of case. A version-1 store is migrated in place when
/// first opened with its key.
pub const SCHEMA_VERSION: u32 = 2;

/// Encodes a record. Postcard: compact, and deterministic for the same value.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records always serialize")
}

/// Decodes a record, naming what failed so a damaged store is reported precisely.
pub fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, crate::core::store::StoreError> {
    postcard::from_bytes(bytes).map_err(|e| {
        crate::core::store::StoreError::Damaged(format!("{what} cannot be decoded ({e})"))
    })
}

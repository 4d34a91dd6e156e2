//! Implementations of the core's [`Store`](crate::core::store::Store) trait: sled on disk
//! ([`sled_store::SledStore`]), PostgreSQL shared by several hosts ([`postgres::PostgresStore`],
//! chosen by a [`location::StoreLocation`]) and memory (`memory::MemoryStore`, for tests and UI snapshots, under
//! the `test-support` feature).
//! The record-level rules every backend applies (when a step is later, when a slot is unused)
//! live once, in [`mutation`], so the backends differ only in how they make them atomic.
//! Nothing here decides policy: that stays in the core.

pub mod location;
pub mod lock;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod mutation;
pub mod postgres;
pub mod sled_store;

/// The schema version this build writes. Version 1: postcard-encoded `Account` records under
/// their name, audit events under a big-endian sequence number, meta keys as plain strings.
pub const SCHEMA_VERSION: u32 = 1;

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

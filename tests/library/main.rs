//! The library in-process: the service's use cases on the in-memory and the sled store, the
//! store contract on every backend (PostgreSQL too, and a private PostgreSQL server stopped
//! mid-login), the store's durability and locking, recovery from lost or damaged files, disk
//! faults and hostile input. One test binary instead of one per file, because each binary links
//! the whole crate and its dependencies again (the larger part of building the suite on a small
//! machine).

#[path = "../support/mod.rs"]
mod support;

mod disk_faults;
mod hostile_input;
mod notify;
mod recovery;
mod second_factor;
mod service;
mod store_contract;
mod store_postgres;
mod store_postgres_shutdown;
mod store_sled;

//! sparekey: a terminal recovery console for TOTP two-factor authentication and its one-time
//! backup codes.
//!
//! # Architecture: one core, two faces
//! - [`core`] holds every rule and the use cases as one API ([`core::service::Service`]). It has
//!   no terminal, no argument parsing and no database types; time, randomness and storage are
//!   injected.
//! - [`store`] implements the core's storage trait on sled (and in memory for tests, under the
//!   `test-support` feature).
//! - [`app`] opens a real environment: data dir, key file, store, then builds the service.
//! - The faces, [`cli`] and [`tui`], only translate input into service calls and results into
//!   output or screens. If both need something, it belongs in the core.
//!
//! No `unsafe` except where a system call has no safe wrapper (the hash memory's mappings, the
//! umask): each such item says `#[allow(unsafe_code)]`, each block why it is sound.

#![deny(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]
//! # Test doubles stay out of the binary
//! The manual clock, seeded entropy, in-memory store, recording platform, cheap hash parameters
//! and the `fuzzing` entry points exist only under `cfg(test)` or the `test-support` feature.
//! This package's tests, benches and examples turn it on through a dev-dependency on itself;
//! no build of the binary does (`.ci/run` scans the release binary for their names).

pub mod app;
pub mod cli;
pub mod core;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod store;
pub mod tui;

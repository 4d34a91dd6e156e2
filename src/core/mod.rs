//! The core: every rule of sparekey (TOTP, backup codes, passwords, throttling, audit) and the use
//! cases as one service API ([`service::Service`]). It knows nothing of terminals, argument
//! parsing or sled: storage comes in through the [`store::Store`] trait, time through
//! [`clock::Clock`] and randomness through [`entropy::Entropy`], so every outcome is reproducible.

pub mod account;
pub mod argon_memory;
pub mod audit;
pub mod backup_code;
pub mod clock;
pub mod code_set;
pub mod entropy;
pub mod error;
pub mod import;
pub mod keys;
pub mod kiosk;
pub mod notify;
pub mod password;
pub(crate) mod qr;
pub(crate) mod recovery_sheet;
pub mod service;
pub mod step_up;
pub mod store;
pub mod throttle;
pub(crate) mod time_text;
pub mod totp;

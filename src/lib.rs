//! sparekey: a terminal recovery console for TOTP two-factor authentication and backup codes.

pub mod core;

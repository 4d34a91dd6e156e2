#![no_main]
//! cargo-fuzz target: see sparekey::fuzzing::totp_input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sparekey::fuzzing::totp_input(data));

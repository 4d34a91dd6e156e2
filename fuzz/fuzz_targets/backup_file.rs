#![no_main]
//! cargo-fuzz target: see sparekey::fuzzing::backup_file.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sparekey::fuzzing::backup_file(data));

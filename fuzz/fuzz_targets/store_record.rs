#![no_main]
//! cargo-fuzz target: see sparekey::fuzzing::store_record.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sparekey::fuzzing::store_record(data));

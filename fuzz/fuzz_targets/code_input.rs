#![no_main]
//! cargo-fuzz target: see sparekey::fuzzing::code_input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sparekey::fuzzing::code_input(data));

//! Shared set-up for the core's integration tests: a service with a manual clock, seeded
//! entropy and cheap Argon2 parameters (these tests are not about the parameters).
#![allow(dead_code)]

use std::sync::Arc;

use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::password::HashParams;
use sparekey::core::service::{Config, Service};
use sparekey::core::totp::{self, TotpSecret};

/// 2026-11-28T12:00:00Z, on a 30 s step boundary.
pub const T0: i64 = 1_795_867_200;

pub fn test_config() -> Config {
    Config {
        hash_params: HashParams::TEST_ONLY,
        ..Config::default()
    }
}

pub fn memory_service(seed: u64) -> (Service, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let service = sparekey::app::open_in_memory(
        test_config(),
        clock.clone(),
        Box::new(SeededEntropy::new(seed)),
    );
    (service, clock)
}

pub fn code_for(secret: &TotpSecret, at: i64) -> String {
    totp::code_at(secret.as_bytes(), at, Default::default()).expect("valid params")
}

pub const PASSWORD: &str = "correct horse battery";

/// Creates `name`, enrolls and confirms an authenticator; returns its secret and the codes in
/// display form. The clock is left one step after the confirming code's step.
pub fn enrolled(service: &Service, clock: &ManualClock, name: &str) -> (TotpSecret, Vec<String>) {
    service.create_account(name, PASSWORD).unwrap();
    let enrollment = service.begin_enrollment(name, Some(PASSWORD)).unwrap();
    let code = code_for(&enrollment.secret, clock.now_for_tests());
    let issued = service.confirm_enrollment(name, &code).unwrap();
    clock.advance(30);
    let codes = issued
        .codes
        .iter()
        .map(|c| c.display().to_string())
        .collect();
    (enrollment.secret, codes)
}

pub trait NowForTests {
    fn now_for_tests(&self) -> i64;
}

impl NowForTests for ManualClock {
    fn now_for_tests(&self) -> i64 {
        use sparekey::core::clock::Clock;
        self.now()
    }
}

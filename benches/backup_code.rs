//! Time per backup-code attempt, sparekey's way (one Argon2id evaluation per attempt, whatever
//! the number of unused codes) against the peers' way (one salted Argon2id hash per stored code,
//! every code checked: devise-two-factor, GitLab, Nextcloud). Production parameters throughout
//! (`HashParams::OWASP`: m=19456 KiB, t=2, p=1): that is what this bench is about.
//!
//! Run: `cargo bench --bench backup_code`. The ratios the targets are stated in are printed at
//! the end of the run.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use sparekey::core::argon_memory::ArgonMemory;
use sparekey::core::backup_code::{self, BackupCode};
use sparekey::core::clock::{Clock, ManualClock};
use sparekey::core::code_set::{CodeSet, SlotMatch};
use sparekey::core::entropy::{Entropy, SeededEntropy};
use sparekey::core::error::{Error, RejectReason};
use sparekey::core::password::{self, HashParams};
use sparekey::core::service::{Config, LoginSuccess, Service};
use sparekey::core::throttle::ThrottlePolicy;
use sparekey::core::totp;
use subtle::ConstantTimeEq;

const PARAMS: HashParams = HashParams::OWASP;
const CODES: usize = 20;
const PASSWORD: &str = "correct horse battery";
const NAME: &str = "bench";
const T0: i64 = 1_795_867_200;
const SECRET: [u8; 32] = [7; 32];

/// A production-parameter service on an in-memory store whose one account has 2FA on and a set
/// of 20 codes of which `unused` are left. Failures never throttle or lock (the bench repeats a
/// failed attempt), which changes no cost of the attempt itself.
fn service_with_unused(unused: usize) -> Service {
    let config = Config {
        code_count: CODES,
        hash_params: PARAMS,
        throttle: ThrottlePolicy {
            free_failures: u32::MAX,
            lock_after: u32::MAX,
            ..Default::default()
        },
        ..Config::default()
    };
    let clock = Arc::new(ManualClock::new(T0));
    let service = sparekey::app::open_in_memory(
        config,
        clock.clone(),
        Box::new(SeededEntropy::new(unused as u64)),
    );
    service.create_account(NAME, PASSWORD).expect("create");
    let enrollment = service.begin_enrollment(NAME, None).expect("enroll");
    let code = totp::code_at(
        enrollment.secret.as_bytes(),
        clock.now(),
        Default::default(),
    )
    .expect("code");
    let issued = service.confirm_enrollment(NAME, &code).expect("confirm");
    for code in issued.codes.iter().skip(unused) {
        service
            .login(NAME, PASSWORD, Some(&code.display()))
            .expect("spend a code");
    }
    assert_eq!(service.code_status(NAME).expect("status").remaining, unused);
    service
}

/// A well-formed code that is in no set: the attacker's and the typist's attempt. It costs the
/// same as a hit (one password hash, one code hash, a compare over every slot, one durable
/// write), and unlike a hit it can be repeated.
fn stranger() -> BackupCode {
    BackupCode::generate(&mut SeededEntropy::new(0xBAD))
}

fn code_set_with_unused(codes: &[BackupCode], unused: usize) -> CodeSet {
    let mut set = CodeSet::create(
        "bench",
        codes,
        PARAMS,
        &SECRET,
        &mut SeededEntropy::new(1),
        T0,
        &mut ArgonMemory::new(),
    );
    for slot in set.slots.iter_mut().skip(unused) {
        slot.used_at = Some(T0 + 60);
    }
    assert_eq!(set.remaining(), unused);
    set
}

/// The peers' layout: each stored (unused) code has its own salt and digest; used codes are
/// deleted, so an attempt hashes the input once per unused code.
struct PeerCode {
    salt: [u8; 16],
    digest: password::Digest,
}

fn peer_codes(codes: &[BackupCode]) -> Vec<PeerCode> {
    let mut e = SeededEntropy::new(2);
    codes
        .iter()
        .map(|code| {
            let mut salt = [0u8; 16];
            e.fill(&mut salt);
            let digest = *password::digest(
                PARAMS,
                &SECRET,
                code.canonical().as_bytes(),
                &salt,
                None,
                &mut ArgonMemory::new(),
            );
            PeerCode { salt, digest }
        })
        .collect()
}

/// Checks every stored code (devise-two-factor's `invalidate_otp_backup_code!`, GitLab's and
/// Nextcloud's loops hash the attempt with each code's salt).
fn peer_check(stored: &[PeerCode], attempt: &BackupCode) -> Option<usize> {
    let mut hit = None;
    for (i, code) in stored.iter().enumerate() {
        let digest = password::digest(
            PARAMS,
            &SECRET,
            attempt.canonical().as_bytes(),
            &code.salt,
            None,
            &mut ArgonMemory::new(),
        );
        if bool::from(digest.ct_eq(&code.digest)) && hit.is_none() {
            hit = Some(i);
        }
    }
    hit
}

struct State {
    attempt: BackupCode,
    services: Vec<(usize, Service)>,
    sets: Vec<(usize, CodeSet)>,
    peers: Vec<PeerCode>,
}

impl State {
    fn new() -> Self {
        let codes = backup_code::generate_set(&mut SeededEntropy::new(3), CODES);
        let sets: Vec<_> = [CODES, 1]
            .into_iter()
            .map(|n| (n, code_set_with_unused(&codes, n)))
            .collect();
        for (_, set) in &sets {
            // The check finds a real code by the same path the bench times.
            assert_eq!(
                set.find(
                    &set.digest_of("bench", &codes[0], &SECRET, &mut ArgonMemory::new())
                        .expect("valid params")
                ),
                SlotMatch::Unused(0)
            );
        }
        let peers = peer_codes(&codes);
        assert_eq!(peer_check(&peers, &codes[CODES - 1]), Some(CODES - 1));
        Self {
            attempt: stranger(),
            services: [CODES, 1]
                .into_iter()
                .map(|n| (n, service_with_unused(n)))
                .collect(),
            sets,
            peers,
        }
    }

    fn login(&self, unused: usize) -> Result<LoginSuccess, Error> {
        let service = &self
            .services
            .iter()
            .find(|(n, _)| *n == unused)
            .expect("service")
            .1;
        let outcome = service.login(NAME, PASSWORD, Some(&self.attempt.display()));
        assert!(matches!(&outcome, Err(Error::Rejected(r)) if r.reason == RejectReason::WrongCode));
        outcome
    }

    fn check(&self, unused: usize) -> SlotMatch {
        let set = &self.sets.iter().find(|(n, _)| *n == unused).expect("set").1;
        let found = set.find(
            &set.digest_of("bench", &self.attempt, &SECRET, &mut ArgonMemory::new())
                .expect("valid params"),
        );
        assert_eq!(found, SlotMatch::NoMatch);
        found
    }

    fn peers(&self, n: usize) -> Option<usize> {
        let found = peer_check(&self.peers[..n], &self.attempt);
        assert_eq!(found, None);
        found
    }
}

fn main() {
    let state = State::new();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = support::configure(&mut c, "code_check", Duration::from_secs(1));
        for n in [CODES, 1] {
            let id = format!("code_check/unused={n}");
            group.bench_function(format!("unused={n}"), |b| {
                support::timed(b, &id, || state.check(n))
            });
        }
        group.finish();
    }
    {
        let mut group =
            support::configure(&mut c, "service_login_backup_code", Duration::from_secs(1));
        for n in [CODES, 1] {
            let id = format!("service_login_backup_code/unused={n}");
            group.bench_function(format!("unused={n}"), |b| {
                support::timed(b, &id, || state.login(n))
            });
        }
        group.finish();
    }
    {
        let mut group = support::configure(&mut c, "peers_per_code_salt", Duration::from_secs(1));
        for n in [1, 10, 20] {
            let id = format!("peers_per_code_salt/unused={n}");
            group.bench_function(format!("unused={n}"), |b| {
                support::timed(b, &id, || state.peers(n))
            });
        }
        group.finish();
    }
    c.final_summary();
    support::print_summary("backup_code (criterion groups, measured one after the other)");
    if support::test_mode() {
        return;
    }
    println!("== backup_code: paired ratios A/B (A and B alternated, the figures to quote) ==");
    let p = support::paired(20, || state.check(CODES), || state.check(1));
    support::print_paired("code check: 20 unused / 1 unused", &p, Some(1.15));
    let p = support::paired(16, || state.login(CODES), || state.login(1));
    support::print_paired("service login: 20 unused / 1 unused", &p, Some(1.15));
    let p = support::paired(6, || state.peers(10), || state.check(CODES));
    support::print_paired("peers, 10 codes / sparekey check (expect ~10)", &p, None);
    let p = support::paired(6, || state.peers(20), || state.check(CODES));
    support::print_paired("peers, 20 codes / sparekey check (expect ~20)", &p, None);
    let p = support::paired(6, || state.peers(20), || state.login(CODES));
    support::print_paired("peers, 20 codes / sparekey service login", &p, None);
}

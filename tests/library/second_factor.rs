//! Second-factor-only accounts through the service API: created with no sparekey password,
//! checked with `verify_second_factor` under the login's throttle, replay refusal, single use
//! and audit, and refused by the simulated login.

use crate::support::*;
use sparekey::core::audit::{AuditKind, LoginMethod};
use sparekey::core::clock::ManualClock;
use sparekey::core::error::{Error, ErrorKind, RejectReason};
use sparekey::core::service::Service;
use sparekey::core::totp::TotpSecret;

/// Creates a second-factor-only `name` and confirms an authenticator; the clock is left one
/// step after the confirming code's.
fn enrolled_only(service: &Service, clock: &ManualClock, name: &str) -> (TotpSecret, Vec<String>) {
    service.create_second_factor_only_account(name).unwrap();
    let enrollment = service.begin_enrollment(name, None).unwrap();
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

fn failures(service: &Service, name: &str) -> u32 {
    service.account_summary(name).unwrap().consecutive_failures
}

#[test]
fn creating_one_hashes_nothing_and_the_simulated_login_refuses_it() {
    let (service, _clock) = memory_service(41);
    service.create_second_factor_only_account("bob").unwrap();
    assert_eq!(
        service.hash_evaluations(),
        0,
        "there is no password to hash"
    );
    let err = service.login("bob", PASSWORD, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("second-factor-only"), "{err}");
    assert_eq!(failures(&service, "bob"), 0, "the refusal counts nothing");
    assert_eq!(service.hash_evaluations(), 0);
    // Its name is taken like any other.
    let again = service
        .create_second_factor_only_account("bob")
        .unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)));
}

#[test]
fn a_totp_code_verifies_once_and_is_audited_as_a_login() {
    let (service, clock) = memory_service(42);
    let (secret, _) = enrolled_only(&service, &clock, "bob");
    let code = code_for(&secret, clock.now_for_tests());
    let ok = service.verify_second_factor("bob", &code).unwrap();
    assert_eq!((ok.method, ok.remaining_codes), (LoginMethod::Totp, 10));
    let err = service.verify_second_factor("bob", &code).unwrap_err();
    assert_eq!(reason(err), RejectReason::TotpReplay);
    let kinds: Vec<AuditKind> = (service.audit_log(Some("bob"), 100).unwrap())
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&AuditKind::LoginSucceeded {
        method: LoginMethod::Totp
    }));
    assert!(kinds.contains(&AuditKind::ReplayRefused {
        method: LoginMethod::Totp
    }));
    let last = service.account_summary("bob").unwrap().last_login.unwrap();
    assert_eq!(last.method, LoginMethod::Totp);
}

#[test]
fn a_backup_code_verifies_once() {
    let (service, clock) = memory_service(43);
    let (_, codes) = enrolled_only(&service, &clock, "bob");
    let ok = service.verify_second_factor("bob", &codes[3]).unwrap();
    assert_eq!(
        (ok.method, ok.remaining_codes, ok.total_codes),
        (LoginMethod::BackupCode, 9, 10)
    );
    let err = service.verify_second_factor("bob", &codes[3]).unwrap_err();
    assert_eq!(reason(err), RejectReason::BackupCodeAlreadyUsed);
}

#[test]
fn a_typo_costs_no_attempt_and_a_wrong_code_costs_one() {
    let (service, clock) = memory_service(44);
    let (_, codes) = enrolled_only(&service, &clock, "bob");
    let mut typo: Vec<char> = codes[0].chars().collect();
    typo[0] = if typo[0] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let hashes = service.hash_evaluations();
    let err = service.verify_second_factor("bob", &typo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let err = service.verify_second_factor("bob", "12345").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "five digits are a typo too");
    assert_eq!(failures(&service, "bob"), 0);
    assert_eq!(service.hash_evaluations(), hashes, "a typo costs no hash");
    let err = service.verify_second_factor("bob", "000000").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(failures(&service, "bob"), 1);
}

#[test]
fn the_login_throttle_applies_and_a_lock_refuses_even_the_right_code() {
    let (service, clock) = memory_service(45);
    let (secret, _) = enrolled_only(&service, &clock, "bob");
    let policy = service.config().throttle;
    let mut locked = false;
    for _ in 0..policy.lock_after {
        match service.verify_second_factor("bob", "000000") {
            Err(Error::Rejected(_)) => {}
            Err(Error::Throttled { seconds_left }) => {
                clock.advance(seconds_left);
                continue;
            }
            Err(Error::Locked(_)) => {
                locked = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        // Each failure past the free ones starts a delay; wait it out like an attacker would.
        if let Ok(sparekey::core::throttle::Gate::Delayed { seconds_left }) = service.gate("bob") {
            clock.advance(seconds_left);
        }
    }
    locked |= service.account_summary("bob").unwrap().locked;
    assert!(locked, "{} failures lock the account", policy.lock_after);
    let right = code_for(&secret, clock.now_for_tests());
    let err = service.verify_second_factor("bob", &right).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    let probe = service.probe_second_factor("bob").unwrap_err();
    assert_eq!(probe.kind(), ErrorKind::Throttled);
    service.unlock("bob").unwrap();
    service.probe_second_factor("bob").unwrap();
    service.verify_second_factor("bob", &right).unwrap();
}

#[test]
fn probing_tells_unknown_unenrolled_and_ready_apart_and_writes_nothing() {
    use sparekey::core::service::SecondFactorState;
    let (service, clock) = memory_service(46);
    assert_eq!(
        service.probe_second_factor("nobody").unwrap(),
        SecondFactorState::NoAccount
    );
    service.create_second_factor_only_account("new").unwrap();
    assert_eq!(
        service.probe_second_factor("new").unwrap(),
        SecondFactorState::NoAuthenticator
    );
    let err = service.verify_second_factor("new", "123456").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "nothing to check against");
    enrolled_only(&service, &clock, "bob");
    let before = service.audit_log(None, 1000).unwrap().len();
    assert_eq!(
        service.probe_second_factor("bob").unwrap(),
        SecondFactorState::Ready
    );
    assert_eq!(service.audit_log(None, 1000).unwrap().len(), before);
}

#[test]
fn no_step_up_is_minted_for_it_and_codes_are_renewed_by_reset_and_enroll() {
    let (service, clock) = memory_service(47);
    let (first, _) = enrolled_only(&service, &clock, "bob");
    // A step-up is two factors; here it has one, so regenerate, re-enroll and disable are shut.
    let code = code_for(&first, clock.now_for_tests());
    let hashes = service.hash_evaluations();
    let err = service.step_up("bob", PASSWORD, &code).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("no sparekey password"), "{err}");
    assert!(err.to_string().contains("sparekey reset"), "{err}");
    assert_eq!(failures(&service, "bob"), 0);
    assert_eq!(service.hash_evaluations(), hashes, "nothing was hashed");
    // The refused step-up consumed nothing: the same code still verifies.
    service.verify_second_factor("bob", &code).unwrap();
    clock.advance(30);
    service.reset_two_factor("bob").unwrap();
    let (secret, _) = {
        let enrollment = service.begin_enrollment("bob", None).unwrap();
        let code = code_for(&enrollment.secret, clock.now_for_tests());
        service.confirm_enrollment("bob", &code).unwrap();
        clock.advance(30);
        (enrollment.secret, ())
    };
    let code = code_for(&secret, clock.now_for_tests());
    service.verify_second_factor("bob", &code).unwrap();
}

#[test]
fn an_imported_authenticator_verifies_at_once_and_its_own_digits_count() {
    use sparekey::core::import;
    use sparekey::core::totp::code_at;
    let (service, clock) = memory_service(48);
    let uri =
        "otpauth://totp/ACME:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME&digits=8";
    let imported = import::otpauth(uri).unwrap();
    let issued = service.import_authenticator("bob", &imported).unwrap();
    assert_eq!((issued.issuer.as_str(), issued.codes.len()), ("ACME", 10));
    let err = service.login("bob", PASSWORD, None).unwrap_err();
    assert!(
        err.to_string().contains("second-factor-only"),
        "created as one"
    );
    let code = code_at(
        imported.secret.as_bytes(),
        clock.now_for_tests(),
        imported.params,
    )
    .unwrap();
    assert_eq!(code.len(), 8);
    let ok = service.verify_second_factor("bob", &code).unwrap();
    assert_eq!(ok.method, LoginMethod::Totp);
    let err = service.verify_second_factor("bob", "123456").unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Invalid,
        "6 digits are a typo for this account"
    );
    let again = service.import_authenticator("bob", &imported).unwrap_err();
    assert!(
        again.to_string().contains("already has an authenticator"),
        "{again}"
    );
    // An account with a password keeps it.
    service.create_account("carol", PASSWORD).unwrap();
    service.import_authenticator("carol", &imported).unwrap();
    assert!(matches!(
        service.login("carol", PASSWORD, None).unwrap_err(),
        Error::Invalid(m) if m.contains("two-factor")
    ));
}

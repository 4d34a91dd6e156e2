//! The use cases end to end through the service API, on the in-memory store: enrollment,
//! TOTP and backup-code logins, replay, drift, throttling, locking, regeneration, audit.

use crate::support::*;
use sparekey::core::audit::{AuditKind, KioskEvent, LoginMethod};
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::error::{Error, ErrorKind, RejectReason};
use sparekey::core::keys::MasterKey;
use sparekey::core::kiosk::OPERATOR_AUDIT_NAME;
use sparekey::core::service::Service;
use sparekey::store::memory::MemoryStore;
use std::sync::Arc;

#[test]
fn confirming_code_cannot_log_in_but_the_next_step_can() {
    let (service, clock) = memory_service(1);
    service.create_account("alice", PASSWORD).unwrap();
    let enrollment = service.begin_enrollment("alice", None).unwrap();
    assert!(
        enrollment
            .otpauth_uri
            .starts_with("otpauth://totp/sparekey:alice?secret=")
    );
    let code = code_for(&enrollment.secret, T0);
    let issued = service.confirm_enrollment("alice", &code).unwrap();
    assert_eq!(issued.codes.len(), 10);
    assert_eq!(issued.issuer, "sparekey");
    // Same code, same step: RFC 6238 section 5.2 says no.
    let err = service.login("alice", PASSWORD, Some(&code)).unwrap_err();
    assert_eq!(reason(err), RejectReason::TotpReplay);
    clock.advance(30);
    let next = code_for(&enrollment.secret, T0 + 30);
    let ok = service.login("alice", PASSWORD, Some(&next)).unwrap();
    assert_eq!(ok.method, LoginMethod::Totp);
    assert_eq!(ok.remaining_codes, 10);
    // After step s is used, s-1 (still inside the window) is refused too.
    let err = service.login("alice", PASSWORD, Some(&code)).unwrap_err();
    assert_eq!(reason(err), RejectReason::TotpReplay);
}

#[test]
fn backup_codes_work_once_in_any_order_and_any_spelling() {
    let (service, clock) = memory_service(2);
    let (_, codes) = enrolled(&service, &clock, "bob");
    let shouted = codes[6].to_uppercase().replace('-', " ");
    let ok = service.login("bob", PASSWORD, Some(&shouted)).unwrap();
    assert_eq!(
        (ok.method, ok.remaining_codes, ok.total_codes),
        (LoginMethod::BackupCode, 9, 10)
    );
    let err = service.login("bob", PASSWORD, Some(&codes[6])).unwrap_err();
    assert_eq!(reason(err), RejectReason::BackupCodeAlreadyUsed);
    let ok = service.login("bob", PASSWORD, Some(&codes[0])).unwrap();
    assert_eq!(ok.remaining_codes, 8);
    let status = service.code_status("bob").unwrap();
    assert_eq!((status.remaining, status.total), (8, 10));
    assert!(
        status.used_at[6].is_some() && status.used_at[0].is_some() && status.used_at[1].is_none()
    );
}

#[test]
fn a_typo_costs_no_attempt() {
    let (service, clock) = memory_service(3);
    let (_, codes) = enrolled(&service, &clock, "carol");
    let mut typo: Vec<char> = codes[0].chars().collect();
    typo[0] = if typo[0] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let err = service.login("carol", PASSWORD, Some(&typo)).unwrap_err();
    assert_eq!(err.to_string(), "not a valid backup code: check for typos");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(
        service
            .account_summary("carol")
            .unwrap()
            .consecutive_failures,
        0
    );
}

#[test]
fn wrong_password_is_refused_before_the_code_is_spent() {
    let (service, clock) = memory_service(4);
    let (_, codes) = enrolled(&service, &clock, "dan");
    let err = service
        .login("dan", "wrong password!", Some(&codes[1]))
        .unwrap_err();
    assert_eq!(reason(err), RejectReason::WrongNameOrPassword);
    // The code was not consumed by the failed attempt.
    assert_eq!(
        service
            .login("dan", PASSWORD, Some(&codes[1]))
            .unwrap()
            .remaining_codes,
        9
    );
    // Unknown names look exactly like wrong passwords.
    let err = service
        .login("nobody", PASSWORD, Some(&codes[2]))
        .unwrap_err();
    assert_eq!(reason(err), RejectReason::WrongNameOrPassword);
}

#[test]
fn clock_drift_is_explained() {
    let (service, clock) = memory_service(5);
    let (secret, _) = enrolled(&service, &clock, "erin");
    let now = T0 + 30;
    let ahead = code_for(&secret, now + 5 * 60);
    let err = service.login("erin", PASSWORD, Some(&ahead)).unwrap_err();
    assert_eq!(
        reason(err.clone()),
        RejectReason::ClockDrift {
            steps: 10,
            period: 30
        }
    );
    assert!(err.to_string().contains("about 5 minutes ahead"), "{err}");
    // A code confirmed as "ahead" is spent: five minutes later it does not log in.
    clock.advance(5 * 60);
    let later = service.login("erin", PASSWORD, Some(&ahead)).unwrap_err();
    assert_eq!(reason(later), RejectReason::TotpReplay);
    // Behind, far enough after enrollment that the step was never used (else it is a replay).
    clock.advance(300);
    let behind = code_for(&secret, now + 600 - 90);
    let err = service.login("erin", PASSWORD, Some(&behind)).unwrap_err();
    assert!(err.to_string().contains("behind"), "{err}");
}

#[test]
fn throttle_delays_then_locks_and_success_resets_only_after_full_login() {
    let (service, clock) = memory_service(6);
    let (secret, codes) = enrolled(&service, &clock, "fay");
    for _ in 0..4 {
        service
            .login("fay", "bad password", Some("000000"))
            .unwrap_err();
    }
    // A correct password with a wrong code is still a failure: the counter keeps counting.
    let err = service.login("fay", PASSWORD, Some("000000")).unwrap_err();
    match err {
        Error::Rejected(r) => assert_eq!(r.next_delay_secs, Some(30)),
        other => panic!("{other:?}"),
    }
    // Now refused at once, without checking anything, with the time left.
    let err = service.login("fay", PASSWORD, Some(&codes[0])).unwrap_err();
    assert_eq!(err, Error::Throttled { seconds_left: 30 });
    assert_eq!(err.kind(), ErrorKind::Throttled);
    clock.advance(10);
    assert_eq!(
        service.login("fay", PASSWORD, Some(&codes[0])).unwrap_err(),
        Error::Throttled { seconds_left: 20 }
    );
    // Keep failing past each delay until the lock.
    for _ in 5..20 {
        clock.advance(3_600);
        service.login("fay", PASSWORD, Some("111111")).unwrap_err();
    }
    clock.advance(100_000);
    let err = service.login("fay", PASSWORD, Some(&codes[0])).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err:?}");
    assert!(service.account_summary("fay").unwrap().locked);
    service.unlock("fay").unwrap();
    let now = T0 + 30 + 10 + 15 * 3_600 + 100_000;
    clock.set(now);
    assert!(
        service
            .login("fay", PASSWORD, Some(&code_for(&secret, now)))
            .is_ok()
    );
    let summary = service.account_summary("fay").unwrap();
    assert_eq!((summary.locked, summary.consecutive_failures), (false, 0));
    let kinds: Vec<_> = service
        .audit_log(Some("fay"), 1_000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&AuditKind::Locked));
    assert!(kinds.contains(&AuditKind::Unlocked));
    // The two refusals of the first delay share one event; the one while locked has its own.
    assert!(kinds.contains(&AuditKind::AttemptsRefused {
        count: 2,
        locked: false
    }));
    assert!(kinds.contains(&AuditKind::AttemptsRefused {
        count: 1,
        locked: true
    }));
}

#[test]
fn regeneration_replaces_the_whole_set() {
    let (service, clock) = memory_service(7);
    let (secret, old) = enrolled(&service, &clock, "gus");
    service.login("gus", PASSWORD, Some(&old[0])).unwrap();
    let proof = service
        .step_up("gus", PASSWORD, &code_for(&secret, T0 + 30))
        .unwrap();
    let new = service.regenerate_codes("gus", &proof).unwrap();
    assert_eq!(service.code_status("gus").unwrap().remaining, 10);
    for code in &old[1..] {
        assert_eq!(
            reason(service.login("gus", PASSWORD, Some(code)).unwrap_err()),
            RejectReason::WrongCode
        );
        service.unlock("gus").unwrap();
    }
    let fresh = new.codes[3].display().to_string();
    assert_eq!(
        service
            .login("gus", PASSWORD, Some(&fresh))
            .unwrap()
            .remaining_codes,
        9
    );
    // The step-up regeneration needs takes the right password.
    assert_eq!(
        reason(service.step_up("gus", "nope nope", &fresh).unwrap_err()),
        RejectReason::WrongPassword
    );
}

#[test]
fn reenrollment_keeps_the_old_authenticator_until_confirmed() {
    let (service, clock) = memory_service(8);
    let (old_secret, codes) = enrolled(&service, &clock, "hal");
    assert!(matches!(
        service.begin_enrollment("hal", None),
        Err(Error::StepUpNeeded(_))
    ));
    let proof = service.step_up("hal", PASSWORD, &codes[0]).unwrap();
    let new = service.begin_reenrollment("hal", &proof).unwrap();
    let now = T0 + 30;
    assert!(
        service
            .login("hal", PASSWORD, Some(&code_for(&old_secret, now)))
            .is_ok()
    );
    clock.advance(30);
    service
        .confirm_reenrollment("hal", &code_for(&new.secret, now + 30), &proof)
        .unwrap();
    clock.advance(30);
    let err = service
        .login("hal", PASSWORD, Some(&code_for(&old_secret, now + 60)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
}

#[test]
fn low_codes_are_flagged_and_disable_needs_password_and_code() {
    let (service, clock) = memory_service(9);
    let (secret, codes) = enrolled(&service, &clock, "ivy");
    let mut last = None;
    for code in &codes[..7] {
        last = Some(service.login("ivy", PASSWORD, Some(code)).unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.remaining_codes, 3);
    assert!(last.low_on_codes());
    assert!(service.account_summary("ivy").unwrap().needs_attention);
    let now = T0 + 30;
    assert!(
        service
            .step_up("ivy", "bad password", &code_for(&secret, now))
            .is_err()
    );
    service.unlock("ivy").unwrap();
    let proof = service
        .step_up("ivy", PASSWORD, &code_for(&secret, now))
        .unwrap();
    service.disable_two_factor("ivy", &proof).unwrap();
    let summary = service.account_summary("ivy").unwrap();
    assert!(!summary.two_factor && summary.total_codes == 0);
    let ok = service.login("ivy", PASSWORD, None).unwrap();
    assert_eq!(ok.method, LoginMethod::Password);
}

/// Turning two-factor off spends the code it was given, but is not a login: its audit trail
/// says what happened, a used backup code and the disable, and no login.
#[test]
fn turning_two_factor_off_is_audited_as_such_and_not_as_a_login() {
    let (service, clock) = memory_service(21);
    let (secret, _) = enrolled(&service, &clock, "una");
    let (_, codes) = enrolled(&service, &clock, "vic");
    let events_after = |name: &str, before: usize| -> Vec<AuditKind> {
        service.audit_log(Some(name), 1_000).unwrap()[before..]
            .iter()
            .map(|e| e.kind.clone())
            .collect()
    };

    let before = service.audit_log(Some("una"), 1_000).unwrap().len();
    let proof = service
        .step_up("una", PASSWORD, &code_for(&secret, T0 + 30))
        .unwrap();
    service.disable_two_factor("una", &proof).unwrap();
    assert_eq!(events_after("una", before), [AuditKind::TwoFactorDisabled]);

    let before = service.audit_log(Some("vic"), 1_000).unwrap().len();
    let proof = service.step_up("vic", PASSWORD, &codes[4]).unwrap();
    service.disable_two_factor("vic", &proof).unwrap();
    assert_eq!(
        events_after("vic", before),
        [
            AuditKind::BackupCodeUsed {
                slot: 4,
                remaining: 9
            },
            AuditKind::TwoFactorDisabled
        ]
    );
}

#[test]
fn audit_log_holds_no_secret() {
    let (service, clock) = memory_service(10);
    let (secret, codes) = enrolled(&service, &clock, "jo");
    service.login("jo", PASSWORD, Some(&codes[2])).unwrap();
    service
        .login("jo", "Tr0ub4dor&3", Some(&codes[3]))
        .unwrap_err();
    let events = service.audit_log(None, 1_000).unwrap();
    let text = format!(
        "{events:?} {}",
        events
            .iter()
            .map(|e| e.kind.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for code in &codes {
        assert!(!text.contains(code.as_str()) && !text.contains(&code.replace('-', "")));
    }
    assert!(!text.contains(PASSWORD) && !text.contains("Tr0ub4dor"));
    assert!(!text.contains(secret.to_base32().as_str()));
    assert!(events.iter().any(|e| e.kind
        == AuditKind::BackupCodeUsed {
            slot: 2,
            remaining: 9
        }));
    assert!(
        events
            .iter()
            .any(|e| e.kind == AuditKind::TwoFactorEnrolled)
    );
}

#[test]
fn bad_names_and_passwords_are_refused_clearly() {
    let (service, _) = memory_service(11);
    assert_eq!(
        service.create_account("a:b", PASSWORD).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert!(
        service
            .create_account("kay", "short")
            .unwrap_err()
            .to_string()
            .contains("at least 8")
    );
    service.create_account("kay", PASSWORD).unwrap();
    assert!(matches!(
        service.create_account("kay", PASSWORD),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        service.code_status("nobody"),
        Err(Error::NotFound(_))
    ));
    service.remove_account("kay").unwrap();
    assert!(matches!(
        service.remove_account("kay"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn operator_password_is_set_once() {
    let (service, _) = memory_service(12);
    assert!(!service.has_operator_password().unwrap());
    service.set_operator_password("operator secret").unwrap();
    assert!(service.has_operator_password().unwrap());
    assert!(service.set_operator_password("another secret").is_err());
    assert!(check_operator(&service, "operator secret").is_ok());
    assert!(check_operator(&service, "operator secreT").is_err());
}

#[test]
fn two_step_login_reveals_nothing_before_the_password() {
    use sparekey::core::service::LoginStep;
    let (service, clock) = memory_service(13);
    let (secret, codes) = enrolled(&service, &clock, "lee");
    service.create_account("max", PASSWORD).unwrap();
    // Wrong password, unknown name, and a 2FA account without a code: all the same rejection,
    // so nobody learns whether a name exists or has two-factor before the password is right.
    for (name, pw) in [("lee", "not the password"), ("nobody", PASSWORD)] {
        assert_eq!(
            reason(service.start_login(name, pw).unwrap_err()),
            RejectReason::WrongNameOrPassword
        );
    }
    assert_eq!(
        reason(service.login("lee", "not the password", None).unwrap_err()),
        RejectReason::WrongNameOrPassword
    );
    service.unlock("lee").unwrap();

    // No second factor: done at once.
    assert!(
        matches!(service.start_login("max", PASSWORD).unwrap(), LoginStep::Done(s) if s.method == LoginMethod::Password)
    );

    let LoginStep::SecondFactorNeeded(pending) = service.start_login("lee", PASSWORD).unwrap()
    else {
        panic!("lee has two-factor");
    };
    assert_eq!(pending.account(), "lee");
    // A typo is a structured error that costs nothing; a wrong code counts; the right one works.
    let typo = format!("{}x", &codes[0][..codes[0].len() - 1]);
    assert!(matches!(
        service.finish_login(&pending, &typo),
        Err(Error::InvalidBackupCode(_))
    ));
    assert_eq!(
        service.account_summary("lee").unwrap().consecutive_failures,
        0
    );
    assert_eq!(
        reason(service.finish_login(&pending, "000000").unwrap_err()),
        RejectReason::WrongCode
    );
    let ok = service
        .finish_login(&pending, &code_for(&secret, T0 + 30))
        .unwrap();
    assert_eq!(ok.method, LoginMethod::Totp);
    assert_eq!(
        service.account_summary("lee").unwrap().consecutive_failures,
        0
    );

    // A checked password does not wait forever for its second factor.
    let LoginStep::SecondFactorNeeded(pending) = service.start_login("lee", PASSWORD).unwrap()
    else {
        panic!("lee has two-factor");
    };
    clock.advance(sparekey::core::service::PENDING_LOGIN_TTL_SECS + 1);
    let err = service.finish_login(&pending, &codes[1]).unwrap_err();
    assert!(
        err.to_string().contains("enter the password again"),
        "{err}"
    );
    assert_eq!(
        service.code_status("lee").unwrap().remaining,
        10,
        "the code was not spent"
    );
}

#[test]
fn summary_flags_say_why_an_account_needs_attention() {
    let (service, clock) = memory_service(14);
    let (_, codes) = enrolled(&service, &clock, "nia");
    let s = service.account_summary("nia").unwrap();
    assert!(!s.codes_low && !s.last_login_used_backup_code && !s.needs_attention);
    service.login("nia", PASSWORD, Some(&codes[0])).unwrap();
    let s = service.account_summary("nia").unwrap();
    assert!(!s.codes_low && s.last_login_used_backup_code && s.needs_attention);
    service.create_account("oz", PASSWORD).unwrap();
    let s = service.account_summary("oz").unwrap();
    assert!(
        !s.codes_low && !s.needs_attention,
        "no 2FA: nothing to regenerate"
    );
}

/// The operator check as a plain result, for the assertions below.
fn check_operator(service: &Service, password: &str) -> Result<(), Error> {
    service.start_operator_session(password).map(|_| ())
}

#[test]
fn the_operator_password_is_throttled_and_locks_after_100_failures() {
    let (service, clock) = memory_service(15);
    service.set_operator_password("operator secret").unwrap();
    for _ in 0..5 {
        assert_eq!(
            check_operator(&service, "guess guess").unwrap_err().kind(),
            ErrorKind::Rejected
        );
    }
    assert_eq!(
        check_operator(&service, "operator secret").unwrap_err(),
        Error::Throttled { seconds_left: 30 }
    );
    clock.advance(3_600);
    assert!(check_operator(&service, "operator secret").is_ok());
    assert!(
        check_operator(&service, "guess guess").is_err(),
        "success cleared the count"
    );
    clock.advance(3_600);
    assert!(check_operator(&service, "operator secret").is_ok());
    for n in 1..=100 {
        clock.advance(3_600);
        let err = check_operator(&service, "guess guess").unwrap_err();
        assert_eq!(
            err.kind() == ErrorKind::Throttled,
            n == 100,
            "failure {n}: {err}"
        );
    }
    clock.advance(3_600);
    let err = check_operator(&service, "operator secret").unwrap_err();
    assert!(
        err.to_string()
            .contains("sparekey kiosk reset-operator-password"),
        "{err}"
    );
    service.clear_operator_failures().unwrap();
    assert!(check_operator(&service, "operator secret").is_ok());
    // Every success and every failure, with its count; the refusals while throttled or locked
    // never reached the password and are not attempts.
    let failures =
        |n: u32| (1..=n).map(|consecutive| AuditKind::OperatorFailedAttempt { consecutive });
    let mut expected = vec![AuditKind::OperatorPasswordSet];
    expected.extend(failures(5));
    expected.push(AuditKind::OperatorSignedIn);
    expected.extend(failures(1));
    expected.push(AuditKind::OperatorSignedIn);
    expected.extend(failures(100));
    expected.extend([
        AuditKind::OperatorLocked,
        AuditKind::OperatorFailuresCleared,
        AuditKind::OperatorSignedIn,
    ]);
    let audit = service.audit_log(Some("kiosk:operator"), 1_000).unwrap();
    let kinds: Vec<AuditKind> = audit.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, expected);
}

#[test]
fn an_operator_attempt_and_its_event_are_written_together_or_not_at_all() {
    let (service, handle, _) = service_with_failing_audit();
    service.set_operator_password("operator secret").unwrap();
    let before = service.audit_log(None, 1_000).unwrap();

    handle.fail_audit_writes(true);
    let wrong = check_operator(&service, "guess guess").unwrap_err();
    assert!(matches!(wrong, Error::Store(_)), "{wrong:?}");
    let right = check_operator(&service, "operator secret").unwrap_err();
    assert!(
        matches!(right, Error::Store(_)),
        "no operator session without its event: {right:?}"
    );
    // Fail closed: both attempts were counted before the password was checked, and the
    // success whose event could not be written settled nothing.
    assert_eq!(service.audit_log(None, 1_000).unwrap(), before);

    handle.fail_audit_writes(false);
    let wrong = check_operator(&service, "guess guess").unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Rejected, "{wrong}");
    let after = service.audit_log(None, 1_000).unwrap();
    let kinds: Vec<(&str, &AuditKind)> = after[before.len()..]
        .iter()
        .map(|e| (e.account.as_str(), &e.kind))
        .collect();
    assert_eq!(
        kinds,
        [(
            "kiosk:operator",
            &AuditKind::OperatorFailedAttempt { consecutive: 3 }
        )],
        "the event carries the count stored with it, the two unrecorded attempts included"
    );
}

#[test]
fn kiosk_events_are_filed_under_the_operator_and_a_failed_write_says_so() {
    let (service, handle, clock) = service_with_failing_audit();
    service.kiosk_event(KioskEvent::Started).unwrap();
    clock.advance(60);
    service.kiosk_event(KioskEvent::IdleCleared).unwrap();
    clock.advance(5);
    service.kiosk_event(KioskEvent::Quit).unwrap();
    let log = service.audit_log(Some(OPERATOR_AUDIT_NAME), 10).unwrap();
    let events: Vec<(&str, i64, &AuditKind)> = log
        .iter()
        .map(|e| (e.account.as_str(), e.at - T0, &e.kind))
        .collect();
    assert_eq!(
        events,
        [
            (OPERATOR_AUDIT_NAME, 0, &AuditKind::KioskStarted),
            (OPERATOR_AUDIT_NAME, 60, &AuditKind::KioskIdleCleared),
            (OPERATOR_AUDIT_NAME, 65, &AuditKind::KioskQuit),
        ]
    );
    let names: Vec<&str> = log.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["kiosk_started", "kiosk_idle_cleared", "kiosk_quit"]);

    handle.fail_audit_writes(true);
    let err = service.kiosk_event(KioskEvent::IdleCleared).unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
}

#[test]
fn wrong_password_and_unknown_name_read_the_same_until_the_throttle() {
    let (service, _) = memory_service(16);
    service.create_account("pat", PASSWORD).unwrap();
    for _ in 0..5 {
        let known = service.login("pat", "not the password", None).unwrap_err();
        let unknown = service
            .login("nobody", "not the password", None)
            .unwrap_err();
        assert_eq!(known, unknown);
        assert_eq!(known.to_string(), "wrong account name or password");
    }
}

/// A service on a memory store whose audit writes a test can make fail, as on a full disk.
fn service_with_failing_audit() -> (Service, MemoryStore, Arc<ManualClock>) {
    let store = MemoryStore::new();
    let handle = store.clone();
    let clock = Arc::new(ManualClock::new(T0));
    let mut entropy = SeededEntropy::new(18);
    let key = MasterKey::generate(&mut entropy);
    let service = Service::new(
        Box::new(store),
        clock.clone(),
        Box::new(entropy),
        key,
        test_config(),
    )
    .unwrap();
    (service, handle, clock)
}

#[test]
fn a_login_and_its_audit_events_are_written_together_or_not_at_all() {
    let (service, handle, clock) = service_with_failing_audit();
    let (_, codes) = enrolled(&service, &clock, "quinn");
    let before = service.audit_log(None, 1_000).unwrap();

    handle.fail_audit_writes(true);
    let refused = service
        .login("quinn", PASSWORD, Some(&codes[0]))
        .unwrap_err();
    assert!(matches!(refused, Error::Store(_)), "{refused:?}");
    assert_eq!(
        service.code_status("quinn").unwrap().remaining,
        10,
        "a login whose event cannot be written spends no code"
    );
    let wrong = service
        .login("quinn", "not the password", None)
        .unwrap_err();
    assert!(matches!(wrong, Error::Store(_)), "{wrong:?}");
    // Fail closed: both attempts were counted before anything was verified, and no success
    // settled them; only the events of what was decided after (a spent code, a failure's
    // reason) are missing, with what they record.
    assert_eq!(
        service
            .account_summary("quinn")
            .unwrap()
            .consecutive_failures,
        2,
        "attempts are counted before they are verified"
    );
    assert_eq!(service.audit_log(None, 1_000).unwrap(), before);

    handle.fail_audit_writes(false);
    let ok = service.login("quinn", PASSWORD, Some(&codes[0])).unwrap();
    assert_eq!(ok.remaining_codes, 9);
    let after = service.audit_log(None, 1_000).unwrap();
    let kinds: Vec<&AuditKind> = after[before.len()..].iter().map(|e| &e.kind).collect();
    assert_eq!(
        kinds,
        [
            &AuditKind::BackupCodeUsed {
                slot: 0,
                remaining: 9
            },
            &AuditKind::LoginSucceeded {
                method: LoginMethod::BackupCode
            },
        ]
    );
}

#[test]
fn regenerated_codes_and_their_event_are_written_together_and_no_code_is_lost() {
    let (service, handle, clock) = service_with_failing_audit();
    let (_, old) = enrolled(&service, &clock, "quinn");
    let proof = service.step_up("quinn", PASSWORD, &old[9]).unwrap();
    let before = service.audit_log(None, 1_000).unwrap().len();

    // The new set and its event go in one step: when the event cannot be written, no new set
    // replaces the old one, so no code is shown that would not work and none that works is lost.
    handle.fail_audit_writes(true);
    let err = service.regenerate_codes("quinn", &proof).unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    assert_eq!(service.audit_log(None, 1_000).unwrap().len(), before);
    handle.fail_audit_writes(false);
    assert!(service.login("quinn", PASSWORD, Some(&old[0])).is_ok());
}

#[test]
fn a_step_up_spends_its_code_with_its_event_or_not_at_all() {
    let (service, handle, clock) = service_with_failing_audit();
    let (_, codes) = enrolled(&service, &clock, "una");
    let before = service.audit_log(Some("una"), 1_000).unwrap().len();

    // The step-up's backup code goes the login's way: spent in one step with its event, so
    // when the event cannot be written the code is not spent and no step-up is made.
    handle.fail_audit_writes(true);
    let err = service.step_up("una", PASSWORD, &codes[0]).unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    handle.fail_audit_writes(false);
    assert_eq!(service.code_status("una").unwrap().remaining, 10);
    assert_eq!(service.audit_log(Some("una"), 1_000).unwrap().len(), before);

    // Once it can be written: the use is recorded, and no login (the step-up is no login).
    let proof = service.step_up("una", PASSWORD, &codes[0]).unwrap();
    let after = service.audit_log(Some("una"), 1_000).unwrap();
    let kinds: Vec<&AuditKind> = after[before..].iter().map(|e| &e.kind).collect();
    assert_eq!(
        kinds,
        [&AuditKind::BackupCodeUsed {
            slot: 0,
            remaining: 9
        }]
    );
    assert_eq!(
        service.account_summary("una").unwrap().consecutive_failures,
        0,
        "the finished step-up settled its counted attempts"
    );
    assert_eq!(
        service.regenerate_codes("una", &proof).unwrap().codes.len(),
        10
    );
}

// ----- fail closed ----------------------------------------------------------------------------

use sparekey::core::store::{Store, StoreError};
use sparekey::core::throttle::ThrottlePolicy;
use sparekey::store::faulty::{self, FaultyStore};

/// A service on a memory store behind a [`FaultyStore`] the test can make refuse writes.
fn service_with_faulty_store(seed: u64) -> (Service, FaultyStore<MemoryStore>, Arc<ManualClock>) {
    let store = FaultyStore::new(MemoryStore::new());
    let handle = store.clone();
    let clock = Arc::new(ManualClock::new(T0));
    let mut entropy = SeededEntropy::new(seed);
    let key = MasterKey::generate(&mut entropy);
    let service = Service::new(
        Box::new(store),
        clock.clone(),
        Box::new(entropy),
        key,
        test_config(),
    )
    .unwrap();
    (service, handle, clock)
}

#[test]
fn a_store_that_cannot_count_the_attempt_gets_one_answer_and_no_hash() {
    let (service, store, clock) = service_with_faulty_store(30);
    let (secret, codes) = enrolled(&service, &clock, "rita");
    service.create_account("sam", PASSWORD).unwrap();
    service.set_operator_password("operator secret").unwrap();
    let totp = code_for(&secret, clock.now_for_tests());

    store.refuse_writes(true);
    let full = Error::Store(StoreError::Unavailable(faulty::REFUSED.into()));
    let hashes = service.hash_evaluations();
    let attempts: [(&str, Result<(), Error>); 10] = [
        (
            "right password, code",
            service.login("rita", PASSWORD, Some(&codes[0])).map(drop),
        ),
        (
            "wrong password, code",
            service
                .login("rita", "not it at all", Some(&codes[0]))
                .map(drop),
        ),
        (
            "right password, totp",
            service.login("rita", PASSWORD, Some(&totp)).map(drop),
        ),
        (
            "wrong password, totp",
            service
                .login("rita", "not it at all", Some(&totp))
                .map(drop),
        ),
        (
            "password only, right",
            service.login("sam", PASSWORD, None).map(drop),
        ),
        (
            "password only, wrong",
            service.login("sam", "not it at all", None).map(drop),
        ),
        (
            "step-up, right",
            service.step_up("rita", PASSWORD, &codes[1]).map(drop),
        ),
        (
            "step-up, wrong",
            service
                .step_up("rita", "not it at all", &codes[1])
                .map(drop),
        ),
        (
            "operator, right",
            service.start_operator_session("operator secret").map(drop),
        ),
        (
            "operator, wrong",
            service.start_operator_session("not it at all").map(drop),
        ),
    ];
    for (what, answer) in attempts {
        assert_eq!(answer, Err(full.clone()), "{what}");
    }
    assert_eq!(
        service.hash_evaluations(),
        hashes,
        "nothing may be verified while the attempt cannot be counted"
    );
    assert!(
        store.refused() >= 10,
        "every attempt tried to count itself first"
    );

    // Nothing changed, and all works once writes do.
    store.refuse_writes(false);
    assert_eq!(
        service
            .account_summary("rita")
            .unwrap()
            .consecutive_failures,
        0
    );
    assert_eq!(service.code_status("rita").unwrap().remaining, 10);
    assert!(service.login("rita", PASSWORD, Some(&codes[0])).is_ok());
    assert!(service.login("sam", PASSWORD, None).is_ok());
    assert!(service.start_operator_session("operator secret").is_ok());
}

#[test]
fn an_unknown_name_on_a_store_that_cannot_count_answers_as_a_real_one() {
    let (service, store, _clock) = service_with_faulty_store(34);
    service.create_account("sam", PASSWORD).unwrap();
    store.refuse_writes(true);
    let hashes = service.hash_evaluations();
    let real = service.login("sam", "not it at all", None).map(drop);
    let unknown = service.login("nobody", "not it at all", None).map(drop);
    let full = Err(Error::Store(StoreError::Unavailable(
        faulty::REFUSED.into(),
    )));
    assert_eq!(real, full);
    assert_eq!(unknown, full, "an unknown name told itself apart");
    assert_eq!(service.hash_evaluations(), hashes, "no dummy hash either");
    // Once writes work, the unknown name is the usual "wrong name or password".
    store.refuse_writes(false);
    assert_eq!(
        reason(service.login("nobody", "not it at all", None).unwrap_err()),
        RejectReason::WrongNameOrPassword
    );
}

#[test]
fn a_step_up_authorizes_one_change_of_a_factor_not_the_next() {
    let (service, clock) = memory_service(35);
    let (_, codes) = enrolled(&service, &clock, "eve");
    let proof = service.step_up("eve", PASSWORD, &codes[0]).unwrap();
    service.regenerate_codes("eve", &proof).unwrap();
    // The codes it proved are gone: it proves nothing about the new set.
    for err in [
        service
            .regenerate_codes("eve", &proof)
            .map(drop)
            .unwrap_err(),
        service.disable_two_factor("eve", &proof).unwrap_err(),
        service
            .begin_reenrollment("eve", &proof)
            .map(drop)
            .unwrap_err(),
    ] {
        assert!(matches!(err, Error::StepUpNeeded(_)), "{err:?}");
    }
    assert!(service.account_summary("eve").unwrap().two_factor);

    // Nor does one that replaced the authenticator authorize anything after it.
    let (_, codes) = enrolled(&service, &clock, "fay");
    let proof = service.step_up("fay", PASSWORD, &codes[0]).unwrap();
    let new = service.begin_reenrollment("fay", &proof).unwrap();
    let now = clock.now_for_tests();
    service
        .confirm_reenrollment("fay", &code_for(&new.secret, now), &proof)
        .unwrap();
    let err = service.disable_two_factor("fay", &proof).unwrap_err();
    assert!(matches!(err, Error::StepUpNeeded(_)), "{err:?}");
    let err = service
        .regenerate_codes("fay", &proof)
        .map(drop)
        .unwrap_err();
    assert!(matches!(err, Error::StepUpNeeded(_)), "{err:?}");
}

#[test]
fn a_typo_is_refused_before_the_attempt_is_counted() {
    let (service, store, clock) = service_with_faulty_store(31);
    let (_, codes) = enrolled(&service, &clock, "tess");
    let mut typo: Vec<char> = codes[0].chars().collect();
    typo[1] = if typo[1] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    store.refuse_writes(true);
    // Cheap checks come before the reservation: a typo is a typo even on a full disk.
    let err = service.login("tess", PASSWORD, Some(&typo)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let err = service.login("tess", PASSWORD, Some("12345")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(store.refused(), 0, "no write was even tried");
}

/// A service on a sled store in `dir` with `policy`.
fn sled_service(dir: &std::path::Path, policy: ThrottlePolicy) -> Service {
    let paths =
        sparekey::app::Paths::resolve(Some(dir.join("data")), Some(dir.join("key"))).unwrap();
    sparekey::app::open_with(
        &paths,
        sparekey::core::service::Config {
            throttle: policy,
            ..test_config()
        },
        Arc::new(ManualClock::new(T0)),
        Box::new(SeededEntropy::new(32)),
    )
    .unwrap()
}

#[test]
fn parallel_attempts_on_one_sled_store_never_verify_more_than_the_policy() {
    // No delay before the lock, so only the lock bounds the attempts: every thread that got
    // past a stale gate check would verify, and count, one more guess.
    let policy = ThrottlePolicy {
        free_failures: 1_000,
        lock_after: 3,
        ..ThrottlePolicy::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let service = sled_service(dir.path(), policy);
    service.create_account("uma", PASSWORD).unwrap();
    // Ten rounds, unlocked in between: a race that loses once in a while still shows.
    let threads = 16;
    for round in 0..10 {
        let hashes = service.hash_evaluations();
        let barrier = std::sync::Barrier::new(threads);
        let answers: Vec<Error> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        service.login("uma", "not the password", None).unwrap_err()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let verified = answers
            .iter()
            .filter(|e| matches!(e, Error::Rejected(_)))
            .count();
        let locked = answers
            .iter()
            .filter(|e| matches!(e, Error::Locked(_)))
            .count();
        assert_eq!(verified + locked, threads, "round {round}: {answers:?}");
        assert_eq!(
            verified, 3,
            "round {round}: only the policy's attempts are verified"
        );
        assert_eq!(service.hash_evaluations() - hashes, 3, "round {round}");
        let summary = service.account_summary("uma").unwrap();
        assert_eq!((summary.consecutive_failures, summary.locked), (3, true));
        if round < 9 {
            service.unlock("uma").unwrap();
        }
    }
    // Locked now: even the right password is refused without a hash.
    let hashes = service.hash_evaluations();
    assert!(matches!(
        service.login("uma", PASSWORD, None),
        Err(Error::Locked(_))
    ));
    assert_eq!(service.hash_evaluations(), hashes);
}

#[test]
fn a_success_cannot_clear_a_lock_that_other_attempts_reached_meanwhile() {
    // The settling step re-checks the gate: here the stored record says three other attempts
    // failed since this one was counted, which locks the account, so the right code is refused.
    let policy = ThrottlePolicy {
        free_failures: 1_000,
        lock_after: 3,
        ..ThrottlePolicy::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let service = sled_service(dir.path(), policy);
    service.create_account("vic", PASSWORD).unwrap();
    drop(service);
    let store = open_store_keyed(
        &dir.path().join("data").join("store"),
        &dir.path().join("key"),
    )
    .unwrap();
    let check = sparekey::core::store::SettleCheck { policy };
    for _ in 0..4 {
        let _ = store.reserve_attempt(
            "vic",
            &ThrottlePolicy {
                lock_after: 10,
                ..policy
            },
            T0,
        );
    }
    let settled = store
        .record_password_login("vic", T0, &check, &|_| Vec::new())
        .unwrap();
    assert_eq!(settled, sparekey::core::store::Settlement::Locked);
    assert_eq!(
        store
            .load_account("vic")
            .unwrap()
            .unwrap()
            .failures
            .consecutive,
        4
    );
    // With only its own count and two others, the last allowed attempt still succeeds.
    store.clear_failures("vic", T0, &|_| Vec::new()).unwrap();
    for _ in 0..3 {
        store.reserve_attempt("vic", &policy, T0).unwrap();
    }
    let settled = store
        .record_password_login("vic", T0, &check, &|_| Vec::new())
        .unwrap();
    assert_eq!(settled, sparekey::core::store::Settlement::Settled);
    assert_eq!(
        store
            .load_account("vic")
            .unwrap()
            .unwrap()
            .failures
            .consecutive,
        0
    );
}

// ----- audit ----------------------------------------------------------------------------------

#[test]
fn every_change_is_written_with_its_event_or_not_at_all() {
    let (service, handle, clock) = service_with_failing_audit();
    let (secret, _) = enrolled(&service, &clock, "wes");
    service.create_account("xan", PASSWORD).unwrap();
    let now = clock.now_for_tests();
    let proof = service
        .step_up("wes", PASSWORD, &code_for(&secret, now))
        .unwrap();
    let before = service.audit_log(None, 1_000).unwrap();

    handle.fail_audit_writes(true);
    let refused = |what: &str, result: Result<(), Error>| {
        assert!(matches!(result, Err(Error::Store(_))), "{what}: {result:?}");
    };
    refused("create", service.create_account("yves", PASSWORD));
    refused("remove", service.remove_account("xan"));
    refused("enroll", service.begin_enrollment("xan", None).map(drop));
    refused("reset", service.reset_two_factor("wes"));
    refused("unlock", service.unlock("wes"));
    refused(
        "operator password",
        service.set_operator_password("operator secret"),
    );
    refused("operator recovery", service.clear_operator_failures());
    refused("disable", service.disable_two_factor("wes", &proof));
    handle.fail_audit_writes(false);
    assert_eq!(
        service.audit_log(None, 1_000).unwrap(),
        before,
        "no event without its change"
    );
    assert!(
        service.account_summary("yves").is_err(),
        "no change without its event"
    );
    assert!(service.account_summary("xan").is_ok());
    assert!(!service.account_summary("xan").unwrap().enrollment_pending);
    assert!(service.account_summary("wes").unwrap().two_factor);
    assert!(!service.has_operator_password().unwrap());

    service.create_account("yves", PASSWORD).unwrap();
    service.remove_account("xan").unwrap();
    service.unlock("wes").unwrap();
    service.reset_two_factor("wes").unwrap();
    service.set_operator_password("operator secret").unwrap();
    service.clear_operator_failures().unwrap();
    let enrollment = service.begin_enrollment("yves", None).unwrap();
    service
        .confirm_enrollment("yves", &code_for(&enrollment.secret, now))
        .unwrap();
    let after = service.audit_log(None, 1_000).unwrap();
    let kinds: Vec<(&str, &AuditKind)> = after[before.len()..]
        .iter()
        .map(|e| (e.account.as_str(), &e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("yves", &AuditKind::AccountCreated),
            ("xan", &AuditKind::AccountRemoved),
            ("wes", &AuditKind::Unlocked),
            ("wes", &AuditKind::TwoFactorReset),
            ("kiosk:operator", &AuditKind::OperatorPasswordSet),
            ("kiosk:operator", &AuditKind::OperatorFailuresCleared),
            ("yves", &AuditKind::EnrollmentStarted),
            ("yves", &AuditKind::TwoFactorEnrolled),
            ("yves", &AuditKind::CodesRegenerated { count: 10 }),
        ]
    );
}

#[test]
fn refused_attempts_on_a_throttled_account_are_one_event_per_delay_window() {
    let (service, clock) = memory_service(33);
    service.create_account("zoe", PASSWORD).unwrap();
    for _ in 0..5 {
        service.login("zoe", "not the password", None).unwrap_err();
    }
    let events = || service.audit_log(Some("zoe"), 10_000).unwrap();
    let before = events().len();
    for _ in 0..300 {
        assert!(matches!(
            service.login("zoe", PASSWORD, None),
            Err(Error::Throttled { .. })
        ));
    }
    let after = events();
    assert_eq!(after.len(), before + 1, "300 refusals, one event");
    assert_eq!(
        after.last().unwrap().kind,
        AuditKind::AttemptsRefused {
            count: 300,
            locked: false
        }
    );
    assert_eq!(
        after.last().unwrap().kind.to_string(),
        "300 attempts refused while throttled"
    );
    // The next window (after one more failure) gets its own event.
    clock.advance(30);
    service.login("zoe", "not the password", None).unwrap_err();
    service.login("zoe", PASSWORD, None).unwrap_err();
    let last = events().last().unwrap().kind.clone();
    assert_eq!(
        last,
        AuditKind::AttemptsRefused {
            count: 1,
            locked: false
        }
    );
    assert_eq!(events().len(), before + 3);
}

// ----- TOTP drift -----------------------------------------------------------------------------

#[test]
fn a_clock_running_ahead_burns_only_the_step_it_matched() {
    let (service, clock) = memory_service(34);
    let (secret, _) = enrolled(&service, &clock, "ada");
    let now = clock.now_for_tests();
    let ahead = code_for(&secret, now + 4 * 60);
    let err = service.login("ada", PASSWORD, Some(&ahead)).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("about 4 minutes ahead"), "{message}");
    assert!(
        message.contains("correct its time and the code it shows works at once"),
        "the message says what will work: {message}"
    );
    // The user fixes the clock: the current code works at once.
    let ok = service.login("ada", PASSWORD, Some(&code_for(&secret, now)));
    assert!(ok.is_ok(), "{ok:?}");
    // The steps up to the burned one work in their time; the burned one never does.
    clock.set(now + 4 * 60 - 30);
    assert!(
        service
            .login("ada", PASSWORD, Some(&code_for(&secret, now + 4 * 60 - 30)))
            .is_ok()
    );
    clock.set(now + 4 * 60);
    let err = service.login("ada", PASSWORD, Some(&ahead)).unwrap_err();
    assert_eq!(reason(err), RejectReason::TotpReplay);
    clock.set(now + 4 * 60 + 30);
    assert!(
        service
            .login("ada", PASSWORD, Some(&code_for(&secret, now + 4 * 60 + 30)))
            .is_ok()
    );
}

// ----- step-up: the password alone never replaces the second factor -------------------------

/// Everything about an account that a refused regeneration or re-enrollment must leave as it
/// was.
fn state_of(service: &Service, name: &str) -> (String, String) {
    (
        format!("{:?}", service.account_summary(name).unwrap()),
        format!("{:?}", service.code_status(name).unwrap()),
    )
}

#[test]
fn password_only_reenrollment_is_refused_and_changes_nothing() {
    let (service, clock) = memory_service(31);
    let (secret, codes) = enrolled(&service, &clock, "bob");
    let before = state_of(&service, "bob");
    let events = service.audit_log(Some("bob"), 1_000).unwrap().len();

    // With only bob's password: no new authenticator is started…
    let err = service.begin_enrollment("bob", Some(PASSWORD)).unwrap_err();
    assert!(matches!(err, Error::StepUpNeeded(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("not only the password"), "{err}");
    // …nor confirmed (here with a code of the current one, the strongest an attacker without
    // the new secret could offer).
    let now = clock.now_for_tests();
    let err = service
        .confirm_enrollment("bob", &code_for(&secret, now))
        .unwrap_err();
    assert!(matches!(err, Error::StepUpNeeded(_)), "{err:?}");
    // A step-up needs a code: the password with an empty one is not a login.
    assert!(service.step_up("bob", PASSWORD, "").is_err());

    assert_eq!(state_of(&service, "bob"), before, "nothing changed");
    assert_eq!(
        service.audit_log(Some("bob"), 1_000).unwrap().len(),
        events,
        "nothing to audit: nothing was tried"
    );
    service.login("bob", PASSWORD, Some(&codes[0])).unwrap();
    service
        .login("bob", PASSWORD, Some(&code_for(&secret, now)))
        .unwrap();
}

#[test]
fn a_pending_reenrollment_is_confirmed_only_with_its_step_up() {
    let (service, clock) = memory_service(32);
    let (old, codes) = enrolled(&service, &clock, "cyd");
    let proof = service.step_up("cyd", PASSWORD, &codes[0]).unwrap();
    let new = service.begin_reenrollment("cyd", &proof).unwrap();
    let now = clock.now_for_tests();
    // The holder's pending enrollment cannot be finished by someone with only the password.
    assert!(matches!(
        service.confirm_enrollment("cyd", &code_for(&new.secret, now)),
        Err(Error::StepUpNeeded(_))
    ));
    service
        .confirm_reenrollment("cyd", &code_for(&new.secret, now), &proof)
        .unwrap();
    clock.advance(30);
    let later = clock.now_for_tests();
    assert!(
        service
            .login("cyd", PASSWORD, Some(&code_for(&old, later)))
            .is_err()
    );
}

#[test]
fn a_used_backup_code_cannot_mint_twice() {
    let (service, clock) = memory_service(33);
    let (secret, codes) = enrolled(&service, &clock, "dee");
    service.step_up("dee", PASSWORD, &codes[2]).unwrap();
    assert_eq!(
        reason(service.step_up("dee", PASSWORD, &codes[2]).unwrap_err()),
        RejectReason::BackupCodeAlreadyUsed
    );
    // Nor can a code a login spent, nor a TOTP step already used.
    service.login("dee", PASSWORD, Some(&codes[3])).unwrap();
    assert_eq!(
        reason(service.step_up("dee", PASSWORD, &codes[3]).unwrap_err()),
        RejectReason::BackupCodeAlreadyUsed
    );
    let now = clock.now_for_tests();
    service
        .step_up("dee", PASSWORD, &code_for(&secret, now))
        .unwrap();
    assert_eq!(
        reason(
            service
                .step_up("dee", PASSWORD, &code_for(&secret, now))
                .unwrap_err()
        ),
        RejectReason::TotpReplay
    );
    // A wrong password with a good code mints nothing and spends nothing.
    assert_eq!(
        reason(service.step_up("dee", "nope nope", &codes[4]).unwrap_err()),
        RejectReason::WrongPassword
    );
    assert_eq!(service.code_status("dee").unwrap().remaining, 8);
}

#[test]
fn an_expired_or_foreign_step_up_is_refused_and_changes_nothing() {
    use sparekey::core::step_up::STEP_UP_TTL_SECS;
    let (service, clock) = memory_service(34);
    let (_, codes) = enrolled(&service, &clock, "eve");
    let (_, bobs) = enrolled(&service, &clock, "bob");
    let proof = service.step_up("eve", PASSWORD, &codes[0]).unwrap();
    let before = state_of(&service, "eve");

    // Bob's proof is no proof for eve.
    let bob_proof = service.step_up("bob", PASSWORD, &bobs[0]).unwrap();
    assert!(matches!(
        service.regenerate_codes("eve", &bob_proof),
        Err(Error::StepUpNeeded(_))
    ));

    clock.advance(STEP_UP_TTL_SECS + 1);
    for err in [
        service.regenerate_codes("eve", &proof).map(|_| ()),
        service.begin_reenrollment("eve", &proof).map(|_| ()),
        service.disable_two_factor("eve", &proof),
    ] {
        let err = err.unwrap_err();
        assert!(matches!(err, Error::StepUpNeeded(_)), "{err:?}");
        assert!(err.to_string().contains("more than 5 min ago"), "{err}");
    }
    assert_eq!(state_of(&service, "eve"), before);

    // An account removed and created again under the same name is another account.
    let fresh = service.step_up("eve", PASSWORD, &codes[1]).unwrap();
    service.remove_account("eve").unwrap();
    clock.advance(1);
    enrolled(&service, &clock, "eve");
    assert!(matches!(
        service.regenerate_codes("eve", &fresh),
        Err(Error::StepUpNeeded(_))
    ));
}

#[test]
fn common_and_breached_passwords_are_refused_for_accounts_and_the_operator() {
    let (service, _) = memory_service(35);
    for weak in ["password1", "qwertyuiop", "iloveyou2"] {
        let err = service.create_account("alice", weak).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{weak}");
        assert!(
            err.to_string().contains("common or found in breaches"),
            "{err}"
        );
    }
    // Made of the account's own name: refused too.
    assert!(service.create_account("bernadette", "bernadette1").is_err());
    assert!(
        service.account_summary("alice").is_err(),
        "nothing was created"
    );
    let err = service.set_operator_password("password").unwrap_err();
    assert!(err.to_string().contains("common password"), "{err}");
    assert!(!service.has_operator_password().unwrap());
    service.set_operator_password("operator secret").unwrap();
    service.create_account("alice", PASSWORD).unwrap();
}

#[test]
fn codes_are_never_confirmed_until_their_holder_shows_it() {
    let (service, clock) = memory_service(41);
    service.create_account("alice", PASSWORD).unwrap();
    let enrollment = service.begin_enrollment("alice", None).unwrap();
    let issued = service
        .confirm_enrollment("alice", &code_for(&enrollment.secret, T0))
        .unwrap();
    // Shown and not confirmed (left, or cleared by a kiosk's idle timeout): every face says so.
    let summary = service.account_summary("alice").unwrap();
    assert!(summary.codes_never_confirmed && summary.needs_attention);
    assert!(!summary.codes_low);
    assert!(service.list_accounts().unwrap()[0].codes_never_confirmed);
    assert_eq!(service.code_status("alice").unwrap().confirmed_at, None);
    clock.advance(30);
    let login = service
        .login(
            "alice",
            PASSWORD,
            Some(&code_for(&enrollment.secret, T0 + 30)),
        )
        .unwrap();
    assert!(login.codes_never_confirmed && login.should_regenerate());
    assert!(!login.low_on_codes());

    service.confirm_codes("alice", issued.set_id).unwrap();
    let confirmed_at = T0 + 30;
    assert_eq!(
        service.code_status("alice").unwrap().confirmed_at,
        Some(confirmed_at)
    );
    let summary = service.account_summary("alice").unwrap();
    assert!(!summary.codes_never_confirmed && !summary.needs_attention);
    // Again: nothing changes, the first time stands and no second event is written.
    clock.advance(30);
    service.confirm_codes("alice", issued.set_id).unwrap();
    assert_eq!(
        service.code_status("alice").unwrap().confirmed_at,
        Some(confirmed_at)
    );
    let confirmations = |service: &Service| {
        (service.audit_log(Some("alice"), 100).unwrap().iter())
            .filter(|e| e.kind == AuditKind::CodesConfirmed)
            .count()
    };
    assert_eq!(confirmations(&service), 1);

    // A new set starts unconfirmed; the old set's id never vouches for it.
    clock.advance(30);
    let proof = service
        .step_up("alice", PASSWORD, &code_for(&enrollment.secret, T0 + 90))
        .unwrap();
    let regenerated = service.regenerate_codes("alice", &proof).unwrap();
    assert_ne!(regenerated.set_id, issued.set_id);
    assert!(
        service
            .account_summary("alice")
            .unwrap()
            .codes_never_confirmed
    );
    let stale = service.confirm_codes("alice", issued.set_id).unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Invalid, "{stale}");
    assert!(stale.to_string().contains("replaced meanwhile"), "{stale}");
    assert_eq!(service.code_status("alice").unwrap().confirmed_at, None);
    assert_eq!(confirmations(&service), 1);
    service.confirm_codes("alice", regenerated.set_id).unwrap();
    assert!(
        !service
            .account_summary("alice")
            .unwrap()
            .codes_never_confirmed
    );
    assert!(matches!(
        service.confirm_codes("nobody", 1),
        Err(Error::NotFound(_))
    ));
    // Using a code proves nothing about who kept the set: it stays as it was.
    let bob_codes = {
        service.create_account("bob", PASSWORD).unwrap();
        let e = service.begin_enrollment("bob", None).unwrap();
        let now = clock.now_for_tests();
        service
            .confirm_enrollment("bob", &code_for(&e.secret, now))
            .unwrap()
    };
    let by_code = service
        .login("bob", PASSWORD, Some(bob_codes.codes[0].canonical()))
        .unwrap();
    assert!(by_code.codes_never_confirmed);
    assert!(
        service
            .account_summary("bob")
            .unwrap()
            .codes_never_confirmed
    );
}

/// What one login left behind: store writes it made, the failure count after it, and the audit
/// events it added.
type LoginTrace = (u64, u32, Vec<AuditKind>);

/// Wrong password, right password with a wrong code, both right (TOTP), both right (backup
/// code), each by `login`, on a fresh service behind a [`FaultyStore`] that counts writes.
fn login_traces(
    seed: u64,
    login: impl Fn(&Service, &str, &str) -> Result<sparekey::core::service::LoginSuccess, Error>,
) -> Vec<LoginTrace> {
    let (service, store, clock) = service_with_faulty_store(seed);
    let (secret, codes) = enrolled(&service, &clock, "una");
    let totp = code_for(&secret, clock.now_for_tests());
    let kinds = |service: &Service| -> Vec<AuditKind> {
        let events = service.audit_log(Some("una"), 1_000).unwrap();
        events.into_iter().map(|e| e.kind).collect()
    };
    let cases: [(&str, &str, bool); 4] = [
        ("not it at all", &totp, false),
        (PASSWORD, "000000", false),
        (PASSWORD, &totp, true),
        (PASSWORD, &codes[0], true),
    ];
    let mut traces = Vec::new();
    for (password, factor, ok) in cases {
        let (writes, seen) = (store.writes(), kinds(&service).len());
        assert_eq!(
            login(&service, password, factor).is_ok(),
            ok,
            "{password} {factor}"
        );
        let failures = service.account_summary("una").unwrap().consecutive_failures;
        let added = kinds(&service).split_off(seen);
        traces.push((store.writes() - writes, failures, added));
    }
    traces
}

#[test]
fn a_one_call_login_reserves_its_attempt_once_for_both_factors() {
    let one_call = login_traces(41, |s, password, factor| {
        s.login("una", password, Some(factor))
    });
    let two_step = login_traces(41, |s, password, factor| {
        match s.start_login("una", password)? {
            sparekey::core::service::LoginStep::SecondFactorNeeded(pending) => {
                s.finish_login(&pending, factor)
            }
            done => panic!("una has a second factor: {done:?}"),
        }
    });
    // Counts and events are today's (the two-step path's, unchanged): a wrong password counts
    // one, a right password with a wrong code one more, a full login clears them.
    let counts: Vec<u32> = one_call.iter().map(|t| t.1).collect();
    assert_eq!(counts, [1, 2, 0, 0]);
    for (i, (one, two)) in one_call.iter().zip(&two_step).enumerate() {
        assert_eq!((one.1, &one.2), (two.1, &two.2), "case {i}");
    }
    assert!(matches!(
        one_call[0].2[..],
        [AuditKind::FailedAttempt { consecutive: 1, .. }]
    ));
    assert!(matches!(
        one_call[1].2[..],
        [AuditKind::FailedAttempt { consecutive: 2, .. }]
    ));
    assert_eq!(
        one_call[2].2,
        [AuditKind::LoginSucceeded {
            method: LoginMethod::Totp
        }]
    );
    assert!(matches!(
        one_call[3].2[..],
        [
            AuditKind::BackupCodeUsed { remaining: 9, .. },
            AuditKind::LoginSucceeded {
                method: LoginMethod::BackupCode
            }
        ]
    ));
    // One call is one reservation and the write that fails or settles it; two steps add a
    // release and a second reservation once the password is right.
    let writes = |traces: &[LoginTrace]| traces.iter().map(|t| t.0).collect::<Vec<_>>();
    assert_eq!(writes(&one_call), [2, 2, 2, 2]);
    assert_eq!(writes(&two_step), [2, 4, 4, 4]);
}

//! Owner notifications through the service API, with a recording notifier: which committed
//! operations notify, with which counts, and that a failed, refused or replayed one notifies
//! nothing and that no notification carries a secret.

use std::sync::Arc;

use crate::support::*;
use sparekey::core::account::LOW_CODES;
use sparekey::core::error::Error;
use sparekey::core::notify::{Notification, RecordingNotifier};
use sparekey::core::service::Service;

fn recorded(
    seed: u64,
) -> (
    Service,
    Arc<sparekey::core::clock::ManualClock>,
    Arc<RecordingNotifier>,
) {
    let (service, clock) = memory_service(seed);
    let recorder = Arc::new(RecordingNotifier::default());
    (service.with_notifier(recorder.clone()), clock, recorder)
}

/// Every value a notification carries, as the command would see them.
fn values(seen: &[Notification]) -> Vec<String> {
    (seen.iter())
        .flat_map(|n| {
            sparekey::app::notify::environment(n)
                .into_iter()
                .map(|(_, v)| v)
        })
        .collect()
}

#[test]
fn each_backup_code_use_notifies_its_counts_and_the_low_ones_warn() {
    let (service, clock, rec) = recorded(61);
    let (_, codes) = enrolled(&service, &clock, "ada");
    assert!(rec.seen().is_empty(), "an enrollment is not news");
    let total = codes.len();
    let uses = total - LOW_CODES;
    for code in &codes[..uses] {
        service.login("ada", PASSWORD, Some(code)).unwrap();
    }
    let seen = rec.seen();
    let used: Vec<_> = seen
        .iter()
        .filter(|n| n.event.as_str() == "backup_code_used")
        .collect();
    assert_eq!(used.len(), uses);
    for (i, n) in used.iter().enumerate() {
        assert_eq!(n.account.as_deref(), Some("ada"));
        assert_eq!(n.remaining, Some((total - i - 1) as u32));
        assert_eq!(n.total, Some(total as u32));
    }
    // Only the last use reached the threshold.
    let low: Vec<_> = seen
        .iter()
        .filter(|n| n.event.as_str() == "codes_low")
        .collect();
    assert_eq!(low.len(), 1, "{:?}", rec.events());
    assert_eq!(low[0].remaining, Some(LOW_CODES as u32));
    assert_eq!(rec.events().last(), Some(&"codes_low"));
}

#[test]
fn a_replayed_wrong_or_refused_code_notifies_nothing() {
    let (service, clock, rec) = recorded(62);
    let (secret, codes) = enrolled(&service, &clock, "ada");
    let (_, other) = enrolled(&service, &clock, "bob");
    service.verify_second_factor("ada", &codes[0]).unwrap();
    assert_eq!(rec.events(), ["backup_code_used"]);
    // The same code again, another account's code, a typo, a TOTP login: nothing more.
    assert!(service.verify_second_factor("ada", &codes[0]).is_err());
    assert!(service.verify_second_factor("ada", &other[0]).is_err());
    assert!(
        service
            .verify_second_factor("ada", "XXXX-XXXX-XXXX")
            .is_err()
    );
    let now = clock.now_for_tests();
    service
        .login("ada", PASSWORD, Some(&code_for(&secret, now)))
        .unwrap();
    // A step-up refused for its password spends nothing and says nothing.
    assert!(
        service
            .step_up("ada", "not the password", &codes[1])
            .is_err()
    );
    assert_eq!(rec.events(), ["backup_code_used"]);
}

#[test]
fn a_lock_notifies_once_when_it_happens_and_refusals_after_it_nothing() {
    let (service, clock, rec) = recorded(63);
    let (_, codes) = enrolled(&service, &clock, "ada");
    let mut failures = 0;
    while !service.account_summary("ada").unwrap().locked {
        match service.verify_second_factor("ada", "000000") {
            Err(Error::Throttled { seconds_left }) => clock.advance(seconds_left),
            Err(_) => failures += 1,
            Ok(_) => panic!("000000 was accepted"),
        }
        if !service.account_summary("ada").unwrap().locked {
            assert!(
                rec.seen().is_empty(),
                "notified before the lock: {:?}",
                rec.events()
            );
        }
    }
    assert!(failures >= 1);
    assert_eq!(rec.events(), ["account_locked"]);
    assert_eq!(rec.seen()[0].account.as_deref(), Some("ada"));
    // Refused while locked, even with a right code: the lock is old news.
    assert!(service.verify_second_factor("ada", &codes[0]).is_err());
    assert!(service.verify_second_factor("ada", "000000").is_err());
    assert_eq!(rec.events(), ["account_locked"]);
    // An unlock is the operator's own doing.
    service.unlock("ada").unwrap();
    assert_eq!(rec.events(), ["account_locked"]);
}

#[test]
fn a_reset_a_disable_and_a_replacement_notify() {
    let (service, clock, rec) = recorded(64);
    enrolled(&service, &clock, "ada");
    service.reset_two_factor("ada").unwrap();
    assert_eq!(rec.events(), ["two_factor_reset"]);
    // A reset of an unknown account failed: nothing.
    assert!(service.reset_two_factor("nobody").is_err());
    assert_eq!(rec.events(), ["two_factor_reset"]);

    let (secret, codes) = enrolled(&service, &clock, "bob");
    let proof = service.step_up("bob", PASSWORD, &codes[0]).unwrap();
    let new = service.begin_reenrollment("bob", &proof).unwrap();
    clock.advance(30);
    let wrong = code_for(&secret, clock.now_for_tests());
    assert!(service.confirm_reenrollment("bob", &wrong, &proof).is_err());
    assert_eq!(
        rec.events(),
        ["two_factor_reset", "backup_code_used"],
        "the step-up spent a code; the wrong confirmation replaced nothing"
    );
    let right = code_for(&new.secret, clock.now_for_tests());
    service.confirm_reenrollment("bob", &right, &proof).unwrap();
    assert_eq!(rec.events().last(), Some(&"two_factor_replaced"));

    clock.advance(30);
    let proof = service
        .step_up(
            "bob",
            PASSWORD,
            &code_for(&new.secret, clock.now_for_tests()),
        )
        .unwrap();
    service.disable_two_factor("bob", &proof).unwrap();
    assert_eq!(rec.events().last(), Some(&"two_factor_disabled"));
}

#[test]
fn no_notification_carries_a_secret_code_or_password() {
    let (service, clock, rec) = recorded(65);
    let (secret, codes) = enrolled(&service, &clock, "ada");
    for code in &codes[..codes.len() - 1] {
        service.login("ada", PASSWORD, Some(code)).unwrap();
    }
    service.reset_two_factor("ada").unwrap();
    let seen = rec.seen();
    assert!(seen.len() > codes.len(), "{:?}", rec.events());
    let secret_text = secret.to_base32();
    for value in values(&seen) {
        assert!(!value.contains(PASSWORD), "{value}");
        assert!(!value.contains(secret_text.as_str()), "{value}");
        for code in &codes {
            assert!(!value.contains(code.as_str()), "{value}");
            assert!(!value.contains(&code.replace('-', "")), "{value}");
        }
    }
}

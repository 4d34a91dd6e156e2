//! State tests of the console: key events drive whole flows (enrollment, codes shown once,
//! login with a backup code, secure-your-account, settings, kiosk) against an in-memory service,
//! with no terminal. Each assertion fails if its feature breaks.

use crate::support::console::*;
use ratatui::crossterm::event::KeyCode;
use sparekey::core::audit::{AuditKind, LoginMethod};
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::keys::MasterKey;
use sparekey::core::kiosk::OPERATOR_AUDIT_NAME;
use sparekey::core::service::Service;
use sparekey::core::throttle::Gate;
use sparekey::store::memory::MemoryStore;
use sparekey::tui::app::{CODES_IDLE_SECS, CODES_IDLE_WARNING_SECS, Screen};
use sparekey::tui::runtime::{Driver, RecordingPlatform};
use sparekey::tui::screens::codes::Mode;
use sparekey::tui::screens::enroll::Step as EnrollStep;
use sparekey::tui::screens::login::Step as LoginStep;
use std::sync::Arc;

fn codes_screen(h: &H) -> &sparekey::tui::screens::codes::Codes {
    match h.screen() {
        Screen::Codes(c) => c,
        other => panic!("expected the codes screen, got {other:?}"),
    }
}

#[test]
fn enrollment_wizard_to_codes_once_and_proof() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");

    // A wrong code is refused with the attempts left, and the wizard stays on step 3.
    let right = h.totp(&secret);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    h.typed(wrong);
    h.enter();
    assert!(h.status().contains("wrong code"), "{}", h.status());
    assert!(matches!(h.screen(), Screen::Enroll(e) if e.step_number() == 3));

    h.typed(&right);
    h.enter();
    let codes = codes_screen(&h);
    assert_eq!(codes.codes().len(), 10);
    assert_eq!(codes.wizard_step, Some(4));
    let ask = codes.ask;
    let expected = codes.codes()[ask].display().to_string();
    let other = codes.codes()[(ask + 1) % 10].display().to_string();
    assert!(h.d.service.account_summary("alice").unwrap().two_factor);

    // The proof: another code is refused, the asked one (typed in upper case, with spaces) passes.
    h.enter();
    h.typed(&other);
    h.enter();
    assert!(
        h.status().contains(&format!("not code #{}", ask + 1)),
        "{}",
        h.status()
    );
    assert!(codes_screen(&h).holds_codes());
    h.typed(&expected.to_uppercase().replace('-', " "));
    h.enter();
    assert!(
        matches!(h.screen(), Screen::Settings(s) if s.account == "alice"),
        "{:?}",
        h.screen()
    );
    // The codes are gone from the screen: nothing drawn shows them.
    let drawn = h.render(120, 40);
    assert!(
        !drawn.contains(&expected),
        "a code is still drawn after leaving"
    );
    // The proof is recorded, audited, and the settings loaded after it say nothing is amiss.
    assert!(
        !h.d.service
            .account_summary("alice")
            .unwrap()
            .codes_never_confirmed
    );
    let confirmed = h.d.service.audit_log(Some("alice"), 100).unwrap();
    assert_eq!(
        confirmed
            .iter()
            .filter(|e| e.kind == sparekey::core::audit::AuditKind::CodesConfirmed)
            .count(),
        1
    );
    assert!(!drawn.contains("never confirmed"), "{drawn}");
}

#[test]
fn codes_left_unconfirmed_are_flagged_until_a_new_set_is_kept() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    h.typed(&h.totp(&secret));
    h.enter();
    h.esc();
    h.typed("y");
    // Settings: the gauge says so and offers the way out.
    assert!(matches!(h.screen(), Screen::Settings(_)));
    let drawn = h.render(80, 24);
    assert!(
        drawn.contains("10 of 10 unused · never confirmed: press g for a new set"),
        "{drawn}"
    );
    // The list: a badge on the account.
    h.esc();
    assert!(matches!(h.screen(), Screen::Accounts(_)));
    let drawn = h.render(80, 24);
    let row = drawn.lines().find(|l| l.contains("alice")).unwrap();
    assert!(row.contains("⚠ never confirmed"), "{drawn}");
    // Regenerating (password and a current code), then the proof, clears it.
    h.enter();
    h.typed("g");
    h.typed(PASSWORD);
    h.press(KeyCode::Tab);
    h.advance(30);
    h.typed(&h.totp(&secret));
    h.enter();
    let c = codes_screen(&h);
    let asked = c.codes()[c.ask].display().to_string();
    assert!(
        h.d.service
            .account_summary("alice")
            .unwrap()
            .codes_never_confirmed,
        "a new set is unconfirmed until its proof"
    );
    h.enter();
    h.typed(&asked);
    h.enter();
    assert!(matches!(h.screen(), Screen::Settings(_)), "{}", h.status());
    assert!(!h.render(80, 24).contains("never confirmed"));
    h.esc();
    assert!(!h.render(80, 24).contains("never confirmed"));
}

#[test]
fn drifted_clock_is_explained() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    // The code an authenticator 3 minutes ahead would show.
    let ahead =
        sparekey::core::totp::code_at(&secret, h.clock_now() + 180, Default::default()).unwrap();
    h.typed(&ahead);
    h.enter();
    assert!(
        h.status().contains("clock is about 3 minutes ahead"),
        "{}",
        h.status()
    );
}

#[test]
fn leaving_the_codes_asks_first_and_wipes() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    h.typed(&h.totp(&secret));
    h.enter();
    // Esc, q and Ctrl-C all ask; "n" stays.
    for leave in [KeyCode::Esc, KeyCode::Char('q')] {
        h.press(leave);
        assert!(matches!(codes_screen(&h).mode, Mode::ConfirmLeave(_)));
        let drawn = h.render(80, 24);
        assert!(drawn.contains("These codes will never be shown again: leave anyway? (y/n)"));
        h.typed("n");
        assert!(matches!(codes_screen(&h).mode, Mode::Browse));
    }
    h.ctrl('c');
    assert!(
        !h.d.app.quitting,
        "Ctrl-C must not quit while codes are unsaved"
    );
    h.typed("y");
    assert!(h.d.app.quitting, "confirmed Ctrl-C quits");
}

#[test]
fn leave_anyway_goes_on_without_codes() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    h.typed(&h.totp(&secret));
    h.enter();
    h.esc();
    h.typed("y");
    assert!(matches!(h.screen(), Screen::Settings(_)));
    assert!(h.status().contains("wiped"));
}

#[test]
fn copy_then_offer_to_clear_after_a_minute() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    h.typed(&h.totp(&secret));
    h.enter();
    let first = codes_screen(&h).codes()[0].display().to_string();
    h.typed("c");
    let copied = h.d.platform.clipboard.as_ref().expect("copied").to_string();
    assert!(copied.contains(&first));
    assert_eq!(copied.lines().filter(|l| l.contains(". ")).count(), 10);
    // Whose codes they are, and when, as in the export file.
    assert!(
        copied.contains("Issuer:  sparekey\nAccount: alice\nDate:    2024-05-01 12:34 UTC"),
        "{copied}"
    );
    assert!(
        h.status()
            .contains("copied the codes to the system clipboard"),
        "{}",
        h.status()
    );
    assert!(h.render(80, 24).contains("✓ copied"));
    h.advance(59);
    assert!(!h.status().contains("Ctrl-X"));
    h.advance(1);
    assert!(
        h.status().contains("press Ctrl-X to clear it"),
        "{}",
        h.status()
    );
    h.ctrl('x');
    assert!(h.d.platform.clipboard.is_none());
    assert!(h.status().contains("cleared"));
}

#[test]
fn osc52_is_reported_when_used() {
    let mut h = H::new();
    h.d.platform.osc52_only = true;
    let secret = enroll_by_keys(&mut h, "alice");
    h.typed(&h.totp(&secret));
    h.enter();
    h.typed("c");
    // Only sent: no claim that it worked, and no tick.
    assert_eq!(
        h.status(),
        "sent the codes to your terminal's clipboard: paste it to check — not all terminals support this"
    );
    let drawn = h.render(120, 40);
    assert!(!drawn.contains("✓ copied"), "{drawn}");
    assert!(
        drawn.contains("Sent to your terminal's clipboard: paste it to check"),
        "{drawn}"
    );
}

#[test]
fn export_writes_a_new_file_and_never_overwrites() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    h.typed(&h.totp(&secret));
    h.enter();
    let third = codes_screen(&h).codes()[2].display().to_string();
    h.typed("e");
    h.enter();
    let (path, text) = &h.d.platform.files[0];
    // The default name carries the date and time the codes were issued.
    assert_eq!(
        path.to_str().unwrap(),
        "/home/ada/Documents/sparekey-recovery-codes-alice-2024-05-01-1234Z.txt"
    );
    assert!(
        text.contains(&format!(" 3. [ ] {third}")),
        "{}",
        text.as_str()
    );
    assert!(text.contains("Issuer:  sparekey") && text.contains("Account: alice"));
    assert!(text.contains("Date:    2024-05-01 12:34 UTC"));
    assert!(
        h.status()
            .contains("codes written, readable by you only, to /home/ada/Documents/sparekey-recovery-codes-alice-2024-05-01-1234Z.txt")
    );

    // Same name again: refused, the prompt stays open for another name.
    h.typed("e");
    h.enter();
    assert!(h.status().contains("already exists"), "{}", h.status());
    assert!(matches!(codes_screen(&h).mode, Mode::Export(_)));
    h.press(KeyCode::Backspace);
    h.press(KeyCode::Backspace);
    h.press(KeyCode::Backspace);
    h.press(KeyCode::Backspace);
    h.typed("-2.txt");
    h.enter();
    assert_eq!(h.d.platform.files.len(), 2);
    assert!(
        h.d.platform.files[1]
            .0
            .ends_with("sparekey-recovery-codes-alice-2024-05-01-1234Z-2.txt")
    );

    // `~` is the home directory, as in a shell.
    h.typed("e");
    h.ctrl('u');
    h.typed("~/codes.txt");
    h.enter();
    assert_eq!(
        h.d.platform.files[2].0.to_str(),
        Some("/home/ada/codes.txt")
    );
    assert!(
        h.status()
            .contains("codes written, readable by you only, to /home/ada/codes.txt"),
        "{}",
        h.status()
    );
    // A relative path is reported absolute: where it really went.
    h.typed("e");
    h.ctrl('u');
    h.typed("codes.txt");
    h.enter();
    let expected = std::env::current_dir().unwrap().join("codes.txt");
    assert_eq!(h.d.platform.files[3].0, expected);
    assert!(
        h.status()
            .contains(&format!("readable by you only, to {}", expected.display())),
        "{}",
        h.status()
    );
}

#[test]
fn re_enrollment_says_the_codes_will_be_replaced() {
    let mut issued = None;
    let mut h = H::with(false, |s, c| {
        issued = Some(enroll(s, c, "alice").1);
        s.create_account("bob", PASSWORD).unwrap();
    });
    let codes: Vec<String> = issued
        .unwrap()
        .codes
        .iter()
        .map(|c| c.display().to_string())
        .collect();
    // alice has two-factor authentication: step 1 says her codes will be replaced.
    h.typed("e");
    assert!(matches!(h.screen(), Screen::Enroll(e) if e.account == "alice" && e.replaces_codes));
    let drawn = h.render(80, 24);
    assert!(drawn.contains("Step 1 of 4"), "{drawn}");
    assert!(
        drawn.contains("This replaces the current authenticator and backup codes:"),
        "{drawn}"
    );
    assert!(
        drawn.contains("issued and the current backup codes stop working."),
        "{drawn}"
    );
    h.esc();
    // From her settings too: there the prompt for the step-up says so, and the wizard it
    // opens knows it replaces the codes.
    h.enter();
    h.typed("r");
    assert!(matches!(h.screen(), Screen::Settings(s) if s.prompt.is_some()));
    assert!(
        h.render(80, 24)
            .contains("Re-enroll: the backup codes are replaced too."),
        "{}",
        h.render(80, 24)
    );
    h.typed(PASSWORD);
    h.enter();
    h.typed(&codes[0]);
    h.enter();
    assert!(
        matches!(h.screen(), Screen::Enroll(e) if e.replaces_codes && e.step_number() == 2),
        "{}",
        h.status()
    );
    h.esc();
    h.esc();
    // bob has none: nothing to replace.
    h.press(KeyCode::Down);
    h.typed("e");
    assert!(matches!(h.screen(), Screen::Enroll(e) if e.account == "bob" && !e.replaces_codes));
    assert!(
        !h.render(80, 24)
            .contains("current backup codes stop working")
    );
}

fn login(h: &H) -> &sparekey::tui::screens::login::Login {
    match h.screen() {
        Screen::Login(l) => l,
        other => panic!("expected the login screen, got {other:?}"),
    }
}

/// Logs in by keys up to the second-factor prompt.
fn to_second_factor(h: &mut H, name: &str) {
    h.typed("l");
    assert!(matches!(h.screen(), Screen::Login(_)));
    // "l" from the list prefills the selected account; start from a clean name instead.
    if let Screen::Login(l) = h.screen()
        && l.step == LoginStep::Password
    {
        h.esc();
    }
    h.ctrl('u');
    h.typed(name);
    h.enter();
    h.typed(PASSWORD);
    h.enter();
}

#[test]
fn login_with_a_backup_code_then_secure_the_account() {
    let mut codes = None;
    let mut h = H::with(false, |s, c| codes = Some(enroll(s, c, "alice").1));
    let codes = codes.unwrap();
    to_second_factor(&mut h, "alice");
    assert_eq!(login(&h).step, LoginStep::Code, "{}", h.status());
    assert_eq!(login(&h).pending_account(), Some("alice"));
    assert!(login(&h).password.is_empty(), "the password is not kept");
    let drawn = h.render(80, 24);
    assert!(drawn.contains("Enter the 6-digit code from your authenticator"));
    assert!(drawn.contains("or, without your device, a backup code"));
    assert!(drawn.contains("Password: ✓ checked"), "{drawn}");

    // A typo (last character changed) is flagged live and on Enter, and costs no attempt.
    let good = codes.codes[4].display().to_string();
    let mut typo = good.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    h.typed(&typo);
    assert!(h.render(80, 24).contains("check for typos"));
    h.enter();
    assert!(
        h.status()
            .contains("not a valid backup code: check for typos (no attempt was used)"),
        "{}",
        h.status()
    );
    assert_eq!(
        h.d.service
            .account_summary("alice")
            .unwrap()
            .consecutive_failures,
        0
    );
    // The typo stays to be corrected, and the pending login stays for the retry.
    assert_eq!(login(&h).code.as_str(), typo);
    assert_eq!(login(&h).pending_account(), Some("alice"));

    h.ctrl('u');
    h.typed(&good.to_uppercase());
    h.enter();
    let Screen::Secure(secure) = h.screen() else {
        panic!("{:?} {}", h.screen(), h.status())
    };
    assert_eq!(secure.success.method, LoginMethod::BackupCode);
    assert_eq!(secure.success.remaining_codes, 9);
    let drawn = h.render(80, 24);
    assert!(drawn.contains("You signed in with a backup code. 9 of 10 codes remain."));
    assert!(!drawn.contains("generate a new set"), "9 codes are not low");

    // r re-enrolls.
    h.typed("r");
    assert!(matches!(h.screen(), Screen::Enroll(e) if e.account == "alice"));
}

#[test]
fn low_codes_offer_regeneration_after_a_backup_login() {
    let mut codes = None;
    let mut h = H::with(false, |s, c| {
        let issued = enroll(s, c, "alice").1;
        for code in &issued.codes[..7] {
            s.login("alice", PASSWORD, Some(code.canonical())).unwrap();
        }
        codes = Some(issued);
    });
    let codes = codes.unwrap();
    to_second_factor(&mut h, "alice");
    h.typed(&codes.codes[8].display());
    h.enter();
    let Screen::Secure(secure) = h.screen() else {
        panic!("{}", h.status())
    };
    assert!(secure.success.low_on_codes());
    assert!(h.render(80, 24).contains("Only 2 backup codes left"));
    // The login just made a step-up: g asks only for a confirmation.
    h.typed("g");
    assert!(h.render(80, 24).contains("Press Enter to confirm"));
    h.enter();
    let c = codes_screen(&h);
    assert_eq!(c.codes().len(), 10);
    assert_eq!(c.wizard_step, None);
    // The old set is gone.
    assert_eq!(h.d.service.code_status("alice").unwrap().remaining, 10);
}

#[test]
fn throttling_shows_a_live_countdown_and_locking_says_so() {
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
        fail_logins(s, c, "alice", 5);
    });
    // The delay is known only from the core's answer to the password, and the login stays at
    // the password with nothing pending.
    to_second_factor(&mut h, "alice");
    // The panel counts down; a status line saying "30 s" would go stale.
    assert_eq!(h.status(), "");
    assert_eq!(login(&h).step, LoginStep::Password);
    assert_eq!(login(&h).pending_account(), None);
    assert_eq!(login(&h).gate, Some(Gate::Delayed { seconds_left: 30 }));
    assert!(login(&h).password.is_empty());
    assert!(h.render(80, 24).contains("next attempt allowed in 30 s"));
    h.advance(12);
    assert!(h.render(80, 24).contains("next attempt allowed in 18 s"));
    // While the delay runs, Enter does not ask the core (no throttled event in the log).
    let audit_before = h.d.service.audit_log(Some("alice"), 1000).unwrap().len();
    h.typed(PASSWORD);
    h.enter();
    assert_eq!(
        h.d.service.audit_log(Some("alice"), 1000).unwrap().len(),
        audit_before
    );
    h.advance(18);
    assert_eq!(login(&h).gate, None);
    assert!(h.status().contains("try again now"));
    h.enter();
    assert_eq!(login(&h).step, LoginStep::Code, "{}", h.status());

    let mut h = H::with(false, |s, c| {
        enroll(s, c, "bob");
        fail_logins(s, c, "bob", 20);
    });
    to_second_factor(&mut h, "bob");
    assert_eq!(login(&h).gate, Some(Gate::Locked));
    assert!(h.render(80, 24).contains("or runs: sparekey unlock bob"));
}

#[test]
fn nothing_is_asked_before_the_password() {
    use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
    use sparekey::tui::app::{Msg, update};
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
        fail_logins(s, c, "alice", 20);
    });
    let key = |code| Msg::Key(KeyEvent::new(code, KeyModifiers::NONE));
    // From the list: `l` opens the login at the password without any call.
    let effects = update(&mut h.d.app, key(KeyCode::Char('l')));
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(login(&h).step, LoginStep::Password);
    h.esc();
    // Typed names: an enrolled, locked account and an unknown one look the same, and neither
    // is looked up, until the password is sent.
    let mut screens = vec![];
    // Names of the same length, so the two frames can be compared whole.
    for name in ["alice", "zelda"] {
        h.ctrl('u');
        h.typed(name);
        let effects = update(&mut h.d.app, key(KeyCode::Enter));
        assert!(effects.is_empty(), "{name}: {effects:?}");
        assert_eq!(login(&h).gate, None);
        h.advance(1);
        screens.push(h.render(80, 24).replace(name, "NAME"));
        h.esc();
    }
    assert_eq!(screens[0], screens[1]);
}

#[test]
fn a_countdown_stays_with_its_account() {
    use sparekey::tui::app::{Msg, update};
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "bob");
        fail_logins(s, c, "bob", 20);
        // Last, so that bob's delays do not run out alice's.
        enroll(s, c, "alice");
        fail_logins(s, c, "alice", 5);
    });
    to_second_factor(&mut h, "alice");
    assert_eq!(login(&h).gate, Some(Gate::Delayed { seconds_left: 30 }));
    // Back to another name: alice's countdown must not turn into a look-up of bob.
    h.esc();
    h.ctrl('u');
    h.typed("bob");
    h.clock.advance(1);
    let now = h.clock_now();
    let effects = update(&mut h.d.app, Msg::Tick(now));
    assert!(effects.is_empty(), "{effects:?}");
    h.enter();
    h.advance(1);
    assert_eq!(login(&h).gate, None);
    assert!(!h.render(80, 24).contains("locked"));
}

#[test]
fn unknown_account_reads_as_a_wrong_password() {
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
    });
    to_second_factor(&mut h, "nobody");
    assert_eq!(h.status(), "wrong account name or password");
    assert_eq!(login(&h).step, LoginStep::Password);
    assert!(login(&h).password.is_empty());
    h.esc();
    h.ctrl('u');
    h.typed("alice");
    h.enter();
    h.typed("not the password");
    h.enter();
    assert_eq!(h.status(), "wrong account name or password");
    assert_eq!(login(&h).step, LoginStep::Password);
}

#[test]
fn wrong_code_keeps_the_pending_login_for_a_retry() {
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| secret = enroll(s, c, "alice").0);
    // The enrollment spent the current step's code.
    h.advance(30);
    to_second_factor(&mut h, "alice");
    // Too short: the core's parser says so, and no attempt is spent.
    h.typed("123");
    h.enter();
    assert!(
        h.status()
            .contains("enter the 6-digit code from your authenticator (no attempt was used)"),
        "{}",
        h.status()
    );
    assert_eq!(
        h.d.service
            .account_summary("alice")
            .unwrap()
            .consecutive_failures,
        0
    );
    assert_eq!(login(&h).pending_account(), Some("alice"));
    h.press(KeyCode::Backspace);
    h.press(KeyCode::Backspace);
    h.press(KeyCode::Backspace);

    let right = h.totp(&secret);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    h.typed(wrong);
    h.enter();
    assert!(h.status().starts_with("wrong code"), "{}", h.status());
    assert_eq!(login(&h).step, LoginStep::Code);
    assert!(login(&h).code.is_empty());
    assert_eq!(login(&h).pending_account(), Some("alice"));
    assert_eq!(
        h.d.service
            .account_summary("alice")
            .unwrap()
            .consecutive_failures,
        1
    );
    // The same pending login, no password again.
    h.typed(&right);
    h.enter();
    let Screen::Secure(secure) = h.screen() else {
        panic!("{:?} {}", h.screen(), h.status())
    };
    assert_eq!(secure.success.method, LoginMethod::Totp);
    assert_eq!(h.status(), "signed in as 'alice' with the authenticator");
}

#[test]
fn a_delay_at_the_code_step_counts_down_then_the_same_login_goes_on() {
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| {
        secret = enroll(s, c, "alice").0;
        fail_logins(s, c, "alice", 4);
    });
    to_second_factor(&mut h, "alice");
    let wrong = if h.totp(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    h.typed(wrong);
    h.enter();
    assert!(
        h.status().contains("wait 30 s before the next attempt"),
        "{}",
        h.status()
    );
    assert_eq!(login(&h).gate, Some(Gate::Delayed { seconds_left: 30 }));
    assert_eq!(login(&h).step, LoginStep::Code);
    h.advance(10);
    assert!(h.render(80, 24).contains("next attempt allowed in 20 s"));
    h.advance(20);
    assert!(h.status().contains("try again now"));
    h.typed(&h.totp(&secret));
    h.enter();
    assert!(
        matches!(h.screen(), Screen::Secure(_)),
        "{:?} {}",
        h.screen(),
        h.status()
    );
}

#[test]
fn an_expired_pending_login_asks_for_the_password_again() {
    use sparekey::core::service::PENDING_LOGIN_TTL_SECS;
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| secret = enroll(s, c, "alice").0);
    to_second_factor(&mut h, "alice");
    h.advance(PENDING_LOGIN_TTL_SECS + 1);
    h.typed(&h.totp(&secret));
    h.enter();
    assert!(
        h.status().contains("enter the password again"),
        "{}",
        h.status()
    );
    assert_eq!(login(&h).step, LoginStep::Password);
    assert_eq!(login(&h).pending_account(), None);
    assert!(login(&h).code.is_empty());
    // Starting again works, with a fresh code.
    h.typed(PASSWORD);
    h.enter();
    assert_eq!(login(&h).step, LoginStep::Code, "{}", h.status());
    h.typed(&h.totp(&secret));
    h.enter();
    assert!(matches!(h.screen(), Screen::Secure(_)), "{}", h.status());
}

#[test]
fn escape_from_the_code_drops_the_pending_login() {
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
    });
    to_second_factor(&mut h, "alice");
    // Seven digits are no authenticator code: the core calls them a short backup code…
    h.typed("1234567");
    h.enter();
    assert!(
        h.status().contains("this has 7 (no attempt was used)"),
        "{}",
        h.status()
    );
    // …a verdict that Ctrl-U clears with the field.
    h.ctrl('u');
    assert!(login(&h).live.is_none() && login(&h).code.is_empty());
    assert!(!h.render(80, 24).contains('✗'), "no verdict drawn");
    h.typed("k7p2");
    h.esc();
    assert_eq!(login(&h).step, LoginStep::Password);
    assert_eq!(login(&h).pending_account(), None);
    assert!(login(&h).code.is_empty() && login(&h).password.is_empty());
}

#[test]
fn badges_follow_the_core_flags_and_can_both_show() {
    let h = H::with(false, |s, c| {
        use sparekey::core::clock::Clock as _;
        // Backup code used, codes fine.
        let (_, a) = enroll(s, c, "alice");
        s.login("alice", PASSWORD, Some(a.codes[0].canonical()))
            .unwrap();
        // Codes low, last login with the authenticator.
        let (secret, b) = enroll(s, c, "bob");
        for code in &b.codes[..7] {
            s.login("bob", PASSWORD, Some(code.canonical())).unwrap();
        }
        c.advance(30);
        let totp = sparekey::core::totp::code_at(&secret, c.now(), Default::default()).unwrap();
        s.login("bob", PASSWORD, Some(&totp)).unwrap();
        // Both.
        let (_, d) = enroll(s, c, "dave");
        for code in &d.codes[..8] {
            s.login("dave", PASSWORD, Some(code.canonical())).unwrap();
        }
        // Neither.
        enroll(s, c, "erin");
    });
    let drawn = h.render(120, 40);
    let lines: Vec<&str> = drawn.lines().collect();
    // An account's row and the line under it (where a second badge goes).
    let row = |name: &str| -> (&str, &str) {
        let i = lines
            .iter()
            .position(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{drawn}"));
        (lines[i], lines[i + 1])
    };
    let badge_of = |line: &str| -> String {
        line.split_once('⚠')
            .map(|(_, b)| format!("⚠{}", b.trim_end_matches(['│', '"', ' '])))
            .unwrap_or_default()
    };
    let (alice, under) = row("alice");
    assert_eq!(badge_of(alice), "⚠ backup code used", "{drawn}");
    assert!(under.contains(" bob "), "one badge, one line:\n{drawn}");
    let (bob, under) = row("bob");
    assert_eq!(badge_of(bob), "⚠ codes low", "{drawn}");
    assert!(under.contains(" dave "), "{drawn}");
    let (dave, under) = row("dave");
    assert_eq!(badge_of(dave), "⚠ backup code used", "{drawn}");
    assert_eq!(badge_of(under), "⚠ codes low", "{drawn}");
    assert!(!under.contains("dave") && !under.contains("on"), "{drawn}");
    let (erin, _) = row("erin");
    assert_eq!(badge_of(erin), "", "{drawn}");
}
#[test]
fn settings_show_slots_audit_and_disable() {
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| {
        let (sec, issued) = enroll(s, c, "alice");
        c.advance(60);
        s.login("alice", PASSWORD, Some(issued.codes[1].canonical()))
            .unwrap();
        secret = sec;
    });
    h.enter();
    let Screen::Settings(s) = h.screen() else {
        panic!("{:?}", h.screen())
    };
    assert_eq!(s.account, "alice");
    let drawn = h.render(80, 24);
    assert!(drawn.contains("9 of 10 unused"), "{drawn}");
    assert!(drawn.contains("#2  used 2024-05-01 12:35 UTC"), "{drawn}");
    h.typed("a");
    assert!(h.render(120, 40).contains("login with backup code"));

    h.typed("d");
    h.typed(PASSWORD);
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    assert!(
        h.status().contains("two-factor authentication is off"),
        "{}",
        h.status()
    );
    assert!(!h.d.service.account_summary("alice").unwrap().two_factor);
}

#[test]
fn accounts_filter_and_quit() {
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
        s.create_account("bob", PASSWORD).unwrap();
        s.create_account("alfred", PASSWORD).unwrap();
    });
    h.typed("/al");
    let Screen::Accounts(a) = h.screen() else {
        panic!()
    };
    assert_eq!(
        a.visible().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["alfred", "alice"]
    );
    // While filtering, q is typed, not obeyed.
    h.typed("q");
    assert!(!h.d.app.quitting);
    h.esc();
    h.typed("q");
    assert!(h.d.app.quitting);
}

#[test]
fn help_overlay_lists_the_footer_keys() {
    let mut h = H::new();
    h.typed("?");
    assert!(h.d.app.help);
    let drawn = h.render(80, 24);
    for key in ["new account", "filter", "simulated login", "quit"] {
        assert!(drawn.contains(key), "{key} missing from help");
    }
    h.typed("x");
    assert!(!h.d.app.help);
}

#[test]
fn kiosk_first_start_operator_gate_and_idle() {
    let mut h = H::with(true, |s, c| {
        enroll(s, c, "alice");
    });
    assert!(matches!(h.screen(), Screen::Operator(o) if o.is_first_start()));
    h.typed("operator-pass");
    h.enter();
    h.typed("operator-pass");
    h.enter();
    assert!(matches!(h.screen(), Screen::Login(_)), "{}", h.status());
    assert!(h.d.service.has_operator_password().unwrap());

    // Leaving the login needs the operator password.
    h.esc();
    assert!(matches!(h.screen(), Screen::Operator(o) if !o.is_first_start()));
    h.typed("wrong operator");
    h.enter();
    assert!(h.status().contains("wrong password"));
    h.typed("operator-pass");
    h.enter();
    assert!(matches!(h.screen(), Screen::Accounts(_)));

    // Idle for the timeout: back to a clean login.
    h.advance(59);
    assert!(matches!(h.screen(), Screen::Accounts(_)));
    h.advance(1);
    assert!(matches!(h.screen(), Screen::Login(l) if l.is_pristine()));
    assert!(h.d.app.operator.is_none());

    // Quitting a kiosk needs the operator too.
    h.ctrl('c');
    assert!(!h.d.app.quitting);
    assert!(matches!(h.screen(), Screen::Operator(_)));
    h.typed("operator-pass");
    h.enter();
    assert!(h.d.app.quitting);
}

/// The kiosk's own events, as the store holds them: (seconds after the console started, kind).
fn kiosk_log(h: &H) -> Vec<(i64, AuditKind)> {
    h.d.service
        .audit_log(Some(OPERATOR_AUDIT_NAME), 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.at - CONSOLE_T0, e.kind))
        .collect()
}

#[test]
fn kiosk_start_operator_attempts_idle_clear_and_quit_are_audited() {
    let mut h = H::with(true, |s, _| {
        s.set_operator_password("operator-pass").unwrap()
    });
    let set = (0, AuditKind::OperatorPasswordSet);
    assert_eq!(kiosk_log(&h), [set.clone(), (0, AuditKind::KioskStarted)]);

    h.esc();
    h.typed("wrong operator");
    h.enter();
    h.typed("operator-pass");
    h.enter();
    assert!(matches!(h.screen(), Screen::Accounts(_)), "{}", h.status());
    h.advance(60);
    assert!(matches!(h.screen(), Screen::Login(_)));
    // Nothing sensitive on screen: no clear, so no event, however long it stays idle.
    h.advance(600);
    h.ctrl('c');
    h.typed("operator-pass");
    h.enter();
    assert!(h.d.app.quitting);
    assert_eq!(
        kiosk_log(&h),
        [
            set,
            (0, AuditKind::KioskStarted),
            (0, AuditKind::OperatorFailedAttempt { consecutive: 1 }),
            (0, AuditKind::OperatorSignedIn),
            (60, AuditKind::KioskIdleCleared),
            (660, AuditKind::OperatorSignedIn),
            (660, AuditKind::KioskQuit),
        ]
    );
}

#[test]
fn a_console_that_is_not_a_kiosk_audits_no_kiosk_event() {
    let mut h = H::new();
    h.advance(3_600);
    h.typed("q");
    assert!(h.d.app.quitting);
    assert_eq!(kiosk_log(&h), []);
}

#[test]
fn a_kiosk_whose_audit_log_cannot_be_written_goes_on_and_says_so() {
    let clock = Arc::new(ManualClock::new(CONSOLE_T0));
    let store = MemoryStore::new();
    let handle = store.clone();
    let mut entropy = SeededEntropy::new(7);
    let key = MasterKey::generate(&mut entropy);
    let service = Service::new(
        Box::new(store),
        clock.clone(),
        Box::new(entropy),
        key,
        crate::support::test_config(),
    )
    .unwrap();
    service.set_operator_password("operator-pass").unwrap();
    handle.fail_audit_writes(true);
    let d = Driver::new(service, RecordingPlatform::default(), options(true));
    let mut h = H { d, clock };
    assert!(matches!(h.screen(), Screen::Login(_)));
    assert!(
        h.status().contains("could not write the kiosk's audit log"),
        "{}",
        h.status()
    );
    assert!(!h.d.app.working(), "nothing waits for the event");
    // Typing goes on; the idle clear still clears.
    h.typed("mallory");
    h.advance(60);
    assert!(matches!(h.screen(), Screen::Login(l) if l.is_pristine()));
    assert!(
        h.status().contains("could not write the kiosk's audit log"),
        "{}",
        h.status()
    );
    handle.fail_audit_writes(false);
    assert_eq!(kiosk_log(&h), [(0, AuditKind::OperatorPasswordSet)]);
}

#[test]
fn kiosk_idle_wipes_codes_on_screen() {
    let mut h = H::with(true, |s, _| {
        s.set_operator_password("operator-pass").unwrap();
        s.create_account("alice", PASSWORD).unwrap();
    });
    // Sign in with the password only, then enroll from the signed-in screen.
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    assert!(matches!(h.screen(), Screen::Secure(_)), "{}", h.status());
    h.typed("r");
    h.typed(PASSWORD);
    h.enter();
    let Screen::Enroll(e) = h.screen() else {
        panic!()
    };
    let EnrollStep::Scan(en) = &e.step else {
        panic!()
    };
    let secret = en.secret.as_bytes().to_vec();
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    let code = codes_screen(&h).codes()[0].display().to_string();
    // Codes being written down by hand: the 60 s idle time does not apply...
    h.advance(60);
    assert!(matches!(h.screen(), Screen::Codes(_)));
    assert!(h.d.app.idle_countdown().is_none());
    // ...the longer one does, and a countdown warns before it, over whatever the status said.
    h.advance(CODES_IDLE_SECS - CODES_IDLE_WARNING_SECS - 60);
    assert_eq!(h.d.app.idle_countdown(), Some(CODES_IDLE_WARNING_SECS));
    let drawn = h.render(80, 24);
    assert!(
        drawn.contains("No key for a while: these backup codes will be cleared"),
        "{drawn}"
    );
    assert!(
        drawn.contains("in 1 min 30 s. Press any key to keep them."),
        "{drawn}"
    );
    h.advance(60);
    assert!(h.render(80, 24).contains("in 30 s. Press any key"));
    // A key puts the clear off again.
    h.press(KeyCode::Down);
    assert!(h.d.app.idle_countdown().is_none());
    assert!(matches!(h.screen(), Screen::Codes(_)));
    h.advance(CODES_IDLE_SECS - 1);
    assert!(matches!(h.screen(), Screen::Codes(_)));
    h.advance(1);
    assert!(matches!(h.screen(), Screen::Login(l) if l.is_pristine()));
    assert!(!h.render(80, 24).contains(&code));
    assert!(
        h.status()
            .contains("the backup codes were cleared and cannot be shown again"),
        "{}",
        h.status()
    );
    // The cleared set is marked, and the holder, signed in again, is offered a new one.
    assert!(
        h.d.service
            .account_summary("alice")
            .unwrap()
            .codes_never_confirmed
    );
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    assert!(matches!(h.screen(), Screen::Secure(_)), "{}", h.status());
    let drawn = h.render(80, 24);
    assert!(
        drawn.contains("Your backup codes were never confirmed"),
        "{drawn}"
    );
    assert!(drawn.contains("generate a new set (g)"), "{drawn}");
    assert!(drawn.contains("g generate new codes"), "{drawn}");
    h.typed("g");
    h.enter();
    let fresh = codes_screen(&h).codes()[0].display().to_string();
    assert_ne!(fresh, code, "a new set, shown once");
}

#[test]
fn kiosk_codes_offer_no_copy_or_export() {
    let mut h = H::with(true, |s, _| {
        s.set_operator_password("operator-pass").unwrap();
        s.create_account("alice", PASSWORD).unwrap();
    });
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    h.typed("r");
    h.typed(PASSWORD);
    h.enter();
    let Screen::Enroll(e) = h.screen() else {
        panic!("{}", h.status())
    };
    let EnrollStep::Scan(en) = &e.step else {
        panic!()
    };
    let secret = en.secret.as_bytes().to_vec();
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    assert!(codes_screen(&h).holds_codes());
    let drawn = h.render(80, 24);
    assert!(
        drawn.contains("(this kiosk cannot copy or export them)"),
        "{drawn}"
    );
    assert!(
        !drawn.contains("c copy all") && !drawn.contains("e export"),
        "{drawn}"
    );
    h.typed("c");
    h.typed("e");
    assert!(h.d.platform.clipboard.is_none());
    assert!(matches!(codes_screen(&h).mode, Mode::Browse));
    h.press(KeyCode::F(1));
    assert!(!h.render(80, 24).contains("copy all"), "nor in the help");
}

#[test]
fn the_clipboard_is_cleared_back_at_the_login() {
    // A copy of new codes, then the way back to the public login: the clipboard is emptied.
    let mut codes = None;
    let mut h = H::with(false, |s, c| {
        let issued = enroll(s, c, "alice").1;
        for code in &issued.codes[..7] {
            s.login("alice", PASSWORD, Some(code.canonical())).unwrap();
        }
        codes = Some(issued);
    });
    to_second_factor(&mut h, "alice");
    h.typed(&codes.unwrap().codes[8].display());
    h.enter();
    h.typed("g");
    h.typed(PASSWORD);
    h.enter();
    h.typed("c");
    assert!(h.d.platform.clipboard.is_some());
    h.esc();
    h.typed("y");
    assert!(
        matches!(h.screen(), Screen::Settings(_)),
        "{:?}",
        h.screen()
    );
    assert!(
        h.d.platform.clipboard.is_some(),
        "kept while the user is at work"
    );
    h.esc();
    h.typed("l");
    assert!(matches!(h.screen(), Screen::Login(_)));
    assert!(h.d.platform.clipboard.is_none(), "cleared at the login");
    assert!(h.d.app.clipboard.is_none());

    // An idle clear on a kiosk does the same.
    let mut h = H::with(true, |s, _| {
        s.set_operator_password("operator-pass").unwrap();
        s.create_account("alice", PASSWORD).unwrap();
    });
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    assert!(matches!(h.screen(), Screen::Secure(_)));
    // As if something had been copied earlier on this screen.
    h.d.platform.clipboard = Some(zeroize::Zeroizing::new("codes".into()));
    h.d.app.clipboard = Some(sparekey::tui::app::ClipboardNote {
        used: sparekey::tui::app::ClipboardUsed::Osc52,
        at: h.clock_now(),
        offered: false,
    });
    h.advance(60);
    assert!(matches!(h.screen(), Screen::Login(l) if l.is_pristine()));
    assert!(h.d.platform.clipboard.is_none());
}

#[test]
fn new_account_errors_stay_on_the_form_and_wipe_passwords() {
    let mut h = H::new();
    h.typed("n");
    h.typed("zoe");
    h.press(KeyCode::Tab);
    h.typed("short");
    h.press(KeyCode::Tab);
    h.typed("shorter");
    h.enter();
    assert!(h.status().contains("differ"));
    let Screen::NewAccount(f) = h.screen() else {
        panic!()
    };
    assert!(f.password.is_empty() && f.confirm.is_empty());
    h.typed("short");
    h.press(KeyCode::Tab);
    h.typed("short");
    h.enter();
    assert!(
        h.status().contains("at least 8 characters"),
        "{}",
        h.status()
    );
    assert!(matches!(h.screen(), Screen::NewAccount(_)));
}

// ----- the account list at scale: windowed scrolling, incremental filter, chunked loading -----

use sparekey::tui::app::Msg;
use sparekey::tui::screens::accounts::{Accounts, CHUNK, FIRST_PAGE};

fn accounts_screen(h: &H) -> &Accounts {
    match h.screen() {
        Screen::Accounts(a) => a,
        other => panic!("expected the accounts list, got {other:?}"),
    }
}

fn visible_names(h: &H) -> Vec<String> {
    accounts_screen(h)
        .visible()
        .map(|a| a.name.clone())
        .collect()
}

/// The names a fresh, full scan would show for `filter` over the first `loaded` accounts.
fn fresh_filter(h: &H, filter: &str, loaded: usize) -> Vec<String> {
    let needle = filter.to_lowercase();
    h.d.service
        .list_accounts_page(None, loaded)
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .filter(|n| n.to_lowercase().contains(&needle))
        .collect()
}

/// A console over `n` accounts named `user0000`, `user0001`…, the first `upper` of them in
/// capitals (`USER0000`), so the filter's case folding is exercised.
fn many_accounts(n: usize, upper: usize) -> H {
    H::with(false, |s, _| {
        for i in 0..n {
            let name = if i < upper {
                format!("USER{i:04}")
            } else {
                format!("user{i:04}")
            };
            s.create_account(&name, PASSWORD).unwrap();
        }
    })
}

fn selected_name(h: &H) -> String {
    accounts_screen(h)
        .selected_account()
        .map(|a| a.name.clone())
        .unwrap_or_default()
}

#[test]
fn accounts_window_scrolls_with_the_selection() {
    let mut h = many_accounts(150, 0);
    // 80x24: the table has 17 rows.
    h.d.send(Msg::Resize {
        width: 80,
        height: 24,
    });
    for _ in 0..16 {
        h.press(KeyCode::Down);
    }
    assert_eq!(accounts_screen(&h).offset, 0, "row 17 is still on screen");
    h.press(KeyCode::Down);
    assert_eq!(selected_name(&h), "user0017");
    assert_eq!(
        accounts_screen(&h).offset,
        1,
        "the window follows the selection"
    );
    let drawn = h.render(80, 24);
    assert!(drawn.contains("› user0017"), "{drawn}");
    assert!(!drawn.contains("user0000"), "{drawn}");
    assert!(drawn.contains("user0001"), "{drawn}");

    // Moving up inside the window does not scroll it; past its top does.
    for _ in 0..16 {
        h.press(KeyCode::Up);
    }
    assert_eq!(selected_name(&h), "user0001");
    assert_eq!(accounts_screen(&h).offset, 1);
    h.press(KeyCode::Up);
    assert_eq!(accounts_screen(&h).offset, 0);
    assert!(h.render(80, 24).contains("› user0000"));

    // Pages, the end and the start.
    h.press(KeyCode::PageDown);
    assert_eq!(selected_name(&h), "user0017");
    h.press(KeyCode::End);
    assert_eq!(selected_name(&h), "user0149");
    let drawn = h.render(80, 24);
    assert!(drawn.contains("› user0149"), "{drawn}");
    assert!(
        drawn.contains("user0133") && !drawn.contains("user0132"),
        "{drawn}"
    );
    h.press(KeyCode::PageUp);
    assert_eq!(selected_name(&h), "user0132");
    assert!(h.render(80, 24).contains("› user0132"));
    h.press(KeyCode::Home);
    assert_eq!(selected_name(&h), "user0000");

    // Whatever size the frame is drawn at, the selection shows.
    h.press(KeyCode::End);
    for (w, ht) in [(80, 24), (120, 40), (200, 60)] {
        assert!(h.render(w, ht).contains("› user0149"), "{w}x{ht}");
    }
}

#[test]
fn accounts_filter_is_incremental_and_equals_a_fresh_scan() {
    let mut h = many_accounts(120, 40);
    h.typed("/");
    // Grows (narrowing), shrinks, changes, clears: each step equals a fresh filter.
    let steps: &[&str] = &[
        "u", "s", "E", "r", "0", "0", "\u{8}", "\u{8}", "1", "1", "\u{8}", "\u{8}", "\u{8}", "x",
        "\u{8}", "\u{8}", "\u{8}", "\u{8}", "\u{8}", "0", "9", "\u{8}", "\u{8}",
    ];
    let mut filter = String::new();
    for step in steps {
        if *step == "\u{8}" {
            filter.pop();
            h.press(KeyCode::Backspace);
        } else {
            filter.push_str(step);
            h.typed(step);
        }
        assert_eq!(
            visible_names(&h),
            fresh_filter(&h, &filter, usize::MAX),
            "filter {filter:?}"
        );
    }
    h.typed("user01");
    assert_eq!(visible_names(&h).len(), 20, "USER0100..user0119");
    assert!(h.render(120, 40).contains(" 20 of 120 accounts "));
    // Esc clears it: every account again.
    h.esc();
    assert_eq!(visible_names(&h), fresh_filter(&h, "", usize::MAX));
    assert_eq!(visible_names(&h).len(), 120);
    assert!(h.render(120, 40).contains(" 120 accounts "));
}

#[test]
fn accounts_load_in_chunks_and_filter_while_loading() {
    let total = FIRST_PAGE + CHUNK + 300;
    let mut h = many_accounts(total, 10);
    // The first frame has the first page only, and says the rest is coming.
    let a = accounts_screen(&h);
    assert_eq!(a.loaded_len(), FIRST_PAGE);
    assert!(a.is_loading());
    assert!(h.d.busy());
    let drawn = h.render(120, 40);
    assert!(drawn.contains(" loading accounts… 200 "), "{drawn}");
    assert!(drawn.contains("› USER0000"), "{drawn}");

    // Keys work meanwhile; the filter applies to what is loaded…
    h.press(KeyCode::Down);
    h.typed("/r01");
    let loaded = accounts_screen(&h).loaded_len();
    assert_eq!(visible_names(&h), fresh_filter(&h, "r01", loaded));
    assert_eq!(visible_names(&h).len(), 100, "user0100..user0199");
    assert!(
        h.render(120, 40)
            .contains(" 100 match so far · loading accounts… 200 ")
    );
    h.press(KeyCode::Backspace);
    h.press(KeyCode::Backspace);
    h.typed("2");
    assert!(visible_names(&h).is_empty());
    assert!(
        h.render(120, 40)
            .contains("no account loaded so far matches the filter")
    );

    // …and extends as chunks arrive.
    assert!(h.d.step());
    let a = accounts_screen(&h);
    assert_eq!(a.loaded_len(), FIRST_PAGE + CHUNK);
    assert!(a.is_loading());
    assert_eq!(
        visible_names(&h),
        fresh_filter(&h, "r2", FIRST_PAGE + CHUNK)
    );
    assert_eq!(visible_names(&h).len(), 700, "user2000..user2699");
    h.typed("6");
    assert_eq!(
        visible_names(&h),
        fresh_filter(&h, "r26", FIRST_PAGE + CHUNK)
    );
    assert!(h.d.step());
    assert!(!h.d.busy());
    let a = accounts_screen(&h);
    assert_eq!(a.loaded_len(), total);
    assert!(!a.is_loading());
    assert_eq!(visible_names(&h), fresh_filter(&h, "r26", total));
    assert!(h.render(120, 40).contains(" 100 of 3,000 accounts "));
    h.esc();
    assert_eq!(visible_names(&h), fresh_filter(&h, "", total));

    // A refresh reads it all again, keeping the selection; pages of an older load are dropped.
    h.press(KeyCode::End);
    h.typed("r");
    assert!(h.d.busy());
    assert_eq!(
        accounts_screen(&h).loaded_len(),
        total,
        "the old rest stays"
    );
    assert_eq!(selected_name(&h), format!("user{:04}", total - 1));
    h.typed("r");
    h.d.settle();
    assert_eq!(visible_names(&h), fresh_filter(&h, "", total));
    assert_eq!(selected_name(&h), format!("user{:04}", total - 1));
    assert!(h.render(120, 40).contains(" 3,000 accounts "));
}

#[test]
fn accounts_page_that_ends_the_list_exactly() {
    // The last chunk is full: one more (empty) page ends the load.
    let mut h = many_accounts(FIRST_PAGE + CHUNK, 0);
    h.d.settle();
    let a = accounts_screen(&h);
    assert_eq!(a.loaded_len(), FIRST_PAGE + CHUNK);
    assert!(!a.is_loading());
    // A store that fits the first page loads before the first frame.
    let h = many_accounts(3, 0);
    assert!(!h.d.busy());
    assert!(!accounts_screen(&h).is_loading());
}

#[test]
fn kiosk_operator_locked_after_100_failures_points_to_the_cli() {
    let mut h = H::with(true, |s, c| {
        s.set_operator_password("operator-pass").unwrap();
        for _ in 0..100 {
            c.advance(3_600);
            assert!(s.start_operator_session("wrong wrong").is_err());
        }
    });
    h.esc();
    h.typed("operator-pass");
    h.enter();
    assert!(matches!(h.screen(), Screen::Operator(_)), "{}", h.status());
    assert!(
        h.status()
            .contains("locked after 100 failed attempts: recover it from a shell with `sparekey kiosk reset-operator-password`"),
        "{}",
        h.status()
    );
}

#[test]
fn kiosk_signing_someone_in_from_the_list_ends_the_operator_session() {
    let mut h = H::with(true, |s, _| {
        s.set_operator_password("operator-pass").unwrap();
        s.create_account("alice", PASSWORD).unwrap();
    });
    h.esc();
    h.typed("operator-pass");
    h.enter();
    assert!(matches!(h.screen(), Screen::Accounts(_)), "{}", h.status());
    assert!(h.d.app.operator_active());
    h.typed("l");
    assert!(matches!(h.screen(), Screen::Login(_)));
    assert!(h.d.app.operator.is_none());
    // Signed in as alice: her settings (the audit log) still need the operator.
    h.typed(PASSWORD);
    h.enter();
    assert!(matches!(h.screen(), Screen::Secure(_)), "{}", h.status());
    h.typed("s");
    assert!(matches!(h.screen(), Screen::Operator(_)));
}

#[test]
fn a_running_call_shows_working_and_keys_wait_for_its_answer() {
    let mut secret = Vec::new();
    let mut h = H::with(false, |s, c| {
        secret = enroll(s, c, "alice").0;
        c.advance(30);
    });
    h.d.tick();
    h.d.hold_calls();
    h.typed("l");
    assert!(matches!(h.screen(), Screen::Login(l) if l.step == LoginStep::Password));
    h.typed(PASSWORD);
    h.enter();
    // The password check is running: the login says so and stays on its screen.
    assert!(h.d.app.working());
    assert!(h.render(80, 24).contains("working…"));
    // Help opens and closes at once; it starts nothing.
    h.press(KeyCode::F(1));
    assert!(h.d.app.help);
    assert!(h.render(80, 24).contains("Any key closes this help."));
    h.press(KeyCode::F(1));
    assert!(!h.d.app.help);
    // Typed ahead: the code and its Enter wait for the answer, so no second call starts yet.
    let code = h.totp(&secret);
    h.typed(&code);
    h.enter();
    assert_eq!(h.d.app.typed_ahead.len(), code.len() + 1);
    assert!(matches!(h.screen(), Screen::Login(l) if l.step == LoginStep::Password));
    // The answer arrives: the keys reach the code step in order and send the code.
    assert!(h.d.release_call());
    assert!(h.d.app.typed_ahead.is_empty());
    assert!(h.d.app.working(), "the typed-ahead Enter sent the code");
    assert!(h.d.release_call());
    assert!(!h.d.app.working());
    assert!(!h.render(80, 24).contains("working…"));
    let Screen::Secure(secure) = h.screen() else {
        panic!("{}", h.status())
    };
    assert_eq!(secure.success.method, LoginMethod::Totp);
    assert!(!h.d.release_call());
}

#[test]
fn the_worker_runs_calls_off_the_caller_and_answers_through_pump() {
    use sparekey::tui::runtime::{Driver, RecordingPlatform};
    let clock = std::sync::Arc::new(sparekey::core::clock::ManualClock::new(CONSOLE_T0));
    let service = crate::support::console::service(clock.clone());
    service.create_account("alice", PASSWORD).unwrap();
    let mut d = Driver::with_worker(
        service,
        RecordingPlatform::default(),
        crate::support::console::options(false),
    )
    .unwrap();
    let settle = |d: &mut Driver<RecordingPlatform>| {
        // Bounded so a lost answer fails the test instead of hanging it.
        for _ in 0..10_000 {
            d.pump().unwrap();
            if !d.busy() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("the worker never answered");
    };
    settle(&mut d);
    assert!(matches!(d.app.screen, Screen::Accounts(_)));
    use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    d.key(key(KeyCode::Char('l')));
    for c in PASSWORD.chars() {
        d.key(key(KeyCode::Char(c)));
    }
    d.key(key(KeyCode::Enter));
    assert!(d.app.working(), "the call went to the worker");
    settle(&mut d);
    assert!(!d.app.working());
    assert!(matches!(d.app.screen, Screen::Secure(_)));
}

// ----- settings: step-up for regenerate, re-enroll, turn off -------------------------------

/// The settings of alice (enrolled through the service), with her TOTP secret and codes.
fn alice_settings() -> (H, Vec<u8>, Vec<String>) {
    let mut enrolled = None;
    let mut h = H::with(false, |s, c| enrolled = Some(enroll(s, c, "alice")));
    let (secret, issued) = enrolled.unwrap();
    h.enter();
    assert!(matches!(h.screen(), Screen::Settings(s) if s.account == "alice"));
    let codes = issued
        .codes
        .iter()
        .map(|c| c.display().to_string())
        .collect();
    (h, secret, codes)
}

#[test]
fn settings_regenerate_needs_a_code_and_the_password_alone_changes_nothing() {
    let (mut h, _, codes) = alice_settings();
    let before = h.d.service.code_status("alice").unwrap();
    h.typed("g");
    assert!(h.render(80, 24).contains("Password and a current code"));
    // The password alone (an empty code): refused before any hash, nothing changes.
    h.typed(PASSWORD);
    h.enter();
    h.enter();
    assert!(h.status().contains("enter the code"), "{}", h.status());
    assert!(matches!(h.screen(), Screen::Settings(_)));
    assert_eq!(h.d.service.code_status("alice").unwrap(), before);
    // With a backup code: the new set, once.
    h.typed(PASSWORD);
    h.enter();
    h.typed(&codes[0]);
    h.enter();
    assert_eq!(codes_screen(&h).codes().len(), 10);
    assert!(
        h.d.service
            .login("alice", PASSWORD, Some(&codes[1]))
            .is_err(),
        "the old set is void"
    );
}

#[test]
fn settings_reenroll_asks_for_a_code_and_asks_again_once_it_expired() {
    use sparekey::core::step_up::STEP_UP_TTL_SECS;
    let (mut h, old, codes) = alice_settings();
    h.typed("r");
    assert!(
        matches!(h.screen(), Screen::Settings(s) if s.prompt.is_some()),
        "asks first, before any wizard"
    );
    h.typed(PASSWORD);
    h.enter();
    h.typed(&codes[0]);
    h.enter();
    let new = match h.screen() {
        Screen::Enroll(e) => match &e.step {
            EnrollStep::Scan(en) => en.secret.as_bytes().to_vec(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?} {}", h.status()),
    };
    h.enter();
    // Too long with the QR code: the step-up the wizard holds expires before the confirm.
    h.advance(STEP_UP_TTL_SECS + 1);
    h.typed(&h.totp(&new));
    h.enter();
    assert!(h.status().contains("more than 5 min ago"), "{}", h.status());
    assert!(
        matches!(h.screen(), Screen::Enroll(e) if matches!(e.step, EnrollStep::Reprove { .. }))
    );
    let summary = h.d.service.account_summary("alice").unwrap();
    assert!(
        summary.two_factor && summary.enrollment_pending,
        "nothing replaced yet"
    );
    // The old authenticator proves it again; then the new code confirms.
    h.typed(PASSWORD);
    h.enter();
    h.typed(&h.totp(&old));
    h.enter();
    assert!(
        matches!(h.screen(), Screen::Enroll(e) if e.step_number() == 3),
        "{}",
        h.status()
    );
    h.advance(30);
    h.typed(&h.totp(&new));
    h.enter();
    assert_eq!(codes_screen(&h).codes().len(), 10, "{}", h.status());
    assert!(
        h.d.service
            .login("alice", PASSWORD, Some(&codes[1]))
            .is_err()
    );
}

#[test]
fn a_fresh_step_up_is_reused_and_an_expired_one_asks_again() {
    use sparekey::core::step_up::STEP_UP_TTL_SECS;
    let (mut h, _, codes) = alice_settings();
    // Turning 2FA off with a wrong code fails; the prompt asks again.
    h.typed("d");
    h.typed(PASSWORD);
    h.enter();
    h.typed("000000");
    h.enter();
    assert!(h.status().contains("wrong code"), "{}", h.status());
    assert!(h.d.service.account_summary("alice").unwrap().two_factor);
    h.esc();
    // From the signed-in screen the login's step-up works at once while fresh…
    h.esc();
    h.typed("l");
    if let Screen::Login(l) = h.screen()
        && l.step == LoginStep::Password
    {
        h.esc();
    }
    h.ctrl('u');
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    h.typed(&codes[2]);
    h.enter();
    assert!(
        matches!(h.screen(), Screen::Secure(s) if s.step_up.is_some()),
        "{}",
        h.status()
    );
    // …and not once it expired: r then opens the wizard at its first step, which asks for the
    // password and a current code and says the codes will be replaced.
    h.advance(STEP_UP_TTL_SECS + 1);
    h.typed("r");
    assert!(
        matches!(h.screen(), Screen::Enroll(e) if e.step_number() == 1
            && e.replaces_codes
            && matches!(e.step, EnrollStep::Proof(_))),
        "{:?}",
        h.screen()
    );
    // The password alone (an empty code) is refused there, before any call.
    h.typed(PASSWORD);
    h.enter();
    h.enter();
    assert!(h.status().contains("enter the code"), "{}", h.status());
    assert!(matches!(h.screen(), Screen::Enroll(e) if matches!(e.step, EnrollStep::Proof(_))));
    assert!(
        !h.d.service
            .account_summary("alice")
            .unwrap()
            .enrollment_pending
    );
}

#[test]
fn one_code_field_takes_either_kind_and_no_printable_key_is_a_command() {
    let mut codes = None;
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| {
        let (sec, issued) = enroll(s, c, "alice");
        secret = sec;
        codes = Some(issued);
    });
    let codes = codes.unwrap();
    // In the name and password fields, q and ? are typed.
    h.typed("l");
    h.esc();
    h.ctrl('u');
    h.typed("q?b");
    assert!(!h.d.app.quitting && !h.d.app.help);
    assert_eq!(login(&h).name.as_str(), "q?b");
    h.ctrl('u');
    assert!(login(&h).name.is_empty(), "Ctrl-U clears the name");
    h.typed("alice");
    h.enter();
    h.typed("q?");
    assert_eq!(login(&h).password.as_str(), "q?");
    h.ctrl('u');
    assert!(login(&h).password.is_empty(), "Ctrl-U clears the password");
    h.typed(PASSWORD);
    h.enter();
    assert_eq!(login(&h).step, LoginStep::Code, "{}", h.status());

    // The code field: q, ? and b are typed, not obeyed, and the footer offers no q.
    h.typed("q?b");
    assert!(!h.d.app.quitting && !h.d.app.help);
    assert_eq!(login(&h).code.as_str(), "q?b");
    let drawn = h.render(80, 24);
    let footer = drawn.lines().last().unwrap();
    assert!(footer.contains("Ctrl-U clear the field"), "{footer}");
    assert!(!footer.contains("q quit"), "{footer}");
    // F1 still opens the help, listing the same keys.
    h.press(KeyCode::F(1));
    assert!(h.d.app.help);
    assert!(h.render(80, 24).contains("clear the field"));
    h.esc();
    h.ctrl('u');
    assert!(login(&h).code.is_empty());

    // An authenticator code in the field signs in...
    h.advance(30);
    h.typed(&h.totp(&secret));
    assert_eq!(
        login(&h).live,
        Some(sparekey::tui::screens::login::Live::Totp)
    );
    h.enter();
    let Screen::Secure(secure) = h.screen() else {
        panic!("{}", h.status())
    };
    assert_eq!(secure.success.method, LoginMethod::Totp);

    // ...and so does a backup code, in the same field.
    h.esc();
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    h.typed(&codes.codes[2].display());
    assert_eq!(
        login(&h).live,
        Some(sparekey::tui::screens::login::Live::Backup)
    );
    h.enter();
    let Screen::Secure(secure) = h.screen() else {
        panic!("{}", h.status())
    };
    assert_eq!(secure.success.method, LoginMethod::BackupCode);
}

#[test]
fn lockout_is_announced_before_and_when_it_happens() {
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| {
        secret = enroll(s, c, "alice").0;
        fail_logins(s, c, "alice", 16);
    });
    // The password step tells nothing about the account; the code step, after the right
    // password, carries the core's count.
    let wrong_code = |h: &mut H| {
        if let Ok(Gate::Delayed { seconds_left }) = h.d.service.gate("alice") {
            h.advance(seconds_left);
        }
        if let Screen::Login(l) = h.screen()
            && l.step == LoginStep::Code
        {
            h.esc();
        }
        h.typed(PASSWORD);
        h.enter();
        assert_eq!(login(h).step, LoginStep::Code, "{}", h.status());
        let wrong = if h.totp(&secret) == "000000" {
            "111111"
        } else {
            "000000"
        };
        h.typed(wrong);
        h.enter();
    };
    h.typed("l");
    wrong_code(&mut h);
    // The 17th failure: three left, said on the status line and kept on the panel.
    assert!(
        h.status()
            .contains("3 attempts left before the account locks"),
        "{}",
        h.status()
    );
    assert!(
        h.render(80, 24)
            .contains("Careful: 3 more failed attempts will lock 'alice'."),
        "{}",
        h.render(80, 24)
    );
    wrong_code(&mut h);
    wrong_code(&mut h);
    assert!(
        h.render(80, 24)
            .contains("Careful: 1 more failed attempt will lock 'alice'."),
        "{}",
        h.render(80, 24)
    );
    wrong_code(&mut h);
    // The attempt that locks says so, and names both ways to unlock.
    assert!(
        h.status().contains("the account is now locked"),
        "{}",
        h.status()
    );
    assert_eq!(login(&h).gate, Some(Gate::Locked));
    let drawn = h.render(80, 24);
    assert!(
        drawn.contains("'alice' is now locked after too many failed attempts."),
        "{drawn}"
    );
    assert!(
        drawn.contains("presses u on it in the account list"),
        "{drawn}"
    );
    assert!(drawn.contains("or runs: sparekey unlock alice"), "{drawn}");
    assert!(!drawn.contains("Careful"), "no warning once locked");

    // The u the panel names does unlock it.
    h.esc();
    h.esc();
    h.esc();
    assert!(
        matches!(h.screen(), Screen::Accounts(_)),
        "{:?}",
        h.screen()
    );
    h.typed("u");
    assert_eq!(
        h.d.service.gate("alice").unwrap(),
        Gate::Open,
        "{}",
        h.status()
    );
}

#[test]
fn full_screen_qr_code_scans_at_80x24() {
    use sparekey::tui::widgets::Theme;
    for color in [false, true] {
        let mut h = H::new();
        h.d.app.options.theme = Theme { color };
        new_account_to_scan(&mut h, "alice@example.com");
        let uri = match h.screen() {
            Screen::Enroll(e) => match &e.step {
                EnrollStep::Scan(enrollment) => enrollment.otpauth_uri.to_string(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        // The default parameters are left out: a smaller code.
        assert!(uri.ends_with("&issuer=sparekey"), "{uri}");
        assert!(h.render(80, 24).contains("f full-screen QR code"));
        h.typed("f");
        assert!(matches!(h.screen(), Screen::Enroll(e) if matches!(e.step, EnrollStep::FullQr(_))));
        let drawn = h.render(80, 24);
        assert!(!drawn.contains("sparekey "), "no title bar:\n{drawn}");
        assert!(!drawn.contains("all keys"), "no footer:\n{drawn}");
        assert!(drawn.contains("press any key to go back"), "{drawn}");
        match decode_qr(&frame_picture(&h.buffer(80, 24), 4)) {
            Err(why) => {
                crate::support::skip(&format!("the 80x24 QR decode check: {why}"));
                return;
            }
            Ok(found) => assert_eq!(found.as_deref(), Some(uri.as_str()), "color: {color}"),
        }
        // Any key, q included, goes back to step 2; nothing quits.
        h.typed("q");
        assert!(!h.d.app.quitting);
        assert!(matches!(h.screen(), Screen::Enroll(e) if matches!(e.step, EnrollStep::Scan(_))));
    }
}

#[test]
fn a_status_line_does_not_follow_to_another_screen() {
    let mut h = H::new();
    let secret = enroll_by_keys(&mut h, "alice");
    let right = h.totp(&secret);
    h.typed(if right == "000000" {
        "111111"
    } else {
        "000000"
    });
    h.enter();
    assert!(h.status().contains("wrong code"), "{}", h.status());
    // Back a step on the same screen: the message still applies there.
    h.esc();
    assert!(matches!(h.screen(), Screen::Enroll(_)), "{:?}", h.screen());
    assert!(h.status().contains("wrong code"), "{}", h.status());
    // Out of the enrollment: it no longer does.
    h.esc();
    assert!(!matches!(h.screen(), Screen::Enroll(_)), "{:?}", h.screen());
    assert!(!h.status().contains("wrong code"), "{}", h.status());
}

#[test]
fn a_name_too_long_for_the_list_ends_in_an_ellipsis() {
    let long = "a-very-long-account-name-that-goes-on-and-on";
    let h = H::with(false, |s, _| {
        s.create_account(long, PASSWORD).unwrap();
        s.create_account("bob", PASSWORD).unwrap();
    });
    assert!(
        matches!(h.screen(), Screen::Accounts(_)),
        "{:?}",
        h.screen()
    );
    let narrow = h.render(80, 24);
    assert!(!narrow.contains(long), "{narrow}");
    assert!(narrow.contains("› a-very-long-account-… off"), "{narrow}");
    assert!(narrow.contains(" bob "), "{narrow}");
    // Where it fits, it is whole.
    let wide = h.render(120, 40);
    assert!(wide.contains(long) && !wide.contains('…'), "{wide}");
}

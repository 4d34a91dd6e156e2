//! Snapshots of every screen and state of the console at 80x24 (an SSH default) and 120x40, on
//! ratatui's TestBackend, with a manual clock and seeded randomness so they never change unless
//! the screens do. Review a changed `.snap` as you would code.

use crate::support::console::*;
use ratatui::crossterm::event::KeyCode;
use sparekey::core::throttle::Gate;
use sparekey::tui::app::Screen;

/// Snapshots the current frame at both sizes.
fn snap(h: &H, name: &str) {
    insta::assert_snapshot!(format!("{name}_80x24"), h.render(80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), h.render(120, 40));
}

fn varied_accounts() -> H {
    H::with(false, |s, c| {
        enroll(s, c, "alice@example.com");
        s.create_account("bob", PASSWORD).unwrap();
        enroll(s, c, "carol");
        fail_logins(s, c, "carol", 20);
        let (_, dave) = enroll(s, c, "dave");
        for code in &dave.codes[..8] {
            s.login("dave", PASSWORD, Some(code.canonical())).unwrap();
        }
        s.create_account("erin", PASSWORD).unwrap();
        s.begin_enrollment("erin", Some(PASSWORD)).unwrap();
        let (_, frank) = enroll(s, c, "frank");
        s.login("frank", PASSWORD, Some(frank.codes[0].canonical()))
            .unwrap();
    })
}

#[test]
fn accounts() {
    let mut h = varied_accounts();
    snap(&h, "accounts_list");
    h.typed("/a");
    snap(&h, "accounts_filtering");
    h.typed("zz");
    h.enter();
    snap(&h, "accounts_filter_no_match");
    snap(&H::new(), "accounts_empty");
}

#[test]
fn help_overlay_and_too_small() {
    let mut h = varied_accounts();
    h.typed("?");
    snap(&h, "help_overlay");
    insta::assert_snapshot!("too_small_79x24", h.render(79, 24));
    insta::assert_snapshot!("too_small_80x23", h.render(80, 23));
}

#[test]
fn new_account() {
    let mut h = H::new();
    h.typed("n");
    h.typed("zoe");
    h.press(KeyCode::Tab);
    h.typed("secret-one");
    snap(&h, "new_account_typing");
    h.press(KeyCode::Tab);
    h.typed("secret-two");
    h.enter();
    snap(&h, "new_account_mismatch");
}

/// The wizard at step 3 for a fresh account "alice"; returns its secret.
fn wizard_to_code(h: &mut H) -> Vec<u8> {
    h.typed("n");
    h.typed("alice");
    h.press(KeyCode::Tab);
    h.typed(PASSWORD);
    h.press(KeyCode::Tab);
    h.typed(PASSWORD);
    h.enter();
    snap(h, "enroll_1_password");
    h.typed(PASSWORD);
    h.enter();
    snap(h, "enroll_2_scan");
    h.typed("f");
    snap(h, "enroll_2_full_screen_qr");
    h.typed("x");
    let Screen::Enroll(e) = h.screen() else {
        panic!()
    };
    let sparekey::tui::screens::enroll::Step::Scan(en) = &e.step else {
        panic!()
    };
    let secret = en.secret.as_bytes().to_vec();
    h.enter();
    secret
}

#[test]
fn enrollment_and_codes_once() {
    let mut h = H::new();
    let secret = wizard_to_code(&mut h);
    h.typed("12345");
    snap(&h, "enroll_3_code");
    h.typed("9");
    h.enter();
    snap(&h, "enroll_3_wrong_code");
    let behind =
        sparekey::core::totp::code_at(&secret, h.clock_now() - 300, Default::default()).unwrap();
    h.typed(&behind);
    h.enter();
    snap(&h, "enroll_3_clock_drift");
    h.typed(&h.totp(&secret));
    h.enter();
    snap(&h, "codes_4_shown_once");
    h.typed("c");
    snap(&h, "codes_copied");
    h.typed("e");
    snap(&h, "codes_export_prompt");
    h.enter();
    snap(&h, "codes_exported");
    h.typed("e");
    h.enter();
    snap(&h, "codes_export_exists");
    h.esc();
    h.enter();
    h.typed("k7p2-9xqm");
    snap(&h, "codes_proof");
    h.esc();
    h.esc();
    snap(&h, "codes_confirm_leave");
}

#[test]
fn login_states() {
    let mut codes = None;
    let mut h = H::with(false, |s, c| codes = Some(enroll(s, c, "alice").1));
    let codes = codes.unwrap();
    h.typed("l");
    h.esc();
    h.ctrl('u');
    h.typed("alice");
    snap(&h, "login_name");
    h.enter();
    h.typed("hunter22");
    snap(&h, "login_password");
    h.ctrl('u');
    h.typed(PASSWORD);
    h.enter();
    h.typed("123");
    snap(&h, "login_totp");
    h.ctrl('u');
    let good = codes.codes[0].display().to_string();
    h.typed(&good[..9]);
    snap(&h, "login_backup_typing");
    h.ctrl('u');
    let mut typo = good.clone();
    typo.replace_range(0..1, if good.starts_with('z') { "y" } else { "z" });
    h.typed(&typo);
    snap(&h, "login_backup_typo");
    h.ctrl('u');
    h.typed(&good);
    snap(&h, "login_backup_well_formed");
    h.enter();
    snap(&h, "secure_after_backup_code");
}

#[test]
fn throttled_and_locked() {
    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
        fail_logins(s, c, "alice", 6);
    });
    h.typed("l");
    h.typed(PASSWORD);
    h.enter();
    h.advance(15);
    let Screen::Login(l) = h.screen() else {
        panic!()
    };
    // Known from the core's answer to the password, counted down since.
    assert_eq!(l.gate, Some(Gate::Delayed { seconds_left: 45 }));
    snap(&h, "login_throttled_countdown");

    let mut h = H::with(false, |s, c| {
        enroll(s, c, "alice");
        fail_logins(s, c, "alice", 20);
    });
    h.typed("l");
    h.typed(PASSWORD);
    h.enter();
    // The core's answer to the password says the account is locked.
    snap(&h, "login_locked");
}

#[test]
fn secure_low_and_signed_in() {
    let mut codes = None;
    let mut secret = vec![];
    let mut h = H::with(false, |s, c| {
        let (sec, issued) = enroll(s, c, "alice");
        for code in &issued.codes[..7] {
            s.login("alice", PASSWORD, Some(code.canonical())).unwrap();
        }
        secret = sec;
        codes = Some(issued);
    });
    let codes = codes.unwrap();
    h.typed("l");
    h.typed(PASSWORD);
    h.enter();
    h.typed(&codes.codes[9].display());
    h.enter();
    snap(&h, "secure_low_codes");
    h.typed("g");
    snap(&h, "secure_regenerate_prompt");
    h.esc();
    h.esc();
    h.clock.advance(30);
    h.typed("alice");
    h.enter();
    h.typed(PASSWORD);
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    snap(&h, "signed_in_with_authenticator");
}

#[test]
fn settings() {
    let mut h = H::with(false, |s, c| {
        let (_, issued) = enroll(s, c, "alice");
        c.advance(3_600);
        s.login("alice", PASSWORD, Some(issued.codes[2].canonical()))
            .unwrap();
        c.advance(86_400);
        s.login("alice", PASSWORD, Some(issued.codes[6].canonical()))
            .unwrap();
        let _ = s.login(
            "alice",
            "wrong password!",
            Some(issued.codes[6].canonical()),
        );
    });
    h.enter();
    snap(&h, "settings_slots");
    h.typed("a");
    snap(&h, "settings_audit_log");
    h.typed("a");
    h.typed("d");
    h.typed("pw");
    snap(&h, "settings_disable_prompt");
    h.esc();
    h.typed("g");
    h.typed("wrong password!");
    h.enter();
    h.typed("000000");
    h.enter();
    snap(&h, "settings_regenerate_wrong_password");
}

#[test]
fn kiosk() {
    let mut h = H::with(true, |s, c| {
        enroll(s, c, "alice");
    });
    snap(&h, "kiosk_first_start");
    h.typed("operator-pass");
    h.enter();
    h.typed("operator-pass");
    h.enter();
    snap(&h, "kiosk_login");
    h.esc();
    snap(&h, "kiosk_operator_gate");
    h.typed("operator-pass");
    h.enter();
    h.advance(60);
    snap(&h, "kiosk_idle_cleared");
}

#[test]
fn kiosk_codes_are_written_down_and_warned_before_idle() {
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
    let sparekey::tui::screens::enroll::Step::Scan(en) = &e.step else {
        panic!()
    };
    let secret = en.secret.as_bytes().to_vec();
    h.enter();
    h.typed(&h.totp(&secret));
    h.enter();
    snap(&h, "kiosk_codes_write_down");
    h.advance(sparekey::tui::app::CODES_IDLE_SECS - 45);
    snap(&h, "kiosk_codes_idle_countdown");
}

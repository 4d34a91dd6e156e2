//! The interactive paths of the CLI on a real pseudo-terminal: hidden prompts (asked twice for a
//! new password) and enrolling with the code typed at the prompt.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sparekey::core::totp::{TotpParams, TotpSecret, code_at};
use tempfile::TempDir;

use crate::support::PASSWORD;
use crate::support::process::{Pty, pty_command, spawn_in_pty};

struct Session {
    pty: Pty,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    fn start(dir: &TempDir, args: &[&str]) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let pty = spawn_in_pty(60, 160, pty_command(dir.path(), args), move |bytes| {
            sink.lock().unwrap().extend_from_slice(bytes)
        });
        Self { pty, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal shows `what` (counting `times` occurrences).
    #[track_caller]
    fn expect(&self, what: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text();
            if text.matches(what).count() >= times {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what:?}; screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.pty
            .writer
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
        self.pty.writer.flush().unwrap();
    }

    fn finish(mut self) -> (u32, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.pty.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.pty.child.kill();
                panic!("sparekey did not exit; screen:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.exit_code(), self.text())
    }
}

#[test]
fn new_password_is_asked_twice_and_hidden() {
    let dir = TempDir::new().unwrap();
    let mut s = Session::start(&dir, &["account", "add", "alice"]);
    s.expect("Password: ", 1);
    s.type_line(PASSWORD);
    s.expect("Password again: ", 1);
    s.type_line("something else");
    let (code, screen) = s.finish();
    assert_eq!(code, 2, "{screen}");
    assert!(
        screen.contains("sparekey: the two passwords differ"),
        "{screen}"
    );
    assert!(
        !screen.contains(PASSWORD),
        "the password was echoed: {screen}"
    );

    let mut s = Session::start(&dir, &["account", "add", "alice"]);
    s.expect("Password: ", 1);
    s.type_line(PASSWORD);
    s.expect("Password again: ", 1);
    s.type_line(PASSWORD);
    let (code, screen) = s.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("created account 'alice'"), "{screen}");
    assert!(
        !screen.contains(PASSWORD),
        "the password was echoed: {screen}"
    );
}

#[test]
fn enroll_asks_for_the_code_on_a_terminal() {
    let dir = TempDir::new().unwrap();
    let mut s = Session::start(&dir, &["account", "add", "bob"]);
    s.expect("Password: ", 1);
    s.type_line(PASSWORD);
    s.expect("Password again: ", 1);
    s.type_line(PASSWORD);
    assert_eq!(s.finish().0, 0);

    let mut s = Session::start(&dir, &["enroll", "bob"]);
    let screen = s.expect("Code from the authenticator", 1);
    // The QR code is drawn dark on light whatever the terminal's colours.
    assert!(screen.contains("\x1b[30;107m"), "{screen}");
    // The QR code comes last, right above the prompt, after the secret and the URI.
    let uri_at = screen.find("otpauth URI:").expect("the URI is shown");
    assert!(screen.find("\x1b[30;107m").unwrap() > uri_at, "{screen}");
    let grouped = screen
        .lines()
        .find_map(|l| {
            l.split_once("Or enter the secret by hand: ")
                .map(|(_, s)| s.trim())
        })
        .expect("the secret is shown");
    let secret = TotpSecret::from_base32(grouped).unwrap();
    // A malformed code costs nothing and is asked again.
    s.type_line("12");
    s.expect("Code from the authenticator", 2);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    s.type_line(&code_at(secret.as_bytes(), now, TotpParams::default()).unwrap());
    let (code, screen) = s.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("enter the 6-digit code"), "{screen}");
    assert!(screen.contains("New backup codes for bob"), "{screen}");
    assert!(screen.contains(" 10. "), "{screen}");
}

#[test]
fn the_bare_command_opens_the_console_and_q_quits() {
    let dir = TempDir::new().unwrap();
    let mut s = Session::start(&dir, &[]);
    // The console takes the alternate screen, then draws.
    s.expect("\x1b[?1049h", 1);
    std::thread::sleep(Duration::from_millis(300));
    s.pty.writer.write_all(b"q").unwrap();
    s.pty.writer.flush().unwrap();
    let (code, screen) = s.finish();
    assert_eq!(code, 0, "{screen}");
    // The terminal is given back.
    assert!(screen.contains("\x1b[?1049l"), "{screen}");
    // It opened (created) the store.
    assert!(dir.path().join("data").join("store").exists());
}

/// The backup codes a screen shows (`xxxx-xxxx-xxxx-xxxx`), in order.
fn codes_on(screen: &str) -> Vec<String> {
    screen
        .split(|c: char| c.is_whitespace())
        .filter(|w| {
            w.len() == 19
                && w.split('-').count() == 4
                && w.split('-')
                    .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .map(str::to_string)
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn secret_on(screen: &str) -> TotpSecret {
    let grouped = screen
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once("Or enter the secret by hand: ")
                .map(|(_, s)| s.trim())
        })
        .expect("the secret is shown");
    TotpSecret::from_base32(grouped).unwrap()
}

#[test]
fn replacing_the_authenticator_on_a_terminal_asks_for_a_current_code() {
    let dir = TempDir::new().unwrap();
    let mut s = Session::start(&dir, &["account", "add", "cy"]);
    s.expect("Password: ", 1);
    s.type_line(PASSWORD);
    s.expect("Password again: ", 1);
    s.type_line(PASSWORD);
    assert_eq!(s.finish().0, 0);
    let mut s = Session::start(&dir, &["enroll", "cy"]);
    let screen = s.expect("Code from the authenticator", 1);
    let first = secret_on(&screen);
    s.type_line(&code_at(first.as_bytes(), now(), TotpParams::default()).unwrap());
    let (code, screen) = s.finish();
    assert_eq!(code, 0, "{screen}");
    let codes = codes_on(&screen);
    assert_eq!(codes.len(), 10, "{screen}");

    // The password alone (an empty code line) is refused and changes nothing.
    let mut s = Session::start(&dir, &["codes", "regenerate", "cy"]);
    s.expect("Password: ", 1);
    s.type_line(PASSWORD);
    s.expect("Current code (authenticator or backup code): ", 1);
    s.type_line("");
    let (code, screen) = s.finish();
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("not only the password"), "{screen}");

    // Re-enrolling: the password, a backup code, then the new authenticator's code, which the
    // step-up made at the start lets confirm.
    let mut s = Session::start(&dir, &["enroll", "cy"]);
    s.expect("Password: ", 1);
    s.type_line(PASSWORD);
    s.expect("Current code (authenticator or backup code): ", 1);
    s.type_line(&codes[0]);
    let screen = s.expect("Code from the authenticator", 1);
    assert!(
        screen.contains("The current authenticator keeps working until the new one is confirmed"),
        "{screen}"
    );
    let second = secret_on(&screen);
    assert_ne!(second.as_bytes(), first.as_bytes());
    s.type_line(&code_at(second.as_bytes(), now(), TotpParams::default()).unwrap());
    let (code, screen) = s.finish();
    assert_eq!(code, 0, "{screen}");
    let fresh = codes_on(&screen);
    assert_eq!(fresh.len(), 10, "{screen}");
    assert!(fresh.iter().all(|c| !codes.contains(c)), "{screen}");
    assert!(!screen.contains(PASSWORD), "the password was echoed");
    assert!(!screen.contains(&codes[0]), "the code typed was echoed");
}

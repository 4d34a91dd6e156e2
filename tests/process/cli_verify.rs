//! `sparekey account add --second-factor-only` and `sparekey verify` as a child process: exit
//! codes, JSON, the probe, and the simulated login's refusal of such accounts.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sparekey::core::totp::{TotpParams, TotpSecret, code_at};
use tempfile::TempDir;

use crate::support::process::isolated_env;

/// Runs the built binary confined to `dir`; returns (exit code, stdout, stderr).
pub fn run(dir: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
        .args(args)
        .envs(isolated_env(dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn totp(secret: &str, at: i64) -> String {
    let secret = TotpSecret::from_base32(secret).unwrap();
    code_at(secret.as_bytes(), at, TotpParams::default()).unwrap()
}

/// Creates a second-factor-only `name` in `dir` and confirms an authenticator with the current
/// step's code; returns the secret and the backup codes.
pub fn enrolled_only(dir: &std::path::Path, name: &str) -> (String, Vec<String>) {
    let (code, out, err) = run(dir, &["account", "add", name, "--second-factor-only"], "");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(dir, &["--json", "enroll", name], "");
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let line = format!("{}\n", totp(&secret, now()));
    let (code, out, err) = run(dir, &["--json", "enroll", name, "--confirm"], &line);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let codes = (v["codes"].as_array().unwrap().iter())
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

#[test]
fn verify_checks_only_the_second_factor_with_the_login_exit_codes() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let (secret, codes) = enrolled_only(dir, "bob");

    // The simulated login refuses the account, whatever password is given.
    let (code, _, err) = run(dir, &["login", "bob"], "anything at all\n\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("second-factor-only"), "{err}");

    // The next step's code (the current one confirmed the enrollment): accepted once.
    let next = format!("{}\n", totp(&secret, now() + 30));
    let (code, out, err) = run(dir, &["--json", "verify", "bob"], &next);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["result"].as_str(), v["method"].as_str()),
        (Some("accepted"), Some("totp"))
    );
    let (code, _, err) = run(dir, &["verify", "bob"], &next);
    assert_eq!(code, 1, "a replay is a rejection: {err}");
    assert!(err.contains("already used"), "{err}");

    // A backup code: once, with the count left; then refused.
    let backup = format!("{}\n", codes[0]);
    let (code, out, _) = run(dir, &["verify", "bob"], &backup);
    assert_eq!(code, 0);
    assert_eq!(out, "accepted: backup code, 9 of 10 codes remain\n");
    assert_eq!(run(dir, &["verify", "bob"], &backup).0, 1);

    // A typo is bad input (2) and costs nothing; no line at all is bad input too.
    assert_eq!(run(dir, &["verify", "bob"], "12345\n").0, 2);
    assert_eq!(run(dir, &["verify", "bob"], "").0, 2);
    let (_, list, _) = run(dir, &["--json", "account", "list"], "");
    let v: Value = serde_json::from_str(&list).unwrap();
    // The backup code's success cleared the TOTP replay; only its own replay counts, no typo.
    assert_eq!(v["accounts"][0]["consecutive_failures"], 1);

    // Unknown account: bad input (2), as for every other command naming one.
    assert_eq!(run(dir, &["verify", "nobody"], "123456\n").0, 2);
}

/// `sparekey --json verify NAME --probe`: (exit code, the `second_factor` answer if any).
fn probe(dir: &std::path::Path, name: &str, stdin: &str) -> (i32, Option<String>) {
    let (code, out, _) = run(dir, &["--json", "verify", name, "--probe"], stdin);
    let v: Value = serde_json::from_str(&out).unwrap();
    (code, v["second_factor"].as_str().map(str::to_string))
}

#[test]
fn probe_reads_nothing_and_tells_ready_unenrolled_and_locked_apart() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    // No store yet: a login never creates one (exit 4, nothing made), so PAM gets no answer.
    let (code, _, err) = run(dir, &["verify", "bob", "--probe"], "");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no store at"), "{err}");
    assert!(!dir.join("data").exists() && !dir.join("key").exists());
    let (code, out, _) = run(dir, &["account", "add", "bob", "--second-factor-only"], "");
    assert_eq!(code, 0);
    assert!(out.contains("second factor only"), "{out}");
    assert_eq!(probe(dir, "bob", ""), (0, Some("no_authenticator".into())));
    let (code, out, err) = run(dir, &["--json", "enroll", "bob"], "");
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let line = format!("{}\n", totp(&secret, now()));
    assert_eq!(run(dir, &["enroll", "bob", "--confirm"], &line).0, 0);
    // The probe reads no stdin: a code given to it stays unused.
    let next = format!("{}\n", totp(&secret, now() + 30));
    assert_eq!(probe(dir, "bob", &next), (0, Some("ready".into())));
    assert_eq!(run(dir, &["verify", "bob"], &next).0, 0);
    // Five free failures, then the throttle: exit 3 for the probe and for verify.
    for _ in 0..5 {
        assert_eq!(run(dir, &["verify", "bob"], "000000\n").0, 1);
    }
    let _ = run(dir, &["verify", "bob"], "000000\n");
    assert_eq!(probe(dir, "bob", "").0, 3);
    assert_eq!(run(dir, &["verify", "bob"], "000000\n").0, 3);
}

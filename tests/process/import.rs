//! `sparekey import google-authenticator` and `sparekey import otpauth` as a child process: the
//! code Debian's `oathtool` computes from the imported secret then verifies (so the user's
//! phone keeps working), the source file is left byte for byte and time for time as it was, HOTP
//! is refused, and the scratch codes are replaced by a fresh set.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::cli_verify::run;
use crate::support;

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SCRATCH: [&str; 3] = ["11223344", "55667788", "99001122"];

/// `oathtool ARGS SECRET` (ARGS `--totp` and its options), or `None` (after saying "skipped: …") without oathtool.
fn oathtool(args: &[&str], secret: &str) -> Option<String> {
    match Command::new("oathtool")
        .args(args)
        .args(["-b", secret])
        .output()
    {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
        }
        Ok(out) => panic!("oathtool failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => {
            support::skip("needs oathtool (Debian's oathtool package)");
            None
        }
    }
}

fn google_file() -> String {
    format!(
        "{SECRET}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n{}\n",
        SCRATCH.join("\n")
    )
}

#[test]
fn a_google_authenticator_file_imports_and_oathtool_codes_then_verify() {
    let Some(code) = oathtool(&["--totp"], SECRET) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let file = dir.join("google_authenticator");
    std::fs::write(&file, google_file()).unwrap();
    let before = std::fs::metadata(&file).unwrap();
    let path = file.to_str().unwrap();

    let (exit, out, err) = run(
        dir,
        &[
            "--json",
            "import",
            "google-authenticator",
            path,
            "--account",
            "bob",
        ],
        "",
    );
    assert_eq!(exit, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("3 scratch codes are not carried over"),
        "{notes}"
    );
    assert!(
        notes.contains("WINDOW_SIZE 17") && notes.contains("RATE_LIMIT"),
        "{notes}"
    );
    let codes: Vec<String> = (v["codes"].as_array().unwrap().iter())
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(!out.contains(SECRET), "the secret is never printed");
    for scratch in SCRATCH {
        assert!(!out.contains(scratch), "a scratch code was carried over");
        let (exit, _, _) = run(dir, &["verify", "bob"], &format!("{scratch}\n"));
        assert_ne!(exit, 0, "a scratch code does not verify");
    }

    // The phone's code (oathtool's, from the same secret) verifies; a fresh backup code too.
    let (exit, out, err) = run(dir, &["verify", "bob"], &format!("{code}\n"));
    assert_eq!(exit, 0, "{out}{err}");
    let (exit, _, _) = run(dir, &["verify", "bob"], &format!("{}\n", codes[0]));
    assert_eq!(exit, 0);

    // The file is exactly as it was.
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), google_file());
    assert_eq!(
        (after.mtime(), after.mtime_nsec(), after.mode(), after.ino()),
        (
            before.mtime(),
            before.mtime_nsec(),
            before.mode(),
            before.ino()
        )
    );

    // It is a second-factor-only account, and a second import is refused.
    let (exit, _, err) = run(dir, &["login", "bob"], "pw\n\n");
    assert_eq!(exit, 2);
    assert!(err.contains("second-factor-only"), "{err}");
    let again = ["import", "google-authenticator", path, "--account", "bob"];
    let (exit, _, err) = run(dir, &again, "");
    assert_eq!(exit, 2);
    assert!(err.contains("already has an authenticator"), "{err}");
}

#[test]
fn hotp_files_are_refused_and_nothing_is_created() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let file = dir.join("hotp");
    std::fs::write(&file, format!("{SECRET}\n\" HOTP_COUNTER 4\n11223344\n")).unwrap();
    let args = [
        "import",
        "google-authenticator",
        file.to_str().unwrap(),
        "--account",
        "bob",
    ];
    let (exit, out, err) = run(dir, &args, "");
    assert_eq!(exit, 2, "{out}{err}");
    assert!(err.contains("HOTP") && err.lines().count() == 1, "{err}");
    assert!(!err.contains(SECRET));
    let (exit, _, err) = run(dir, &["verify", "bob", "--probe"], "");
    assert_eq!(exit, 4, "no store (so no account) was created: {err}");
    assert!(err.contains("no store at"), "{err}");
}

#[test]
fn an_otpauth_uri_imports_with_its_parameters() {
    let Some(code) = oathtool(&["--totp=sha256", "-d", "8", "-s", "60"], SECRET) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    let uri = format!(
        "otpauth://totp/ACME:carol?secret={SECRET}&issuer=ACME&algorithm=SHA256&digits=8&period=60\n"
    );
    let (exit, out, err) = run(dir, &["import", "otpauth", "carol"], &uri);
    assert_eq!(exit, 0, "{out}{err}");
    assert!(out.contains("New backup codes for carol (ACME)"), "{out}");
    let (exit, out, err) = run(dir, &["verify", "carol"], &format!("{code}\n"));
    assert_eq!(exit, 0, "{out}{err}");
    let (exit, _, err) = run(
        dir,
        &["import", "otpauth", "dave"],
        "otpauth://hotp/x?secret=AA\n",
    );
    assert_eq!(exit, 2);
    assert!(err.contains("HOTP"), "{err}");
}

//! The real `sparekey` binary, run end to end on throwaway stores: every command, its exit code,
//! its JSON and its errors. Each test has its own data dir and key file (both always set, so
//! nothing touches the real home). The binary has no cheap-hash switch, so every hash here costs
//! what it costs a user (OWASP parameters).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sparekey::core::totp::{TotpParams, TotpSecret, code_at};
use tempfile::TempDir;

use crate::support::PASSWORD;
use crate::support::process::isolated_env;

struct Env {
    dir: TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {:?}", self.stdout))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Exit code `code` and exactly one `sparekey: ` line on stderr.
    #[track_caller]
    fn fails(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.starts_with("sparekey: "),
            "stderr: {:?}",
            self.stderr
        );
        assert_eq!(self.stderr.lines().count(), 1, "stderr: {:?}", self.stderr);
        self
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn totp(secret: &str, at: i64) -> String {
    let secret = TotpSecret::from_base32(secret).unwrap();
    code_at(secret.as_bytes(), at, TotpParams::default()).unwrap()
}

impl Env {
    fn new() -> Self {
        Self {
            dir: TempDir::new().unwrap(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str], stdin: &str) -> Run {
        self.run_bytes(args, stdin.as_bytes().to_vec())
    }

    fn run_bytes(&self, args: &[&str], stdin: Vec<u8>) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
            .args(args)
            .envs(isolated_env(self.dir.path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        // The child may stop reading early (that is the point of some tests): ignore EPIPE.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&stdin);
        });
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run {
            code: status.code().expect("exited, not killed by a signal"),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    fn add(&self, name: &str) {
        self.run(&["account", "add", name], &format!("{PASSWORD}\n"))
            .ok();
    }

    /// Adds `name`, enrolls and confirms an authenticator; returns its secret and the codes.
    fn enrolled(&self, name: &str) -> (String, Vec<String>) {
        self.add(name);
        let secret = self.run(&["--json", "enroll", name], "").ok().json()["secret"]
            .as_str()
            .unwrap()
            .to_string();
        let confirmed = self
            .run(
                &["--json", "enroll", name, "--confirm"],
                &format!("{}\n", totp(&secret, now())),
            )
            .ok()
            .json();
        let codes = confirmed["codes"].as_array().unwrap();
        (
            secret,
            codes
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect(),
        )
    }

    fn login(&self, name: &str, code: &str) -> Run {
        self.run(&["--json", "login", name], &format!("{PASSWORD}\n{code}\n"))
    }
}

fn is_code_format(code: &str) -> bool {
    let groups: Vec<&str> = code.split('-').collect();
    groups.len() == 4
        && groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        })
}

#[test]
fn enroll_login_replay_backup_codes_and_regenerate() {
    let env = Env::new();
    env.add("alice");

    // Enrollment: the JSON carries exactly the account, the secret and the URI.
    let enrollment = env.run(&["--json", "enroll", "alice"], "").ok().json();
    let fields: Vec<&String> = enrollment.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["account", "otpauth_uri", "secret"]);
    assert_eq!(enrollment["account"], "alice");
    let secret = enrollment["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32, "20 bytes of base32 without padding");
    assert!(
        enrollment["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "otpauth://totp/sparekey:alice?secret={secret}&issuer=sparekey"
            ))
    );

    // Confirming turns 2FA on and shows the codes once.
    let confirmed = env
        .run(
            &["--json", "enroll", "alice", "--confirm"],
            &format!("{}\n", totp(&secret, now())),
        )
        .ok()
        .json();
    assert_eq!(confirmed["account"], "alice");
    let codes: Vec<String> = confirmed["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| is_code_format(c)), "{codes:?}");

    // A TOTP login with the next step's code (the confirming step is spent).
    let next = totp(&secret, now() + 30);
    let accepted = env.login("alice", &next).ok().json();
    assert_eq!(
        accepted,
        serde_json::json!({"result": "accepted", "method": "totp", "remaining_codes": 10,
            "total_codes": 10, "low_on_codes": false})
    );
    // The same code again is a replay.
    let replay = env.login("alice", &next).fails(1);
    assert_eq!(replay.json()["kind"], "rejected");
    assert!(replay.stderr.contains("already used"), "{}", replay.stderr);

    // A backup code typed in upper case with spaces instead of hyphens.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let plain = env
        .run(&["login", "alice"], &format!("{PASSWORD}\n{typed}\n"))
        .ok();
    assert_eq!(
        plain.stdout,
        "accepted: backup code, 9 of 10 codes remain\n"
    );
    // ...works once.
    let again = env
        .run(&["login", "alice"], &format!("{PASSWORD}\n{}\n", codes[3]))
        .fails(1);
    assert!(again.stderr.contains("already used"), "{}", again.stderr);
    assert!(
        again.stdout.is_empty(),
        "nothing on stdout without --json: {}",
        again.stdout
    );

    // Counting down.
    env.login("alice", &codes[0]).ok();
    let status = env
        .run(&["--json", "codes", "status", "alice"], "")
        .ok()
        .json();
    assert_eq!(status["remaining"], 8);
    assert_eq!(status["total"], 10);
    let status = env.run(&["codes", "status", "alice"], "").ok();
    assert!(
        status
            .stdout
            .starts_with("'alice': 8 of 10 backup codes remain"),
        "{}",
        status.stdout
    );

    // Regeneration needs the password and a current code, and replaces the whole set.
    env.run(
        &["codes", "regenerate", "alice"],
        &format!("wrong password\n{}\n", codes[9]),
    )
    .fails(1);
    let fresh = env
        .run(
            &["--json", "--codes", "5", "codes", "regenerate", "alice"],
            &format!("{PASSWORD}\n{}\n", codes[9]),
        )
        .ok()
        .json();
    let fresh: Vec<String> = fresh["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(fresh.len(), 5);
    assert!(fresh.iter().all(|c| !codes.contains(c)));
    env.login("alice", &codes[5]).fails(1);
    let accepted = env.login("alice", &fresh[0]).ok().json();
    assert_eq!(accepted["method"], "backup_code");
    assert_eq!(accepted["remaining_codes"], 4);

    // The audit log tells the story, without any code in it.
    let audit = env.run(&["audit", "alice"], "").ok().stdout;
    let logins: Vec<&str> = audit
        .lines()
        .filter(|l| l.ends_with("  alice  login with backup code"))
        .collect();
    assert_eq!(logins.len(), 3, "{audit}");
    let stamp = logins[0].split("  ").next().unwrap();
    assert!(
        stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "UTC timestamp: {stamp}"
    );
    assert!(audit.contains("replayed backup code refused"), "{audit}");
    for code in codes.iter().chain(&fresh) {
        assert!(!audit.contains(code.as_str()) && !audit.contains(&code.replace('-', "")));
    }
    assert!(!audit.contains(&secret));

    let events = env
        .run(&["--json", "audit", "--limit", "2"], "")
        .ok()
        .json();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["event"], "login");
    assert_eq!(events[1]["account"], "alice");
    assert_eq!(events[1]["description"], "login with backup code");
    assert!(events[1]["at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn low_codes_warn_and_login_needs_the_second_factor() {
    let env = Env::new();
    let (_, codes) = env.enrolled("bob");
    // No code line on an account with 2FA: bad input, not a rejection.
    env.run(&["login", "bob"], &format!("{PASSWORD}\n"))
        .fails(2);
    // A typo in a backup code is caught by its check character and costs nothing.
    let mut typo = codes[0].clone().into_bytes();
    typo[0] = if typo[0] == b'2' { b'3' } else { b'2' };
    let typo = String::from_utf8(typo).unwrap();
    let refused = env
        .run(&["login", "bob"], &format!("{PASSWORD}\n{typo}\n"))
        .fails(2);
    assert!(refused.stderr.contains("typo"), "{}", refused.stderr);
    let list = env.run(&["--json", "account", "list"], "").ok().json();
    assert_eq!(list["accounts"][0]["consecutive_failures"], 0);

    for code in &codes[..6] {
        env.login("bob", code).ok();
    }
    let seventh = env
        .run(&["login", "bob"], &format!("{PASSWORD}\n{}\n", codes[6]))
        .ok();
    assert_eq!(
        seventh.stdout,
        "accepted: backup code, 3 of 10 codes remain\n\
         warning: only 3 backup codes remain: run `sparekey codes regenerate bob` for a new set\n"
    );
    let list = env.run(&["--json", "account", "list"], "").ok().json();
    let bob = &list["accounts"][0];
    assert_eq!(bob["name"], "bob");
    assert_eq!(bob["two_factor"], true);
    assert_eq!(bob["remaining_codes"], 3);
    assert_eq!(bob["total_codes"], 10);
    assert_eq!(bob["locked"], false);
    assert_eq!(bob["needs_attention"], true);
    assert_eq!(bob["last_login"]["method"], "backup_code");
}

#[test]
fn throttled_attempts_exit_3_until_unlocked() {
    let env = Env::new();
    env.add("carol");
    for _ in 0..5 {
        env.run(&["login", "carol"], "not the password\n").fails(1);
    }
    // Even the right password is refused at once while the delay runs.
    let throttled = env
        .run(&["--json", "login", "carol"], &format!("{PASSWORD}\n"))
        .fails(3);
    let json = throttled.json();
    assert_eq!(json["kind"], "throttled");
    let left = json["seconds_left"].as_i64().unwrap();
    assert!((1..=30).contains(&left), "{left}");
    assert!(
        throttled.stderr.contains("try again in"),
        "{}",
        throttled.stderr
    );

    let unlocked = env.run(&["unlock", "carol"], "").ok();
    assert!(unlocked.stdout.contains("unlocked"));
    let accepted = env.run(&["login", "carol"], &format!("{PASSWORD}\n")).ok();
    assert_eq!(
        accepted.stdout,
        "accepted: password (no two-factor authentication)\n"
    );
    env.run(&["unlock", "nobody"], "").fails(2);
}

#[test]
fn reenrolling_needs_the_password_and_reset_turns_2fa_off() {
    let env = Env::new();
    let (_, codes) = env.enrolled("dave");
    // Re-enrolling reads the password first, then a current code.
    env.run(
        &["enroll", "dave"],
        &format!("wrong password\n{}\n", codes[1]),
    )
    .fails(1);
    let again = env
        .run(
            &["--json", "enroll", "dave"],
            &format!("{PASSWORD}\n{}\n", codes[1]),
        )
        .ok()
        .json();
    assert!(again["secret"].is_string());
    // The old codes keep working until the new authenticator is confirmed.
    env.login("dave", &codes[0]).ok();

    env.run(&["reset", "dave"], "").ok();
    let status = env
        .run(&["--json", "codes", "status", "dave"], "")
        .ok()
        .json();
    assert_eq!(
        (status["remaining"].as_u64(), status["total"].as_u64()),
        (Some(0), Some(0))
    );
    let accepted = env
        .run(&["--json", "login", "dave"], &format!("{PASSWORD}\n"))
        .ok()
        .json();
    assert_eq!(accepted["method"], "password");
    let audit = env.run(&["audit", "dave"], "").ok().stdout;
    assert!(
        audit.contains("two-factor authentication reset by operator"),
        "{audit}"
    );

    env.run(&["account", "remove", "dave"], "").ok();
    let list = env.run(&["--json", "account", "list"], "").ok().json();
    assert_eq!(list, serde_json::json!({"accounts": []}));
    env.run(&["account", "remove", "dave"], "").fails(2);
}

#[test]
fn out_file_is_private_and_never_overwritten() {
    let env = Env::new();
    env.add("erin");
    let secret = env.run(&["--json", "enroll", "erin"], "").ok().json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let file = env.path("erin-codes.txt");
    let file_arg = file.to_str().unwrap();
    let wrote = env
        .run(
            &["--json", "enroll", "erin", "--confirm", "--out", file_arg],
            &format!("{}\n", totp(&secret, now())),
        )
        .ok();
    let json = wrote.json();
    assert_eq!(json["count"], 10);
    assert!(
        json.get("codes").is_none(),
        "codes go to the file only: {json}"
    );

    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let contents = std::fs::read_to_string(&file).unwrap();
    assert!(
        contents.contains("Account: erin") && contents.contains("Issuer:  sparekey"),
        "{contents}"
    );
    let codes: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_once(". [ ] ").map(|(_, code)| code))
        .collect();
    assert_eq!(codes.len(), 10, "{contents}");
    assert!(contents.lines().any(|l| l.starts_with(" 1. [ ] ")) && contents.contains("\n10. [ ] "));

    // The codes in the file log in.
    env.login("erin", codes[0]).ok();

    // An existing file is refused before anything changes: the old set stays valid.
    let refused = env
        .run(
            &["codes", "regenerate", "erin", "--out", file_arg],
            &format!("{PASSWORD}\n"),
        )
        .fails(2);
    assert!(
        refused.stderr.contains("already exists"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), contents);
    env.login("erin", codes[1]).ok();

    // A new file with regenerate, plain output.
    let second = env.path("erin-2.txt");
    let plain = env
        .run(
            &[
                "codes",
                "regenerate",
                "erin",
                "--out",
                second.to_str().unwrap(),
            ],
            &format!("{PASSWORD}\n{}\n", codes[3]),
        )
        .ok();
    assert!(
        plain
            .stdout
            .starts_with("wrote 10 new backup codes for 'erin'"),
        "{}",
        plain.stdout
    );
    assert_eq!(
        std::fs::metadata(&second).unwrap().permissions().mode() & 0o777,
        0o600
    );
    env.login("erin", codes[2]).fails(1);
}

#[test]
fn huge_or_binary_stdin_is_bad_input() {
    let env = Env::new();
    let huge = env
        .run_bytes(&["account", "add", "frank"], vec![b'a'; 1 << 20])
        .fails(2);
    assert!(
        huge.stderr.contains("longer than 4096 bytes"),
        "{}",
        huge.stderr
    );
    let binary = env
        .run_bytes(
            &["--json", "account", "add", "frank"],
            b"\xff\xfe\x00\x01binary\n".to_vec(),
        )
        .fails(2);
    assert_eq!(binary.json()["kind"], "invalid");
    let mut long_line = vec![b'x'; 5000];
    long_line.push(b'\n');
    env.run_bytes(&["login", "frank"], long_line).fails(2);
    env.run(&["account", "add", "frank"], "").fails(2);
    // Nothing was created.
    let list = env.run(&["--json", "account", "list"], "").ok().json();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 0);
}

#[test]
fn a_second_process_on_the_store_exits_4() {
    let env = Env::new();
    env.add("grace");
    let store_path = env.data_dir().join("store");
    let held = sparekey::store::sled_store::SledStore::open(&store_path, Duration::ZERO).unwrap();
    let busy = env.run(&["--json", "account", "list"], "").fails(4);
    assert!(
        busy.stderr.contains(&format!(
            "in use by sparekey process {}",
            std::process::id()
        )),
        "{}",
        busy.stderr
    );
    assert!(
        busy.stderr.contains(store_path.to_str().unwrap()),
        "{}",
        busy.stderr
    );
    assert_eq!(busy.json()["kind"], "store");
    drop(held);
    env.run(&["account", "list"], "").ok();
}

fn write_private(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_key_file_others_may_read_exits_4_with_the_fix() {
    let env = Env::new();
    env.add("ivan");
    let key = env.key_file();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let refused = env.run(&["--json", "account", "list"], "").fails(4);
    let fix = format!("run chmod 600 {}", key.display());
    assert!(refused.stderr.contains(&fix), "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert_eq!(refused.json()["kind"], "store");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.run(&["account", "list"], "").ok();

    // A new key is never put where other users could swap it.
    let shared = env.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let new_key = shared.join("key");
    let data = env.path("fresh-data");
    let refused = env
        .run(
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--key-file",
                new_key.to_str().unwrap(),
                "account",
                "list",
            ],
            "",
        )
        .fails(4);
    assert!(refused.stderr.contains("chmod go-w"), "{}", refused.stderr);
    assert!(!new_key.exists());
}

#[test]
fn a_wrong_or_missing_key_file_exits_4() {
    let env = Env::new();
    env.add("heidi");
    let other = env.path("other-key");
    write_private(&other, format!("{}\n", "ab".repeat(32)).as_bytes());
    let wrong = env
        .run(
            &["--key-file", other.to_str().unwrap(), "account", "list"],
            "",
        )
        .fails(4);
    assert!(
        wrong.stderr.contains("does not belong to this store"),
        "{}",
        wrong.stderr
    );

    let missing = env.path("missing-key");
    let gone = env
        .run(
            &["--key-file", missing.to_str().unwrap(), "account", "list"],
            "",
        )
        .fails(4);
    assert!(gone.stderr.contains("missing"), "{}", gone.stderr);
    assert!(!missing.exists(), "no stray key file is left behind");

    let garbage = env.path("garbage-key");
    write_private(&garbage, b"not a key");
    let bad = env
        .run(
            &["--key-file", garbage.to_str().unwrap(), "account", "list"],
            "",
        )
        .fails(4);
    assert!(bad.stderr.contains("not a sparekey key"), "{}", bad.stderr);
    // The right key still opens it.
    env.run(&["account", "list"], "").ok();
}

#[test]
fn usage_errors_exit_2_and_errors_are_json_under_json() {
    let env = Env::new();
    let usage = env.run(&["--json", "login"], "");
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    assert_eq!(usage.json()["kind"], "invalid");
    assert_eq!(env.run(&["frobnicate"], "").code, 2);
    env.run(&["--json", "--codes", "3", "enroll", "x"], "")
        .fails(2);
    env.run(&["--issuer", "a:b", "account", "list"], "")
        .fails(2);

    let unknown = env
        .run(&["--json", "codes", "status", "nobody"], "")
        .fails(2);
    let json = unknown.json();
    assert_eq!(json["kind"], "invalid");
    assert_eq!(json["error"], "no account named 'nobody'");
    assert_eq!(unknown.stderr, "sparekey: no account named 'nobody'\n");
    // An unknown name at login reads like a wrong password.
    let login = env
        .run(&["--json", "login", "nobody"], "whatever password\n")
        .fails(1);
    assert_eq!(login.json()["error"], "wrong account name or password");

    // No hash switch shows in the help (there is none); the real options are there.
    let help = env.run(&["--help"], "").ok().stdout;
    assert!(
        !help.contains("INSECURE") && !help.contains("TEST_HASH"),
        "{help}"
    );
    assert!(
        help.contains("SPAREKEY_DATA_DIR") && help.contains("--key-file"),
        "{help}"
    );
}

/// The variable that once made the binary hash cheaply for tests, and any flag-like spelling of
/// it, change nothing: what the binary stores is hashed with the OWASP parameters.
#[test]
fn no_environment_variable_weakens_hashing() {
    use sparekey::core::password::HashParams;
    use sparekey::core::store::Store;
    let env = Env::new();
    let run = |args: &[&str], stdin: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_sparekey"))
            .args(args)
            .envs(isolated_env(env.dir.path()))
            .env("SPAREKEY_INSECURE_TEST_HASH", "1")
            .env("SPAREKEY_TEST_HASH", "1")
            .env("SPAREKEY_HASH_PARAMS", "m=64,t=1,p=1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        out.stdin
            .as_ref()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = out.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    run(
        &["--json", "account", "add", "alice"],
        &format!("{PASSWORD}\n"),
    );
    let secret = run(&["--json", "enroll", "alice"], "")["secret"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        &["--json", "enroll", "alice", "--confirm"],
        &format!("{}\n", totp(&secret, now())),
    );

    let store = sparekey::store::sled_store::SledStore::open(
        &env.data_dir().join("store"),
        Duration::from_secs(5),
    )
    .unwrap();
    let key = sparekey::app::key_file::read_key(&env.key_file()).unwrap();
    sparekey::core::store::Store::bind_key(&store, &key.store_key()).unwrap();
    let alice = store.load_account("alice").unwrap().unwrap();
    let o = HashParams::OWASP;
    let phc_params = format!("$m={},t={},p={},", o.m_kib, o.t, o.p);
    assert!(alice.password.contains(&phc_params), "{}", alice.password);
    assert_eq!(alice.codes.unwrap().params, o);
}

#[test]
fn created_files_are_private() {
    let env = Env::new();
    env.add("ivan");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.key_file()), 0o600);
    assert_eq!(mode(&env.data_dir()), 0o700);
    for entry in std::fs::read_dir(env.data_dir().join("store")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            mode(&path) & 0o077,
            0,
            "{} is group/world accessible",
            path.display()
        );
    }
    // The console has no JSON mode, and needs a terminal: refused before anything opens.
    let tui = env.run(&["--json"], "").fails(2);
    assert_eq!(tui.json()["kind"], "invalid");
    let piped = env.run(&["tui", "--kiosk"], "").fails(2);
    assert!(
        piped.stderr.contains("needs a terminal"),
        "{}",
        piped.stderr
    );
}

#[test]
fn backup_restore_and_doctor() {
    let env = Env::new();
    let (_, codes) = env.enrolled("alice");
    let file = env.path("alice.backup");
    let file_arg = file.to_str().unwrap();
    let backup = env.run(&["--json", "backup", file_arg], "").ok().json();
    assert_eq!(backup["accounts"], 1);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwritten: the second backup to the same file is refused.
    env.run(&["backup", file_arg], "").fails(4);

    // A code used after the backup is usable again once the backup is restored; the store it
    // replaced is kept aside.
    env.login("alice", &codes[0]).ok();
    let restored = env.run(&["--json", "restore", file_arg], "").ok().json();
    let aside = PathBuf::from(restored["previous_store"].as_str().unwrap());
    assert!(aside.is_dir());
    assert_eq!(
        env.login("alice", &codes[0]).ok().json()["result"],
        "accepted"
    );

    let doctor = env.run(&["--json", "doctor"], "").ok().json();
    assert_eq!(doctor["ok"], true, "{doctor}");
    std::fs::set_permissions(env.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = env.run(&["doctor"], "").fails(4);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("FIX") && l.contains("chmod 600")),
        "{}",
        run.stdout
    );
}

#[test]
fn parallel_processes_wait_for_the_store_or_fail_cleanly() {
    let env = Env::new();
    let (_, codes) = env.enrolled("alice");
    // Six processes at once, each with its own code: each waits for the lock and succeeds, or
    // gives up with exit 4 and one clear line; none corrupts anything.
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = codes[..6]
            .iter()
            .map(|code| s.spawn(|| env.login("alice", code)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut accepted = 0;
    for run in runs {
        match run.code {
            0 => accepted += 1,
            4 => {
                let run = run.fails(4);
                assert!(run.stderr.contains("is in use by"), "{}", run.stderr);
            }
            other => panic!("unexpected exit {other}: {}", run.stderr),
        }
    }
    assert!(accepted >= 1);
    let status = env
        .run(&["--json", "codes", "status", "alice"], "")
        .ok()
        .json();
    assert_eq!(status["remaining"], 10 - accepted);
}

#[test]
fn kiosk_reset_operator_password_clears_the_operator_failures_and_is_audited() {
    let env = Env::new();
    env.run(&["account", "add", "erin"], &format!("{PASSWORD}\n"))
        .ok();
    let cleared = env.run(&["kiosk", "reset-operator-password"], "").ok();
    assert!(
        cleared.stdout.contains("failed attempts are cleared"),
        "{}",
        cleared.stdout
    );
    let audit = env.run(&["audit", "kiosk:operator"], "").ok();
    assert!(
        audit
            .stdout
            .contains("kiosk operator failures cleared from the shell"),
        "{}",
        audit.stdout
    );
}

// ----- step-up, codes never lost, no core dumps ----------------------------------------------

impl Env {
    /// Runs the binary through `sh` with `redirect` applied to it (`>&-` closes its stdout).
    fn run_redirected(&self, redirect: &str, args: &[&str], stdin: &str) -> Run {
        let mut sh_args = vec![
            "-c".to_string(),
            format!("exec \"$0\" \"$@\" {redirect}"),
            env!("CARGO_BIN_EXE_sparekey").to_string(),
        ];
        sh_args.extend(args.iter().map(|a| a.to_string()));
        self.run_with(Command::new("sh").args(sh_args), stdin, Stdio::piped())
    }

    fn run_with(&self, cmd: &mut Command, stdin: &str, stdout: Stdio) -> Run {
        let mut child = cmd
            .env("SPAREKEY_DATA_DIR", self.data_dir())
            .env("SPAREKEY_KEY_FILE", self.key_file())
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        let stdin = stdin.as_bytes().to_vec();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&stdin);
        });
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run {
            code: status.code().expect("exited, not killed by a signal"),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    /// What a refused command must leave as it was: the code status and the account list.
    fn state(&self, name: &str) -> (Value, Value) {
        (
            self.run(&["--json", "codes", "status", name], "")
                .ok()
                .json(),
            self.run(&["--json", "account", "list"], "").ok().json(),
        )
    }
}

#[test]
fn password_only_regenerate_and_reenroll_exit_1_and_change_nothing() {
    let env = Env::new();
    let (_, codes) = env.enrolled("bob");
    // Bob himself starts replacing his authenticator (with a backup code): someone with only
    // the password must not be able to finish it either.
    let started = env
        .run(
            &["--json", "enroll", "bob"],
            &format!("{PASSWORD}\n{}\n", codes[5]),
        )
        .ok()
        .json();
    let new = started["secret"].as_str().unwrap().to_string();
    let before = env.state("bob");
    let pw = format!("{PASSWORD}\n");
    for args in [
        &["codes", "regenerate", "bob"][..],
        &["--json", "codes", "regenerate", "bob"],
        &["enroll", "bob"],
        &["enroll", "bob", "--confirm"],
    ] {
        let refused = env.run(args, &pw).fails(1);
        assert!(
            refused.stderr.contains("not only the password"),
            "{args:?}: {}",
            refused.stderr
        );
        // An empty code line is no code either.
        env.run(args, &format!("{PASSWORD}\n\n")).fails(1);
    }
    // A code that is not a current one of the old authenticator is refused too, and counted:
    // here the new authenticator's, which such an attacker would not even have.
    let new_code = totp(&new, now());
    env.run(
        &["enroll", "bob", "--confirm"],
        &format!("{PASSWORD}\n{new_code}\n{new_code}\n"),
    )
    .fails(1);
    env.run(
        &["codes", "regenerate", "bob"],
        &format!("{PASSWORD}\n000000\n"),
    )
    .fails(1);
    env.run(&["unlock", "bob"], "").ok();
    assert_eq!(env.state("bob"), before, "nothing changed");
    let audit = env.run(&["audit", "bob"], "").ok().stdout;
    let count = |what: &str| audit.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        (
            count("enrollment started"),
            count("new backup codes issued"),
            count("enrolled"),
        ),
        (2, 1, 1),
        "only bob's own: {audit}"
    );
    // The old codes still work; the new authenticator still waits for bob.
    env.login("bob", &codes[0]).ok();
}

#[test]
fn reenrolling_reads_the_password_and_a_code_and_confirms_after_them() {
    let env = Env::new();
    let (old, codes) = env.enrolled("cyd");
    let started = env
        .run(
            &["--json", "enroll", "cyd"],
            &format!("{PASSWORD}\n{}\n", codes[0]),
        )
        .ok()
        .json();
    let new = started["secret"].as_str().unwrap().to_string();
    // The confirm: password, a current code of the old authenticator (or a backup code), then
    // the new authenticator's code.
    let confirmed = env
        .run(
            &["--json", "enroll", "cyd", "--confirm"],
            &format!("{PASSWORD}\n{}\n{}\n", codes[1], totp(&new, now())),
        )
        .ok()
        .json();
    assert_eq!(confirmed["codes"].as_array().unwrap().len(), 10);
    env.login("cyd", &codes[2]).fails(1);
    // A code of the old authenticator no longer logs in (its step may equal the new one's, so
    // wait for neither: any old code is now just a wrong code unless they happen to agree).
    let old_code = totp(&old, now() + 30);
    if old_code != totp(&new, now() + 30) {
        let r = env.login("cyd", &old_code);
        assert_ne!(r.code, 0, "{}", r.stdout);
    }
}

#[test]
fn new_codes_never_go_where_they_cannot_be_written() {
    let env = Env::new();
    let (_, codes) = env.enrolled("dee");
    let before = env.state("dee");
    let lines = format!("{PASSWORD}\n{}\n", codes[0]);

    // A closed stdout: refused before the step-up, so not even the code is spent.
    let closed = env
        .run_redirected(">&-", &["codes", "regenerate", "dee"], &lines)
        .fails(4);
    assert!(
        closed
            .stderr
            .contains("standard output is closed or /dev/null"),
        "{}",
        closed.stderr
    );
    // A pipe whose reader is gone.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparekey"));
    cmd.args(["--json", "codes", "regenerate", "dee"]);
    let gone = env.run_with(&mut cmd, &lines, Stdio::from(writer)).fails(4);
    assert!(gone.stderr.contains("has no reader"), "{}", gone.stderr);
    // An --out file in a directory nobody can write (not even root): /proc.
    let proc_file = "/proc/sparekey-codes.txt";
    let refused = env
        .run(&["codes", "regenerate", "dee", "--out", proc_file], &lines)
        .fails(4);
    assert!(
        refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    assert!(!Path::new(proc_file).exists());
    assert_eq!(env.state("dee"), before, "nothing changed");
    env.login("dee", &codes[0]).ok();

    // Output that fails only once written (a full disk): the codes are in force and lost, and
    // the run says so instead of succeeding.
    let full = env
        .run_redirected(
            ">/dev/full",
            &["codes", "regenerate", "dee"],
            &format!("{PASSWORD}\n{}\n", codes[1]),
        )
        .fails(4);
    assert!(
        full.stderr
            .contains("did not reach it and the old ones are void"),
        "{}",
        full.stderr
    );
    env.login("dee", &codes[2]).fails(1);
}

#[test]
fn the_running_binary_is_not_dumpable_and_writes_no_core() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    // A non-dumpable process's /proc files belong to root instead of to the process's user; to
    // see the difference the binary must run as someone else than root. As root, it runs as
    // nobody from a world-readable copy.
    let dir = TempDir::new().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("sparekey");
    std::fs::copy(env!("CARGO_BIN_EXE_sparekey"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_root = rustix::process::geteuid().is_root();
    let user = if as_root {
        65_534
    } else {
        rustix::process::geteuid().as_raw()
    };
    let mut cmd = Command::new(&bin);
    // `login` reads the password line first: the process waits there, after main's set-up.
    cmd.args(["login", "alice"])
        .env("SPAREKEY_DATA_DIR", dir.path().join("data"))
        .env("SPAREKEY_KEY_FILE", dir.path().join("key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if as_root {
        cmd.uid(user).gid(user);
    }
    // Give the child a core limit to lose: it inherits this process's.
    let some = rustix::process::Rlimit {
        current: Some(1 << 20),
        maximum: Some(1 << 20),
    };
    if rustix::process::setrlimit(rustix::process::Resource::Core, some).is_err() {
        eprintln!("note: cannot raise the core limit here, so a limit of 0 proves less");
    }
    // Returns once the child has exec'd (the standard library waits for that).
    let mut child = cmd.spawn().unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let looks = || -> Option<(u32, String, String)> {
        let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
        let limits = std::fs::read_to_string(proc_dir.join("limits")).ok()?;
        let owner = std::fs::metadata(proc_dir.join("status")).ok()?.uid();
        Some((owner, status, limits))
    };
    // Wait (for at most 10 s) until the process sleeps on its stdin, its set-up done.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (owner, status, limits) = loop {
        let seen = looks().expect("the child's /proc files are readable");
        let asleep = seen.1.lines().any(|l| l.starts_with("State:\tS"));
        if (asleep && seen.0 == 0) || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("State:\tS")),
        "still waiting for its password, not exited:\n{status}"
    );
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some(&user.to_string()),
        "runs as {user}: {uid_line}"
    );
    assert_eq!(
        owner, 0,
        "not dumpable: its /proc files belong to root\n{status}"
    );
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
}

#[test]
fn a_common_password_is_refused_with_the_reason() {
    let env = Env::new();
    let refused = env
        .run(&["account", "add", "zoe"], "password123\n")
        .fails(2);
    assert!(
        refused.stderr.contains("common or found in breaches"),
        "{}",
        refused.stderr
    );
    let list = env.run(&["--json", "account", "list"], "").ok().json();
    assert_eq!(list, serde_json::json!({"accounts": []}));
}

#[test]
fn idle_timeout_needs_kiosk_and_the_operator_password_is_set_from_the_shell() {
    let env = Env::new();
    // Not silently ignored: without --kiosk nothing is ever cleared, so the option is refused.
    // (A clap usage error: its wording and prefix are clap's.)
    let refused = env.run(&["tui", "--idle-timeout", "40"], "");
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--kiosk"), "{}", refused.stderr);

    let set = env
        .run(
            &["kiosk", "set-operator-password"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    assert!(
        set.stdout.contains("kiosk operator password is set"),
        "{}",
        set.stdout
    );
    // Set once: changing it is not this command's job.
    let again = env
        .run(&["kiosk", "set-operator-password"], "another password!\n")
        .fails(2);
    assert!(again.stderr.contains("already set"), "{}", again.stderr);
    let none = env.run(&["kiosk", "set-operator-password"], "").fails(2);
    assert!(none.stderr.contains("no password given"), "{}", none.stderr);
}

//! Whole `sparekey login` processes for the benches: the release-profile binary cargo builds for
//! a bench (`CARGO_BIN_EXE_sparekey`), run as a script runs it ([`Cli`]), and logins ready to
//! run on a fixture store ([`Logins`]): backup codes of one account enrolled through the CLI,
//! and TOTP codes of the fixture accounts. Shared by `login_process` (sled) and `postgres`
//! (sled against PostgreSQL).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sparekey::app::{DATA_DIR_ENV, KEY_FILE_ENV, STORE_ENV};
use sparekey::core::clock::{Clock, SystemClock};
use sparekey::core::totp;

use crate::fixture;

pub const BIN: &str = env!("CARGO_BIN_EXE_sparekey");
/// The account enrolled through the CLI, with real backup codes.
pub const CODER: &str = "coder";
const PERIOD: i64 = 30;

/// How `sparekey` is run: its data dir and key file, and the store location (`--store`, here
/// through its environment variable) when it is not the sled store in the data dir.
#[derive(Debug, Clone)]
pub struct Cli {
    pub data: PathBuf,
    pub key: PathBuf,
    pub store: Option<String>,
}

impl Cli {
    /// The CLI on the data dir and key file of `paths`, and `store` if it is not the sled
    /// store there.
    pub fn of(paths: &sparekey::app::Paths, store: Option<String>) -> Self {
        Self {
            data: paths.data_dir.clone(),
            key: paths.key_file.clone(),
            store,
        }
    }

    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env(DATA_DIR_ENV, &self.data)
            .env(KEY_FILE_ENV, &self.key);
        match &self.store {
            Some(store) => command.env(STORE_ENV, store),
            None => command.env_remove(STORE_ENV),
        };
        run_piped(command, stdin)
    }

    pub fn ok(&self, args: &[&str], stdin: &str) -> Output {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "sparekey {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn json(&self, args: &[&str], stdin: &str) -> serde_json::Value {
        serde_json::from_slice(&self.ok(args, stdin).stdout).expect("JSON output")
    }
}

/// Runs `command` with `stdin` written to its standard input and its output collected, the
/// way a script drives `sparekey`; both sides of a process-against-process figure go
/// through here.
pub fn run_piped(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for the process")
}

fn codes_of(value: &serde_json::Value) -> Vec<String> {
    value["codes"]
        .as_array()
        .expect("codes in the JSON output")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect()
}

/// Logins ready to run: backup codes of [`CODER`], and fixture accounts for TOTP.
pub struct Logins {
    pub cli: Cli,
    codes: RefCell<VecDeque<String>>,
    totp_secret: Vec<u8>,
    /// Per fixture account, the last TOTP step used.
    last_step: RefCell<Vec<i64>>,
}

impl Logins {
    /// On the fixture store `generated` (reached through `cli`), enrolls [`CODER`] through the
    /// CLI with 20 backup codes.
    pub fn new(cli: Cli, generated: &fixture::Generated) -> Self {
        let pw = format!("{}\n", fixture::PASSWORD);
        cli.ok(&["account", "add", CODER], &pw);
        let enrolled = cli.json(&["enroll", CODER, "--json"], "");
        let secret = data_encoding::BASE32_NOPAD
            .decode(enrolled["secret"].as_str().expect("secret").as_bytes())
            .expect("base32 secret");
        let code = totp::code_at(&secret, SystemClock.now(), Default::default()).expect("code");
        let issued = cli.json(
            &["enroll", CODER, "--confirm", "--json", "--codes", "20"],
            &format!("{code}\n"),
        );
        let totp_secret = data_encoding::BASE32_NOPAD
            .decode(generated.totp_secret.as_bytes())
            .expect("fixture secret");
        Self {
            cli,
            codes: RefCell::new(codes_of(&issued).into()),
            totp_secret,
            last_step: RefCell::new(vec![-1; generated.accounts]),
        }
    }

    /// The stdin of a backup-code login. The last code of a set is kept for the step-up that
    /// regenerating the set through the CLI needs (password and a current code), untimed.
    pub fn next_backup(&self) -> String {
        let mut codes = self.codes.borrow_mut();
        if codes.len() <= 1 {
            let last = codes.pop_front().expect("the code kept for the step-up");
            let proof = format!("{}\n{last}\n", fixture::PASSWORD);
            let issued = self.cli.json(
                &["codes", "regenerate", CODER, "--json", "--codes", "20"],
                &proof,
            );
            codes.extend(codes_of(&issued));
        }
        format!(
            "{}\n{}\n",
            fixture::PASSWORD,
            codes.pop_front().expect("a code")
        )
    }

    /// A fixture account and the stdin of a TOTP login on it: the code of the next step (inside
    /// the verification window), on an account that has not used that step yet. Waits for the
    /// next step if every account has (untimed: callers prepare before timing).
    pub fn next_totp(&self) -> (String, String) {
        loop {
            let now = SystemClock.now();
            let step = now.div_euclid(PERIOD) + 1;
            let mut last = self.last_step.borrow_mut();
            if let Some(i) = last.iter().position(|&s| s < step) {
                last[i] = step;
                let code = totp::code_at(&self.totp_secret, step * PERIOD, Default::default())
                    .expect("code");
                return (
                    fixture::account_name(i),
                    format!("{}\n{code}\n", fixture::PASSWORD),
                );
            }
            drop(last);
            let wait = PERIOD - now.rem_euclid(PERIOD);
            std::thread::sleep(Duration::from_secs(wait as u64) + Duration::from_millis(50));
        }
    }

    pub fn login(&self, name: &str, stdin: &str) -> Output {
        self.login_with(&self.cli, name, stdin)
    }

    /// A login through `cli`: this store reached another way (e.g. over TLS).
    pub fn login_with(&self, cli: &Cli, name: &str, stdin: &str) -> Output {
        cli.ok(&["login", name, "--json"], stdin)
    }
}

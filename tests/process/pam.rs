//! The built PAM module, `pam_sparekey.so`, driven by Debian's `pamtester` through throw-away
//! PAM service files (`/etc/pam.d/sparekey-test-*`, each removed when its test ends; `.ci/run`
//! removes any a killed run left). The module runs the built `sparekey` binary, configured by a
//! root-owned file in the test's own directory. Needs root (to write /etc/pam.d) and pamtester:
//! without them each test says "skipped: …", and fails under SPAREKEY_FULL_TESTS=1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::cli_verify::{enrolled_only, now, run, totp};
use crate::support;

const UNAVAILABLE: &str = "Authentication service cannot retrieve authentication info";
const SUCCESS: &str = "pamtester: successfully authenticated";
const FAILURE: &str = "pamtester: Authentication failure";

/// One test's store, configuration and module.
struct Pam {
    dir: TempDir,
    module: PathBuf,
}

/// A PAM service file of one test, removed when dropped.
struct Service {
    name: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new("/etc/pam.d").join(&self.name));
    }
}

struct Answer {
    ok: bool,
    output: String,
    took: Duration,
}

/// The module's shared library, built by `cargo test` next to this binary (the root package's
/// dev-dependency on the module crate builds it).
pub fn module_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [
        deps.join("libpam_sparekey.so"),
        deps.parent()?.join("libpam_sparekey.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The module's configuration in `dir/sparekey.toml`: the store and key in `dir`, the built
/// binary, `timeout` seconds.
pub fn write_config(dir: &Path, timeout: u64) {
    let text = format!(
        "data_dir = \"{}\"\nkey_file = \"{}\"\n[pam]\nbinary = \"{}\"\ntimeout_secs = {timeout}\n",
        dir.join("data").display(),
        dir.join("key").display(),
        env!("CARGO_BIN_EXE_sparekey"),
    );
    std::fs::write(dir.join("sparekey.toml"), text).unwrap();
}

impl Pam {
    /// `None` (after saying "skipped: …") when this machine cannot run the PAM tests.
    fn new() -> Option<Self> {
        if !support::needs_root("write a PAM service file in /etc/pam.d") {
            return None;
        }
        if Command::new("pamtester").arg("--version").output().is_err() {
            support::skip("needs pamtester (Debian's pamtester package)");
            return None;
        }
        let Some(module) = module_path() else {
            support::skip("needs the built libpam_sparekey.so beside the test binary");
            return None;
        };
        let pam = Self {
            dir: TempDir::new().unwrap(),
            module,
        };
        pam.write_config(5);
        Some(pam)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, timeout: u64) {
        write_config(self.dir(), timeout);
    }

    /// A service whose stack is a stand-in for pam_unix (pam_permit) and then the module with
    /// `options`.
    fn service(&self, options: &str) -> Service {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sparekey-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let text = format!(
            "auth required pam_permit.so\nauth required {} config={} {options}\n",
            self.module.display(),
            self.dir().join("sparekey.toml").display()
        );
        std::fs::write(Path::new("/etc/pam.d").join(&name), text).unwrap();
        Service { name }
    }

    /// `pamtester SERVICE USER authenticate` with `line` typed at the prompt.
    fn login(&self, service: &Service, user: &str, line: &str) -> Answer {
        self.login_in(Command::new("pamtester"), service, user, line)
    }

    /// [`Pam::login`] with pamtester started by `command` (a wrapper that changes its state).
    fn login_in(&self, mut command: Command, service: &Service, user: &str, line: &str) -> Answer {
        let started = Instant::now();
        let mut child = command
            .args(["-v", &service.name, user, "authenticate"])
            // The module must not care: it is given its settings by the file only.
            .env("SPAREKEY_DATA_DIR", self.dir().join("elsewhere"))
            .env("SPAREKEY_KEY_FILE", self.dir().join("elsewhere-key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(line.as_bytes());
        let out = child.wait_with_output().unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = out.status.success();
        assert_eq!(ok, output.contains(SUCCESS), "{output}");
        Answer {
            ok,
            output,
            took: started.elapsed(),
        }
    }

    fn failures(&self, name: &str) -> u64 {
        let (_, out, _) = run(self.dir(), &["--json", "account", "list"], "");
        let v: Value = serde_json::from_str(&out).unwrap();
        (v["accounts"].as_array().unwrap().iter())
            .find(|a| a["name"] == name)
            .unwrap()["consecutive_failures"]
            .as_u64()
            .unwrap()
    }
}

#[test]
fn a_totp_code_is_accepted_once() {
    let Some(pam) = Pam::new() else { return };
    let (secret, _) = enrolled_only(pam.dir(), "bob");
    let service = pam.service("");
    let next = format!("{}\n", totp(&secret, now() + 30));
    let first = pam.login(&service, "bob", &next);
    assert!(first.ok, "{}", first.output);
    assert!(
        first
            .output
            .contains("Verification code (or backup code): ")
    );
    let again = pam.login(&service, "bob", &next);
    assert!(
        !again.ok && again.output.contains(FAILURE),
        "{}",
        again.output
    );
    assert!(again.output.contains("already used"), "{}", again.output);
}

#[test]
fn a_backup_code_is_accepted_once_and_says_what_remains() {
    let Some(pam) = Pam::new() else { return };
    let (_, codes) = enrolled_only(pam.dir(), "bob");
    let service = pam.service("");
    let line = format!("{}\n", codes[2]);
    let first = pam.login(&service, "bob", &line);
    assert!(first.ok, "{}", first.output);
    assert!(
        first.output.contains("9 of 10 backup codes remain")
            && first
                .output
                .contains("Run `sparekey` to re-secure the account"),
        "{}",
        first.output
    );
    let again = pam.login(&service, "bob", &line);
    assert!(!again.ok, "{}", again.output);
    assert!(again.output.contains("already used"), "{}", again.output);
}

#[test]
fn a_typo_is_refused_without_spending_an_attempt() {
    let Some(pam) = Pam::new() else { return };
    let (_, codes) = enrolled_only(pam.dir(), "bob");
    let service = pam.service("");
    let mut typo: Vec<char> = codes[0].chars().collect();
    typo[0] = if typo[0] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    for line in ["12345\n".to_string(), format!("{typo}\n")] {
        let answer = pam.login(&service, "bob", &line);
        assert!(
            !answer.ok && answer.output.contains(FAILURE),
            "{}",
            answer.output
        );
    }
    assert_eq!(pam.failures("bob"), 0);
    // A wrong code, by contrast, counts.
    assert!(!pam.login(&service, "bob", "000000\n").ok);
    assert_eq!(pam.failures("bob"), 1);
}

#[test]
fn a_locked_account_is_refused_even_with_the_right_code() {
    let Some(pam) = Pam::new() else { return };
    let (secret, _) = enrolled_only(pam.dir(), "bob");
    // Lock it in-process on a fixed clock (through the real CLI the delays would take an hour).
    {
        use sparekey::core::clock::ManualClock;
        use sparekey::core::error::Error;
        let paths = sparekey::app::Paths::resolve(
            Some(pam.dir().join("data")),
            Some(pam.dir().join("key")),
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(now()));
        let service = support::open_disk(&paths, &clock, 7).unwrap();
        while !service.account_summary("bob").unwrap().locked {
            match service.verify_second_factor("bob", "000000") {
                Err(Error::Throttled { seconds_left }) => clock.advance(seconds_left),
                Err(_) => {}
                Ok(_) => panic!("000000 was accepted"),
            }
        }
    }
    let service = pam.service("nullok");
    let right = format!("{}\n", totp(&secret, now() + 30));
    let answer = pam.login(&service, "bob", &right);
    assert!(
        !answer.ok && answer.output.contains(FAILURE),
        "{}",
        answer.output
    );
    assert!(answer.output.contains("locked"), "{}", answer.output);
    assert!(
        !answer.output.contains("Verification code"),
        "not even asked: {}",
        answer.output
    );
}

#[test]
fn nullok_passes_a_user_without_a_second_factor_and_only_with_it() {
    let Some(pam) = Pam::new() else { return };
    let (code, _, _) = run(
        pam.dir(),
        &["account", "add", "carol", "--second-factor-only"],
        "",
    );
    assert_eq!(code, 0);
    let with = pam.service("nullok");
    let without = pam.service("");
    for user in ["nobody", "carol"] {
        let passed = pam.login(&with, user, "");
        assert!(passed.ok, "{user} with nullok: {}", passed.output);
        assert!(!passed.output.contains("Verification code"), "not asked");
        let refused = pam.login(&without, user, "");
        assert!(
            !refused.ok && refused.output.contains(FAILURE),
            "{}",
            refused.output
        );
    }
}

#[test]
fn a_busy_store_gives_authinfo_unavail_not_a_hang() {
    let Some(pam) = Pam::new() else { return };
    let (secret, _) = enrolled_only(pam.dir(), "bob");
    // Shorter than the CLI's wait for a held store (3 s), so the module's own deadline acts.
    pam.write_config(1);
    let service = pam.service("");
    let held = support::open_store(&pam.dir().join("data").join("store")).unwrap();
    let next = format!("{}\n", totp(&secret, now() + 30));
    let answer = pam.login(&service, "bob", &next);
    assert!(
        !answer.ok && answer.output.contains(UNAVAILABLE),
        "{}",
        answer.output
    );
    assert!(
        answer.took < Duration::from_secs(10),
        "took {:?}",
        answer.took
    );
    drop(held);
    // Released, the same code works: nothing was spent while the store was busy.
    pam.write_config(5);
    let answer = pam.login(&service, "bob", &next);
    assert!(answer.ok, "{}", answer.output);
}

#[test]
fn a_host_that_ignores_sigchld_still_gets_an_answer() {
    let Some(pam) = Pam::new() else { return };
    let (_, codes) = enrolled_only(pam.dir(), "bob");
    let service = pam.service("");
    // An ignored signal stays ignored across exec: pamtester then runs as such a host would.
    // (perl is part of every Debian system.)
    let mut perl = Command::new("perl");
    perl.args([
        "-e",
        "$SIG{CHLD} = 'IGNORE'; exec @ARGV or die",
        "pamtester",
    ]);
    let answer = pam.login_in(perl, &service, "bob", &format!("{}\n", codes[0]));
    assert!(answer.ok, "{}", answer.output);
}

#[test]
fn a_config_file_others_may_write_is_refused() {
    let Some(pam) = Pam::new() else { return };
    enrolled_only(pam.dir(), "bob");
    use std::os::unix::fs::PermissionsExt;
    let config = pam.dir().join("sparekey.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let service = pam.service("nullok");
    let answer = pam.login(&service, "bob", "000000\n");
    assert!(!answer.ok, "{}", answer.output);
    assert!(
        !answer.output.contains("Verification code"),
        "{}",
        answer.output
    );
}

/// `/dev/log` bound by this test while alive (removed when dropped), so the module's syslog
/// lines can be read.
struct SyslogCapture {
    socket: std::os::unix::net::UnixDatagram,
}

impl SyslogCapture {
    /// `None` (after saying "skipped: …") when a syslog daemon already owns /dev/log.
    fn start() -> Option<Self> {
        if Path::new("/dev/log").exists() {
            support::skip("/dev/log belongs to a running syslog daemon");
            return None;
        }
        let socket = std::os::unix::net::UnixDatagram::bind("/dev/log").unwrap();
        socket.set_nonblocking(true).unwrap();
        Some(Self { socket })
    }

    /// Every line received so far that mentions `user=USER`.
    fn lines_of(&self, user: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            if line.contains(&format!("user={user} ")) {
                lines.push(line);
            }
        }
        lines
    }
}

impl Drop for SyslogCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/dev/log");
    }
}

#[test]
fn each_decision_is_one_authpriv_line_fail2ban_can_match_and_no_code() {
    let Some(pam) = Pam::new() else { return };
    let Some(log) = SyslogCapture::start() else {
        return;
    };
    let (_, codes) = enrolled_only(pam.dir(), "logbob");
    let service = pam.service("");
    let from = |rhost: &str| {
        let mut command = Command::new("pamtester");
        command.args(["-I", &format!("rhost={rhost}")]);
        command
    };
    let wrong = pam.login_in(from("203.0.113.7"), &service, "logbob", "000000\n");
    assert!(!wrong.ok);
    let right = format!("{}\n", codes[4]);
    let backup = pam.login_in(from("198.51.100.2"), &service, "logbob", &right);
    assert!(backup.ok, "{}", backup.output);
    let lines = log.lines_of("logbob");
    assert_eq!(lines.len(), 2, "one line per decision: {lines:#?}");
    // <85>: facility authpriv (10) and severity notice (5) for a failure; <86> info for success.
    let name = &service.name;
    assert!(lines[0].starts_with("<85>"), "{}", lines[0]);
    assert!(
        lines[0].ends_with(&format!(
            "sparekey({name}): authentication failure; user=logbob rhost=203.0.113.7 reason=wrong code"
        )),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("<86>"), "{}", lines[1]);
    assert!(
        lines[1].ends_with(&format!(
            "sparekey({name}): authentication success; user=logbob rhost=198.51.100.2 method=backup_code remaining=9/10"
        )),
        "{}",
        lines[1]
    );
    for line in &lines {
        assert!(
            !line.contains("000000") && !line.contains(&codes[4]),
            "{line}"
        );
    }
}

#[test]
fn the_modules_config_file_is_the_one_the_binary_reads() {
    let Some(pam) = Pam::new() else { return };
    // A throttle in the module's file (not the binary's default place) must reach `verify`:
    // locked after two failures here, where the default policy allows twenty.
    let config = pam.dir().join("sparekey.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "[throttle]\nfree_failures = 1\nbase_delay_secs = 1\nmax_delay_secs = 1\nlock_after = 2\n",
    );
    std::fs::write(&config, text).unwrap();
    let (secret, _) = enrolled_only(pam.dir(), "bob");
    let service = pam.service("");
    assert!(!pam.login(&service, "bob", "000000\n").ok);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert!(!pam.login(&service, "bob", "000001\n").ok);
    let right = format!("{}\n", totp(&secret, now() + 30));
    let answer = pam.login(&service, "bob", &right);
    assert!(!answer.ok, "{}", answer.output);
    assert!(answer.output.contains("locked"), "{}", answer.output);
}

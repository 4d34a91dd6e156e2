//! The console and the CLI on one sled store at the same time, as real processes: with a console
//! (or a kiosk) open in a pseudo-terminal, `sparekey account list` and `sparekey unlock NAME`
//! succeed at once, and the console sees the change on its next action; a store another process
//! really holds gives the busy message naming that process, exit 4, within the wait.
//!
//! "At once" is checked against a generous bound that is still well below the CLI's wait for a
//! held store (`app::LOCK_WAIT`, 3 s): a console that kept its store would make the command fail
//! after that wait, and so the test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sparekey::core::store::Store;
use sparekey::core::throttle::ThrottlePolicy;
use tempfile::TempDir;

use crate::support::process::{Pty, isolated_env, pty_command, spawn_in_pty};
use crate::support::{PASSWORD, open_store, open_store_keyed};

/// What "succeeds within a second" may take on a loaded machine: a debug binary's start and
/// one OWASP hash at most, and the console's idle release. Below `app::LOCK_WAIT`.
const PROMPT: Duration = Duration::from_millis(2_000);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the built `sparekey` with `args` on the store in `dir`, `stdin` as its input.
fn run(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
        .args(args)
        .envs(isolated_env(dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
        took: start.elapsed(),
    }
}

/// Runs a command that must succeed promptly beside the open console.
#[track_caller]
fn run_promptly(dir: &Path, args: &[&str]) -> Run {
    let done = run(dir, args, "");
    assert_eq!(
        done.code, 0,
        "{args:?} beside the console: {}{}",
        done.stdout, done.stderr
    );
    assert!(
        done.took < PROMPT,
        "{args:?} took {:?} beside the console",
        done.took
    );
    done
}

/// Counts `failures` failed attempts on `name`, straight in the store (no delays to wait out):
/// 20 lock the account under the default policy.
fn count_failures(dir: &Path, name: &str, failures: u32) {
    let store = open_store_keyed(&dir.join("data").join("store"), &dir.join("key")).unwrap();
    let no_limit = ThrottlePolicy {
        free_failures: u32::MAX,
        lock_after: u32::MAX,
        ..ThrottlePolicy::default()
    };
    for _ in 0..failures {
        store.reserve_attempt(name, &no_limit, 1).unwrap();
    }
}

/// A console in an 80x24 pseudo-terminal, read through a vt100 emulator.
struct Console {
    pty: Pty,
    screen: Arc<Mutex<vt100::Parser>>,
}

impl Console {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut cmd = pty_command(dir, args);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("DISPLAY");
        cmd.env_remove("WAYLAND_DISPLAY");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0)));
        let sink = Arc::clone(&screen);
        let pty = spawn_in_pty(24, 80, cmd, move |bytes| {
            sink.lock().unwrap().process(bytes)
        });
        Self { pty, screen }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    #[track_caller]
    fn expect(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.contents().contains(what) {
            assert!(
                Instant::now() < deadline,
                "never saw {what:?}; screen:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, keys: &str) {
        self.pty.writer.write_all(keys.as_bytes()).unwrap();
        self.pty.writer.flush().unwrap();
        // Lets the console read each burst as its own keys (a lone Esc included).
        std::thread::sleep(Duration::from_millis(150));
    }

    fn pid(&self) -> u32 {
        self.pty.child.process_id().expect("the console has a pid")
    }

    /// Ends the console (SIGTERM, as systemd stops a kiosk) and checks it ended cleanly.
    fn stop(&mut self) {
        let pid = self.pid().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.pty.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the console did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status:?}; screen:\n{}", self.contents());
    }
}

impl Drop for Console {
    /// A test that failed midway must not leave its console running (and holding the store).
    fn drop(&mut self) {
        if let Ok(None) = self.pty.child.try_wait() {
            let _ = self.pty.child.kill();
            let _ = self.pty.child.wait();
        }
    }
}

#[test]
fn cli_commands_succeed_beside_an_open_console_which_then_sees_their_changes() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    assert_eq!(
        run(dir, &["account", "add", "carol"], &format!("{PASSWORD}\n")).code,
        0
    );
    count_failures(dir, "carol", 20);

    let mut c = Console::start(dir, &["tui"]);
    c.expect("carol");
    c.expect("locked");

    let listed = run_promptly(dir, &["--json", "account", "list"]);
    assert!(listed.stdout.contains("\"carol\""), "{}", listed.stdout);
    let unlocked = run_promptly(dir, &["unlock", "carol"]);
    assert!(unlocked.stdout.contains("unlocked"), "{}", unlocked.stdout);

    // The console's next action reads the store as the CLI left it.
    c.send("\r");
    c.expect("failed attempts in a row: 0");
    // And right after an action of the console's, the CLI still gets in.
    run_promptly(dir, &["--json", "account", "list"]);
    c.stop();
}

#[test]
fn cli_commands_succeed_beside_an_open_kiosk_which_then_sees_their_changes() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    assert_eq!(
        run(dir, &["account", "add", "carol"], &format!("{PASSWORD}\n")).code,
        0
    );
    let set = run(
        dir,
        &["kiosk", "set-operator-password"],
        "operator password\n",
    );
    assert_eq!(set.code, 0, "{}", set.stderr);
    count_failures(dir, "carol", 20);

    let mut c = Console::start(dir, &["tui", "--kiosk"]);
    c.expect("KIOSK");
    c.expect("Account:");

    let listed = run_promptly(dir, &["account", "list"]);
    assert!(listed.stdout.contains("carol"), "{}", listed.stdout);
    run_promptly(dir, &["unlock", "carol"]);

    // Locked, this login would be refused; unlocked from the shell, it goes through.
    c.send("carol");
    c.send("\r");
    c.expect("Password:");
    c.send(PASSWORD);
    c.send("\r");
    c.expect("signed in as 'carol' with the password only");
    run_promptly(dir, &["account", "list"]);
    c.stop();
}

#[test]
fn a_store_really_held_elsewhere_is_busy_naming_the_holder_for_cli_and_console() {
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    assert_eq!(
        run(dir, &["account", "add", "carol"], &format!("{PASSWORD}\n")).code,
        0
    );
    let mut c = Console::start(dir, &["tui"]);
    c.expect("carol");

    // This test process takes the store (waiting for the console to let go of it).
    let held = open_store(&dir.join("data").join("store")).unwrap();
    let busy = run(dir, &["--json", "account", "list"], "");
    assert_eq!(busy.code, 4, "{}{}", busy.stdout, busy.stderr);
    let holder = format!("in use by sparekey process {}", std::process::id());
    assert!(busy.stderr.contains(&holder), "{}", busy.stderr);
    assert!(
        busy.took < sparekey::app::LOCK_WAIT + PROMPT,
        "took {:?}",
        busy.took
    );

    // The console's next action waits as long, then says the same, and the console goes on.
    c.send("\r");
    c.expect(&holder);
    drop(held);
    c.send("\x1b");
    c.send("\r");
    c.expect("failed attempts in a row: 0");
    c.stop();
}

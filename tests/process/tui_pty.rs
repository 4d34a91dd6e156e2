//! End to end: the real `sparekey` binary runs the console in a pseudo-terminal and a login with
//! a backup code is walked by keystrokes, read back through a vt100 emulator. Checks what only a
//! real terminal shows: the alternate screen is entered and left, and the terminal is restored.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::process::{Pty, isolated_env, pty_command, spawn_in_pty};
use crate::support::{PASSWORD, test_config};
use sparekey::app::{Paths, open_with};
use sparekey::core::clock::SystemClock;
use sparekey::core::entropy::OsEntropy;
use tempfile::TempDir;

struct Console {
    pty: Pty,
    screen: Arc<Mutex<vt100::Parser>>,
}

impl Console {
    fn start(dir: &TempDir) -> Self {
        Self::start_with(dir, &["tui"])
    }

    fn start_with(dir: &TempDir, args: &[&str]) -> Self {
        let mut cmd = pty_command(dir.path(), args);
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

    /// Once the child has exited: waits until the reader has put everything the child wrote on
    /// the screen (its read ends with EOF or EIO when the slave side is closed everywhere).
    fn wait_for_output_end(&mut self) {
        let reader = self.pty.reader.take().expect("waited for once");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reader.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the terminal's output never ended; screen:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        reader.join().expect("the reader thread panicked");
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

    /// Waits for the child to exit and for its last output; its exit status.
    fn wait_for_exit(&mut self) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.pty.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the console did not end; screen:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.wait_for_output_end();
        status
    }

    /// Asserts what a restored terminal looks like: main screen, cursor shown.
    #[track_caller]
    fn assert_restored(&self) {
        let parser = self.screen.lock().unwrap();
        assert!(
            !parser.screen().alternate_screen(),
            "the alternate screen was left; screen:\n{}",
            parser.screen().contents()
        );
        assert!(!parser.screen().hide_cursor(), "the cursor is shown again");
    }

    /// Sends `signal` (a name for kill(1), e.g. "TERM") to the console process.
    fn signal(&self, signal: &str) {
        let pid = self.pty.child.process_id().expect("the child has a pid");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    fn send(&mut self, bytes: &str) {
        self.pty.writer.write_all(bytes.as_bytes()).unwrap();
        self.pty.writer.flush().unwrap();
        // Lets the console read each burst as its own keys (a lone Esc included).
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// The service on the store the console uses, on the real clock: the console's TOTP and
/// timestamps are real time, so the test's must be too.
fn open_real(paths: &Paths) -> sparekey::core::service::Service {
    open_with(
        paths,
        test_config(),
        Arc::new(SystemClock),
        Box::new(OsEntropy),
    )
    .unwrap()
}

#[test]
fn login_with_a_backup_code_in_a_real_terminal() {
    let dir = TempDir::new().unwrap();
    let paths =
        Paths::resolve(Some(dir.path().join("data")), Some(dir.path().join("key"))).unwrap();
    let code = {
        let service = open_real(&paths);
        service.create_account("alice", PASSWORD).unwrap();
        let e = service.begin_enrollment("alice", Some(PASSWORD)).unwrap();
        let now = service.now();
        let totp = sparekey::core::totp::code_at(e.secret.as_bytes(), now, e.params).unwrap();
        let issued = service.confirm_enrollment("alice", &totp).unwrap();
        issued.codes[3].display().to_string()
        // The service is dropped here, releasing the store for the binary.
    };

    let mut c = Console::start(&dir);
    c.expect("Accounts");
    c.expect("alice");
    assert!(
        c.screen.lock().unwrap().screen().alternate_screen(),
        "the console uses the alternate screen"
    );

    c.send("l");
    c.expect("Password:");
    c.send(PASSWORD);
    c.send("\r");
    c.expect("or, without your device, a backup code");
    assert!(!c.contents().contains(PASSWORD), "the password is masked");
    c.send(&code.to_uppercase());
    c.expect("well-formed");
    c.send("\r");
    c.expect("Secure your account");
    c.expect("You signed in with a backup code. 9 of 10 codes remain.");

    c.send("\x1b");
    c.expect("Account:");
    c.send("\x03");

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = c.pty.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the console did not quit; screen:\n{}",
            c.contents()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    c.wait_for_output_end();
    assert!(
        status.success(),
        "exit status {status:?}; screen:\n{}",
        c.contents()
    );
    let parser = c.screen.lock().unwrap();
    assert!(
        !parser.screen().alternate_screen(),
        "the alternate screen was left"
    );
    assert!(!parser.screen().hide_cursor(), "the cursor is shown again");
    drop(parser);

    // The login really happened in the store.
    let service = open_real(&paths);
    assert_eq!(service.code_status("alice").unwrap().remaining, 9);
}

/// The paths the console started by [`Console::start_with`] uses.
fn paths_of(dir: &TempDir) -> Paths {
    Paths::resolve(Some(dir.path().join("data")), Some(dir.path().join("key"))).unwrap()
}

#[test]
fn sigterm_and_sighup_restore_the_terminal() {
    for signal in ["TERM", "HUP"] {
        let dir = TempDir::new().unwrap();
        {
            let service = open_real(&paths_of(&dir));
            service.create_account("alice", PASSWORD).unwrap();
        }
        let mut c = Console::start(&dir);
        c.expect("Accounts");
        assert!(c.screen.lock().unwrap().screen().alternate_screen());
        c.signal(signal);
        let status = c.wait_for_exit();
        assert!(
            status.success(),
            "SIG{signal}: exit status {status:?}; screen:\n{}",
            c.contents()
        );
        c.assert_restored();
    }
}

#[test]
fn a_kiosk_without_an_operator_password_refuses_to_start() {
    let dir = TempDir::new().unwrap();
    {
        let service = open_real(&paths_of(&dir));
        service.create_account("alice", PASSWORD).unwrap();
    }
    let mut c = Console::start_with(&dir, &["tui", "--kiosk"]);
    let status = c.wait_for_exit();
    assert_eq!(status.exit_code(), 2, "{}", c.contents());
    assert!(
        c.contents()
            .contains("run `sparekey kiosk set-operator-password` first"),
        "{}",
        c.contents()
    );
    c.assert_restored();

    // Once it is set from the shell, the kiosk starts at its login.
    {
        let service = open_real(&paths_of(&dir));
        service.set_operator_password("operator-pass").unwrap();
    }
    let mut c = Console::start_with(&dir, &["tui", "--kiosk", "--idle-timeout", "30"]);
    c.expect("KIOSK");
    c.expect("Account:");
    c.signal("TERM");
    assert!(c.wait_for_exit().success());
    c.assert_restored();
}

#[test]
fn a_kiosk_warns_then_clears_an_idle_screen() {
    let dir = TempDir::new().unwrap();
    {
        let service = open_real(&paths_of(&dir));
        service.set_operator_password("operator-pass").unwrap();
    }
    let mut c = Console::start_with(&dir, &["tui", "--kiosk", "--idle-timeout", "8"]);
    c.expect("Account:");
    // A name typed and left: the last quarter of the idle time counts down, then it is wiped.
    c.send("mallory");
    c.expect("Account: mallory");
    c.expect("No key for a while: this screen will be cleared in");
    c.expect("the console was idle: the screen was cleared");
    assert!(!c.contents().contains("mallory"), "{}", c.contents());
    // The operator quits: the event is written on the way out, after the loop has ended.
    c.send("\x03");
    c.expect("Operator password required");
    c.send("operator-pass\r");
    assert!(c.wait_for_exit().success(), "{}", c.contents());
    c.assert_restored();

    // Each is in the store, and the CLI shows them, oldest first.
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_sparekey"))
        .args(["audit", "kiosk:operator"])
        .envs(isolated_env(dir.path()))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{shown}");
    let lines = [
        "kiosk operator password set",
        "kiosk started",
        "kiosk idle: screen cleared",
        "kiosk operator signed in",
        "kiosk quit by the operator",
    ];
    let at: Vec<Option<usize>> = lines.iter().map(|l| shown.find(l)).collect();
    assert!(at.iter().all(Option::is_some), "{shown}");
    assert!(at.is_sorted(), "out of order:\n{shown}");
}

/// The console in a pseudo-terminal that is not its controlling terminal, so closing the master
/// side sends it no SIGHUP (as when an ssh session or a test harness dies and the hangup never
/// reaches the process): the terminal is simply gone.
#[cfg(target_os = "linux")]
#[test]
fn a_console_whose_terminal_vanished_exits() {
    use portable_pty::{PtySize, native_pty_system};
    use std::io::Read;

    let dir = TempDir::new().unwrap();
    {
        let service = open_real(&paths_of(&dir));
        service.create_account("alice", PASSWORD).unwrap();
    }
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = pty_command(dir.path(), &["tui"]);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("DISPLAY");
    cmd.env_remove("WAYLAND_DISPLAY");
    cmd.set_controlling_tty(false);
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    // Reads until the first frame is drawn (the console is then in its event loop), then lets
    // go of its copy of the master, so that every copy can be closed.
    let mut reader = pair.master.try_clone_reader().unwrap();
    let first_frame = std::thread::spawn(move || {
        let mut screen = vt100::Parser::new(24, 80, 0);
        let mut buf = [0u8; 4096];
        while !screen.screen().contents().contains("Accounts") {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => screen.process(&buf[..n]),
            }
        }
        true
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !first_frame.is_finished() {
        assert!(Instant::now() < deadline, "the console never drew");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        first_frame.join().unwrap(),
        "the console ended before it drew"
    );
    drop(pair.master);

    // Before the fix crossterm re-read the dead terminal at full speed, forever, and the
    // console never came back from its wait; now it ends at its next wait.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the console kept running after its terminal was gone");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // An error exit: nobody is left to read the message, but a supervisor sees the status.
    assert!(!status.success(), "{status:?}");
}

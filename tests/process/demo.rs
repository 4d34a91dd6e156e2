//! `sparekey tui --demo --keys`, the built binary as a child: the same key file prints the same
//! bytes on every run, `--frames` writes the same frames one file each, nothing else is written
//! (no store, no key file, no export), and bad key files, sizes and store options are one clear
//! error each, exit 2, before any frame; without `--keys` the demo is the console in a terminal. Every child gets an empty home, XDG dirs and working
//! directory inside its test's temporary directory, and none of sparekey's store variables.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::CommandBuilder;
use tempfile::TempDir;

use crate::support::process::spawn_in_pty;

/// A key file under `assets/`: the README's pictures, so these tests run what they run.
fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// An empty directory for one child: home, XDG dirs and working directory all inside it.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Self { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn command(&self, args: &[&str]) -> Command {
        let home = self.home();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparekey"));
        cmd.args(args)
            .current_dir(&home)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env_remove("SPAREKEY_DATA_DIR")
            .env_remove("SPAREKEY_KEY_FILE")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Everything under the home, so a test can say nothing was created there.
    fn files_in_home(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                }
                out.push(path);
            }
        }
        let mut out = vec![];
        walk(&self.home(), &mut out);
        out
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[track_caller]
fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A usage error: exit 2, one `sparekey:` line on stderr containing `words`, and no frame.
#[track_caller]
fn assert_refused(output: &Output, words: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("sparekey: "), "{stderr}");
    assert!(stderr.contains(words), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", stdout(output));
}

/// The frames of a stdout run: (header, body) in order.
fn split_frames(text: &str) -> Vec<(String, String)> {
    let mut frames: Vec<(String, String)> = vec![];
    for line in text.split_inclusive('\n') {
        if line.starts_with("--- frame ") {
            frames.push((line.trim_end().to_string(), String::new()));
        } else {
            frames
                .last_mut()
                .expect("output starts with a frame header")
                .1
                .push_str(line);
        }
    }
    frames
}

/// How many action lines a key file has: each draws a frame after the opening one.
fn action_lines(keys: &Path) -> usize {
    std::fs::read_to_string(keys)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count()
}

#[test]
fn two_runs_of_a_key_file_print_the_same_bytes() {
    // The longest README script: accounts made, hashed, enrolled and signed in on the worker.
    let keys = asset("help.keys");
    let keys_arg = keys.to_str().unwrap();
    let sandbox = Sandbox::new();
    let first = sandbox.run(&["tui", "--demo", "--keys", keys_arg]);
    assert_ok(&first);
    let second = sandbox.run(&["tui", "--demo", "--keys", keys_arg]);
    assert_ok(&second);
    assert!(
        first.stdout == second.stdout,
        "two runs of the same key file differ"
    );

    let text = stdout(&first);
    let frames = split_frames(&text);
    assert_eq!(frames.len(), action_lines(&keys) + 1);
    assert_eq!(frames[0].0, "--- frame 0: start");
    assert!(
        frames[1].0.starts_with("--- frame 1: line "),
        "{}",
        frames[1].0
    );
    for (header, body) in &frames {
        assert_eq!(body.lines().count(), 24, "{header} is not 24 rows:\n{body}");
        assert!(
            body.lines().all(|l| l.chars().count() <= 80),
            "{header} is wider than 80:\n{body}"
        );
    }
    // What the script did is on screen: the account it made, the codes, the help at the end.
    assert!(text.contains("carol"));
    assert!(text.contains("Step 2 of 4"));
    assert!(frames.last().unwrap().1.contains("all keys"));
    assert!(
        sandbox.files_in_home().is_empty(),
        "{:?}",
        sandbox.files_in_home()
    );
}

#[test]
fn frames_dir_holds_the_same_frames_one_file_each() {
    let keys = asset("enroll-qr.keys");
    let keys_arg = keys.to_str().unwrap();
    let sandbox = Sandbox::new();
    let printed = sandbox.run(&["tui", "--demo", "--keys", keys_arg, "--size", "100x32"]);
    assert_ok(&printed);
    let frames_dir = sandbox.dir.path().join("frames");
    let written = sandbox.run(&[
        "tui",
        "--demo",
        "--keys",
        keys_arg,
        "--size",
        "100x32",
        "--frames",
        frames_dir.to_str().unwrap(),
    ]);
    assert_ok(&written);
    assert!(written.stdout.is_empty(), "{}", stdout(&written));

    let frames = split_frames(&stdout(&printed));
    let mut files: Vec<String> = std::fs::read_dir(&frames_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let expected: Vec<String> = (0..frames.len()).map(|n| format!("{n:04}.txt")).collect();
    assert_eq!(files, expected);
    for (file, (header, body)) in files.iter().zip(&frames) {
        let content = std::fs::read_to_string(frames_dir.join(file)).unwrap();
        assert_eq!(&content, body, "{file} differs from {header}");
        assert_eq!(content.lines().count(), 32);
    }

    // A second run into the same directory would mix two runs' frames: refused.
    let again = sandbox.run(&[
        "tui",
        "--demo",
        "--keys",
        keys_arg,
        "--frames",
        frames_dir.to_str().unwrap(),
    ]);
    assert_refused(&again, "is not empty");
}

#[test]
fn the_demo_writes_nothing_and_says_copy_and_export_are_off() {
    // The codes screen, then copy, then export to the proposed file.
    let mut keys = std::fs::read_to_string(asset("codes-once.keys")).unwrap();
    keys.push_str("c\ne\nEnter\n");
    let sandbox = Sandbox::new();
    let script = sandbox.dir.path().join("export.keys");
    std::fs::write(&script, keys).unwrap();
    // Wide enough for the whole message on one line.
    let output = sandbox.run(&[
        "tui",
        "--demo",
        "--keys",
        script.to_str().unwrap(),
        "--size",
        "160x40",
    ]);
    assert_ok(&output);
    let frames = split_frames(&stdout(&output));
    let copied = &frames[frames.len() - 3].1;
    assert!(
        copied.contains("could not copy: the demo never uses the clipboard"),
        "{copied}"
    );
    let exported = &frames.last().unwrap().1;
    assert!(exported.contains("the demo writes no files"), "{exported}");
    // No store, key file or export anywhere a default path would put one.
    assert!(
        sandbox.files_in_home().is_empty(),
        "{:?}",
        sandbox.files_in_home()
    );
}

#[test]
fn store_and_key_options_are_refused_before_anything_is_made() {
    let keys = asset("accounts.keys");
    let keys_arg = keys.to_str().unwrap();
    let sandbox = Sandbox::new();
    let data = sandbox.dir.path().join("data");
    let key = sandbox.dir.path().join("key");
    let data_arg = data.to_str().unwrap();
    let key_arg = key.to_str().unwrap();
    for args in [
        vec!["tui", "--demo", "--keys", keys_arg, "--data-dir", data_arg],
        vec!["--data-dir", data_arg, "tui", "--demo", "--keys", keys_arg],
        vec!["tui", "--demo", "--keys", keys_arg, "--key-file", key_arg],
        vec!["tui", "--demo", "--data-dir", data_arg],
    ] {
        assert_refused(&sandbox.run(&args), "never opens one");
    }
    let from_env = sandbox
        .command(&["tui", "--demo", "--keys", keys_arg])
        .env("SPAREKEY_DATA_DIR", &data)
        .output()
        .unwrap();
    assert_refused(&from_env, "SPAREKEY_DATA_DIR");
    assert!(!data.exists() && !key.exists());
    assert!(sandbox.files_in_home().is_empty());
}

#[test]
fn bad_key_files_and_options_are_one_error_each() {
    let sandbox = Sandbox::new();
    let script = sandbox.dir.path().join("bad.keys");
    std::fs::write(&script, "# fine\nn\ntype carol\nEnterr\nEsc\n").unwrap();
    let script_arg = script.to_str().unwrap();
    assert_refused(
        &sandbox.run(&["tui", "--demo", "--keys", script_arg]),
        "key file line 4: `Enterr` is not a key",
    );
    std::fs::write(&script, "wait soon\n").unwrap();
    assert_refused(
        &sandbox.run(&["tui", "--demo", "--keys", script_arg]),
        "key file line 1: `wait soon` is not a duration",
    );
    std::fs::write(&script, "q\nn\n").unwrap();
    let after_quit = sandbox.run(&["tui", "--demo", "--keys", script_arg]);
    assert_eq!(after_quit.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&after_quit.stderr)
            .contains("key file line 2: the console already quit at line 1"),
        "{}",
        String::from_utf8_lossy(&after_quit.stderr)
    );
    let missing = sandbox.dir.path().join("missing.keys");
    assert_refused(
        &sandbox.run(&["tui", "--demo", "--keys", missing.to_str().unwrap()]),
        "cannot read the key file",
    );
    for size in ["80", "10x10", "80x24x2", "wide"] {
        let output = sandbox.run(&["tui", "--demo", "--keys", script_arg, "--size", size]);
        assert_eq!(output.status.code(), Some(2), "--size {size}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("is not a size WIDTHxHEIGHT"),
            "--size {size}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Without a terminal and without --keys there is nothing to show the console on.
    assert_refused(&sandbox.run(&["tui", "--demo"]), "needs a terminal");
    // The key options mean nothing without the demo.
    let output = sandbox.run(&["tui", "--keys", script_arg]);
    assert_eq!(output.status.code(), Some(2));
    assert!(sandbox.files_in_home().is_empty());
}

#[test]
fn without_keys_the_demo_is_the_console_in_a_terminal() {
    let sandbox = Sandbox::new();
    let home = sandbox.home();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sparekey"));
    cmd.args(["tui", "--demo"]);
    cmd.cwd(&home);
    cmd.env("HOME", &home);
    cmd.env("XDG_DATA_HOME", home.join(".local/share"));
    cmd.env("XDG_CONFIG_HOME", home.join(".config"));
    cmd.env("TERM", "xterm-256color");
    for name in [
        "SPAREKEY_DATA_DIR",
        "SPAREKEY_KEY_FILE",
        "DISPLAY",
        "WAYLAND_DISPLAY",
    ] {
        cmd.env_remove(name);
    }
    let screen = Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0)));
    let sink = Arc::clone(&screen);
    let mut pty = spawn_in_pty(24, 80, cmd, move |bytes| {
        sink.lock().unwrap().process(bytes)
    });
    let contents = || screen.lock().unwrap().screen().contents();
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !contents().contains(what) {
            assert!(
                Instant::now() < deadline,
                "never saw {what:?}:\n{}",
                contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The sample store, and a key that reaches the real update.
    wait_for("dave");
    assert!(contents().contains("alice@example.com"), "{}", contents());
    pty.writer.write_all(b"n").unwrap();
    pty.writer.flush().unwrap();
    wait_for("New account");
    pty.writer.write_all(b"\x03").unwrap();
    pty.writer.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = pty.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not quit on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        sandbox.files_in_home().is_empty(),
        "{:?}",
        sandbox.files_in_home()
    );
}

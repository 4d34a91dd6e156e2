//! Runs the installed `sparekey` binary (`verify --probe`, then `verify` with the typed code on
//! its stdin) with a cleared environment and a deadline. Owns the command line it builds and the
//! kill at the deadline. Must never pass a code in argv (visible in `ps`) nor let anything from
//! the authenticated process's environment (`SPAREKEY_*`, `HOME`) reach the child.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;

/// What became of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited {
        code: i32,
        /// The one JSON object the binary printed under `--json` (unparsed).
        stdout: String,
    },
    /// Killed at the deadline.
    TimedOut(Duration),
    /// Could not start, or ended by a signal.
    Failed(String),
}

/// `sparekey verify USER --probe`: reads nothing.
pub fn probe(config: &Config, user: &str) -> Outcome {
    run(config, &["--probe", "--", user], None)
}

/// `sparekey verify USER` with `code` as its one stdin line.
pub fn verify(config: &Config, user: &str, code: &str) -> Outcome {
    let mut line = zeroize::Zeroizing::new(String::with_capacity(code.len() + 1));
    line.push_str(code);
    line.push('\n');
    run(config, &["--", user], Some(line.as_bytes()))
}

fn run(config: &Config, tail: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let _sigchld = crate::ffi::DefaultSigchld::new();
    let mut command = Command::new(&config.binary);
    if !config.file.as_os_str().is_empty() {
        command.arg("--config").arg(&config.file);
    }
    command
        .arg("--data-dir")
        .arg(&config.data_dir)
        .arg("--key-file")
        .arg(&config.key_file)
        .args(["--json", "verify"])
        .args(tail)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot run {}: {e}", config.binary.display())),
    };
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // One short line fits the pipe's buffer: this never waits on the child. A child that
        // stopped early (EPIPE) is judged by its exit.
        let _ = pipe.write_all(bytes);
    }
    wait(child, config.timeout)
}

fn wait(mut child: Child, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stdout = String::new();
                if let Some(pipe) = child.stdout.take() {
                    let _ = pipe.take(64 * 1024).read_to_string(&mut stdout);
                }
                return match status.code() {
                    Some(code) => Outcome::Exited { code, stdout },
                    None => Outcome::Failed("sparekey was ended by a signal".into()),
                };
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::TimedOut(timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                return Outcome::Failed(format!("cannot wait for sparekey: {e}"));
            }
        }
    }
}

//! The operator's notify command with the real binary: a script that appends its whole
//! environment to a file shows what each event passes (and that nothing else is inherited);
//! a failing or hanging command leaves the exit code alone and is logged in one line; the
//! command runs after the store is closed (it can open the store itself).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tempfile::TempDir;

use crate::cli_verify::{enrolled_only, now, run};
use crate::support;

/// Writes `body` as an executable script in `dir`; returns its path.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A notify command that appends its environment, one block per event, to `dir/events`,
/// and writes to its stdout and stderr (which must reach neither of ours).
fn recorder(dir: &Path) -> String {
    let path = script(
        dir,
        "record.sh",
        "{ env; echo ---; } >> \"$1/events\"\necho noise; echo noise >&2",
    );
    format!("{} {}", path.display(), dir.display())
}

/// The blocks `recorder` wrote: each event's variables.
fn events(dir: &Path) -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
    (text.split("---\n"))
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            (block.lines())
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn get<'a>(block: &'a [(String, String)], key: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn verify(dir: &Path, notify: &str, extra: &[&str], line: &str) -> (i32, String, String) {
    let mut args = vec!["--json", "--notify-command", notify];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["verify", "bob"]);
    run(dir, &args, &format!("{line}\n"))
}

#[test]
fn a_backup_code_use_notifies_its_counts_and_codes_low_at_the_threshold() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (_, codes) = enrolled_only(dir, "bob");
    let notify = recorder(dir);
    let (code, out, err) = verify(dir, &notify, &[], &codes[0]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("stdout is still one JSON object");
    assert_eq!(v["remaining_codes"], 9);
    assert!(!err.contains("noise"), "{err}");
    let seen = events(dir);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let block = &seen[0];
    assert_eq!(get(block, "SPAREKEY_EVENT"), Some("backup_code_used"));
    assert_eq!(get(block, "SPAREKEY_ACCOUNT"), Some("bob"));
    assert_eq!(get(block, "SPAREKEY_REMAINING"), Some("9"));
    assert_eq!(get(block, "SPAREKEY_TOTAL"), Some("10"));
    let time = get(block, "SPAREKEY_TIME").unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    // Nothing of sparekey's own environment reached it.
    for inherited in ["HOME", "SPAREKEY_DATA_DIR", "SPAREKEY_KEY_FILE"] {
        assert_eq!(get(block, inherited), None, "{inherited} leaked: {block:?}");
    }
    for (_, value) in block {
        assert!(!codes.iter().any(|c| value.contains(c.as_str())), "{value}");
    }

    // Down to the threshold: the use that leaves 3 also says codes_low.
    for code in &codes[1..7] {
        let (status, out, err) = verify(dir, &notify, &[], code);
        assert_eq!(status, 0, "{out}{err}");
    }
    let seen = events(dir);
    let names: Vec<_> = seen
        .iter()
        .map(|b| get(b, "SPAREKEY_EVENT").unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "backup_code_used").count(),
        7
    );
    assert_eq!(
        names.iter().filter(|n| **n == "codes_low").count(),
        1,
        "{names:?}"
    );
    let low = seen
        .iter()
        .find(|b| get(b, "SPAREKEY_EVENT") == Some("codes_low"))
        .unwrap();
    assert_eq!(get(low, "SPAREKEY_REMAINING"), Some("3"));

    // A replay fails and notifies nothing.
    let (status, _, _) = verify(dir, &notify, &[], &codes[0]);
    assert_eq!(status, 1);
    assert_eq!(events(dir).len(), seen.len());
}

#[test]
fn the_failure_that_locks_notifies_account_locked() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    enrolled_only(dir, "bob");
    // All but the last failure in-process, on a clock far enough back that every delay has
    // run out by now (through the real CLI they would take hours).
    let lock_after = sparekey::core::throttle::ThrottlePolicy::default().lock_after;
    {
        use sparekey::core::clock::ManualClock;
        use sparekey::core::error::Error;
        let paths =
            sparekey::app::Paths::resolve(Some(dir.join("data")), Some(dir.join("key"))).unwrap();
        let clock = Arc::new(ManualClock::new(now() - 2 * 86_400));
        let service = support::open_disk(&paths, &clock, 7).unwrap();
        while service.account_summary("bob").unwrap().consecutive_failures < lock_after - 1 {
            match service.verify_second_factor("bob", "000000") {
                Err(Error::Throttled { seconds_left }) => clock.advance(seconds_left),
                Err(_) => {}
                Ok(_) => panic!("000000 was accepted"),
            }
        }
    }
    let notify = recorder(dir);
    let (status, out, err) = verify(dir, &notify, &[], "000000");
    assert_eq!(
        status, 1,
        "a wrong code, as without a notify command: {out}{err}"
    );
    let seen = events(dir);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(get(&seen[0], "SPAREKEY_EVENT"), Some("account_locked"));
    assert_eq!(get(&seen[0], "SPAREKEY_ACCOUNT"), Some("bob"));
    assert_eq!(get(&seen[0], "SPAREKEY_REMAINING"), None);
    // Refused while locked: exit 3, and no second notification.
    let (status, _, _) = verify(dir, &notify, &[], "000000");
    assert_eq!(status, 3);
    assert_eq!(events(dir).len(), 1);
}

#[test]
fn a_failing_command_is_logged_and_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (_, codes) = enrolled_only(dir, "bob");
    let failing = script(dir, "fail.sh", "exit 7");
    let (status, out, err) = verify(dir, failing.to_str().unwrap(), &[], &codes[0]);
    assert_eq!(status, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["remaining_codes"], 9, "the code was used all the same");
    let lines: Vec<_> = err.lines().filter(|l| l.contains("notify")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("backup_code_used") && lines[0].contains('7'),
        "{err}"
    );
    // A wrong code with a missing program: still exit 1, and one line.
    let (status, _, err) = verify(dir, "/nonexistent/notify", &[], &codes[0]);
    assert_eq!(status, 1, "a replay, as without a notify command: {err}");
    let (status, _, err) = run(
        dir,
        &[
            "--notify-command",
            "/nonexistent/notify",
            "reset",
            "bob",
            "--yes",
        ],
        "",
    );
    assert_eq!(status, 0, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("cannot run")).count(),
        1,
        "{err}"
    );
}

#[test]
fn a_hanging_command_is_killed_at_its_deadline_and_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (_, codes) = enrolled_only(dir, "bob");
    let hanging = script(dir, "hang.sh", "sleep 30");
    let started = Instant::now();
    let (status, out, err) = verify(
        dir,
        hanging.to_str().unwrap(),
        &["--notify-timeout-secs", "1"],
        &codes[0],
    );
    let took = started.elapsed();
    assert_eq!(status, 0, "{out}{err}");
    assert!(took.as_secs() < 15, "waited {took:?} for a 1 s deadline");
    let lines: Vec<_> = err.lines().filter(|l| l.contains("notify")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("killed"), "{err}");
}

#[test]
fn the_command_runs_after_the_store_is_closed() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (_, codes) = enrolled_only(dir, "bob");
    // The command opens the same store: it would wait for our lock, and fail, if we held it.
    let nested = script(
        dir,
        "nested.sh",
        "\"$2\" --json --data-dir \"$1/data\" --key-file \"$1/key\" codes status bob > \"$1/nested\" 2>&1",
    );
    let notify = format!(
        "{} {} {}",
        nested.display(),
        dir.display(),
        env!("CARGO_BIN_EXE_sparekey")
    );
    let (status, out, err) = verify(dir, &notify, &[], &codes[0]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(!err.contains("notify"), "{err}");
    let text = std::fs::read_to_string(dir.join("nested")).unwrap();
    let v: Value = serde_json::from_str(&text).expect(&text);
    assert_eq!(v["remaining"], 9, "{text}");
}

#[test]
fn the_config_file_names_the_command_only_if_nobody_else_may_write_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let (_, codes) = enrolled_only(dir, "bob");
    let config = dir.join("sparekey.toml");
    std::fs::write(
        &config,
        format!("notify = \"{}\"\nnotify_timeout_secs = 3\n", recorder(dir)),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o620)).unwrap();
    let config_arg = config.to_str().unwrap();
    let line = format!("{}\n", codes[0]);
    let (status, _, err) = run(dir, &["--config", config_arg, "verify", "bob"], &line);
    assert_eq!(status, 2, "refused before anything is done: {err}");
    assert!(err.contains("chmod go-w"), "{err}");
    assert!(events(dir).is_empty());

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (status, out, err) = run(dir, &["--config", config_arg, "verify", "bob"], &line);
    assert_eq!(status, 0, "{out}{err}");
    let seen = events(dir);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(get(&seen[0], "SPAREKEY_EVENT"), Some("backup_code_used"));
}

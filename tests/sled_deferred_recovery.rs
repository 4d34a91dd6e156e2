//! A process killed while sled's deferred recovery writes are still running, under sparekey's
//! vendored patch 7 (vendor/sled/PATCHES.md). Every open that follows a write zeroes the tail
//! of the last log segment and writes a new snapshot (`snap.N.generating`, fsync, rename to
//! `snap.N`, directory fsync); patch 7 runs those on a thread named "sled-recovery" while the
//! opening thread reads the store, and every later change to the disk waits for that thread.
//! A short CLI process may well be killed while that thread works, so this test does exactly
//! that, round after round: a child process writes and flushes (and closes normally), a second
//! child opens the store and SIGKILLs itself while "sled-recovery" is still alive, and this
//! process then opens the store and checks that it holds every value a flush acknowledged and
//! nothing else, and that its clean open and close leaves one complete snapshot and no
//! `.generating` file. The churn rewrites keys with values of a few KiB, so log segments are
//! freed, zeroed and reused across rounds, and the leaf holding them outgrows a quarter of a
//! segment and is written as a blob (vendor/sled patch 2) while recovery's thread works.
//!
//! Alone in its test binary because it re-runs that binary as its child processes. The store
//! lives under the build's target directory rather than the system's temporary directory, which
//! may be a tmpfs: there fsync costs nothing and the recovery thread's window all but closes.

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sparekey::store::sled_store::SledStore;

const TEST: &str = "a_process_killed_while_recovery_writes_leaves_every_acknowledged_value";
/// Set in a child process: what it is to do (`write` or `die`).
const ROLE: &str = "SPAREKEY_TEST_SLED_RECOVERY_ROLE";
const ROUND: &str = "SPAREKEY_TEST_SLED_RECOVERY_ROUND";
const STORE: &str = "SPAREKEY_TEST_SLED_RECOVERY_STORE";
/// What a dying child prints before it kills itself, followed by `yes` or `no`.
const ALIVE: &str = "sled-recovery alive: ";

const ROUNDS: u32 = 40;
/// Keys rewritten round after round with values of a few KiB, so that the log's 64 KiB
/// segments fill with garbage, are freed and are reused (and freed segments are zeroed).
const CHURN_KEYS: u32 = 8;
/// In one round of [`SCRATCH_EVERY`], how many times the writing child writes its churn keys
/// before the values it flushes: several segments, the first of them all garbage by the next
/// open. Recovery then frees and zeroes segments that the log written since the last snapshot
/// runs through, which is safe only once the new snapshot is renamed: patch 7 makes that
/// zeroing wait for the recovery thread (so that open is not deferred, and its kill lands after
/// recovery), and a copy of sled without that wait refused to open (corruption) or opened
/// empty after the first such round's kill. The other rounds free no segment at their open, so
/// their recovery thread is mostly still working when the dying child kills itself.
const SCRATCH_PASSES: u8 = 8;
const SCRATCH_EVERY: u32 = 4;
/// How long a dying child spins between its open and its read, by round: most kills land right
/// after the open, which returns before the recovery thread's first fsync; the others land
/// further into that thread's sequence (or after it).
const SPIN_MICROS: [u64; 6] = [0, 0, 0, 150, 400, 800];
/// Kills that must land while "sled-recovery" is alive for the test to have proved anything.
const MIN_KILLS_IN_WINDOW: u32 = 5;

type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

/// A round's writes: `Some(value)` to insert, `None` to remove.
fn round_writes(round: u32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut writes = Vec::new();
    for k in (0..CHURN_KEYS).filter(|k| !(k + round).is_multiple_of(4)) {
        let len = 3072 + ((round * 7 + k * 3) % 5) as usize * 512;
        let mut value = format!("churn {k} round {round}:").into_bytes();
        value.extend((0..len).map(|i| (i as u32 * 31 + round * 7 + k) as u8));
        writes.push((format!("churn-{k}").into_bytes(), Some(value)));
    }
    for i in 0..3 {
        let value = format!("new value {round}/{i};").repeat(1 + i as usize * 4);
        writes.push((new_key(round, i), Some(value.into_bytes())));
    }
    if round >= 3 {
        writes.push((new_key(round - 3, 2), None));
    }
    writes
}

fn new_key(round: u32, i: u32) -> Vec<u8> {
    format!("new-{round:04}-{i}").into_bytes()
}

/// Child: writes round `round`'s values (after scratch values under the same keys), flushes,
/// closes normally.
fn write_round(store: &Path, round: u32) {
    let db = SledStore::raw_config(store).open().unwrap();
    let passes = if round % SCRATCH_EVERY == 1 {
        SCRATCH_PASSES
    } else {
        0
    };
    for pass in 0..passes {
        for (key, value) in round_writes(round) {
            if let Some(mut value) = value {
                value.fill(pass);
                db.insert(key, value).unwrap();
            }
        }
    }
    for (key, value) in round_writes(round) {
        match value {
            Some(value) => db.insert(key, value).map(|_| ()).unwrap(),
            None => db.remove(key).map(|_| ()).unwrap(),
        }
    }
    db.flush().unwrap();
}

/// Child: opens the store (which starts the deferred recovery writes, since the previous
/// process wrote), reads one value, says whether "sled-recovery" is still alive and SIGKILLs
/// itself.
fn open_read_and_die(store: &Path, round: u32) -> ! {
    let db = SledStore::raw_config(store).open().unwrap();
    let spin = Duration::from_micros(SPIN_MICROS[round as usize % SPIN_MICROS.len()]);
    let opened = Instant::now();
    while opened.elapsed() < spin {
        std::hint::spin_loop();
    }
    assert!(db.get(b"churn-1").unwrap().is_some());
    let alive = recovery_thread_alive();
    // Straight to the file descriptor: libtest captures `println!`, and would lose it here.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ALIVE}{}", if alive { "yes" } else { "no" }).unwrap();
    stdout.flush().unwrap();
    // SAFETY: kill(2) with this process's own id; nothing is borrowed.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned");
}

fn recovery_thread_alive() -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .any(|name| name.trim_end() == "sled-recovery")
}

fn child(role: &str, store: &Path, round: u32) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--test-threads=1"])
        .env(ROLE, role)
        .env(ROUND, round.to_string())
        .env(STORE, store)
        .output()
        .unwrap()
}

/// `snap.*` files in the store, sorted: complete ones, then `.generating` leftovers.
fn snapshot_files(store: &Path) -> (Vec<String>, Vec<String>) {
    common::snapshot_files(store)
        .into_iter()
        .partition(|name| !name.ends_with(".generating"))
}

/// Up to a few keys that differ, for a readable failure.
fn differences(expected: &Contents, found: &Contents) -> Vec<String> {
    let shown = |value: Option<&Vec<u8>>| match value {
        None => "absent".to_string(),
        Some(value) => format!(
            "{} bytes {:?}…",
            value.len(),
            String::from_utf8_lossy(&value[..value.len().min(24)])
        ),
    };
    let mut keys: Vec<&Vec<u8>> = expected.keys().chain(found.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| expected.get(*key) != found.get(*key))
        .take(5)
        .map(|key| {
            format!(
                "{}: acknowledged {}, found {}",
                String::from_utf8_lossy(key),
                shown(expected.get(key)),
                shown(found.get(key))
            )
        })
        .collect()
}

/// Runs a writing child for `round` and records what its flush acknowledged.
fn write_in_child(store: &Path, round: u32, acknowledged: &mut Contents) {
    let writer = child("write", store, round);
    assert!(
        writer.status.success(),
        "round {round}: the writing child failed: {writer:?}"
    );
    for (key, value) in round_writes(round) {
        match value {
            Some(value) => acknowledged.insert(key, value),
            None => acknowledged.remove(&key),
        };
    }
}

/// Opens the store here, checks it holds exactly what was acknowledged, and closes it.
fn open_and_check(store: &Path, acknowledged: &Contents, context: &str) {
    let db = SledStore::raw_config(store)
        .open()
        .unwrap_or_else(|e| panic!("{context}: the store does not open: {e}"));
    let found: Contents = db
        .iter()
        .map(|entry| {
            let (key, value) = entry.unwrap();
            (key.to_vec(), value.to_vec())
        })
        .collect();
    assert!(
        found == *acknowledged,
        "{context}: the store differs from what its flushes acknowledged ({} keys acknowledged, \
         {} found): {:#?}",
        acknowledged.len(),
        found.len(),
        differences(acknowledged, &found)
    );
}

/// Where in recovery's sequence a kill landed, as the snapshot files tell it.
fn kill_point(before: &[String], left: &(Vec<String>, Vec<String>)) -> &'static str {
    let (complete, generating) = left;
    if !generating.is_empty() {
        "while the new snapshot was written"
    } else if complete == before {
        "before the new snapshot's file (zeroing the tail, or not started)"
    } else if complete.len() > 1 {
        "after the new snapshot's rename, before the older ones were removed"
    } else {
        "after the new snapshot was complete"
    }
}

#[test]
fn a_process_killed_while_recovery_writes_leaves_every_acknowledged_value() {
    if let Some(role) = std::env::var_os(ROLE) {
        let store = std::env::var_os(STORE).unwrap();
        let round: u32 = std::env::var(ROUND).unwrap().parse().unwrap();
        match role.to_str().unwrap() {
            "write" => return write_round(Path::new(&store), round),
            "die" => open_read_and_die(Path::new(&store), round),
            other => panic!("unknown role {other}"),
        }
    }
    let started = Instant::now();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = dir.path().join("store");
    let mut acknowledged = Contents::new();
    let mut kills_in_window = 0;
    // (kills while sled-recovery was alive, all kills) by where they landed
    let mut kill_points: BTreeMap<&str, (u32, u32)> = BTreeMap::new();

    for round in 0..ROUNDS {
        write_in_child(&store, round, &mut acknowledged);
        let (before, _) = snapshot_files(&store);

        let victim = child("die", &store, round);
        assert_eq!(
            victim.status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the dying child was not killed: {victim:?}"
        );
        // After libtest's "test ... " line, which has no newline yet.
        let alive = match String::from_utf8_lossy(&victim.stdout)
            .split_once(ALIVE)
            .and_then(|(_, said)| said.lines().next())
        {
            Some("yes") => true,
            Some("no") => false,
            _ => panic!("round {round}: the dying child said nothing: {victim:?}"),
        };
        kills_in_window += u32::from(alive);

        let left = snapshot_files(&store);
        let point = kill_point(&before, &left);
        let counts = kill_points.entry(point).or_default();
        counts.0 += u32::from(alive);
        counts.1 += 1;
        let context = format!(
            "round {round}: killed {point} (sled-recovery alive: {alive}), leaving {left:?}"
        );
        open_and_check(&store, &acknowledged, &context);

        let (complete, generating) = snapshot_files(&store);
        assert!(
            generating.is_empty(),
            "{context}: a clean open and close left {generating:?}"
        );
        // Exactly one, unless the killed open got past its snapshot's rename but not past the
        // removal of the older ones: then the clean open found nothing new in the log, wrote no
        // snapshot and removed nothing. Older files are never read (the newest is), and the
        // next snapshot, at the next open that follows a write, removes them (checked below).
        assert!(
            complete.len() == 1 || complete == left.0,
            "{context}: after a clean open and close: {complete:?}"
        );
    }

    // One more write, then a clean open: its snapshot removes whatever older ones were left.
    write_in_child(&store, ROUNDS, &mut acknowledged);
    open_and_check(&store, &acknowledged, "after a last write");
    let (complete, generating) = snapshot_files(&store);
    assert!(
        complete.len() == 1 && generating.is_empty(),
        "after a last write and a clean open: complete {complete:?}, generating {generating:?}"
    );

    // A snapshot is named after its position in the log, which counts every byte ever logged;
    // a log file shorter than that has had segments freed and written again.
    let logged = u64::from_str_radix(complete[0].trim_start_matches("snap."), 16).unwrap();
    let log_bytes = std::fs::metadata(store.join("db")).unwrap().len();
    eprintln!(
        "{ROUNDS} rounds in {:.1?}, {kills_in_window} kills while sled-recovery was alive; \
         (alive, all) by where they landed: {kill_points:#?}; {logged} bytes logged in a \
         log file of {log_bytes}",
        started.elapsed()
    );
    assert!(
        kills_in_window >= MIN_KILLS_IN_WINDOW,
        "only {kills_in_window} of {ROUNDS} kills landed while sled-recovery was alive: \
         {kill_points:?}"
    );
    assert!(
        log_bytes < logged,
        "{logged} bytes were logged in a log file of {log_bytes}: no segment was reused"
    );
}

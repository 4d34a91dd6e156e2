//! sled's worker threads under sparekey's vendored patches 4, 5 and 9 (vendor/sled/PATCHES.md):
//! opening a store reads its segment headers without starting a worker per segment, and the
//! only workers started before there is work for them are the two that recovery starts for
//! the first commit. A short `sparekey login` paid for seven workers and one more per segment
//! on every open. Alone in its test binary because sled's
//! pool is one per process: the store is written by a child process, so this process opens it
//! with a pool that has never run.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use sparekey::store::sled_store::SledStore;

const CHILD_WRITES_TO: &str = "SPAREKEY_TEST_SLED_POOL_WRITE";
const VALUES: u32 = 2_000;

/// Names of this process's sled worker threads ("sled-io-N", N counting every spawn).
fn sled_workers() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .filter(|name| name.starts_with("sled-io-"))
        .collect()
}

fn thread_named(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .any(|comm| comm.trim_end() == name)
}

fn write_store(path: &Path) {
    let db = SledStore::raw_config(path).open().unwrap();
    for i in 0..VALUES {
        db.insert(i.to_be_bytes(), vec![7u8; 512]).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn opening_a_store_of_many_segments_starts_no_worker_per_segment() {
    if let Some(path) = std::env::var_os(CHILD_WRITES_TO) {
        write_store(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "opening_a_store_of_many_segments_starts_no_worker_per_segment",
        ])
        .env(CHILD_WRITES_TO, &path)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "the writing child failed: {child:?}"
    );
    let segments = std::fs::metadata(path.join("db")).unwrap().len() / 65_536;
    assert!(segments >= 16, "only {segments} segments were written");
    assert!(sled_workers().is_empty(), "no store was opened here yet");

    // No periodic flusher: its clean-up could write, and start a worker for that.
    let db = SledStore::raw_config(&path)
        .flush_every_ms(None)
        .open()
        .unwrap();
    assert_eq!(
        db.get(5u32.to_be_bytes()).unwrap().as_deref(),
        Some(&[7u8; 512][..])
    );

    // Recovery starts its two workers after its writes, in the background: watch until one is
    // seen and no thread is still called "sled-recovery" (a new worker carries that name until
    // it renames itself). N counts every spawn in this process, so a worker that was started
    // and has already exited still shows in the name of the next one: any name but these two
    // is one too many. (An idle worker may exit after a second, so both need not be seen.)
    let expected = BTreeSet::from(["sled-io-0".to_string(), "sled-io-1".to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = BTreeSet::new();
    loop {
        let started = sled_workers();
        assert!(
            started.is_subset(&expected),
            "opening a store of {segments} segments and reading it started more than \
             recovery's two workers: {started:?} are live"
        );
        seen.extend(started);
        if !seen.is_empty() && !thread_named("sled-recovery") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "recovery's workers never started: saw {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

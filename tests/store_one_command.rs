//! A store opened for one command (the CLI's) runs without sled's periodic flusher, and loses
//! nothing by it: the close writes and syncs what the flusher would have. Alone in its own
//! test binary, because it counts the threads of its process.

use std::time::Duration;

use sparekey::core::audit::{AuditEvent, AuditKind};
use sparekey::core::store::Store;
use sparekey::store::sled_store::SledStore;

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn a_store_for_one_command_has_no_flusher_and_keeps_what_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let event = AuditEvent {
        at: 42,
        account: "alice".into(),
        kind: AuditKind::Unlocked,
    };
    {
        let store = SledStore::open_for_one_command(&path, Duration::ZERO).unwrap();
        // Best effort: handed to the OS, not synced; the close must sync it.
        store.append_audit(&event).unwrap();
        assert!(
            !thread_names().iter().any(|name| name == "log flusher"),
            "{:?}",
            thread_names()
        );
    }
    // The close, not a flush, must write: sled without a flusher, never flushed, dropped.
    {
        let db = SledStore::raw_config(&path)
            .flush_every_ms(None)
            .open()
            .unwrap();
        db.insert(b"written only by the close", &b"yes"[..])
            .unwrap();
    }
    {
        let db = SledStore::raw_config(&path).open().unwrap();
        assert_eq!(
            db.get(b"written only by the close").unwrap().as_deref(),
            Some(&b"yes"[..])
        );
    }
    let store = SledStore::open(&path, Duration::ZERO).unwrap();
    assert!(
        thread_names().iter().any(|name| name == "log flusher"),
        "a store for a console keeps its flusher: {:?}",
        thread_names()
    );
    assert_eq!(store.audit_events(None, 10).unwrap(), vec![event]);
}

//! What the console pays for holding its store only while it works
//! (`sparekey::store::reopening`): on the large fixture store (100,000 accounts with 2FA, as
//! `store_scale` uses), one console action (Enter on an account: its settings are loaded, three
//! store reads, and the screen drawn at 200x60) when the store must first be reopened, against
//! the same action on the store still open; and the bare reopen under one `load_account`, also
//! after a write (sled's recovery does more after one).
//!
//! Run: `cargo bench --bench console_reopen`. Before each reopened round the store is released
//! (as the idle timer does) and the bench waits, untimed, until sled's background threads have
//! let go of its log, as they have long done when a person's next key comes.
//! `SPAREKEY_BENCH_ACCOUNTS` changes the count (default 100000; 1000 in criterion's test mode,
//! e.g. `cargo test --benches`).

#[path = "support/mod.rs"]
mod support;

#[path = "support/console.rs"]
mod console;

#[path = "support/fixture.rs"]
mod fixture;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use console::{draw, press};
use crossterm::event::KeyCode;
use sparekey::app::{self, Paths};
use sparekey::core::clock::SystemClock;
use sparekey::core::entropy::OsEntropy;
use sparekey::core::service::{Config, Service};
use sparekey::core::store::Store;
use sparekey::store::reopening::{Releaser, ReopeningStore};
use sparekey::tui::app::Screen;
use sparekey::tui::runtime::{Driver, RecordingPlatform};

/// Long enough that the idle timer never closes the store during a round: the bench releases it.
const NEVER: Duration = Duration::from_secs(3600);

/// What a reopen may add to a console action: below what a person notices.
const TARGET: Duration = Duration::from_millis(100);

/// Waits until no handle of this process holds sled's lock on the store's log any more.
fn wait_until_closed(store: &Path) {
    let log = std::fs::File::open(store.join("db")).expect("open the log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.try_lock().is_err() {
        assert!(Instant::now() < deadline, "sled kept the log locked");
        std::thread::sleep(Duration::from_millis(2));
    }
    log.unlock().expect("unlock");
}

fn release(releaser: &Releaser, store: &Path) {
    releaser.release();
    assert!(!releaser.is_open());
    wait_until_closed(store);
}

/// The console on a reopening store, as `sparekey tui` opens it, with its releaser.
fn console(paths: &Paths) -> (Driver<RecordingPlatform>, Releaser) {
    let store = ReopeningStore::open(&paths.store, app::LOCK_WAIT, NEVER).expect("open");
    let releaser = store.releaser();
    let mut entropy = Box::new(OsEntropy);
    let key = app::load_or_create_key(&paths.key_file, &store, entropy.as_mut()).expect("key");
    let service = Service::new(
        Box::new(store),
        Arc::new(SystemClock),
        entropy,
        key,
        Config::default(),
    )
    .expect("service");
    (console::driver(service), releaser)
}

/// Enter on the first account: its settings loaded and drawn.
fn open_settings(driver: &mut Driver<RecordingPlatform>) -> usize {
    press(driver, KeyCode::Enter);
    assert!(matches!(driver.app.screen, Screen::Settings(_)));
    draw(driver)
}

/// Back to the list (untimed: it loads the first page again).
fn back(driver: &mut Driver<RecordingPlatform>) {
    press(driver, KeyCode::Esc);
    assert!(matches!(driver.app.screen, Screen::Accounts(_)));
}

/// Times `action` on a store just closed by `close` (A) and on the store still open (B), in
/// ABBA order; `close` runs untimed right before each A, and B runs once untimed first so the
/// store is open.
fn reopened_vs_open<T>(
    rounds: usize,
    mut close: impl FnMut(),
    mut action: impl FnMut() -> T,
) -> support::Paired {
    let mut time = |reopen: bool| {
        if reopen {
            close();
        } else {
            drop(action());
        }
        let start = Instant::now();
        let output = std::hint::black_box(action());
        let elapsed = start.elapsed().as_secs_f64();
        drop(output);
        elapsed
    };
    let (mut ta, mut tb, mut ratios, mut differences) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = time(true);
            (a, time(false))
        } else {
            let b = time(false);
            (time(true), b)
        };
        ta.push(a);
        tb.push(b);
        ratios.push(a / b);
        differences.push(a - b);
    }
    support::Paired {
        a: Duration::from_secs_f64(support::median_f64(ta)),
        b: Duration::from_secs_f64(support::median_f64(tb)),
        ratio: support::median_f64(ratios),
        difference_secs: support::median_f64(differences),
        rounds,
    }
}

fn main() {
    let test_mode = support::test_mode();
    let accounts = fixture::accounts_from_env(if test_mode { 1_000 } else { 100_000 });
    let rounds = if test_mode { 2 } else { 40 };
    let dir = fixture::scratch_dir("console_reopen");
    let generated = fixture::generate_in(&dir, accounts).expect("generate the fixture store");
    println!(
        "fixture: {accounts} accounts generated in {:.2} s",
        generated.elapsed.as_secs_f64()
    );
    let paths = generated.paths.clone();
    let store_path = paths.store.clone();

    let (driver, releaser) = console(&paths);
    let driver = RefCell::new(driver);
    let action = || {
        let mut driver = driver.borrow_mut();
        let cells = open_settings(&mut driver);
        back(&mut driver);
        cells
    };
    let settings = reopened_vs_open(rounds, || release(&releaser, &store_path), action);
    drop(driver);
    wait_until_closed(&store_path);

    let store = ReopeningStore::open(&store_path, app::LOCK_WAIT, NEVER).expect("open");
    // Records are checked with the key bound to the store, as every face does on opening it.
    app::load_or_create_key(&paths.key_file, &store, &mut OsEntropy).expect("key");
    let name = fixture::account_name(0);
    let load = || store.load_account(&name).expect("load").expect("present");
    let bare = reopened_vs_open(rounds, || release(&store.releaser(), &store_path), load);
    // A write (an event appended, as every login writes some) before each release.
    let event = sparekey::core::audit::AuditEvent {
        at: fixture::NOW,
        account: name.clone(),
        kind: sparekey::core::audit::AuditKind::AttemptsRefused {
            count: 1,
            locked: false,
        },
    };
    let after_write = reopened_vs_open(
        rounds,
        || {
            store.append_audit(&event).expect("append");
            release(&store.releaser(), &store_path);
        },
        load,
    );
    drop(store);

    println!(
        "\nconsole_reopen summary ({accounts} accounts; A reopens the store, B finds it open)"
    );
    support::print_paired("settings of an account, reopened / open", &settings, None);
    let extra = Duration::from_secs_f64(settings.difference_secs.max(0.0));
    println!(
        "    a reopened action costs {} more (median of the per-round differences)  target <= {}: {}",
        support::fmt_duration(extra),
        support::fmt_duration(TARGET),
        if extra <= TARGET { "MET" } else { "NOT MET" }
    );
    support::print_paired("load_account, reopened / open", &bare, None);
    println!(
        "    the reopen itself: {}",
        support::fmt_duration(Duration::from_secs_f64(bare.difference_secs.max(0.0)))
    );
    support::print_paired(
        "load_account after a write, reopened / open",
        &after_write,
        None,
    );
    println!(
        "    the reopen itself: {}",
        support::fmt_duration(Duration::from_secs_f64(
            after_write.difference_secs.max(0.0)
        ))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

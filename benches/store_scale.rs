//! The TUI's data path at scale: opening a store of 100,000 accounts with 2FA on and listing
//! them (`Service::list_accounts`, or only the first page), and filtering 100,000 names per
//! keystroke the naive way (a full scan per keystroke); then the console itself
//! (`sparekey::tui`): its start to the first frame drawn at 200x60 (open, the first page, the
//! frame), one frame of the accounts list with all 100,000 loaded, filter and scroll keystrokes
//! with their frames, and one frame each of the login, settings and codes screens; and the
//! console's peak RSS, in a fresh child process of this bench (peak RSS is per process, and
//! this one generated the fixture).
//!
//! Run: `cargo bench --bench store_scale`. The fixture is generated first (see
//! `benches/support/fixture.rs`, also `examples/gen_store.rs`) under `target/sparekey-fixtures/`
//! and removed afterwards. `SPAREKEY_BENCH_ACCOUNTS` changes the count (default 100000; 1000 in
//! criterion's test mode, e.g. `cargo test --benches`, which also skips the RSS child).

#[path = "support/mod.rs"]
mod support;

#[path = "support/console.rs"]
mod console;

#[path = "support/fixture.rs"]
mod fixture;

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::{Duration, Instant};

use console::{console, draw, press};
use criterion::{Criterion, SamplingMode};
use crossterm::event::KeyCode;
use sparekey::app;
use sparekey::core::account::AccountSummary;
use sparekey::core::clock::{Clock, SystemClock};
use sparekey::core::service::Config;
use sparekey::core::totp;
use sparekey::tui::app::Screen;
use sparekey::tui::runtime::{Driver, RecordingPlatform};
use sparekey::tui::screens::accounts::FIRST_PAGE;

/// Indices of the names containing `query`, case-sensitively (one `memmem` per name).
fn filter_contains(list: &[AccountSummary], query: &str) -> Vec<usize> {
    list.iter()
        .enumerate()
        .filter(|(_, s)| s.name.contains(query))
        .map(|(i, _)| i)
        .collect()
}

/// Indices of the names containing `query`, case-insensitively, lowering every name on every
/// keystroke (the naive way a list widget would write it).
fn filter_lowercase(list: &[AccountSummary], query: &str) -> Vec<usize> {
    let query = query.to_lowercase();
    list.iter()
        .enumerate()
        .filter(|(_, s)| s.name.to_lowercase().contains(&query))
        .map(|(i, _)| i)
        .collect()
}

fn typed(driver: &mut Driver<RecordingPlatform>, text: &str) {
    for c in text.chars() {
        press(driver, KeyCode::Char(c));
    }
}

/// Waits until no handle of this process holds sled's lock on the store's log any more (sled
/// lets go of it when its background threads end, a moment after the store is dropped).
fn wait_until_closed(store: &Path) {
    let log = std::fs::File::open(store.join("db")).expect("open the log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.try_lock().is_err() {
        assert!(Instant::now() < deadline, "sled kept the log locked");
        std::thread::sleep(Duration::from_millis(2));
    }
    log.unlock().expect("unlock");
}

/// The current TOTP code of the base32 `secret`.
fn current_code(secret: &str) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("base32 secret");
    totp::code_at(&secret, SystemClock.now(), Default::default()).expect("code")
}

/// `VmHWM` (peak) and `VmRSS` (now) of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let field = |name: &str| fixture::proc_status_kib(name).unwrap_or(0);
    (field("VmHWM"), field("VmRSS"))
}

const RSS_CHILD: &str = "SPAREKEY_BENCH_RSS_CHILD";

/// The child process of the RSS figure: the console's life on the store at `data`/`key` (start,
/// all accounts loaded, filtering, scrolling, settings), then its peak RSS on stdout.
fn rss_child(data: &Path, key: &Path) {
    let paths =
        app::Paths::resolve(Some(data.to_path_buf()), Some(key.to_path_buf())).expect("paths");
    let start = Instant::now();
    let mut driver = console(&paths);
    draw(&driver);
    let first_frame = start.elapsed();
    let (hwm_first, _) = rss_kib();
    driver.settle();
    let loaded = start.elapsed();
    draw(&driver);
    typed(&mut driver, "/o");
    draw(&driver);
    typed(&mut driver, "l");
    draw(&driver);
    press(&mut driver, KeyCode::Backspace);
    press(&mut driver, KeyCode::Enter);
    for _ in 0..100 {
        press(&mut driver, KeyCode::PageDown);
        draw(&driver);
    }
    press(&mut driver, KeyCode::Enter);
    assert!(matches!(driver.app.screen, Screen::Settings(_)));
    draw(&driver);
    let (hwm, rss) = rss_kib();
    println!(
        "rss_child: first_frame_ms={:.1} all_loaded_ms={:.1} hwm_first_frame_kib={hwm_first} hwm_kib={hwm} rss_kib={rss}",
        first_frame.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3,
    );
}

fn main() {
    if std::env::var_os(RSS_CHILD).is_some() {
        let var = |name: &str| std::path::PathBuf::from(std::env::var_os(name).expect(name));
        rss_child(&var("SPAREKEY_BENCH_DATA"), &var("SPAREKEY_BENCH_KEY"));
        return;
    }
    // In test mode (`cargo test --benches`) every benchmark runs once: a small fixture will do.
    let test_mode = support::test_mode();
    let accounts = fixture::accounts_from_env(if test_mode { 1_000 } else { 100_000 });
    let dir = fixture::scratch_dir("store_scale");
    let generated = fixture::generate_in(&dir, accounts).expect("generate the fixture store");
    println!(
        "fixture: {accounts} accounts generated in {:.2} s",
        generated.elapsed.as_secs_f64()
    );
    let paths = generated.paths.clone();
    // Untimed before each start: the previous iteration's store has let go of its log, as it has
    // long done for a console started in a fresh process. Each start's service is returned, so
    // its close (sled's final flush and fsync, its threads ending) runs after the clock stops.
    let closed = || wait_until_closed(&paths.store);

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = support::configure(&mut c, "tui_start", Duration::from_secs(2));
        let id = format!("tui_start/open_and_list/{accounts}");
        group.bench_function(format!("open_and_list/{accounts}"), |b| {
            support::timed_with_setup(b, &id, closed, |()| {
                let service = app::open_console(&paths, Config::default()).expect("open");
                let list = service.list_accounts().expect("list");
                assert_eq!(list.len(), accounts);
                // Closed after the clock stops: a start does not include the close.
                (service, list.len())
            })
        });
        let id = format!("tui_start/open_and_first_page/{accounts}");
        group.bench_function(format!("open_and_first_page/{accounts}"), |b| {
            support::timed_with_setup(b, &id, closed, |()| {
                let service = app::open_console(&paths, Config::default()).expect("open");
                let page = service
                    .list_accounts_page(None, FIRST_PAGE)
                    .expect("first page");
                assert_eq!(page.len(), FIRST_PAGE.min(accounts));
                (service, page.len())
            })
        });
        let service = app::open_console(&paths, Config::default()).expect("open");
        let id = format!("tui_start/list_accounts/{accounts}");
        group.bench_function(format!("list_accounts/{accounts}"), |b| {
            support::timed(b, &id, || service.list_accounts().expect("list").len())
        });
        group.finish();
    }

    {
        // The console itself: its real start (open, the app's first effects: the first page of
        // the list, one frame drawn at 200x60 on ratatui's TestBackend), then with all accounts
        // loaded (the rest comes in chunks between keys: `Driver::settle` runs them all) one
        // frame, filter and scroll keystrokes with their frames, and the other screens.
        let mut group = support::configure(&mut c, "tui", Duration::from_secs(2));
        let id = format!("tui/first_frame_200x60/{accounts}");
        group.bench_function(format!("first_frame_200x60/{accounts}"), |b| {
            support::timed_with_setup(b, &id, closed, |()| {
                let driver = console(&paths);
                let cells = draw(&driver);
                (driver, cells)
            })
        });
        // One chunk of the rest of the list (what a key may wait behind while loading).
        let loading = RefCell::new(Some(console(&paths)));
        let id = format!("tui/load_chunk/{accounts}");
        group.bench_function(format!("load_chunk/{accounts}"), |b| {
            support::timed_with_setup(
                b,
                &id,
                || {
                    let mut slot = loading.borrow_mut();
                    if !slot.as_ref().is_some_and(|d| d.busy()) {
                        // Closed before it opens again: sled opens a store once at a time.
                        *slot = None;
                        *slot = Some(console(&paths));
                    }
                },
                |()| loading.borrow_mut().as_mut().map(|d| d.step()),
            )
        });
        drop(loading);
        let mut settled = console(&paths);
        let started = Instant::now();
        settled.settle();
        println!(
            "console: the rest of the list loaded in {:.0} ms of idle time",
            started.elapsed().as_secs_f64() * 1e3
        );
        let Screen::Accounts(list) = &settled.app.screen else {
            panic!("not on the accounts list")
        };
        assert_eq!(list.loaded_len(), accounts);
        let driver = RefCell::new(settled);
        let id = format!("tui/frame_200x60/{accounts}");
        group.bench_function(format!("frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || draw(&driver.borrow()))
        });
        // Down, with a jump back to the top now and then (untimed).
        let id = format!("tui/scroll_keystroke_and_frame/{accounts}");
        group.bench_function(format!("scroll_keystroke_and_frame/{accounts}"), |b| {
            support::timed_with_setup(
                b,
                &id,
                || {
                    let mut d = driver.borrow_mut();
                    let Screen::Accounts(list) = &d.app.screen else {
                        panic!()
                    };
                    if list.selected + 1 >= list.visible_len() {
                        press(&mut d, KeyCode::Home);
                    }
                },
                |()| {
                    let mut d = driver.borrow_mut();
                    press(&mut d, KeyCode::PageDown);
                    draw(&d)
                },
            )
        });
        press(&mut driver.borrow_mut(), KeyCode::Char('/'));
        // Growing the filter from empty: the matches (all 100,000) are narrowed to those with 'o'.
        let id = format!("tui/filter_keystroke_and_frame/{accounts}");
        group.bench_function(format!("filter_keystroke_and_frame/{accounts}"), |b| {
            support::timed_with_setup(
                b,
                &id,
                || press(&mut driver.borrow_mut(), KeyCode::Backspace),
                |()| {
                    let mut d = driver.borrow_mut();
                    press(&mut d, KeyCode::Char('o'));
                    draw(&d)
                },
            )
        });
        // Shrinking it ("ol" to "o"): the one case that scans all lowered names again.
        let id = format!("tui/filter_backspace_and_frame/{accounts}");
        group.bench_function(format!("filter_backspace_and_frame/{accounts}"), |b| {
            support::timed_with_setup(
                b,
                &id,
                || press(&mut driver.borrow_mut(), KeyCode::Char('l')),
                |()| {
                    let mut d = driver.borrow_mut();
                    press(&mut d, KeyCode::Backspace);
                    draw(&d)
                },
            )
        });
        // A typical narrowing keystroke deep in a name ("olivia.kim34" to "olivia.kim342").
        {
            let mut d = driver.borrow_mut();
            press(&mut d, KeyCode::Backspace);
            typed(&mut d, "olivia.kim34");
        }
        // Each iteration times "olivia.kim34" to "olivia.kim342"; the untimed setup takes the
        // '2' of the previous iteration back off first.
        let narrowed = Cell::new(false);
        let id = format!("tui/filter_narrow_keystroke_and_frame/{accounts}");
        group.bench_function(
            format!("filter_narrow_keystroke_and_frame/{accounts}"),
            |b| {
                support::timed_with_setup(
                    b,
                    &id,
                    || {
                        let mut d = driver.borrow_mut();
                        if narrowed.replace(false) {
                            press(&mut d, KeyCode::Backspace);
                        }
                        let Screen::Accounts(list) = &d.app.screen else {
                            panic!("not on the accounts list")
                        };
                        assert_eq!(list.filter.as_str(), "olivia.kim34");
                    },
                    |()| {
                        let mut d = driver.borrow_mut();
                        press(&mut d, KeyCode::Char('2'));
                        narrowed.set(true);
                        draw(&d)
                    },
                )
            },
        );
        drop(driver);

        // The other screens, each on a console of its own (sled opens a store once at a time).
        let mut d = console(&paths);
        press(&mut d, KeyCode::Char('l'));
        assert!(matches!(d.app.screen, Screen::Login(_)));
        let id = format!("tui/login_frame_200x60/{accounts}");
        group.bench_function(format!("login_frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || draw(&d))
        });
        drop(d);
        let mut d = console(&paths);
        press(&mut d, KeyCode::Enter);
        assert!(matches!(d.app.screen, Screen::Settings(_)));
        let id = format!("tui/settings_frame_200x60/{accounts}");
        group.bench_function(format!("settings_frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || draw(&d))
        });
        // New codes (untimed), with the step-up regenerating needs (the password and a current
        // code from the fixture's shared authenticator): the codes screen.
        press(&mut d, KeyCode::Char('g'));
        typed(&mut d, fixture::PASSWORD);
        press(&mut d, KeyCode::Enter);
        typed(&mut d, &current_code(&generated.totp_secret));
        press(&mut d, KeyCode::Enter);
        assert!(
            matches!(d.app.screen, Screen::Codes(_)),
            "{:?}",
            d.app.status
        );
        let id = format!("tui/codes_frame_200x60/{accounts}");
        group.bench_function(format!("codes_frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || draw(&d))
        });
        drop(d);
        group.finish();
    }

    // Peak RSS of the console alone: a fresh process of this bench (not in test mode).
    let rss_line = if test_mode {
        "rss_child: skipped in test mode".to_string()
    } else {
        let child = std::process::Command::new(std::env::current_exe().expect("current exe"))
            .env(RSS_CHILD, "1")
            .env("SPAREKEY_BENCH_DATA", &paths.data_dir)
            .env("SPAREKEY_BENCH_KEY", &paths.key_file)
            .output()
            .expect("run the RSS child");
        assert!(
            child.status.success(),
            "{}",
            String::from_utf8_lossy(&child.stderr)
        );
        String::from_utf8_lossy(&child.stdout).trim().to_string()
    };

    let service = app::open(&paths, Config::default()).expect("open");
    let list = service.list_accounts().expect("list");
    drop(service);
    {
        let mut group = support::configure(&mut c, "filter_keystroke", Duration::from_secs(1));
        // Microseconds to a millisecond per iteration: criterion's automatic sampling, and a
        // shorter warm-up, as before.
        group
            .sampling_mode(SamplingMode::Auto)
            .warm_up_time(Duration::from_millis(300));
        // One character (most matches), a typical prefix, a full name, and no match.
        for query in ["a", "olivia", "olivia.kim342", "zzz"] {
            let hits = filter_contains(&list, query).len();
            assert_eq!(hits, filter_lowercase(&list, query).len());
            let id = format!("filter_keystroke/contains/{query}");
            group.bench_function(format!("contains/{query}"), |b| {
                support::timed(b, &id, || filter_contains(&list, query))
            });
            let id = format!("filter_keystroke/lowercase/{query}");
            group.bench_function(format!("lowercase/{query}"), |b| {
                support::timed(b, &id, || filter_lowercase(&list, query))
            });
        }
        group.finish();
    }
    c.final_summary();
    support::print_summary("store_scale");
    println!("== store_scale: the console's memory (fresh process, {accounts} accounts) ==");
    println!("  {rss_line}  (target: peak RSS <= 65536 KiB)");
    let _ = std::fs::remove_dir_all(&dir);
}

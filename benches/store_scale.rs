//! The TUI's data path at scale: opening a store of 100,000 accounts with 2FA on and listing
//! them (`Service::list_accounts`, what the first frame needs), and filtering 100,000 names per
//! keystroke the naive way (a full scan per keystroke); then the console itself
//! (`sparekey::tui`): its start to the first frame drawn at 200x60, one frame, and one filter
//! keystroke with its frame.
//!
//! Run: `cargo bench --bench store_scale`. The fixture is generated first (see
//! `benches/support/fixture.rs`, also `examples/gen_store.rs`) under `target/sparekey-fixtures/`
//! and removed afterwards. `SPAREKEY_BENCH_ACCOUNTS` changes the count (default 100000).
//! Peak RSS is a per-process figure, so it is measured by `examples/gen_store.rs measure`.

#[path = "support/mod.rs"]
mod support;

#[path = "support/fixture.rs"]
mod fixture;

use std::cell::RefCell;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sparekey::app;
use sparekey::core::account::AccountSummary;
use sparekey::core::service::Config;
use sparekey::tui::TuiOptions;
use sparekey::tui::runtime::{Driver, RecordingPlatform};
use sparekey::tui::ui::view;

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

/// The console as `sparekey tui` starts it, on a test platform.
fn console(paths: &app::Paths) -> Driver<RecordingPlatform> {
    let service = app::open(paths, Config::default()).expect("open");
    let options = TuiOptions::default().app_options(&service);
    Driver::new(service, RecordingPlatform::default(), options)
}

fn draw(driver: &Driver<RecordingPlatform>) -> usize {
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    terminal.draw(|f| view(&driver.app, f)).expect("draw");
    terminal.backend().buffer().content.len()
}

fn press(driver: &mut Driver<RecordingPlatform>, code: KeyCode) {
    driver.key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn main() {
    let accounts: usize = std::env::var("SPAREKEY_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000);
    let dir = fixture::scratch_dir("store_scale");
    let generated = fixture::generate(
        &dir.join("data"),
        &dir.join("key"),
        accounts,
        0,
        fixture::Method::Import,
    )
    .expect("generate the fixture store");
    println!(
        "fixture: {accounts} accounts generated in {:.2} s",
        generated.elapsed.as_secs_f64()
    );
    let paths = generated.paths.clone();

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("tui_start");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let id = format!("tui_start/open_and_list/{accounts}");
        group.bench_function(format!("open_and_list/{accounts}"), |b| {
            support::timed(b, &id, || {
                let service = app::open(&paths, Config::default()).expect("open");
                let list = service.list_accounts().expect("list");
                assert_eq!(list.len(), accounts);
                list.len()
            })
        });
        let service = app::open(&paths, Config::default()).expect("open");
        let id = format!("tui_start/list_accounts/{accounts}");
        group.bench_function(format!("list_accounts/{accounts}"), |b| {
            support::timed(b, &id, || service.list_accounts().expect("list").len())
        });
        group.finish();
    }

    {
        // The console itself: its real start (open, the app's first effects, one frame drawn
        // at 200x60 on ratatui's TestBackend), one frame, and one keystroke of the filter.
        let mut group = c.benchmark_group("tui");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let id = format!("tui/first_frame_200x60/{accounts}");
        group.bench_function(format!("first_frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || {
                let driver = console(&paths);
                draw(&driver)
            })
        });
        let driver = RefCell::new(console(&paths));
        let id = format!("tui/frame_200x60/{accounts}");
        group.bench_function(format!("frame_200x60/{accounts}"), |b| {
            support::timed(b, &id, || draw(&driver.borrow()))
        });
        press(&mut driver.borrow_mut(), KeyCode::Char('/'));
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
        group.finish();
    }

    let service = app::open(&paths, Config::default()).expect("open");
    let list = service.list_accounts().expect("list");
    drop(service);
    {
        let mut group = c.benchmark_group("filter_keystroke");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
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
    support::print_summary("store_scale", &[]);
    let _ = std::fs::remove_dir_all(&dir);
}

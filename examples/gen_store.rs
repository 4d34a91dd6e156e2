//! Builds the large fixture store for the scale figures of BENCHMARKS.md, and measures the TUI's
//! start on it in a fresh process (open the store, list every account), with peak RSS and store
//! size per account. A development tool: examples are never installed with the binary.
//!
//! ```text
//! cargo run --release --example gen_store -- generate DATA_DIR KEY_FILE N [--audit K] [--insert-threads T]
//! cargo run --release --example gen_store -- measure DATA_DIR KEY_FILE
//! cargo run --release --example gen_store -- breakdown DATA_DIR
//! ```
//!
//! `generate` writes N accounts with 2FA on through the `Store` trait (one `import_image`, or
//! `insert_account` from T threads with `--insert-threads`), spending one Argon2id hash in all.
//! Every account's password is `fixture password`; the shared TOTP secret and backup codes are
//! printed. `measure` opens the store as the faces do (`sparekey::app::open`, production config)
//! and calls `Service::list_accounts()`, the data the TUI needs for its first frame.
//! `breakdown` times the same start below the `Store` trait (sled open, one screenful, full
//! iteration, decoding), read-only, to show where the time goes.

#[path = "../benches/support/fixture.rs"]
mod fixture;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sparekey::app::{self, Paths};
use sparekey::core::service::Config;
use sparekey::core::store::Store;
use sparekey::store::sled_store::SledStore;

fn usage() -> ExitCode {
    eprintln!(
        "usage: gen_store generate DATA_DIR KEY_FILE N [--audit K] [--insert-threads T]\n       gen_store measure DATA_DIR KEY_FILE\n       gen_store breakdown DATA_DIR"
    );
    ExitCode::from(2)
}

fn kib(field: &str) -> String {
    fixture::proc_status_kib(field)
        .map_or_else(|| "?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<usize> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1)?.parse().ok()
    };
    match args.first().map(String::as_str) {
        Some("generate") if args.len() >= 4 => {
            let Ok(count) = args[3].replace('_', "").parse::<usize>() else {
                return usage();
            };
            let method = match flag("--insert-threads") {
                Some(threads) => fixture::Method::Insert { threads },
                None => fixture::Method::Import,
            };
            let audit = flag("--audit").unwrap_or(0);
            let (data_dir, key_file) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
            match fixture::generate(&data_dir, &key_file, count, audit, method) {
                Ok(g) => {
                    let (apparent, allocated) = fixture::disk_usage(&g.paths.store);
                    println!(
                        "generated {} accounts, {} audit events in {:.2} s ({method:?})",
                        g.accounts,
                        g.audit_events,
                        g.elapsed.as_secs_f64()
                    );
                    println!("store {}", g.paths.store.display());
                    println!(
                        "store size: {apparent} bytes apparent, {allocated} allocated; per account {:.0} B apparent, {:.0} B allocated",
                        apparent as f64 / count.max(1) as f64,
                        allocated as f64 / count.max(1) as f64
                    );
                    println!("peak RSS of the generator: {}", kib("VmHWM"));
                    println!("password of every account: {}", fixture::PASSWORD);
                    println!("TOTP secret of every account (base32): {}", g.totp_secret);
                    println!("backup codes (slot k is unused on account i when i % 8 <= k):");
                    for code in &g.codes {
                        println!("  {code}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("measure") if args.len() >= 3 => {
            let paths = match Paths::resolve(
                Some(PathBuf::from(&args[1])),
                Some(PathBuf::from(&args[2])),
            ) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rss_before = kib("VmHWM");
            let start = Instant::now();
            let service = match app::open(&paths, Config::default()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opened = start.elapsed();
            let list = match service.list_accounts() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let total = start.elapsed();
            let (apparent, allocated) = fixture::disk_usage(&paths.store);
            let n = list.len().max(1) as f64;
            println!("accounts listed: {}", list.len());
            println!("open store + service: {:.2} ms", opened.as_secs_f64() * 1e3);
            println!(
                "list_accounts: {:.2} ms",
                (total - opened).as_secs_f64() * 1e3
            );
            println!(
                "open + list (start, before drawing): {:.2} ms",
                total.as_secs_f64() * 1e3
            );
            println!(
                "peak RSS before opening: {rss_before}, after listing: {} (VmHWM)",
                kib("VmHWM")
            );
            println!(
                "store size: {apparent} B apparent, {allocated} B allocated; per account {:.0} B apparent, {:.0} B allocated",
                apparent as f64 / n,
                allocated as f64 / n
            );
            drop(service);
            // After the timed part: what the store would hold with no overhead at all.
            let store = match SledStore::open(&paths.store, app::LOCK_WAIT) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Records are read back checked, with the key they were tagged with.
            match app::key_file::read_key(&paths.key_file) {
                Ok(key) => drop(store.bind_key(&key.store_key())),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let sample: Vec<_> = list.iter().step_by((list.len() / 1000).max(1)).collect();
            let (mut record, mut facts) = (0usize, 0usize);
            for summary in &sample {
                if let Ok(Some(account)) = store.load_account(&summary.name) {
                    record += sparekey::store::encode(&account).len() + account.name.len();
                    facts += sparekey::store::encode(&account.facts()).len() + account.name.len();
                }
            }
            let k = sample.len().max(1);
            println!(
                "payload per account (postcard value + key, sample of {k}): record {} B, list facts {} B, total {} B",
                record / k,
                facts / k,
                (record + facts) / k
            );
            ExitCode::SUCCESS
        }
        Some("breakdown") if args.len() >= 2 => {
            // Where the start goes, below the Store trait (read-only, for the figures only).
            let store = PathBuf::from(&args[1]).join("store");
            let start = Instant::now();
            let db = match SledStore::raw_open(&store) {
                Ok(db) => db,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opened = start.elapsed();
            let facts = db.open_tree("account_facts").expect("facts tree");
            let t = Instant::now();
            let first_page: Vec<_> = facts.iter().take(60).collect();
            let page = t.elapsed();
            let t = Instant::now();
            let n = facts.iter().keys().count();
            let keys = t.elapsed();
            let t = Instant::now();
            let bytes: usize = facts
                .iter()
                .map(|e| e.map(|(_, v)| v.len()).unwrap_or(0))
                .sum();
            let values = t.elapsed();
            let t = Instant::now();
            let decoded: Vec<sparekey::core::account::AccountFacts> = facts
                .iter()
                .values()
                .filter_map(|v| postcard::from_bytes(&v.ok()?).ok())
                .collect();
            let decode = t.elapsed();
            let ms = |d: std::time::Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
            println!("sled open (16 MiB cache): {}", ms(opened));
            println!(
                "first 60 facts (one screen): {} ({} rows)",
                ms(page),
                first_page.len()
            );
            println!("iterate {n} fact keys: {}", ms(keys));
            println!("iterate {n} fact values ({bytes} B): {}", ms(values));
            println!("iterate + decode {} facts: {}", decoded.len(), ms(decode));
            println!("peak RSS: {}", kib("VmHWM"));
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

//! A whole `sparekey login` process (start, open the store, read the key file, password, second
//! factor, durable write and audit) against the Argon2id evaluations it cannot avoid with the
//! same parameters (production `HashParams::OWASP`): one for the password, and for a backup code
//! one more. The release-profile binary cargo builds for this bench is used
//! (`CARGO_BIN_EXE_sparekey`).
//!
//! Run: `cargo bench --bench login_process`. The store is a fresh one under
//! `target/sparekey-fixtures/`: 512 fixture accounts for TOTP logins (see
//! `benches/support/fixture.rs`; each can log in once per 30 s step, so the bench rotates them;
//! 512 covers a run's TOTP logins without waiting for the next step) and one account
//! enrolled through the CLI with 20 real backup codes (regenerated through the CLI, untimed,
//! with the last one as the step-up that regenerating needs). `SPAREKEY_BENCH_ACCOUNTS` sets the fixture size (default 512, at least 32).

#[path = "support/mod.rs"]
mod support;

#[path = "support/fixture.rs"]
mod fixture;

#[path = "support/login.rs"]
mod login;

use std::process::Command;
use std::time::Duration;

use criterion::Criterion;
use sparekey::core::argon_memory::ArgonMemory;
use sparekey::core::entropy::SeededEntropy;
use sparekey::core::password::{self, Binding, HashParams};

use login::{CODER, Cli, Logins, run_piped};

/// Set in a child process of this bench: verify the fixture password once against the PHC
/// string on its standard input and exit, the least any process that checks a password must
/// do (start, one Argon2id in fresh memory, exit).
const VERIFY_ONCE: &str = "SPAREKEY_BENCH_VERIFY_ONCE";
const FLOOR_SECRET: [u8; 32] = [7; 32];

struct Floor {
    phc: String,
    secret: [u8; 32],
}

impl Floor {
    fn new() -> Self {
        let secret = FLOOR_SECRET;
        let phc = password::hash_password(
            HashParams::OWASP,
            &secret,
            fixture::PASSWORD,
            &Binding::account("floor"),
            &mut SeededEntropy::new(1),
            &mut ArgonMemory::new(),
        );
        Self { phc, secret }
    }
    /// The password check: one Argon2id evaluation with the parameters in the PHC string, in
    /// fresh memory, as a process that hashes once does it.
    fn one(&self) -> bool {
        self.one_in(&mut ArgonMemory::new())
    }

    /// [`Floor::one`] in `memory`, which a previous evaluation may already have faulted in.
    fn one_in(&self, memory: &mut ArgonMemory) -> bool {
        let ok = password::verify_password(
            &self.secret,
            fixture::PASSWORD,
            &self.phc,
            &Binding::account("floor"),
            memory,
        );
        assert!(ok);
        ok
    }

    /// The password check and one backup-code digest, each in fresh memory.
    fn two(&self) -> bool {
        let digest = password::digest(
            HashParams::OWASP,
            &self.secret,
            b"0000111122223333",
            &[9; 16],
            Some(&Binding::code_set("floor", 1)),
            &mut ArgonMemory::new(),
        );
        std::hint::black_box(digest);
        self.one()
    }

    /// [`Floor::one`] in a process of its own (this bench's binary, see [`VERIFY_ONCE`]),
    /// started, fed and waited for the way [`Cli::run`] runs `sparekey`.
    fn one_in_a_process(&self) -> bool {
        let mut command = Command::new(std::env::current_exe().expect("the bench's own binary"));
        command.env(VERIFY_ONCE, "1");
        let out = run_piped(command, &format!("{}\n", self.phc));
        assert!(
            out.status.success(),
            "the verifying process failed: {out:?}"
        );
        true
    }
}

fn main() {
    if std::env::var_os(VERIFY_ONCE).is_some() {
        let mut phc = String::new();
        let read = std::io::stdin().read_line(&mut phc).is_ok();
        let ok = read
            && password::verify_password(
                &FLOOR_SECRET,
                fixture::PASSWORD,
                phc.trim(),
                &Binding::account("floor"),
                &mut ArgonMemory::new(),
            );
        std::process::exit(if ok { 0 } else { 1 });
    }
    let accounts = fixture::accounts_from_env(512).max(32);
    let dir = fixture::scratch_dir("login_process");
    let generated = fixture::generate_in(&dir, accounts).expect("generate the fixture");
    let cli = Cli::of(&generated.paths, None);
    let bench = Logins::new(cli, &generated);
    let floor = Floor::new();

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = support::configure(&mut c, "login_process", Duration::from_secs(2));
        group.bench_function("floor/argon2id_x1", |b| {
            support::timed(b, "floor/argon2id_x1", || floor.one())
        });
        group.bench_function("floor/argon2id_x2", |b| {
            support::timed(b, "floor/argon2id_x2", || floor.two())
        });
        group.bench_function("process/version", |b| {
            support::timed(b, "process/version", || bench.cli.ok(&["--version"], ""))
        });
        group.bench_function("process/codes_status", |b| {
            support::timed(b, "process/codes_status", || {
                bench.cli.ok(&["codes", "status", CODER, "--json"], "")
            })
        });
        group.bench_function("process/login_backup_code", |b| {
            support::timed_with_setup(
                b,
                "process/login_backup_code",
                || bench.next_backup(),
                |stdin| bench.login(CODER, &stdin),
            )
        });
        group.bench_function("process/login_totp", |b| {
            support::timed_with_setup(
                b,
                "process/login_totp",
                || bench.next_totp(),
                |(name, stdin)| bench.login(&name, &stdin),
            )
        });
        group.finish();
    }
    c.final_summary();
    support::print_summary("login_process (criterion groups, measured one after the other)");
    if !support::test_mode() {
        println!(
            "== login_process: paired ratios A/B (A and B alternated, the figures to quote) =="
        );
        let p = support::paired_with_setup(
            12,
            || bench.next_backup(),
            |stdin| bench.login(CODER, &stdin),
            || assert!(floor.two()),
        );
        support::print_paired("login process, backup code / 2 Argon2id", &p, Some(1.3));
        // More rounds than the backup-code pair: the figure here is a difference of a few ms
        // between two ~30 ms quantities on a machine whose speed drifts by more than that
        // (with 30 rounds, runs of one build gave 6.9 to 8.3 ms; with 60, still 7.3 to 9.9 ms;
        // the per-round differences spread over about ±2 ms, hence 150 rounds).
        // A third side splits it: a process that only verifies the password pays the start,
        // the exit and a first hash in fresh memory, as any process that checks a password
        // must; what the login costs beyond that process is sparekey's own share (the store,
        // the TOTP check, the durable write). The three alternate within each round.
        let t = three_way(
            150,
            || bench.next_totp(),
            |(name, stdin)| bench.login(&name, &stdin),
            || floor.one_in_a_process(),
            || floor.one(),
        );
        println!(
            "  {:<52} {:>7.3}  (A {:.2} ms / B {:.2} ms, median of {} rounds)",
            "login process, TOTP / 1 Argon2id",
            t.login_over_hash_ratio,
            t.login_ms,
            t.hash_ms,
            t.rounds
        );
        println!(
            "  {:<52} {:>7.2} ms (median of the per-round differences)",
            "login process, TOTP, beyond the password hash", t.login_beyond_hash_ms
        );
        // Medians of their own per-round differences, so they need not add up to the above.
        println!(
            "  {:<52} {:>7.2} ms (median of the per-round differences)",
            "verify-only process, beyond the password hash", t.process_beyond_hash_ms
        );
        println!(
            "  {:<52} {:>7.2} ms (median of the per-round differences; sparekey's own share)",
            "login process, TOTP, beyond a verify-only process", t.login_beyond_process_ms
        );
        // What a second evaluation in the same memory (a backup-code login's code, after its
        // password) is spared: the fresh memory's page faults. Both sides wipe.
        let mut reused = ArgonMemory::new();
        let p = support::paired(30, || floor.one(), || floor.one_in(&mut reused));
        println!(
            "  {:<52} {:>7.2} ms (median of the per-round differences)",
            "one password hash, fresh memory beyond reused",
            p.difference_secs * 1e3
        );
        let p = support::paired(
            30,
            || bench.cli.ok(&["codes", "status", CODER, "--json"], ""),
            || bench.cli.ok(&["--version"], ""),
        );
        println!(
            "  {:<52} {:>7.2} ms (median of the per-round differences; the store's share)",
            "codes status process beyond --version",
            p.difference_secs * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The medians of [`three_way`]; differences are medians of the per-round differences.
struct ThreeWay {
    login_ms: f64,
    hash_ms: f64,
    login_over_hash_ratio: f64,
    login_beyond_hash_ms: f64,
    process_beyond_hash_ms: f64,
    login_beyond_process_ms: f64,
    rounds: usize,
}

/// Times a login (after an untimed `setup`), a verify-only process and an in-process hash,
/// all three in each round, in each of the six orders in turn, so that no side always runs
/// first, or always before another.
fn three_way<S, A, B, C>(
    rounds: usize,
    mut setup: impl FnMut() -> S,
    mut login: impl FnMut(S) -> A,
    mut process: impl FnMut() -> B,
    mut hash: impl FnMut() -> C,
) -> ThreeWay {
    fn time<T>(f: impl FnOnce() -> T) -> f64 {
        let start = std::time::Instant::now();
        let output = std::hint::black_box(f());
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        drop(output);
        elapsed
    }
    let mut per_round = Vec::new();
    for round in 0..rounds {
        let input = setup();
        let mut input = Some(input);
        let mut times = [0.0; 3];
        const ORDERS: [[usize; 3]; 6] = [
            [0, 1, 2],
            [2, 1, 0],
            [1, 2, 0],
            [0, 2, 1],
            [2, 0, 1],
            [1, 0, 2],
        ];
        for side in ORDERS[round % ORDERS.len()] {
            times[side] = match side {
                0 => time(|| login(input.take().expect("one login per round"))),
                1 => time(&mut process),
                _ => time(&mut hash),
            };
        }
        per_round.push(times);
    }
    let median =
        |f: &dyn Fn(&[f64; 3]) -> f64| support::median_f64(per_round.iter().map(f).collect());
    ThreeWay {
        login_ms: median(&|t| t[0]),
        hash_ms: median(&|t| t[2]),
        login_over_hash_ratio: median(&|t| t[0] / t[2]),
        login_beyond_hash_ms: median(&|t| t[0] - t[2]),
        process_beyond_hash_ms: median(&|t| t[1] - t[2]),
        login_beyond_process_ms: median(&|t| t[0] - t[1]),
        rounds,
    }
}

//! Shared by the benches: a tally of the mean time per iteration of each benchmark (every timed
//! iteration criterion ran, warm-up included), so a bench can print the ratios its targets are
//! stated in at the end of one run. Ratios taken within one run are robust to a machine shared
//! with other builds; the absolute times are less so.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Bencher;

static TALLY: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Times `iters` calls of `f` for criterion and adds them to the tally under `id`.
pub fn timed<T>(b: &mut Bencher<'_>, id: &str, mut f: impl FnMut() -> T) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        let elapsed = start.elapsed();
        record(id, elapsed, iters);
        elapsed
    });
}

/// Like [`timed`], but `setup` runs untimed before every call of `f`.
pub fn timed_with_setup<S, T>(
    b: &mut Bencher<'_>,
    id: &str,
    mut setup: impl FnMut() -> S,
    mut f: impl FnMut(S) -> T,
) {
    b.iter_custom(|iters| {
        let mut elapsed = Duration::ZERO;
        for _ in 0..iters {
            let input = setup();
            let start = Instant::now();
            std::hint::black_box(f(input));
            elapsed += start.elapsed();
        }
        record(id, elapsed, iters);
        elapsed
    });
}

pub fn record(id: &str, elapsed: Duration, iters: u64) {
    let mut tally = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    let entry = tally.entry(id.to_string()).or_default();
    entry.0 += elapsed;
    entry.1 += iters;
}

/// Mean time per iteration of `id`, if it ran in this process.
pub fn mean(id: &str) -> Option<Duration> {
    let tally = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    tally
        .get(id)
        .filter(|(_, n)| *n > 0)
        .map(|(d, n)| d.div_f64(*n as f64))
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Prints every tallied mean, then each ratio `a / b` with its target (`None`: informative).
pub fn print_summary(title: &str, ratios: &[(&str, &str, &str, Option<f64>)]) {
    println!("\n== {title}: mean per iteration (all timed iterations of this run) ==");
    let tally = TALLY.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (id, (d, n)) in &tally {
        if *n > 0 {
            println!(
                "  {id:<48} {:>12}  ({n} iterations)",
                fmt_duration(d.div_f64(*n as f64))
            );
        }
    }
    println!("== {title}: ratios ==");
    for (label, a, b, target) in ratios {
        let (Some(ta), Some(tb)) = (mean(a), mean(b)) else {
            println!("  {label:<48} (not run: filtered out)");
            continue;
        };
        let ratio = ta.as_secs_f64() / tb.as_secs_f64();
        match target {
            Some(max) => {
                let verdict = if ratio <= *max { "MET" } else { "NOT MET" };
                println!("  {label:<48} {ratio:>7.3}   target <= {max}: {verdict}");
            }
            None => println!("  {label:<48} {ratio:>7.3}"),
        }
    }
}

/// The result of [`paired`]: medians of A, of B, of the per-round ratio A/B and of the
/// per-round difference A - B (in seconds, negative when A is faster).
#[derive(Debug, Clone, Copy)]
pub struct Paired {
    pub a: Duration,
    pub b: Duration,
    pub ratio: f64,
    pub difference_secs: f64,
    pub rounds: usize,
}

pub fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times A and B alternately (ABBA order, so neither always runs first) for `rounds` rounds
/// and returns the medians and the median of the per-round ratios A/B. On a machine shared with
/// other work, load that drifts over seconds hits both sides of a round alike, which separate
/// criterion groups measured a minute apart do not guarantee.
pub fn paired<A, B>(rounds: usize, mut a: impl FnMut() -> A, b: impl FnMut() -> B) -> Paired {
    paired_with_setup(rounds, || (), |()| a(), b)
}

/// Like [`paired`], with an untimed `setup` before each round whose result A consumes (a fresh
/// input for a process that can use each input once).
pub fn paired_with_setup<S, A, B>(
    rounds: usize,
    mut setup: impl FnMut() -> S,
    mut a: impl FnMut(S) -> A,
    mut b: impl FnMut() -> B,
) -> Paired {
    let (mut ta, mut tb, mut ratios, mut differences) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let input = setup();
        let time_a = || {
            let start = Instant::now();
            drop(std::hint::black_box(a(input)));
            start.elapsed()
        };
        let mut time_b = || {
            let start = Instant::now();
            drop(std::hint::black_box(b()));
            start.elapsed()
        };
        let (da, db) = if round % 2 == 0 {
            let da = time_a();
            (da, time_b())
        } else {
            let db = time_b();
            (time_a(), db)
        };
        ta.push(da.as_secs_f64());
        tb.push(db.as_secs_f64());
        ratios.push(da.as_secs_f64() / db.as_secs_f64());
        differences.push(da.as_secs_f64() - db.as_secs_f64());
    }
    Paired {
        a: Duration::from_secs_f64(median_f64(ta)),
        b: Duration::from_secs_f64(median_f64(tb)),
        ratio: median_f64(ratios),
        difference_secs: median_f64(differences),
        rounds,
    }
}

/// Prints one paired result against an optional target (`ratio <= max`).
pub fn print_paired(label: &str, p: &Paired, target: Option<f64>) {
    let verdict = match target {
        Some(max) if p.ratio <= max => format!("target <= {max}: MET"),
        Some(max) => format!("target <= {max}: NOT MET"),
        None => String::new(),
    };
    println!(
        "  {label:<52} {:>7.3}  (A {} / B {}, median of {} ABBA rounds)  {verdict}",
        p.ratio,
        fmt_duration(p.a),
        fmt_duration(p.b),
        p.rounds
    );
}

/// Whether criterion was asked only to check that benches run (`--test`, or `cargo test`):
/// skip the extra paired rounds then.
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test" || a == "--list")
}

//! Shared by the benches: a tally of the mean time per iteration of each benchmark (every timed
//! iteration criterion ran, warm-up included), printed at the end of one run by
//! [`print_summary`]; ABBA-paired timings of two closures ([`paired`]), whose per-round ratios
//! are what the benches' targets are stated in (ratios taken within one run are robust to a
//! machine shared with other builds; the absolute times are less so); the criterion group
//! settings every bench uses ([`configure`]); and [`test_mode`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, SamplingMode};

static TALLY: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Times `iters` calls of `f` for criterion and adds them to the tally under `id`.
pub fn timed<T>(b: &mut Bencher<'_>, id: &str, mut f: impl FnMut() -> T) {
    b.iter_custom(|iters| {
        // Each output is dropped after the clock stops (its teardown is not what is timed);
        // they are dropped one by one, so only one is alive at a time.
        let mut elapsed = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let output = std::hint::black_box(f());
            elapsed += start.elapsed();
            drop(output);
        }
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
            let output = std::hint::black_box(f(input));
            elapsed += start.elapsed();
            drop(output);
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

/// Prints every tallied mean.
pub fn print_summary(title: &str) {
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
}

/// A criterion group with the settings every bench uses: 10 samples, flat sampling (each
/// sample runs the same number of iterations: the benchmarks are milliseconds long), 500 ms of
/// warm-up and `measurement` of measurement.
pub fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
    measurement: Duration,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement);
    group
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
        // Each output is dropped after the clock stops: its teardown is not what is timed.
        let time_a = || {
            let start = Instant::now();
            let output = std::hint::black_box(a(input));
            let elapsed = start.elapsed();
            drop(output);
            elapsed
        };
        let mut time_b = || {
            let start = Instant::now();
            let output = std::hint::black_box(b());
            let elapsed = start.elapsed();
            drop(output);
            elapsed
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

/// Whether criterion runs the benches only as a check that they run, by criterion 0.8's own
/// rule: without `--bench` (as `cargo test --benches` runs them; `cargo bench` passes it), or
/// with `--test` or `--list`. Skip the extra paired rounds and heavy fixtures then.
pub fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test" || a == "--list")
}

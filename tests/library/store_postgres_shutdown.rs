//! Issue 15's server half: a PostgreSQL server stopped with `pg_ctl stop -m immediate` while
//! real `sparekey login` processes redeem backup codes and TOTP codes through it, then started
//! again (crash recovery). Every login ends accepted or with one clear store error, never hangs;
//! an accepted code is spent in the database with its events; no spend lacks its events; no code
//! is accepted twice; failure counts are never given back. The server is a private cluster of
//! this test's own (initdb into a temporary directory, a Unix socket only, no TCP): stopping
//! the cluster the other PostgreSQL tests share would fail them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store_postgres::key_file_service;
use crate::support::*;
use sparekey::core::audit::{AuditEvent, AuditKind, LoginMethod};
use sparekey::core::clock::ManualClock;
use sparekey::core::store::Store;
use sparekey::core::totp::TotpSecret;
use sparekey::store::location::{PostgresTarget, StoreLocation};
use sparekey::store::postgres::PostgresStore;

/// The newest PostgreSQL server's binaries, as `.ci/postgres` finds them.
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A private cluster in a temporary directory, on a Unix socket in that directory only. The
/// server refuses to run as root: then the directory belongs to `nobody` and every server
/// command runs as `nobody`, from inside the directory (it cannot enter root's working
/// directory). Dropped, it stops the server and removes the directory, also when the test fails.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_nobody: bool,
}

impl Cluster {
    fn create(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let as_nobody = is_root();
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        if as_nobody {
            let status = Command::new("chown")
                .args(["-R", "nobody"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown nobody {}", dir.path().display());
        }
        let cluster = Cluster {
            bin,
            dir,
            as_nobody,
        };
        let data = cluster.data();
        let out = cluster
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "sparekey",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", text(&out));
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// `program` of the server's binaries, as the cluster's owner, in the cluster's directory.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_nobody {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "nobody", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn start(&self) {
        // No TCP at all (listen_addresses empty): trust authentication admits only who can
        // enter the socket's directory.
        // fsync off: the test stops the server's processes, not the machine, so what reached
        // the kernel survives either way; with fsync on, every start after a crash first syncs
        // the whole data directory (2-4 s here, most of the test's time).
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=40 \
             -c shared_buffers=16MB -c fsync=off",
            self.socket().display()
        );
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, without a checkpoint;
    /// the next start recovers from the write-ahead log.
    fn stop_immediate(&self) -> std::io::Result<Output> {
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output()
    }

    /// The store location of the cluster's `postgres` database.
    fn url(&self) -> String {
        format!(
            "host={} user=sparekey dbname=postgres application_name=sparekey_shutdown",
            self.socket().display()
        )
    }

    fn target(&self) -> PostgresTarget {
        let StoreLocation::Postgres(target) = StoreLocation::parse(&self.url()).unwrap() else {
            panic!("not a PostgreSQL location: {}", self.url());
        };
        *target
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self.stop_immediate();
        }
        // The directory itself goes with `self.dir`.
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A small deterministic generator for the shutdown moments (xorshift64*); its seed is printed,
/// and `SPAREKEY_PG_SHUTDOWN_SEED` replays a run.
struct Moments(u64);

impl Moments {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

/// What every login process gets: the private cluster's store, the key file, a config whose
/// throttle never closes during the test (counts are checked, not their delays), and a private
/// home.
struct Env {
    url: String,
    key_file: PathBuf,
    config: PathBuf,
    home: PathBuf,
}

/// One login process: its account, what it typed, and how it ended.
struct Login {
    account: String,
    code: String,
    child: Option<Child>,
    outcome: Option<(i32, String, String)>,
}

impl Drop for Login {
    fn drop(&mut self) {
        // A failing test leaves no process behind.
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `sparekey login account`, which waits for its password and code on stdin.
fn spawn_login(env: &Env, account: &str, code: &str) -> Login {
    let child = Command::new(env!("CARGO_BIN_EXE_sparekey"))
        .args(["login", account])
        .env("SPAREKEY_STORE", &env.url)
        .env("SPAREKEY_KEY_FILE", &env.key_file)
        .env("SPAREKEY_CONFIG", &env.config)
        .env("HOME", &env.home)
        .env_remove("SPAREKEY_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Login {
        account: account.to_string(),
        code: code.to_string(),
        child: Some(child),
        outcome: None,
    }
}

fn type_input(login: &mut Login) {
    let child = login.child.as_mut().unwrap();
    let _ = writeln!(child.stdin.take().unwrap(), "{PASSWORD}\n{}", login.code);
}

/// Waits for every login until `deadline`; one still running then is a hang, and fails the test.
fn finish(logins: &mut [Login], deadline: Instant) {
    for login in logins.iter_mut() {
        let mut child = login.child.take().unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sparekey login {} hung after the server's shutdown",
                    login.account
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        login.outcome = Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
}

/// Runs one login per `(account, code)` at once, the server up throughout; their exit codes.
fn logins_now(env: &Env, attempts: &[(String, String)]) -> Vec<(i32, String)> {
    let mut logins: Vec<Login> = attempts
        .iter()
        .map(|(account, code)| spawn_login(env, account, code))
        .collect();
    logins.iter_mut().for_each(type_input);
    finish(&mut logins, Instant::now() + Duration::from_secs(60));
    logins
        .iter()
        .map(|l| {
            let (code, out, err) = l.outcome.clone().unwrap();
            (code, format!("{} {}: {out}{err}", l.account, l.code))
        })
        .collect()
}

/// An ended login's outcome is one of the allowed ones: accepted (0), refused (1, only where
/// `may_be_refused`: a code another login raced for, or a wrong one), or one store error (4)
/// on one line that says the connection was lost or could not be made. Never a panic, never
/// "accepted" beside an error.
fn check_outcome(login: &Login, may_be_refused: bool) -> i32 {
    let (code, out, err) = login.outcome.as_ref().unwrap();
    let shown = format!(
        "{} with {}: exit {code}, stdout {out:?}, stderr {err:?}",
        login.account, login.code
    );
    assert!(!err.contains("panicked"), "{shown}");
    match code {
        0 => assert!(out.starts_with("accepted: "), "{shown}"),
        1 if may_be_refused => {
            assert!(!out.contains("accepted"), "{shown}");
            assert_eq!(err.lines().count(), 1, "{shown}");
        }
        4 => {
            assert!(out.is_empty(), "{shown}");
            assert_eq!(err.lines().count(), 1, "not one line: {shown}");
            assert!(err.starts_with("sparekey: "), "{shown}");
            assert!(!err.contains("accepted"), "{shown}");
            assert!(
                err.contains("lost the connection") || err.contains("cannot connect"),
                "{shown}"
            );
        }
        _ => panic!("unexpected outcome: {shown}"),
    }
    *code
}

fn count(events: &[AuditEvent], wanted: impl Fn(&AuditKind) -> bool) -> usize {
    events.iter().filter(|e| wanted(&e.kind)).count()
}

fn login_succeeded(method: LoginMethod) -> impl Fn(&AuditKind) -> bool {
    move |k| matches!(k, AuditKind::LoginSucceeded { method: m } if *m == method)
}

fn failed_attempt(k: &AuditKind) -> bool {
    matches!(k, AuditKind::FailedAttempt { .. })
}

/// How many accounts of a round each get one login spending one backup code: more logins in
/// flight make a shutdown more likely to land inside a transaction.
const SINGLES: usize = 4;

/// The accounts of one round, all fresh, so a round's outcome is read from its own accounts.
struct RoundAccounts {
    /// Two logins race for its first backup code; one more spends its second.
    raced: (String, Vec<String>),
    /// One login each spends its first backup code.
    singles: Vec<(String, Vec<String>)>,
    /// Two logins race with one authenticator code.
    totp: (String, TotpSecret),
}

/// One login of a round's plan.
struct Planned {
    account: String,
    code: String,
    /// Refused is a right answer: a code another login races for, or a wrong one.
    refusable: bool,
}

/// A backup code a round's logins try to spend: whose, which slot, and which logins try.
struct Spend {
    account: String,
    slot: usize,
    code: String,
    by: Vec<usize>,
}

/// The logins of one round and the backup codes they try to spend: two race for one code of
/// `raced`, one more spends its next code, one spends a code of each single; two race with one
/// authenticator code (at [`totp_logins`]); the last sends a wrong code (a code of a single
/// that is never sent) to `wrong`.
fn plan(acc: &RoundAccounts, wrong: &str) -> (Vec<Planned>, Vec<Spend>) {
    let login = |account: &str, code: &str, refusable: bool| Planned {
        account: account.to_string(),
        code: code.to_string(),
        refusable,
    };
    let (raced, raced_codes) = &acc.raced;
    let mut logins = vec![
        login(raced, &raced_codes[0], true),
        login(raced, &raced_codes[0], true),
        login(raced, &raced_codes[1], false),
    ];
    let spend = |account: &str, slot: usize, code: &str, by: Vec<usize>| Spend {
        account: account.to_string(),
        slot,
        code: code.to_string(),
        by,
    };
    let mut spends = vec![
        spend(raced, 0, &raced_codes[0], vec![0, 1]),
        spend(raced, 1, &raced_codes[1], vec![2]),
    ];
    for (name, codes) in &acc.singles {
        spends.push(spend(name, 0, &codes[0], vec![logins.len()]));
        logins.push(login(name, &codes[0], false));
    }
    let (t, secret) = &acc.totp;
    let code = code_for(secret, unix_now());
    logins.push(login(t, &code, true));
    logins.push(login(t, &code, true));
    logins.push(login(wrong, &acc.singles[0].1[9], true));
    (logins, spends)
}

/// Where a plan's two authenticator logins are, and its wrong code's.
fn totp_logins() -> [usize; 2] {
    [3 + SINGLES, 4 + SINGLES]
}

fn wrong_login() -> usize {
    5 + SINGLES
}

/// Every used slot of `account` has exactly one BackupCodeUsed event and the account exactly
/// one backup-code LoginSucceeded per used slot; no event names an unused slot. Returns the
/// used slots.
fn used_slots_match_events(store: &PostgresStore, account: &str) -> Vec<bool> {
    let set = store.load_account(account).unwrap().unwrap().codes.unwrap();
    let events = store.audit_events(Some(account), 10_000).unwrap();
    let used: Vec<bool> = set.slots.iter().map(|s| s.used_at.is_some()).collect();
    for (slot, used) in used.iter().enumerate() {
        let spent = count(
            &events,
            |k| matches!(k, AuditKind::BackupCodeUsed { slot: s, .. } if *s as usize == slot),
        );
        assert_eq!(
            spent,
            usize::from(*used),
            "{account} slot {slot} (used: {used}): {events:#?}"
        );
    }
    assert_eq!(
        count(&events, login_succeeded(LoginMethod::BackupCode)),
        used.iter().filter(|u| **u).count(),
        "{account}: {events:#?}"
    );
    used
}

/// Records an accepted code, failing if it was accepted before.
fn accept_once(accepted: &mut Vec<(String, String)>, account: &str, code: &str, when: &str) {
    let pair = (account.to_string(), code.to_string());
    assert!(
        !accepted.contains(&pair),
        "accepted twice: {pair:?} ({when})"
    );
    accepted.push(pair);
}

#[test]
fn server_shut_down_mid_login_never_accepts_a_code_twice_or_splits_a_spend() {
    let Some(bin) = server_bin() else {
        skip("no PostgreSQL server binaries (Debian's postgresql package)");
        return;
    };
    let rounds = rounds(
        "PostgreSQL server shutdowns mid-login",
        "SPAREKEY_PG_SHUTDOWNS",
        3,
        12,
    );
    let seed = std::env::var("SPAREKEY_PG_SHUTDOWN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut moments = Moments(seed);
    let started = Instant::now();
    let cluster = Cluster::create(bin);
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        url: cluster.url(),
        key_file: dir.path().join("key"),
        config: dir.path().join("sparekey.toml"),
        home: dir.path().to_path_buf(),
    };
    std::fs::write(
        &env.config,
        "[throttle]\nfree_failures = 98\nlock_after = 99\nbase_delay_secs = 1\nmax_delay_secs = 1\n",
    )
    .unwrap();

    // `w` gets one wrong code a round, so its failure count only ever grows.
    let wrong_account = "w".to_string();
    let mut accounts: Vec<RoundAccounts> = {
        let clock = Arc::new(ManualClock::new(T0));
        let service = key_file_service(&cluster.target(), &env.key_file, &clock, 31);
        enrolled(&service, &clock, &wrong_account);
        // One set more, for the burst that measures how long the logins take.
        (0..=rounds)
            .map(|r| {
                let raced = format!("b{r}");
                let raced_codes = enrolled(&service, &clock, &raced).1;
                let singles = (0..SINGLES)
                    .map(|k| {
                        let name = format!("c{r}_{k}");
                        let codes = enrolled(&service, &clock, &name).1;
                        (name, codes)
                    })
                    .collect();
                // Confirmed with the previous step's code, so the current step is still free
                // for the logins (each enrollment moves the clock a step on).
                let now = unix_now();
                clock.set(now - now % 30 - 30);
                let t = format!("t{r}");
                let secret = enrolled(&service, &clock, &t).0;
                RoundAccounts {
                    raced: (raced, raced_codes),
                    singles,
                    totp: (t, secret),
                }
            })
            .collect()
    };

    // A burst with the server up throughout: each race has one winner, the other codes are
    // accepted, the wrong one refused; its time is the window the shutdowns fall in.
    let warm = accounts.pop().unwrap();
    let (warm_plan, _) = plan(&warm, &wrong_account);
    let attempts: Vec<(String, String)> = warm_plan
        .iter()
        .map(|p| (p.account.clone(), p.code.clone()))
        .collect();
    let burst = Instant::now();
    let outcomes = logins_now(&env, &attempts);
    let window = burst.elapsed().as_millis() as u64;
    let codes: Vec<i32> = outcomes.iter().map(|(code, _)| *code).collect();
    let [t1, t2] = totp_logins();
    assert!(
        [[0, 1], [1, 0]].contains(&[codes[0], codes[1]])
            && codes[2..t1].iter().all(|c| *c == 0)
            && [[0, 1], [1, 0]].contains(&[codes[t1], codes[t2]])
            && codes[wrong_login()] == 1,
        "with the server up: {outcomes:#?}"
    );
    let (mut wrong_logins, mut wrong_refused) = (1, 1);

    let mut accepted_codes: Vec<(String, String)> = Vec::new();
    let (mut cut, mut cut_mid_session, mut accepted, mut refused) = (0, 0, 0, 0);
    let (mut accepted_after, mut lost_reports) = (0, 0);
    let mut moments_ms = Vec::new();
    for (round, acc) in accounts.iter().enumerate() {
        let (plan, spends) = plan(acc, &wrong_account);
        let mut logins: Vec<Login> = plan
            .iter()
            .map(|p| spawn_login(&env, &p.account, &p.code))
            .collect();
        // Every process is running before any gets its input, so the logins overlap. Their
        // inputs are spread over half a burst's time, so that at the shutdown, a random moment
        // of a burst's time, they are at different points of a login rather than all at one.
        let moment = moments.below(window + 1);
        moments_ms.push(moment);
        let inputs: Vec<_> = logins
            .iter_mut()
            .map(|l| {
                (
                    l.child.as_mut().unwrap().stdin.take().unwrap(),
                    l.code.clone(),
                )
            })
            .collect();
        let stagger = window / 2 / inputs.len() as u64;
        let start = Instant::now();
        let stopped = std::thread::scope(|s| {
            s.spawn(|| {
                for (i, (mut stdin, code)) in inputs.into_iter().enumerate() {
                    let due = start + Duration::from_millis(stagger * i as u64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let _ = writeln!(stdin, "{PASSWORD}\n{code}");
                }
            });
            std::thread::sleep(Duration::from_millis(moment));
            cluster.stop_immediate().unwrap()
        });
        assert!(stopped.status.success(), "pg_ctl stop: {}", text(&stopped));
        // The store's connect, statement and lock timeouts (5 s, 10 s, 5 s) bound every login.
        finish(&mut logins, Instant::now() + Duration::from_secs(30));
        let codes: Vec<i32> = logins
            .iter()
            .zip(&plan)
            .map(|(login, p)| check_outcome(login, p.refusable))
            .collect();
        cluster.start();

        // What the logins reported against what the database holds after recovery.
        let store = PostgresStore::open(&cluster.target(), false).unwrap();
        let key = sparekey::app::key_file::read_key(&env.key_file).unwrap();
        store.bind_key(&key.store_key()).unwrap();
        let when = format!("round {round}, exits {codes:?}");
        for (login, code) in logins.iter().zip(&codes) {
            match code {
                0 => {
                    accepted += 1;
                    accept_once(&mut accepted_codes, &login.account, &login.code, &when);
                }
                1 => refused += 1,
                _ => {
                    cut += 1;
                    let err = &login.outcome.as_ref().unwrap().2;
                    cut_mid_session += usize::from(err.contains("lost the connection"));
                }
            }
        }
        // Backup codes. Reported accepted: spent. Spent: reported accepted, or the report was
        // cut off. Never accepted by both racers. Only the codes sent were spent.
        let mut used = std::collections::BTreeMap::new();
        for spend in &spends {
            let slots = used
                .entry(spend.account.clone())
                .or_insert_with(|| used_slots_match_events(&store, &spend.account));
            let spent = slots[spend.slot];
            let reported = spend.by.iter().filter(|i| codes[**i] == 0).count();
            let lost = spend.by.iter().any(|i| codes[*i] == 4);
            assert!(
                reported <= 1,
                "{when}: slot {} of {}",
                spend.slot,
                spend.account
            );
            assert!(
                (reported == 0 || spent) && (!spent || reported == 1 || lost),
                "{when}: slot {} of {} spent: {spent}",
                spend.slot,
                spend.account
            );
            lost_reports += usize::from(spent && reported == 0);
        }
        for (account, slots) in &used {
            for (slot, spent) in slots.iter().enumerate() {
                let sent = spends
                    .iter()
                    .any(|s| &s.account == account && s.slot == slot);
                assert!(
                    sent || !spent,
                    "{when}: slot {slot} of {account} spent, never sent"
                );
            }
        }
        // The authenticator code: at most one acceptance, and a login recorded exactly when
        // one was reported (or the report was cut off).
        let t = &acc.totp.0;
        let t_events = store.audit_events(Some(t), 10_000).unwrap();
        let t_logins = count(&t_events, login_succeeded(LoginMethod::Totp));
        let t_accepted = [t1, t2].iter().filter(|i| codes[**i] == 0).count();
        let t_lost = [t1, t2].iter().any(|i| codes[*i] == 4);
        assert!(
            t_accepted <= 1 && t_logins >= t_accepted && t_logins <= 1,
            "{when}: {t_events:#?}"
        );
        assert!(t_logins == t_accepted || t_lost, "{when}: {t_events:#?}");
        lost_reports += t_logins - t_accepted;
        // Refusals: each one reported was recorded first (a recorded one may have lost its
        // report).
        for (account, indices) in [(&acc.raced.0, vec![0, 1, 2]), (t, vec![t1, t2])] {
            let events = store.audit_events(Some(account), 10_000).unwrap();
            let recorded = count(&events, failed_attempt);
            let reported = indices.iter().filter(|i| codes[**i] == 1).count();
            let lost = indices.iter().filter(|i| codes[**i] == 4).count();
            assert!(
                recorded >= reported && recorded <= reported + lost,
                "{when}, {account}: {events:#?}"
            );
        }
        // The wrong code: refused or cut, never accepted; its count is never given back.
        assert_ne!(
            codes[wrong_login()],
            0,
            "{when}: the wrong code was accepted"
        );
        wrong_logins += 1;
        wrong_refused += usize::from(codes[wrong_login()] == 1);
        let w = store.load_account(&wrong_account).unwrap().unwrap();
        let w_events = store.audit_events(Some(&wrong_account), 10_000).unwrap();
        let w_failed = count(&w_events, failed_attempt);
        assert!(
            w_failed >= wrong_refused && w_failed <= wrong_logins,
            "{when}: {w_failed} failures recorded, {wrong_refused} refusals seen"
        );
        let counted = w.failures.consecutive as usize;
        assert!(
            counted >= w_failed && counted <= wrong_logins,
            "{when}: count {counted} with {w_failed} failures recorded in {wrong_logins} logins"
        );

        // After the restart, with the server up: a spent code is refused, an unspent one works
        // (nothing half-done remains), and an accepted authenticator code is refused.
        let mut again: Vec<(String, String)> = spends
            .iter()
            .map(|s| (s.account.clone(), s.code.clone()))
            .collect();
        let mut works: Vec<bool> = spends.iter().map(|s| !used[&s.account][s.slot]).collect();
        if t_logins == 1 {
            again.push((t.clone(), plan[t1].code.clone()));
            works.push(false);
        }
        let outcomes = logins_now(&env, &again);
        for (((account, code), (exit, shown)), works) in again.iter().zip(&outcomes).zip(works) {
            assert_eq!(*exit, if works { 0 } else { 1 }, "{when}, again: {shown}");
            if *exit == 0 {
                accepted_after += 1;
                accept_once(&mut accepted_codes, account, code, &when);
            }
        }
        for account in used.keys() {
            used_slots_match_events(&store, account);
        }
    }
    notice(&format!(
        "{rounds} shutdowns at {moments_ms:?} ms of a {window} ms burst (seed {seed}): \
         {accepted} logins accepted, {refused} refused, {cut} cut off ({cut_mid_session} \
         mid-session, {lost_reports} of them after their code was spent); after the restarts \
         {accepted_after} unspent codes accepted; {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // Not vacuous: the shutdowns did cut logins off, and logins did get through.
    assert!(cut >= 1, "no login was cut off by a shutdown");
    assert!(accepted + accepted_after >= 1, "no login was accepted");
}

//! Crash safety: the real binary is SIGKILLed at random moments while it logs in with backup
//! codes, records failures and regenerates sets, many times. After every kill the store
//! is opened and checked: it opens; a code reported accepted is never accepted again; used
//! slots never become unused; remaining = total - used; a set is either the old one or a whole
//! new one; the failure counter never goes backwards except through a success or an unlock.
//!
//! Every run hashes with the real OWASP parameters (the binary has no cheaper mode), so the
//! number of kills is 200 with `SPAREKEY_FULL_TESTS=1` (CI) and 20 elsewhere;
//! `SPAREKEY_CRASH_ITERATIONS` sets it. The count used is printed.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sparekey::core::account::Account;
use sparekey::core::audit::AuditKind;
use sparekey::core::entropy::{Entropy, SeededEntropy};
use sparekey::core::store::Store;
use sparekey::core::totp::{TotpParams, TotpSecret, code_at};

use crate::support::process::isolated_env;
use crate::support::{self, PASSWORD};

struct Harness {
    dir: tempfile::TempDir,
}

impl Harness {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparekey"));
        cmd.args(args)
            .arg("--json")
            .envs(isolated_env(self.dir.path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(&self, args: &[&str], input: &str) -> Child {
        let mut child = self.command(args).spawn().expect("spawn sparekey");
        // The child may already be dead when a kill lands early: a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        child
    }

    /// Runs to completion; returns (exit code, stdout).
    fn run(&self, args: &[&str], input: &str) -> (i32, String) {
        let out = self.spawn(args, input).wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Runs and SIGKILLs after `delay` if still running; returns stdout so far and whether the
    /// kill landed.
    fn run_killed(&self, args: &[&str], input: &str, delay: Duration) -> (String, bool) {
        let mut child = self.spawn(args, input);
        let deadline = Instant::now() + delay;
        let mut finished = false;
        while Instant::now() < deadline && !finished {
            finished = child.try_wait().unwrap().is_some();
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), !finished)
    }

    /// The slots of alice's `BackupCodeUsed` events, oldest first.
    fn spent_slot_events(&self) -> Vec<u32> {
        let store = support::open_store(&self.data_dir().join("store"))
            .unwrap_or_else(|e| panic!("the store must always open after a kill: {e}"));
        store
            .audit_events(Some("alice"), usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                AuditKind::BackupCodeUsed { slot, .. } => Some(slot),
                _ => None,
            })
            .collect()
    }

    fn account(&self) -> Account {
        let store =
            support::open_store_keyed(&self.data_dir().join("store"), &self.dir.path().join("key"))
                .unwrap_or_else(|e| panic!("the store must always open after a kill: {e}"));
        store
            .load_account("alice")
            .unwrap()
            .expect("the account survives")
    }
}

fn codes_of(json: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(json).ok()?;
    Some(
        v["codes"]
            .as_array()?
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect(),
    )
}

fn accepted(json: &str) -> bool {
    serde_json::from_str::<Value>(json).is_ok_and(|v| v["result"] == "accepted")
}

fn random(entropy: &mut SeededEntropy, below: u64) -> u64 {
    let mut b = [0u8; 8];
    entropy.fill(&mut b);
    u64::from_le_bytes(b) % below.max(1)
}

fn set_up(h: &Harness) -> Vec<String> {
    assert_eq!(
        h.run(&["account", "add", "alice"], &format!("{PASSWORD}\n"))
            .0,
        0
    );
    let (code, out) = h.run(&["enroll", "alice"], "");
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let secret = TotpSecret::from_base32(v["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let totp = code_at(secret.as_bytes(), now, TotpParams::default()).unwrap();
    let (code, out) = h.run(&["enroll", "alice", "--confirm"], &format!("{totp}\n"));
    assert_eq!(code, 0, "{out}");
    codes_of(&out).unwrap()
}

fn used_slots(account: &Account) -> (u64, Vec<bool>) {
    let set = account.codes.as_ref().expect("a set exists");
    (
        set.id,
        set.slots.iter().map(|s| s.used_at.is_some()).collect(),
    )
}

#[test]
fn killed_at_random_moments_the_store_stays_consistent() {
    let iterations = support::rounds("crash runs", "SPAREKEY_CRASH_ITERATIONS", 20, 200);
    let h = Harness {
        dir: tempfile::tempdir().unwrap(),
    };
    let mut codes = set_up(&h);
    let mut entropy = SeededEntropy::new(0xC0FFEE);

    // How long one login takes, so kills land all through a run.
    let started = Instant::now();
    let (_, out) = h.run(&["login", "alice"], &format!("{PASSWORD}\n{}\n", codes[0]));
    assert!(accepted(&out), "{out}");
    let span = started.elapsed().as_micros() as u64 * 12 / 10;

    let mut reported: HashSet<String> = HashSet::from([codes[0].clone()]);
    let mut before = h.account();
    let mut spent_before = h.spent_slot_events();
    let (mut kills, mut regenerations_unseen) = (0, 0);
    for _ in 0..iterations {
        if before.failures.consecutive >= 4 {
            assert_eq!(h.run(&["unlock", "alice"], "").0, 0);
            before = h.account();
        }
        let delay = Duration::from_micros(random(&mut entropy, span));
        let action = random(&mut entropy, 10);
        let mut new_codes = None;
        let mut tried = None;
        match action {
            0..=5 => {
                let code = codes[random(&mut entropy, codes.len() as u64) as usize].clone();
                let (out, killed) =
                    h.run_killed(&["login", "alice"], &format!("{PASSWORD}\n{code}\n"), delay);
                kills += usize::from(killed);
                if accepted(&out) {
                    assert!(reported.insert(code.clone()), "code accepted twice: {code}");
                }
                tried = Some(code);
            }
            6..=7 => {
                let (_, killed) =
                    h.run_killed(&["login", "alice"], "wrong password!\n000000\n", delay);
                kills += usize::from(killed);
            }
            _ => {
                let (out, killed) = h.run_killed(
                    &["codes", "regenerate", "alice"],
                    &format!("{PASSWORD}\n"),
                    delay,
                );
                kills += usize::from(killed);
                new_codes = codes_of(&out);
            }
        }

        let after = h.account();
        let spent_after = h.spent_slot_events();
        let (old_id, old_used) = used_slots(&before);
        let (new_id, new_used) = used_slots(&after);
        // A spent code and its audit event are one transaction: a kill leaves both or neither.
        let newly_used: Vec<u32> = if new_id == old_id {
            (0..new_used.len())
                .filter(|&i| new_used[i] && !old_used[i])
                .map(|i| i as u32)
                .collect()
        } else {
            Vec::new()
        };
        assert_eq!(
            &spent_after[spent_before.len()..],
            &newly_used[..],
            "the codes spent and their BackupCodeUsed events differ"
        );
        spent_before = spent_after;
        let set = after.codes.as_ref().unwrap();
        assert_eq!(
            set.remaining(),
            set.total() - new_used.iter().filter(|u| **u).count()
        );
        if new_id == old_id {
            for (was, is) in old_used.iter().zip(&new_used) {
                assert!(!was || *is, "a used slot became unused");
            }
            let consumed =
                new_used.iter().filter(|u| **u).count() - old_used.iter().filter(|u| **u).count();
            assert!(
                consumed <= usize::from(tried.is_some()),
                "more than one code consumed by one login"
            );
        } else {
            assert!(action >= 8, "the set changed without a regeneration");
            assert!(
                new_used.iter().all(|u| !u),
                "a new set starts with every code unused"
            );
            assert_eq!(set.total(), 10);
            match new_codes {
                Some(fresh) => codes = fresh,
                None => {
                    // Replaced on disk but killed before printing: those codes are lost to us (as
                    // they would be to a user), so get a set we know before going on.
                    regenerations_unseen += 1;
                    let (code, out) =
                        h.run(&["codes", "regenerate", "alice"], &format!("{PASSWORD}\n"));
                    assert_eq!(code, 0, "{out}");
                    codes = codes_of(&out).unwrap();
                }
            }
            reported.clear();
        }
        let (was, is) = (before.failures.consecutive, after.failures.consecutive);
        match action {
            6..=7 => assert!(is == was || is == was + 1, "failures {was} -> {is}"),
            0..=5 => assert!(
                is == 0 || is == was || is == was + 1,
                "failures {was} -> {is}"
            ),
            // The password's attempt is counted before it is checked and given back once it
            // is right: a kill in between leaves it counted (fail closed).
            _ => assert!(is == was || is == was + 1, "failures {was} -> {is}"),
        }
        before = h.account();
    }

    // Every code reported accepted is refused now, after all those kills.
    for code in reported.iter().take(5) {
        assert_eq!(h.run(&["unlock", "alice"], "").0, 0);
        let (exit, out) = h.run(&["login", "alice"], &format!("{PASSWORD}\n{code}\n"));
        assert_eq!(exit, 1, "a reported code was accepted again: {out}");
    }
    support::notice(&format!(
        "crash runs: {iterations} runs, {kills} killed while running, {} codes reported accepted, \
         {regenerations_unseen} regenerations finished unseen",
        reported.len()
    ));
    // The harness must really interrupt runs, or it proves nothing.
    assert!(
        kills >= iterations / 4,
        "only {kills} of {iterations} runs were interrupted"
    );
}

/// Racing processes against one account: each is a real `sparekey login` with a wrong
/// password, started together. Only the policy's free attempts (5) may be verified and each
/// must be counted; every other process is throttled without a hash. The store's lock file
/// already makes processes take turns, so this guards the whole path (lock, gate, count,
/// verify) rather than the reservation alone, which `tests/library/service.rs` races with threads.
#[test]
fn racing_login_processes_never_verify_more_than_the_policy() {
    let h = Harness {
        dir: tempfile::tempdir().unwrap(),
    };
    assert_eq!(
        h.run(&["account", "add", "bob"], &format!("{PASSWORD}\n"))
            .0,
        0
    );
    let processes = 9;
    let children: Vec<Child> = (0..processes)
        .map(|_| h.spawn(&["login", "bob"], "wrong password!\n"))
        .collect();
    let exits: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap_or(-1))
        .collect();
    let verified = exits.iter().filter(|&&e| e == 1).count();
    let throttled = exits.iter().filter(|&&e| e == 3).count();
    assert_eq!(verified + throttled, processes, "exit codes: {exits:?}");
    let store =
        support::open_store_keyed(&h.data_dir().join("store"), &h.dir.path().join("key")).unwrap();
    let counted = store
        .load_account("bob")
        .unwrap()
        .unwrap()
        .failures
        .consecutive;
    assert_eq!(verified, 5, "exit codes: {exits:?}");
    assert_eq!(counted, 5, "every verified attempt counted, no other");
}

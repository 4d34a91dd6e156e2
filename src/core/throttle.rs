//! Throttling of failed attempts, shared by the password, TOTP and backup-code paths. Owns the
//! policy (when a delay starts, how it grows, when the account locks) as a pure function of the
//! stored failure record and the time. Must never sleep: callers are refused at once with the
//! time left, so a script or a UI is never held hostage.

use serde::{Deserialize, Serialize};

use crate::core::clock::UnixTime;

/// The failure record kept with each account. `locked` is derived from `consecutive`, so
/// there is no second flag to fall out of step with the counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub consecutive: u32,
    pub last_failure_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// The first delay, doubled after each further failure.
    pub base_delay_secs: i64,
    pub max_delay_secs: i64,
    /// Failures that lock the account until an operator unlocks it (NIST SP 800-63B caps this at 100).
    pub lock_after: u32,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay_secs: 30,
            max_delay_secs: 3_600,
            lock_after: 20,
        }
    }
}

/// Whether an attempt may go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Delayed { seconds_left: i64 },
    Locked,
}

impl ThrottlePolicy {
    /// The wait imposed after `failures` consecutive failures, if any.
    pub fn delay_after(&self, failures: u32) -> Option<i64> {
        if failures < self.free_failures {
            return None;
        }
        let doublings = failures - self.free_failures;
        let delay = if doublings >= 32 {
            self.max_delay_secs
        } else {
            self.base_delay_secs.saturating_mul(1i64 << doublings)
        };
        Some(delay.min(self.max_delay_secs))
    }

    pub fn gate(&self, record: &FailureRecord, now: UnixTime) -> Gate {
        if record.consecutive >= self.lock_after {
            return Gate::Locked;
        }
        match (self.delay_after(record.consecutive), record.last_failure_at) {
            (Some(delay), Some(last)) => {
                // A clock set backwards must not turn a 30 s delay into years: never wait
                // longer than the delay itself.
                let left = (last.saturating_add(delay)).saturating_sub(now).min(delay);
                if left > 0 {
                    Gate::Delayed { seconds_left: left }
                } else {
                    Gate::Open
                }
            }
            _ => Gate::Open,
        }
    }

    /// Attempts left before the account locks.
    pub fn attempts_before_lock(&self, record: &FailureRecord) -> u32 {
        self.lock_after.saturating_sub(record.consecutive)
    }

    pub fn is_locked(&self, record: &FailureRecord) -> bool {
        record.consecutive >= self.lock_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32, at: i64) -> FailureRecord {
        FailureRecord {
            consecutive: n,
            last_failure_at: Some(at),
        }
    }

    #[test]
    fn free_failures_then_doubling_delay_then_lock() {
        let p = ThrottlePolicy::default();
        assert_eq!(p.gate(&rec(4, 100), 100), Gate::Open);
        assert_eq!(
            p.gate(&rec(5, 100), 100),
            Gate::Delayed { seconds_left: 30 }
        );
        assert_eq!(p.gate(&rec(5, 100), 129), Gate::Delayed { seconds_left: 1 });
        assert_eq!(p.gate(&rec(5, 100), 130), Gate::Open);
        assert_eq!(
            p.gate(&rec(6, 100), 100),
            Gate::Delayed { seconds_left: 60 }
        );
        assert_eq!(
            p.gate(&rec(7, 100), 110),
            Gate::Delayed { seconds_left: 110 }
        );
        assert_eq!(p.delay_after(19), Some(3_600));
        assert_eq!(p.gate(&rec(20, 100), 1_000_000), Gate::Locked);
        assert!(p.is_locked(&rec(20, 0)));
        assert_eq!(p.attempts_before_lock(&rec(15, 0)), 5);
    }

    #[test]
    fn clock_going_backwards_never_extends_the_delay() {
        let p = ThrottlePolicy::default();
        assert_eq!(
            p.gate(&rec(5, 1_000_000), 0),
            Gate::Delayed { seconds_left: 30 }
        );
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let p = ThrottlePolicy {
            lock_after: u32::MAX,
            ..ThrottlePolicy::default()
        };
        assert_eq!(p.delay_after(u32::MAX - 1), Some(3_600));
        assert_eq!(
            p.gate(&rec(u32::MAX - 1, i64::MAX), i64::MIN),
            Gate::Delayed {
                seconds_left: 3_600
            }
        );
    }
}

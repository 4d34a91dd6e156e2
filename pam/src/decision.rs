//! What the module answers PAM, says to the user and writes to syslog, as pure functions of the
//! child's outcomes. Owns the exit-code mapping (`sparekey`'s 0 accepted, 1 rejected, 2 bad input
//! or no such account/authenticator, 3 throttled or locked, 4 store error) and the log line's
//! form, one per decision, matchable by fail2ban. Must never put a code into any of them.

use std::ffi::c_int;

use serde::Deserialize;

use crate::child::Outcome;
use crate::ffi;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accepted {
        method: String,
        /// (remaining, total) after a backup code.
        backup: Option<(u64, u64)>,
    },
    /// No account or no authenticator, and `nullok`.
    Ignored(String),
    /// Refused; `tell` is the line shown to the user, if any.
    Refused {
        reason: String,
        tell: Option<String>,
    },
    /// The store or the binary could not answer in time: PAM_AUTHINFO_UNAVAIL.
    Unavailable(String),
    /// A misconfiguration or a PAM failure.
    Broken { code: c_int, reason: String },
}

#[derive(Deserialize)]
struct Answer {
    error: Option<String>,
    method: Option<String>,
    remaining_codes: Option<u64>,
    total_codes: Option<u64>,
}

fn answer(stdout: &str) -> Option<Answer> {
    serde_json::from_str(stdout.trim()).ok()
}

fn error_line(stdout: &str) -> Option<String> {
    answer(stdout).and_then(|a| a.error)
}

#[derive(Deserialize)]
struct ProbeAnswer {
    second_factor: String,
}

/// After `verify --probe`: `None` to go on and ask for the code. Only the probe's positive
/// answer `no_account` or `no_authenticator` counts as "nothing to check": anything else it
/// cannot parse (an older binary without `verify`, a usage error) refuses, never passes.
pub fn after_probe(outcome: &Outcome, nullok: bool) -> Option<Decision> {
    let stdout = match outcome {
        Outcome::Exited { code: 0, stdout } => stdout,
        Outcome::Exited { code: 2, stdout } => {
            return Some(Decision::Broken {
                code: ffi::PAM_SERVICE_ERR,
                reason: format!(
                    "sparekey verify --probe: {}",
                    error_line(stdout).unwrap_or_else(|| "usage error".into())
                ),
            });
        }
        other => return Some(after_verify(other)),
    };
    let state = serde_json::from_str::<ProbeAnswer>(stdout.trim()).map(|a| a.second_factor);
    match state.as_deref() {
        Ok("ready") => None,
        Ok(none @ ("no_account" | "no_authenticator")) if nullok => Some(Decision::Ignored(
            format!("{}; passed by nullok", none.replace('_', " ")),
        )),
        Ok(none @ ("no_account" | "no_authenticator")) => Some(Decision::Refused {
            reason: none.replace('_', " "),
            tell: None,
        }),
        _ => Some(Decision::Broken {
            code: ffi::PAM_SERVICE_ERR,
            reason: "sparekey verify --probe gave no answer this module knows".into(),
        }),
    }
}

/// After `verify` with the typed code.
pub fn after_verify(outcome: &Outcome) -> Decision {
    match outcome {
        Outcome::Exited { code: 0, stdout } => {
            let a = answer(stdout);
            let method = a
                .as_ref()
                .and_then(|a| a.method.clone())
                .unwrap_or_else(|| "unknown".into());
            let backup = a
                .filter(|_| method == "backup_code")
                .map(|a| (a.remaining_codes.unwrap_or(0), a.total_codes.unwrap_or(0)));
            Decision::Accepted { method, backup }
        }
        Outcome::Exited { code, stdout } if (1..=3).contains(code) => {
            let line = error_line(stdout);
            let reason = match (code, &line) {
                (2, _) => "malformed code".to_string(),
                (_, Some(l)) => short_reason(l),
                (1, None) => "wrong code".to_string(),
                _ => "throttled or locked".to_string(),
            };
            Decision::Refused { reason, tell: line }
        }
        Outcome::Exited { code: 4, stdout } => Decision::Unavailable(
            error_line(stdout).unwrap_or_else(|| "the store cannot be read".into()),
        ),
        Outcome::Exited { code, .. } => Decision::Broken {
            code: ffi::PAM_SERVICE_ERR,
            reason: format!("sparekey exited with {code}"),
        },
        Outcome::TimedOut(t) => {
            Decision::Unavailable(format!("sparekey gave no answer in {} s", t.as_secs()))
        }
        Outcome::Failed(why) => Decision::Unavailable(why.clone()),
    }
}

/// The core's message up to its advice (`wrong code; wait 30 s …` gives `wrong code`).
fn short_reason(line: &str) -> String {
    let end = line.find([';', '(', ':']).unwrap_or(line.len());
    line[..end].trim().to_string()
}

impl Decision {
    pub fn pam_code(&self) -> c_int {
        match self {
            Decision::Accepted { .. } => ffi::PAM_SUCCESS,
            Decision::Ignored(_) => ffi::PAM_IGNORE,
            Decision::Refused { .. } => ffi::PAM_AUTH_ERR,
            Decision::Unavailable(_) => ffi::PAM_AUTHINFO_UNAVAIL,
            Decision::Broken { code, .. } => *code,
        }
    }

    /// The syslog priority: failures as pam_unix logs its own (notice).
    pub fn priority(&self) -> c_int {
        match self {
            Decision::Accepted { .. } | Decision::Ignored(_) => libc::LOG_INFO,
            Decision::Refused { .. } => libc::LOG_NOTICE,
            Decision::Unavailable(_) | Decision::Broken { .. } => libc::LOG_ERR,
        }
    }

    /// The one log line of this decision.
    pub fn log_line(&self, service: &str, user: &str, rhost: &str) -> String {
        let who = format!("user={} rhost={}", clean(user), clean(rhost));
        let service = clean(service);
        match self {
            Decision::Accepted { method, backup } => {
                let left = backup
                    .map(|(r, t)| format!(" remaining={r}/{t}"))
                    .unwrap_or_default();
                format!(
                    "sparekey({service}): authentication success; {who} method={}{left}",
                    clean(method)
                )
            }
            Decision::Ignored(why) => format!("sparekey({service}): ignored; {who} reason={why}"),
            Decision::Refused { reason, .. } => format!(
                "sparekey({service}): authentication failure; {who} reason={}",
                clean_text(reason)
            ),
            Decision::Unavailable(why) => format!(
                "sparekey({service}): unavailable; {who} reason={}",
                clean_text(why)
            ),
            Decision::Broken { reason, .. } => format!(
                "sparekey({service}): error; {who} reason={}",
                clean_text(reason)
            ),
        }
    }

    /// What to show the user after this decision, if anything.
    pub fn user_message(&self) -> Option<(c_int, String)> {
        match self {
            Decision::Accepted {
                backup: Some((remaining, total)),
                ..
            } => Some((
                ffi::PAM_TEXT_INFO,
                format!(
                    "Backup code accepted: {remaining} of {total} backup codes remain. \
                     Run `sparekey` to re-secure the account (a new authenticator or new codes)."
                ),
            )),
            Decision::Refused { tell: Some(t), .. } => Some((ffi::PAM_ERROR_MSG, t.clone())),
            _ => None,
        }
    }
}

/// A user or host name as one log token: a remote party chooses the user name, so spaces and
/// control characters (which could forge a second line or field) become '?'.
fn clean(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Free text at the end of a line: only control characters replaced.
fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exited(code: i32, stdout: &str) -> Outcome {
        Outcome::Exited {
            code,
            stdout: stdout.into(),
        }
    }

    #[test]
    fn the_probe_goes_on_ignores_or_refuses() {
        let ready = exited(0, r#"{"account":"bob","second_factor":"ready"}"#);
        assert_eq!(after_probe(&ready, false), None);
        for state in ["no_account", "no_authenticator"] {
            let none = exited(
                0,
                &format!(r#"{{"account":"x","second_factor":"{state}"}}"#),
            );
            let passed = after_probe(&none, true).unwrap();
            assert_eq!(passed.pam_code(), ffi::PAM_IGNORE);
            assert!(
                passed
                    .log_line("sshd", "x", "h")
                    .contains("ignored; user=x rhost=h")
            );
            assert_eq!(
                after_probe(&none, false).unwrap().pam_code(),
                ffi::PAM_AUTH_ERR
            );
        }
        // An answer it does not know (a usage error from an older binary) never passes.
        let usage = exited(
            2,
            r#"{"error":"unrecognized subcommand 'verify'","kind":"invalid"}"#,
        );
        let d = after_probe(&usage, true).unwrap();
        assert_eq!(d.pam_code(), ffi::PAM_SERVICE_ERR);
        assert!(
            d.log_line("sshd", "x", "h")
                .contains("unrecognized subcommand")
        );
        for odd in [exited(0, ""), exited(0, r#"{"second_factor":"maybe"}"#)] {
            assert_eq!(
                after_probe(&odd, true).unwrap().pam_code(),
                ffi::PAM_SERVICE_ERR
            );
        }
        let locked = exited(
            3,
            r#"{"error":"the account 'bob' is locked after too many failed attempts: an operator must unlock it","kind":"throttled"}"#,
        );
        let d = after_probe(&locked, true).unwrap();
        assert_eq!(
            d.pam_code(),
            ffi::PAM_AUTH_ERR,
            "nullok never passes a locked account"
        );
        assert_eq!(
            d.log_line("sshd", "bob", "203.0.113.7"),
            "sparekey(sshd): authentication failure; user=bob rhost=203.0.113.7 reason=the account 'bob' is locked after too many failed attempts"
        );
        let busy = Outcome::TimedOut(Duration::from_secs(5));
        assert_eq!(
            after_probe(&busy, true).unwrap().pam_code(),
            ffi::PAM_AUTHINFO_UNAVAIL
        );
    }

    #[test]
    fn verify_exit_codes_map_to_pam_results() {
        let ok = exited(
            0,
            r#"{"result":"accepted","method":"totp","remaining_codes":10,"total_codes":10}"#,
        );
        let d = after_verify(&ok);
        assert_eq!(d.pam_code(), ffi::PAM_SUCCESS);
        assert_eq!(d.user_message(), None);
        let wrong = exited(
            1,
            r#"{"error":"wrong code (4 attempts left before the account locks)","kind":"rejected"}"#,
        );
        let d = after_verify(&wrong);
        assert_eq!(d.pam_code(), ffi::PAM_AUTH_ERR);
        assert_eq!(
            d.log_line("sshd", "bob", "203.0.113.7"),
            "sparekey(sshd): authentication failure; user=bob rhost=203.0.113.7 reason=wrong code"
        );
        let typo = exited(
            2,
            r#"{"error":"not a valid backup code: check for typos","kind":"invalid"}"#,
        );
        let d = after_verify(&typo);
        assert_eq!(d.pam_code(), ffi::PAM_AUTH_ERR);
        assert!(
            d.log_line("sudo", "bob", "")
                .ends_with("rhost=- reason=malformed code")
        );
        assert_eq!(
            after_verify(&exited(4, "")).pam_code(),
            ffi::PAM_AUTHINFO_UNAVAIL
        );
        assert_eq!(
            after_verify(&exited(101, "")).pam_code(),
            ffi::PAM_SERVICE_ERR
        );
        let failed = Outcome::Failed("cannot run /usr/bin/sparekey".into());
        assert_eq!(after_verify(&failed).pam_code(), ffi::PAM_AUTHINFO_UNAVAIL);
    }

    #[test]
    fn a_backup_code_says_how_many_remain_and_what_to_do() {
        let ok = exited(
            0,
            r#"{"result":"accepted","method":"backup_code","remaining_codes":3,"total_codes":10}"#,
        );
        let d = after_verify(&ok);
        let (style, text) = d.user_message().unwrap();
        assert_eq!(style, ffi::PAM_TEXT_INFO);
        assert!(text.contains("3 of 10 backup codes remain"), "{text}");
        assert!(text.contains("Run `sparekey`"), "{text}");
        assert!(
            d.log_line("sshd", "bob", "h")
                .ends_with("method=backup_code remaining=3/10")
        );
    }

    #[test]
    fn a_hostile_user_name_cannot_forge_a_log_field_or_line() {
        let d = after_verify(&exited(1, ""));
        let line = d.log_line("sshd", "x rhost=1.2.3.4\nsparekey", "h");
        assert!(
            line.contains("user=x?rhost=1.2.3.4?sparekey rhost=h"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

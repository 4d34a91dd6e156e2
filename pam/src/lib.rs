//! pam_sparekey: the PAM module that checks sparekey's second factor (a TOTP code or a backup
//! code) for `auth`, after the first factor (the system password, by `pam_unix`). Owns the
//! PAM entry points and the order of one authentication: options, configuration, a probe (is
//! there a second factor to check?), the prompt, the check, the answer, one log line.
//!
//! It verifies by running the installed `sparekey verify` (so the throttle, replay refusal,
//! single use and audit are the CLI's, on the one store), with a cleared environment, its
//! configuration only from a root-owned file, and a deadline, so a busy or unreachable store
//! gives PAM_AUTHINFO_UNAVAIL within seconds instead of holding sshd. Must never log or show a
//! code, trust the environment of the process being authenticated, or panic across the FFI.

mod child;
mod config;
mod decision;
mod ffi;
mod options;

use std::ffi::{c_char, c_int};

use decision::Decision;
use ffi::Handle;

/// The prompt, echo on (a one-time code is no secret once typed, and seeing it avoids typos).
pub const PROMPT: &str = "Verification code (or backup code): ";

/// PAM `auth`: the second factor of the user being authenticated.
///
/// # Safety
/// Called by libpam with a live handle and `argc` option strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut ffi::PamHandleT,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam passes `argc` NUL-terminated option strings.
    let args = unsafe { ffi::arguments(argc, argv) };
    // A panic must not unwind into libpam (and an abort would take sshd's child with it).
    std::panic::catch_unwind(|| match Handle::new(pamh) {
        Some(handle) => authenticate(&handle, flags, &args),
        None => ffi::PAM_SERVICE_ERR,
    })
    .unwrap_or(ffi::PAM_SERVICE_ERR)
}

/// PAM `auth` credentials: nothing to set.
///
/// # Safety
/// Called by libpam; nothing is read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut ffi::PamHandleT,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    ffi::PAM_SUCCESS
}

fn authenticate(handle: &Handle, flags: c_int, args: &[String]) -> c_int {
    let service = handle.service().unwrap_or_default();
    let rhost = handle.rhost().unwrap_or_default();
    let user = match handle.user() {
        Ok(user) if !user.is_empty() => user,
        Ok(_) | Err(_) => {
            let d = Decision::Broken {
                code: ffi::PAM_AUTH_ERR,
                reason: "no user name".into(),
            };
            return finish(handle, flags, &d, &service, "", &rhost);
        }
    };
    let decision = decide(handle, args, &user);
    finish(handle, flags, &decision, &service, &user, &rhost)
}

fn decide(handle: &Handle, args: &[String], user: &str) -> Decision {
    let options = match options::parse(args) {
        Ok(o) => o,
        Err(reason) => {
            return Decision::Broken {
                code: ffi::PAM_SERVICE_ERR,
                reason,
            };
        }
    };
    let config = match config::load(&options.config) {
        Ok(c) => c,
        Err(reason) => {
            return Decision::Broken {
                code: ffi::PAM_SERVICE_ERR,
                reason,
            };
        }
    };
    if let Some(done) = decision::after_probe(&child::probe(&config, user), options.nullok) {
        return done;
    }
    let code = match handle.converse(ffi::PAM_PROMPT_ECHO_ON, PROMPT) {
        Ok(Some(code)) => code,
        Ok(None) | Err(_) => {
            return Decision::Broken {
                code: ffi::PAM_CONV_ERR,
                reason: "no answer to the prompt".into(),
            };
        }
    };
    decision::after_verify(&child::verify(&config, user, &code))
}

/// Logs the decision, tells the user what they need to know, and gives PAM its answer.
fn finish(
    handle: &Handle,
    flags: c_int,
    decision: &Decision,
    service: &str,
    user: &str,
    rhost: &str,
) -> c_int {
    ffi::syslog(
        decision.priority(),
        &decision.log_line(service, user, rhost),
    );
    if flags & ffi::PAM_SILENT == 0
        && let Some((style, text)) = decision.user_message()
    {
        // The answer stands whether or not the message got through.
        let _ = handle.converse(style, &text);
    }
    decision.pam_code()
}

//! Everything the CLI writes: plain lines or exactly one JSON object on stdout, and errors as one
//! line on stderr (plus a JSON error object on stdout in JSON mode). Owns the exit codes, the
//! UTC timestamp format and the layout of a backup-code file. Must never print a secret except
//! the one time a new secret or code set is shown.

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FileType, OFlags};
use serde::Serialize;
use std::io::{self, Write};
use zeroize::Zeroizing;

use crate::core::account::printable;
use crate::core::error::{Error, ErrorKind};
use crate::core::service::IssuedCodes;

/// Checks, before any code is issued or voided, that standard output can take the new codes:
/// it is not /dev/null (where a closed stdout ends up), is open for writing, and is not a pipe
/// whose reader has gone.
pub(crate) fn check_stdout() -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(Error::Io(format!(
            "standard output {why}: the new codes would be lost, so nothing was changed              (write them to a file with --out FILE)"
        )))
    };
    let stdout = io::stdout();
    // The standard library puts /dev/null on a closed stdout before main: either way the codes
    // would go nowhere.
    let null = rustix::fs::stat("/dev/null").ok().map(|s| s.st_rdev);
    match rustix::fs::fstat(&stdout) {
        Ok(st)
            if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
                && Some(st.st_rdev) == null =>
        {
            return refuse("is closed or /dev/null");
        }
        Ok(_) => {}
        Err(_) => return refuse("is closed"),
    }
    match rustix::fs::fcntl_getfl(&stdout) {
        Ok(flags) if flags.contains(OFlags::WRONLY) || flags.contains(OFlags::RDWR) => {}
        Ok(_) => return refuse("is open for reading only"),
        Err(_) => return refuse("is closed"),
    }
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if poll(&mut fds, Some(&now)).is_ok()
        && fds[0]
            .revents()
            .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
    {
        return refuse("has no reader");
    }
    Ok(())
}

/// Exit codes, one per [`ErrorKind`]; 0 is success.
pub(crate) fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Rejected => 1,
        ErrorKind::Invalid => 2,
        ErrorKind::Throttled => 3,
        ErrorKind::Store => 4,
    }
}

/// The `kind` word of a JSON error.
pub(crate) fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Rejected => "rejected",
        ErrorKind::Invalid => "invalid",
        ErrorKind::Throttled => "throttled",
        ErrorKind::Store => "store",
    }
}

/// Where results go: plain text or one JSON object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

fn stdout_failed(e: io::Error) -> Error {
    Error::Io(format!("cannot write to standard output: {e}"))
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Writes plain text as is (the caller ends lines): for text sparekey made itself (the QR
    /// code's colours are escapes), with any name in it already [`printable`].
    pub(crate) fn text(&self, text: &str) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(stdout_failed)
    }

    /// Writes lines of plain text (a listing, the audit log), each with its non-printable
    /// characters escaped (see [`printable`]): a stored name cannot drive the terminal.
    pub(crate) fn lines(&self, text: &str) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            out.write_all(printable(line).as_bytes())
                .map_err(stdout_failed)?;
            if lines.peek().is_some() {
                out.write_all(b"\n").map_err(stdout_failed)?;
            }
        }
        out.flush().map_err(stdout_failed)
    }

    /// Writes one line of plain text, its non-printable characters escaped.
    pub(crate) fn line(&self, line: &str) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", printable(line))
            .and_then(|()| out.flush())
            .map_err(stdout_failed)
    }

    /// Writes `value` as the one JSON object of this run, straight to stdout (no extra copy of
    /// any secret it carries).
    pub(crate) fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, value)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
            .map_err(stdout_failed)
    }

    /// Reports an error: one line on stderr, and in JSON mode the error object on stdout.
    /// Returns the exit code.
    pub(crate) fn error(&self, error: &Error) -> u8 {
        let message = error.to_string();
        let _ = writeln!(io::stderr().lock(), "sparekey: {}", printable(&message));
        if self.json {
            let _ = self.json(&ErrorJson::of(error, &message));
        }
        exit_code(error.kind())
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_left: Option<i64>,
}

impl<'a> ErrorJson<'a> {
    fn of(error: &Error, message: &'a str) -> Self {
        let seconds_left = match error {
            Error::Throttled { seconds_left } => Some(*seconds_left),
            _ => None,
        };
        Self {
            error: message,
            kind: kind_name(error.kind()),
            seconds_left,
        }
    }
}

/// Writes a usage error (from clap) as the JSON error object on stdout.
pub(crate) fn usage_error_json(message: &str) {
    let _ = Output::new(true).json(&ErrorJson {
        error: message,
        kind: kind_name(ErrorKind::Invalid),
        seconds_left: None,
    });
}

/// `n` and the noun, in the plural unless `n` is 1: "1 failed attempt", "3 failed attempts".
pub(crate) fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `text` cut to at most `max` characters, its last one `…` when anything was left out, so a
/// cut name never passes for a whole one.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// The numbered list of a new code set, for the terminal.
pub(crate) fn codes_text(issued: &IssuedCodes) -> Zeroizing<String> {
    let mut text = Zeroizing::new(format!(
        "New backup codes for {} ({}), shown only this once: save them now.\n\n",
        printable(&issued.account),
        printable(&issued.issuer)
    ));
    // Indented, so the codes stand out from the sentences around them.
    for line in crate::core::recovery_sheet::numbered_list(&issued.codes, false).lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(
        "\nEach code works once, together with the password, when the authenticator is not at hand.\n\
         Keep them offline (print them or store them in a password manager); every earlier code is void.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(counted(0, "failed attempt"), "0 failed attempts");
        assert_eq!(counted(1, "failed attempt"), "1 failed attempt");
        assert_eq!(counted(2, "backup code"), "2 backup codes");
    }

    #[test]
    fn cut_names_end_in_an_ellipsis() {
        assert_eq!(cut("alice", 5), "alice");
        assert_eq!(cut("alice", 32), "alice");
        assert_eq!(cut("alice-and-bob", 6), "alice…");
        assert_eq!(cut("zoë-müller", 4), "zoë…");
        assert_eq!(cut("alice-and-bob", 6).chars().count(), 6);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ErrorKind::Rejected), 1);
        assert_eq!(exit_code(ErrorKind::Invalid), 2);
        assert_eq!(exit_code(ErrorKind::Throttled), 3);
        assert_eq!(exit_code(ErrorKind::Store), 4);
    }
}

//! Everything the CLI writes: plain lines or exactly one JSON object on stdout, and errors as one
//! line on stderr (plus a JSON error object on stdout in JSON mode). Owns the exit codes, the
//! UTC timestamp format and the layout of a backup-code file. Must never print a secret except
//! the one time a new secret or code set is shown.

use std::io::{self, Write};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::core::clock::UnixTime;
use crate::core::error::{Error, ErrorKind};
use crate::core::service::IssuedCodes;
use crate::core::store::StoreError;

/// Exit codes, one per [`ErrorKind`]; 0 is success.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Rejected => 1,
        ErrorKind::Invalid => 2,
        ErrorKind::Throttled => 3,
        ErrorKind::Store => 4,
    }
}

/// The `kind` word of a JSON error.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Rejected => "rejected",
        ErrorKind::Invalid => "invalid",
        ErrorKind::Throttled => "throttled",
        ErrorKind::Store => "store",
    }
}

/// Where results go: plain text or one JSON object.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

fn stdout_failed(e: io::Error) -> Error {
    Error::Store(StoreError::Io(format!(
        "cannot write to standard output: {e}"
    )))
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Writes plain text as is (the caller ends lines).
    pub fn text(&self, text: &str) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(stdout_failed)
    }

    /// Writes one line of plain text.
    pub fn line(&self, line: &str) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(stdout_failed)
    }

    /// Writes `value` as the one JSON object of this run, straight to stdout (no extra copy of
    /// any secret it carries).
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, value)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
            .map_err(stdout_failed)
    }

    /// Reports an error: one line on stderr, and in JSON mode the error object on stdout.
    /// Returns the exit code.
    pub fn error(&self, error: &Error) -> u8 {
        let message = error.to_string();
        let _ = writeln!(io::stderr().lock(), "sparekey: {message}");
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
pub fn usage_error_json(message: &str) {
    let _ = Output::new(true).json(&ErrorJson {
        error: message,
        kind: kind_name(ErrorKind::Invalid),
        seconds_left: None,
    });
}

/// Year, month and day of the civil (proleptic Gregorian) calendar from days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-28T14:03:05Z` from Unix seconds.
pub fn utc_timestamp(at: UnixTime) -> String {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-11-28` (UTC) from Unix seconds.
pub fn utc_date(at: UnixTime) -> String {
    let (y, m, d) = civil_from_days(at.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The numbered list of a new code set, for the terminal.
pub fn codes_text(issued: &IssuedCodes) -> Zeroizing<String> {
    let mut text = Zeroizing::new(format!(
        "New backup codes for {} ({}), shown only this once: save them now.\n\n",
        issued.account, issued.issuer
    ));
    let width = issued.codes.len().to_string().len();
    for (i, code) in issued.codes.iter().enumerate() {
        text.push_str(&format!("  {:>width$}. ", i + 1));
        text.push_str(&code.display());
        text.push('\n');
    }
    text.push_str(
        "\nEach code works once, together with the password, when the authenticator is not at hand.\n\
         Keep them offline (print them or store them in a password manager); every earlier code is void.\n",
    );
    text
}

/// The contents of a `--out` file: issuer, account, date, numbered codes with a box to tick,
/// and how to use and keep them.
pub fn codes_file(issued: &IssuedCodes) -> Zeroizing<String> {
    let mut text = Zeroizing::new(format!(
        "sparekey backup codes\n\nIssuer:  {}\nAccount: {}\nIssued:  {} (UTC)\n\n",
        issued.issuer,
        issued.account,
        utc_date(issued.issued_at)
    ));
    let width = issued.codes.len().to_string().len();
    for (i, code) in issued.codes.iter().enumerate() {
        text.push_str(&format!("{:>width$}. [ ] ", i + 1));
        text.push_str(&code.display());
        text.push('\n');
    }
    text.push_str(&format!(
        "\nEach code logs in once, together with your password, when your authenticator is not at hand; tick it off when used.\n\
         Keep this list offline and private (print it, then delete this file): anyone with a code and your password can log in.\n\
         When few codes remain, run `sparekey codes regenerate {}`: the new set replaces every code above.\n",
        issued.account
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_874_585), "2026-11-28T14:03:05Z");
        assert_eq!(utc_timestamp(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(utc_timestamp(-1), "1969-12-31T23:59:59Z");
        assert_eq!(utc_date(1_795_874_585), "2026-11-28");
        // No overflow or panic at the extremes.
        let _ = utc_timestamp(i64::MAX);
        let _ = utc_timestamp(i64::MIN);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ErrorKind::Rejected), 1);
        assert_eq!(exit_code(ErrorKind::Invalid), 2);
        assert_eq!(exit_code(ErrorKind::Throttled), 3);
        assert_eq!(exit_code(ErrorKind::Store), 4);
    }
}

//! Reading an existing authenticator's secret from elsewhere, so the user's phone keeps working:
//! a google-authenticator-libpam file (`~/.google_authenticator`) or one `otpauth://totp/` URI.
//! Pure parsers: they never read a file or the clock, and never keep the text they were given.
//! What does not carry over (the scratch codes, the window, the rate limit) is said in `notes`,
//! so the face can tell the operator. Must never put the secret or a scratch code in a message.

use zeroize::Zeroizing;

use crate::core::totp::{Algorithm, TotpParams, TotpSecret};

/// Shortest secret accepted: google-authenticator's old 80-bit secrets, which every file made
/// before its 128-bit default has.
const MIN_SECRET_BYTES: usize = 10;
/// NIST SP 800-63B (through SP 800-131A) asks for at least 112 bits.
const NIST_SECRET_BYTES: usize = 14;
/// Longest step accepted, in seconds.
const MAX_PERIOD: u64 = 300;

/// An authenticator read from elsewhere.
#[derive(Debug)]
pub struct Imported {
    pub secret: TotpSecret,
    pub params: TotpParams,
    /// The issuer the authenticator shows, when the source names one.
    pub issuer: Option<String>,
    /// What the source had that sparekey does not carry over, one sentence each.
    pub notes: Vec<String>,
}

/// Why an import was refused: one clear line, never the secret.
pub type ImportError = String;

/// Reads a google-authenticator-libpam file: the secret on the first line, then `" OPTION`
/// lines and 8-digit scratch codes. Only TOTP files (`" TOTP_AUTH`) are accepted.
pub fn google_authenticator(text: &str) -> Result<Imported, ImportError> {
    let mut lines = text.lines().enumerate();
    let secret_line = lines
        .next()
        .map(|(_, l)| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('"'))
        .ok_or("the file does not start with a secret line")?;
    let secret = secret(secret_line)?;
    let mut params = TotpParams::default();
    let (mut totp, mut reuse_refused, mut scratch) = (false, false, 0usize);
    let mut notes = Vec::new();
    for (index, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(option) = line.strip_prefix('"') else {
            if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
                scratch += 1;
                continue;
            }
            return Err(format!(
                "line {} is neither an option nor a scratch code: not a google-authenticator file",
                index + 1
            ));
        };
        let mut words = option.split_whitespace();
        match words.next() {
            Some("TOTP_AUTH") => totp = true,
            Some("HOTP_COUNTER") => {
                return Err(hotp_refusal());
            }
            Some("DISALLOW_REUSE") => reuse_refused = true,
            Some("WINDOW_SIZE") => notes.push(format!(
                "WINDOW_SIZE {} is not carried over: sparekey accepts the current code and the \
                 one either side (RFC 6238), and says when a clock is off by more",
                words.next().unwrap_or("?")
            )),
            Some("RATE_LIMIT") => notes.push(
                "RATE_LIMIT is not carried over: sparekey's throttle applies (a few free \
                 failures, then growing delays, then a lock an operator lifts)"
                    .into(),
            ),
            Some("STEP_SIZE") => {
                let period = words
                    .next()
                    .and_then(|w| w.parse::<u64>().ok())
                    .filter(|p| (1..=MAX_PERIOD).contains(p))
                    .ok_or("the STEP_SIZE option is not a number of seconds from 1 to 300")?;
                params.period = period;
            }
            other => notes.push(format!(
                "the option \"{}\" is not known and was ignored",
                other.unwrap_or("")
            )),
        }
    }
    if !totp {
        return Err(hotp_refusal());
    }
    if !reuse_refused {
        notes.push(
            "the file allowed a code to be used twice; sparekey never does (RFC 6238 section 5.2)"
                .into(),
        );
    }
    if scratch > 0 {
        notes.push(format!(
            "its {scratch} scratch codes are not carried over: 8 digits (about 26 bits) kept in \
             clear in that file; a fresh set of sparekey backup codes replaces them"
        ));
    }
    notes.extend(weak_secret_note(&secret));
    Ok(Imported {
        secret,
        params,
        issuer: None,
        notes,
    })
}

fn hotp_refusal() -> ImportError {
    "this is an HOTP (counter-based) google-authenticator file, with no \" TOTP_AUTH line: \
     sparekey checks time-based codes only; enroll a new authenticator with `sparekey enroll`"
        .into()
}

fn secret(text: &str) -> Result<TotpSecret, ImportError> {
    let secret =
        TotpSecret::from_base32(text).map_err(|e| format!("the secret cannot be read: {e}"))?;
    if secret.as_bytes().len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret has only {} bits: at least 80 are needed; enroll a new authenticator",
            secret.as_bytes().len() * 8
        ));
    }
    Ok(secret)
}

fn weak_secret_note(secret: &TotpSecret) -> Option<String> {
    let bits = secret.as_bytes().len() * 8;
    (secret.as_bytes().len() < NIST_SECRET_BYTES).then(|| {
        format!(
            "the secret has {bits} bits, fewer than the 112 NIST SP 800-63B asks for: enroll a \
             new authenticator with `sparekey enroll` when you can"
        )
    })
}

/// Reads one `otpauth://totp/LABEL?secret=…` URI (Key Uri Format): `secret` required,
/// `issuer`, `algorithm`, `digits` and `period` as the format defines them.
pub fn otpauth(uri: &str) -> Result<Imported, ImportError> {
    let uri = uri.trim();
    let rest = strip_prefix_ignore_case(uri, "otpauth://").ok_or("not an otpauth:// URI")?;
    let rest = match strip_prefix_ignore_case(rest, "totp/") {
        Some(rest) => rest,
        None if strip_prefix_ignore_case(rest, "hotp/").is_some() => {
            return Err(
                "an HOTP (counter-based) URI: sparekey checks time-based codes only".into(),
            );
        }
        None => return Err("not an otpauth://totp/ URI".into()),
    };
    let (label, query) = rest.split_once('?').ok_or("the URI has no parameters")?;
    let label = percent_decode(label)?;
    let mut params = TotpParams::default();
    let mut secret_text: Option<Zeroizing<String>> = None;
    let mut issuer = label
        .split_once(':')
        .map(|(i, _)| i.trim().to_string())
        .filter(|i| !i.is_empty());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = Zeroizing::new(percent_decode(value)?);
        match key.to_ascii_lowercase().as_str() {
            "secret" => secret_text = Some(value),
            "issuer" if !value.is_empty() => issuer = Some(value.to_string()),
            "algorithm" => {
                params.algorithm = match value.to_ascii_uppercase().as_str() {
                    "SHA1" => Algorithm::Sha1,
                    "SHA256" => Algorithm::Sha256,
                    "SHA512" => Algorithm::Sha512,
                    _ => return Err("the algorithm must be SHA1, SHA256 or SHA512".into()),
                }
            }
            "digits" => {
                params.digits = value
                    .parse()
                    .ok()
                    .filter(|d| (6..=8).contains(d))
                    .ok_or("digits must be 6, 7 or 8")?;
            }
            "period" => {
                params.period = value
                    .parse()
                    .ok()
                    .filter(|p| (1..=MAX_PERIOD).contains(p))
                    .ok_or("the period must be 1 to 300 seconds")?;
            }
            // `image`, `counter` and vendor parameters change nothing here.
            _ => {}
        }
    }
    let secret = secret(secret_text.as_deref().ok_or("the URI has no secret")?)?;
    if issuer.as_deref().is_some_and(|i| i.contains(':')) {
        issuer = None;
    }
    let notes = weak_secret_note(&secret).into_iter().collect();
    Ok(Imported {
        secret,
        params,
        issuer,
        notes,
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn percent_decode(text: &str) -> Result<String, ImportError> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("the URI has a broken %-escape")?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out.to_vec()).map_err(|_| "the URI is not UTF-8 once decoded".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30 1795867200\n\
                        \" WINDOW_SIZE 17\n\" DISALLOW_REUSE 59862240\n\" TOTP_AUTH\n\
                        12345678\n23456789\n34567890\n";

    #[test]
    fn a_totp_file_gives_its_secret_and_says_what_is_left_behind() {
        let imported = google_authenticator(FILE).unwrap();
        assert_eq!(
            imported.secret.to_base32().as_str(),
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
        );
        assert_eq!(imported.params, TotpParams::default());
        let notes = imported.notes.join("\n");
        assert!(
            notes.contains("3 scratch codes are not carried over"),
            "{notes}"
        );
        assert!(notes.contains("WINDOW_SIZE 17"), "{notes}");
        assert!(notes.contains("RATE_LIMIT"), "{notes}");
        assert!(!notes.contains("12345678"), "no scratch code in a note");
        assert!(!notes.contains("used twice"), "reuse was refused there too");
    }

    #[test]
    fn hotp_files_and_broken_files_are_refused() {
        let hotp = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n12345678\n";
        assert!(google_authenticator(hotp).unwrap_err().contains("HOTP"));
        let no_mode = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n12345678\n";
        assert!(google_authenticator(no_mode).unwrap_err().contains("HOTP"));
        assert!(google_authenticator("").is_err());
        assert!(google_authenticator("not base32 !\n\" TOTP_AUTH\n").is_err());
        let junk = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TOTP_AUTH\nhello\n";
        assert!(google_authenticator(junk).unwrap_err().contains("line 3"));
        let short = "JBSWY3DP\n\" TOTP_AUTH\n";
        assert!(google_authenticator(short).unwrap_err().contains("80"));
    }

    #[test]
    fn an_old_80_bit_secret_imports_with_advice_and_step_size_is_kept() {
        let old = "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" STEP_SIZE 60\n";
        let imported = google_authenticator(old).unwrap();
        assert_eq!(imported.params.period, 60);
        assert!(imported.notes.join(" ").contains("112"));
        assert!(google_authenticator("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" STEP_SIZE 0\n").is_err());
    }

    #[test]
    fn otpauth_uris_are_read_with_their_parameters() {
        let uri = "otpauth://totp/ACME%20Co:bob@example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=ACME%20Co&digits=8&period=60&algorithm=SHA256";
        let imported = otpauth(uri).unwrap();
        assert_eq!(imported.issuer.as_deref(), Some("ACME Co"));
        assert_eq!(
            imported.params,
            TotpParams {
                algorithm: Algorithm::Sha256,
                digits: 8,
                period: 60
            }
        );
        let plain = otpauth("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        assert_eq!((plain.issuer, plain.params), (None, TotpParams::default()));
    }

    #[test]
    fn bad_otpauth_uris_are_refused_without_echoing_the_secret() {
        let s = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        for (uri, says) in [
            (format!("otpauth://hotp/bob?secret={s}&counter=1"), "HOTP"),
            (format!("https://totp/bob?secret={s}"), "otpauth"),
            ("otpauth://totp/bob?issuer=x".to_string(), "no secret"),
            (format!("otpauth://totp/bob?secret={s}&digits=9"), "digits"),
            (
                format!("otpauth://totp/bob?secret={s}&algorithm=MD5"),
                "algorithm",
            ),
            (format!("otpauth://totp/bob?secret={s}&period=0"), "period"),
            (format!("otpauth://totp/bob%G1?secret={s}"), "escape"),
        ] {
            let err = otpauth(&uri).unwrap_err();
            assert!(err.contains(says), "{uri}: {err}");
            assert!(!err.contains(s), "{err}");
        }
    }
}

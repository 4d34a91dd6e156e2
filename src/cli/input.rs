//! Reading secrets: passwords and codes come one line each from stdin, or from a hidden prompt
//! when stdin is a terminal; never from argv. Also the yes/no question before a change that
//! cannot be undone. Owns the framing rules (line length bound, UTF-8,
//! trailing CR/LF) so huge or binary input gives one clear error instead of a panic or an
//! unbounded allocation. Must keep every secret in a [`Zeroizing`] buffer.

use std::io::{self, BufRead, IsTerminal, Write};

use zeroize::Zeroizing;

use crate::core::error::Error;

/// Longest line accepted on stdin, in bytes (without its line ending).
pub const MAX_LINE_BYTES: usize = 4096;

/// The secret lines of one command, read in order from stdin or prompted on a terminal.
pub struct SecretInput<R> {
    reader: R,
    interactive: bool,
}

impl SecretInput<io::StdinLock<'static>> {
    /// Stdin, prompting (hidden) when it is a terminal.
    pub fn stdin() -> Self {
        let stdin = io::stdin();
        let interactive = stdin.is_terminal();
        Self {
            reader: stdin.lock(),
            interactive,
        }
    }
}

impl<R: BufRead> SecretInput<R> {
    /// Reads piped lines from `reader` (never prompts).
    pub fn from_reader(reader: R) -> Self {
        Self {
            reader,
            interactive: false,
        }
    }

    /// Whether a person is typing (hidden prompts), rather than a pipe or file.
    pub fn is_interactive(&self) -> bool {
        self.interactive
    }

    /// One required line: `what` names it in prompts and errors ("password").
    pub fn required(&mut self, what: &str) -> Result<Zeroizing<String>, Error> {
        match self.next(what)? {
            Some(line) => Ok(line),
            None => Err(Error::Invalid(format!("no {what} given on standard input"))),
        }
    }

    /// One line that may be missing (end of input). On a terminal it is always asked for.
    pub fn optional(&mut self, what: &str) -> Result<Option<Zeroizing<String>>, Error> {
        self.next(what)
    }

    /// A new password: on a terminal asked twice and compared; from a pipe one line.
    pub fn new_password(&mut self) -> Result<Zeroizing<String>, Error> {
        let first = self.required("password")?;
        if self.interactive {
            let again = self.required("password again")?;
            if *again != *first {
                return Err(Error::Invalid("the two passwords differ".into()));
            }
        }
        Ok(first)
    }

    fn next(&mut self, what: &str) -> Result<Option<Zeroizing<String>>, Error> {
        if self.interactive {
            return prompt_hidden(what).map(Some);
        }
        read_bounded_line(&mut self.reader, what)
    }
}

/// Asks before a change that cannot be undone: `--yes` answers for the caller; otherwise a
/// person at a terminal is asked `question` (on stderr, so stdout keeps only results) and must
/// answer yes. Without a terminal and without `--yes` nothing is asked and nothing done: a
/// script must say it means it (exit 2).
pub fn confirm(question: &str, yes: bool) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Invalid(
            "this cannot be undone and no terminal is there to ask: pass --yes to go ahead; nothing was changed"
                .into(),
        ));
    }
    let mut err = io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    let answer = read_bounded_line(&mut stdin.lock(), "answer")?;
    if answer.as_deref().is_some_and(|a| is_yes(a)) {
        Ok(())
    } else {
        Err(Error::Invalid("not confirmed: nothing was changed".into()))
    }
}

/// Whether a typed answer means yes ("y" or "yes", any case, spaces around ignored).
fn is_yes(answer: &str) -> bool {
    let answer = answer.trim();
    answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")
}

fn prompt_hidden(what: &str) -> Result<Zeroizing<String>, Error> {
    let mut label = what.to_string();
    if let Some(first) = label.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let line = rpassword::prompt_password(format!("{label}: "))
        .map(Zeroizing::new)
        .map_err(|e| Error::Invalid(format!("cannot read the {what} from the terminal: {e}")))?;
    if line.len() > MAX_LINE_BYTES {
        return Err(too_long(what));
    }
    Ok(line)
}

fn too_long(what: &str) -> Error {
    Error::Invalid(format!(
        "the {what} line is longer than {MAX_LINE_BYTES} bytes"
    ))
}

/// Reads one line of at most [`MAX_LINE_BYTES`] bytes, without its `\n` or `\r\n`. `None` at the
/// end of input. Never reads more than the bound plus the line ending into memory.
pub fn read_bounded_line(
    reader: &mut impl BufRead,
    what: &str,
) -> Result<Option<Zeroizing<String>>, Error> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(128));
    // One byte more than allowed for the '\n' and one for a '\r' before it.
    let limit = (MAX_LINE_BYTES + 2) as u64;
    let read = io::Read::take(&mut *reader, limit)
        .read_until(b'\n', &mut bytes)
        .map_err(|e| Error::Io(format!("cannot read the {what} from standard input: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    let ended = bytes.last() == Some(&b'\n');
    if ended {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() > MAX_LINE_BYTES {
        return Err(too_long(what));
    }
    if bytes.contains(&0) {
        return Err(Error::Invalid(format!(
            "the {what} line contains a NUL byte"
        )));
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Some(Zeroizing::new(text))),
        Err(e) => {
            // Wipe the rejected bytes too.
            drop(Zeroizing::new(e.into_bytes()));
            Err(Error::Invalid(format!(
                "the {what} line is not valid UTF-8 text"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> SecretInput<&[u8]> {
        SecretInput::from_reader(input)
    }

    #[test]
    fn lines_lose_their_endings() {
        let mut input = lines(b"hunter22\r\n123456\nlast");
        assert_eq!(input.required("password").unwrap().as_str(), "hunter22");
        assert_eq!(input.optional("code").unwrap().unwrap().as_str(), "123456");
        assert_eq!(input.optional("code").unwrap().unwrap().as_str(), "last");
        assert!(input.optional("code").unwrap().is_none());
        assert!(
            input
                .required("code")
                .unwrap_err()
                .to_string()
                .contains("no code given")
        );
    }

    #[test]
    fn empty_line_is_not_end_of_input() {
        let mut input = lines(b"\n");
        assert_eq!(input.optional("code").unwrap().unwrap().as_str(), "");
    }

    #[test]
    fn bounded() {
        let exact = [b'a'; MAX_LINE_BYTES];
        assert!(lines(&exact).required("password").is_ok());
        let mut with_crlf = exact.to_vec();
        with_crlf.extend_from_slice(b"\r\n");
        assert!(lines(&with_crlf).required("password").is_ok());
        let huge = vec![b'a'; 10 * MAX_LINE_BYTES];
        let err = lines(&huge).required("password").unwrap_err();
        assert!(err.to_string().contains("longer than 4096 bytes"), "{err}");
        let mut long_line = vec![b'a'; MAX_LINE_BYTES + 1];
        long_line.push(b'\n');
        assert!(lines(&long_line).required("password").is_err());
    }

    #[test]
    fn only_yes_confirms() {
        for yes in ["y", "Y", "yes", " YES ", "Yes"] {
            assert!(is_yes(yes), "{yes}");
        }
        for no in ["", "n", "no", "ye", "yess", "y e s", "oui"] {
            assert!(!is_yes(no), "{no}");
        }
    }

    #[test]
    fn binary_is_refused() {
        let err = lines(b"\xff\xfe\x00abc\n")
            .required("password")
            .unwrap_err();
        assert_eq!(err.kind(), crate::core::error::ErrorKind::Invalid);
        let err = lines(b"\xff\xfeabc\n").required("password").unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }
}

//! `sparekey tui --demo`: the real console (the same [`update`](crate::tui::app::update) and
//! [`view`]) on an in-memory store of sample accounts, with a fixed clock and fixed randomness,
//! so teams can snapshot it and the README's pictures can be drawn from it. With a key file
//! ([`parse_keys`], [`run_script`]) it presses the keys itself and hands out every frame.
//!
//! Owns the demo's clock ([`DemoClock`]), randomness ([`DemoEntropy`]) and platform
//! ([`DemoPlatform`]), its sample data and the key-file syntax. They are production types under
//! their own names, not the test doubles: the doubles stay out of the binary, and the release
//! scan for them (`.ci/run`) stays meaningful. Only code holding a [`DemoToken`] can make a
//! demo clock, randomness or store, and only this module can make a token, so nothing but
//! `--demo` reaches them. Must never open a real store or key file, write a file the user did
//! not ask for (`--frames`), or touch the clipboard.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rand::{Rng, SeedableRng, rngs::ChaCha20Rng};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::core::clock::{Clock, UnixTime};
use crate::core::entropy::Entropy;
use crate::core::error::Error;
use crate::core::keys::MasterKey;
use crate::core::service::{Config, Service};
use crate::core::totp::code_at;
use crate::store::memory::VolatileStore;
use crate::tui::TuiOptions;
use crate::tui::app::{AppOptions, ClipboardUsed, ExportError, Msg};
use crate::tui::runtime::{Driver, Platform};
use crate::tui::ui::view;
use crate::tui::widgets::Theme;

/// Proof that the caller is this module: the demo's clock, randomness and store take one, and
/// only this module can make one (the field is private), so no other path builds them:
///
/// ```compile_fail,E0603
/// let token = sparekey::tui::demo::DemoToken(());
/// ```
#[derive(Debug)]
pub struct DemoToken(());

/// Where the demo's clock starts: 2024-05-01T12:34:50Z, 20 s into a TOTP step (the console
/// snapshots start there too, so the pictures and snapshots show the same dates).
pub const DEMO_START: UnixTime = 1_714_566_890;

/// The seed of the demo's randomness.
const DEMO_SEED: u64 = 7;

/// The password of every sample account.
pub const DEMO_PASSWORD: &str = "correct horse battery";

/// The kiosk operator password of `--demo --kiosk`.
pub const DEMO_OPERATOR_PASSWORD: &str = "demo operator";

/// The demo's clock: stands still at [`DEMO_START`] and moves only by `wait` lines.
#[derive(Debug)]
pub struct DemoClock(AtomicI64);

impl DemoClock {
    pub fn new(_token: &DemoToken) -> Self {
        Self(AtomicI64::new(DEMO_START))
    }
    fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for DemoClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// The demo's randomness: a ChaCha20 stream from a fixed seed, so every run makes the same
/// secrets and codes. Predictable by design: it only ever fills the demo's in-memory store.
#[derive(Debug)]
pub struct DemoEntropy(ChaCha20Rng);

impl DemoEntropy {
    pub fn new(_token: &DemoToken) -> Self {
        Self(ChaCha20Rng::seed_from_u64(DEMO_SEED))
    }
}

impl Entropy for DemoEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }
}

/// The demo's outside world: no clipboard, no files. Both are refused with a reason the screen
/// shows, rather than pretended.
#[derive(Debug, Default)]
pub struct DemoPlatform;

impl Platform for DemoPlatform {
    fn copy(&mut self, _text: &str) -> Result<ClipboardUsed, String> {
        Err("the demo never uses the clipboard".into())
    }
    fn clear_clipboard(&mut self) -> Result<ClipboardUsed, String> {
        Err("the demo never uses the clipboard".into())
    }
    fn export(&mut self, _path: &Path, _contents: &[u8]) -> Result<(), ExportError> {
        Err(ExportError::Other("the demo writes no files".into()))
    }
}

/// The demo's service: the in-memory store with the sample accounts (see [`seed`]).
fn demo_service(config: Config, options: &TuiOptions) -> Result<(Service, Arc<DemoClock>), Error> {
    let token = DemoToken(());
    let clock = Arc::new(DemoClock::new(&token));
    let mut entropy = DemoEntropy::new(&token);
    // First draw: the key, as a new store's would be.
    let key = MasterKey::generate(&mut entropy);
    let store = VolatileStore::for_demo(&token);
    let service = Service::new(
        Box::new(store),
        clock.clone(),
        Box::new(entropy),
        key,
        config,
    )?;
    seed(&service, clock.now())?;
    // Only for the kiosk, and last: the plain demo's randomness is drawn as it always was.
    if options.kiosk {
        service.set_operator_password(DEMO_OPERATOR_PASSWORD)?;
    }
    Ok((service, clock))
}

/// The sample accounts, all with [`DEMO_PASSWORD`]: `alice@example.com` (enrolled, 10 codes),
/// `bob` (no second factor) and `dave` (enrolled, 8 of his codes used, so 2 left: low).
fn seed(service: &Service, now: UnixTime) -> Result<(), Error> {
    enroll(service, now, "alice@example.com")?;
    service.create_account("bob", DEMO_PASSWORD)?;
    let dave = enroll(service, now, "dave")?;
    for code in dave.codes.iter().take(8) {
        service.login("dave", DEMO_PASSWORD, Some(code.canonical()))?;
    }
    Ok(())
}

fn enroll(
    service: &Service,
    now: UnixTime,
    name: &str,
) -> Result<crate::core::service::IssuedCodes, Error> {
    service.create_account(name, DEMO_PASSWORD)?;
    let enrollment = service.begin_enrollment(name, Some(DEMO_PASSWORD))?;
    let code = code_at(enrollment.secret.as_bytes(), now, enrollment.params)
        .ok_or_else(|| Error::Invalid("the demo's TOTP settings are not valid".into()))?;
    service.confirm_enrollment(name, &code)
}

/// The app's options in the demo: kiosk as asked, fixed paths (nothing is written there),
/// colour as asked.
fn app_options(service: &Service, options: &TuiOptions, theme: Theme) -> AppOptions {
    AppOptions {
        kiosk: options.kiosk,
        idle_timeout: options.idle_timeout,
        theme,
        export_dir: PathBuf::from("/home/demo/Documents"),
        totp: service.config().totp,
        home_dir: Some(PathBuf::from("/home/demo")),
    }
}

/// `sparekey tui --demo` without a key file: the console in this terminal, on the demo store.
pub fn run_interactive(config: Config, options: &TuiOptions) -> Result<(), Error> {
    let (service, _clock) = demo_service(config, options)?;
    let app_options = app_options(&service, options, Theme::from_env());
    crate::tui::run_with(service, DemoPlatform, app_options)
        .map_err(|e| Error::Io(format!("the console stopped on a terminal error: {e}")))
}

// ----- the key file --------------------------------------------------------------------------

/// The key-file syntax, for `sparekey tui --help` and the errors.
pub const KEYS_SYNTAX: &str = "\
Key files (--demo --keys FILE): one action per line; blank lines and lines starting with # are
ignored.
  n  q  ?  /  …       a single character is that key (case matters)
  Enter  Esc  Tab  Shift-Tab  Backspace  Delete  Space
  Up  Down  Left  Right  Home  End  PageUp  PageDown  F1 … F12
  Ctrl-U              Ctrl with a letter
  type alice          types the rest of the line after `type `, one key per character
  wait 2s             moves the demo clock on (s, m or h), as if that time had passed
Frame 0 is the opening screen; each action line draws one more frame, after every service call
it started has finished, so two runs print the same bytes. The demo store holds alice@example.com
and dave (enrolled; dave has 2 backup codes left) and bob (no second factor), all with the
password `correct horse battery`; the clock starts at 2024-05-01 12:34:50 UTC. With --kiosk, the
operator password is `demo operator`.";

/// One action of a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Key(KeyEvent),
    Type(String),
    /// Seconds to move the demo clock.
    Wait(u32),
}

/// A parsed key file: each action with its line number (from 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub actions: Vec<(usize, Action)>,
}

/// A line of a key file that means nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key file line {}: {} (the syntax is in `sparekey tui --help`)",
            self.line, self.reason
        )
    }
}

/// Reads a whole key file; the first bad line is the error, so nothing runs half a script.
pub fn parse_keys(text: &str) -> Result<Script, ScriptError> {
    let mut script = Script::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // A file written on Windows still reads the same.
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let action = parse_line(raw.trim_start()).map_err(|reason| ScriptError { line, reason })?;
        script.actions.push((line, action));
    }
    Ok(script)
}

fn parse_line(line: &str) -> Result<Action, String> {
    // `type ` keeps the rest of the line exactly, spaces included.
    if let Some(text) = line.strip_prefix("type ") {
        return Ok(Action::Type(text.to_string()));
    }
    let word = line.trim_end();
    if word == "type" {
        return Err("`type` needs the text to type after it".into());
    }
    if let Some(duration) = word.strip_prefix("wait ") {
        return parse_wait(duration.trim()).map(Action::Wait);
    }
    parse_key(word).map(Action::Key)
}

/// The longest `wait`: a year, far more than any countdown the console shows.
const MAX_WAIT: u32 = 366 * 24 * 3600;

fn parse_wait(text: &str) -> Result<u32, String> {
    let bad =
        || format!("`wait {text}` is not a duration such as `wait 2s`, `wait 5m` or `wait 1h`");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    let number: u32 = number.parse().map_err(|_| bad())?;
    match number.checked_mul(scale) {
        Some(seconds) if (1..=MAX_WAIT).contains(&seconds) => Ok(seconds),
        _ => Err(format!("`wait {text}` must be between 1s and 366 days")),
    }
}

fn parse_key(word: &str) -> Result<KeyEvent, String> {
    let plain = |code| KeyEvent::new(code, KeyModifiers::NONE);
    let mut chars = word.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Ok(plain(KeyCode::Char(c)));
    }
    if let Some(letter) = word
        .strip_prefix("Ctrl-")
        .or_else(|| word.strip_prefix("ctrl-"))
    {
        let mut letters = letter.chars();
        return match (letters.next(), letters.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Ok(KeyEvent::new(
                KeyCode::Char(c.to_ascii_lowercase()),
                KeyModifiers::CONTROL,
            )),
            _ => Err(format!("`{word}`: Ctrl- takes one letter, as in Ctrl-U")),
        };
    }
    let code = match word.to_ascii_lowercase().as_str() {
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "shift-tab" => return Ok(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
        "backspace" => KeyCode::Backspace,
        "delete" => KeyCode::Delete,
        "space" => KeyCode::Char(' '),
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        lower => match lower.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
            Some(n @ 1..=12) => KeyCode::F(n),
            _ => return Err(format!("`{word}` is not a key, `type …` or `wait …`")),
        },
    };
    Ok(plain(code))
}

// ----- the scripted run ----------------------------------------------------------------------

/// A frame size, `80x24` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u16,
    pub height: u16,
}

impl Default for FrameSize {
    fn default() -> Self {
        Self {
            width: 80,
            height: 24,
        }
    }
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The sizes `--size` accepts: below 80x24 the console only says it is too small, which is
/// worth a snapshot too; above these a frame is no longer a screen.
const WIDTHS: std::ops::RangeInclusive<u16> = 20..=400;
const HEIGHTS: std::ops::RangeInclusive<u16> = 6..=200;

/// Parses `--size`, e.g. `80x24`.
pub fn parse_size(text: &str) -> Result<FrameSize, String> {
    let bad = || {
        format!(
            "`{text}` is not a size WIDTHxHEIGHT from {}x{} to {}x{}, e.g. 80x24",
            WIDTHS.start(),
            HEIGHTS.start(),
            WIDTHS.end(),
            HEIGHTS.end()
        )
    };
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let width: u16 = w.parse().map_err(|_| bad())?;
    let height: u16 = h.parse().map_err(|_| bad())?;
    if !WIDTHS.contains(&width) || !HEIGHTS.contains(&height) {
        return Err(bad());
    }
    Ok(FrameSize { width, height })
}

/// One drawn frame: after which line of the key file (`None`: the opening screen).
#[derive(Debug, Clone)]
pub struct Frame {
    pub number: usize,
    pub line: Option<usize>,
    pub buffer: Buffer,
}

impl Frame {
    /// The frame as plain text: one line per row, trailing spaces cut, wide characters once.
    pub fn text(&self) -> String {
        let area = self.buffer.area;
        let mut out = String::new();
        for y in area.top()..area.bottom() {
            let mut row = String::new();
            let mut skip = 0usize;
            for x in area.left()..area.right() {
                let symbol = self.buffer[(x, y)].symbol();
                if skip == 0 {
                    row.push_str(symbol);
                }
                // A wide character covers the cells after it.
                skip = skip.max(unicode_width(symbol)).saturating_sub(1);
            }
            out.push_str(row.trim_end());
            out.push('\n');
        }
        out
    }
}

fn unicode_width(symbol: &str) -> usize {
    use ratatui::text::Span;
    Span::raw(symbol).width()
}

/// A scripted run that could not finish.
#[derive(Debug)]
pub enum DemoError {
    /// The key file asked for something the console could not take (exit 2).
    Script(ScriptError),
    /// The service, the worker or writing a frame failed.
    Failed(Error),
}

impl From<Error> for DemoError {
    fn from(e: Error) -> Self {
        DemoError::Failed(e)
    }
}

/// Runs `script` on a fresh demo store at `size` and hands each frame to `on_frame`, in order.
/// Service calls run on the worker thread, as in the terminal, and each key waits for them all
/// ([`Driver::wait_idle`]), so the frames are the same on every run.
pub fn run_script(
    script: &Script,
    config: Config,
    options: &TuiOptions,
    size: FrameSize,
    theme: Theme,
    mut on_frame: impl FnMut(&Frame) -> Result<(), Error>,
) -> Result<(), DemoError> {
    let (service, clock) = demo_service(config, options)?;
    let app_options = app_options(&service, options, theme);
    let mut driver =
        Driver::with_worker(service, DemoPlatform, app_options).map_err(worker_error)?;
    driver.send(Msg::Resize {
        width: size.width,
        height: size.height,
    });
    driver.wait_idle().map_err(worker_error)?;
    let mut terminal = Terminal::new(TestBackend::new(size.width, size.height))
        .map_err(|e| Error::Io(e.to_string()))?;
    let mut number = 0;
    let mut draw = |driver: &Driver<DemoPlatform>, line| {
        let completed = terminal
            .draw(|f| view(&driver.app, f))
            .map_err(|e| Error::Io(e.to_string()))?;
        let frame = Frame {
            number,
            line,
            buffer: completed.buffer.clone(),
        };
        number += 1;
        on_frame(&frame)
    };
    draw(&driver, None)?;
    let mut quit_at = None;
    for (line, action) in &script.actions {
        if let Some(at) = quit_at {
            return Err(DemoError::Script(ScriptError {
                line: *line,
                reason: format!("the console already quit at line {at}"),
            }));
        }
        act(&mut driver, &clock, action).map_err(worker_error)?;
        draw(&driver, Some(*line))?;
        if driver.app.quitting {
            quit_at = Some(*line);
        }
    }
    Ok(())
}

/// One action, then its consequences: keys one at a time, each waited for; a wait moves the
/// clock and lets the app see it, as the event loop does.
fn act(driver: &mut Driver<DemoPlatform>, clock: &DemoClock, action: &Action) -> io::Result<()> {
    match action {
        Action::Key(key) => {
            driver.key(*key);
            driver.wait_idle()
        }
        Action::Type(text) => {
            for c in text.chars() {
                driver.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
                driver.wait_idle()?;
            }
            Ok(())
        }
        Action::Wait(seconds) => {
            clock.advance(i64::from(*seconds));
            driver.tick();
            driver.wait_idle()
        }
    }
}

fn worker_error(e: io::Error) -> DemoError {
    DemoError::Failed(Error::Io(format!("the demo console failed: {e}")))
}

/// Where the frames of a scripted run go.
#[derive(Debug, Clone)]
pub enum FrameSink {
    /// Standard output, each frame after a `--- frame N` line.
    Stdout,
    /// One file per frame, `0000.txt`, `0001.txt`, … in a new or empty directory.
    Dir(PathBuf),
}

/// `sparekey tui --demo --keys FILE`: reads and checks the whole key file, then runs it.
pub fn run_keys(
    keys: &Path,
    config: Config,
    options: &TuiOptions,
    size: FrameSize,
    sink: &FrameSink,
) -> Result<(), DemoError> {
    let text = read_keys(keys)?;
    let script = parse_keys(&text).map_err(DemoError::Script)?;
    if let FrameSink::Dir(dir) = sink {
        prepare_dir(dir)?;
    }
    let mut stdout = io::stdout().lock();
    run_script(
        &script,
        config,
        options,
        size,
        Theme::plain(),
        |frame| match sink {
            FrameSink::Stdout => {
                let header = match frame.line {
                    None => format!("--- frame {}: start\n", frame.number),
                    Some(line) => format!("--- frame {}: line {line}\n", frame.number),
                };
                stdout
                    .write_all(header.as_bytes())
                    .and_then(|()| stdout.write_all(frame.text().as_bytes()))
                    .map_err(|e| Error::Io(format!("cannot write to standard output: {e}")))
            }
            FrameSink::Dir(dir) => {
                let path = dir.join(format!("{:04}.txt", frame.number));
                std::fs::write(&path, frame.text())
                    .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
            }
        },
    )?;
    stdout
        .flush()
        .map_err(|e| Error::Io(format!("cannot write to standard output: {e}")))?;
    Ok(())
}

/// The key file's text; `-` is standard input.
fn read_keys(path: &Path) -> Result<String, Error> {
    let result = if path == Path::new("-") {
        io::read_to_string(io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|e| Error::Invalid(format!("cannot read the key file {}: {e}", path.display())))
}

/// A frames directory must be new or empty, so no frame of an older, longer run is left among
/// the new ones.
fn prepare_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Invalid(format!(
                    "the frames directory {} is not empty: frames of another run would mix in",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display()))),
        Err(e) => Err(Error::Io(format!("cannot read {}: {e}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> Action {
        Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn every_kind_of_line_parses() {
        let script = parse_keys(
            "# a comment\n\nn\nEnter\nesc\nTab\nShift-Tab\nUp\nCtrl-U\nctrl-c\ntype  two  spaces \r\nwait 2s\nwait 5m\nF1\n?\n",
        )
        .unwrap();
        let ctrl = |c| Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
        assert_eq!(
            script.actions,
            vec![
                (3, key(KeyCode::Char('n'))),
                (4, key(KeyCode::Enter)),
                (5, key(KeyCode::Esc)),
                (6, key(KeyCode::Tab)),
                (
                    7,
                    Action::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT))
                ),
                (8, key(KeyCode::Up)),
                (9, ctrl('u')),
                (10, ctrl('c')),
                (11, Action::Type(" two  spaces ".into())),
                (12, Action::Wait(2)),
                (13, Action::Wait(300)),
                (14, key(KeyCode::F(1))),
                (15, key(KeyCode::Char('?'))),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        for (text, line, words) in [
            ("n\n\nEnterr\n", 3, "`Enterr` is not a key"),
            ("wait 2\n", 1, "not a duration"),
            ("wait 0s\n", 1, "between 1s"),
            ("wait 99999999h\n", 1, "between 1s"),
            ("# c\ntype\n", 2, "needs the text"),
            ("Ctrl-UU\n", 1, "one letter"),
            ("F13\n", 1, "not a key"),
        ] {
            let error = parse_keys(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(words), "{text:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("key file line {line}: "))
            );
        }
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(
            parse_size("80x24"),
            Ok(FrameSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            parse_size("120X40").map(|s| s.to_string()),
            Ok("120x40".into())
        );
        for bad in [
            "80", "x24", "80x", "0x0", "80x24x1", "-80x24", "9999x24", "80x5", "ax b",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    fn frames_of(keys: &str) -> Vec<(usize, Option<usize>, String)> {
        let script = parse_keys(keys).unwrap();
        let mut frames = vec![];
        run_script(
            &script,
            Config::default(),
            &TuiOptions::default(),
            FrameSize::default(),
            Theme::plain(),
            |f| {
                frames.push((f.number, f.line, f.text()));
                Ok(())
            },
        )
        .unwrap();
        frames
    }

    #[test]
    fn a_script_draws_the_opening_screen_then_one_frame_per_line() {
        let frames = frames_of("n\n# a comment\ntype carol\nEsc\n");
        let numbers: Vec<_> = frames.iter().map(|(n, l, _)| (*n, *l)).collect();
        assert_eq!(
            numbers,
            vec![(0, None), (1, Some(1)), (2, Some(3)), (3, Some(4))]
        );
        let opening = &frames[0].2;
        for sample in ["3 accounts", "alice@example.com", "bob", "dave", "2/10"] {
            assert!(opening.contains(sample), "{sample}:\n{opening}");
        }
        assert!(frames[1].2.contains("New account"), "{}", frames[1].2);
        assert!(
            frames[2].2.contains("Account name: carol"),
            "{}",
            frames[2].2
        );
        assert!(frames[3].2.contains("3 accounts"), "{}", frames[3].2);
        assert_eq!(opening.lines().count(), 24);
        assert!(opening.lines().all(|l| l.chars().count() <= 80));
    }

    #[test]
    fn only_wait_moves_the_demo_clock() {
        // Six wrong passwords for bob start a 30 s delay; only `wait` counts it down.
        let mut keys = String::from("j\nl\n");
        for _ in 0..6 {
            keys.push_str("type wrong password\nEnter\n");
        }
        keys.push_str("Left\nwait 1s\nwait 1m\n");
        let frames = frames_of(&keys);
        let texts: Vec<&str> = frames[frames.len() - 4..]
            .iter()
            .map(|f| f.2.as_str())
            .collect();
        assert!(
            texts[0].contains("next attempt allowed in 30 s"),
            "{}",
            texts[0]
        );
        assert!(
            texts[1].contains("next attempt allowed in 30 s"),
            "{}",
            texts[1]
        );
        assert!(
            texts[2].contains("next attempt allowed in 29 s"),
            "{}",
            texts[2]
        );
        assert!(texts[3].contains("you may try again now"), "{}", texts[3]);
    }

    #[test]
    fn the_kiosk_demo_has_its_operator_password_and_its_idle_clear() {
        let options = TuiOptions {
            kiosk: true,
            ..TuiOptions::default()
        };
        let script = parse_keys("Esc\ntype demo operator\nEnter\nwait 61s\n").unwrap();
        let mut frames = vec![];
        run_script(
            &script,
            Config::default(),
            &options,
            FrameSize::default(),
            Theme::plain(),
            |f| {
                frames.push(f.text());
                Ok(())
            },
        )
        .unwrap();
        assert!(
            frames[0].contains("Sign in") && frames[0].contains("KIOSK"),
            "{}",
            frames[0]
        );
        assert!(frames[1].contains("Operator password"), "{}", frames[1]);
        assert!(frames[3].contains("3 accounts"), "{}", frames[3]);
        assert!(frames[4].contains("the console was idle"), "{}", frames[4]);
    }

    #[test]
    fn keys_after_quitting_are_an_error() {
        let script = parse_keys("q\nn\n").unwrap();
        let result = run_script(
            &script,
            Config::default(),
            &TuiOptions::default(),
            FrameSize::default(),
            Theme::plain(),
            |_| Ok(()),
        );
        match result {
            Err(DemoError::Script(e)) => {
                assert_eq!(e.line, 2);
                assert!(e.reason.contains("already quit at line 1"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_demo_platform_refuses_clipboard_and_files() {
        let mut p = DemoPlatform;
        assert!(p.copy("x").is_err());
        assert!(p.clear_clipboard().is_err());
        assert!(matches!(
            p.export(Path::new("/tmp/x"), b"x"),
            Err(ExportError::Other(_))
        ));
    }
}

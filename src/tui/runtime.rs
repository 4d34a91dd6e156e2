//! The runtime: carries out the [`Effect`]s that [`update`] returns and feeds their results back
//! as [`Msg`]s. Service calls go through [`execute_call`]; the clipboard and the file system
//! through a [`Platform`], real in the terminal and recording in tests, so UI tests never touch
//! the disk or the clipboard. Also owns the terminal event loop. Must never hold application
//! state of its own or decide anything a screen shows.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};
use zeroize::Zeroizing;

use crate::core::error::Error;
use crate::core::service::Service;
use crate::tui::app::{
    App, AppOptions, Call, ClipboardUsed, Effect, ExportError, Msg, Outcome, SettingsData, update,
};
use crate::tui::screens::settings::AUDIT_LIMIT;
use crate::tui::ui::view;

/// The outside world the console touches besides the service.
pub trait Platform {
    fn copy(&mut self, text: &str) -> Result<ClipboardUsed, String>;
    fn clear_clipboard(&mut self) -> Result<ClipboardUsed, String>;
    /// Writes a new private file; never overwrites.
    fn export(&mut self, path: &Path, contents: &[u8]) -> Result<(), ExportError>;
}

/// Runs one service call.
pub fn execute_call(service: &Service, call: Call) -> Outcome {
    match call {
        Call::ListAccountsPage { after, limit } => {
            let result = service.list_accounts_page(after.as_deref(), limit);
            Outcome::AccountsPage {
                after,
                limit,
                result,
            }
        }
        Call::CreateAccount { name, password } => {
            let result = service.create_account(&name, &password);
            Outcome::Created { name, result }
        }
        Call::BeginEnrollment { name, password } => {
            Outcome::EnrollmentBegun(service.begin_enrollment(&name, Some(&password)))
        }
        Call::ConfirmEnrollment { name, code } => {
            Outcome::Issued(service.confirm_enrollment(&name, &code))
        }
        Call::StartLogin { name, password } => {
            let result = service.start_login(&name, &password);
            Outcome::LoginStarted { name, result }
        }
        Call::FinishLogin { pending, code } => {
            let result = service.finish_login(&pending, &code);
            Outcome::LoginFinished { pending, result }
        }
        Call::Gate { name } => Outcome::Gate(service.gate(&name)),
        Call::LoadSettings { name } => Outcome::Settings(load_settings(service, &name)),
        Call::Regenerate { name, password } => {
            Outcome::Issued(service.regenerate_codes(&name, &password))
        }
        Call::DisableTwoFactor {
            name,
            password,
            code,
        } => Outcome::Disabled(service.disable_two_factor(&name, &password, &code)),
        Call::Unlock { name } => {
            let result = service.unlock(&name);
            Outcome::Unlocked { name, result }
        }
        Call::HasOperator => Outcome::HasOperator(service.has_operator_password()),
        Call::SetOperator { password } => {
            Outcome::OperatorSet(service.set_operator_password(&password))
        }
        Call::StartOperatorSession { password } => {
            Outcome::OperatorSession(service.start_operator_session(&password))
        }
    }
}

fn load_settings(service: &Service, name: &str) -> Result<SettingsData, Error> {
    Ok(SettingsData {
        summary: service.account_summary(name)?,
        codes: service.code_status(name)?,
        audit: service.audit_log(Some(name), AUDIT_LIMIT)?,
    })
}

/// The app, the service and the platform wired together: what the event loop and the state
/// tests both drive.
pub struct Driver<P: Platform> {
    pub app: App,
    pub service: Service,
    pub platform: P,
    /// [`Effect::Later`] calls not run yet, oldest first.
    later: VecDeque<Call>,
}

impl<P: Platform> Driver<P> {
    pub fn new(service: Service, platform: P, options: AppOptions) -> Self {
        let now = service.now();
        let (app, effects) = App::new(options, now);
        let mut driver = Self {
            app,
            service,
            platform,
            later: VecDeque::new(),
        };
        driver.run(effects);
        driver
    }

    /// Applies a message and everything it sets off.
    pub fn send(&mut self, msg: Msg) {
        let effects = update(&mut self.app, msg);
        self.run(effects);
    }

    pub fn key(&mut self, key: KeyEvent) {
        self.send(Msg::Key(key));
    }

    /// Sends the service clock's time.
    pub fn tick(&mut self) {
        let now = self.service.now();
        self.send(Msg::Tick(now));
    }

    /// Whether [`Effect::Later`] work is waiting for [`Driver::step`].
    pub fn busy(&self) -> bool {
        !self.later.is_empty()
    }

    /// Runs the oldest waiting [`Effect::Later`] call and everything its result sets off (which
    /// may queue the next one); `false` if nothing was waiting. The event loop calls it when no
    /// input is pending, so a key waits for at most one such call.
    pub fn step(&mut self) -> bool {
        let Some(call) = self.later.pop_front() else {
            return false;
        };
        let outcome = execute_call(&self.service, call);
        self.send(Msg::Done(outcome));
        true
    }

    /// Runs all waiting [`Effect::Later`] work to the end (tests and benches: the same order
    /// the event loop would run it in, without input in between).
    pub fn settle(&mut self) {
        while self.step() {}
    }

    fn run(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let msg = match effect {
                Effect::Call(call) => Msg::Done(execute_call(&self.service, call)),
                Effect::Later(call) => {
                    self.later.push_back(call);
                    continue;
                }
                Effect::Copy(text) => Msg::Copied(self.platform.copy(&text)),
                Effect::ClearClipboard => Msg::ClipboardCleared(self.platform.clear_clipboard()),
                Effect::Export { path, contents } => {
                    let result = self.platform.export(&path, contents.as_bytes());
                    Msg::Exported { path, result }
                }
                Effect::Quit => continue,
            };
            queue.extend(update(&mut self.app, msg));
        }
    }
}

/// A platform for tests: remembers what was copied and exported, in memory.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct RecordingPlatform {
    pub clipboard: Option<Zeroizing<String>>,
    pub files: Vec<(std::path::PathBuf, Zeroizing<String>)>,
    /// Pretend the desktop clipboard fails, to exercise the OSC 52 fallback's reporting.
    pub osc52_only: bool,
}

#[cfg(any(test, feature = "test-support"))]
impl Platform for RecordingPlatform {
    fn copy(&mut self, text: &str) -> Result<ClipboardUsed, String> {
        self.clipboard = Some(Zeroizing::new(text.to_string()));
        Ok(if self.osc52_only {
            ClipboardUsed::Osc52
        } else {
            ClipboardUsed::System
        })
    }
    fn clear_clipboard(&mut self) -> Result<ClipboardUsed, String> {
        self.clipboard = None;
        Ok(if self.osc52_only {
            ClipboardUsed::Osc52
        } else {
            ClipboardUsed::System
        })
    }
    fn export(&mut self, path: &Path, contents: &[u8]) -> Result<(), ExportError> {
        if self.files.iter().any(|(p, _)| p == path) {
            return Err(ExportError::Exists);
        }
        let text = Zeroizing::new(String::from_utf8_lossy(contents).into_owned());
        self.files.push((path.to_path_buf(), text));
        Ok(())
    }
}

/// The real clipboard and file system.
pub struct RealPlatform {
    /// Kept for the app's lifetime: on X11 the owner serves the clipboard, so dropping it would
    /// empty the clipboard.
    clipboard: Option<arboard::Clipboard>,
}

impl Default for RealPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl RealPlatform {
    pub fn new() -> Self {
        let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        let clipboard = if has_display {
            arboard::Clipboard::new().ok()
        } else {
            None
        };
        Self { clipboard }
    }

    fn system_copy(&mut self, text: &str) -> Option<ClipboardUsed> {
        let clipboard = self.clipboard.as_mut()?;
        #[cfg(target_os = "linux")]
        let result = {
            use arboard::SetExtLinux;
            clipboard.set().exclude_from_history().text(text)
        };
        #[cfg(not(target_os = "linux"))]
        let result = clipboard.set_text(text);
        result.ok().map(|()| ClipboardUsed::System)
    }

    /// OSC 52: the terminal puts the text in the clipboard of the machine the user sits at,
    /// which is what works over SSH.
    fn osc52(text: &str) -> Result<ClipboardUsed, String> {
        let encoded = Zeroizing::new(data_encoding::BASE64.encode(text.as_bytes()));
        let mut sequence = Zeroizing::new(String::with_capacity(encoded.len() + 16));
        sequence.push_str("\x1b]52;c;");
        sequence.push_str(&encoded);
        sequence.push('\x07');
        let mut out = io::stdout();
        ratatui::crossterm::execute!(out, ratatui::crossterm::style::Print(sequence.as_str()))
            .and_then(|()| out.flush())
            .map(|()| ClipboardUsed::Osc52)
            .map_err(|e| e.to_string())
    }
}

impl Platform for RealPlatform {
    fn copy(&mut self, text: &str) -> Result<ClipboardUsed, String> {
        match self.system_copy(text) {
            Some(used) => Ok(used),
            None => Self::osc52(text),
        }
    }

    fn clear_clipboard(&mut self) -> Result<ClipboardUsed, String> {
        if let Some(c) = self.clipboard.as_mut()
            && c.clear().is_ok()
        {
            return Ok(ClipboardUsed::System);
        }
        // An empty OSC 52 payload is not cleared by every terminal; a single space is.
        Self::osc52(" ")
    }

    fn export(&mut self, path: &Path, contents: &[u8]) -> Result<(), ExportError> {
        crate::app::write_new_file(path, contents).map_err(|e| match e {
            crate::app::NewFileError::Exists(_) => ExportError::Exists,
            // The screen names the path itself: pass on only the system's reason.
            crate::app::NewFileError::Io(_, e) => ExportError::Other(e.to_string()),
        })
    }
}

/// The terminal event loop. Draws, waits for a key or resize (at most until the next second, so
/// countdowns and the idle timer move), and feeds the app. While [`Effect::Later`] work waits
/// (the rest of a long account list), it only looks for input without waiting and runs one
/// piece of that work when there is none, so keys are served between chunks.
pub fn event_loop<B: ratatui::backend::Backend>(
    terminal: &mut ratatui::Terminal<B>,
    driver: &mut Driver<RealPlatform>,
) -> io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let size = terminal.size().map_err(io::Error::other)?;
    driver.send(Msg::Resize {
        width: size.width,
        height: size.height,
    });
    loop {
        terminal
            .draw(|frame| view(&driver.app, frame))
            .map_err(io::Error::other)?;
        if driver.app.quitting {
            return Ok(());
        }
        let wait = if driver.busy() {
            Duration::ZERO
        } else {
            Duration::from_millis(250)
        };
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => driver.key(key),
                // Redrawn at the top of the loop at the new size.
                Event::Resize(width, height) => driver.send(Msg::Resize { width, height }),
                _ => {}
            }
        } else {
            driver.step();
        }
        if driver.service.now() != driver.app.now {
            driver.tick();
        }
    }
}

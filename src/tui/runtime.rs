//! The runtime: carries out the [`Effect`]s that [`update`] returns and feeds their results back
//! as [`Msg`]s. Service calls go through [`execute_call`]; the clipboard and the file system
//! through a [`Platform`], real in the terminal and recording in tests, so UI tests never touch
//! the disk or the clipboard. Also owns the terminal event loop. Must never hold application
//! state of its own or decide anything a screen shows.
//!
//! # Where service calls run
//! In the terminal, on one worker thread ([`Driver::with_worker`]), so a password hash never
//! freezes the screen: the loop keeps drawing and reading keys, and results come back through
//! [`Driver::pump`]. The worker runs its calls strictly one at a time, in the order they were
//! made (the store contract wants each face's effects one at a time), and the app holds keys
//! back while a call runs (see [`App::typed_ahead`]). Tests and benches run calls inline
//! ([`Driver::new`]) or hold them until released ([`Driver::hold_calls`]): the same update and
//! view code, with a synchronous executor, so they stay deterministic. The scripted demo
//! ([`crate::tui::demo`]) keeps the worker and waits for it after every key
//! ([`Driver::wait_idle`]), which is deterministic too.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};
use zeroize::Zeroizing;

use crate::core::audit::KioskEvent;
use crate::core::error::Error;
use crate::core::service::Service;
use crate::core::step_up::StepUp;
use crate::tui::app::{
    App, AppOptions, Call, ClipboardUsed, Effect, ExportError, Msg, Outcome, Proof, SettingsData,
    update,
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
        Call::BeginEnrollment { name, proof } => match proof {
            Proof::Password(password) => Outcome::EnrollmentBegun {
                result: service.begin_enrollment(&name, Some(&password)),
                step_up: None,
            },
            proof => match step_up(service, &name, proof) {
                Ok(step_up) => Outcome::EnrollmentBegun {
                    result: service.begin_reenrollment(&name, &step_up),
                    step_up: Some(step_up),
                },
                Err(e) => Outcome::EnrollmentBegun {
                    result: Err(e),
                    step_up: None,
                },
            },
        },
        Call::ConfirmEnrollment {
            name,
            code,
            step_up,
        } => {
            let result = match &step_up {
                Some(proof) => service.confirm_reenrollment(&name, &code, proof),
                None => service.confirm_enrollment(&name, &code),
            };
            Outcome::Confirmed { result, step_up }
        }
        Call::StartLogin { name, password } => {
            let result = service.start_login(&name, &password);
            Outcome::LoginStarted { name, result }
        }
        Call::FinishLogin { pending, code } => {
            let (result, step_up) = match service.finish_login_with_step_up(&pending, &code) {
                Ok((success, step_up)) => (Ok(success), Some(step_up)),
                Err(e) => (Err(e), None),
            };
            Outcome::LoginFinished {
                pending,
                result,
                step_up,
            }
        }
        Call::Gate { name } => Outcome::Gate(service.gate(&name)),
        Call::LoadSettings { name } => Outcome::Settings(load_settings(service, &name)),
        Call::StepUp {
            name,
            password,
            code,
        } => Outcome::SteppedUp(service.step_up(&name, &password, &code)),
        Call::Regenerate { name, proof } => match step_up(service, &name, proof) {
            Ok(step_up) => Outcome::Issued {
                result: service.regenerate_codes(&name, &step_up),
                step_up: Some(step_up),
            },
            Err(e) => Outcome::Issued {
                result: Err(e),
                step_up: None,
            },
        },
        Call::DisableTwoFactor { name, proof } => match step_up(service, &name, proof) {
            Ok(step_up) => Outcome::Disabled {
                result: service.disable_two_factor(&name, &step_up),
                step_up: Some(step_up),
            },
            Err(e) => Outcome::Disabled {
                result: Err(e),
                step_up: None,
            },
        },
        Call::ConfirmCodes { name, set_id } => {
            Outcome::CodesConfirmed(service.confirm_codes(&name, set_id))
        }
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

/// The step-up a call's proof stands for: the one held, or a login with the password and code
/// typed. The password alone makes none.
fn step_up(service: &Service, name: &str, proof: Proof) -> Result<StepUp, Error> {
    match proof {
        Proof::StepUp(held) => Ok(held),
        Proof::PasswordAndCode { password, code } => service.step_up(name, &password, &code),
        Proof::Password(_) => Err(crate::core::step_up::needed("that")),
    }
}

fn load_settings(service: &Service, name: &str) -> Result<SettingsData, Error> {
    Ok(SettingsData {
        summary: service.account_summary(name)?,
        codes: service.code_status(name)?,
        audit: service.audit_log(Some(name), AUDIT_LIMIT)?,
    })
}

/// Whether a call came from [`Effect::Call`] or [`Effect::Later`]: its result goes back as
/// [`Msg::Done`] or [`Msg::LaterDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Now,
    Later,
}

impl Kind {
    fn done(self, outcome: Outcome) -> Msg {
        match self {
            Kind::Now => Msg::Done(outcome),
            Kind::Later => Msg::LaterDone(outcome),
        }
    }
}

/// What the worker runs: a call, or a kiosk event for the audit log.
enum Job {
    Call(Kind, Call),
    Audit(KioskEvent),
}

impl Job {
    /// Runs the job; its answer is the message for the app.
    fn run(self, service: &Service) -> Msg {
        match self {
            Job::Call(kind, call) => kind.done(execute_call(service, call)),
            Job::Audit(event) => Msg::Audited(service.kiosk_event(event)),
        }
    }
}

/// The one thread that runs service calls for the terminal loop.
struct Worker {
    jobs: Option<Sender<Job>>,
    results: Receiver<Msg>,
    handle: Option<JoinHandle<()>>,
    /// Calls sent and not yet answered.
    in_flight: usize,
}

impl Worker {
    fn start(service: Arc<Service>) -> io::Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, results) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("sparekey-service".into())
            .spawn(move || {
                for job in inbox {
                    if outbox.send(job.run(&service)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            results,
            handle: Some(handle),
            in_flight: 0,
        })
    }

    fn send(&mut self, job: Job) {
        // A send fails only if the thread is gone; `pump` then reports it.
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_ok()
        {
            self.in_flight += 1;
        }
    }
}

impl Drop for Worker {
    /// Lets the jobs sent finish (their store writes are not cut short: a kiosk's quit is
    /// audited after the loop ends), then ends the thread.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// How a [`Driver`] runs [`Effect::Call`]s.
enum Calls {
    /// At once, inside [`Driver::send`].
    Inline,
    /// Kept, oldest first, until [`Driver::release_call`].
    Held(VecDeque<Call>),
    /// On the worker thread; answers come in through [`Driver::pump`].
    Worker(Worker),
}

/// The app, the service and the platform wired together: what the event loop and the state
/// tests both drive.
pub struct Driver<P: Platform> {
    pub app: App,
    pub service: Arc<Service>,
    pub platform: P,
    /// [`Effect::Later`] calls not run yet, oldest first.
    later: VecDeque<Call>,
    calls: Calls,
}

impl<P: Platform> Driver<P> {
    /// A driver that runs service calls inline: deterministic, for tests and benches.
    pub fn new(service: Service, platform: P, options: AppOptions) -> Self {
        Self::build(Arc::new(service), platform, options, Calls::Inline)
    }

    /// A driver that runs service calls on one worker thread (the terminal's).
    pub fn with_worker(service: Service, platform: P, options: AppOptions) -> io::Result<Self> {
        let service = Arc::new(service);
        let worker = Worker::start(service.clone())?;
        Ok(Self::build(
            service,
            platform,
            options,
            Calls::Worker(worker),
        ))
    }

    fn build(service: Arc<Service>, platform: P, options: AppOptions, calls: Calls) -> Self {
        let now = service.now();
        let (app, effects) = App::new(options, now);
        let mut driver = Self {
            calls,
            app,
            service,
            platform,
            later: VecDeque::new(),
        };
        // The first effects are returned by `App::new`, not by `update`: count their calls.
        driver.app.calls_running = effects
            .iter()
            .filter(|e| matches!(e, Effect::Call(_)))
            .count();
        driver.run(effects);
        driver
    }

    /// From now on, keeps each [`Effect::Call`] until [`Driver::release_call`], so a test can
    /// look at the app while the call is running.
    pub fn hold_calls(&mut self) {
        self.calls = Calls::Held(VecDeque::new());
    }

    /// Runs the oldest held call and everything its result sets off; `false` if none was held.
    pub fn release_call(&mut self) -> bool {
        let Calls::Held(held) = &mut self.calls else {
            return false;
        };
        let Some(call) = held.pop_front() else {
            return false;
        };
        let outcome = execute_call(&self.service, call);
        self.send(Msg::Done(outcome));
        true
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

    /// Whether [`Effect::Later`] work is waiting, or a call is running on the worker.
    pub fn busy(&self) -> bool {
        let in_flight = match &self.calls {
            Calls::Worker(w) => w.in_flight > 0,
            Calls::Inline | Calls::Held(_) => false,
        };
        in_flight || !self.later.is_empty()
    }

    /// Runs the oldest waiting [`Effect::Later`] call inline and everything its result sets off
    /// (which may queue the next one); `false` if nothing was waiting. With a worker, hands it
    /// to [`Driver::pump`] instead.
    pub fn step(&mut self) -> bool {
        if let Calls::Worker(_) = self.calls {
            return self.pump().unwrap_or(false);
        }
        let Some(call) = self.later.pop_front() else {
            return false;
        };
        let outcome = execute_call(&self.service, call);
        self.send(Msg::LaterDone(outcome));
        true
    }

    /// Runs all waiting [`Effect::Later`] work to the end (tests and benches: the same order
    /// the event loop would run it in, without input in between).
    pub fn settle(&mut self) {
        while self.step() {}
    }

    /// Blocks until no call is running or waiting: every worker answer fed back and every
    /// [`Effect::Later`] call run, in the order the event loop would run them. The scripted demo
    /// calls it after each key, so what a frame shows never depends on how fast the worker was.
    /// An error if the worker died.
    pub fn wait_idle(&mut self) -> io::Result<()> {
        loop {
            let Calls::Worker(worker) = &mut self.calls else {
                self.settle();
                return Ok(());
            };
            if worker.in_flight > 0 {
                let msg = worker
                    .results
                    .recv()
                    .map_err(|_| io::Error::other("the service worker stopped"))?;
                worker.in_flight -= 1;
                self.send(msg);
            } else if !self.pump()? {
                return Ok(());
            }
        }
    }

    /// With a worker: feeds every answer that arrived back into the app, then, if the worker is
    /// idle, hands it the oldest [`Effect::Later`] call (so a key's call waits behind at most
    /// one piece of that work). `true` if anything happened; an error if the worker died.
    pub fn pump(&mut self) -> io::Result<bool> {
        let mut happened = false;
        loop {
            let Calls::Worker(worker) = &mut self.calls else {
                return Ok(happened);
            };
            match worker.results.try_recv() {
                Ok(msg) => {
                    worker.in_flight -= 1;
                    happened = true;
                    self.send(msg);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if worker.in_flight == 0 => break,
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the service worker stopped"));
                }
            }
        }
        if let Calls::Worker(worker) = &mut self.calls
            && worker.in_flight == 0
            && let Some(call) = self.later.pop_front()
        {
            worker.send(Job::Call(Kind::Later, call));
            happened = true;
        }
        Ok(happened)
    }

    fn run(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let msg = match effect {
                Effect::Call(call) => match &mut self.calls {
                    Calls::Inline => Msg::Done(execute_call(&self.service, call)),
                    Calls::Held(held) => {
                        held.push_back(call);
                        continue;
                    }
                    Calls::Worker(worker) => {
                        worker.send(Job::Call(Kind::Now, call));
                        continue;
                    }
                },
                // Never held: a test that holds calls still sees the kiosk's events.
                Effect::Audit(event) => match &mut self.calls {
                    Calls::Worker(worker) => {
                        worker.send(Job::Audit(event));
                        continue;
                    }
                    Calls::Inline | Calls::Held(_) => Msg::Audited(self.service.kiosk_event(event)),
                },
                Effect::Later(call) => {
                    self.later.push_back(call);
                    continue;
                }
                Effect::Copy(text) => Msg::Copied(self.platform.copy(&text)),
                Effect::ClearClipboard => Msg::ClipboardCleared(self.platform.clear_clipboard()),
                Effect::Export { path, contents } => {
                    // Messages name the file absolutely, wherever the console was started.
                    let path = std::path::absolute(&path).unwrap_or(path);
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

/// The terminal event loop. Takes in the worker's answers, draws, waits for a key or resize (at
/// most until the next second, so countdowns and the idle timer move; only briefly while the
/// worker is busy or [`Effect::Later`] work waits, so answers show at once), and feeds the app.
/// Returns when the app quits or once `stop` is set (a signal asked the console to end), and
/// fails once the terminal is gone, so the caller restores what it can either way.
pub fn event_loop<B: ratatui::backend::Backend, P: Platform>(
    terminal: &mut ratatui::Terminal<B>,
    driver: &mut Driver<P>,
    stop: &AtomicBool,
) -> io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let size = terminal.size().map_err(io::Error::other)?;
    driver.send(Msg::Resize {
        width: size.width,
        height: size.height,
    });
    let input = crate::tui::tty::TerminalInput::open()?;
    loop {
        driver.pump()?;
        terminal
            .draw(|frame| view(&driver.app, frame))
            .map_err(io::Error::other)?;
        if driver.app.quitting || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let wait = if driver.busy() {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(250)
        };
        // The wait is ours, not crossterm's: it spins on a terminal that is gone (see `tty`).
        let wait = input.wait(wait)?;
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => driver.key(key),
                // Redrawn at the top of the loop at the new size.
                Event::Resize(width, height) => driver.send(Msg::Resize { width, height }),
                _ => {}
            }
        }
        if driver.service.now() != driver.app.now {
            driver.tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ratatui::crossterm::event::{KeyCode, KeyModifiers};

    use super::*;
    use crate::core::clock::ManualClock;
    use crate::core::entropy::SeededEntropy;
    use crate::core::password::HashParams;
    use crate::core::service::Config;
    use crate::core::totp::TotpParams;
    use crate::tui::app::Screen;
    use crate::tui::widgets::Theme;

    const PASSWORD: &str = "correct horse battery";

    fn driver() -> Driver<RecordingPlatform> {
        let config = Config {
            hash_params: HashParams::TEST_ONLY,
            ..Config::default()
        };
        let clock = Arc::new(ManualClock::new(1_714_566_890));
        let service = crate::app::open_in_memory(config, clock, Box::new(SeededEntropy::new(7)));
        // More accounts than the first page (200), so the list's rest comes as Effect::Later work.
        for i in 0..300 {
            service
                .create_account(&format!("user{i:03}"), PASSWORD)
                .unwrap();
        }
        let options = AppOptions {
            kiosk: false,
            idle_timeout: Duration::from_secs(60),
            theme: Theme::plain(),
            export_dir: PathBuf::from("/nowhere"),
            totp: TotpParams::default(),
            home_dir: None,
        };
        Driver::with_worker(service, RecordingPlatform::default(), options).unwrap()
    }

    fn key(d: &mut Driver<RecordingPlatform>, code: KeyCode) {
        d.key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    #[test]
    fn wait_idle_returns_once_the_worker_and_the_later_work_are_done() {
        let mut d = driver();
        // Counted down only as answers are taken in, so this holds however fast the worker is.
        assert!(d.busy(), "the first page is on the worker");
        d.wait_idle().unwrap();
        assert!(!d.busy() && !d.app.working());
        let Screen::Accounts(accounts) = &d.app.screen else {
            panic!("{:?}", d.app.screen)
        };
        assert_eq!(accounts.loaded_len(), 300, "every page was loaded");
        assert!(!accounts.is_loading());

        key(&mut d, KeyCode::Char('l'));
        for c in PASSWORD.chars() {
            key(&mut d, KeyCode::Char(c));
        }
        key(&mut d, KeyCode::Enter);
        d.wait_idle().unwrap();
        assert!(!d.busy() && !d.app.working());
        assert!(
            matches!(d.app.screen, Screen::Secure(_)),
            "{:?}",
            d.app.status
        );
    }
}

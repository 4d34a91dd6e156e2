//! The application state and its one transition function, Elm style: [`update`] takes a [`Msg`]
//! (a key, a clock tick, the result of an effect) and returns the [`Effect`]s to run. Owns
//! navigation, the status line, the help overlay, quitting, kiosk idle clearing and the
//! clipboard-clear offer, and holds the kiosk operator's session. Must never call the service,
//! touch the terminal, the clipboard or the disk, nor read the system clock: all of that is an
//! [`Effect`] run by [`crate::tui::runtime`], and time arrives as [`Msg::Tick`] from the
//! service's clock. Must never decide what needs the kiosk operator or when a session ends:
//! [`Cx`] asks the core's [`KioskPolicy`] for every screen change and service call.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use zeroize::Zeroizing;

use crate::core::account::AccountSummary;
use crate::core::audit::{AuditEvent, KioskEvent};
use crate::core::clock::UnixTime;
use crate::core::error::Error;
use crate::core::kiosk::{Action, KioskPolicy, OperatorSession};
use crate::core::service::{
    CodeStatus, Enrollment, IssuedCodes, LoginStep, LoginSuccess, PendingLogin,
};
use crate::core::step_up::StepUp;
use crate::core::throttle::Gate;
use crate::core::totp::TotpParams;
use crate::tui::keys::KeyHint;
use crate::tui::screens::{
    accounts::Accounts, codes::Codes, enroll::Enroll, login::Login, new_account::NewAccount,
    operator::Operator, secure::Secure, settings::Settings,
};
use crate::tui::widgets::Theme;

/// Keys kept while a call runs (see [`App::typed_ahead`]); more are dropped.
pub const TYPE_AHEAD_KEYS: usize = 64;

/// Shown on the status line while a service call runs.
pub const WORKING: &str = "working…";

/// Seconds after a copy before offering to clear the clipboard.
pub const CLIPBOARD_OFFER_SECS: i64 = 60;

/// While backup codes are on a kiosk's screen, the idle clear waits at least this long: they
/// are being written down by hand, and once cleared they can never be shown again.
pub const CODES_IDLE_SECS: i64 = 600;

/// Seconds before a kiosk's idle clear of backup codes during which a countdown warns.
pub const CODES_IDLE_WARNING_SECS: i64 = 90;

/// The same warning on other screens, as a share of the idle time (a quarter: 15 s of 60).
const IDLE_WARNING_SHARE: i64 = 4;

/// One variant per screen; each screen's state, keys and drawing live in its own file.
#[derive(Debug)]
pub enum Screen {
    Accounts(Accounts),
    NewAccount(NewAccount),
    Enroll(Enroll),
    Codes(Codes),
    Login(Login),
    Secure(Secure),
    Settings(Settings),
    Operator(Operator),
}

impl Screen {
    pub fn component(&self) -> &dyn Component {
        match self {
            Screen::Accounts(s) => s,
            Screen::NewAccount(s) => s,
            Screen::Enroll(s) => s,
            Screen::Codes(s) => s,
            Screen::Login(s) => s,
            Screen::Secure(s) => s,
            Screen::Settings(s) => s,
            Screen::Operator(s) => s,
        }
    }
    pub fn component_mut(&mut self) -> &mut dyn Component {
        match self {
            Screen::Accounts(s) => s,
            Screen::NewAccount(s) => s,
            Screen::Enroll(s) => s,
            Screen::Codes(s) => s,
            Screen::Login(s) => s,
            Screen::Secure(s) => s,
            Screen::Settings(s) => s,
            Screen::Operator(s) => s,
        }
    }
    pub fn keys(&self) -> &'static [KeyHint] {
        self.component().keys()
    }
    pub fn title(&self) -> String {
        self.component().title()
    }
    pub fn typing(&self) -> bool {
        self.component().typing()
    }
    /// What being on this screen amounts to, for the kiosk policy.
    pub fn action(&self) -> Action {
        match self {
            Screen::Accounts(_) => Action::ListAccounts,
            Screen::NewAccount(_) => Action::CreateAccount,
            Screen::Settings(_) => Action::ViewAccount,
            Screen::Login(_) => Action::SignIn,
            Screen::Enroll(_) | Screen::Codes(_) | Screen::Secure(_) => Action::SelfService,
            Screen::Operator(_) => Action::OperatorGate,
        }
    }
    /// Whether backup codes are on screen, not yet wiped.
    pub fn holds_codes(&self) -> bool {
        matches!(self, Screen::Codes(c) if c.holds_codes())
    }
    /// Whether this screen shows a secret, codes or account data that a kiosk must not leave on
    /// screen for the next person.
    pub fn sensitive(&self) -> bool {
        match self {
            Screen::Login(l) => !l.is_pristine(),
            _ => true,
        }
    }
}

/// Where a navigation goes; [`Cx::open`] builds its screen and loads what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Accounts,
    Settings(String),
    /// The public login, empty.
    Login,
    /// The login at the password step for this account.
    LoginFor(String),
    NewAccount,
    /// Enrolling an authenticator for this account; back goes to its settings.
    Enroll(String),
    /// The same for an account that already has two-factor authentication: step 1 asks for
    /// the password and a current code (a step-up) and says the current backup codes will be
    /// replaced.
    Reenroll(String),
    Quit,
}

impl Target {
    /// Enrolling `name`, or re-enrolling it when it has two-factor authentication already.
    pub fn enroll(name: String, has_two_factor: bool) -> Self {
        if has_two_factor {
            Target::Reenroll(name)
        } else {
            Target::Enroll(name)
        }
    }

    /// What going there amounts to, for the kiosk policy.
    pub fn action(&self) -> Action {
        match self {
            Target::Accounts => Action::ListAccounts,
            Target::Settings(_) => Action::ViewAccount,
            Target::Login | Target::LoginFor(_) => Action::SignIn,
            Target::NewAccount => Action::CreateAccount,
            Target::Enroll(_) | Target::Reenroll(_) => Action::SelfService,
            Target::Quit => Action::QuitKiosk,
        }
    }
}

/// What happened.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// The terminal's size, sent by the runtime at start and on every resize, so a list knows
    /// how many rows a page has (the view does not depend on it: it draws at any size).
    Resize {
        width: u16,
        height: u16,
    },
    /// The service clock's time, sent about once a second and before the first draw.
    Tick(UnixTime),
    /// The result of an [`Effect::Call`].
    Done(Outcome),
    /// The result of an [`Effect::Later`] call.
    LaterDone(Outcome),
    /// The result of an [`Effect::Audit`].
    Audited(Result<(), Error>),
    Copied(Result<ClipboardUsed, String>),
    ClipboardCleared(Result<ClipboardUsed, String>),
    Exported {
        path: PathBuf,
        result: Result<(), ExportError>,
    },
}

/// Why an export did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// The file exists: never overwritten, the user picks another name.
    Exists,
    Other(String),
}

/// How the clipboard was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipboardUsed {
    /// The desktop clipboard through arboard.
    System,
    /// An OSC 52 escape sequence: the terminal (or the SSH client's) clipboard.
    Osc52,
}

impl ClipboardUsed {
    pub fn describe(self) -> &'static str {
        match self {
            ClipboardUsed::System => "the system clipboard",
            ClipboardUsed::Osc52 => "your terminal's clipboard",
        }
    }
    /// What a copy can honestly claim: the system clipboard says it took the text; an OSC 52
    /// sequence is only sent, and many terminals ignore it without a word.
    pub fn copied_message(self) -> String {
        match self {
            ClipboardUsed::System => format!(
                "copied the codes to the system clipboard; you will be offered to clear it in {CLIPBOARD_OFFER_SECS} s"
            ),
            ClipboardUsed::Osc52 => "sent the codes to your terminal's clipboard: paste it to check — not all terminals support this".into(),
        }
    }
}

/// A side effect for the runtime to carry out.
#[derive(Debug)]
pub enum Effect {
    Call(Call),
    /// A service call to run when no input is waiting, one per turn of the event loop: work in
    /// chunks (the rest of a long account list) that must not delay keys or the first frame.
    /// Its result comes back as [`Msg::LaterDone`]; it does not count as [`App::working`].
    Later(Call),
    Copy(Zeroizing<String>),
    ClearClipboard,
    Export {
        path: PathBuf,
        contents: Zeroizing<String>,
    },
    /// Records a kiosk's own event (start, quit, idle clear) in the audit log, in order with
    /// the calls but waited for by nothing: it is not a [`Call`] (no screen asks for it, so it
    /// needs no policy check) and does not count as [`App::working`], so a slow or failing
    /// store never holds the kiosk up. Its result comes back as [`Msg::Audited`].
    Audit(KioskEvent),
    Quit,
}

/// A service call; its result comes back as [`Msg::Done`].
#[derive(Debug)]
pub enum Call {
    /// At most `limit` accounts named after `after` (from the first if `None`), sorted by name.
    ListAccountsPage {
        after: Option<String>,
        limit: usize,
    },
    CreateAccount {
        name: String,
        password: Zeroizing<String>,
    },
    /// Starts an enrollment: the password alone for a first authenticator, a step-up to
    /// replace one.
    BeginEnrollment {
        name: String,
        proof: Proof,
    },
    /// Confirms it: with the step-up the enrollment began with when it replaces an
    /// authenticator. The step-up comes back in [`Outcome::Confirmed`].
    ConfirmEnrollment {
        name: String,
        code: Zeroizing<String>,
        step_up: Option<StepUp>,
    },
    /// The login's first step: the password. Nothing about the account is asked before it.
    StartLogin {
        name: String,
        password: Zeroizing<String>,
    },
    /// The login's second step. The pending login moves here from the login screen and comes
    /// back in [`Outcome::LoginFinished`]: it is never copied.
    FinishLogin {
        pending: PendingLogin,
        code: Zeroizing<String>,
    },
    /// The throttle state, for the live countdown: only asked after the core answered a login
    /// attempt with a delay or a lock, which had already told as much.
    Gate {
        name: String,
    },
    LoadSettings {
        name: String,
    },
    /// A login with the password and a current code whose only product is a step-up (for a
    /// re-enrollment's confirm, when the one it began with expired).
    StepUp {
        name: String,
        password: Zeroizing<String>,
        code: Zeroizing<String>,
    },
    /// The proof is a step-up or the password and a code that make one; the password alone is
    /// refused by the core. The step-up comes back in the outcome.
    Regenerate {
        name: String,
        proof: Proof,
    },
    DisableTwoFactor {
        name: String,
        proof: Proof,
    },
    /// The holder typed one of set `set_id`'s codes back: it is no longer "never confirmed".
    ConfirmCodes {
        name: String,
        set_id: u64,
    },
    Unlock {
        name: String,
    },
    HasOperator,
    SetOperator {
        password: Zeroizing<String>,
    },
    /// Checks the operator password; on success the service hands back an [`OperatorSession`].
    StartOperatorSession {
        password: Zeroizing<String>,
    },
}

impl Call {
    /// What the call amounts to, for the kiosk policy.
    pub fn action(&self) -> Action {
        match self {
            Call::ListAccountsPage { .. } => Action::ListAccounts,
            Call::CreateAccount { .. } => Action::CreateAccount,
            Call::LoadSettings { .. } => Action::ViewAccount,
            Call::Unlock { .. } => Action::Unlock,
            Call::StartLogin { .. } | Call::FinishLogin { .. } | Call::Gate { .. } => {
                Action::SignIn
            }
            Call::BeginEnrollment { .. }
            | Call::ConfirmEnrollment { .. }
            | Call::StepUp { .. }
            | Call::Regenerate { .. }
            | Call::ConfirmCodes { .. }
            | Call::DisableTwoFactor { .. } => Action::SelfService,
            Call::HasOperator | Call::SetOperator { .. } | Call::StartOperatorSession { .. } => {
                Action::OperatorGate
            }
        }
    }
}

/// The result of a [`Call`].
#[derive(Debug)]
pub enum Outcome {
    /// A page of [`Call::ListAccountsPage`], with the cursor and limit it was asked with.
    AccountsPage {
        after: Option<String>,
        limit: usize,
        result: Result<Vec<AccountSummary>, Error>,
    },
    Created {
        name: String,
        result: Result<(), Error>,
    },
    /// With the step-up the enrollment was begun with, if any, for its confirm.
    EnrollmentBegun {
        result: Result<Enrollment, Error>,
        step_up: Option<StepUp>,
    },
    /// From regenerating; the step-up is handed back for the next action, if one was made.
    Issued {
        result: Result<IssuedCodes, Error>,
        step_up: Option<StepUp>,
    },
    SteppedUp(Result<StepUp, Error>),
    /// From confirming an enrollment; the step-up is handed back for a retry after a wrong
    /// code.
    Confirmed {
        result: Result<IssuedCodes, Error>,
        step_up: Option<StepUp>,
    },
    LoginStarted {
        name: String,
        result: Result<LoginStep, Error>,
    },
    /// The pending login is handed back whatever the result, for a retry after a wrong code.
    LoginFinished {
        pending: PendingLogin,
        result: Result<LoginSuccess, Error>,
        /// Minted by the finished login, for the signed-in holder's next actions.
        step_up: Option<StepUp>,
    },
    Gate(Result<Gate, Error>),
    Settings(Result<SettingsData, Error>),
    Disabled {
        result: Result<(), Error>,
        step_up: Option<StepUp>,
    },
    Unlocked {
        name: String,
        result: Result<(), Error>,
    },
    /// From [`Call::ConfirmCodes`]; arrives after the codes screen is gone, so the app itself
    /// reports a failure.
    CodesConfirmed(Result<(), Error>),
    HasOperator(Result<bool, Error>),
    OperatorSet(Result<(), Error>),
    OperatorSession(Result<OperatorSession, Error>),
}

/// How a self-service call proves who asks for it.
#[derive(Debug)]
pub enum Proof {
    /// The password alone: enough only to enroll a first authenticator.
    Password(Zeroizing<String>),
    /// The password and a current code (authenticator or backup code): the call completes a
    /// login with them first, and the step-up it makes comes back in the outcome.
    PasswordAndCode {
        password: Zeroizing<String>,
        code: Zeroizing<String>,
    },
    /// A step-up the screen holds from an earlier login.
    StepUp(StepUp),
}

impl Proof {
    /// `held` if it is still fresh at `now`, else the password and code typed.
    pub fn held_or(
        held: Option<StepUp>,
        now: UnixTime,
        password: Zeroizing<String>,
        code: Zeroizing<String>,
    ) -> Self {
        match held {
            Some(s) if s.is_fresh(now) => Proof::StepUp(s),
            _ => Proof::PasswordAndCode { password, code },
        }
    }
}

/// Everything the settings screen shows about one account.
#[derive(Debug, Clone)]
pub struct SettingsData {
    pub summary: AccountSummary,
    pub codes: CodeStatus,
    pub audit: Vec<AuditEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

/// The status line: errors are shown here, never by leaving the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub kind: StatusKind,
}

impl Status {
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            kind: StatusKind::Info,
        }
    }
    pub fn error(text: impl std::fmt::Display) -> Self {
        Self {
            text: text.to_string(),
            kind: StatusKind::Error,
        }
    }
}

/// That a copy happened, to offer clearing the clipboard later. Nothing of the copied text is
/// kept, so the codes are not held in memory after their screen is gone.
#[derive(Debug, Clone)]
pub struct ClipboardNote {
    pub used: ClipboardUsed,
    pub at: UnixTime,
    pub offered: bool,
}

/// Settings of the console itself.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub kiosk: bool,
    pub idle_timeout: Duration,
    pub theme: Theme,
    /// Where exports are proposed (documents or home dir); decided by the runtime.
    pub export_dir: PathBuf,
    /// The service's TOTP settings, for the core's input parser and the prompts.
    pub totp: TotpParams,
    /// What a leading `~` in a typed path stands for; `None` leaves it as typed.
    pub home_dir: Option<PathBuf>,
}

#[derive(Debug)]
pub struct App {
    pub screen: Screen,
    pub status: Option<Status>,
    pub help: bool,
    pub now: UnixTime,
    pub last_input: UnixTime,
    pub options: AppOptions,
    /// The kiosk operator's session, while the core's [`KioskPolicy`] keeps it alive.
    pub operator: Option<OperatorSession>,
    pub clipboard: Option<ClipboardNote>,
    pub quitting: bool,
    /// [`Effect::Call`]s returned and not yet answered by [`Msg::Done`].
    pub calls_running: usize,
    /// Keys pressed while a call runs, handled in order once it is answered: the screen sees
    /// them exactly as if the call had been instant, and a second call never starts before the
    /// first is answered. Only the help overlay reacts at once.
    pub typed_ahead: VecDeque<KeyEvent>,
    /// The terminal's size (columns, rows) as last reported by [`Msg::Resize`]; `None` until
    /// then (tests that only render).
    pub size: Option<(u16, u16)>,
}

/// The context a screen's handlers work through: they queue effects and navigation here
/// instead of reaching into the [`App`]. Its private fields make it the kiosk's one gate: every
/// service call passes [`Cx::call`] or [`Cx::later`] and every screen change passes
/// [`Cx::show`] (which [`Cx::open`] ends in), and each asks the core's [`KioskPolicy`] with the
/// operator session the app lent this context.
#[derive(Debug)]
pub struct Cx {
    pub now: UnixTime,
    pub options: AppOptions,
    /// The terminal's size (columns, rows), if the runtime reported it.
    pub size: Option<(u16, u16)>,
    /// `None` outside kiosk mode: nothing needs the operator there.
    policy: Option<KioskPolicy>,
    session: Option<OperatorSession>,
    effects: Vec<Effect>,
    goto: Option<Screen>,
    status: Option<Option<Status>>,
    quit: bool,
}

/// Said when a screen asks for an operator action without a session (only a screen bug can get
/// here: the operator screens are opened before such actions).
const NEEDS_OPERATOR: &str = "the operator password is needed for that";

impl Cx {
    fn allows(&self, action: Action) -> bool {
        self.policy
            .is_none_or(|p| p.allows(action, self.session.as_ref(), self.now))
    }
    pub fn call(&mut self, call: Call) {
        if self.allows(call.action()) {
            self.effects.push(Effect::Call(call));
        } else {
            self.error(NEEDS_OPERATOR);
        }
    }
    /// Queues a call for when no input is waiting (see [`Effect::Later`]).
    pub fn later(&mut self, call: Call) {
        if self.allows(call.action()) {
            self.effects.push(Effect::Later(call));
        } else {
            self.error(NEEDS_OPERATOR);
        }
    }
    pub fn copy(&mut self, text: Zeroizing<String>) {
        self.effects.push(Effect::Copy(text));
    }
    pub fn export(&mut self, path: PathBuf, contents: Zeroizing<String>) {
        self.effects.push(Effect::Export { path, contents });
    }
    pub fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Some(Status::info(text)));
    }
    pub fn error(&mut self, text: impl std::fmt::Display) {
        self.status = Some(Some(Status::error(text)));
    }
    pub fn clear_status(&mut self) {
        self.status = Some(None);
    }
    pub fn kiosk(&self) -> bool {
        self.options.kiosk
    }
    /// Keeps the session the service minted after the operator password (see
    /// [`crate::core::service::Service::start_operator_session`]).
    pub fn begin_operator_session(&mut self, session: OperatorSession) {
        self.session = Some(session);
    }
    /// Goes to `target` and loads what it shows. When the kiosk policy wants the operator
    /// first, goes to the operator password instead, which comes back here once it is given.
    pub fn open(&mut self, target: Target) {
        if !self.allows(target.action()) {
            self.clear_status();
            self.show(Screen::Operator(Operator::unlock(target)));
            return;
        }
        match target {
            Target::Accounts => {
                self.call(Accounts::first_page());
                self.show(Screen::Accounts(Accounts::new()));
            }
            Target::Settings(name) => {
                self.call(Call::LoadSettings { name: name.clone() });
                self.show(Screen::Settings(Settings::new(name)));
            }
            Target::Login => self.show(Screen::Login(Login::new())),
            Target::LoginFor(name) => self.show(Screen::Login(Login::for_account(&name))),
            Target::NewAccount => self.show(Screen::NewAccount(NewAccount::new())),
            Target::Enroll(name) => self.show(Screen::Enroll(Enroll::new(
                &name,
                Target::Settings(name.clone()),
            ))),
            Target::Reenroll(name) => {
                let back = Target::Settings(name.clone());
                self.show(Screen::Enroll(Enroll::reenroll(&name, back, self.now)))
            }
            Target::Quit => self.quit = true,
        }
    }
    /// The one way to change the screen: refused (with an error line) if the kiosk policy
    /// wants the operator for it, and showing the public login ends the operator session.
    pub fn show(&mut self, mut screen: Screen) {
        screen.component_mut().on_show(&self.options);
        let action = screen.action();
        if !self.allows(action) {
            self.error(NEEDS_OPERATOR);
            return;
        }
        if self.policy.is_some() && KioskPolicy::ends_session(action) {
            self.session = None;
        }
        self.goto = Some(screen);
    }
}

impl App {
    /// The app and the effects to run before the first draw.
    pub fn new(options: AppOptions, now: UnixTime) -> (Self, Vec<Effect>) {
        let (screen, effects) = if options.kiosk {
            // The login is shown at once; HasOperator may replace it with the first-start setup.
            (
                Screen::Login(Login::new()),
                vec![
                    Effect::Audit(KioskEvent::Started),
                    Effect::Call(Call::HasOperator),
                ],
            )
        } else {
            (
                Screen::Accounts(Accounts::new()),
                vec![Effect::Call(Accounts::first_page())],
            )
        };
        let app = Self {
            screen,
            status: None,
            help: false,
            now,
            last_input: now,
            options,
            operator: None,
            clipboard: None,
            quitting: false,
            calls_running: 0,
            typed_ahead: VecDeque::new(),
            size: None,
        };
        (app, effects)
    }

    /// The kiosk policy, in kiosk mode.
    pub fn policy(&self) -> Option<KioskPolicy> {
        self.options
            .kiosk
            .then(|| KioskPolicy::new(self.options.idle_timeout))
    }

    /// A context for one handler; it holds the operator session until [`apply`] hands it back.
    fn cx(&mut self) -> Cx {
        Cx {
            now: self.now,
            options: self.options.clone(),
            size: self.size,
            policy: self.policy(),
            session: self.operator.take(),
            effects: Vec::new(),
            goto: None,
            status: None,
            quit: false,
        }
    }

    /// Whether a service call is running: the status line says so and keys wait.
    pub fn working(&self) -> bool {
        self.calls_running > 0
    }

    /// The idle rule for the screen shown now: the core's policy, with the longer wait while
    /// backup codes are on screen. `None` outside kiosk mode.
    fn idle_policy(&self) -> Option<KioskPolicy> {
        let policy = self.policy()?;
        if self.screen.holds_codes() {
            let secs = policy.idle_secs.max(CODES_IDLE_SECS);
            return Some(KioskPolicy::new(Duration::from_secs(secs.unsigned_abs())));
        }
        Some(policy)
    }

    /// Seconds until a kiosk's idle clear, while the warning before it runs: the last
    /// [`CODES_IDLE_WARNING_SECS`] with codes on screen, the last quarter of the idle time
    /// elsewhere. `None` when nothing would be cleared or it is not yet time to warn.
    pub fn idle_countdown(&self) -> Option<i64> {
        let policy = self.idle_policy()?;
        if !self.screen.sensitive() {
            return None;
        }
        let warn = if self.screen.holds_codes() {
            CODES_IDLE_WARNING_SECS
        } else {
            policy.idle_secs / IDLE_WARNING_SHARE
        };
        let left = policy.idle_secs - self.now.saturating_sub(self.last_input);
        (left > 0 && left <= warn).then_some(left)
    }

    /// Whether an operator session is alive now.
    pub fn operator_active(&self) -> bool {
        match (self.policy(), &self.operator) {
            (Some(policy), Some(session)) => policy.session_active(session, self.now),
            _ => false,
        }
    }

    /// Keys shown in the footer and help: the screen's, then the global ones.
    pub fn clipboard_offer(&self) -> bool {
        self.clipboard.as_ref().is_some_and(|c| c.offered)
    }
}

/// Applies a message. The only place the state changes.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut effects = apply_msg(app, msg);
    count_calls(app, &effects);
    while !app.working()
        && let Some(key) = app.typed_ahead.pop_front()
    {
        let more = key_now(app, key);
        count_calls(app, &more);
        effects.extend(more);
    }
    effects
}

fn count_calls(app: &mut App, effects: &[Effect]) {
    app.calls_running += effects
        .iter()
        .filter(|e| matches!(e, Effect::Call(_)))
        .count();
}

fn apply_msg(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut effects = Vec::new();
    match msg {
        Msg::Key(key) => {
            app.last_input = app.now;
            if let Some(session) = &mut app.operator {
                session.touch(app.now);
            }
            if app.working() {
                key_while_working(app, key);
            } else {
                effects.extend(key_now(app, key));
            }
        }
        Msg::Resize { width, height } => app.size = Some((width, height)),
        Msg::Tick(now) => {
            app.now = now;
            effects.extend(tick(app));
        }
        Msg::Done(Outcome::HasOperator(Ok(false))) if app.options.kiosk => {
            app.calls_running = app.calls_running.saturating_sub(1);
            let mut cx = app.cx();
            cx.show(Screen::Operator(Operator::first_start()));
            effects.extend(apply(app, cx));
        }
        Msg::Done(Outcome::CodesConfirmed(Err(e))) => {
            app.calls_running = app.calls_running.saturating_sub(1);
            app.status = Some(Status::error(format!(
                "could not record that the codes were kept ({e}): they show as never confirmed"
            )));
        }
        Msg::Done(outcome) => {
            app.calls_running = app.calls_running.saturating_sub(1);
            effects.extend(dispatch(app, |s, cx| s.on_outcome(outcome, cx)));
        }
        Msg::LaterDone(outcome) => {
            effects.extend(dispatch(app, |s, cx| s.on_outcome(outcome, cx)));
        }
        // The kiosk goes on without the event; the line tells whoever looks that the log has a
        // gap (the store's own error says why).
        Msg::Audited(Err(e)) => {
            app.status = Some(Status::error(format!(
                "could not write the kiosk's audit log: {e}"
            )));
        }
        Msg::Audited(Ok(())) => {}
        Msg::Copied(result) => match result {
            Ok(used) => {
                app.clipboard = Some(ClipboardNote {
                    used,
                    at: app.now,
                    offered: false,
                });
                app.status = Some(Status::info(used.copied_message()));
                effects.extend(dispatch(app, |s, cx| s.on_copied(used, cx)));
            }
            Err(e) => app.status = Some(Status::error(format!("could not copy: {e}"))),
        },
        Msg::ClipboardCleared(result) => {
            app.clipboard = None;
            app.status = Some(match result {
                Ok(ClipboardUsed::System) => Status::info("cleared the system clipboard"),
                // Sent, like the copy: the terminal may not obey.
                Ok(ClipboardUsed::Osc52) => {
                    Status::info("asked your terminal to clear its clipboard: paste to check")
                }
                Err(e) => Status::error(format!("could not clear the clipboard: {e}")),
            });
        }
        Msg::Exported { path, result } => {
            effects.extend(dispatch(app, |s, cx| s.on_exported(path, result, cx)));
        }
    }
    effects
}

fn key_now(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    match global_key(app, key) {
        Some(effects) => effects,
        None => screen_key(app, key),
    }
}

/// A key while a call runs: the help overlay opens and closes at once (it starts nothing);
/// every other key, Ctrl-C included, waits in [`App::typed_ahead`] for the call's answer.
fn key_while_working(app: &mut App, key: KeyEvent) {
    let help_key = key.code == KeyCode::F(1)
        || (key.code == KeyCode::Char('?') && !app.screen.typing() && app.typed_ahead.is_empty());
    if app.help && app.typed_ahead.is_empty() {
        app.help = false;
    } else if help_key && app.typed_ahead.is_empty() {
        app.help = true;
    } else if app.typed_ahead.len() < TYPE_AHEAD_KEYS {
        app.typed_ahead.push_back(key);
    }
}

fn global_key(app: &mut App, key: KeyEvent) -> Option<Vec<Effect>> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if app.help {
        // Any key closes the overlay; Ctrl-C still quits.
        app.help = false;
        if !(ctrl && key.code == KeyCode::Char('c')) {
            return Some(vec![]);
        }
    }
    let typing = app.screen.typing();
    match key.code {
        KeyCode::Char('c') if ctrl => Some(request_quit(app)),
        KeyCode::Char('x') if ctrl && app.clipboard.is_some() => Some(vec![Effect::ClearClipboard]),
        KeyCode::F(1) => {
            app.help = true;
            Some(vec![])
        }
        KeyCode::Char('?') if !typing => {
            app.help = true;
            Some(vec![])
        }
        KeyCode::Char('q') if !typing && !ctrl => Some(request_quit(app)),
        _ => None,
    }
}

fn request_quit(app: &mut App) -> Vec<Effect> {
    match &mut app.screen {
        Screen::Codes(codes) if codes.holds_codes() => {
            codes.ask_leave(Target::Quit);
            return vec![];
        }
        // No operator password exists yet to ask for.
        Screen::Operator(op) if op.is_first_start() => {
            app.quitting = true;
            return vec![Effect::Audit(KioskEvent::Quit), Effect::Quit];
        }
        _ => {}
    }
    let mut cx = app.cx();
    cx.open(Target::Quit);
    apply(app, cx)
}

fn screen_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    dispatch(app, |s, cx| s.on_key(key, cx))
}

fn tick(app: &mut App) -> Vec<Effect> {
    if let Some(policy) = app.idle_policy()
        && policy.is_idle(app.last_input, app.now)
        && app.screen.sensitive()
    {
        // Dropping the old screen wipes whatever secret or codes it held; the login ends the
        // operator session.
        let had_codes = app.screen.holds_codes();
        let mut cx = app.cx();
        cx.open(Target::Login);
        if had_codes {
            cx.info("the console was idle: the backup codes were cleared and cannot be shown again; sign in and generate a new set");
        } else {
            cx.info("the console was idle: the screen was cleared");
        }
        app.help = false;
        app.typed_ahead.clear();
        app.last_input = app.now;
        let mut effects = vec![Effect::Audit(KioskEvent::IdleCleared)];
        effects.extend(apply(app, cx));
        return effects;
    }
    if !app.operator_active() {
        app.operator = None;
    }
    let mut effects = Vec::new();
    if let Some(note) = &mut app.clipboard
        && !note.offered
        && app.now.saturating_sub(note.at) >= CLIPBOARD_OFFER_SECS
    {
        note.offered = true;
        app.status = Some(Status::info(format!(
            "{} may still hold the codes: press Ctrl-X to clear it",
            note.used.describe()
        )));
    }
    effects.extend(dispatch(app, |s, cx| s.on_tick(cx)));
    effects
}

/// Runs a screen handler with a fresh context and applies what it asked for.
fn dispatch(app: &mut App, f: impl FnOnce(&mut dyn Component, &mut Cx)) -> Vec<Effect> {
    let mut cx = app.cx();
    f(app.screen.component_mut(), &mut cx);
    apply(app, cx)
}

/// Applies what a handler asked for and takes the operator session back. The only place the
/// screen is replaced.
fn apply(app: &mut App, cx: Cx) -> Vec<Effect> {
    let Cx {
        mut effects,
        goto,
        status,
        quit,
        session,
        ..
    } = cx;
    app.operator = session;
    // A status line belongs to the screen it was said on: going to another kind of screen
    // clears it, unless the same step says something new there.
    let moved = goto.as_ref().is_some_and(|screen| {
        std::mem::discriminant(screen) != std::mem::discriminant(&app.screen)
    });
    if moved && status.is_none() {
        app.status = None;
    }
    if let Some(status) = status {
        app.status = status;
    }
    if let Some(screen) = goto {
        // Back to the public login from elsewhere (a sign-out, an idle clear, leaving): what
        // sparekey put in the clipboard goes too, whichever clipboard it was.
        let to_login =
            matches!(screen, Screen::Login(_)) && !matches!(app.screen, Screen::Login(_));
        if to_login && app.clipboard.is_some() {
            effects.push(Effect::ClearClipboard);
        }
        app.screen = screen;
    }
    if quit {
        app.quitting = true;
        if app.options.kiosk {
            effects.push(Effect::Audit(KioskEvent::Quit));
        }
        effects.push(Effect::Quit);
    }
    effects
}

/// What a screen draws with.
#[derive(Debug, Clone, Copy)]
pub struct ViewCx {
    pub theme: Theme,
    pub now: UnixTime,
    pub kiosk: bool,
    pub totp: TotpParams,
}

/// The one trait every screen implements: its title, its keys in its current state (the footer
/// shows as many as fit, the help overlay all of them plus [`crate::tui::keys::GLOBAL_KEYS`]),
/// its drawing and its reactions. Handlers default to ignoring the message.
pub trait Component {
    fn title(&self) -> String;
    fn keys(&self) -> &'static [KeyHint];
    /// Whether a text field has focus, so printable keys (`q`, `?`) are typed, not obeyed.
    fn typing(&self) -> bool {
        false
    }
    /// Whether the screen takes the whole terminal, without title bar, status line or footer
    /// (the full-screen QR code).
    fn full_screen(&self) -> bool {
        false
    }
    fn draw(&self, frame: &mut ratatui::Frame<'_>, area: ratatui::layout::Rect, vx: &ViewCx);
    fn on_key(&mut self, key: KeyEvent, cx: &mut Cx);
    /// Called once as the screen is shown, with the console's options (a kiosk's codes screen
    /// offers no copy or export).
    fn on_show(&mut self, _options: &AppOptions) {}
    fn on_outcome(&mut self, _outcome: Outcome, _cx: &mut Cx) {}
    fn on_tick(&mut self, _cx: &mut Cx) {}
    fn on_copied(&mut self, _used: ClipboardUsed, _cx: &mut Cx) {}
    fn on_exported(&mut self, _path: PathBuf, _result: Result<(), ExportError>, _cx: &mut Cx) {}
}

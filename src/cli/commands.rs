//! One function per command: read the secret lines, call the service, print the result. Holds no
//! rule of its own: every check is the core's, and every error is the core's [`Error`], so the
//! exit code follows from its kind. The store is opened only after secrets are read (a person
//! typing at a prompt never keeps another process waiting on the store lock). Only the commands
//! that can make something new (`account add`, `kiosk set-operator-password`, the console)
//! create a store and a key; every other one needs the store to be there already.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::app::{self, Paths, Status};
use crate::core::audit::LoginMethod;
use crate::core::error::{Error, ErrorKind};
use crate::core::password::HashParams;
use crate::core::service::{Config, IssuedCodes, Service};
use crate::core::step_up::{self, StepUp};

use super::args::{
    AccountCommand, AuditArgs, Cli, CodesCommand, Command, ConfirmedNameArg, EnrollArgs,
    GlobalArgs, KioskCommand, RegenerateArgs, TuiArgs, VerifyArgs,
};
use super::args::{GoogleAuthenticatorArgs, ImportCommand, OtpauthArgs};
use super::input::{SecretInput, confirm};
use super::output::{self, Output};
use crate::core::qr;
use crate::core::time_text::utc_iso as utc_timestamp;

/// A failure, and whether the JSON answer for it has already been written.
pub(crate) enum Failure {
    Error(Error),
    /// The one JSON object (if any) is already on stdout; only the stderr line is left.
    Shown(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

type Outcome = Result<(), Failure>;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    let out = Output::new(cli.global.json);
    let global = &cli.global;
    let result = match &cli.command {
        None => tui(global, out, &TuiArgs::default()),
        Some(Command::Tui(args)) => tui(global, out, args),
        Some(Command::Account(AccountCommand::Add(a))) if a.second_factor_only => {
            account_add_second_factor_only(global, out, &a.name)
        }
        Some(Command::Account(AccountCommand::Add(a))) => account_add(global, out, &a.name),
        Some(Command::Account(AccountCommand::List)) => account_list(global, out),
        Some(Command::Account(AccountCommand::Remove(a))) => account_remove(global, out, a),
        Some(Command::Enroll(args)) => enroll(global, out, args),
        Some(Command::Login(a)) => login(global, out, &a.name),
        Some(Command::Verify(args)) => verify(global, out, args),
        Some(Command::Import(ImportCommand::GoogleAuthenticator(args))) => {
            import_google_authenticator(global, out, args)
        }
        Some(Command::Import(ImportCommand::Otpauth(args))) => import_otpauth(global, out, args),
        Some(Command::Codes(CodesCommand::Status(a))) => codes_status(global, out, &a.name),
        Some(Command::Codes(CodesCommand::Regenerate(args))) => regenerate(global, out, args),
        Some(Command::Audit(args)) => audit(global, out, args),
        Some(Command::Unlock(a)) => unlock(global, out, &a.name),
        Some(Command::Reset(a)) => reset(global, out, a),
        Some(Command::Kiosk(KioskCommand::SetOperatorPassword)) => {
            set_operator_password(global, out)
        }
        Some(Command::Kiosk(KioskCommand::ResetOperatorPassword)) => {
            reset_operator_failures(global, out)
        }
        Some(Command::Backup(f)) => backup(global, out, &f.file),
        Some(Command::Restore(r)) => restore(global, out, &r.file, r.confirm.yes),
        Some(Command::Doctor) => doctor(global, out),
    };
    let code = match result {
        Ok(()) => 0,
        Err(Failure::Error(e)) => out.error(&e),
        Err(Failure::Shown(e)) => Output::new(false).error(&e),
    };
    // Every service of the command is dropped by now, and its store closed with it: the
    // command never runs while this process holds the store. Its failure is one line on
    // stderr and leaves the exit code alone.
    global.outbox.deliver(warn);
    code
}

/// Lets `service` tell this run's outbox what its owner should hear of.
fn notifying(global: &GlobalArgs, service: Service) -> Service {
    service.with_notifier(global.outbox.clone())
}

/// The settings of every command: flags and `SPAREKEY_*` over the config file over the
/// defaults; `issuer` and `codes` are the flags of the commands that take them. Hashing always
/// uses [`HashParams::OWASP`] (the default): nothing in the environment, the config file or
/// the command line can make it cheaper.
fn settings_with(
    global: &GlobalArgs,
    issuer: Option<&str>,
    codes: Option<usize>,
) -> Result<app::Settings, Error> {
    let settings = app::Settings::resolve(&app::Overrides {
        config: global.config.clone(),
        store: global.store.clone(),
        data_dir: global.data_dir.clone(),
        key_file: global.key_file.clone(),
        issuer: issuer.map(str::to_string),
        codes,
        notify: global.notify_command.clone(),
        notify_timeout_secs: global.notify_timeout_secs,
    })?;
    debug_assert_eq!(settings.config.hash_params, HashParams::OWASP);
    // Whatever this run's services queue is delivered with the command these settings name.
    global.outbox.configure(settings.notify.clone());
    Ok(settings)
}

fn settings(global: &GlobalArgs) -> Result<app::Settings, Error> {
    settings_with(global, None, None)
}

/// The demo's settings: flags over defaults only, since the demo reads no file and opens no
/// store.
fn config(issuer: Option<&str>, codes: Option<usize>) -> Config {
    let defaults = Config::default();
    Config {
        issuer: issuer.map_or(defaults.issuer.clone(), str::to_string),
        code_count: codes.unwrap_or(defaults.code_count),
        hash_params: HashParams::OWASP,
        ..defaults
    }
}

/// Opens the store for a command that may be the first one: creates the store and the key when
/// neither is there yet, and then says (once) where the key is and that it must be backed up.
fn open(global: &GlobalArgs) -> Result<Service, Error> {
    let settings = settings(global)?;
    let service = creating_key(&settings.paths, || {
        app::open(&settings.paths, settings.config.clone())
    })?;
    Ok(notifying(global, service))
}

/// Runs `open` and, if it created the key file, tells the user on stderr (stdout keeps only
/// results, so scripts and `--json` are unaffected).
fn creating_key<T>(paths: &Paths, open: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let had_key = paths.key_file.symlink_metadata().is_ok();
    let opened = open()?;
    if !had_key && paths.key_file.symlink_metadata().is_ok() {
        // Labelled, so a script that looks for errors on stderr can tell it apart.
        warn(&format!("note: {}", app::new_key_notice(paths)));
    }
    Ok(opened)
}

/// Opens the store for a command that only reads or changes what exists: never creates a
/// store or a key (a mistyped `--data-dir` must not leave a new, empty store behind).
fn open_existing(global: &GlobalArgs) -> Result<Service, Error> {
    open_existing_with(global, None, None)
}

/// [`open_existing`] with the `--issuer` and `--codes` of the command.
fn open_existing_with(
    global: &GlobalArgs,
    issuer: Option<&str>,
    codes: Option<usize>,
) -> Result<Service, Error> {
    let settings = settings_with(global, issuer, codes)?;
    let service = app::open_existing(&settings.paths, settings.config)?;
    Ok(notifying(global, service))
}

/// A warning or notice for the person at the terminal: one line on stderr, never on stdout.
fn warn(line: &str) {
    let line = crate::core::account::printable(line);
    let _ = writeln!(std::io::stderr().lock(), "sparekey: {line}");
}

// ----- console -------------------------------------------------------------------------------

fn tui(global: &GlobalArgs, out: Output, args: &TuiArgs) -> Outcome {
    if out.is_json() {
        return Err(Error::Invalid(
            "the console is interactive: --json applies to the other commands".into(),
        )
        .into());
    }
    let defaults = crate::tui::TuiOptions::default();
    let options = crate::tui::TuiOptions {
        kiosk: args.kiosk,
        idle_timeout: args
            .idle_timeout
            .map(std::time::Duration::from_secs)
            .unwrap_or(defaults.idle_timeout),
    };
    if args.demo {
        return demo(global, args, &options);
    }
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(Error::Invalid(
            "the console needs a terminal: for scripts use the commands (sparekey --help)".into(),
        )
        .into());
    }
    // Held only while it runs calls, so the other commands work beside an open console.
    let settings = settings_with(global, args.issuer.issuer.as_deref(), args.codes.codes)?;
    // The notice goes out before the alternate screen, so it is there when the console ends.
    let service = creating_key(&settings.paths, || {
        app::open_console(&settings.paths, settings.config.clone())
    })?;
    // The console's store outlives each call: each notification runs on a thread of its own
    // (never waited for with the store open), and failures are told once the screen is back.
    let failures: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let service = match settings.notify.clone() {
        Some(command) => {
            let sink = failures.clone();
            let log = move |line: &str| {
                (sink.lock().unwrap_or_else(|p| p.into_inner())).push(line.to_string());
            };
            let detached = app::notify::Detached::new(command, std::sync::Arc::new(log));
            service.with_notifier(std::sync::Arc::new(detached))
        }
        None => service,
    };
    // Whoever came first would otherwise choose the password that guards every account.
    if args.kiosk && !service.has_operator_password()? {
        return Err(Error::Invalid(
            "no kiosk operator password is set: run `sparekey kiosk set-operator-password` first"
                .into(),
        )
        .into());
    }
    let ran = crate::tui::run(service, options)
        .map_err(|e| Error::Io(format!("the console stopped on a terminal error: {e}")));
    for line in failures.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        warn(line);
    }
    ran?;
    Ok(())
}

/// `tui --demo`: the console on the demo's in-memory store, scripted by `--keys` or in this
/// terminal. A store or key-file option is refused, not ignored: the demo never opens either, and
/// saying so beats letting someone think they are looking at their store.
fn demo(global: &GlobalArgs, args: &TuiArgs, options: &crate::tui::TuiOptions) -> Outcome {
    use crate::tui::demo::{self, DemoError, FrameSink};
    if global.data_dir.is_some() || global.key_file.is_some() {
        return Err(Error::Invalid(format!(
            "--demo runs on a store in memory and never opens one: drop --data-dir and \
             --key-file (and unset {} and {})",
            app::DATA_DIR_ENV,
            app::KEY_FILE_ENV
        ))
        .into());
    }
    let Some(keys) = &args.keys else {
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(Error::Invalid(
                "the demo console needs a terminal: without one, give it --keys FILE".into(),
            )
            .into());
        }
        return Ok(demo::run_interactive(
            config(args.issuer.issuer.as_deref(), args.codes.codes),
            options,
        )?);
    };
    let sink = match &args.frames {
        Some(dir) => FrameSink::Dir(dir.clone()),
        None => FrameSink::Stdout,
    };
    let size = args.size.unwrap_or_default();
    demo::run_keys(
        keys,
        config(args.issuer.issuer.as_deref(), args.codes.codes),
        options,
        size,
        &sink,
    )
    .map_err(|e| match e {
        DemoError::Script(e) => Error::Invalid(e.to_string()).into(),
        DemoError::Failed(e) => e.into(),
    })
}

// ----- accounts ------------------------------------------------------------------------------

fn account_add(global: &GlobalArgs, out: Output, name: &str) -> Outcome {
    crate::core::account::validate_name(name).map_err(Error::Invalid)?;
    let password = SecretInput::stdin().new_password()?;
    open(global)?.create_account(name, &password)?;
    if out.is_json() {
        out.json(&serde_json::json!({ "account": name, "created": true }))?;
    } else {
        out.line(&format!("created account '{name}'"))?;
    }
    Ok(())
}

fn account_add_second_factor_only(global: &GlobalArgs, out: Output, name: &str) -> Outcome {
    open(global)?.create_second_factor_only_account(name)?;
    if out.is_json() {
        out.json(&serde_json::json!({
            "account": name, "created": true, "second_factor_only": true,
        }))?;
    } else {
        out.line(&format!(
            "created account '{name}' (second factor only: its password is the system's); \
             enroll its authenticator with `sparekey enroll {}`",
            shell_word(name)
        ))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct LastLoginJson {
    at: String,
    method: &'static str,
}

#[derive(Serialize)]
struct AccountJson<'a> {
    name: &'a str,
    two_factor: bool,
    enrollment_pending: bool,
    remaining_codes: usize,
    total_codes: usize,
    locked: bool,
    consecutive_failures: u32,
    codes_never_confirmed: bool,
    needs_attention: bool,
    last_login: Option<LastLoginJson>,
}

/// The widest a name is shown in the account table; longer ones end in `…` (`--json` has them
/// whole), so one long name cannot push every row off the terminal.
const NAME_COLUMN: usize = 32;

fn account_list(global: &GlobalArgs, out: Output) -> Outcome {
    let mut accounts = open_existing(global)?.list_accounts()?;
    // As a person looks for a name: "bob" beside "Bob", not after every capital.
    accounts.sort_by_cached_key(|a| (a.name.to_lowercase(), a.name.clone()));
    if out.is_json() {
        let accounts: Vec<AccountJson> = accounts
            .iter()
            .map(|a| AccountJson {
                name: &a.name,
                two_factor: a.two_factor,
                enrollment_pending: a.enrollment_pending,
                remaining_codes: a.remaining_codes,
                total_codes: a.total_codes,
                locked: a.locked,
                consecutive_failures: a.consecutive_failures,
                codes_never_confirmed: a.codes_never_confirmed,
                needs_attention: a.needs_attention,
                last_login: a.last_login.map(|l| LastLoginJson {
                    at: utc_timestamp(l.at),
                    method: l.method.as_str(),
                }),
            })
            .collect();
        out.json(&serde_json::json!({ "accounts": accounts }))?;
        return Ok(());
    }
    if accounts.is_empty() {
        out.line("no accounts yet: create one with `sparekey account add NAME`")?;
        return Ok(());
    }
    let width = accounts
        .iter()
        .map(|a| a.name.chars().count().min(NAME_COLUMN))
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!("{:<width$}  2FA  CODES  STATE\n", "NAME");
    for a in &accounts {
        let codes = if a.two_factor {
            format!("{}/{}", a.remaining_codes, a.total_codes)
        } else {
            "-".into()
        };
        let mut state = Vec::new();
        if a.locked {
            state.push("locked".to_string());
        } else if a.consecutive_failures > 0 {
            let failures = a.consecutive_failures as usize;
            state.push(output::counted(failures, "failed attempt"));
        }
        if a.enrollment_pending {
            state.push("enrollment pending".into());
        }
        if a.codes_never_confirmed {
            state.push("codes never confirmed".into());
        }
        if a.needs_attention {
            state.push("needs attention".into());
        }
        if state.is_empty() {
            state.push("ok".into());
        }
        text.push_str(&format!(
            "{:<width$}  {:<3}  {:<5}  {}\n",
            output::cut(&a.name, NAME_COLUMN),
            if a.two_factor { "on" } else { "off" },
            codes,
            state.join(", ")
        ));
    }
    out.lines(&text)?;
    Ok(())
}

fn account_remove(global: &GlobalArgs, out: Output, args: &ConfirmedNameArg) -> Outcome {
    let name = args.name.as_str();
    // Asked only about an account that is there, and with the store closed meanwhile.
    open_existing(global)?.account_summary(name)?;
    confirm(
        &format!(
            "Remove the account '{}' with its authenticator and backup codes? This cannot be undone.",
            crate::core::account::printable(name)
        ),
        args.confirm.yes,
    )?;
    open_existing(global)?.remove_account(name)?;
    if out.is_json() {
        out.json(&serde_json::json!({ "account": name, "removed": true }))?;
    } else {
        out.line(&format!("removed account '{name}'"))?;
    }
    Ok(())
}

// ----- enrollment ----------------------------------------------------------------------------

/// What re-enrollment is called in refusals.
const REPLACING: &str = "replacing the authenticator";

/// Reads the proof for a use case that could replace the second factor: the password line, then
/// a code line (authenticator or backup code). Without the code the command stops here, before
/// the store is opened, with exit 1: the password alone changes nothing.
fn read_step_up(
    input: &mut SecretInput<impl std::io::BufRead>,
    what: &str,
) -> Result<(Zeroizing<String>, Zeroizing<String>), Error> {
    let password = input.required("password")?;
    let code = input
        .optional("current code (authenticator or backup code)")?
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| step_up::needed(what))?;
    Ok((password, code))
}

/// Turns the lines of [`read_step_up`] into a step-up: a whole login, audited like any.
fn step_up_with(
    service: &Service,
    name: &str,
    lines: Option<(Zeroizing<String>, Zeroizing<String>)>,
) -> Result<Option<StepUp>, Error> {
    lines
        .map(|(password, code)| service.step_up(name, &password, &code))
        .transpose()
}

fn enroll(global: &GlobalArgs, out: Output, args: &EnrollArgs) -> Outcome {
    let mut input = SecretInput::stdin();
    // Codes are issued by --confirm, and on a terminal by the code typed at the prompt.
    if args.confirm || input.is_interactive() {
        check_codes_output(args.out.as_deref())?;
    } else if let Some(file) = &args.out {
        check_new_file(file)?;
    }
    // Replacing an authenticator needs the password and a current code (the core enforces it):
    // ask for them only then, before the store is opened for the change.
    let summary = open_enrolling(global, args)?.account_summary(&args.name)?;
    let has_two_factor = summary.two_factor;
    if args.confirm && !summary.enrollment_pending {
        // Said before a code is asked for, so none is spent on nothing.
        return Err(Error::Invalid(format!(
            "'{}' has no enrollment waiting: run enroll first",
            args.name
        ))
        .into());
    }
    let proof_lines = if has_two_factor {
        Some(read_step_up(&mut input, REPLACING)?)
    } else {
        None
    };
    if args.confirm {
        let code = input.required("code from the new authenticator")?;
        let service = open_enrolling(global, args)?;
        let issued = match step_up_with(&service, &args.name, proof_lines)? {
            Some(proof) => service.confirm_reenrollment(&args.name, &code, &proof)?,
            None => service.confirm_enrollment(&args.name, &code)?,
        };
        return deliver_and_confirm(&service, out, &issued, args.out.as_deref());
    }

    let (enrollment, step_up) = {
        let service = open_enrolling(global, args)?;
        let step_up = step_up_with(&service, &args.name, proof_lines)?;
        let enrollment = match &step_up {
            Some(proof) => service.begin_reenrollment(&args.name, proof)?,
            None => service.begin_enrollment(&args.name, None)?,
        };
        (enrollment, step_up)
    };
    let secret = enrollment.secret.to_base32();

    if out.is_json() {
        #[derive(Serialize)]
        struct EnrollJson<'a> {
            account: &'a str,
            secret: &'a str,
            otpauth_uri: &'a str,
        }
        out.json(&EnrollJson {
            account: &enrollment.account,
            secret: &secret,
            otpauth_uri: &enrollment.otpauth_uri,
        })?;
        return Ok(());
    }

    let mut text = Zeroizing::new(String::new());
    text.push_str("Add this account to the authenticator app with the QR code below.\n");
    let p = enrollment.params;
    text.push_str(&format!(
        "\nOr enter the secret by hand: {}\n  (account {}, issuer {}, {}, {} digits, every {} s)\n\notpauth URI: {}\n",
        enrollment.secret.grouped_base32().as_str(),
        crate::core::account::printable(&enrollment.account),
        crate::core::account::printable(&enrollment.issuer),
        p.algorithm.name(),
        p.digits,
        p.period,
        enrollment.otpauth_uri.as_str(),
    ));
    if has_two_factor {
        text.push_str("The current authenticator keeps working until the new one is confirmed.\n");
    }
    // The QR code last, right above the prompt, so it has not scrolled away.
    text.push_str("\nScan this QR code with the authenticator app:\n\n");
    match qr::half_block_lines(enrollment.otpauth_uri.as_bytes(), qr::Glyphs::Dark) {
        Some(lines) => {
            // Dark on light whatever the terminal's theme; plain blocks into a pipe or file.
            let colour = std::io::stdout().is_terminal();
            for line in lines.iter() {
                if colour {
                    text.push_str("\x1b[30;107m");
                }
                text.push_str(line);
                if colour {
                    text.push_str("\x1b[0m");
                }
                text.push('\n');
            }
        }
        None => text.push_str("(the URI is too long for a QR code: enter the secret by hand)\n"),
    }
    if !input.is_interactive() {
        let proof = if has_two_factor {
            " (it reads the password and a current code of the old one first)"
        } else {
            ""
        };
        text.push_str(&format!(
            "Then confirm with a code from the app: sparekey enroll {} --confirm{proof}\n",
            shell_word(&args.name)
        ));
        out.text(&text)?;
        return Ok(());
    }
    out.text(&text)?;
    drop(text);
    drop(secret);

    // On a terminal: ask for the code now (the store is not held while the user types). The
    // step-up made for the start serves the confirm while it is fresh.
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let code = input.required("code from the authenticator (empty to confirm later)")?;
        if code.trim().is_empty() {
            out.line(&format!(
                "The enrollment waits: confirm later with `sparekey enroll {} --confirm`.",
                shell_word(&args.name)
            ))?;
            return Ok(());
        }
        let confirmed = match &step_up {
            Some(proof) => {
                open_enrolling(global, args)?.confirm_reenrollment(&args.name, &code, proof)
            }
            None => open_enrolling(global, args)?.confirm_enrollment(&args.name, &code),
        };
        match confirmed {
            Ok(issued) => {
                return deliver_and_confirm(&open(global)?, out, &issued, args.out.as_deref());
            }
            Err(e)
                if attempt < ATTEMPTS
                    && matches!(e.kind(), ErrorKind::Invalid | ErrorKind::Rejected) =>
            {
                let _ = writeln!(std::io::stderr(), "sparekey: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The service of `enroll`: its `--issuer` and `--codes` apply; the account must exist.
fn open_enrolling(global: &GlobalArgs, args: &EnrollArgs) -> Result<Service, Error> {
    open_existing_with(global, args.issuer.issuer.as_deref(), args.codes.codes)
}

/// Quotes a name for a command line shown to the user, when it needs it.
fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@._-+".contains(c))
    {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', r"'\''"))
    }
}

/// Refuses an `--out` file before anything is changed, so issued codes are never lost to a file
/// that cannot be written.
fn check_new_file(path: &Path) -> Result<(), Error> {
    app::new_file::check_free(path).map_err(|e| Error::Invalid(e.to_string()))
}

/// Checks, before a code set is issued (and the old one voided), that the new codes can reach
/// where they go: the `--out` file's name is free and a file can be created in its directory,
/// or standard output is open for writing with a reader.
fn check_codes_output(file: Option<&Path>) -> Result<(), Error> {
    let Some(path) = file else {
        return output::check_stdout();
    };
    check_new_file(path)?;
    // A real file, created and removed at once: permissions, a read-only or full file system
    // all show here, before anything changes.
    let dir = app::new_file::parent_dir(path);
    tempfile::Builder::new()
        .prefix(".sparekey-probe.")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            Error::Io(format!(
                "cannot write {}: {e}; nothing was changed",
                path.display()
            ))
        })
}

/// Shows a new code set once: on stdout, or in a new private file. If the file cannot be
/// written after all, the codes are shown on stdout instead (they are already in force) and
/// the run fails with a store error.
fn deliver_codes(out: Output, issued: &IssuedCodes, file: Option<&Path>) -> Outcome {
    let write_error = match file {
        Some(path) => {
            match app::write_new_file(path, crate::core::recovery_sheet::sheet(issued).as_bytes()) {
                Ok(()) => {
                    if out.is_json() {
                        out.json(&serde_json::json!({
                            "account": issued.account,
                            "file": path.display().to_string(),
                            "count": issued.codes.len(),
                        }))?;
                    } else {
                        out.line(&format!(
                        "wrote {} new backup codes for '{}' to {} (readable only by you); every earlier code is void",
                        issued.codes.len(),
                        issued.account,
                        path.display()
                    ))?;
                    }
                    return Ok(());
                }
                Err(e) => Some(Error::Io(format!(
                    "{e}; the new codes are shown on standard output instead"
                ))),
            }
        }
        None => None,
    };
    if out.is_json() {
        let shown: Zeroizing<Vec<String>> = Zeroizing::new(
            issued
                .codes
                .iter()
                .map(|c| String::from(c.display().as_str()))
                .collect(),
        );
        #[derive(Serialize)]
        struct CodesJson<'a> {
            account: &'a str,
            codes: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<String>,
        }
        out.json(&CodesJson {
            account: &issued.account,
            codes: &shown,
            error: write_error.as_ref().map(|e| e.to_string()),
        })
        .map_err(lost_codes)?;
    } else {
        out.text(&output::codes_text(issued)).map_err(lost_codes)?;
    }
    match write_error {
        Some(e) => Err(Failure::Shown(e)),
        None => Ok(()),
    }
}

/// [`deliver_codes`], then records the set as confirmed once it reached its file or stream in
/// full. A command-line run has no idle clear and no screen that goes away: what it printed
/// stays in the file, the pipe's reader or the terminal's scrollback, as a downloaded recovery
/// file does on the web, and scripts that pipe the codes into a vault cannot type one back. A
/// delivery that failed (the file, or stdout) leaves the set "never confirmed".
fn deliver_and_confirm(
    service: &Service,
    out: Output,
    issued: &IssuedCodes,
    file: Option<&Path>,
) -> Outcome {
    deliver_codes(out, issued, file)?;
    confirm_delivered(service, issued);
    Ok(())
}

/// Records that `issued` reached its output in full (see [`deliver_and_confirm`]).
fn confirm_delivered(service: &Service, issued: &IssuedCodes) {
    if let Err(e) = service.confirm_codes(&issued.account, issued.set_id) {
        // The codes are delivered and in force: the run succeeded; only the mark is missing.
        let _ = writeln!(
            std::io::stderr(),
            "sparekey: warning: could not record that the codes were delivered ({e}): they show as never confirmed"
        );
    }
}

/// The failure of showing codes that are already in force: never a success, and it says so.
fn lost_codes(e: Error) -> Error {
    Error::Io(format!(
        "{e}: the new codes did not reach it and the old ones are void: regenerate again"
    ))
}

// ----- login ---------------------------------------------------------------------------------

fn login(global: &GlobalArgs, out: Output, name: &str) -> Outcome {
    let mut input = SecretInput::stdin();
    let password = input.required("password")?;
    // The code line may be missing or empty when the account has no second factor.
    let code = input
        .optional("code (authenticator or backup code; empty if none)")?
        .filter(|c| !c.trim().is_empty());
    let second_factor = code.as_deref().map(|c| c.as_str());
    let success = open_existing(global)?.login(name, &password, second_factor)?;
    drop((password, code));
    // Durable from here on: only now may "accepted" be said.
    if out.is_json() {
        out.json(&serde_json::json!({
            "result": "accepted",
            "method": success.method.as_str(),
            "remaining_codes": success.remaining_codes,
            "total_codes": success.total_codes,
            "low_on_codes": success.low_on_codes(),
        }))?;
        return Ok(());
    }
    let line = match success.method {
        LoginMethod::Password => "accepted: password (no two-factor authentication)".to_string(),
        LoginMethod::Totp => "accepted: authenticator code".to_string(),
        LoginMethod::BackupCode => format!(
            "accepted: backup code, {} of {} codes left",
            success.remaining_codes, success.total_codes
        ),
    };
    out.line(&line)?;
    if success.low_on_codes() {
        let left = match success.remaining_codes {
            0 => "no backup codes remain".to_string(),
            1 => "only 1 backup code remains".to_string(),
            n => format!("only {n} backup codes remain"),
        };
        warn(&format!(
            "warning: {left}: run `sparekey codes regenerate {}` for a new set",
            shell_word(name)
        ));
    }
    Ok(())
}

/// The second factor alone (for the PAM module): one code line, the core's checks, the login's
/// answers and exit codes.
fn verify(global: &GlobalArgs, out: Output, args: &VerifyArgs) -> Outcome {
    if args.probe {
        let state = open_existing(global)?.probe_second_factor(&args.name)?;
        if out.is_json() {
            out.json(
                &serde_json::json!({ "account": args.name, "second_factor": state.as_str() }),
            )?;
        } else {
            // The name is as typed (a probe of no account validates nothing): escaped.
            let name = crate::core::account::printable(&args.name);
            out.line(&format!("'{name}': {}", state.as_str()))?;
        }
        return Ok(());
    }
    let code = SecretInput::stdin().required("code (authenticator or backup code)")?;
    let success = open_existing(global)?.verify_second_factor(&args.name, &code)?;
    drop(code);
    // Durable from here on: only now may "accepted" be said.
    if out.is_json() {
        out.json(&serde_json::json!({
            "result": "accepted",
            "method": success.method.as_str(),
            "remaining_codes": success.remaining_codes,
            "total_codes": success.total_codes,
            "low_on_codes": success.low_on_codes(),
        }))?;
        return Ok(());
    }
    out.line(&match success.method {
        LoginMethod::BackupCode => format!(
            "accepted: backup code, {} of {} codes remain",
            success.remaining_codes, success.total_codes
        ),
        _ => "accepted: authenticator code".to_string(),
    })?;
    Ok(())
}

// ----- import --------------------------------------------------------------------------------

/// Largest google-authenticator file read: a real one is a few hundred bytes.
const MAX_IMPORT_BYTES: u64 = 64 * 1024;

fn import_google_authenticator(
    global: &GlobalArgs,
    out: Output,
    args: &GoogleAuthenticatorArgs,
) -> Outcome {
    if let Some(file) = &args.out {
        check_new_file(file)?;
    }
    crate::core::account::validate_name(&args.account).map_err(Error::Invalid)?;
    let text = read_import_file(&args.file)?;
    let imported = crate::core::import::google_authenticator(&text)
        .map_err(|e| Error::Invalid(format!("{}: {e}", args.file.display())))?;
    drop(text);
    let source = format!("{} (left unchanged)", args.file.display());
    finish_import(
        global,
        out,
        &args.account,
        &imported,
        &source,
        args.out.as_deref(),
    )
}

fn import_otpauth(global: &GlobalArgs, out: Output, args: &OtpauthArgs) -> Outcome {
    if let Some(file) = &args.out {
        check_new_file(file)?;
    }
    crate::core::account::validate_name(&args.name).map_err(Error::Invalid)?;
    let uri = SecretInput::stdin().required("otpauth URI")?;
    let imported = crate::core::import::otpauth(&uri).map_err(Error::Invalid)?;
    drop(uri);
    finish_import(
        global,
        out,
        &args.name,
        &imported,
        "the otpauth URI",
        args.out.as_deref(),
    )
}

/// Reads a whole import file, bounded, into a buffer wiped when dropped; opened read-only, so
/// it is never changed.
fn read_import_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    use std::io::Read;
    let fail = |e: std::io::Error| Error::Io(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_IMPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        return Err(Error::Invalid(format!(
            "{} is larger than 64 KiB: not a google-authenticator file",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::Invalid(format!(
            "{} is not text: not a google-authenticator file",
            path.display()
        ))
    })?;
    Ok(Zeroizing::new(text.to_string()))
}

fn finish_import(
    global: &GlobalArgs,
    out: Output,
    name: &str,
    imported: &crate::core::import::Imported,
    source: &str,
    file: Option<&Path>,
) -> Outcome {
    // Where the new codes go is checked before they exist, as for every command that issues them.
    check_codes_output(file)?;
    let service = open(global)?;
    let issued = service.import_authenticator(name, imported)?;
    if out.is_json() && file.is_none() {
        let shown: Zeroizing<Vec<String>> = Zeroizing::new(
            (issued.codes.iter())
                .map(|c| String::from(c.display().as_str()))
                .collect(),
        );
        // Serialised straight from the buffers: no unwiped copy of a code.
        #[derive(Serialize)]
        struct ImportJson<'a> {
            account: &'a str,
            imported: bool,
            notes: &'a [String],
            codes: &'a [String],
        }
        out.json(&ImportJson {
            account: name,
            imported: true,
            notes: &imported.notes,
            codes: &shown,
        })
        .map_err(lost_codes)?;
        confirm_delivered(&service, &issued);
        return Ok(());
    }
    if !out.is_json() {
        let mut text = format!(
            "Imported the authenticator from {source} for '{name}': the phone keeps showing valid codes.\n"
        );
        for note in &imported.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        text.push('\n');
        out.text(&text)?;
    }
    deliver_and_confirm(&service, out, &issued, file)
}

// ----- codes and administration --------------------------------------------------------------

fn codes_status(global: &GlobalArgs, out: Output, name: &str) -> Outcome {
    let status = open_existing(global)?.code_status(name)?;
    let used: Vec<(usize, i64)> = status
        .used_at
        .iter()
        .enumerate()
        .filter_map(|(slot, at)| at.map(|at| (slot + 1, at)))
        .collect();
    if out.is_json() {
        let used: Vec<_> = used
            .iter()
            .map(|(slot, at)| serde_json::json!({ "slot": slot, "at": utc_timestamp(*at) }))
            .collect();
        out.json(&serde_json::json!({
            "account": name,
            "remaining": status.remaining,
            "total": status.total,
            "created_at": status.created_at.map(utc_timestamp),
            "confirmed_at": status.confirmed_at.map(utc_timestamp),
            "used": used,
        }))?;
        return Ok(());
    }
    let Some(created) = status.created_at else {
        out.line(&format!(
            "'{name}' has no backup codes: they are issued when an authenticator is enrolled"
        ))?;
        return Ok(());
    };
    let mut text = format!(
        "'{name}': {} of {} backup codes left (set issued {})\n",
        status.remaining,
        status.total,
        utc_timestamp(created)
    );
    if status.confirmed_at.is_none() {
        text.push_str(&format!(
            "  never confirmed: no code was typed back before they left the screen\n  run `sparekey codes regenerate {}` for a set you keep\n",
            shell_word(name)
        ));
    }
    for (slot, at) in used {
        text.push_str(&format!("  code #{slot} used {}\n", utc_timestamp(at)));
    }
    out.lines(&text)?;
    Ok(())
}

fn regenerate(global: &GlobalArgs, out: Output, args: &RegenerateArgs) -> Outcome {
    check_codes_output(args.out.as_deref())?;
    let (password, code) =
        read_step_up(&mut SecretInput::stdin(), "regenerating the backup codes")?;
    let service = open_existing_with(global, None, args.codes.codes)?;
    let proof = service.step_up(&args.name, &password, &code)?;
    drop((password, code));
    let issued = service.regenerate_codes(&args.name, &proof)?;
    deliver_and_confirm(&service, out, &issued, args.out.as_deref())
}

fn audit(global: &GlobalArgs, out: Output, args: &AuditArgs) -> Outcome {
    let events = open_existing(global)?.audit_log(args.name.as_deref(), args.limit)?;
    if out.is_json() {
        let events: Vec<_> = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "at": utc_timestamp(e.at),
                    "account": e.account,
                    "event": e.kind.name(),
                    "description": e.kind.to_string(),
                })
            })
            .collect();
        out.json(&serde_json::json!({ "events": events }))?;
        return Ok(());
    }
    if events.is_empty() {
        out.line("no audit events")?;
        return Ok(());
    }
    let mut text = String::new();
    for e in &events {
        text.push_str(&format!(
            "{}  {}  {}\n",
            utc_timestamp(e.at),
            e.account,
            e.kind
        ));
    }
    out.lines(&text)?;
    Ok(())
}

fn set_operator_password(global: &GlobalArgs, out: Output) -> Outcome {
    let password = SecretInput::stdin().new_password()?;
    open(global)?.set_operator_password(&password)?;
    if out.is_json() {
        out.json(&serde_json::json!({ "operator_password_set": true }))?;
    } else {
        out.line("the kiosk operator password is set: `sparekey tui --kiosk` can start")?;
    }
    Ok(())
}

fn reset_operator_failures(global: &GlobalArgs, out: Output) -> Outcome {
    open_existing(global)?.clear_operator_failures()?;
    if out.is_json() {
        out.json(&serde_json::json!({ "operator_failures_cleared": true }))?;
    } else {
        out.line(
            "the kiosk operator's failed attempts are cleared: the operator password works again",
        )?;
    }
    Ok(())
}

fn unlock(global: &GlobalArgs, out: Output, name: &str) -> Outcome {
    open_existing(global)?.unlock(name)?;
    if out.is_json() {
        out.json(&serde_json::json!({ "account": name, "unlocked": true }))?;
    } else {
        out.line(&format!("unlocked '{name}': its failure count is cleared"))?;
    }
    Ok(())
}

fn reset(global: &GlobalArgs, out: Output, args: &ConfirmedNameArg) -> Outcome {
    let name = args.name.as_str();
    open_existing(global)?.account_summary(name)?;
    confirm(
        &format!(
            "Turn two-factor authentication off for '{}'? Its authenticator and backup codes stop working for good.",
            crate::core::account::printable(name)
        ),
        args.confirm.yes,
    )?;
    open_existing(global)?.reset_two_factor(name)?;
    if out.is_json() {
        out.json(&serde_json::json!({ "account": name, "two_factor": false }))?;
    } else {
        out.line(&format!(
            "two-factor authentication is off for '{name}': its authenticator and backup codes no longer work"
        ))?;
    }
    Ok(())
}

// ----- recovery ------------------------------------------------------------------------------

fn paths(global: &GlobalArgs) -> Result<Paths, Error> {
    Ok(settings(global)?.paths)
}

fn backup(global: &GlobalArgs, out: Output, file: &Path) -> Outcome {
    let paths = paths(global)?;
    // Like every command that only reads: no store here is a store error naming --data-dir.
    app::require_existing(&paths)?;
    let summary = app::backup_store(&paths, file)?;
    if out.is_json() {
        out.json(&serde_json::json!({
            "file": file.display().to_string(),
            "accounts": summary.accounts,
            "audit_events": summary.audit_events,
        }))?;
    } else {
        out.line(&format!(
            "backed up {} and {} to {} (keep the key file too: the backup is useless without it)",
            output::counted(summary.accounts, "account"),
            output::counted(summary.audit_events, "audit event"),
            file.display()
        ))?;
    }
    Ok(())
}

fn restore(global: &GlobalArgs, out: Output, file: &Path, yes: bool) -> Outcome {
    let paths = paths(global)?;
    if paths.store.exists() {
        confirm(
            &format!(
                "Replace the store at {} with the backup {}? Changes since the backup are lost (the current store is moved aside).",
                paths.store.display(),
                file.display()
            ),
            yes,
        )?;
    }
    let now = crate::core::clock::Clock::now(&crate::core::clock::SystemClock);
    let summary = app::restore(&paths, file, now)?;
    for notification in app::notify::restored(&summary, now) {
        crate::core::notify::Notifier::notify(global.outbox.as_ref(), &notification);
    }
    let aside = summary
        .previous_store
        .as_ref()
        .map(|p| p.display().to_string());
    if out.is_json() {
        out.json(&serde_json::json!({
            "file": file.display().to_string(),
            "accounts": summary.accounts,
            "audit_events": summary.audit_events,
            "previous_store": aside,
            "codes_revived": summary.codes_revived,
        }))?;
    } else {
        let mut line = format!(
            "restored {} and {} from {}",
            output::counted(summary.accounts, "account"),
            output::counted(summary.audit_events, "audit event"),
            file.display()
        );
        if let Some(aside) = aside {
            line.push_str(&format!("; the previous store was moved to {aside}"));
        }
        out.line(&line)?;
        if !summary.codes_revived.is_empty() {
            let names: Vec<_> = (summary.codes_revived.iter())
                .map(|n| crate::core::account::printable(n).into_owned())
                .collect();
            warn(&format!(
                "warning: backup codes used since the backup work again for: {} (regenerate their codes with 'sparekey codes regenerate NAME')",
                names.join(", ")
            ));
        }
    }
    Ok(())
}

fn doctor(global: &GlobalArgs, out: Output) -> Outcome {
    let now = crate::core::clock::Clock::now(&crate::core::clock::SystemClock);
    let checks = app::doctor(&paths(global)?, now);
    let failed = checks.iter().filter(|c| c.status == Status::Fix).count();
    if out.is_json() {
        let list: Vec<_> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "check": c.name,
                    "ok": c.status == Status::Ok,
                    "skipped": c.status == Status::Skipped,
                    "detail": c.detail,
                })
            })
            .collect();
        out.json(&serde_json::json!({ "ok": failed == 0, "checks": list }))?;
    } else {
        let mut text = String::new();
        for c in &checks {
            text.push_str(&format!(
                "{} {:<12} {}\n",
                match c.status {
                    Status::Ok => "ok  ",
                    Status::Fix => "FIX ",
                    Status::Skipped => "skip",
                },
                c.name,
                c.detail
            ));
        }
        out.lines(&text)?;
    }
    if failed > 0 {
        // The findings are already printed; the stderr line sums them up.
        return Err(Failure::Shown(Error::NeedsFixing(format!(
            "doctor found {failed} problem{} to fix",
            if failed == 1 { "" } else { "s" }
        ))));
    }
    Ok(())
}

//! The command line, as clap derive types. Owns option names, help texts and environment
//! variables of the operator CLI; no behaviour. Secrets never appear here: passwords and codes
//! are read from stdin or a hidden prompt, never from argv (argv is visible in `ps`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{CONFIG_ENV, DATA_DIR_ENV, KEY_FILE_ENV, STORE_ENV};

/// sparekey: a terminal recovery console for TOTP two-factor authentication and its one-time
/// backup codes.
///
/// Without a command, opens the console. Passwords and codes are read from standard input (one
/// line each) or from a hidden prompt on a terminal, never from the command line.
///
/// Exit codes: 0 ok, 1 rejected (wrong password or code, replay), 2 usage or bad input,
/// 3 throttled or locked, 4 store error.
#[derive(Debug, Parser)]
#[command(
    name = "sparekey",
    version,
    propagate_version = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The end of `--help`: the first steps, as a new user takes them.
const EXAMPLES: &str = "\
Examples:
  sparekey account add alice      create an account (asks for its password twice)
  sparekey enroll alice           add an authenticator: scan the QR code, type a code
  sparekey --data-dir /srv/sparekey --json account list
                                  list the accounts of another store, as JSON";

/// Options accepted by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The config file [default: sparekey.toml in the platform config dir, else
    /// /etc/sparekey/sparekey.toml]; flags and SPAREKEY_* variables override it
    #[arg(long, value_name = "FILE", env = CONFIG_ENV, global = true)]
    pub config: Option<PathBuf>,

    /// The store: a path or sled:/path (embedded), or postgres://user@host/db or
    /// "host=… dbname=…" (shared by several hosts) [default: `store` in the data dir]
    #[arg(long, value_name = "URL", env = STORE_ENV, global = true)]
    pub store: Option<String>,

    /// The data directory holding the store [default: the platform data dir]
    #[arg(long, value_name = "DIR", env = DATA_DIR_ENV, global = true)]
    pub data_dir: Option<PathBuf>,

    /// The master key file [default: `key` in the platform config dir]
    #[arg(long, value_name = "FILE", env = KEY_FILE_ENV, global = true)]
    pub key_file: Option<PathBuf>,

    /// Print exactly one JSON object on stdout (errors too, as {"error", "kind"})
    #[arg(long, global = true)]
    pub json: bool,

    /// For operators: a program (absolute path) and arguments, split on whitespace, no shell,
    /// run after a backup-code use, a lock, a reset or replaced authenticator, or a restore,
    /// with the event in SPAREKEY_* variables (see the README, "Notifications")
    #[arg(long, value_name = "COMMAND", global = true)]
    pub notify_command: Option<String>,

    /// Seconds the notify command may run before it is killed (1-60) [default: 5]
    #[arg(long, value_name = "SECS", global = true)]
    pub notify_timeout_secs: Option<u64>,

    /// Where this run's services queue their notifications, delivered once the store is closed.
    #[arg(skip)]
    pub outbox: std::sync::Arc<crate::app::notify::Outbox>,
}

/// The issuer of a new authenticator: only on the commands that start an enrollment.
#[derive(Debug, Args, Default)]
pub struct IssuerArg {
    /// Issuer shown in authenticator apps [default: sparekey]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
}

/// The size of a new code set: only on the commands that issue one.
#[derive(Debug, Args, Default)]
pub struct CodesArg {
    /// Backup codes per new set, 5 to 20 [default: 10]
    #[arg(long, value_name = "N")]
    pub codes: Option<usize>,
}

/// Confirmation of a change that cannot be undone.
#[derive(Debug, Args)]
pub struct YesArg {
    /// Do it without asking (needed when standard input is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the console (the default when no command is given)
    Tui(TuiArgs),

    /// Create, list and remove accounts
    #[command(subcommand)]
    Account(AccountCommand),

    /// Start enrolling an authenticator; with --confirm, confirm it with a code from stdin.
    /// Replacing one reads the password line, then a current code line, first
    Enroll(EnrollArgs),

    /// Simulated login: reads the password line, then the code line (authenticator or backup code)
    Login(NameArg),

    /// Check only the second factor (the first was checked elsewhere, e.g. by pam_unix): reads
    /// one code line (authenticator or backup code); throttled, single-use and audited like a
    /// login, with its exit codes. For root and the PAM module, never a user-facing login
    Verify(VerifyArgs),

    /// Enroll an authenticator that exists elsewhere, so the phone keeps working, with a fresh
    /// set of backup codes
    #[command(subcommand)]
    Import(ImportCommand),

    /// Backup codes: status and regeneration
    #[command(subcommand)]
    Codes(CodesCommand),

    /// Show the audit log, oldest first
    Audit(AuditArgs),

    /// Operator: clear the failure counter of a throttled or locked account
    Unlock(NameArg),

    /// Operator: turn two-factor authentication off for an account (authenticator and codes)
    Reset(ConfirmedNameArg),

    /// Kiosk operator recovery
    #[command(subcommand)]
    Kiosk(KioskCommand),

    /// Write a consistent copy of the store to a new file (mode 0600; the key file is needed to
    /// use it, so back that up separately)
    Backup(FileArg),

    /// Replace the store with a backup; the current store is moved aside, never deleted
    Restore(RestoreArgs),

    /// Check permissions, the key file, the store and the clock, and say what to fix
    Doctor,
}

#[derive(Debug, Args)]
pub struct FileArg {
    /// The backup file
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file
    pub file: PathBuf,

    #[command(flatten)]
    pub confirm: YesArg,
}

#[derive(Debug, Args, Default)]
#[command(after_help = crate::tui::demo::KEYS_SYNTAX)]
pub struct TuiArgs {
    /// Kiosk mode: a shared terminal; leaving needs the operator password
    #[arg(long)]
    pub kiosk: bool,

    /// Run on a demo store in memory (sample accounts, a clock that stands still, fixed
    /// randomness); never opens a store or key file, so --data-dir and --key-file are refused
    #[arg(long)]
    pub demo: bool,

    /// With --demo: press the keys in FILE (`-`: stdin) and print every frame as plain text
    #[arg(long, value_name = "FILE", requires = "demo")]
    pub keys: Option<PathBuf>,

    /// With --keys: write one file per frame (0000.txt, 0001.txt, …) into DIR, new or empty
    #[arg(long, value_name = "DIR", requires = "keys")]
    pub frames: Option<PathBuf>,

    /// With --keys: the frame size [default: 80x24]
    #[arg(long, value_name = "WxH", requires = "keys", value_parser = crate::tui::demo::parse_size)]
    pub size: Option<crate::tui::demo::FrameSize>,

    /// Kiosk: seconds without a key before the screen is cleared back to the login
    /// [default: 60; at least 600 while backup codes are shown]
    #[arg(long, value_name = "SECONDS", requires = "kiosk")]
    pub idle_timeout: Option<u64>,

    #[command(flatten)]
    pub issuer: IssuerArg,

    #[command(flatten)]
    pub codes: CodesArg,
}

#[derive(Debug, Subcommand)]
pub enum KioskCommand {
    /// Set the kiosk operator password (needed before `tui --kiosk`); reads it from stdin, or a
    /// hidden prompt asked twice
    SetOperatorPassword,
    /// Clear the kiosk operator's failed attempts, so a locked-out operator can try again
    ResetOperatorPassword,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; reads its password from stdin (or a hidden prompt, asked twice)
    Add(AddArgs),
    /// List the accounts and the state of their second factor
    List,
    /// Remove an account and its second factor
    Remove(ConfirmedNameArg),
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The account name
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ConfirmedNameArg {
    /// The account name
    pub name: String,

    #[command(flatten)]
    pub confirm: YesArg,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The account name
    pub name: String,

    /// No sparekey password: the first factor is checked elsewhere (the system password, by
    /// pam_unix), and `sparekey verify` checks the second. Reads nothing
    #[arg(long)]
    pub second_factor_only: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The account name
    pub name: String,

    /// Read nothing and change nothing: say whether there is an authenticator to check now
    /// (`ready`), `no_account` or `no_authenticator` (exit 0 for all three), or exit 3 while the
    /// account is throttled or locked
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Read a google-authenticator-libpam file (~/.google_authenticator; TOTP only). The file is
    /// never changed; its scratch codes are not carried over (a fresh set is shown instead). An
    /// account that does not exist is created second-factor-only
    GoogleAuthenticator(GoogleAuthenticatorArgs),
    /// Read one otpauth://totp/ URI from standard input (or a hidden prompt)
    Otpauth(OtpauthArgs),
}

#[derive(Debug, Args)]
pub struct GoogleAuthenticatorArgs {
    /// The google-authenticator file
    pub file: PathBuf,

    /// The sparekey account to enroll it for
    #[arg(long, value_name = "NAME")]
    pub account: String,

    /// Write the new backup codes to this new file (mode 0600, never overwritten) instead of
    /// printing them
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OtpauthArgs {
    /// The sparekey account to enroll it for
    pub name: String,

    /// Write the new backup codes to this new file (mode 0600, never overwritten) instead of
    /// printing them
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The account name
    pub name: String,

    /// Confirm the waiting enrollment with one authenticator code read from stdin
    #[arg(long)]
    pub confirm: bool,

    /// Write the new backup codes to this new file (mode 0600, never overwritten) instead of
    /// printing them
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub issuer: IssuerArg,

    #[command(flatten)]
    pub codes: CodesArg,
}

#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// How many backup codes remain
    Status(NameArg),
    /// Replace the whole set (reads the password, then a current code); every old code stops
    /// working
    Regenerate(RegenerateArgs),
}

#[derive(Debug, Args)]
pub struct RegenerateArgs {
    /// The account name
    pub name: String,

    /// Write the new backup codes to this new file (mode 0600, never overwritten) instead of
    /// printing them
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub codes: CodesArg,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this account's events
    pub name: Option<String>,

    /// Show at most the newest N events
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
}

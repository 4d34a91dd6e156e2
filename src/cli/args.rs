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
#[command(name = "sparekey", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

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

    /// Issuer shown in authenticator apps (used by enroll and the console) [default: sparekey]
    #[arg(long, value_name = "NAME", global = true)]
    pub issuer: Option<String>,

    /// Backup codes per set, 5 to 20 (used when a set is issued) [default: 10]
    #[arg(long, value_name = "N", global = true)]
    pub codes: Option<usize>,
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

    /// Backup codes: status and regeneration
    #[command(subcommand)]
    Codes(CodesCommand),

    /// Show the audit log, oldest first
    Audit(AuditArgs),

    /// Operator: clear the failure counter of a throttled or locked account
    Unlock(NameArg),

    /// Operator: turn two-factor authentication off for an account (authenticator and codes)
    Reset(NameArg),

    /// Kiosk operator recovery
    #[command(subcommand)]
    Kiosk(KioskCommand),

    /// Write a consistent copy of the store to a new file (mode 0600; the key file is needed to
    /// use it, so back that up separately)
    Backup(FileArg),

    /// Replace the store with a backup; the current store is moved aside, never deleted
    Restore(FileArg),

    /// Check permissions, the key file, the store and the clock, and say what to fix
    Doctor,
}

#[derive(Debug, Args)]
pub struct FileArg {
    /// The backup file
    pub file: PathBuf,
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
    Add(NameArg),
    /// List the accounts and the state of their second factor
    List,
    /// Remove an account and its second factor
    Remove(NameArg),
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The account name
    pub name: String,
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
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this account's events
    pub name: Option<String>,

    /// Show at most the newest N events
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
}

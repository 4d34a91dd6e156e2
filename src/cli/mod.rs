//! The operator CLI: a thin face over [`crate::core::service::Service`]. It parses arguments
//! ([`args`]), reads secrets from stdin or a hidden prompt ([`input`]), calls the service
//! ([`commands`]) and prints plain text or one JSON object ([`output`]); the exit code follows
//! from the core error's kind. No rule lives here.

pub mod args;
pub mod commands;
pub mod input;
pub mod output;

use clap::Parser;

pub use args::Cli;
pub use commands::run;

/// Makes everything this process creates private to its owner (files 0600, dirs 0700 at most).
/// The standard library has no call for the umask.
#[allow(unsafe_code)]
pub fn set_private_umask() {
    // SAFETY: umask takes a plain integer, touches no memory of ours and cannot fail; it only
    // changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Parses the command line. On a usage error (or `--help`/`--version`) prints it and returns
/// the exit code: 2 for errors (with the JSON error object on stdout under `--json`), 0 for help.
pub fn parse() -> Result<Cli, u8> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => {
            // 0 for --help and --version, 2 for usage errors.
            let code = u8::try_from(e.exit_code()).unwrap_or(2);
            if code != 0 && std::env::args_os().any(|a| a == "--json") {
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or("invalid usage");
                output::usage_error_json(first.strip_prefix("error: ").unwrap_or(first));
            }
            let _ = e.print();
            Err(code)
        }
    }
}

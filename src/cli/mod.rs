//! The operator CLI: a thin face over [`crate::core::service::Service`]. It parses arguments
//! ([`args`]), reads secrets from stdin or a hidden prompt ([`input`]), calls the service
//! ([`commands`]) and prints plain text or one JSON object ([`output`]); the exit code follows
//! from the core error's kind. No rule lives here. Also sets the process up before anything is
//! read: private umask, no core dumps.

pub mod args;
pub mod commands;
pub mod input;
pub mod output;

use clap::Parser;

pub use args::Cli;
pub use commands::run;

/// Makes everything this process creates private to its owner (files 0600, dirs 0700 at most).
pub fn set_private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Keeps the master key out of core dumps, for the whole process and before anything is read:
/// no core file is written (RLIMIT_CORE 0, soft and hard, so nothing in the process can raise
/// it again), and the process is not dumpable (PR_SET_DUMPABLE 0), which also stops a debugger
/// of the same user from attaching and reading its memory. Fails, with the reason, only where
/// the system refuses; the caller then stops, since the key would not be protected.
pub fn disable_core_dumps() -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, none).map_err(|e| format!("cannot turn core dumps off: {e}"))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("cannot make the process non-dumpable: {e}"))?;
    Ok(())
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

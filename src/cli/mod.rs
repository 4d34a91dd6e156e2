//! The operator CLI: a thin face over [`crate::core::service::Service`]. It parses arguments
//! ([`args`]), reads secrets from stdin or a hidden prompt ([`input`]), calls the service
//! ([`commands`]) and prints plain text or one JSON object ([`output`]); the exit code follows
//! from the core error's kind. No rule lives here. Also sets the process up before anything is
//! read: private umask, no core dumps.

pub(crate) mod args;
pub(crate) mod commands;
pub mod input;
pub(crate) mod output;

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
            if code == 0 {
                let _ = e.print();
                return Err(0);
            }
            let rendered = usage_error(&e.render().to_string());
            if std::env::args_os().any(|a| a == "--json") {
                let first = rendered.lines().next().unwrap_or_default();
                output::usage_error_json(first.strip_prefix("sparekey: ").unwrap_or(first));
            }
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), rendered.as_bytes());
            Err(code)
        }
    }
}

/// A usage error as clap renders it, with its first line starting `sparekey: ` like every other
/// error of this program (so a log or a script finds it the same way); the usage and tips after
/// it are kept.
fn usage_error(rendered: &str) -> String {
    let (first, rest) = rendered.split_once('\n').unwrap_or((rendered, ""));
    let message = first.strip_prefix("error: ").unwrap_or(first).trim();
    let message = if message.is_empty() {
        "invalid usage"
    } else {
        message
    };
    let mut text = format!("sparekey: {message}\n{rest}");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_start_like_every_other_error() {
        let e = Cli::try_parse_from(["sparekey", "account", "list", "--frobnicate"]).unwrap_err();
        let text = usage_error(&e.render().to_string());
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("sparekey: unexpected argument '--frobnicate'"),
            "{text}"
        );
        assert!(!text.contains("error: "), "{text}");
        assert!(text.contains("Usage: sparekey account list"), "{text}");
        assert_eq!(usage_error("error: x"), "sparekey: x\n");
    }

    #[test]
    fn issuer_and_codes_only_where_they_apply() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(
            parse(&[
                "sparekey", "enroll", "a", "--issuer", "Acme", "--codes", "8"
            ])
            .is_ok()
        );
        assert!(parse(&["sparekey", "codes", "regenerate", "a", "--codes", "8"]).is_ok());
        assert!(parse(&["sparekey", "tui", "--issuer", "Acme", "--codes", "8"]).is_ok());
        for args in [
            &["sparekey", "account", "list", "--issuer", "Acme"][..],
            &["sparekey", "--issuer", "Acme", "account", "list"],
            &["sparekey", "audit", "--codes", "8"],
            &["sparekey", "codes", "regenerate", "a", "--issuer", "Acme"],
            &["sparekey", "login", "a", "--codes", "8"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_ends_with_examples() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        let tail: Vec<&str> = help.trim_end().lines().rev().take(6).collect();
        assert!(tail.iter().any(|l| l.starts_with("Examples:")), "{help}");
        assert!(
            tail.iter().any(|l| l.contains("sparekey enroll alice")),
            "{help}"
        );
    }
}

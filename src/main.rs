#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // First of all, before the key file is read: no core dump may hold the master key.
    if let Err(e) = sparekey::cli::disable_core_dumps() {
        eprintln!("sparekey: {e}");
        return ExitCode::from(4);
    }
    sparekey::cli::set_private_umask();
    match sparekey::cli::parse() {
        Ok(cli) => ExitCode::from(sparekey::cli::run(cli)),
        Err(code) => ExitCode::from(code),
    }
}

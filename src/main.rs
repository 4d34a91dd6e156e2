#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::process::ExitCode;

fn main() -> ExitCode {
    sparekey::cli::set_private_umask();
    match sparekey::cli::parse() {
        Ok(cli) => ExitCode::from(sparekey::cli::run(cli)),
        Err(code) => ExitCode::from(code),
    }
}

//! The built `sparekey` binary as a child process: the CLI's exit codes and output, its prompts
//! on a terminal, the console over a pseudo-terminal, and the store's consistency when the
//! process is killed at random moments. One test binary for all of them (see
//! `tests/library/main.rs` for why).

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod cli_tty;
mod cli_verify;
mod crash;
mod demo;
mod import;
mod notify;
mod pam;
mod shared_store;
mod sshd;
mod tui_pty;

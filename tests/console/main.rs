//! The console without a terminal: flows driven by key events, snapshots of every screen, the
//! README's pictures, and the real export file. One test binary for all of them (see
//! `tests/library/main.rs` for why).

#[path = "../support/mod.rs"]
mod support;

mod tui_assets;
mod tui_export;
mod tui_flows;
mod tui_snapshots;

//! One file per screen, each holding that screen's state, its keys and its drawing. Screens talk
//! to the rest of the app only through [`crate::tui::app::Cx`]; none may call the service.

pub mod accounts;
pub mod codes;
pub mod enroll;
pub mod login;
pub mod new_account;
pub mod operator;
pub mod secure;
pub mod settings;

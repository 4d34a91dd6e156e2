//! The key lists: each screen declares its keys once, as [`KeyHint`]s, and both the footer and
//! the `?` help overlay are generated from that one list, so they can never disagree with each
//! other. Owns the global keys too. Must never decide what a key does: that is each screen's
//! `on_key`.

/// One key and what it does on the current screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHint {
    /// As shown to the user, e.g. "Enter", "Ctrl-C", "/".
    pub key: &'static str,
    pub action: &'static str,
}

/// Shorthand for the static key tables of the screens.
pub(crate) const fn hint(key: &'static str, action: &'static str) -> KeyHint {
    KeyHint { key, action }
}

/// Always shown last in the footer, whatever else fits.
pub(crate) const HELP_KEY: KeyHint = hint("?/F1", "all keys");

/// Keys every screen obeys.
pub(crate) const GLOBAL_KEYS: &[KeyHint] = &[
    HELP_KEY,
    hint("Esc", "back"),
    hint("q", "quit (when not typing)"),
    hint("Ctrl-C", "quit"),
];

/// Offered on every screen while the clipboard may still hold codes.
pub(crate) const CLEAR_CLIPBOARD: KeyHint = hint("Ctrl-X", "clear clipboard");

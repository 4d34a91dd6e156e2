//! The console (placeholder).

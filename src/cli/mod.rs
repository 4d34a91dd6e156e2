//! The operator CLI (placeholder).

//! The console's real export writer: a new file, private, complete or absent, never overwriting.

use std::os::unix::fs::PermissionsExt;

use sparekey::tui::app::ExportError;
use sparekey::tui::runtime::{Platform, RealPlatform, write_new_atomically};

#[test]
fn export_creates_a_private_file_and_never_overwrites() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("sparekey-recovery-codes-alice.txt");
    write_new_atomically(&path, b"first").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let err = write_new_atomically(&path, b"second").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let mut platform = RealPlatform::new();
    assert_eq!(platform.export(&path, b"third"), Err(ExportError::Exists));
}

//! The console's real export: a new file, private, complete or absent, never overwriting (the
//! writer itself is tested in `app::new_file`; this checks the console goes through it).

use std::os::unix::fs::PermissionsExt;

use sparekey::tui::app::ExportError;
use sparekey::tui::runtime::{Platform, RealPlatform};

#[test]
fn export_creates_a_private_file_and_never_overwrites() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("sparekey-recovery-codes-alice.txt");
    let mut platform = RealPlatform::new();
    platform.export(&path, b"first").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    assert_eq!(platform.export(&path, b"second"), Err(ExportError::Exists));
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let missing = dir.path().join("no-such-dir").join("codes.txt");
    assert!(matches!(
        platform.export(&missing, b"x"),
        Err(ExportError::Other(_))
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

//! What every test that runs the built binary gives it: a data dir, a key file and a home inside
//! the test's own temporary directory, so no test reads or writes the real home of whoever runs
//! the suite, and no two tests share a store.

use std::path::{Path, PathBuf};

/// The environment of a `sparekey` child confined to `dir`: its store under `dir/data`, its key
/// file at `dir/key`, and `dir` as its home, so nothing it finds through the home is the real
/// one.
pub fn isolated_env(dir: &Path) -> [(&'static str, PathBuf); 3] {
    [
        ("SPAREKEY_DATA_DIR", dir.join("data")),
        ("SPAREKEY_KEY_FILE", dir.join("key")),
        ("HOME", dir.to_path_buf()),
    ]
}

//! The module's configuration, read only from a root-owned file that no one else may write
//! (`/etc/sparekey/sparekey.toml` unless `config=` names another): where the store and its key
//! are, which `sparekey` binary to run and how long to wait for it. Nothing comes from the
//! environment of the process being authenticated. Reads only the keys it needs and ignores the
//! rest of the file (the CLI's own settings may live there too).

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_BINARY: &str = "/usr/bin/sparekey";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/sparekey";
pub const DEFAULT_KEY_FILE: &str = "/etc/sparekey/key";
/// Long enough for a store another process holds for a moment (the CLI waits 3 s for its lock),
/// short enough that sshd never waits long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this was read from, handed to the binary as `--config` so that both read the
    /// same settings (`store`, `[throttle]`); empty when parsed from text (tests).
    pub file: PathBuf,
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub timeout: Duration,
}

#[derive(Debug, Default, Deserialize)]
struct FileKeys {
    data_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    pam: PamKeys,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PamKeys {
    binary: Option<PathBuf>,
    timeout_secs: Option<u64>,
}

/// Reads and checks the file at `path`: it and the binary it names must belong to root and be
/// writable by no one else.
pub fn load(path: &Path) -> Result<Config, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // The checks are on the open file, so it cannot be swapped between check and read.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    check_trusted(path, &meta, 0)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{} is larger than 64 KiB", path.display()));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut config = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    config.file = path.to_path_buf();
    let meta = std::fs::metadata(&config.binary)
        .map_err(|e| format!("cannot use {}: {e}", config.binary.display()))?;
    check_trusted(&config.binary, &meta, 0)?;
    Ok(config)
}

/// A regular file owned by `owner` that neither its group nor others may write.
pub fn check_trusted(path: &Path, meta: &Metadata, owner: u32) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.uid() != owner {
        return Err(format!(
            "{} must belong to root (it decides who may log in)",
            path.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must not be writable by its group or others",
            path.display()
        ));
    }
    Ok(())
}

/// The keys of the file, with their defaults; paths must be absolute.
pub fn parse(text: &str) -> Result<Config, String> {
    let keys: FileKeys = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let absolute = |name: &str, p: PathBuf| {
        if p.is_absolute() {
            Ok(p)
        } else {
            Err(format!("{name} must be an absolute path"))
        }
    };
    let timeout_secs = keys.pam.timeout_secs.unwrap_or(DEFAULT_TIMEOUT.as_secs());
    if !(1..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
        return Err(format!(
            "pam.timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        ));
    }
    Ok(Config {
        file: PathBuf::new(),
        binary: absolute(
            "pam.binary",
            keys.pam.binary.unwrap_or_else(|| DEFAULT_BINARY.into()),
        )?,
        data_dir: absolute(
            "data_dir",
            keys.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        )?,
        key_file: absolute(
            "key_file",
            keys.key_file.unwrap_or_else(|| DEFAULT_KEY_FILE.into()),
        )?,
        timeout: Duration::from_secs(timeout_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.binary, Path::new(DEFAULT_BINARY));
        assert_eq!(c.data_dir, Path::new(DEFAULT_DATA_DIR));
        assert_eq!(c.key_file, Path::new(DEFAULT_KEY_FILE));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn keys_are_read_and_other_settings_left_alone() {
        let c = parse(
            "issuer = \"corp\"\ndata_dir = \"/srv/sk\"\nkey_file = \"/srv/sk.key\"\n\
             [throttle]\nlock_after = 10\n[pam]\nbinary = \"/opt/sparekey\"\ntimeout_secs = 2\n",
        )
        .unwrap();
        assert_eq!(c.binary, Path::new("/opt/sparekey"));
        assert_eq!(c.data_dir, Path::new("/srv/sk"));
        assert_eq!(c.key_file, Path::new("/srv/sk.key"));
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            parse("data_dir = \"rel\"")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(parse("[pam]\ntimeout_secs = 0").is_err());
        assert!(parse("[pam]\ntimeout_secs = 31").is_err());
        assert!(
            parse("[pam]\nbinnary = \"/x\"").is_err(),
            "a typo in our own table"
        );
        assert!(parse("data_dir = ").is_err());
    }

    #[test]
    fn only_a_file_of_the_owner_that_others_cannot_write_is_trusted() {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, "").unwrap();
        let uid = std::fs::metadata(&path).unwrap().uid();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        check_trusted(&path, &meta, uid).unwrap();
        assert!(
            check_trusted(&path, &meta, uid + 1)
                .unwrap_err()
                .contains("root")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            check_trusted(&path, &meta, uid)
                .unwrap_err()
                .contains("writable")
        );
        let meta = std::fs::metadata(&dir).unwrap();
        assert!(check_trusted(&dir, &meta, uid).is_err(), "a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pam_sparekey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

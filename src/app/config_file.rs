//! The config file (`sparekey.toml`) and the settings of one run: what the command line said
//! (flags, and the `SPAREKEY_*` variables clap reads for them) over the file, over the defaults.
//! The file holds `store`, `data_dir`, `key_file`, `issuer`, `codes`, `notify`,
//! `notify_timeout_secs`, a `[throttle]` table and a `[pam]` table (read by the PAM module, which shares this file; checked here, used there); a
//! key it does not know is an error that names it, so a typo never silently falls back to a
//! default.
//!
//! Owns where the file is looked for (`--config`, else `sparekey.toml` in the platform config
//! dir, else `/etc/sparekey/sparekey.toml`) and that merge. Must never open the store, and never
//! let the file set anything weaker than the core allows (hash costs are not in it at all).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::notify::NotifyCommand;
use super::paths::Paths;
use crate::core::error::Error;
use crate::core::service::Config;
use crate::core::throttle::ThrottlePolicy;
use crate::store::location::StoreLocation;

/// Environment variable naming the config file (overridden by `--config`).
pub const CONFIG_ENV: &str = "SPAREKEY_CONFIG";
/// Environment variable naming the store (overridden by `--store`).
pub const STORE_ENV: &str = "SPAREKEY_STORE";
/// The file's name in the platform config dir and in [`SYSTEM_CONFIG_DIR`].
pub(crate) const CONFIG_FILE_NAME: &str = "sparekey.toml";
/// Where a host-wide config lives (several login hosts: one file per host, the same content).
pub(crate) const SYSTEM_CONFIG_DIR: &str = "/etc/sparekey";

/// NIST SP 800-63B: at most 100 consecutive failures before an account locks.
const MAX_LOCK_AFTER: u32 = 100;

/// The file's content. Every field is optional: what it leaves out keeps its default.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub store: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub codes: Option<usize>,
    pub throttle: Option<ThrottleTable>,
    pub pam: Option<PamTable>,
    /// The owner-notification command (see [`crate::app::notify`]); honoured only from a file
    /// that its reader or root owns and nobody else may write.
    pub notify: Option<String>,
    pub notify_timeout_secs: Option<u64>,
}

/// `[pam]`: the PAM module's own settings (which `sparekey` binary it runs, how long it waits
/// for it). sparekey itself uses neither; they are here so one file serves both, and so a typo
/// in them is refused by `sparekey` too.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PamTable {
    pub binary: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
}

/// `[throttle]`: the same fields as [`ThrottlePolicy`], each optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThrottleTable {
    pub free_failures: Option<u32>,
    pub base_delay_secs: Option<i64>,
    pub max_delay_secs: Option<i64>,
    pub lock_after: Option<u32>,
}

impl ThrottleTable {
    fn apply(&self, policy: ThrottlePolicy, origin: &Path) -> Result<ThrottlePolicy, Error> {
        let policy = ThrottlePolicy {
            free_failures: self.free_failures.unwrap_or(policy.free_failures),
            base_delay_secs: self.base_delay_secs.unwrap_or(policy.base_delay_secs),
            max_delay_secs: self.max_delay_secs.unwrap_or(policy.max_delay_secs),
            lock_after: self.lock_after.unwrap_or(policy.lock_after),
        };
        let bad = |why: &str| {
            Err(Error::Invalid(format!(
                "{}: [throttle] {why}",
                origin.display()
            )))
        };
        if !(1..=MAX_LOCK_AFTER).contains(&policy.lock_after) {
            return bad(&format!(
                "lock_after must be between 1 and {MAX_LOCK_AFTER}"
            ));
        }
        if policy.free_failures >= policy.lock_after {
            return bad("free_failures must be smaller than lock_after");
        }
        if policy.base_delay_secs < 1 || policy.max_delay_secs < policy.base_delay_secs {
            return bad("base_delay_secs must be at least 1 and at most max_delay_secs");
        }
        Ok(policy)
    }
}

impl ConfigFile {
    /// Parses the file's text; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &Path) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| {
            // toml's message names the key and the line; one line of it is enough.
            let message = e.message().replace('\n', " ");
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => Error::Invalid(format!("{}:{line}: {message}", origin.display())),
                None => Error::Invalid(format!("{}: {message}", origin.display())),
            }
        })
    }

    /// Reads the file at `explicit` (which must exist), or the first default one that exists;
    /// `None` when there is none.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<Option<(PathBuf, Self)>, Error> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match default_path() {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Invalid(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        let file = Self::parse(&text, &path)?;
        Ok(Some((path, file)))
    }
}

/// `sparekey.toml` in the platform config dir if it exists, else in [`SYSTEM_CONFIG_DIR`].
fn default_path() -> Option<PathBuf> {
    let user = directories::ProjectDirs::from("", "", "sparekey")
        .map(|d| d.config_dir().join(CONFIG_FILE_NAME));
    let system = Path::new(SYSTEM_CONFIG_DIR).join(CONFIG_FILE_NAME);
    user.into_iter().chain([system]).find(|p| p.is_file())
}

/// What the command line said (flags or their `SPAREKEY_*` variables); `None`: not said.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub store: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub codes: Option<usize>,
    /// `--notify-command`: a flag only, never a variable an environment could pass on.
    pub notify: Option<String>,
    pub notify_timeout_secs: Option<u64>,
}

/// Everything one run needs to open its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    pub config: Config,
    /// The command run for owner notifications, if any.
    pub notify: Option<NotifyCommand>,
}

impl Settings {
    /// The command line over the config file over the defaults.
    pub fn resolve(overrides: &Overrides) -> Result<Self, Error> {
        let (origin, file) = ConfigFile::load(overrides.config.as_deref())?.unwrap_or_default();
        // A relative key file in the config file is relative to the file, not to wherever
        // the command happens to run.
        let beside_file = |p: &PathBuf| match origin.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        let key_file = overrides
            .key_file
            .clone()
            .or(file.key_file.as_ref().map(beside_file));
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.data_dir.as_ref().map(beside_file));
        let mut paths = Paths::resolve(data_dir, key_file)?;
        if let Some(store) = overrides.store.as_ref().or(file.store.as_ref()) {
            let location = StoreLocation::parse(store).map_err(Error::Invalid)?;
            paths = paths.with_location(location);
        }
        let defaults = Config::default();
        let throttle = match &file.throttle {
            Some(table) => table.apply(defaults.throttle, &origin)?,
            None => defaults.throttle,
        };
        let config = Config {
            issuer: overrides
                .issuer
                .clone()
                .or(file.issuer)
                .unwrap_or(defaults.issuer.clone()),
            code_count: overrides
                .codes
                .or(file.codes)
                .unwrap_or(defaults.code_count),
            throttle,
            ..defaults
        };
        let notify = match (&overrides.notify, &file.notify) {
            (Some(command), _) => Some(command.as_str()),
            (None, Some(command)) => {
                trusted_for_commands(&origin)?;
                Some(command.as_str())
            }
            (None, None) => None,
        };
        let timeout = overrides.notify_timeout_secs.or(file.notify_timeout_secs);
        if let (Some(_), Some(pam)) = (&notify, &file.pam) {
            check_fits_the_pam_deadline(timeout, pam, &origin)?;
        }
        let notify = (notify.map(|c| NotifyCommand::parse(c, timeout)))
            .transpose()
            .map_err(|e| Error::Invalid(format!("{}: notify: {e}", origin.display())))?;
        Ok(Self {
            paths,
            config,
            notify,
        })
    }
}

/// In the PAM module's file, `sparekey verify` runs the notify command before it exits, inside
/// the module's deadline: a command allowed to take as long as the module waits would turn a
/// backup code already spent into AUTHINFO_UNAVAIL. So it must end (or be killed) at least two
/// seconds before the module gives up.
fn check_fits_the_pam_deadline(
    notify_secs: Option<u64>,
    pam: &PamTable,
    origin: &Path,
) -> Result<(), Error> {
    let notify_secs = notify_secs.unwrap_or(crate::app::notify::DEFAULT_TIMEOUT.as_secs());
    let pam_secs = pam.timeout_secs.unwrap_or(5);
    if notify_secs + 2 > pam_secs {
        return Err(Error::Invalid(format!(
            "{}: notify_timeout_secs ({notify_secs}) must be at least 2 less than pam.timeout_secs ({pam_secs}), or a slow notify command would make the PAM module give up on a code already spent",
            origin.display()
        )));
    }
    Ok(())
}

/// A file that may name a command this process runs: owned by whoever runs it, or by root, and
/// writable by no one else, so nobody can make another user (root at a login) run their program.
fn trusted_for_commands(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Invalid(format!("cannot check {}: {e}", path.display())))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::Invalid(format!(
            "{} names a notify command but belongs to another user: it must be yours or root's",
            path.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Invalid(format!(
            "{} names a notify command but its group or others may write it: chmod go-w it",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(text, Path::new("/etc/sparekey/sparekey.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_documented_key_is_read() {
        let file = parse(
            r#"
            store = "postgres://sparekey@db.example.org/sparekey"
            data_dir = "/var/lib/sparekey"
            key_file = "/etc/sparekey/key"
            issuer = "Example"
            codes = 12

            [pam]
            binary = "/usr/bin/sparekey"
            timeout_secs = 5

            [throttle]
            free_failures = 3
            base_delay_secs = 10
            max_delay_secs = 600
            lock_after = 10
            "#,
        )
        .unwrap();
        assert_eq!(
            file.store.as_deref(),
            Some("postgres://sparekey@db.example.org/sparekey")
        );
        assert_eq!(file.key_file, Some(PathBuf::from("/etc/sparekey/key")));
        assert_eq!(file.data_dir, Some(PathBuf::from("/var/lib/sparekey")));
        assert_eq!(
            file.pam,
            Some(PamTable {
                binary: Some(PathBuf::from("/usr/bin/sparekey")),
                timeout_secs: Some(5)
            })
        );
        assert_eq!(file.codes, Some(12));
        let policy = file
            .throttle
            .unwrap()
            .apply(ThrottlePolicy::default(), Path::new("f"))
            .unwrap();
        assert_eq!(
            policy,
            ThrottlePolicy {
                free_failures: 3,
                base_delay_secs: 10,
                max_delay_secs: 600,
                lock_after: 10
            }
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it_and_its_line() {
        let error = parse("issuer = \"x\"\nisuer = \"typo\"\n").unwrap_err();
        assert!(error.contains("isuer"), "{error}");
        assert!(error.contains("sparekey.toml:2"), "{error}");
        let error = parse("[throttle]\nlock_afer = 3\n").unwrap_err();
        assert!(error.contains("lock_afer"), "{error}");
        let error = parse("[pam]\ntimeout = 3\n").unwrap_err();
        assert!(error.contains("timeout"), "{error}");
        let error = parse("codes = \"ten\"\n").unwrap_err();
        assert!(error.contains("sparekey.toml:1"), "{error}");
    }

    #[test]
    fn a_throttle_weaker_than_the_rules_is_refused() {
        for (table, why) in [
            ("lock_after = 101", "lock_after"),
            ("lock_after = 0", "lock_after"),
            ("free_failures = 20\nlock_after = 20", "free_failures"),
            ("base_delay_secs = 0", "base_delay_secs"),
        ] {
            let file = parse(&format!("[throttle]\n{table}\n")).unwrap();
            let error = file
                .throttle
                .unwrap()
                .apply(ThrottlePolicy::default(), Path::new("f"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(why), "{table}: {error}");
        }
    }

    #[test]
    fn a_notify_command_is_read_only_from_a_file_nobody_else_may_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparekey.toml");
        std::fs::write(&path, "notify = \"/bin/true\"\nnotify_timeout_secs = 2\n").unwrap();
        let resolve = |flag: Option<&str>| {
            Settings::resolve(&Overrides {
                config: Some(path.clone()),
                notify: flag.map(str::to_string),
                ..Overrides::default()
            })
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let expected = NotifyCommand::parse("/bin/true", Some(2)).unwrap();
        assert_eq!(resolve(None).unwrap().notify, Some(expected));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o602)).unwrap();
        let error = resolve(None).unwrap_err().to_string();
        assert!(error.contains("go-w"), "{error}");
        // The flag is the invoker's own choice; the file's timeout still applies.
        let flagged = resolve(Some("/bin/false")).unwrap().notify;
        assert_eq!(
            flagged,
            Some(NotifyCommand::parse("/bin/false", Some(2)).unwrap())
        );
        std::fs::write(&path, "notify = \"relative\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(resolve(None).unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn in_the_pam_modules_file_notify_ends_before_the_module_gives_up() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparekey.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            Settings::resolve(&Overrides {
                config: Some(path.clone()),
                ..Overrides::default()
            })
        };
        // The defaults (5 s each) leave the module no time to read the answer.
        let error = resolve("notify = \"/bin/true\"\n[pam]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("notify_timeout_secs (5)"), "{error}");
        assert!(error.contains("pam.timeout_secs (5)"), "{error}");
        resolve("notify = \"/bin/true\"\nnotify_timeout_secs = 3\n[pam]\n").unwrap();
        resolve("notify = \"/bin/true\"\n[pam]\ntimeout_secs = 7\n").unwrap();
        // Without a notify command, or outside a PAM file, nothing is asked.
        resolve("[pam]\ntimeout_secs = 2\n").unwrap();
        resolve("notify = \"/bin/true\"\n").unwrap();
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparekey.toml");
        std::fs::write(
            &path,
            "store = \"sled:/srv/sparekey/store\"\nkey_file = \"key\"\nissuer = \"FromFile\"\ncodes = 8\n[throttle]\nlock_after = 7\n",
        )
        .unwrap();
        let from_file = Settings::resolve(&Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(from_file.config.issuer, "FromFile");
        assert_eq!(from_file.config.code_count, 8);
        assert_eq!(from_file.config.throttle.lock_after, 7);
        assert_eq!(from_file.paths.store, PathBuf::from("/srv/sparekey/store"));
        // Relative to the config file's directory.
        assert_eq!(from_file.paths.key_file, dir.path().join("key"));
        assert!(from_file.paths.postgres.is_none());

        let overridden = Settings::resolve(&Overrides {
            config: Some(path),
            store: Some("postgres://u@localhost/sk".into()),
            key_file: Some("/k".into()),
            issuer: Some("FromFlag".into()),
            codes: Some(15),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(overridden.config.issuer, "FromFlag");
        assert_eq!(overridden.config.code_count, 15);
        assert_eq!(overridden.config.throttle.lock_after, 7);
        assert_eq!(overridden.paths.key_file, PathBuf::from("/k"));
        assert_eq!(
            overridden
                .paths
                .postgres
                .as_ref()
                .map(|t| t.display.as_str()),
            Some("u@localhost/sk")
        );
    }

    #[test]
    fn the_data_dir_of_the_file_is_used_relative_to_it_and_a_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparekey.toml");
        std::fs::write(&path, "data_dir = \"data\"\n[pam]\ntimeout_secs = 5\n").unwrap();
        let from_file = Settings::resolve(&Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(from_file.paths.data_dir, dir.path().join("data"));
        assert_eq!(from_file.paths.store, dir.path().join("data").join("store"));
        let overridden = Settings::resolve(&Overrides {
            config: Some(path),
            data_dir: Some("/flag".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(overridden.paths.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn a_named_config_file_that_is_missing_is_an_error() {
        let error = Settings::resolve(&Overrides {
            config: Some("/nonexistent/sparekey.toml".into()),
            ..Overrides::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("/nonexistent/sparekey.toml"), "{error}");
    }
}

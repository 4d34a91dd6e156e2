//! The module's options from its PAM configuration line: `nullok` and `config=PATH`. Owns their
//! names and defaults; an unknown option is an error (a typo such as `nullokk` must not quietly
//! change who may pass).

use std::path::PathBuf;

/// Where the configuration lives unless `config=` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/sparekey/sparekey.toml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A user with no sparekey account or no authenticator passes (PAM_IGNORE) instead of
    /// being refused: for rolling out.
    pub nullok: bool,
    pub config: PathBuf,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        nullok: false,
        config: PathBuf::from(DEFAULT_CONFIG),
    };
    for arg in args {
        match arg.as_str() {
            "nullok" => options.nullok = true,
            other => match other.strip_prefix("config=") {
                Some(path) if path.starts_with('/') => options.config = PathBuf::from(path),
                Some(_) => return Err(format!("config= needs an absolute path: {other}")),
                None => return Err(format!("unknown option {other}")),
            },
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_nullok_and_config() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.nullok, o.config.to_str()), (false, Some(DEFAULT_CONFIG)));
        let o = parse(&args(&["nullok", "config=/etc/x.toml"])).unwrap();
        assert_eq!((o.nullok, o.config.to_str()), (true, Some("/etc/x.toml")));
    }

    #[test]
    fn typos_and_relative_paths_are_refused() {
        assert!(parse(&args(&["nullokk"])).unwrap_err().contains("nullokk"));
        assert!(parse(&args(&["config=x.toml"])).is_err());
    }
}

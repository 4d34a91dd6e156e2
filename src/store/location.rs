//! Where the store is, from one string (`--store`, `SPAREKEY_STORE`, `store =` in the config
//! file): `sled:/path` or a bare path is the embedded sled store; `postgres://…`,
//! `postgresql://…` or the `host=… dbname=…` form is PostgreSQL. Owns that parsing and the
//! transport policy for PostgreSQL: plaintext only to a Unix socket or a loopback address unless
//! the string says `sslmode=disable` itself, and otherwise TLS that verifies the server's
//! certificate and host name (`sslmode=verify-full`, the default off this host).
//!
//! Must never connect, and never weaken what the string asks for: a mode it cannot honour
//! (`require` without verification, `verify-ca` without the host name) is an error naming it.

use std::net::IpAddr;
use std::path::PathBuf;

use postgres::config::{Host, SslMode};

/// A store location, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sled(PathBuf),
    /// Boxed: the client's settings are large, and a location is made once per run.
    Postgres(Box<PostgresTarget>),
}

/// How to reach a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    /// The connection settings, without the TLS parameters sparekey reads itself.
    pub config: postgres::Config,
    pub tls: TlsPolicy,
    /// `user@host/dbname` for messages: never the password.
    pub display: String,
}

/// The client's `Config` has no equality of its own; its settings' full debug form (which
/// holds every field) stands in for it.
impl PartialEq for PostgresTarget {
    fn eq(&self, other: &Self) -> bool {
        self.tls == other.tls
            && self.display == other.display
            && format!("{:?}", self.config) == format!("{:?}", other.config)
    }
}

impl Eq for PostgresTarget {}

/// The transport to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPolicy {
    /// No TLS: a Unix socket, a loopback address, or `sslmode=disable` said explicitly.
    Plain,
    /// TLS with certificate and host-name verification, against `root_cert` (PEM, as libpq's
    /// `sslrootcert`) only when given, else the system's trusted roots.
    Verify { root_cert: Option<PathBuf> },
}

/// Where Debian's (and most distributions') server puts its socket when the string names no host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

impl StoreLocation {
    /// Parses a store string. Errors are one line naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the store location is empty".into());
        }
        if let Some(path) = text.strip_prefix("sled:") {
            if path.is_empty() {
                return Err("'sled:' needs a path, as in sled:/var/lib/sparekey/store".into());
            }
            return Ok(StoreLocation::Sled(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return parse_postgres(text, split_url(text)?)
                .map(|t| StoreLocation::Postgres(t.into()));
        }
        if looks_like_key_value(text) {
            return parse_postgres(text, split_key_value(text)?)
                .map(|t| StoreLocation::Postgres(t.into()));
        }
        if text.contains("://") {
            let scheme = text.split("://").next().unwrap_or_default();
            return Err(format!(
                "unknown store scheme '{scheme}': use sled:/path, a path, or postgres://…"
            ));
        }
        Ok(StoreLocation::Sled(PathBuf::from(text)))
    }
}

/// The `key=value …` form: it starts with a parameter name and '=' (a path starts with '/' or
/// '.', or is a plain name without '='; `sled:` settles any doubt).
fn looks_like_key_value(text: &str) -> bool {
    let Some((key, _)) = text.split_once('=') else {
        return false;
    };
    let key = key.trim_end();
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A connection string with the TLS parameters taken out: `rest` is what the `postgres`
/// crate parses; `sslmode` and `sslrootcert` are sparekey's to interpret (the crate knows
/// neither `verify-full` nor a root certificate).
struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn split_url(text: &str) -> Result<Split, String> {
    let (base, query) = match text.split_once('?') {
        Some((base, query)) => (base, query),
        None => (text, ""),
    };
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => split.sslmode = Some(percent_decode(value)?),
            "sslrootcert" => split.sslrootcert = Some(percent_decode(value)?),
            _ => kept.push(pair),
        }
    }
    split.rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(split)
}

fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in '{value}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{value}' is not UTF-8"))
}

/// Splits `key=value` pairs as libpq does: values may be single-quoted, with `\'` and `\\`.
fn key_value_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("'{key}' in the store string has no '=' and value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or("unterminated quoted value")?),
                    Some(c) => value.push(c),
                    None => return Err(format!("the quoted value of '{key}' is not closed")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
}

fn split_key_value(text: &str) -> Result<Split, String> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut kept = Vec::new();
    for (key, value) in key_value_pairs(text)? {
        match key.as_str() {
            "sslmode" => split.sslmode = Some(value),
            "sslrootcert" => split.sslrootcert = Some(value),
            _ => {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
    }
    split.rest = kept.join(" ");
    Ok(split)
}

fn parse_postgres(original: &str, split: Split) -> Result<PostgresTarget, String> {
    let mut config: postgres::Config = split.rest.parse().map_err(|e| {
        format!(
            "the PostgreSQL store string is not valid ({e}): {}",
            redact(original)
        )
    })?;
    if config.get_hosts().is_empty() {
        config.host_path(DEFAULT_SOCKET_DIR);
    }
    if config.get_application_name().is_none() {
        config.application_name("sparekey");
    }
    let display = display(&config);
    let local = is_local(&config);
    let tls = match split.sslmode.as_deref() {
        Some("disable") => TlsPolicy::Plain,
        None | Some("prefer") | Some("allow") if local => TlsPolicy::Plain,
        None | Some("verify-full") => TlsPolicy::Verify {
            root_cert: split.sslrootcert.map(PathBuf::from),
        },
        Some(mode @ ("prefer" | "allow")) => {
            return Err(format!(
                "sslmode={mode} may fall back to plaintext to {display}, which is not on this host: use sslmode=verify-full, or sslmode=disable to accept plaintext"
            ));
        }
        Some("require") => {
            return Err(
                "sslmode=require encrypts without checking the server's certificate, which sparekey does not do: use sslmode=verify-full (with sslrootcert=FILE for a private CA)".into(),
            );
        }
        Some("verify-ca") => {
            return Err(
                "sslmode=verify-ca skips the host-name check, which sparekey does not do: use sslmode=verify-full (with sslrootcert=FILE for a private CA)".into(),
            );
        }
        Some(other) => return Err(format!("unknown sslmode '{other}'")),
    };
    let unix = config
        .get_hosts()
        .iter()
        .any(|h| matches!(h, Host::Unix(_)));
    if unix && matches!(tls, TlsPolicy::Verify { .. }) {
        return Err(
            "TLS to a Unix socket is not supported: drop sslmode for a socket on this host".into(),
        );
    }
    config.ssl_mode(match tls {
        TlsPolicy::Plain => SslMode::Disable,
        TlsPolicy::Verify { .. } => SslMode::Require,
    });
    Ok(PostgresTarget {
        config,
        tls,
        display,
    })
}

/// Every host is a Unix socket or a loopback address (a `hostaddr`, when given, is where the
/// connection goes, so it decides).
fn is_local(config: &postgres::Config) -> bool {
    if !config.get_hostaddrs().is_empty() {
        return config.get_hostaddrs().iter().all(IpAddr::is_loopback);
    }
    config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

fn display(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            // One port for all hosts, or one each, as the client reads them.
            match ports.get(i).or(ports.first()) {
                Some(port) if *port != 5432 => format!("{host}:{port}"),
                _ => host,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("{user}{}/{db}", hosts.join(","))
}

/// The string for an error message, with any password replaced.
fn redact(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            let user = userinfo.split(':').next().unwrap_or_default();
            return format!("{scheme}://{user}@{host}");
        }
        return text.to_string();
    }
    match key_value_pairs(text) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(k, v)| {
                if k == "password" {
                    format!("{k}=…")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "(unreadable)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> PostgresTarget {
        match StoreLocation::parse(text) {
            Ok(StoreLocation::Postgres(t)) => *t,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn refused(text: &str) -> String {
        StoreLocation::parse(text).expect_err(text)
    }

    #[test]
    fn paths_and_sled_urls_are_sled() {
        for (text, path) in [
            ("sled:/var/lib/sparekey/store", "/var/lib/sparekey/store"),
            ("/data/store", "/data/store"),
            ("relative/store", "relative/store"),
        ] {
            match StoreLocation::parse(text) {
                Ok(StoreLocation::Sled(p)) => assert_eq!(p, PathBuf::from(path)),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(refused("sled:").contains("needs a path"));
        assert!(refused("mysql://db/x").contains("unknown store scheme 'mysql'"));
    }

    #[test]
    fn unix_sockets_and_loopback_are_plain_without_sslmode() {
        for text in [
            "host=/run/postgresql dbname=sparekey",
            "postgres://sparekey@localhost/sparekey",
            "postgresql://u@127.0.0.1:5433/db",
            "postgres://u@[::1]/db",
            "postgres:///sparekey",
        ] {
            let target = pg(text);
            assert_eq!(target.tls, TlsPolicy::Plain, "{text}");
            assert_eq!(target.config.get_ssl_mode(), SslMode::Disable, "{text}");
        }
        // No host at all: the distribution's socket directory.
        assert_eq!(
            pg("postgres:///sparekey").config.get_hosts(),
            [Host::Unix(DEFAULT_SOCKET_DIR.into())]
        );
    }

    #[test]
    fn a_remote_host_gets_verified_tls_by_default() {
        for text in [
            "postgres://sparekey@db.example.org/sparekey",
            "host=db.example.org dbname=sparekey user=sparekey",
            "postgres://u@db.example.org/db?sslmode=verify-full",
        ] {
            let target = pg(text);
            assert_eq!(target.tls, TlsPolicy::Verify { root_cert: None }, "{text}");
            assert_eq!(target.config.get_ssl_mode(), SslMode::Require, "{text}");
        }
    }

    #[test]
    fn verify_full_takes_a_root_certificate_in_either_form() {
        let want = TlsPolicy::Verify {
            root_cert: Some("/etc/sparekey/ca.pem".into()),
        };
        let url = "postgres://u@db.example.org/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fsparekey%2Fca.pem&connect_timeout=3";
        let target = pg(url);
        assert_eq!(target.tls, want);
        // The other parameters still reach the client's settings.
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        let kv =
            "host=db.example.org dbname=db sslmode=verify-full sslrootcert='/etc/sparekey/ca.pem'";
        assert_eq!(pg(kv).tls, want);
        assert_eq!(pg(kv).config.get_dbname(), Some("db"));
    }

    #[test]
    fn plaintext_off_this_host_is_refused_unless_disabled_explicitly() {
        for text in [
            "postgres://u@db.example.org/db?sslmode=prefer",
            "host=10.1.2.3 dbname=db sslmode=allow",
        ] {
            assert!(
                refused(text).contains("may fall back to plaintext"),
                "{text}"
            );
        }
        let target = pg("postgres://u@db.example.org/db?sslmode=disable");
        assert_eq!(target.tls, TlsPolicy::Plain);
        assert_eq!(target.config.get_ssl_mode(), SslMode::Disable);
        // A loopback hostaddr decides for a remote-looking host name, and the other way round.
        assert_eq!(
            pg("host=db.example.org hostaddr=127.0.0.1 dbname=db").tls,
            TlsPolicy::Plain
        );
        assert!(
            refused("host=localhost hostaddr=192.0.2.7 dbname=db sslmode=prefer")
                .contains("plaintext")
        );
    }

    #[test]
    fn modes_sparekey_cannot_honour_are_named() {
        assert!(refused("postgres://u@db.example.org/db?sslmode=require").contains("require"));
        assert!(refused("host=db.example.org sslmode=verify-ca").contains("verify-ca"));
        assert!(refused("host=db.example.org sslmode=sometimes").contains("'sometimes'"));
        assert!(refused("host=/run/postgresql sslmode=verify-full").contains("Unix socket"));
    }

    #[test]
    fn errors_and_display_never_show_the_password() {
        let target = pg("postgres://alice:s3cret@localhost/sparekey");
        assert_eq!(target.display, "alice@localhost/sparekey");
        let target = pg("postgres://alice:s3cret@localhost:5433/sparekey");
        assert_eq!(target.display, "alice@localhost:5433/sparekey");
        let target = pg("host=localhost user=alice password='s3 cret' dbname=sk");
        assert!(!target.display.contains("s3"));
        let error = refused("postgres://alice:s3cret@localhost/db?bogus_option=1");
        assert!(!error.contains("s3cret"), "{error}");
        let error = refused("host=localhost password=s3cret bogus_option=1");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn quoted_key_value_values_keep_spaces_and_quotes() {
        let target = pg(r"host=localhost dbname='my db' user='o\'brien'");
        assert_eq!(target.config.get_dbname(), Some("my db"));
        assert_eq!(target.config.get_user(), Some("o'brien"));
        assert!(refused("host=localhost dbname='open").contains("not closed"));
    }
}

//! The key file: reading it (only when it is private to its owner, as ssh insists for private
//! keys), creating it in a private directory, and binding it to the store. Owns the key file's
//! format (64 hex characters) and its permission rules. Must never create a key over a store
//! that already has one, never accept a key others may read or change, and never print the key.

use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::new_file::{self, NewFileError};
use super::paths::make_private_dir;
use crate::core::entropy::Entropy;
use crate::core::error::Error;
use crate::core::keys::MasterKey;
use crate::core::store::{KeyBinding, Store};

/// The user this process acts as (file ownership is checked against it).
#[allow(unsafe_code)] // no safe std call reads the effective uid
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a key file that belongs to someone else, or that group or other may use at all.
fn check_private(path: &Path, meta: &Metadata) -> Result<(), Error> {
    let me = effective_uid();
    if meta.uid() != me {
        return Err(Error::Key(format!(
            "the key file {} belongs to user {}, not to you (user {me}): use your own key file, or run chown {me} {} as root",
            path.display(),
            meta.uid(),
            path.display()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Key(format!(
            "the key file {} is {mode:04o}, so other users may read or change it: run chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Reads the key file, after checking the permissions of the very file opened.
pub fn read_key(path: &Path) -> Result<MasterKey, Error> {
    let unreadable =
        |e: std::io::Error| Error::Key(format!("cannot read the key file {}: {e}", path.display()));
    let file = File::open(path).map_err(unreadable)?;
    check_private(path, &file.metadata().map_err(unreadable)?)?;
    let mut text = Zeroizing::new(String::new());
    file.take(1024)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    let bytes = Zeroizing::new(
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.trim().as_bytes())
            .unwrap_or_default(),
    );
    // Straight from the wiped buffer into the key's one place: no copy on the stack.
    MasterKey::from_slice(&bytes).ok_or_else(|| {
        Error::Key(format!(
            "the key file {} is not a sparekey key (64 hex characters)",
            path.display()
        ))
    })
}

/// Refuses to put a key into a directory that group or other may write (they could replace or
/// remove the key file).
fn check_key_dir(dir: &Path) -> Result<(), Error> {
    let meta = fs::metadata(dir).map_err(|e| {
        Error::Key(format!(
            "cannot create the key file in {}: {e}",
            dir.display()
        ))
    })?;
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Error::Key(format!(
            "the directory {} is {mode:04o}, so other users could replace a key file in it: run chmod go-w {} or choose another --key-file",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Creates a new key file (0600) holding a fresh key, in a private directory.
fn create_key(path: &Path, entropy: &mut dyn Entropy) -> Result<MasterKey, Error> {
    let cannot = |e: String| {
        Error::Key(format!(
            "cannot create the key file {}: {e}",
            path.display()
        ))
    };
    let dir = new_file::parent_dir(path);
    make_private_dir(dir).map_err(|e| cannot(e.to_string()))?;
    check_key_dir(dir)?;
    let key = MasterKey::generate(entropy);
    let text = Zeroizing::new(format!(
        "{}\n",
        data_encoding::HEXLOWER.encode(key.as_bytes())
    ));
    new_file::write_new_file(path, text.as_bytes()).map_err(|e| match e {
        NewFileError::Exists(_) => cannot("another process created it meanwhile".into()),
        NewFileError::Io(_, e) => cannot(e.to_string()),
    })?;
    Ok(key)
}

/// Reads the key file, or creates it when neither it nor a key-bound store exists yet, and
/// checks that it belongs to the store.
pub fn load_or_create_key(
    key_file: &Path,
    store: &dyn Store,
    entropy: &mut dyn Entropy,
) -> Result<MasterKey, Error> {
    let created = key_file.symlink_metadata().is_err();
    let key = if created {
        create_key(key_file, entropy)?
    } else {
        read_key(key_file)?
    };
    match store.bind_key(&key.store_key())? {
        KeyBinding::Matches | KeyBinding::Bound => Ok(key),
        KeyBinding::Mismatch { stored } if created => {
            // The store already belongs to another key: the new file is useless and would
            // mislead the next run, so take it back.
            let _ = fs::remove_file(key_file);
            Err(Error::Key(format!(
                "the key file {} is missing, and this store was made with a key (fingerprint {stored}): restore that key file or point --key-file at it",
                key_file.display()
            )))
        }
        KeyBinding::Mismatch { stored } => Err(Error::Key(format!(
            "the key file {} (fingerprint {}) does not belong to this store (fingerprint {stored})",
            key_file.display(),
            key.fingerprint()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_at(dir: &Path, mode: u32) -> std::path::PathBuf {
        let path = dir.join("key");
        fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_key_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            let path = key_at(dir.path(), mode);
            assert!(read_key(&path).is_ok(), "{mode:o}");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_key_file_others_may_read_or_write_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666, 0o610] {
            let path = key_at(dir.path(), mode);
            let err = read_key(&path).unwrap_err();
            assert!(matches!(err, Error::Key(_)), "{err:?}");
            let line = err.to_string();
            assert!(
                line.contains(&format!("run chmod 600 {}", path.display())),
                "{mode:o}: {line}"
            );
            assert!(!line.contains('\n'));
            fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_key_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = if effective_uid() == 0 {
            // Root can give a file away; the check is about the owner, not about access.
            let path = key_at(dir.path(), 0o600);
            std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
            path
        } else {
            // Anyone else reads a file of root's instead.
            let theirs = Path::new("/etc/hostname");
            if !theirs.exists() || fs::metadata(theirs).unwrap().uid() == effective_uid() {
                println!("skipped: no readable file of another user found");
                return;
            }
            theirs.to_path_buf()
        };
        let err = read_key(&path).unwrap_err();
        assert!(matches!(err, Error::Key(_)), "{err:?}");
        assert!(err.to_string().contains("not to you"), "{err}");
    }

    #[test]
    fn a_key_file_is_never_created_in_a_directory_others_may_write() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o770, 0o707, 0o777, 0o1777] {
            let shared = dir.path().join(format!("shared-{mode:o}"));
            fs::create_dir(&shared).unwrap();
            fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
            let path = shared.join("key");
            let err = create_key(&path, &mut crate::core::entropy::OsEntropy).unwrap_err();
            assert!(matches!(err, Error::Key(_)), "{err:?}");
            assert!(err.to_string().contains("chmod go-w"), "{err}");
            assert!(!path.exists(), "{mode:o}");
        }
        let private = dir.path().join("private").join("key");
        create_key(&private, &mut crate::core::entropy::OsEntropy).unwrap();
        let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_key(&private).is_ok());
    }
}

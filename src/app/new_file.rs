//! The one way sparekey writes a file outside its store: exported recovery codes (console and
//! `--out`), backups and the key file. The file appears complete, owner-only (0600) and synced,
//! or not at all; an existing name is never replaced. Owns the temporary file and the no-clobber
//! rename. Must never overwrite, follow a name that exists (a symlink counts), or leave a partial
//! or temporary file behind on error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a new file was not written. Either way nothing new is left on disk.
#[derive(Debug)]
pub enum NewFileError {
    /// The name is taken (by a file, a directory or a symlink): it was left untouched.
    Exists(PathBuf),
    /// The operating system refused (no such directory, permissions, disk full, ...).
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for NewFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NewFileError::Exists(path) => write!(
                f,
                "{} already exists: sparekey never overwrites a file, choose a new name",
                path.display()
            ),
            NewFileError::Io(path, e) => write!(f, "cannot write {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for NewFileError {}

/// The directory a new file at `path` goes into (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Refuses a name that is taken, before anything is computed or changed (e.g. before new codes
/// are issued for a file). The write itself refuses again, so a name taken meanwhile is safe.
pub fn check_free(path: &Path) -> Result<(), NewFileError> {
    if path.symlink_metadata().is_ok() {
        return Err(NewFileError::Exists(path.to_path_buf()));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(NewFileError::Io(
            path.to_path_buf(),
            io::Error::new(io::ErrorKind::NotFound, "its directory does not exist"),
        ));
    }
    Ok(())
}

/// Writes `contents` to a new file at `path` (0600, whatever the umask), durably: to a temporary
/// file in the same directory, fsynced, renamed into place without replacing anything, then the
/// directory fsynced.
pub fn write_new_file(path: &Path, contents: &[u8]) -> Result<(), NewFileError> {
    check_free(path)?;
    persist_new(path, |file| file.write_all(contents))
}

/// [`write_new_file`] for contents too large to hold in memory: `write` streams them into the
/// temporary file; an error from it leaves nothing behind.
pub fn write_new_file_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), NewFileError> {
    check_free(path)?;
    persist_new(path, write)
}

/// [`write_new_file`] without the early check: the rename alone refuses a taken name.
fn persist_new(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), NewFileError> {
    let fail = |e| NewFileError::Io(path.to_path_buf(), e);
    let dir = parent_dir(path);
    let name = path.file_name().ok_or_else(|| {
        fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    // Dropping `tmp` on any error below removes the temporary file.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(fail)?;
    // The umask may have narrowed the mode further; it can never have widened it, but set it
    // anyway so the file is exactly 0600.
    let file = tmp.as_file_mut();
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| write(file))
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    tmp.persist_noclobber(path).map_err(|e| {
        // `e.file` is dropped here, which removes the temporary file.
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            NewFileError::Exists(path.to_path_buf())
        } else {
            fail(e.error)
        }
    })?;
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        // The name may not survive a power cut: do not report a file that might vanish.
        let _ = fs::remove_file(path);
        return Err(fail(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_is_complete_private_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes.txt");
        write_new_file(&path, b"contents").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"contents");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            names(dir.path()),
            ["codes.txt"],
            "no temporary file is left"
        );
    }

    #[test]
    fn a_taken_name_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes.txt");
        fs::write(&path, b"first").unwrap();
        let err = write_new_file(&path, b"second").unwrap_err();
        assert!(matches!(err, NewFileError::Exists(_)), "{err:?}");
        assert!(err.to_string().contains("never overwrites"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["codes.txt"]);

        // A dangling symlink is a taken name too: nothing is written through it.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(matches!(
            write_new_file(&link, b"x"),
            Err(NewFileError::Exists(_))
        ));
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn a_name_taken_after_the_check_is_refused_and_no_temporary_file_stays() {
        // The name appears between the early check and the rename (another process won the
        // race): the temporary file was already written, and must go.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes.txt");
        fs::write(&path, b"theirs").unwrap();
        let err = persist_new(&path, |f| f.write_all(b"ours")).unwrap_err();
        assert!(matches!(err, NewFileError::Exists(_)), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"theirs");
        assert_eq!(names(dir.path()), ["codes.txt"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: fails for root too.
        let not_a_dir = dir.path().join("plain");
        fs::write(&not_a_dir, b"").unwrap();
        let err = write_new_file(&not_a_dir.join("codes.txt"), b"x").unwrap_err();
        assert!(matches!(err, NewFileError::Io(..)), "{err:?}");
        let err = persist_new(&not_a_dir.join("codes.txt"), |f| f.write_all(b"x")).unwrap_err();
        assert!(matches!(err, NewFileError::Io(..)), "{err:?}");
        assert_eq!(names(dir.path()), ["plain"]);
    }

    #[test]
    fn a_stream_written_in_pieces_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        write_new_file_with(&path, |f| {
            (0..100).try_for_each(|i| f.write_all(format!("{i},").as_bytes()))
        })
        .unwrap();
        let expected: String = (0..100).map(|i| format!("{i},")).collect();
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A writer that stops half-way (the store failed mid-export) leaves nothing.
        let other = dir.path().join("stopped");
        let err = write_new_file_with(&other, |f| {
            f.write_all(b"half of it")?;
            Err(io::Error::other("the export stopped"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the export stopped"), "{err}");
        assert_eq!(names(dir.path()), ["backup"]);
        // And a taken name is refused before the writer runs.
        let err = write_new_file_with(&path, |_| panic!("the writer ran")).unwrap_err();
        assert!(matches!(err, NewFileError::Exists(_)), "{err:?}");
    }

    #[test]
    fn a_directory_without_write_permission_is_refused_and_left_empty() {
        if running_as_root() {
            println!("skipped: running as root, where directory permissions do not apply");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        let err = write_new_file(&locked.join("codes.txt"), b"x").unwrap_err();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(err, NewFileError::Io(..)), "{err:?}");
        assert!(names(&locked).is_empty());
    }

    fn running_as_root() -> bool {
        crate::app::key_file::effective_uid() == 0
    }
}

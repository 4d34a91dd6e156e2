//! What every test that runs the built binary gives it: a data dir, a key file and a home inside
//! the test's own temporary directory, so no test reads or writes the real home of whoever runs
//! the suite, and no two tests share a store; and for the tests on a terminal, a pseudo-terminal
//! whose output a thread collects.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

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

/// The built `sparekey` with `args`, confined to `dir` by [`isolated_env`], ready for
/// [`spawn_in_pty`].
pub fn pty_command(dir: &Path, args: &[&str]) -> CommandBuilder {
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sparekey"));
    cmd.args(args);
    for (name, value) in isolated_env(dir) {
        cmd.env(name, value);
    }
    cmd
}

/// A child running in a pseudo-terminal of its own.
pub struct Pty {
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    /// The terminal's keyboard: what is written here the child reads.
    pub writer: Box<dyn Write + Send>,
    /// Hands everything the child writes to the sink until the terminal's output ends (the child
    /// and every copy of the slave side closed).
    pub reader: Option<JoinHandle<()>>,
    /// Kept open for the child's lifetime: closing it hangs the terminal up.
    _master: Box<dyn MasterPty + Send>,
}

/// Starts `cmd` in a new `rows` x `cols` pseudo-terminal; a reader thread passes all it writes to
/// `sink`.
pub fn spawn_in_pty(
    rows: u16,
    cols: u16,
    cmd: CommandBuilder,
    mut sink: impl FnMut(&[u8]) + Send + 'static,
) -> Pty {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let child = pair.slave.spawn_command(cmd).unwrap();
    // Our copy of the slave side: while it is open the reader never sees the output end.
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let writer = pair.master.take_writer().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
        }
    });
    Pty {
        child,
        writer,
        reader: Some(reader),
        _master: pair.master,
    }
}

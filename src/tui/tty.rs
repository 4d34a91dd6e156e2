//! Waiting for the terminal's input, and noticing that the terminal is gone. Owns the one
//! check the event loop makes before it lets crossterm read: crossterm 0.29's Unix event
//! source retries a read that returns end-of-file or `EIO` at once, forever (crossterm issues
//! 793 and 1110), so a console whose pseudo-terminal lost its master side (a killed test
//! harness, an ssh session dropped without a SIGHUP reaching the console) would spin inside
//! `event::poll` and never return to the loop. On Linux (and Android) only, whose poll(2)
//! reports a terminal's hangup. Must never read input itself: keys stay crossterm's to parse.

use std::io;
use std::time::Duration;

/// The terminal input crossterm reads: standard input when it is a terminal, else
/// `/dev/tty`, as crossterm chooses it.
pub(crate) struct TerminalInput {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fd: std::os::fd::OwnedFd,
}

impl TerminalInput {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn open() -> io::Result<Self> {
        use std::io::IsTerminal;
        use std::os::fd::AsFd;
        let fd = if io::stdin().is_terminal() {
            // A duplicate, so dropping it never closes standard input.
            io::stdin().as_fd().try_clone_to_owned()?
        } else {
            std::fs::File::open("/dev/tty")?.into()
        };
        Ok(Self { fd })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn open() -> io::Result<Self> {
        Ok(Self {})
    }

    /// Waits up to `wait` for input, a signal (a resize, SIGTERM) or the terminal's hangup.
    /// `Err` once the terminal is gone: its other side closed, so no key can ever come and
    /// nothing drawn can be seen. `Ok` with how long crossterm may still wait (nothing here:
    /// the wait is done), leaving the reading to it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn wait(&self, wait: Duration) -> io::Result<Duration> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let timeout = Timespec::try_from(wait).unwrap_or_default();
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            // A signal: the loop looks at its flags and crossterm at the resize.
            Err(rustix::io::Errno::INTR) => return Ok(Duration::ZERO),
            Err(e) => return Err(e.into()),
        }
        let gone = PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
        if fds[0].revents().intersects(gone) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the terminal is gone (its other side closed)",
            ));
        }
        Ok(Duration::ZERO)
    }

    /// Elsewhere crossterm's own wait is used: macOS's poll(2), for one, does not take
    /// terminals (it answers POLLNVAL at once).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn wait(&self, wait: Duration) -> io::Result<Duration> {
        Ok(wait)
    }
}

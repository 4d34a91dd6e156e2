//! Running the operator's `notify` command for each owner notification (see
//! [`crate::core::notify`]). Owns the command's form, its environment and its deadline, and the
//! two notifiers the faces use: [`Outbox`], which queues notifications so the CLI delivers them
//! once its store is closed, and [`Detached`], which delivers each one on a thread of its own
//! for the console, whose store outlives any one call.
//!
//! The command is an argv, split on whitespace, run without a shell: nothing in it is ever
//! interpreted, and the event reaches it only as environment variables, so no account name can
//! become shell syntax. Its program must be an absolute path (the child's `PATH` is fixed).
//! It gets a cleared environment, stdin, stdout and stderr on /dev/null (it must never write
//! into a command's output, nor keep a pipe of the PAM module's open), its own process group,
//! and a deadline after which the whole group is killed. Must never pass it a secret, run it
//! before the store step that committed its event returned or while this process waits on it
//! with the store open, or let its failure change an operation's result.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::audit::{AuditEvent, AuditKind};
use crate::core::clock::UnixTime;
use crate::core::error::Error;
use crate::core::notify::{self, Facts, Notification, Notifier};
use crate::core::time_text::utc_iso;

/// The deadline of a command when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest deadline accepted: a notification is no reason to keep a login waiting.
pub const MAX_TIMEOUT_SECS: u64 = 60;
/// The `PATH` the command runs with.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The operator's notify command: a program (absolute path) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCommand {
    argv: Vec<String>,
    timeout: Duration,
}

impl NotifyCommand {
    /// Parses `command` (split on whitespace, no quoting) with a deadline of `timeout_secs`
    /// (1 to [`MAX_TIMEOUT_SECS`]; [`DEFAULT_TIMEOUT`] if `None`).
    pub fn parse(command: &str, timeout_secs: Option<u64>) -> Result<Self, Error> {
        let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        let Some(program) = argv.first() else {
            return Err(Error::Invalid("the notify command is empty".into()));
        };
        if !program.starts_with('/') {
            return Err(Error::Invalid(format!(
                "the notify command must start with an absolute path, not '{program}'"
            )));
        }
        let timeout = match timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(secs @ 1..=MAX_TIMEOUT_SECS) => Duration::from_secs(secs),
            Some(secs) => {
                return Err(Error::Invalid(format!(
                    "the notify timeout must be 1 to {MAX_TIMEOUT_SECS} seconds, not {secs}"
                )));
            }
        };
        Ok(Self { argv, timeout })
    }

    /// Runs the command for `notification` and waits for it, at most the deadline (then kills
    /// its process group). `Err` says why it failed, in one line with no secret in it.
    pub fn run(&self, notification: &Notification) -> Result<(), String> {
        let what = notification.event.as_str();
        let mut command = Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .env_clear()
            .envs(environment(notification))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("notify {what}: cannot run {}: {e}", self.argv[0]))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("notify {what}: the command {status}")),
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(&child);
                    let _ = child.wait();
                    return Err(format!(
                        "notify {what}: the command ran past {} s and was killed",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("notify {what}: cannot wait for the command: {e}")),
            }
        }
    }
}

/// The command's whole environment: `PATH` and the event's facts, nothing inherited.
pub fn environment(notification: &Notification) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PATH", CHILD_PATH.to_string()),
        ("SPAREKEY_EVENT", notification.event.as_str().to_string()),
        ("SPAREKEY_TIME", utc_iso(notification.at)),
    ];
    if let Some(account) = &notification.account {
        env.push(("SPAREKEY_ACCOUNT", account.clone()));
    }
    if let Some(remaining) = notification.remaining {
        env.push(("SPAREKEY_REMAINING", remaining.to_string()));
    }
    if let Some(total) = notification.total {
        env.push(("SPAREKEY_TOTAL", total.to_string()));
    }
    env
}

/// Kills the command and whatever it started (a script's `sleep`, a mailer).
fn kill_group(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_err() {
        // The group is gone or was never made: the child itself is what is left.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Queues notifications for delivery once the store is closed (the CLI's notifier), with the
/// command the run's settings name.
#[derive(Debug, Default)]
pub struct Outbox {
    queued: Mutex<Vec<Notification>>,
    command: Mutex<Option<NotifyCommand>>,
}

impl Outbox {
    /// Takes everything queued so far, oldest first.
    pub fn take(&self) -> Vec<Notification> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sets the command [`deliver`](Self::deliver) runs (`None`: none is configured).
    pub fn configure(&self, command: Option<NotifyCommand>) {
        *self.command.lock().unwrap_or_else(|p| p.into_inner()) = command;
    }

    /// Runs the configured command for everything queued, one after the other, and hands each
    /// failure's line to `log`; without a command, drops the queue. Call only once the store
    /// is closed.
    pub fn deliver(&self, log: impl Fn(&str)) {
        let queued = self.take();
        let command = self
            .command
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(command) = command else { return };
        for notification in queued {
            if let Err(line) = command.run(&notification) {
                log(&line);
            }
        }
    }
}

impl Notifier for Outbox {
    fn notify(&self, notification: &Notification) {
        (self.queued.lock().unwrap_or_else(|p| p.into_inner())).push(notification.clone());
    }
}

/// Runs the command for each notification on a thread of its own, so the caller (the console,
/// between its store's calls) never waits for it. A failure goes to `log`.
pub struct Detached {
    command: NotifyCommand,
    log: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Detached {
    pub fn new(command: NotifyCommand, log: Arc<dyn Fn(&str) + Send + Sync>) -> Self {
        Self { command, log }
    }
}

impl Notifier for Detached {
    fn notify(&self, notification: &Notification) {
        let (command, log, notification) =
            (self.command.clone(), self.log.clone(), notification.clone());
        std::thread::spawn(move || {
            if let Err(line) = command.run(&notification) {
                log(&line);
            }
        });
    }
}

/// The notifications of a restore that did `summary` at `at`: the same events the restore
/// wrote to the new store's audit log (see [`crate::app::backup_file`]).
pub fn restored(summary: &crate::app::BackupSummary, at: UnixTime) -> Vec<Notification> {
    let mut events = vec![AuditEvent {
        at,
        account: crate::app::backup_file::RESTORE_AUDIT_NAME.into(),
        kind: AuditKind::StoreRestored {
            accounts: summary.accounts as u32,
        },
    }];
    events.extend(summary.codes_revived.iter().map(|name| AuditEvent {
        at,
        account: name.clone(),
        // The count is the audit log's to tell; a notification says only which account.
        kind: AuditKind::UsedCodesRevived { count: 0 },
    }));
    notify::for_events(&events, Facts::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::notify::NotifyEvent;

    #[test]
    fn the_command_must_name_its_program_by_absolute_path_and_a_sane_deadline() {
        assert!(NotifyCommand::parse("", None).is_err());
        assert!(NotifyCommand::parse("   ", None).is_err());
        let relative = NotifyCommand::parse("mail -s x root", None).unwrap_err();
        assert!(relative.to_string().contains("absolute path"), "{relative}");
        assert!(NotifyCommand::parse("/bin/true", Some(0)).is_err());
        assert!(NotifyCommand::parse("/bin/true", Some(MAX_TIMEOUT_SECS + 1)).is_err());
        let ok = NotifyCommand::parse(" /usr/bin/logger  -t sparekey ", Some(2)).unwrap();
        assert_eq!(ok.argv, ["/usr/bin/logger", "-t", "sparekey"]);
        assert_eq!(ok.timeout, Duration::from_secs(2));
        let default = NotifyCommand::parse("/bin/true", None).unwrap();
        assert_eq!(default.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn the_environment_holds_the_event_and_nothing_else() {
        let n = Notification {
            event: NotifyEvent::CodesLow,
            account: Some("alice".into()),
            at: 1_700_000_000,
            remaining: Some(2),
            total: Some(10),
        };
        let env = environment(&n);
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "SPAREKEY_EVENT",
                "SPAREKEY_TIME",
                "SPAREKEY_ACCOUNT",
                "SPAREKEY_REMAINING",
                "SPAREKEY_TOTAL"
            ]
        );
        assert!(env.contains(&("SPAREKEY_EVENT", "codes_low".into())));
        assert!(env.contains(&("SPAREKEY_TIME", "2023-11-14T22:13:20Z".into())));
        assert!(env.contains(&("SPAREKEY_REMAINING", "2".into())));
        let restore = Notification {
            event: NotifyEvent::StoreRestored,
            account: None,
            remaining: None,
            total: None,
            ..n
        };
        let names: Vec<&str> = environment(&restore).iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["PATH", "SPAREKEY_EVENT", "SPAREKEY_TIME"]);
    }

    #[test]
    fn the_outbox_queues_until_taken() {
        let outbox = Outbox::default();
        let n = Notification {
            event: NotifyEvent::AccountLocked,
            account: Some("bob".into()),
            at: 0,
            remaining: None,
            total: None,
        };
        outbox.notify(&n);
        outbox.notify(&n);
        assert_eq!(outbox.take(), [n.clone(), n]);
        assert!(outbox.take().is_empty());
    }
}

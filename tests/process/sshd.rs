//! A real `sshd` on a loopback port, its PAM stack (`pam_permit` standing in for `pam_unix`, then
//! the built module) reached through keyboard-interactive, and OpenSSH's own client scripted
//! through SSH_ASKPASS: the lines README.md gives for sshd_config and /etc/pam.d, proven. The
//! PAM service is named after the sshd link the test starts (`sparekey-test-sshd-PID`: sshd
//! names its PAM service after itself), so no real sshd configuration is touched. Needs root,
//! sshd (Debian's openssh-server) and ssh; without them it says "skipped: …".

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cli_verify::{enrolled_only, now, totp};
use crate::support;

const SSHD: &str = "/usr/sbin/sshd";

/// The sshd this test started, stopped (by its own id) when dropped, with its PAM file.
struct Sshd {
    child: Child,
    port: u16,
    pam_file: PathBuf,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pam_file);
    }
}

fn ready() -> bool {
    if !support::needs_root("run sshd and write a PAM service file") {
        return false;
    }
    let has = |program: &str, arg: &str| Command::new(program).arg(arg).output().is_ok();
    if !Path::new(SSHD).is_file() || !has("ssh", "-V") || !has("ssh-keygen", "-?") {
        support::skip("needs sshd and ssh (Debian's openssh-server and openssh-client)");
        return false;
    }
    true
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn start_sshd(dir: &Path, module: &Path) -> Sshd {
    let name = format!("sparekey-test-sshd-{}", std::process::id());
    let link = dir.join(&name);
    std::os::unix::fs::symlink(SSHD, &link).unwrap();
    let key = dir.join("hostkey");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    // sshd's privilege-separation directory; the package makes it at boot.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let pam_file = Path::new("/etc/pam.d").join(&name);
    std::fs::write(
        &pam_file,
        format!(
            "auth required pam_permit.so\n\
             auth required {} config={}\n\
             account required pam_permit.so\n\
             session required pam_permit.so\n\
             password required pam_deny.so\n",
            module.display(),
            dir.join("sparekey.toml").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {}\nPidFile {}\n\
             UsePAM yes\nKbdInteractiveAuthentication yes\nAuthenticationMethods keyboard-interactive\n\
             PasswordAuthentication no\nPubkeyAuthentication no\nPermitRootLogin yes\n\
             StrictModes no\nUseDNS no\nPrintMotd no\n",
            key.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let log = dir.join("sshd.log");
    let child = Command::new(&link)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut sshd = Sshd {
        child,
        port,
        pam_file,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Ok(Some(status)) = sshd.child.try_wait() {
            panic!("sshd stopped ({status}): {}", sshd.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "sshd is not listening: {}",
            sshd.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sshd
}

impl Sshd {
    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// `ssh root@127.0.0.1 echo logged-in`, answering every prompt with `code` through an
    /// askpass script that also records the prompts; returns (success, stdout+stderr, prompts).
    fn ssh(&self, dir: &Path, code: &str) -> (bool, String, String) {
        let code_file = dir.join("code");
        let prompts = dir.join("prompts");
        let _ = std::fs::remove_file(&prompts);
        std::fs::write(&code_file, format!("{code}\n")).unwrap();
        let askpass = dir.join("askpass");
        std::fs::write(
            &askpass,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\ncat '{}'\n",
                prompts.display(),
                code_file.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        let out = Command::new("ssh")
            .args(["-F", "/dev/null", "-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "PreferredAuthentications=keyboard-interactive"])
            .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
            .args(["root@127.0.0.1", "echo", "logged-in"])
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("HOME", dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = out.status.success() && String::from_utf8_lossy(&out.stdout) == "logged-in\n";
        (
            ok,
            text,
            std::fs::read_to_string(&prompts).unwrap_or_default(),
        )
    }
}

#[test]
fn ssh_logs_in_with_a_totp_code_and_with_a_backup_code_once() {
    if !ready() {
        return;
    }
    let Some(module) = crate::pam::module_path() else {
        support::skip("needs the built libpam_sparekey.so beside the test binary");
        return;
    };
    let dir = TempDir::new().unwrap();
    let dir = dir.path();
    // The PAM user is root: the account of that name, second factor only.
    let (secret, codes) = enrolled_only(dir, "root");
    crate::pam::write_config(dir, 5);
    let sshd = start_sshd(dir, &module);

    let (ok, out, prompts) = sshd.ssh(dir, &totp(&secret, now() + 30));
    assert!(ok, "{out}\n{}", sshd.log_text());
    // The client puts the user and host before a keyboard-interactive prompt.
    assert_eq!(
        prompts,
        "(root@127.0.0.1) Verification code (or backup code): \n"
    );

    let (ok, out, _) = sshd.ssh(dir, &codes[0]);
    assert!(ok, "{out}\n{}", sshd.log_text());
    assert!(out.contains("9 of 10 backup codes remain"), "{out}");

    let (ok, out, _) = sshd.ssh(dir, &codes[0]);
    assert!(!ok, "a used backup code logged in again: {out}");
    assert!(
        out.contains("already used") && out.contains("Permission denied"),
        "{out}"
    );
}

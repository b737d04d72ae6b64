//! A real SMTP server process on loopback for the tests: aiosmtpd (PyPI) delivering into a maildir, so a
//! test counts what actually arrived, on the server's side.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Smtp {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
}

impl Smtp {
    /// Starts `python3 -m aiosmtpd` on a free port (the test command installs aiosmtpd).
    pub fn start() -> Self {
        let port = crate::free_port();
        let maildir =
            std::env::temp_dir().join(format!("smb-mail-{}", uuid::Uuid::new_v4().simple()));
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(d)).expect("maildir");
        }
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd runs (pip install aiosmtpd)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not start on {port} (is it installed? pip install aiosmtpd)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            maildir,
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages delivered so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(d)) {
                for e in entries.flatten() {
                    if let Ok(s) = std::fs::read_to_string(e.path()) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

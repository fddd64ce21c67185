//! The EC2 emulator (`emulator/`, Python on moto) as a child process, and a small JSON client
//! for its control endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("{0} is missing: run `make setup` (scripts/setup) to create the emulator's virtualenv")]
    NoVirtualenv(PathBuf),
    #[error("cannot start the emulator: {0}")]
    Spawn(std::io::Error),
    #[error("the emulator did not report its endpoint within {0:?}; its log: {1}")]
    NotReady(Duration, String),
    #[error("emulator control {method} {path}: {message}")]
    Control {
        method: String,
        path: String,
        message: String,
    },
}

/// The project checkout that holds `emulator/` and `.venv/`: `VPC_TESTBED_ROOT`, else the
/// checkout this binary was built from.
pub fn project_root() -> PathBuf {
    std::env::var_os("VPC_TESTBED_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The command that runs the emulator with `args`.
pub fn command(args: &[String]) -> Result<Command, EmulatorError> {
    let root = project_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(EmulatorError::NoVirtualenv(python));
    }
    let mut cmd = Command::new(python);
    cmd.args(["-m", "vpcemu"])
        .args(args)
        .env("PYTHONPATH", root.join("emulator"));
    Ok(cmd)
}

/// A running emulator; killed when dropped.
pub struct EmulatorProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

impl EmulatorProcess {
    /// Starts on a free loopback port. `log` receives every line the emulator writes.
    pub fn start(
        extra_args: &[String],
        log: Box<dyn FnMut(&str) + Send>,
    ) -> Result<Self, EmulatorError> {
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        args.extend_from_slice(extra_args);
        let mut child = command(&args)?
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(EmulatorError::Spawn)?;
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take();
        // Keep draining stderr after the endpoint line so the emulator never blocks on the pipe.
        std::thread::spawn(move || {
            let mut log = log;
            let mut tx = Some(tx);
            let mut head = String::new();
            for line in stderr
                .into_iter()
                .flat_map(|s| BufReader::new(s).lines().map_while(Result::ok))
            {
                log(&line);
                if tx.is_some() && head.len() < 4000 {
                    head.push_str(&line);
                    head.push('\n');
                }
                if let Some(url) = line
                    .split("EC2 endpoint on ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    && url.starts_with("http://")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(Ok(url.to_string()));
                }
            }
            if let Some(t) = tx.take() {
                let _ = t.send(Err(head));
            }
        });
        let wait = Duration::from_secs(60);
        match rx.recv_timeout(wait) {
            Ok(Ok(endpoint)) => Ok(EmulatorProcess { child, endpoint }),
            Ok(Err(head)) => {
                let _ = child.wait();
                Err(EmulatorError::NotReady(wait, head))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(EmulatorError::NotReady(wait, String::new()))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    pub fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), EmulatorError> {
        http_json(self.port(), method, path, body, Duration::from_secs(60))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the emulator to stop (SIGTERM) and waits.
    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A JSON request over loopback HTTP/1.1, enough for the control endpoint; (status, body).
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), EmulatorError> {
    let fail = |message: String| EmulatorError::Control {
        method: method.to_string(),
        path: path.to_string(),
        message,
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| fail(format!("connect to 127.0.0.1:{port}: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no HTTP response".to_string()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("no status in {head:?}")))?;
    let value = if payload.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(payload)
            .unwrap_or_else(|_| serde_json::Value::String(payload.to_string()))
    };
    Ok((status, value))
}

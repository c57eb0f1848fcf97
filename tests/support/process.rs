//! The real binary as a child process, for what only a process shows: start-up messages,
//! exit codes, signals, and data surviving a kill.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::http::Request;

pub const BINARY: &str = env!("CARGO_BIN_EXE_diun-dashboard");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The binary with a clean environment: only what the test sets reaches it.
pub fn command(env: &[(&str, String)]) -> Command {
    command_of(BINARY.as_ref(), env)
}

/// [`command`] for a copy of the binary at `binary`.
pub fn command_of(binary: &std::path::Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(binary);
    // Every variable the service reads (SPEC §3): a developer's sourced `.env` must not
    // reach the tests' services.
    for name in [
        "DATABASE_URL",
        "DB_PATH",
        "WEBHOOK_SECRET",
        "DASHBOARD_USERNAME",
        "DASHBOARD_PASSWORD",
        "HISTORY_DAYS",
        "PORT",
        "BIND",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "info").envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
    command
}

pub struct Service {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// Copies stderr into `log`; it ends at the end of the output, after the process.
    copier: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Starts the binary on a free port with `env` and waits until `/healthz` answers 200.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let service = Self::spawn(env);
        service.wait_healthy().await;
        service
    }

    pub fn spawn(env: &[(&str, String)]) -> Self {
        Self::spawn_with_args(&[], env)
    }

    /// The binary run with `args` (a command such as `migrate`), its stderr kept as its log.
    pub fn spawn_with_args(args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_adjusted(args, env, |_| {})
    }

    /// [`Self::spawn_with_args`], with the command changed by `adjust` before it runs (limits
    /// set for the child, say).
    pub fn spawn_adjusted(args: &[&str], env: &[(&str, String)], adjust: impl FnOnce(&mut Command)) -> Self {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("PORT", port.to_string()));
        env.push(("BIND", "127.0.0.1".to_string()));
        let mut command = command(&env);
        adjust(&mut command);
        let mut child =
            command.args(args).stderr(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn binary");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        let copier = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log, copier: Some(copier) }
    }

    pub async fn wait_healthy(&self) {
        for _ in 0..200 {
            if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), async {
                Ok::<_, ()>(try_get(self.addr, "/healthz").await)
            })
            .await
                && response.is_some_and(|status| status == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become healthy; its log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle` (at most 20 s).
    pub async fn wait_for_log(&self, needle: &str) {
        for _ in 0..1000 {
            if self.log().contains(needle) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no {needle:?} in the log within 20 s:\n{}", self.log());
    }

    pub fn request(&self, method: &str, path: &str) -> Request {
        Request::new(self.addr, method, path)
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running child").to_string();
        let status =
            std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to end (at most `limit`), returning its exit code. Its whole log is
    /// in [`Self::log`] then: a check that a line is absent reads all of them.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let code = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait").code(),
            Err(_) => panic!("the process did not exit within {limit:?}; its log:\n{}", self.log()),
        };
        if let Some(copier) = self.copier.take() {
            tokio::time::timeout(limit, copier)
                .await
                .expect("the log ends with the process")
                .expect("copier");
        }
        code
    }
}

/// The status of a GET, or `None` when nothing answers.
async fn try_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    drop(stream.set_nodelay(true));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    String::from_utf8_lossy(&raw).split_whitespace().nth(1)?.parse().ok()
}

/// Runs the binary to completion (at most `limit`) and returns (exit code, stdout, stderr).
pub async fn run(args: &[&str], env: &[(&str, String)], limit: Duration) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(limit, command(env).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("`diun-dashboard {args:?}` did not finish within {limit:?}"))
        .expect("run binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

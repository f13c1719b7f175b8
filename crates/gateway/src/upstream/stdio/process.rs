//! Starting and stopping one upstream command: an argument list (never a shell), a working
//! directory, a chosen environment, stderr forwarded to the gateway's log with the session it
//! belongs to, and no process left behind.
//!
//! Each child gets its own process group, so that stopping it reaches whatever it started
//! (`npx` starts `node`, `uvx` starts `python`). On Linux the kernel also kills the child when
//! the gateway dies, even by SIGKILL (`PR_SET_PDEATHSIG`); the child's own children then see
//! their stdin close, which ends a stdio MCP server.

use std::fmt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest stderr line forwarded to the log; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 4096;

/// What to run.
#[derive(Clone)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory (the gateway's when unset).
    pub cwd: Option<PathBuf>,
    /// The whole environment of the child.
    pub env: Vec<(String, String)>,
}

impl fmt::Debug for CommandSpec {
    // Environment values may be credentials: only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSpec")
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A running child.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pid: u32,
    label: String,
}

/// The child's pipes, for the connection.
pub struct Pipes {
    /// Its stdin.
    pub stdin: ChildStdin,
    /// Its stdout.
    pub stdout: ChildStdout,
}

impl Process {
    /// Starts `spec`; `label` names it in the log (the session it serves).
    pub fn spawn(spec: &CommandSpec, label: &str) -> std::io::Result<(Process, Pipes)> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
            let parent = std::process::id();
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The gateway died between fork and prctl: do not outlive it.
                    if libc::getppid() as u32 != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or_default();
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        if let Some(stderr) = child.stderr.take() {
            let label = label.to_owned();
            tokio::spawn(forward_stderr(stderr, label, pid));
        }
        tracing::info!(target: "mcpgate::stdio", session = label, pid, "upstream command started");
        Ok((
            Process {
                child,
                pid,
                label: label.to_owned(),
            },
            Pipes { stdin, stdout },
        ))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's exit status, when it has already exited (it is then reaped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the child to exit by itself.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stops the child: its stdin is already closed by the caller; wait `grace` for it to
    /// exit, then SIGTERM its process group, then SIGKILL it.
    pub async fn stop(mut self, grace: Duration) {
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.signal_group(libc::SIGTERM);
                match tokio::time::timeout(grace, self.child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        self.signal_group(libc::SIGKILL);
                        self.child.wait().await.ok()
                    }
                }
            }
        };
        // Whatever the child left in its group goes with it.
        self.signal_group(libc::SIGKILL);
        tracing::info!(target: "mcpgate::stdio", session = self.label, pid = self.pid, status = status.map(|s| s.to_string()), "upstream command stopped");
    }

    fn signal_group(&self, signal: libc::c_int) {
        if self.pid == 0 {
            return;
        }
        // SAFETY: kill(2) with a negative pid signals the process group the child leads.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A child whose stop never ran (the gateway is going down): nothing may survive it.
        if self.child.id().is_some() {
            self.signal_group(libc::SIGKILL);
        }
    }
}

async fn forward_stderr(stderr: tokio::process::ChildStderr, label: String, pid: u32) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut budget = crate::logging::LineBudget::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let complete = line.last() == Some(&b'\n');
                let text = String::from_utf8_lossy(&line);
                let text = crate::logging::printable(text.trim_end());
                if !text.is_empty()
                    && let Some(dropped) = budget.take()
                {
                    if dropped > 0 {
                        tracing::warn!(target: "mcpgate::upstream::stderr", session = label, pid, dropped, "lines of the command's stderr were not logged (too many)");
                    }
                    tracing::info!(target: "mcpgate::upstream::stderr", session = label, pid, "{text}");
                }
                if !complete && !skip_line(&mut reader).await {
                    break;
                }
            }
        }
    }
}

/// Discards input up to and including the next newline, in bounded steps. False at the end.
async fn skip_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> bool {
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(buf) => buf,
        };
        match buf.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return true;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

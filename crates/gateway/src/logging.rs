//! Log output: text or JSON lines on stderr, filtered by `log.level` (or `RUST_LOG`).

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: `level` is a tracing filter (`RUST_LOG` wins). Safe to
/// call once; later calls are ignored.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Text from elsewhere (a child's stderr or stdout) made safe to put in a log line: control
/// characters — terminal escape sequences, carriage returns that overwrite a line, bells — are
/// written as `\u{1b}` escapes instead of being passed to the terminal or log viewer.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain text é"), "plain text é");
        assert_eq!(
            printable("\u{1b}[31mred\u{1b}[0m\r\u{7}"),
            "\\u{1b}[31mred\\u{1b}[0m\\u{d}\\u{7}"
        );
    }
}

/// How many lines from one noisy source (a child's stderr, a child writing garbage) reach the
/// log: a burst, then a steady rate; beyond it lines are counted, and the count is logged
/// when lines flow again, so that a program printing in a loop cannot fill the disk.
#[derive(Debug)]
pub struct LineBudget {
    tokens: f64,
    last: std::time::Instant,
    dropped: u64,
}

impl Default for LineBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBudget {
    /// Lines at once.
    pub const BURST: f64 = 200.0;
    /// Lines per second after the burst.
    pub const RATE: f64 = 20.0;

    /// A full budget.
    pub fn new() -> Self {
        LineBudget {
            tokens: Self::BURST,
            last: std::time::Instant::now(),
            dropped: 0,
        }
    }

    /// Whether the next line may be logged: `Some(n)` when it may, `n` being how many before
    /// it were not; `None` when it may not.
    pub fn take(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * Self::RATE).min(Self::BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::LineBudget;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_the_rest_is_counted() {
        let mut b = LineBudget::new();
        let logged = (0..10_000).filter(|_| b.take().is_some()).count();
        assert!(logged <= LineBudget::BURST as usize + 5, "{logged}");
        b.tokens = 1.0;
        assert_eq!(b.take(), Some(10_000 - logged as u64));
    }
}

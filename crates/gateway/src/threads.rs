//! The threads that serve connections: one single-threaded runtime per thread, each
//! connection served from start to end on one of them.
//!
//! A connection's requests, and the upstream connections they use, stay on the thread that
//! accepted the connection: nothing is stolen by another thread, nobody is woken on another
//! core to hand a request over, and a thread with nothing to do sleeps in the kernel instead
//! of looking for work. On a shared machine this measured a fifth less CPU per forwarded call
//! than the work-stealing runtime (docs/performance.md); connections are spread over the
//! threads in turn, so that all cores serve.
//!
//! How many: `TOKIO_WORKER_THREADS` when set (the variable tokio itself reads), else one per
//! core. Everything else (the accept loop, background refreshes, the audit writer) runs where
//! it did.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most serving threads (`TOKIO_WORKER_THREADS` above it is refused).
pub const MAX: usize = 1024;

/// `TOKIO_WORKER_THREADS`, read: `None` when unset, else a whole number from 1 to [`MAX`] or
/// the reason it is not one (checked at start-up, before any runtime reads it).
pub fn configured() -> Option<Result<usize, String>> {
    let value = std::env::var_os("TOKIO_WORKER_THREADS")?;
    let text = value.to_string_lossy();
    Some(match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "TOKIO_WORKER_THREADS must be a whole number from 1 to {MAX} (got {text:?})"
        )),
    })
}

/// How many serving threads a server starts: `TOKIO_WORKER_THREADS`, or one per core.
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| match configured() {
        Some(Ok(n)) => n,
        _ => std::thread::available_parallelism().map_or(1, usize::from),
    })
}

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Which serving thread this is: `1..=count()`, or 0 on any other thread. Per-thread state
/// (the upstream's idle connections) is kept in `count() + 1` slots indexed by it.
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// A server's serving threads.
pub(crate) struct Threads {
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

impl Threads {
    /// Starts [`count`] threads, each running a single-threaded runtime until the process
    /// ends (tasks still running at shutdown — a stdio child's, a stream's — keep being
    /// driven while the server winds down).
    pub(crate) fn start() -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(count());
        for i in 1..=count() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            std::thread::Builder::new()
                .name(format!("mcpgate-serve-{i}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(i));
                    runtime.block_on(std::future::pending::<()>());
                })?;
        }
        Ok(Threads {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// The thread for the next connection, in turn.
    pub(crate) fn next(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

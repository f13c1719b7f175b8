//! Wake-ups a task gives itself, answered without going through the runtime.
//!
//! Within one task, parts often hand each other work and wake the task to say so: an upstream
//! connection's driver that has read the answer's head wakes the request waiting for it, a body
//! that wants more wakes the driver (`upstream::pool`). With the task's waker, each such wake-up sends the task back to the
//! runtime's queue, to be polled again from the top — the client's connection, the guard, the
//! request, down to the two parts that were already being polled. An [`Absorber`] polls its
//! parts with a waker of its own instead: a wake-up that comes while they are being polled is
//! noted and answered by polling them again at once, in the same poll; any other (a socket, a
//! timer, another task) goes to the task's waker, as it would have.
//!
//! Only for parts that never yield on purpose: a future that wakes itself to let others run
//! (hyper's server connection, after a batch of pipelined requests) would be polled again at
//! once, up to [`ROUNDS`] times, and starve the thread's other tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Polls again in one poll at most this many times before letting other tasks run.
const ROUNDS: usize = 16;

/// See the module's documentation.
pub(crate) struct Absorber {
    local: Arc<Local>,
    waker: Waker,
}

impl Absorber {
    pub(crate) fn new() -> Self {
        let local = Arc::new(Local::default());
        let waker = Waker::from(Arc::clone(&local));
        Absorber { local, waker }
    }

    /// Polls `step` with the absorbing waker, again while it wakes itself (up to [`ROUNDS`]
    /// times, and while the task's cooperative budget lasts: a resource out of budget wakes
    /// the task at once, and must be left until the runtime polls it again).
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let local = &*self.local;
        local.task.register(cx.waker());
        let mut own = Context::from_waker(&self.waker);
        let mut rounds = 0;
        local.inside.store(true, Ordering::SeqCst);
        let polled = loop {
            if let Poll::Ready(out) = step(&mut own) {
                break Poll::Ready(out);
            }
            if local.woke.swap(false, Ordering::SeqCst) {
                rounds += 1;
                if rounds < ROUNDS && tokio::task::coop::has_budget_remaining() {
                    continue;
                }
                cx.waker().wake_by_ref();
                break Poll::Pending;
            }
            // Nothing new: done for now, unless a wake-up came in just as this poll ended.
            local.inside.store(false, Ordering::SeqCst);
            if !local.woke.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
            local.inside.store(true, Ordering::SeqCst);
        };
        local.inside.store(false, Ordering::SeqCst);
        polled
    }
}

/// The absorbing waker's state.
#[derive(Default)]
struct Local {
    task: AtomicWaker,
    /// Whether the parts are being polled now.
    inside: AtomicBool,
    /// Whether they were woken while they were.
    woke: AtomicBool,
}

impl Wake for Local {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.inside.load(Ordering::SeqCst) {
            self.woke.store(true, Ordering::SeqCst);
            // Still inside: the poll reads `woke` before it ends. Left in the meantime: it may
            // have read `woke` before it was set, so the task is woken after all.
            if self.inside.load(Ordering::SeqCst) {
                return;
            }
        }
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Wakes itself `n` times while polled, then is ready.
    struct SelfWaking(usize);

    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    struct Counting(AtomicUsize);
    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls `f` once through `absorber`.
    fn poll_once<F: Future + Unpin>(
        absorber: &Absorber,
        f: &mut F,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        absorber.poll(cx, |own| std::pin::Pin::new(&mut *f).poll(own))
    }

    #[tokio::test]
    async fn a_wake_up_during_the_poll_is_answered_in_the_same_poll() {
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let absorber = Absorber::new();
        assert!(poll_once(&absorber, &mut SelfWaking(3), &mut cx).is_ready());
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "no trip through the runtime"
        );
    }

    #[tokio::test]
    async fn a_future_that_keeps_waking_itself_yields_to_other_tasks() {
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let absorber = Absorber::new();
        assert!(poll_once(&absorber, &mut SelfWaking(10 * ROUNDS), &mut cx).is_pending());
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken to be polled again later"
        );
    }

    #[tokio::test]
    async fn a_wake_up_after_the_poll_reaches_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let absorber = Absorber::new();
        let mut rx = rx;
        assert!(poll_once(&absorber, &mut rx, &mut cx).is_pending());
        tx.send(()).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(poll_once(&absorber, &mut rx, &mut cx).is_ready());
    }
}

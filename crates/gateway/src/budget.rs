//! Bytes that all requests together may hold at once — request bodies being read
//! (`http.max_body_bytes_in_flight`), upstream replies being read and sent on
//! (`upstream.max_response_bytes_in_flight`): a semaphore of bytes, each holder's share grown
//! as its buffer grows and given back as it shrinks or goes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of `bytes` (as much as a semaphore can count).
pub fn of(bytes: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)))
}

/// Makes `held` exactly `bytes` of `budget`: more taken at once, or what is over given back.
/// False, with `held` unchanged, when the budget has not that much left.
pub fn hold(
    budget: &Arc<Semaphore>,
    held: &mut Option<OwnedSemaphorePermit>,
    bytes: usize,
) -> bool {
    let now = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
    if bytes > now {
        let Ok(more) = u32::try_from(bytes - now)
            .map_err(drop)
            .and_then(|n| Arc::clone(budget).try_acquire_many_owned(n).map_err(drop))
        else {
            return false;
        };
        match held.as_mut() {
            Some(h) => h.merge(more),
            None => *held = Some(more),
        }
    } else if bytes < now
        && let Some(h) = held.as_mut()
    {
        drop(h.split(now - bytes));
    }
    true
}

/// Why a body could not be read whole.
pub enum Short<E> {
    /// The body failed.
    Unreadable(E),
    /// More than the most allowed.
    TooLarge,
    /// The budget has no more.
    OverBudget,
}

/// Reads `body` whole — at most `max` bytes, each chunk charged to `budget` as it arrives —
/// and returns its share of the budget with it, to be held for as long as the bytes are.
pub async fn collect<B>(
    mut body: B,
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Short<B::Error>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    let mut held = None;
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(Short::Unreadable)?.into_data() else {
            continue;
        };
        let len = buf.len() + chunk.len();
        if len > max {
            return Err(Short::TooLarge);
        }
        if !hold(budget, &mut held, len) {
            return Err(Short::OverBudget);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), held))
}

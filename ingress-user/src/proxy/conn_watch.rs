//! `keep-alive` and `keep-alive-requests` on the connections hyper serves
//! (HTTP/2, and HTTP/1.x handed over by the fast path), with nginx's
//! meaning: a connection with no request in flight for `keep-alive` is
//! closed, and one that has taken `keep-alive-requests` requests takes no
//! more (HTTP/1.x: the last response says `Connection: close`; HTTP/2:
//! GOAWAY, the streams in flight finish).
//!
//! A request counts as in flight from its arrival until its response body
//! has gone out (or was dropped), so a long download is never "idle".

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::{sync::Notify, time::Instant};

/// One connection's requests, shared by its service and its driver.
pub struct ConnWatch {
    born: Instant,
    /// Requests taken so far.
    requests: AtomicU32,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// When the last response ended, in ms after `born`.
    idle_since_ms: AtomicU64,
    /// Wakes the driver when a request starts or ends.
    changed: Notify,
}

impl ConnWatch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            requests: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// A request arrived; it is in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }

    /// Resolves once the connection should take no more requests: it has
    /// taken `max_requests`, or no request has been in flight for `idle`.
    pub async fn expired(&self, idle: Duration, max_requests: Option<u32>) {
        loop {
            // `notify_one` keeps a permit: a change between the checks
            // below and the wait is not lost.
            let changed = self.changed.notified();
            if max_requests.is_some_and(|max| self.requests.load(Ordering::Relaxed) >= max) {
                return;
            }
            if self.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let since = self.idle_since();
            tokio::select! {
                () = tokio::time::sleep_until(since + idle) => {
                    if self.in_flight.load(Ordering::Acquire) == 0 && self.idle_since() == since {
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// A request in flight on a watched connection.
pub struct InFlight(Arc<ConnWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let w = &self.0;
        let ms = u64::try_from(w.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        w.idle_since_ms.store(ms, Ordering::Release);
        w.in_flight.fetch_sub(1, Ordering::AcqRel);
        w.changed.notify_one();
    }
}

/// A response body that ends its request's [`InFlight`] when it has gone
/// out or is dropped.
pub struct Watched<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Watched<B> {
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_response_and_requests_are_capped() {
        let w = ConnWatch::new();
        // Idle from the start: expires after `idle`.
        let t = Instant::now();
        w.expired(Duration::from_secs(5), None).await;
        assert_eq!(t.elapsed(), Duration::from_secs(5));
        // A request in flight for 20 s: not idle meanwhile; the idle time
        // counts from its end.
        let req = w.begin();
        let w2 = w.clone();
        let t = Instant::now();
        let waiter = tokio::spawn(async move { w2.expired(Duration::from_secs(5), None).await });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!waiter.is_finished());
        drop(req);
        waiter.await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(25));
        // The cap: reached by the second request, while it is in flight.
        let w = ConnWatch::new();
        drop(w.begin());
        let _second = w.begin();
        let t = Instant::now();
        w.expired(Duration::from_secs(60), Some(2)).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}

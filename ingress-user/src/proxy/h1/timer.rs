//! Lazily re-armed deadlines: one timer per connection and purpose. Moving a
//! deadline later (every request does) is a store, not a timer-wheel update;
//! when the timer fires before the current deadline it re-arms itself.

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    task::Poll,
};

use tokio::time::{Instant, Sleep, sleep_until};

pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
}

impl Deadline {
    pub fn new(at: Instant) -> Self {
        Self {
            sleep: Box::pin(sleep_until(at)),
            at,
        }
    }

    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
    }

    /// Runs `fut` until it completes, or `None` once the deadline passed.
    /// A future that is ready at once never touches the timer.
    pub async fn run<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            loop {
                match self.sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= self.at => return Poll::Ready(None),
                    Poll::Ready(()) => {
                        let at = self.at;
                        self.sleep.as_mut().reset(at);
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline_only() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(1));
        // Moved later before the first timer fires: it re-arms, not fails.
        d.set(start + Duration::from_secs(3));
        assert_eq!(d.run(std::future::pending::<()>()).await, None);
        assert!(start.elapsed() >= Duration::from_secs(3));
        // Moved earlier: honoured.
        let now = Instant::now();
        d.set(now + Duration::from_secs(10));
        d.set(now + Duration::from_millis(500));
        assert_eq!(d.run(std::future::pending::<()>()).await, None);
        assert!(now.elapsed() < Duration::from_secs(1));
        // Ready work wins.
        d.set(Instant::now() + Duration::from_secs(1));
        assert_eq!(d.run(async { 7 }).await, Some(7));
        let t = Instant::now();
        let slow = tokio::time::sleep(Duration::from_millis(200));
        assert_eq!(d.run(slow).await, Some(()));
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
}

//! Passive health of endpoints, nginx's `max_fails` / `fail_timeout`: an
//! endpoint that fails `max_fails` times within `fail_timeout` is skipped
//! for `fail_timeout`; then one request may try it again (a failure ejects
//! it anew, a success forgets its failures).
//!
//! Kept per endpoint address for the agent's lifetime, so a reload (a new
//! snapshot, new `Backend`s) does not bring a dead pod back. While no
//! endpoint has failed, a pick costs one atomic load.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{metrics::Metrics, model::annotations::UpstreamPolicy};

#[derive(Debug)]
struct State {
    fails: u32,
    /// The first failure of the current window.
    since: Instant,
    /// Skipped until then.
    ejected_until: Option<Instant>,
    fail_timeout: Duration,
}

#[derive(Debug)]
pub struct Health {
    /// Endpoints with a state (failing or ejected): 0 means none at all.
    tracked: AtomicUsize,
    states: Mutex<HashMap<SocketAddr, State>>,
    metrics: Arc<Metrics>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            tracked: AtomicUsize::new(0),
            states: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `peer` is to be skipped now.
    pub fn is_ejected(&self, peer: SocketAddr) -> bool {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let now = Instant::now();
        let states = self.lock();
        states
            .get(&peer)
            .and_then(|s| s.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// A connection to `peer` failed, timed out, or it answered with a
    /// status the route counts as a failure.
    pub fn failed(&self, peer: SocketAddr, policy: &UpstreamPolicy, why: &str) {
        if policy.max_fails == 0 {
            return;
        }
        let now = Instant::now();
        let mut states = self.lock();
        let s = states.entry(peer).or_insert(State {
            fails: 0,
            since: now,
            ejected_until: None,
            fail_timeout: policy.fail_timeout,
        });
        if now.duration_since(s.since) > policy.fail_timeout {
            s.fails = 0;
            s.since = now;
        }
        s.fails += 1;
        s.fail_timeout = policy.fail_timeout;
        let ejected_now = s.ejected_until.is_some_and(|u| now < u);
        if s.fails >= policy.max_fails && !ejected_now {
            s.ejected_until = Some(now + policy.fail_timeout);
            self.metrics.endpoint_ejected();
            tracing::warn!(
                endpoint = %peer,
                fails = s.fails,
                for_seconds = policy.fail_timeout.as_secs_f64(),
                "endpoint ejected: {why}"
            );
        }
        Self::forget_stale(&mut states, now);
        self.tracked.store(states.len(), Ordering::Relaxed);
    }

    /// `peer` answered: its failures are forgotten.
    pub fn succeeded(&self, peer: SocketAddr) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut states = self.lock();
        if let Some(s) = states.remove(&peer)
            && s.ejected_until.is_some()
        {
            self.metrics.endpoint_returned();
            tracing::info!(endpoint = %peer, "endpoint answers again: back in rotation");
        }
        self.tracked.store(states.len(), Ordering::Relaxed);
    }

    /// Endpoints skipped right now.
    #[cfg(test)]
    pub fn ejected_count(&self) -> usize {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|s| s.ejected_until.is_some_and(|u| now < u))
            .count()
    }

    /// States whose window and ejection are long over (endpoints that went
    /// away without a success), so the map stays small.
    fn forget_stale(states: &mut HashMap<SocketAddr, State>, now: Instant) {
        states.retain(|_, s| {
            let window_open = now.duration_since(s.since) <= s.fail_timeout;
            let ejected = s.ejected_until.is_some_and(|u| now < u + s.fail_timeout);
            window_open || ejected
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn max_fails_within_fail_timeout_ejects_for_fail_timeout() {
        let metrics = Arc::new(Metrics::default());
        let h = Health::new(metrics.clone());
        let policy = UpstreamPolicy {
            max_fails: 2,
            fail_timeout: Duration::from_millis(200),
            ..UpstreamPolicy::default()
        };
        assert!(!h.is_ejected(a(1)));
        h.failed(a(1), &policy, "refused");
        assert!(!h.is_ejected(a(1)), "one failure of two");
        h.failed(a(1), &policy, "refused");
        assert!(h.is_ejected(a(1)));
        assert!(!h.is_ejected(a(2)));
        assert_eq!(h.ejected_count(), 1);
        std::thread::sleep(Duration::from_millis(250));
        assert!(!h.is_ejected(a(1)), "back after fail_timeout");
        h.succeeded(a(1));
        assert_eq!(h.tracked.load(Ordering::Relaxed), 0);
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(
            text.contains("xingress_upstream_ejections_total 1"),
            "{text}"
        );
        assert!(text.contains("xingress_upstream_returns_total 1"), "{text}");
    }

    #[test]
    fn max_fails_zero_never_ejects_and_one_ejects_at_once() {
        let h = Health::new(Arc::new(Metrics::default()));
        let off = UpstreamPolicy {
            max_fails: 0,
            ..UpstreamPolicy::default()
        };
        for _ in 0..5 {
            h.failed(a(1), &off, "refused");
        }
        assert!(!h.is_ejected(a(1)));
        h.failed(a(1), &UpstreamPolicy::default(), "refused");
        assert!(h.is_ejected(a(1)));
    }
}

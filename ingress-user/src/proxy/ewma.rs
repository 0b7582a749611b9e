//! `load-balance: ewma`: each endpoint's response latency as a peak-
//! sensitive exponentially weighted moving average (a slower answer counts
//! at once, a faster one fades in over `DECAY`), and each request to the
//! better of two endpoints drawn at random (power of two choices), as
//! ingress-nginx's Lua balancer does. An endpoint not measured yet scores
//! 0, so it gets requests and is measured.
//!
//! Kept per endpoint address for the agent's lifetime, like passive
//! health, so a reload does not forget what was measured.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::model::{Backend, BackendError, BackendTarget, Peer};

/// How long a measurement takes to fade (nginx's Lua balancer: 10 s).
const DECAY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Ewma {
    /// Address → (latency in seconds, when it was last updated).
    scores: Mutex<HashMap<SocketAddr, (f64, Instant)>>,
}

impl Ewma {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, (f64, Instant)>> {
        self.scores.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `peer` answered (its response head) after `took`.
    pub fn observe(&self, peer: SocketAddr, took: Duration) {
        let now = Instant::now();
        let rtt = took.as_secs_f64();
        let mut scores = self.lock();
        let s = scores.entry(peer).or_insert((rtt, now));
        let w = (-now.duration_since(s.1).as_secs_f64() / DECAY.as_secs_f64()).exp();
        s.0 = if rtt > s.0 {
            rtt
        } else {
            s.0 * w + rtt * (1.0 - w)
        };
        s.1 = now;
    }

    /// The score of `peer` now: its average, decayed towards 0 while it
    /// is not measured again.
    fn score(scores: &HashMap<SocketAddr, (f64, Instant)>, peer: SocketAddr, now: Instant) -> f64 {
        scores.get(&peer).map_or(0.0, |(v, at)| {
            v * (-now.duration_since(*at).as_secs_f64() / DECAY.as_secs_f64()).exp()
        })
    }

    /// The better of two endpoints drawn at random, among those `skip`
    /// does not name (passive health); all named: one anyway.
    pub fn pick(
        &self,
        backend: &Backend,
        skip: &dyn Fn(SocketAddr) -> bool,
    ) -> Result<Peer, BackendError> {
        let BackendTarget::Endpoints(eps) = &backend.target else {
            return backend.pick();
        };
        let healthy: Vec<SocketAddr> = eps.iter().copied().filter(|a| !skip(*a)).collect();
        let pool = if healthy.is_empty() { eps } else { &healthy };
        if pool.len() == 1 {
            return Ok(Peer::Addr(pool[0]));
        }
        let a = fastrand::usize(..pool.len());
        let mut b = fastrand::usize(..pool.len() - 1);
        if b >= a {
            b += 1;
        }
        let now = Instant::now();
        let scores = self.lock();
        let (sa, sb) = (
            Self::score(&scores, pool[a], now),
            Self::score(&scores, pool[b], now),
        );
        Ok(Peer::Addr(if sb < sa { pool[b] } else { pool[a] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NamespacedName;

    #[test]
    fn slow_endpoints_get_few_requests_and_peaks_count_at_once() {
        let fast: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let slow: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let third: SocketAddr = "10.0.0.3:80".parse().unwrap();
        let backend = Backend::new(
            NamespacedName::new("default", "svc"),
            "80".into(),
            BackendTarget::Endpoints(vec![fast, slow, third]),
        );
        let e = Ewma::default();
        e.observe(fast, Duration::from_millis(2));
        e.observe(third, Duration::from_millis(5));
        e.observe(slow, Duration::from_millis(200));
        let mut to_slow = 0;
        for _ in 0..3000 {
            if e.pick(&backend, &|_| false).unwrap() == Peer::Addr(slow) {
                to_slow += 1;
            }
        }
        // Drawn with the other two it always loses; alone never: 0.
        assert_eq!(to_slow, 0);
        // A peak counts at once: the fast one answering slowly now loses
        // against the third.
        e.observe(fast, Duration::from_millis(50));
        let picks: Vec<Peer> = (0..300)
            .map(|_| e.pick(&backend, &|_| false).unwrap())
            .collect();
        assert!(picks.iter().filter(|p| **p == Peer::Addr(third)).count() > 150);
        // Skipped endpoints are not picked while others are left.
        assert!((0..300).all(|_| e.pick(&backend, &|a| a == third).unwrap() != Peer::Addr(third)));
    }
}

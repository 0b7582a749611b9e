//! Per-source limits of the `limit-*` annotations: requests in flight and
//! request rates per client address, one set of counters per Ingress.
//!
//! The counters outlive snapshots: an Ingress whose limits did not change
//! keeps its counters across reloads, so a reconfiguration neither resets a
//! client's budget nor forgets the requests it has in flight.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::model::{NamespacedName, annotations::RateLimit};

/// Shards per limiter: requests from different sources rarely share a lock.
const SHARDS: usize = 16;
/// Sources tracked per shard. When a shard is full of sources that are all
/// still active, new sources are limited (nginx does the same when a
/// `limit_req_zone` runs out of memory): at most 64 Ki sources per Ingress.
const SHARD_CAPACITY: usize = 4096;
/// A full shard is swept for idle sources at most this often: a sweep scans
/// the whole shard, and a flood of new sources must not make every request
/// pay for one.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The live limiters, by Ingress; touched only when a snapshot is published.
#[derive(Default)]
pub struct Limiters {
    live: Mutex<HashMap<NamespacedName, Arc<Limiter>>>,
}

impl Limiters {
    /// Limiters for a new routing table's limits, in index order. An Ingress
    /// whose limits are unchanged keeps its limiter (and its counters).
    pub fn for_table(&self, limits: &[(NamespacedName, RateLimit)]) -> Vec<Arc<Limiter>> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let out: Vec<Arc<Limiter>> = limits
            .iter()
            .map(|(id, spec)| match live.get(id) {
                Some(l) if l.spec == *spec => l.clone(),
                _ => {
                    let l = Arc::new(Limiter::new(spec.clone()));
                    live.insert(id.clone(), l.clone());
                    l
                }
            })
            .collect();
        let kept: std::collections::HashSet<&NamespacedName> =
            limits.iter().map(|(id, _)| id).collect();
        live.retain(|id, _| kept.contains(id));
        out
    }
}

/// One token bucket: `rate` per second, at most `burst` saved up.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
}

#[derive(Debug)]
struct Source {
    in_flight: u32,
    /// Tokens left per bucket at `last`.
    tokens: [f64; 2],
    last: Instant,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Too many requests in flight from this source.
    Connections,
    /// The source's request rate is over the limit.
    Rate,
    /// Too many distinct sources are active to track another.
    Full,
}

#[derive(Default)]
struct Shard {
    sources: HashMap<IpAddr, Source>,
    /// When the shard was last swept for idle sources.
    swept: Option<Instant>,
}

/// The counters of one Ingress.
pub struct Limiter {
    spec: RateLimit,
    buckets: [Option<Bucket>; 2],
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("spec", &self.spec).finish()
    }
}

/// Holds one in-flight request of a source; dropping it ends the request.
#[derive(Debug)]
pub struct LimitGuard {
    limiter: Arc<Limiter>,
    key: IpAddr,
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        let mut shard = self.limiter.shard(self.key);
        if let Some(s) = shard.sources.get_mut(&self.key) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

impl Limiter {
    pub fn new(spec: RateLimit) -> Self {
        let bucket = |rate: Option<u32>, per: f64| {
            rate.map(|r| {
                let rate = f64::from(r) / per;
                Bucket {
                    rate,
                    // At least one request must always be possible.
                    burst: (f64::from(r) * f64::from(spec.burst_multiplier.max(1))).max(1.0),
                }
            })
        };
        Self {
            buckets: [bucket(spec.rps, 1.0), bucket(spec.rpm, 60.0)],
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            spec,
        }
    }

    /// Admits a request from `client` at `now`, or says why not. The guard
    /// (only when `limit-connections` is set) must live as long as the request.
    pub fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        now: Instant,
    ) -> Result<Option<LimitGuard>, Limited> {
        let client = client.to_canonical();
        if self.spec.exempt.iter().any(|c| c.contains(client)) {
            return Ok(None);
        }
        let key = source_key(client);
        let mut shard = self.shard(key);
        if shard.sources.len() >= SHARD_CAPACITY && !shard.sources.contains_key(&key) {
            if shard
                .swept
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
            {
                shard.swept = Some(now);
                shard.sources.retain(|_, s| !self.is_idle(s, now));
            }
            if shard.sources.len() >= SHARD_CAPACITY {
                return Err(Limited::Full);
            }
        }
        let source = shard.sources.entry(key).or_insert_with(|| Source {
            in_flight: 0,
            tokens: self.buckets.map(|b| b.map_or(0.0, |b| b.burst)),
            last: now,
        });
        if let Some(max) = self.spec.connections
            && source.in_flight >= max
        {
            return Err(Limited::Connections);
        }
        let elapsed = now.saturating_duration_since(source.last).as_secs_f64();
        source.last = source.last.max(now);
        let mut refilled = source.tokens;
        for (tokens, bucket) in refilled.iter_mut().zip(self.buckets) {
            if let Some(b) = bucket {
                *tokens = (*tokens + elapsed * b.rate).min(b.burst);
                if *tokens < 1.0 {
                    source.tokens = refilled;
                    return Err(Limited::Rate);
                }
            }
        }
        for (tokens, bucket) in refilled.iter_mut().zip(self.buckets) {
            if bucket.is_some() {
                *tokens -= 1.0;
            }
        }
        source.tokens = refilled;
        if self.spec.connections.is_none() {
            return Ok(None);
        }
        source.in_flight += 1;
        drop(shard);
        Ok(Some(LimitGuard {
            limiter: self.clone(),
            key,
        }))
    }

    /// No request in flight and every bucket full again: forgetting the
    /// source changes nothing.
    fn is_idle(&self, s: &Source, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.in_flight == 0
            && s.tokens
                .iter()
                .zip(self.buckets)
                .all(|(t, b)| b.is_none_or(|b| t + elapsed * b.rate >= b.burst))
    }

    fn shard(&self, key: IpAddr) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sources tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).sources.len())
            .sum()
    }
}

/// The key a source is counted under: the IPv4 address, or the IPv6 /64 (one
/// host usually holds a whole /64, so per-address limits would not hold it).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cidr;

    fn spec(connections: Option<u32>, rps: Option<u32>, rpm: Option<u32>) -> RateLimit {
        RateLimit {
            connections,
            rps,
            rpm,
            burst_multiplier: 1,
            exempt: Arc::from([]),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn requests_in_flight_are_counted_per_source() {
        let l = Arc::new(Limiter::new(spec(Some(2), None, None)));
        let now = Instant::now();
        let a = l.admit(ip("192.0.2.1"), now).unwrap();
        let b = l.admit(ip("192.0.2.1"), now).unwrap();
        assert!(a.is_some() && b.is_some());
        assert_eq!(
            l.admit(ip("192.0.2.1"), now).unwrap_err(),
            Limited::Connections
        );
        // Another source is not affected; the same source as IPv4-mapped IPv6 is.
        assert!(l.admit(ip("192.0.2.2"), now).is_ok());
        assert_eq!(
            l.admit(ip("::ffff:192.0.2.1"), now).unwrap_err(),
            Limited::Connections
        );
        drop(a);
        let c = l.admit(ip("192.0.2.1"), now).unwrap();
        assert!(c.is_some());
        drop((b, c));
    }

    #[test]
    fn rates_refill_over_time_and_burst_is_bounded() {
        let mut s = spec(None, Some(10), None);
        s.burst_multiplier = 2;
        let l = Arc::new(Limiter::new(s));
        let t0 = Instant::now();
        let src = ip("198.51.100.7");
        for i in 0..20 {
            assert!(l.admit(src, t0).is_ok(), "request {i} is within the burst");
        }
        assert_eq!(l.admit(src, t0).unwrap_err(), Limited::Rate);
        // 10 per second: after 100 ms one more, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.admit(src, t1).is_ok());
        assert_eq!(l.admit(src, t1).unwrap_err(), Limited::Rate);
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(l.admit(src, t2).is_ok());
        }
        assert!(l.admit(src, t2).is_err());
    }

    #[test]
    fn per_minute_and_per_second_both_apply() {
        let l = Arc::new(Limiter::new(spec(None, Some(100), Some(3))));
        let t = Instant::now();
        let src = ip("203.0.113.9");
        for _ in 0..3 {
            assert!(l.admit(src, t).is_ok());
        }
        assert_eq!(l.admit(src, t).unwrap_err(), Limited::Rate);
        // 20 s later one per-minute token is back.
        assert!(l.admit(src, t + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let l = Arc::new(Limiter::new(spec(None, Some(1), None)));
        let t = Instant::now();
        assert!(l.admit(ip("2001:db8:1:2::1"), t).is_ok());
        assert!(l.admit(ip("2001:db8:1:2:ffff::9"), t).is_err());
        assert!(l.admit(ip("2001:db8:1:3::1"), t).is_ok());
    }

    #[test]
    fn exempt_sources_are_not_limited() {
        let mut s = spec(Some(1), Some(1), None);
        s.exempt = Arc::from(["10.0.0.0/8".parse::<Cidr>().unwrap()]);
        let l = Arc::new(Limiter::new(s));
        let t = Instant::now();
        let mut held = Vec::new();
        for _ in 0..50 {
            held.push(l.admit(ip("10.1.2.3"), t).unwrap());
        }
        assert_eq!(l.tracked(), 0);
        let _g = l.admit(ip("11.0.0.1"), t).unwrap();
        assert!(l.admit(ip("11.0.0.1"), t).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_make_room() {
        let l = Arc::new(Limiter::new(spec(Some(1), None, None)));
        let t = Instant::now();
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..(SHARDS * SHARD_CAPACITY + 1000) as u32 {
            match l.admit(IpAddr::from(i.to_be_bytes()), t) {
                Ok(g) => held.push(g),
                Err(e) => {
                    assert_eq!(e, Limited::Full);
                    refused += 1;
                }
            }
        }
        assert!(refused >= 1000, "{refused}");
        assert!(l.tracked() <= SHARDS * SHARD_CAPACITY);
        // Once their requests end, the old sources are idle and make room
        // at the next sweep (not before: sweeps are rate-limited).
        held.clear();
        let full = (0..=u32::MAX)
            .map(|i| IpAddr::from((0xC000_0200u32 + i).to_be_bytes()))
            .find(|&a| l.admit(a, t).is_err())
            .unwrap();
        assert_eq!(l.admit(full, t).unwrap_err(), Limited::Full);
        assert!(l.admit(full, t + SWEEP_EVERY).is_ok());
    }

    #[test]
    fn unchanged_limits_keep_their_counters_across_snapshots() {
        let reg = Limiters::default();
        let id = NamespacedName::new("default", "cafe");
        let first = reg.for_table(&[(id.clone(), spec(Some(1), None, None))]);
        let _g = first[0].admit(ip("192.0.2.1"), Instant::now()).unwrap();
        let second = reg.for_table(&[(id.clone(), spec(Some(1), None, None))]);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        assert!(second[0].admit(ip("192.0.2.1"), Instant::now()).is_err());
        let changed = reg.for_table(&[(id.clone(), spec(Some(5), None, None))]);
        assert!(!Arc::ptr_eq(&first[0], &changed[0]));
        assert!(reg.for_table(&[]).is_empty());
        assert!(reg.live.lock().unwrap().is_empty());
    }
}

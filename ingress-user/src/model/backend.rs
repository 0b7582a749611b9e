//! A resolved backend: a Service port and its ready endpoints, balanced per request.

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{BackendProtocol, NamespacedName};

/// Where a backend's traffic can go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendTarget {
    /// Ready endpoints (pod IP + pod-side port), never empty.
    Endpoints(Vec<SocketAddr>),
    /// An ExternalName Service (only with --enable-external-name-services):
    /// a DNS name resolved when connecting, and the Service port.
    External { host: Arc<str>, port: u16 },
    /// The Service exists but has no ready endpoint.
    NoEndpoints,
    /// No such Service (or no such port on it).
    MissingService,
    /// A backend we refuse to route to (resource backend, ExternalName...).
    Unsupported(&'static str),
    /// A Gateway API backend reference that cannot be resolved (no such
    /// Service, a kind that is not a Service, a reference not granted):
    /// the spec's 500.
    Invalid(&'static str),
}

/// One backend of the routing table, shared by every rule that names it.
#[derive(Debug)]
pub struct Backend {
    pub service: NamespacedName,
    /// The port as the Ingress wrote it (`80` or `http`).
    pub port: String,
    pub target: BackendTarget,
    pub protocol: BackendProtocol,
    next: AtomicUsize,
    /// `affinity: cookie`: each endpoint's cookie value (same order as the
    /// endpoints), made on first use.
    tokens: std::sync::OnceLock<Vec<Box<str>>>,
    /// `upstream-hash-by`: the endpoints' ring, made on first use.
    ring: std::sync::OnceLock<super::hashing::Ring>,
    /// `upstream-hash-by-subset`: (size, the groups, their ring).
    subsets: std::sync::OnceLock<Subsets>,
}

/// Endpoints in groups of `size` (sorted by address), and a ring over the
/// groups.
#[derive(Debug)]
struct Subsets {
    size: usize,
    groups: Vec<Vec<SocketAddr>>,
    ring: super::hashing::Ring,
}

impl Subsets {
    fn new(eps: &[SocketAddr], size: usize) -> Self {
        let mut sorted = eps.to_vec();
        sorted.sort();
        let groups: Vec<Vec<SocketAddr>> = sorted.chunks(size.max(1)).map(<[_]>::to_vec).collect();
        let ring = super::hashing::Ring::new(groups.len(), |i| format!("subset-{i}"));
        Self { size, groups, ring }
    }
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Addr(SocketAddr),
    Name(Arc<str>, u16),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Why a backend cannot take a request; each maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    NoEndpoints,
    MissingService,
    Unsupported,
    Invalid,
}

impl Backend {
    pub fn new(service: NamespacedName, port: String, target: BackendTarget) -> Self {
        Self {
            service,
            port,
            target,
            protocol: BackendProtocol::Http,
            next: AtomicUsize::new(0),
            tokens: std::sync::OnceLock::new(),
            ring: std::sync::OnceLock::new(),
            subsets: std::sync::OnceLock::new(),
        }
    }

    pub fn with_protocol(mut self, protocol: BackendProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Picks the next endpoint, round robin per request (not per connection).
    pub fn pick(&self) -> Result<Peer, BackendError> {
        match &self.target {
            BackendTarget::Endpoints(eps) => {
                // Relaxed: the counter only spreads load; no ordering needed.
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                Ok(Peer::Addr(eps[i % eps.len()]))
            }
            BackendTarget::External { host, port } => Ok(Peer::Name(host.clone(), *port)),
            BackendTarget::NoEndpoints => Err(BackendError::NoEndpoints),
            BackendTarget::MissingService => Err(BackendError::MissingService),
            BackendTarget::Unsupported(_) => Err(BackendError::Unsupported),
            BackendTarget::Invalid(_) => Err(BackendError::Invalid),
        }
    }

    /// Picks the next endpoint round robin, passing over those `skip`
    /// names (ejected by passive health); when it names them all, the
    /// round-robin one anyway (a guess beats refusing everything).
    pub fn pick_healthy(&self, skip: &dyn Fn(SocketAddr) -> bool) -> Result<Peer, BackendError> {
        let BackendTarget::Endpoints(eps) = &self.target else {
            return self.pick();
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let n = eps.len();
        let found = (0..n).map(|k| eps[(i + k) % n]).find(|a| !skip(*a));
        Ok(Peer::Addr(found.unwrap_or(eps[i % n])))
    }

    /// For a retry: an endpoint not `tried`, preferring those `skip` does
    /// not name; `None` when every endpoint was tried. Each call starts at
    /// a fresh round-robin position, so concurrent retries spread out.
    pub fn pick_untried(
        &self,
        tried: &dyn Fn(SocketAddr) -> bool,
        skip: &dyn Fn(SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        let BackendTarget::Endpoints(eps) = &self.target else {
            return None;
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let n = eps.len();
        let order = || (0..n).map(|k| eps[(i + k) % n]).filter(|a| !tried(*a));
        order().find(|a| !skip(*a)).or_else(|| order().next())
    }

    /// `upstream-hash-by`: the endpoint of `key` on the ring, or the next
    /// one the ring meets that `skip` does not name (passive health); with
    /// a subset size, one of the key's group of endpoints, round robin.
    pub fn pick_hashed(
        &self,
        key: u64,
        subset: Option<usize>,
        skip: &dyn Fn(SocketAddr) -> bool,
    ) -> Result<Peer, BackendError> {
        let BackendTarget::Endpoints(eps) = &self.target else {
            return self.pick();
        };
        let candidates: Vec<SocketAddr> = match subset {
            None => {
                let ring = self.ring.get_or_init(|| super::hashing::Ring::of(eps));
                return Ok(Peer::Addr(
                    ring.walk(key)
                        .map(|i| eps[i])
                        .find(|a| !skip(*a))
                        .unwrap_or_else(|| eps[ring.walk(key).next().unwrap_or(0)]),
                ));
            }
            Some(size) => {
                let cached = self.subsets.get_or_init(|| Subsets::new(eps, size));
                let other;
                let s = if cached.size == size {
                    cached
                } else {
                    other = Subsets::new(eps, size);
                    &other
                };
                s.groups[s.ring.walk(key).next().unwrap_or(0)].clone()
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let n = candidates.len();
        let found = (0..n).map(|k| candidates[(i + k) % n]).find(|a| !skip(*a));
        Ok(Peer::Addr(found.unwrap_or(candidates[i % n])))
    }

    /// `affinity: cookie`: the endpoint the client's cookie value names if
    /// it is still ready, else the next one round robin and the cookie value
    /// to give the client for it. A value is a hash of the endpoint's
    /// address: the same across agents and restarts, and it names nothing
    /// but a ready endpoint of this backend.
    pub fn pick_sticky(
        &self,
        cookie: Option<&[u8]>,
        skip: &dyn Fn(SocketAddr) -> bool,
    ) -> Result<(Peer, Option<&str>), BackendError> {
        let BackendTarget::Endpoints(eps) = &self.target else {
            return self.pick().map(|p| (p, None));
        };
        let tokens = self.tokens.get_or_init(|| {
            eps.iter()
                .map(|a| {
                    let d = ring::digest::digest(
                        &ring::digest::SHA256,
                        format!("xingress affinity {a}").as_bytes(),
                    );
                    d.as_ref()[..8]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                        .into()
                })
                .collect()
        });
        if let Some(i) = cookie.and_then(|c| tokens.iter().position(|t| t.as_bytes() == c))
            && !skip(eps[i])
        {
            return Ok((Peer::Addr(eps[i]), None));
        }
        // A new pick; an ejected endpoint's clients move on, as nginx's
        // sticky module does when the server is down.
        let Ok(Peer::Addr(a)) = self.pick_healthy(skip) else {
            return self.pick().map(|p| (p, None));
        };
        let i = eps.iter().position(|e| *e == a).unwrap_or(0);
        Ok((Peer::Addr(eps[i]), Some(&tokens[i])))
    }

    pub fn ready_endpoints(&self) -> usize {
        match &self.target {
            BackendTarget::Endpoints(eps) => eps.len(),
            BackendTarget::External { .. } => 1,
            _ => 0,
        }
    }

    /// `ns/name:port` for tables and logs.
    pub fn describe(&self) -> String {
        match self.protocol {
            BackendProtocol::Http => format!("{}:{}", self.service, self.port),
            p => format!("{}:{} ({})", self.service, self.port, p.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(n: u8) -> Backend {
        let eps = (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect();
        Backend::new(
            NamespacedName::new("ns", "svc"),
            "80".into(),
            BackendTarget::Endpoints(eps),
        )
    }

    fn ep(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    #[test]
    fn healthy_picks_pass_over_skipped_endpoints_unless_all_are() {
        let b = backend(3);
        let skip2 = |a: SocketAddr| a == ep(2);
        let picks: Vec<Peer> = (0..6).map(|_| b.pick_healthy(&skip2).unwrap()).collect();
        assert!(!picks.contains(&Peer::Addr(ep(2))), "{picks:?}");
        assert!(picks.contains(&Peer::Addr(ep(1))) && picks.contains(&Peer::Addr(ep(3))));
        // Everything skipped: still an answer.
        assert!(b.pick_healthy(&|_| true).is_ok());
    }

    #[test]
    fn retries_pick_untried_endpoints_whatever_the_shared_counter_says() {
        let b = backend(2);
        for _ in 0..10 {
            // Other requests move the counter between our picks.
            let _ = b.pick();
            assert_eq!(b.pick_untried(&|a| a == ep(1), &|_| false), Some(ep(2)));
        }
        assert_eq!(b.pick_untried(&|_| true, &|_| false), None);
        // An ejected untried endpoint only when no other is left.
        let b = backend(3);
        for _ in 0..5 {
            assert_eq!(
                b.pick_untried(&|a| a == ep(1), &|a| a == ep(2)),
                Some(ep(3))
            );
        }
        assert_eq!(
            b.pick_untried(&|a| a != ep(2), &|a| a == ep(2)),
            Some(ep(2))
        );
    }

    #[test]
    fn sticky_clients_of_an_ejected_endpoint_move_on() {
        let b = backend(2);
        let (first, token) = b.pick_sticky(None, &|_| false).unwrap();
        let token = token.unwrap().to_string();
        let (again, none) = b.pick_sticky(Some(token.as_bytes()), &|_| false).unwrap();
        assert_eq!((again.clone(), none), (first.clone(), None));
        let Peer::Addr(addr) = first else { panic!() };
        let (moved, new_token) = b
            .pick_sticky(Some(token.as_bytes()), &|a| a == addr)
            .unwrap();
        assert_ne!(moved, first);
        assert!(new_token.is_some_and(|t| t != token));
    }
}

//! Gateway API: the objects ([`types`]) and what their routes add to a
//! routing rule — request matches beyond host and path, weighted backends,
//! and the filters (header edits, redirects, rewrites) — in the form the
//! proxy carries out per request.

pub mod types;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use http::HeaderValue;

use super::Backend;

/// The parts of a request a match looks at besides host and path.
pub trait MatchInput {
    fn method(&self) -> &str;
    /// The first value of a header (name in lowercase).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The query string (without `?`), if any.
    fn query(&self) -> Option<&str>;
    /// The listener the request came in on, as a bit of
    /// [`RequestMatch::listeners`]; `None`: unknown (any).
    fn listener(&self) -> Option<u64>;
}

/// Bit of [`RequestMatch::listeners`]: the agent's HTTP listener.
pub const ON_HTTP: u64 = 1;
/// The agent's HTTPS listener.
pub const ON_HTTPS: u64 = 2;
/// Gateway listeners on other ports: bit `1 << (FIRST_PORT_BIT + i)` for
/// the table's `gateway_ports[i]`.
pub const FIRST_PORT_BIT: u32 = 2;
/// Ports other than 80 and 443 the Gateways of one table may open.
pub const MAX_GATEWAY_PORTS: usize = 62;

/// Whether a listener bit is a Gateway port's (only Gateway API rules
/// serve those; Ingresses and the default backend do not).
pub fn is_gateway_port(bit: u64) -> bool {
    bit >= 1 << FIRST_PORT_BIT
}

/// A lookup that knows only host and path: no rule with a [`RequestMatch`]
/// matches it.
pub struct NoRequest;

impl MatchInput for NoRequest {
    fn method(&self) -> &str {
        ""
    }
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
    fn query(&self) -> Option<&str> {
        None
    }
    fn listener(&self) -> Option<u64> {
        None
    }
}

#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(Box<str>),
    Regex(regex::bytes::Regex),
}

impl ValueMatch {
    fn matches(&self, v: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(want) => want.as_bytes() == v,
            ValueMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// An HTTPRoute match's method, headers and query parameters (all must hold).
#[derive(Debug, Default)]
pub struct RequestMatch {
    /// The agent listeners whose requests may match (`ON_HTTP`, `ON_HTTPS`
    /// and Gateway port bits: the Gateway listeners the route attached to);
    /// 0: any.
    pub listeners: u64,
    pub method: Option<Box<str>>,
    /// Names in lowercase.
    pub headers: Vec<(Box<str>, ValueMatch)>,
    /// Names as written (case-sensitive).
    pub query: Vec<(Box<str>, ValueMatch)>,
}

impl RequestMatch {
    pub fn matches(&self, req: &dyn MatchInput) -> bool {
        if self.listeners != 0
            && let Some(bit) = req.listener()
            && self.listeners & bit == 0
        {
            return false;
        }
        if let Some(m) = &self.method
            && **m != *req.method()
        {
            return false;
        }
        for (name, want) in &self.headers {
            match req.header(name) {
                Some(v) if want.matches(v) => {}
                _ => return false,
            }
        }
        if !self.query.is_empty() {
            let query = req.query().unwrap_or("");
            for (name, want) in &self.query {
                let first = query
                    .split('&')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k == &**name).then_some(v)
                    })
                    .next();
                match first {
                    Some(v) if want.matches(v.as_bytes()) => {}
                    _ => return false,
                }
            }
        }
        true
    }

    /// Gateway API precedence after the path: a method match, then more
    /// header matches, then more query matches rank first.
    pub fn rank(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }
}

/// A rule's backends with their weights (`backendRefs[].weight`), spread
/// as smooth weighted round robin: 70/30 sends 7 of every 10 requests to
/// the first, interleaved, not in bursts.
#[derive(Debug)]
pub struct Split {
    pub backends: Vec<(Arc<Backend>, u32)>,
    /// Indexes into `backends`, one per request slot; empty when every
    /// weight is 0 (then requests get 500).
    schedule: Vec<u16>,
    next: AtomicUsize,
}

/// Longest schedule kept; larger weight sums are scaled down to it.
const MAX_SCHEDULE: u64 = 10_000;

impl Split {
    pub fn new(backends: Vec<(Arc<Backend>, u32)>) -> Self {
        let total: u64 = backends.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut weights: Vec<u64> = backends.iter().map(|(_, w)| u64::from(*w)).collect();
        if total > MAX_SCHEDULE {
            for w in &mut weights {
                *w = if *w == 0 {
                    0
                } else {
                    (*w * MAX_SCHEDULE / total).max(1)
                };
            }
        }
        let g = weights.iter().fold(0, |g, w| gcd(g, *w));
        if g > 1 {
            for w in &mut weights {
                *w /= g;
            }
        }
        let sum: i64 = weights.iter().map(|w| *w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(sum as usize);
        for _ in 0..sum {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += *w as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= sum;
            schedule.push(best as u16);
        }
        Self {
            backends,
            schedule,
            next: AtomicUsize::new(0),
        }
    }

    /// The backend for the next request; `None` when every weight is 0.
    pub fn pick(&self) -> Option<&Arc<Backend>> {
        if self.schedule.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        Some(&self.backends[usize::from(self.schedule[i])].0)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub use super::header_rules::HeaderEdit;

/// A path change of `RequestRedirect` or `URLRewrite`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    Full(Box<str>),
    /// Replaces the rule's matched prefix.
    Prefix(Box<str>),
}

impl PathChange {
    /// The new path for `path`, which matched the prefix `matched`.
    pub fn apply(&self, path: &str, matched: &str) -> String {
        match self {
            PathChange::Full(p) => p.to_string(),
            PathChange::Prefix(replacement) => {
                let matched = matched.trim_end_matches('/');
                let rest = path.get(matched.len()..).unwrap_or("");
                let base = replacement.trim_end_matches('/');
                match (base.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    (true, false) => rest.to_string(),
                    (false, _) => format!("{base}{rest}"),
                }
            }
        }
    }
}

/// `RequestRedirect`.
#[derive(Debug, Clone)]
pub struct GatewayRedirect {
    pub scheme: Option<Box<str>>,
    pub hostname: Option<Box<str>>,
    pub port: Option<u16>,
    pub path: Option<PathChange>,
    pub status: u16,
}

/// `URLRewrite`.
#[derive(Debug, Clone)]
pub struct GatewayRewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathChange>,
}

/// A `RequestMirror` filter: a copy of `numerator` of every `denominator`
/// requests goes to `backend`, spread evenly (not at random).
#[derive(Debug)]
pub struct Mirror {
    pub backend: Arc<Backend>,
    numerator: u64,
    denominator: u64,
    seen: std::sync::atomic::AtomicU64,
}

impl Mirror {
    /// `numerator/denominator` of the requests (both as the spec bounds
    /// them: 0 ≤ numerator ≤ denominator, denominator ≥ 1).
    pub fn new(backend: Arc<Backend>, numerator: u64, denominator: u64) -> Self {
        let denominator = denominator.max(1);
        Self {
            backend,
            numerator: numerator.min(denominator),
            denominator,
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether this request is copied: the n-th request is when
    /// ⌊(n+1)·num/den⌋ > ⌊n·num/den⌋, so exactly `num` of each `den` are.
    pub fn takes(&self) -> bool {
        if self.numerator == self.denominator {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) % self.denominator;
        (n + 1) * self.numerator / self.denominator > n * self.numerator / self.denominator
    }
}

/// What an HTTPRoute rule's filters do to its requests and responses.
#[derive(Debug, Default)]
pub struct Filters {
    pub request_headers: Option<HeaderEdit>,
    /// Carried out as the rule's `PathRule::response_edit`.
    pub response_headers: Option<std::sync::Arc<HeaderEdit>>,
    pub redirect: Option<GatewayRedirect>,
    pub rewrite: Option<GatewayRewrite>,
    /// `RequestMirror`: copies of the request sent to these backends, their
    /// answers dropped.
    pub mirrors: Vec<Mirror>,
    /// `timeouts.request`: the pod's response head must arrive within this
    /// from the request's arrival, retries included (else 504).
    pub request_timeout: Option<std::time::Duration>,
}

impl Filters {
    /// The Location of the redirect, for a request with `scheme`, `host`
    /// (as sent, port included), `path` (matched by `matched`), `query`;
    /// `listener_port` is the Gateway listener's port the request came in on.
    pub fn location(
        r: &GatewayRedirect,
        scheme: &str,
        host: &str,
        path: &str,
        matched: &str,
        query: Option<&str>,
        listener_port: u16,
    ) -> String {
        let scheme_out = r.scheme.as_deref().unwrap_or(scheme);
        let host_only = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
            _ => host,
        };
        let hostname = r.hostname.as_deref().unwrap_or(host_only);
        // Without a port: an explicit scheme's well-known port, else the
        // listener's; the well-known port of the scheme is left out.
        let port = r.port.unwrap_or(match r.scheme.as_deref() {
            Some("https") => 443,
            Some("http") => 80,
            _ => listener_port,
        });
        let default_port = match scheme_out {
            "https" => 443,
            _ => 80,
        };
        let path_out = match &r.path {
            Some(change) => change.apply(path, matched),
            None => path.to_string(),
        };
        let mut out = format!("{scheme_out}://{hostname}");
        if port != default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out.push_str(&path_out);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendTarget, NamespacedName};
    use http::HeaderName;

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend::new(
            NamespacedName::new("ns", name),
            "80".into(),
            BackendTarget::NoEndpoints,
        ))
    }

    #[test]
    fn mirror_shares_are_exact_per_cycle_and_spread() {
        let taken = |num, den, n| {
            let m = Mirror::new(backend("m"), num, den);
            (0..n).map(|_| m.takes()).collect::<Vec<_>>()
        };
        assert!(taken(100, 100, 7).iter().all(|t| *t));
        assert!(taken(0, 100, 300).iter().all(|t| !*t));
        let half = taken(50, 100, 10);
        assert_eq!(half, [false, true].repeat(5));
        let tenth = taken(1, 10, 30);
        assert_eq!(tenth.iter().filter(|t| **t).count(), 3);
        assert_eq!(tenth.iter().position(|t| *t), Some(9));
        // 3/7: three of every seven, never two copies in a row here.
        let t = taken(3, 7, 70);
        assert_eq!(t.iter().filter(|t| **t).count(), 30);
        assert!(t.windows(2).all(|w| !(w[0] && w[1])));
    }

    #[test]
    fn weighted_split_is_exact_per_cycle_and_interleaved() {
        let s = Split::new(vec![
            (backend("a"), 70),
            (backend("b"), 30),
            (backend("c"), 0),
        ]);
        let picks: Vec<String> = (0..100)
            .map(|_| s.pick().unwrap().service.name.clone())
            .collect();
        assert_eq!(picks.iter().filter(|n| *n == "a").count(), 70);
        assert_eq!(picks.iter().filter(|n| *n == "b").count(), 30);
        assert!(!picks.contains(&"c".to_string()));
        // Interleaved: never more than 3 a's in a row at 7:3.
        let runs = picks
            .windows(4)
            .filter(|w| w.iter().all(|n| n == "a"))
            .count();
        assert_eq!(runs, 0, "{picks:?}");
        assert!(Split::new(vec![(backend("z"), 0)]).pick().is_none());
        // Huge weights are scaled, not allocated.
        let big = Split::new(vec![(backend("a"), 1_000_000), (backend("b"), 999_999)]);
        assert!(big.schedule.len() <= MAX_SCHEDULE as usize);
    }

    #[test]
    fn prefix_replacement_keeps_the_rest_of_the_path() {
        let strip = PathChange::Prefix("/".into());
        assert_eq!(strip.apply("/strip-prefix", "/strip-prefix"), "/");
        assert_eq!(
            strip.apply("/strip-prefix/three", "/strip-prefix"),
            "/three"
        );
        let swap = PathChange::Prefix("/new".into());
        assert_eq!(swap.apply("/old/x", "/old"), "/new/x");
        assert_eq!(swap.apply("/old", "/old/"), "/new");
        assert_eq!(PathChange::Full("/f".into()).apply("/any/thing", "/"), "/f");
    }

    #[test]
    fn redirect_location_follows_the_spec_defaults() {
        let r = GatewayRedirect {
            scheme: None,
            hostname: Some("example.org".into()),
            port: None,
            path: None,
            status: 302,
        };
        assert_eq!(
            Filters::location(&r, "http", "a.test:8080", "/p", "/", Some("q=1"), 80),
            "http://example.org/p?q=1"
        );
        let https = GatewayRedirect {
            scheme: Some("https".into()),
            hostname: None,
            ..r.clone()
        };
        assert_eq!(
            Filters::location(&https, "http", "a.test", "/p", "/", None, 80),
            "https://a.test/p"
        );
        let port = GatewayRedirect {
            port: Some(8443),
            ..https
        };
        assert_eq!(
            Filters::location(&port, "http", "a.test", "/p", "/", None, 80),
            "https://a.test:8443/p"
        );
    }

    #[test]
    fn header_edits_set_append_and_remove() {
        let mut h = http::HeaderMap::new();
        h.insert("x-add", HeaderValue::from_static("old"));
        h.insert("x-set", HeaderValue::from_static("old"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let edit = HeaderEdit {
            set: vec![(
                HeaderName::from_static("x-set"),
                HeaderValue::from_static("new"),
            )],
            add: vec![(
                HeaderName::from_static("x-add"),
                HeaderValue::from_static("new"),
            )],
            remove: vec![HeaderName::from_static("x-gone")],
            rewrite: vec![],
        };
        edit.apply(&mut h);
        assert_eq!(h["x-set"], "new");
        assert_eq!(h["x-add"], "old,new");
        assert!(h.get("x-gone").is_none());
    }
}

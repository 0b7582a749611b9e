//! The routing table and its per-request lookup (no locks, no allocation).

use std::{collections::HashMap, sync::Arc};

use serde::Serialize;

use super::{
    Backend, Cidr, NamespacedName,
    annotations::RateLimit,
    gateway::{MatchInput, NoRequest},
    matching::path_matches,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PathKind {
    /// Byte-for-byte equality.
    Exact,
    /// Element-wise prefix (also used for ImplementationSpecific).
    Prefix,
    /// A Prefix or ImplementationSpecific path of an Ingress with
    /// `use-regex` or `rewrite-target`: a case-insensitive regular
    /// expression anchored at the start of the path, as ingress-nginx's
    /// `location ~*` is.
    Regex,
}

/// One path of one host: what matching needs inline, the rest in its
/// settings, which all the rules of one Ingress (or of one Gateway API
/// route rule) share.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// For Prefix: without its trailing slash ("/" stays "/").
    pub path: Box<str>,
    pub kind: PathKind,
    pub backend: Arc<Backend>,
    /// The Ingress that defined this rule (the oldest, on conflicts),
    /// shared by all its rules.
    pub ingress: Arc<NamespacedName>,
    /// Plain-HTTP requests get a 308 to HTTPS: the host has TLS and the
    /// Ingress does not say `ssl-redirect: "false"`.
    pub redirect_https: bool,
    /// `PathKind::Regex`: the compiled path.
    pub regex: Option<Arc<regex::Regex>>,
    /// A canary Ingress's backend for the same host and path, and which
    /// requests go to it.
    pub canary: Option<Arc<Canary>>,
    /// Gateway API: the method, headers and query parameters a request
    /// must also have (`HTTPRoute` matches); `None`: host and path decide.
    pub matcher: Option<Arc<super::gateway::RequestMatch>>,
    /// Index of its metric labels in `RoutingTable::route_labels`.
    pub stats: u32,
    /// Tie-break among rules equal in path and match: lower first (Ingress
    /// rules 0, then Gateway API rules, oldest route first).
    pub order: u32,
    /// What the rule's annotations (or Gateway API filters) ask of its
    /// requests.
    pub settings: Arc<RouteSettings>,
}

/// A rule's settings: one field per annotation or ConfigMap key, read in
/// `translate::settings`, applied when a request's plan is made
/// (`proxy::Proxy::route`).
#[derive(Debug, Clone, Default)]
pub struct RouteSettings {
    /// `rewrite-target`: the path the pod is sent instead, `$1`…`$9` the
    /// path's capture groups; the query is kept.
    pub rewrite: Option<Arc<str>>,
    /// The Host header the pod gets (`upstream-vhost`); X-Forwarded-Host
    /// keeps the client's.
    pub upstream_vhost: Option<Arc<str>>,
    /// Sent to the pod as X-Forwarded-Prefix (`x-forwarded-prefix`).
    pub forwarded_prefix: Option<Arc<str>>,
    /// `enable-cors`: preflights are answered, responses get the
    /// Access-Control headers.
    pub cors: Option<Arc<super::annotations::Cors>>,
    /// `affinity: cookie`.
    pub affinity: Option<Arc<super::annotations::Affinity>>,
    /// Every request gets this redirect (`permanent-redirect`,
    /// `temporal-redirect`) instead of being forwarded.
    pub redirect: Option<Arc<super::annotations::Redirect>>,
    /// Requests for `/` get a 302 to this path on the same host (`app-root`).
    pub app_root: Option<Arc<str>>,
    /// Sources allowed by the Ingress's `allowlist-source-range`; `None`: all.
    pub allow: Option<Arc<[Cidr]>>,
    /// Sources refused by the Ingress's `denylist-source-range`, even those
    /// the allow list admits (nginx checks its deny lines first).
    pub deny: Option<Arc<[Cidr]>>,
    /// Largest request body (`proxy-body-size`); `None`: no limit.
    pub body_limit: Option<u64>,
    /// How long the pod may take to send the response head and each read
    /// of the body after (`proxy-read-timeout`); `None`: the agent's
    /// default (60 s, as ingress-nginx).
    pub read_timeout: Option<std::time::Duration>,
    /// How long connecting to a pod may take (`proxy-connect-timeout`);
    /// `None`: the agent's default (5 s, as ingress-nginx).
    pub connect_timeout: Option<std::time::Duration>,
    /// Client certificates the rule's Ingress asks for (`auth-tls-*`).
    pub client_auth: Option<Arc<super::annotations::ClientAuth>>,
    /// `auth-tls-match-cn`: the client certificate's subject (RFC 2253)
    /// must match.
    pub client_cn: Option<Arc<regex::Regex>>,
    /// Users who may use the rule (`auth-type: basic`).
    pub basic_auth: Option<Arc<super::BasicAuth>>,
    /// An auth service asked before each request (`auth-url`).
    pub external_auth: Option<Arc<super::ExternalAuth>>,
    /// How an HTTPS pod is checked (`proxy-ssl-*`); `None`: not verified.
    pub upstream_tls: Option<Arc<super::UpstreamTls>>,
    /// Index into `RoutingTable::limits`: the Ingress's per-source limits.
    pub limit: Option<u32>,
    /// Retries and passive health (`proxy-next-upstream*`,
    /// `upstream-max-fails`, ...); `None`: ingress-nginx's defaults.
    pub upstream_policy: Option<Arc<super::annotations::UpstreamPolicy>>,
    /// `enable-access-log: "false"`: no access log line for its requests.
    pub access_log_off: bool,
    /// Gateway API: weighted backends (`backendRefs`); `backend` is then
    /// the first, for listings.
    pub split: Option<Arc<super::gateway::Split>>,
    /// Gateway API: the rule's filters.
    pub filters: Option<Arc<super::gateway::Filters>>,
    /// Fields of the pod's response set, added or removed (`custom-headers`,
    /// a Gateway API `ResponseHeaderModifier`), on either proxy path.
    pub response_edit: Option<Arc<super::header_rules::HeaderEdit>>,
    /// `custom-http-errors`: which pod statuses the error backend answers
    /// for instead.
    pub error_pages: Option<Arc<ErrorPages>>,
    /// Every header edit of its requests (the ConfigMap's and its own),
    /// set when the table is built; `None`: none.
    pub edits: Option<Arc<super::header_rules::Edits>>,
    /// `upstream-hash-by`: requests with the same key go to the same pod.
    pub hash_by: Option<Arc<super::hashing::HashBy>>,
    /// `load-balance: ewma`: the faster of two endpoints drawn at random.
    pub ewma: bool,
    /// `satisfy: any`: a source the allow and deny lists admit needs no
    /// authentication; any other needs it (instead of 403).
    pub satisfy_any: bool,
    /// `proxy-http-version: "1.0"`: HTTP/1.0 to the pods.
    pub http10: bool,
    /// `proxy-request-buffering: on`: bodies are read whole first, this
    /// many bytes in memory (`client-body-buffer-size`), the rest in a file.
    pub request_buffer: Option<u32>,
    /// `proxy-buffering: on`: the pod's response read ahead of the client,
    /// this many bytes at most (`proxy-buffers-number` × `proxy-buffer-size`).
    pub response_buffer: Option<u32>,
    /// `enable-opentelemetry`: its requests are traced.
    pub otel: Option<Arc<super::otel::OtelRoute>>,
    /// `server-snippet` and `configuration-snippet`, run per request.
    pub snippets: Option<Arc<super::snippet::Snippets>>,
}

/// `canary: "true"` on an Ingress with the same host and path as a main
/// one: some requests go to its backend. A header decides first, then a
/// cookie, then the weight.
#[derive(Debug)]
pub struct Canary {
    pub backend: Arc<Backend>,
    pub ingress: Arc<NamespacedName>,
    /// `canary-by-header`: `always` → canary, `never` → main (or equal to
    /// `canary-by-header-value` → canary); other values fall through.
    pub header: Option<Box<str>>,
    pub header_value: Option<Box<str>>,
    /// `canary-by-header-pattern` (when no value is set): a header value it
    /// matches anywhere → canary; others fall through.
    pub header_pattern: Option<regex::bytes::Regex>,
    /// `canary-by-cookie`: `always` or `never`; other values fall through.
    pub cookie: Option<Box<str>>,
    /// `canary-weight` out of `canary-weight-total` (100).
    pub weight: u32,
    pub total: u32,
    /// Spreads weighted requests evenly (per request, like the balancer).
    pub next: std::sync::atomic::AtomicU32,
}

impl Canary {
    /// Whether this request goes to the canary; `header` and `cookie` look
    /// up the request's header and cookie values.
    pub fn takes<'a>(
        &self,
        header: &dyn Fn(&str) -> Option<&'a [u8]>,
        cookie: &dyn Fn(&str) -> Option<&'a [u8]>,
    ) -> bool {
        if let Some(name) = &self.header
            && let Some(v) = header(name)
        {
            match (&self.header_value, &self.header_pattern) {
                (Some(want), _) if v == want.as_bytes() => return true,
                (Some(_), _) => {}
                (None, Some(pattern)) if pattern.is_match(v) => return true,
                (None, Some(_)) => {}
                (None, None) if v == b"always" => return true,
                (None, None) if v == b"never" => return false,
                (None, None) => {}
            }
        }
        if let Some(name) = &self.cookie
            && let Some(v) = cookie(name)
        {
            match v {
                b"always" => return true,
                b"never" => return false,
                _ => {}
            }
        }
        if self.weight == 0 {
            return false;
        }
        // Request n goes to the canary when n·weight/total crosses a whole
        // number: evenly spread (every 4th at 25 of 100), not in a burst.
        let n =
            u64::from(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.total);
        let (w, t) = (u64::from(self.weight), u64::from(self.total));
        (n + 1) * w / t > n * w / t
    }
}

impl PathRule {
    /// Whether `client` may use this rule.
    pub fn admits(&self, client: std::net::IpAddr) -> bool {
        admits(&self.settings.allow, &self.settings.deny, client)
    }
}

impl PathRule {
    fn matches(&self, path: &str, req: &dyn MatchInput) -> bool {
        let path_ok = match self.kind {
            PathKind::Exact => *self.path == *path,
            PathKind::Prefix => path_matches(&self.path, path),
            PathKind::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        };
        path_ok
            && match &self.matcher {
                Some(m) => m.matches(req),
                // Ingress rules are not served on Gateway ports.
                None => !req.listener().is_some_and(super::gateway::is_gateway_port),
            }
    }

    /// The request target the pod gets under `rewrite-target` (`None`:
    /// unchanged): the target with `$N` replaced by the path's Nth capture
    /// group, then the original query (after `&` if the target has its own).
    pub fn rewritten(&self, path: &str, query: Option<&str>) -> Option<String> {
        let target = self.settings.rewrite.as_deref()?;
        let caps = self.regex.as_ref()?.captures(path)?;
        let mut out = String::with_capacity(target.len() + path.len());
        let mut rest = target;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            match after.bytes().next() {
                Some(d @ b'1'..=b'9') => {
                    if let Some(m) = caps.get(usize::from(d - b'0')) {
                        out.push_str(m.as_str());
                    }
                    rest = &after[1..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        Some(out)
    }
}

/// The rules of one host, longest path first, Exact before Prefix at equal
/// length, so the first match is the one the spec says wins.
#[derive(Debug, Default)]
pub struct HostRules {
    rules: Vec<PathRule>,
    /// Index into `RoutingTable::labels` (metrics label of this host).
    label: u32,
}

impl HostRules {
    pub fn new(mut rules: Vec<PathRule>, label: u32) -> Self {
        let rank = |r: &PathRule| r.matcher.as_ref().map(|m| m.rank()).unwrap_or_default();
        rules.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.kind.cmp(&b.kind))
                .then(a.path.cmp(&b.path))
                // Gateway API: a method, more headers, more query
                // parameters first; then the older route.
                .then(rank(b).cmp(&rank(a)))
                .then(a.order.cmp(&b.order))
        });
        Self { rules, label }
    }

    pub fn find(&self, path: &str, req: &dyn MatchInput) -> Option<&PathRule> {
        self.rules.iter().find(|r| r.matches(path, req))
    }

    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub backend: &'a Arc<Backend>,
    /// `None` when a default backend answered.
    pub rule: Option<&'a PathRule>,
    /// Index into `RoutingTable::labels`.
    pub label: u32,
}

/// Metrics label of requests that matched no host rule (host-less rules,
/// default backends, 404s): client-chosen Host values never become labels.
pub const ANY_HOST_LABEL: &str = "*";

#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Precise hosts.
    pub(super) hosts: HashMap<Box<str>, HostRules>,
    /// `*.parent` rules, keyed by `parent`.
    pub(super) wildcards: HashMap<Box<str>, HostRules>,
    /// Gateway API `*.parent` hostnames, which also match names more than
    /// one label below `parent` (an Ingress wildcard matches one label).
    pub(super) deep_wildcards: HashMap<Box<str>, HostRules>,
    /// Rules without a host.
    pub(super) any_host: HostRules,
    /// The Ingress defaultBackend, else the controller's default backend.
    pub(super) default_backend: Option<Arc<Backend>>,
    /// The settings of the Ingress that set the default backend (its
    /// access rules, limits, timeouts); none for the controller's own.
    pub(super) default_rule: Option<PathRule>,
    /// Metrics label per host; index 0 is `ANY_HOST_LABEL`.
    pub(super) labels: Vec<Box<str>>,
    /// Metric labels, one per distinct (host, Ingress, Service, path) of
    /// the rules (`PathRule::stats`).
    pub(super) route_labels: Vec<RouteLabels>,
    /// Per-source limits, one per Ingress that sets them (see `PathRule::limit`).
    pub(super) limits: Vec<(NamespacedName, RateLimit)>,
    /// `ssl-passthrough` hosts (`*.parent` as written): TLS for them goes
    /// to the pod untouched.
    pub(super) passthrough: HashMap<Box<str>, Arc<Passthrough>>,
    /// Hostnames of Gateway TLS listeners in Passthrough mode (`*.suffix`
    /// for any number of labels, `*` for a listener without one): a name
    /// they cover that no TLSRoute passes through and no certificate
    /// serves is closed during the handshake.
    pub(super) passthrough_claims: Vec<Box<str>>,
    /// The ConfigMap's `add-headers` and `hide-headers`: every response
    /// from a pod.
    pub response_edit: Option<Arc<super::header_rules::HeaderEdit>>,
    /// The ConfigMap's `proxy-set-headers`: every request to a pod.
    pub request_edit: Option<Arc<super::header_rules::HeaderEdit>>,
    /// The ConfigMap's edits alone, for requests no rule took.
    pub edits: Option<Arc<super::header_rules::Edits>>,
    /// Strict-Transport-Security for responses over TLS (`--hsts*` under
    /// the ConfigMap's `hsts*`); `None`: off.
    pub hsts: Option<http::HeaderValue>,
    /// The ConfigMap's `block-user-agents`.
    pub block_user_agents: Option<Arc<super::config::UserAgents>>,
    /// The ConfigMap's `block-cidrs`.
    pub block_cidrs: Arc<[Cidr]>,
    /// `limit-req-status-code` and `limit-conn-status-code`.
    pub limit_req_status: u16,
    pub limit_conn_status: u16,
    /// The ConfigMap's `disable-access-log`.
    pub access_log_off: bool,
    /// The ConfigMap's `skip-access-log-urls`: paths never logged.
    pub skip_access_log_urls: Vec<Box<str>>,
    /// Where traced rules' spans are exported (`otlp-collector-*`,
    /// `otel-*`); `None`: no collector named.
    pub otel: Option<Arc<super::otel::OtelExport>>,
    /// `ssl-protocols`, `ssl-ciphers`, `ssl-session-tickets`; `None`: the
    /// defaults.
    pub tls_policy: Option<Arc<super::tls_policy::TlsPolicy>>,
    /// `server-tokens`: the Server header names our version.
    pub server_tokens: bool,
    /// `upstream-keepalive-connections`, `-timeout`, `-requests` for the
    /// HTTP/1.1 fast path's pod connections.
    pub upstream_keepalive: super::config::Keepalive,
    /// `client-header-timeout`, `keep-alive`, `keep-alive-requests`.
    pub client_keepalive: super::config::ClientKeepalive,
    /// `client-body-timeout`, for bodies read whole first; `None`: 60 s.
    pub client_body_timeout: Option<std::time::Duration>,
    /// Gateway listener ports other than 80 and 443 the agent opens, and
    /// whether each speaks HTTPS; index `i` is listener bit
    /// `1 << (FIRST_PORT_BIT + i)`.
    pub gateway_ports: Vec<GatewayPort>,
    /// The TCP and UDP services exposed by port (`--tcp-services-configmap`,
    /// `--udp-services-configmap`).
    pub l4: super::l4::L4Table,
}

/// A port a Gateway listener opens beside the agent's HTTP and HTTPS ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct GatewayPort {
    pub port: u16,
    pub tls: bool,
}

/// What ingress-nginx's request metrics are labelled with: the route's
/// host (the routing table's host label), its Ingress (or Gateway API
/// route) and Service, and the rule's path; only the host for requests no
/// rule took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteLabels {
    pub host: Box<str>,
    pub namespace: Box<str>,
    pub ingress: Box<str>,
    pub service: Box<str>,
    pub path: Box<str>,
}

/// `custom-http-errors`: a pod answering one of `codes` is not passed on;
/// `backend` (the Ingress's `default-backend`, else
/// `--default-backend-service`) is asked instead, with ingress-nginx's
/// X-Code and kin, and its answer is the client's.
#[derive(Debug)]
pub struct ErrorPages {
    pub codes: Arc<[u16]>,
    pub backend: Arc<Backend>,
}

/// A host whose TLS connections go to a pod as they are (`ssl-passthrough`):
/// the agent reads the SNI, never terminates.
#[derive(Debug)]
pub struct Passthrough {
    /// A Gateway API name: its wildcard matches any number of labels (an
    /// Ingress's one).
    pub gateway: bool,
    pub backend: Arc<Backend>,
    /// A TLSRoute's weighted backends (then `backend` is the first).
    pub split: Option<Arc<super::gateway::Split>>,
    pub ingress: Arc<NamespacedName>,
    pub allow: Option<Arc<[Cidr]>>,
    pub deny: Option<Arc<[Cidr]>>,
}

impl Passthrough {
    /// Whether `client` may connect (the Ingress's source lists; nothing
    /// else of it can apply to bytes the agent does not decrypt).
    pub fn admits(&self, client: std::net::IpAddr) -> bool {
        admits(&self.allow, &self.deny, client)
    }
}

fn admits(
    allow: &Option<Arc<[Cidr]>>,
    deny: &Option<Arc<[Cidr]>>,
    client: std::net::IpAddr,
) -> bool {
    let listed = |list: &Option<Arc<[Cidr]>>| {
        list.as_ref()
            .map(|list| list.iter().any(|c| c.contains(client)))
    };
    listed(deny) != Some(true) && listed(allow) != Some(false)
}

impl RoutingTable {
    /// The listener bit of a connection to local `port` (`tls` on the
    /// agent's HTTPS listener or an HTTPS Gateway port).
    pub fn listener_bit(&self, port: u16, tls: bool) -> u64 {
        match self.gateway_ports.iter().position(|p| p.port == port) {
            Some(i) => 1 << (super::gateway::FIRST_PORT_BIT + i as u32),
            None if tls => super::gateway::ON_HTTPS,
            None => super::gateway::ON_HTTP,
        }
    }

    /// Routes a normalised host and a path (never the query): precise host,
    /// then wildcard, then host-less rules, then the default backend.
    pub fn route<'a>(&'a self, host: Option<&str>, path: &str) -> Option<Route<'a>> {
        self.route_request(host, path, &NoRequest)
    }

    /// [`Self::route`] for a request whose method, headers and query the
    /// Gateway API's matches may look at.
    pub fn route_request<'a>(
        &'a self,
        host: Option<&str>,
        path: &str,
        req: &dyn MatchInput,
    ) -> Option<Route<'a>> {
        let found = host
            .and_then(|h| {
                let exact = self
                    .hosts
                    .get(h)
                    .and_then(|r| Some((r.find(path, req)?, r.label)));
                exact.or_else(|| {
                    let (_, parent) = h.split_once('.')?;
                    if let Some(found) = self
                        .wildcards
                        .get(parent)
                        .and_then(|rules| Some((rules.find(path, req)?, rules.label)))
                    {
                        return Some(found);
                    }
                    // Deeper Gateway API wildcards, the most specific first.
                    let mut rest = parent;
                    while !self.deep_wildcards.is_empty() {
                        let (_, up) = rest.split_once('.')?;
                        if let Some(found) = self
                            .deep_wildcards
                            .get(up)
                            .and_then(|rules| Some((rules.find(path, req)?, rules.label)))
                        {
                            return Some(found);
                        }
                        rest = up;
                    }
                    None
                })
            })
            .or_else(|| Some((self.any_host.find(path, req)?, 0)));
        match found {
            Some((rule, label)) => Some(Route {
                backend: &rule.backend,
                rule: Some(rule),
                label,
            }),
            // Gateway ports serve their routes only.
            None if req.listener().is_some_and(super::gateway::is_gateway_port) => None,
            None => self.default_backend.as_ref().map(|backend| Route {
                backend,
                rule: self.default_rule.as_ref(),
                label: 0,
            }),
        }
    }

    /// The pass-through of a TLS server name (normalized): exact, then the
    /// wildcard of its parent.
    pub fn passthrough(&self, sni: &str) -> Option<&Arc<Passthrough>> {
        if let Some(p) = self.passthrough.get(sni) {
            return Some(p);
        }
        // `*.parent`, then (Gateway API names only) each shorter suffix:
        // the most specific wildcard first.
        let mut rest = sni;
        let mut first = true;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(p) = self.passthrough.get(format!("*.{parent}").as_str())
                && (first || p.gateway)
            {
                return Some(p);
            }
            first = false;
            rest = parent;
        }
        None
    }

    /// Whether a Gateway TLS listener in Passthrough mode covers `sni`
    /// (lowercased): then, with no TLSRoute for it, the connection is
    /// closed unless a certificate serves the name.
    pub fn passthrough_claimed(&self, sni: &str) -> bool {
        self.passthrough_claims
            .iter()
            .any(|claim| match claim.strip_prefix("*") {
                Some("") => true,
                Some(suffix) => sni.len() > suffix.len() && sni.ends_with(suffix),
                None => **claim == *sni,
            })
    }

    /// Whether any host is passed through (then the HTTPS listener reads
    /// each ClientHello's SNI before the handshake).
    pub fn has_passthrough(&self) -> bool {
        !self.passthrough.is_empty() || !self.passthrough_claims.is_empty()
    }

    /// Whether some request to any host name is served (host-less rules or
    /// a default backend): then no host is "unknown" for strict mode.
    pub fn serves_any_host(&self) -> bool {
        !self.any_host.rules().is_empty() || self.default_backend.is_some()
    }

    /// The XDP policy of each host with rules: `(name, allow list)`, where a
    /// host has an allow list only if every one of its rules has one (their
    /// union); else the L7 path enforces the per-rule lists.
    pub fn host_policies(&self) -> Vec<(String, Option<Vec<Cidr>>)> {
        let policy = |rules: &HostRules| -> Option<Vec<Cidr>> {
            let mut union = Vec::new();
            for r in rules.rules() {
                // `satisfy: any`: other sources may still authenticate,
                // so XDP must let them through.
                if r.settings.satisfy_any {
                    return None;
                }
                union.extend(r.settings.allow.as_ref()?.iter().copied());
            }
            union.sort();
            union.dedup();
            Some(union)
        };
        let mut out: Vec<_> = self
            .hosts
            .iter()
            .map(|(h, r)| (h.to_string(), policy(r)))
            .chain(
                self.wildcards
                    .iter()
                    .map(|(p, r)| (format!("*.{p}"), policy(r))),
            )
            .collect();
        out.sort();
        out
    }

    /// Per-source limits by index (see `PathRule::limit`).
    pub fn limits(&self) -> &[(NamespacedName, RateLimit)] {
        &self.limits
    }

    /// Metrics labels by index (see `Route::label`).
    /// The metric labels of each host label (in label order), then of the
    /// rules (by `PathRule::stats`, offset by the number of host labels).
    pub fn metric_labels(&self) -> Vec<RouteLabels> {
        self.labels
            .iter()
            .map(|h| RouteLabels {
                host: h.clone(),
                ..RouteLabels::default()
            })
            .chain(self.route_labels.iter().cloned())
            .collect()
    }

    pub fn labels(&self) -> &[Box<str>] {
        &self.labels
    }

    /// Every host name with rules (wildcards as `*.parent`), for the data plane and `check`.
    pub fn host_names(&self) -> impl Iterator<Item = String> + '_ {
        self.hosts
            .keys()
            .map(|h| h.to_string())
            .chain(self.wildcards.keys().map(|p| format!("*.{p}")))
    }

    /// A flat, sorted listing of the table for `xingress check` and logs.
    pub fn rows(&self) -> Vec<RouteRow> {
        let mut rows = Vec::new();
        let mut push = |host: String, rules: &HostRules| {
            for r in rules.rules() {
                rows.push(RouteRow {
                    host: host.clone(),
                    path: r.path.to_string(),
                    kind: r.kind,
                    backend: r.backend.describe(),
                    ready_endpoints: r.backend.ready_endpoints(),
                    ingress: r.ingress.to_string(),
                });
            }
        };
        for (h, rules) in &self.hosts {
            push(h.to_string(), rules);
        }
        for (p, rules) in &self.wildcards {
            push(format!("*.{p}"), rules);
        }
        push("*".into(), &self.any_host);
        rows.sort_by(|a, b| a.host.cmp(&b.host).then(b.path.len().cmp(&a.path.len())));
        if let Some(b) = &self.default_backend {
            rows.push(RouteRow {
                host: "(default backend)".into(),
                path: String::new(),
                kind: PathKind::Prefix,
                backend: b.describe(),
                ready_endpoints: b.ready_endpoints(),
                ingress: String::new(),
            });
        }
        rows
    }
}

/// One line of the route table as `xingress check` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteRow {
    pub host: String,
    pub path: String,
    pub kind: PathKind,
    pub backend: String,
    pub ready_endpoints: usize,
    pub ingress: String,
}

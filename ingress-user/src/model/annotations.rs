//! Ingress annotations: `xingress.dev/NAME`, or the ingress-nginx
//! `nginx.ingress.kubernetes.io/NAME` equivalent so users can switch without
//! rewriting their Ingresses. Ours wins when both are set.

use k8s_openapi::api::networking::v1::Ingress;

pub const PREFIX: &str = "xingress.dev/";
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

pub fn get<'a>(ing: &'a Ingress, name: &str) -> Option<&'a str> {
    // A scan instead of two formatted keys: annotation maps are small, and
    // this runs for every path of every Ingress.
    let mut nginx = None;
    for (k, v) in ing.metadata.annotations.as_ref()? {
        if k.strip_prefix(PREFIX) == Some(name) {
            return Some(v.trim());
        }
        if nginx.is_none() && k.strip_prefix(NGINX_PREFIX) == Some(name) {
            nginx = Some(v.trim());
        }
    }
    nginx
}

// The annotations xingress implements are the table of
// `super::annotation_table`, which the reference page is generated from.

/// ingress-nginx annotations that restrict who may use an Ingress and that
/// xingress does not implement: none today (`auth-type` other than basic,
/// and settings that cannot be applied, are refused where they are read).
/// Serving such an Ingress without them would open what its author closed,
/// so its paths answer 503 instead, as ingress-nginx denies a location
/// whose auth annotation it cannot apply.
pub const UNENFORCED_ACCESS: &[&str] = &[];

/// The names (without prefix) of the Ingress's annotations under either
/// prefix, sorted, each once.
pub fn prefixed_names(ing: &Ingress) -> Vec<&str> {
    let mut names: Vec<&str> = ing
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix(PREFIX)
                .or_else(|| k.strip_prefix(NGINX_PREFIX))
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether annotation `name` is set to `value` (case-insensitive), as
/// `"true"` / `"false"` flags are.
pub fn is(ing: &Ingress, name: &str, value: &str) -> bool {
    get(ing, name).is_some_and(|v| v.eq_ignore_ascii_case(value))
}

/// Request body limit when an Ingress sets no `proxy-body-size` (ingress-nginx's default).
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

/// `custom-http-errors`: status codes 400 to 599, comma-separated.
pub fn status_codes(v: &str) -> Result<Vec<u16>, String> {
    let mut codes = Vec::new();
    for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match c.parse::<u16>() {
            Ok(n) if (400..=599).contains(&n) => codes.push(n),
            _ => {
                return Err(format!(
                    "{c:?} is not an error status (400 to 599); none applies"
                ));
            }
        }
    }
    codes.sort_unstable();
    codes.dedup();
    Ok(codes)
}

/// An nginx size: bytes, or a number with k, m or g (powers of 1024).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        'b' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Per-source limits of one Ingress, from ingress-nginx's `limit-*`
/// annotations. All rules of the Ingress share one set of counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests in flight at once per source (`limit-connections`; nginx's
    /// `limit_conn` also counts requests in progress, each HTTP/2 stream
    /// separately).
    pub connections: Option<u32>,
    /// Requests per second per source (`limit-rps`).
    pub rps: Option<u32>,
    /// Requests per minute per source (`limit-rpm`).
    pub rpm: Option<u32>,
    /// A source may burst to rate × this before it is limited
    /// (`limit-burst-multiplier`, default 5 as ingress-nginx).
    pub burst_multiplier: u32,
    /// Sources the limits do not apply to (`limit-allowlist`, older name
    /// `limit-whitelist`).
    pub exempt: std::sync::Arc<[super::Cidr]>,
}

/// What the proxy answers itself instead of forwarding, from
/// `permanent-redirect` / `temporal-redirect` (every request of the
/// Ingress) or `app-root` (requests for `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// 3xx.
    pub code: u16,
    /// An absolute http(s) URL; with `to_host`, a host name the request
    /// goes to as it is (`$scheme://HOST$request_uri`).
    pub location: Box<str>,
    /// `from-to-www-redirect`: `location` is a host.
    pub to_host: bool,
}

/// `enable-cors` and its `cors-*` settings (ingress-nginx's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    /// `cors-allow-origin`: empty means `*`.
    pub origins: Vec<CorsOrigin>,
    pub methods: Box<str>,
    pub headers: Box<str>,
    pub expose: Option<Box<str>>,
    pub credentials: bool,
    pub max_age: u32,
}

/// One entry of `cors-allow-origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigin {
    /// `scheme://host[:port]`, lowercase.
    Exact(Box<str>),
    /// `scheme://*.parent[:port]`: one more label in front of `parent`;
    /// `prefix` is `scheme://`, `suffix` is `.parent[:port]`.
    Wildcard { prefix: Box<str>, suffix: Box<str> },
}

pub const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const CORS_MAX_AGE: u32 = 1_728_000;

impl Cors {
    /// Whether a request's `Origin` may have the response.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.is_empty()
            || self.origins.iter().any(|o| match o {
                CorsOrigin::Exact(e) => e.eq_ignore_ascii_case(origin),
                CorsOrigin::Wildcard { prefix, suffix } => {
                    let lower = origin.to_ascii_lowercase();
                    lower
                        .strip_prefix(&**prefix)
                        .and_then(|rest| rest.strip_suffix(&**suffix))
                        .is_some_and(|label| {
                            !label.is_empty()
                                && label
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        })
                }
            })
    }
}

/// One `cors-allow-origin` entry, or why it is not one.
pub fn cors_origin(entry: &str) -> Result<CorsOrigin, String> {
    let lower = entry.to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| format!("{entry:?} is not http(s)://host[:port]"))?;
    let host = rest.split(':').next().unwrap_or_default();
    let port_ok = rest
        .split_once(':')
        .is_none_or(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let (wild, name) = match host.strip_prefix("*.") {
        Some(parent) => (true, parent),
        None => (false, host),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !port_ok || !name_ok {
        return Err(format!("{entry:?} is not http(s)://host[:port]"));
    }
    Ok(if wild {
        CorsOrigin::Wildcard {
            prefix: format!("{scheme}://").into(),
            suffix: rest[1..].into(),
        }
    } else {
        CorsOrigin::Exact(lower.into())
    })
}

/// `affinity: cookie`: a client's requests stick to the endpoint its
/// cookie names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    /// `session-cookie-name`, default `INGRESSCOOKIE`.
    pub name: Box<str>,
    /// The rest of the Set-Cookie header after `NAME=VALUE`:
    /// `; Path=…; Max-Age=…; SameSite=…; Secure; HttpOnly`.
    pub attributes: Box<str>,
}

/// Client certificates an Ingress asks for (`auth-tls-*`): verified against
/// the CA in `ca.crt` of a Secret of the Ingress's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientAuth {
    /// The Secret holding `ca.crt` (`auth-tls-secret`).
    pub secret: super::NamespacedName,
    pub verify: ClientVerify,
    /// Longest chain from the client certificate to a CA certificate
    /// (`auth-tls-verify-depth`, default 1: signed by the CA itself).
    pub depth: u8,
    /// Send the client certificate to the pod, URL-encoded PEM in
    /// `ssl-client-cert` (`auth-tls-pass-certificate-to-upstream`).
    pub pass_certificate: bool,
}

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientVerify {
    /// A certificate the CA signed is required: 400 without one.
    On,
    /// Verified when sent; requests without one pass.
    Optional,
    /// Asked for and passed on, not verified (the pod decides).
    OptionalNoCa,
}

/// How the agent checks an HTTPS pod (`proxy-ssl-*`): the CA that must
/// have signed its certificate, the name it must carry, and the client
/// certificate the agent shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The Secret the CA (`ca.crt`) and client pair came from.
    pub secret: super::NamespacedName,
    /// `ca.crt`, PEM; `None`: the pod's certificate is not verified
    /// (`proxy-ssl-verify: off`), only the client certificate is shown.
    pub ca_pem: Option<Vec<u8>>,
    /// `tls.crt` and `tls.key` of the Secret, PEM, when both are there.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// `proxy-ssl-name`; `None`: `SERVICE.NAMESPACE.svc` of the backend.
    pub name: Option<String>,
    /// `proxy-ssl-server-name: on`: the name is sent as SNI too.
    pub sni: bool,
    /// `proxy-ssl-verify-depth` (1: signed by the CA itself).
    pub depth: u8,
}

/// Hashes what tells settings apart cheaply (Secret, name, flags, PEM
/// lengths) but not the PEM bytes: the proxy looks its client up by these
/// settings on every request, and equality still compares everything.
impl std::hash::Hash for UpstreamTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.secret.hash(state);
        self.name.hash(state);
        (self.sni, self.depth).hash(state);
        self.ca_pem.as_ref().map(Vec::len).hash(state);
        self.client_pem
            .as_ref()
            .map(|(c, k)| (c.len(), k.len()))
            .hash(state);
    }
}

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// How the proxy talks to a backend (`backend-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum BackendProtocol {
    /// HTTP/1.1 over TCP.
    #[default]
    Http,
    /// HTTP/1.1 over TLS (the pod's certificate is not verified, as ingress-nginx does by default).
    Https,
    /// HTTP/2 with prior knowledge over TCP (GRPC, H2C).
    H2c,
    /// HTTP/2 over TLS (GRPCS).
    H2Tls,
}

impl BackendProtocol {
    pub fn parse(v: &str) -> Option<Self> {
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => Some(Self::Http),
            "HTTPS" => Some(Self::Https),
            "GRPC" | "H2C" => Some(Self::H2c),
            "GRPCS" => Some(Self::H2Tls),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::H2c => "H2C",
            Self::H2Tls => "GRPCS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn nginx_sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("8k"), Some(8 << 10));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size(" 1g "), Some(1 << 30));
        for bad in ["", "m", "1.5m", "-1", "10x", "1mb", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}

/// When a request goes to another endpoint, and when an endpoint is
/// skipped: `proxy-next-upstream*`, `upstream-max-fails`,
/// `upstream-fail-timeout`, `proxy-send-timeout` (ingress-nginx's names,
/// defaults and meanings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// `proxy-next-upstream`: the cases ([`NEXT_ERROR`], ...) that send a
    /// request on to the next endpoint; 0 is `off`.
    pub next_upstream: u16,
    /// `proxy-next-upstream-tries`: endpoints tried at most, the first
    /// included; 0: every endpoint.
    pub tries: u32,
    /// `proxy-next-upstream-timeout`: no new try after this much time.
    pub next_timeout: Option<std::time::Duration>,
    /// `upstream-max-fails`: failures within `fail_timeout` that get an
    /// endpoint skipped for `fail_timeout`; 0: never.
    pub max_fails: u32,
    pub fail_timeout: std::time::Duration,
    /// `proxy-send-timeout`: how long one write of the request to the pod
    /// may wait.
    pub send_timeout: std::time::Duration,
}

pub const NEXT_ERROR: u16 = 1;
pub const NEXT_TIMEOUT: u16 = 1 << 1;
pub const NEXT_INVALID_HEADER: u16 = 1 << 2;
pub const NEXT_HTTP_500: u16 = 1 << 3;
pub const NEXT_HTTP_502: u16 = 1 << 4;
pub const NEXT_HTTP_503: u16 = 1 << 5;
pub const NEXT_HTTP_504: u16 = 1 << 6;
pub const NEXT_HTTP_403: u16 = 1 << 7;
pub const NEXT_HTTP_404: u16 = 1 << 8;
pub const NEXT_HTTP_429: u16 = 1 << 9;
pub const NEXT_NON_IDEMPOTENT: u16 = 1 << 10;

/// `proxy-next-upstream`'s words.
pub const NEXT_UPSTREAM_WORDS: [(&str, u16); 11] = [
    ("error", NEXT_ERROR),
    ("timeout", NEXT_TIMEOUT),
    ("invalid_header", NEXT_INVALID_HEADER),
    ("http_500", NEXT_HTTP_500),
    ("http_502", NEXT_HTTP_502),
    ("http_503", NEXT_HTTP_503),
    ("http_504", NEXT_HTTP_504),
    ("http_403", NEXT_HTTP_403),
    ("http_404", NEXT_HTTP_404),
    ("http_429", NEXT_HTTP_429),
    ("non_idempotent", NEXT_NON_IDEMPOTENT),
];

/// ingress-nginx's defaults: `error timeout`, 3 tries, no time limit;
/// nginx's `max_fails=1 fail_timeout=10s`; 60 s send timeout.
pub const DEFAULT_UPSTREAM_POLICY: UpstreamPolicy = UpstreamPolicy {
    next_upstream: NEXT_ERROR | NEXT_TIMEOUT,
    tries: 3,
    next_timeout: None,
    max_fails: 1,
    fail_timeout: std::time::Duration::from_secs(10),
    send_timeout: std::time::Duration::from_secs(60),
};

impl Default for UpstreamPolicy {
    fn default() -> Self {
        DEFAULT_UPSTREAM_POLICY
    }
}

impl UpstreamPolicy {
    pub fn retries_on(&self, case: u16) -> bool {
        self.next_upstream & case != 0
    }

    /// The `proxy-next-upstream` case of a response status, if it is one.
    pub fn status_case(status: u16) -> Option<u16> {
        Some(match status {
            500 => NEXT_HTTP_500,
            502 => NEXT_HTTP_502,
            503 => NEXT_HTTP_503,
            504 => NEXT_HTTP_504,
            403 => NEXT_HTTP_403,
            404 => NEXT_HTTP_404,
            429 => NEXT_HTTP_429,
            _ => return None,
        })
    }

    /// Whether a response with `status` goes on to the next endpoint, and
    /// whether it counts as the endpoint's failure (nginx: 403, 404 and 429
    /// never do).
    pub fn on_status(&self, status: u16) -> (bool, bool) {
        match Self::status_case(status) {
            Some(case) if self.retries_on(case) => (true, status >= 500),
            _ => (false, false),
        }
    }

    /// The keys of this policy, the same as annotations and as ConfigMap
    /// keys.
    pub const KEYS: [&'static str; 6] = [
        "proxy-next-upstream",
        "proxy-next-upstream-tries",
        "proxy-next-upstream-timeout",
        "upstream-max-fails",
        "upstream-fail-timeout",
        "proxy-send-timeout",
    ];

    /// Sets one of [`Self::KEYS`] from its text; on an error nothing
    /// changes and the message says why (`is ...`: the caller names the
    /// key and the value).
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        let v = v.trim();
        // Whole numbers, 0 allowed (no limit / off for these).
        let count = || {
            v.parse::<u32>()
                .map_err(|_| "is not a whole number; the default stays".to_string())
        };
        let seconds = || match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n.into())),
            _ => Err("is not a positive whole number of seconds; the default stays".to_string()),
        };
        match key {
            "proxy-next-upstream" => {
                self.next_upstream = Self::parse_next_upstream(v)
                    .map_err(|e| format!("is refused: {e}; \"error timeout\" stays"))?;
            }
            "proxy-next-upstream-tries" => self.tries = count()?,
            "proxy-next-upstream-timeout" => {
                let n = count()?;
                self.next_timeout = (n > 0).then(|| std::time::Duration::from_secs(n.into()));
            }
            "upstream-max-fails" => self.max_fails = count()?,
            "upstream-fail-timeout" => self.fail_timeout = seconds()?,
            "proxy-send-timeout" => self.send_timeout = seconds()?,
            other => return Err(format!("{other} is not an upstream policy key")),
        }
        Ok(())
    }

    /// Parses `proxy-next-upstream` (words separated by spaces).
    pub fn parse_next_upstream(v: &str) -> Result<u16, String> {
        let mut on = 0;
        for word in v.split_ascii_whitespace() {
            if word == "off" {
                return Ok(0);
            }
            match NEXT_UPSTREAM_WORDS.iter().find(|(w, _)| *w == word) {
                Some((_, bit)) => on |= bit,
                None => return Err(format!("{word:?} is not a proxy-next-upstream case")),
            }
        }
        if on == 0 {
            return Err("no case given".into());
        }
        Ok(on)
    }
}

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

/// The annotations xingress implements, under either prefix.
pub const SUPPORTED: &[&str] = &[
    "affinity",
    "affinity-mode",
    "allowlist-source-range",
    "app-root",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-method",
    "auth-realm",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-tls-match-cn",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-type",
    "auth-url",
    "backend-protocol",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "cors-allow-credentials",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "cors-max-age",
    "denylist-source-range",
    "enable-cors",
    "force-ssl-redirect",
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "permanent-redirect",
    "permanent-redirect-code",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-ssl-name",
    "proxy-ssl-secret",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "server-alias",
    "rewrite-target",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "ssl-passthrough",
    "ssl-redirect",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-vhost",
    "use-regex",
    "x-forwarded-prefix",
    "whitelist-source-range",
];

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
    /// An absolute http(s) URL, or for `app-root` a path on the same host.
    pub location: Box<str>,
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

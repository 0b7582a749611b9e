//! The controller ConfigMap (`--configmap NS/NAME`): ingress-nginx's
//! controller-wide keys, with its names, meanings and defaults. A bad value
//! is a warning naming the key (its default stays, the other keys apply);
//! a key of ingress-nginx's that xingress does not implement is listed as
//! ignored, never silently dropped.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::Serialize;

use http::HeaderName;

use super::{
    NamespacedName,
    annotations::{self, UpstreamPolicy},
    header_rules::{self, HeaderEdit},
};

/// `Strict-Transport-Security` on responses over TLS: the flags'
/// `--hsts*` (ingress-nginx's defaults), which the ConfigMap's `hsts*`
/// keys override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hsts {
    pub on: bool,
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Self {
            on: true,
            max_age: 31_536_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

impl Hsts {
    /// The header's value; `None` when off.
    pub fn header(&self) -> Option<http::HeaderValue> {
        if !self.on {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        http::HeaderValue::from_str(&v).ok()
    }
}

/// The ConfigMap's `hsts*` keys, each `None` when not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HstsKeys {
    pub on: Option<bool>,
    pub max_age: Option<u64>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<bool>,
}

impl HstsKeys {
    /// `flags` with the keys set here over them.
    pub fn over(&self, flags: Hsts) -> Hsts {
        Hsts {
            on: self.on.unwrap_or(flags.on),
            max_age: self.max_age.unwrap_or(flags.max_age),
            include_subdomains: self.include_subdomains.unwrap_or(flags.include_subdomains),
            preload: self.preload.unwrap_or(flags.preload),
        }
    }
}

/// The ConfigMap's client-address keys, each `None` when not set (the
/// flag of the same name stays).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientAddressKeys {
    pub use_proxy_protocol: Option<bool>,
    pub use_forwarded_headers: Option<bool>,
    pub compute_full_forwarded_for: Option<bool>,
    pub proxy_real_ip_cidr: Option<Vec<super::Cidr>>,
    /// `generate-request-id` (true).
    pub generate_request_id: Option<bool>,
    /// `forwarded-for-header` (X-Forwarded-For).
    pub forwarded_for_header: Option<HeaderName>,
    /// `enable-real-ip` (false).
    pub enable_real_ip: Option<bool>,
}

/// What the ConfigMap says, as the translate uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerConfig {
    /// `proxy-body-size` for rules without the annotation (1m; `None`: no limit).
    pub body_limit: Option<u64>,
    /// `proxy-read-timeout` / `proxy-connect-timeout` for rules without
    /// the annotation; `None`: the agent's defaults (60 s, 5 s).
    pub read_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    /// `proxy-next-upstream*`, `proxy-send-timeout` for rules without
    /// their annotations; `None`: ingress-nginx's defaults.
    pub upstream_policy: Option<Arc<UpstreamPolicy>>,
    /// `ssl-redirect` (true) and `force-ssl-redirect` (false).
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    /// `disable-access-log`.
    pub access_log_off: bool,
    /// `skip-access-log-urls`: paths whose requests are not logged.
    pub skip_access_log_urls: Vec<Box<str>>,
    /// `log-format-upstream` (with `log-format-escape-json`); `None`: the
    /// agent's `--access-log` format.
    pub log_template: Option<Arc<LogTemplate>>,
    /// `add-headers` (set) and `hide-headers` (removed): every response
    /// from a pod.
    pub response_edit: Option<Arc<HeaderEdit>>,
    /// `proxy-set-headers`: every request to a pod.
    pub request_edit: Option<Arc<HeaderEdit>>,
    /// `custom-http-errors`: pod statuses the error backend answers for.
    pub custom_http_errors: Arc<[u16]>,
    /// `global-allowed-response-headers`: the fields the `custom-headers`
    /// annotation may set.
    pub allowed_response_headers: Vec<HeaderName>,
    /// `access-log-path`; `None`: stdout.
    pub access_log_path: Option<std::path::PathBuf>,
    /// `hsts`, `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload`.
    pub hsts: HstsKeys,
    /// `use-proxy-protocol`, `use-forwarded-headers`,
    /// `compute-full-forwarded-for`, `proxy-real-ip-cidr`.
    pub client_address: ClientAddressKeys,
    /// `block-user-agents`: requests whose User-Agent matches get 403.
    pub block_user_agents: Option<Arc<UserAgents>>,
    /// `limit-req-status-code` and `limit-conn-status-code` (503).
    pub limit_req_status: u16,
    pub limit_conn_status: u16,
    /// `load-balance: ewma` (else `round_robin`).
    pub ewma: bool,
    /// `block-cidrs`: sources refused everywhere (403; dropped by XDP).
    pub block_cidrs: Vec<super::Cidr>,
    /// `allow-snippet-annotations` (false).
    pub allow_snippets: bool,
    /// `proxy-request-buffering` (off: bodies stream) and
    /// `client-body-buffer-size` (8k).
    pub request_buffering: bool,
    pub client_body_buffer: u32,
    /// `proxy-buffering` (off), `proxy-buffer-size` (4k) and
    /// `proxy-buffers-number` (4).
    pub response_buffering: bool,
    pub proxy_buffer_size: u32,
    pub proxy_buffers: u32,
    /// The tracing keys.
    pub otel: super::otel::OtelKeys,
    /// `ssl-protocols`, `ssl-ciphers`, `ssl-session-tickets`.
    pub tls: super::tls_policy::TlsPolicy,
    /// `server-tokens` (false).
    pub server_tokens: bool,
    /// `client-body-timeout` (60 s).
    pub client_body_timeout: Duration,
    /// `upstream-keepalive-*`.
    pub upstream_keepalive: Keepalive,
    /// `client-header-timeout`, `keep-alive`, `keep-alive-requests`.
    pub client_keepalive: ClientKeepalive,
    /// `proxy-stream-*`: the TCP and UDP services' relay.
    pub stream: super::l4::StreamSettings,
}

/// The ConfigMap's `upstream-keepalive-*` for one take or put; `None`s
/// keep the agent's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// Idle connections kept per endpoint (0: none).
    pub connections: Option<usize>,
    pub timeout: Option<std::time::Duration>,
    /// Requests a connection carries before it is closed.
    pub requests: Option<u32>,
}

/// The ConfigMap's client connection keys; `None`s keep the flags'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientKeepalive {
    pub header_timeout: Option<Duration>,
    pub keep_alive: Option<Duration>,
    pub requests: Option<u32>,
    /// `large-client-header-buffers` (`NUMBER SIZE`): the largest head,
    /// NUMBER × SIZE bytes.
    pub header_bytes: Option<usize>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            body_limit: Some(annotations::DEFAULT_BODY_LIMIT),
            read_timeout: None,
            connect_timeout: None,
            upstream_policy: None,
            ssl_redirect: true,
            force_ssl_redirect: false,
            access_log_off: false,
            skip_access_log_urls: Vec::new(),
            log_template: None,
            response_edit: None,
            request_edit: None,
            custom_http_errors: Arc::new([]),
            allowed_response_headers: Vec::new(),
            access_log_path: None,
            hsts: HstsKeys::default(),
            client_address: ClientAddressKeys::default(),
            block_user_agents: None,
            limit_req_status: 503,
            limit_conn_status: 503,
            ewma: false,
            block_cidrs: Vec::new(),
            allow_snippets: false,
            request_buffering: false,
            client_body_buffer: 8 * 1024,
            response_buffering: false,
            proxy_buffer_size: 4 * 1024,
            proxy_buffers: 4,
            otel: super::otel::OtelKeys::default(),
            tls: super::tls_policy::TlsPolicy::default(),
            server_tokens: false,
            client_body_timeout: Duration::from_secs(60),
            upstream_keepalive: Keepalive::default(),
            client_keepalive: ClientKeepalive::default(),
            stream: super::l4::StreamSettings::default(),
        }
    }
}

/// What became of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    pub key: String,
    /// `applied`, `invalid` (the default stays) or `ignored`.
    pub status: &'static str,
    /// Why, for `invalid` and `ignored`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One key xingress applies from the ConfigMap, as `docs/reference/configmap.md`
/// lists it (`cargo xtask docs` renders this table).
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub values: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
    /// A valid value (tests apply each key with it).
    pub example: &'static str,
}

const fn key(
    name: &'static str,
    values: &'static str,
    default: &'static str,
    meaning: &'static str,
    example: &'static str,
) -> ConfigKey {
    ConfigKey {
        name,
        values,
        default,
        meaning,
        example,
    }
}

/// The keys xingress applies from the ConfigMap, sorted by name. Each
/// applies to every Ingress that does not set the annotation of the same name.
pub const KEYS: &[ConfigKey] = &[
    key(
        "access-log-path",
        "an absolute file path, or /dev/stdout, /dev/stderr",
        "/dev/stdout",
        "Where the access log goes; a file is appended to (created if missing) and reopened when the key changes. One that cannot be opened is an error naming it, and the log stays where it was.",
        "/var/log/xingress/access.log",
    ),
    key(
        "add-headers",
        "NAMESPACE/NAME of a ConfigMap",
        "-",
        "Each key of that ConfigMap is a field set on every response from a pod, replacing the pod's of that name (nginx's `more_set_headers`). Framing and hop-by-hop names are refused.",
        "ingress-nginx/custom-headers",
    ),
    key(
        "allow-snippet-annotations",
        "\"true\" | \"false\"",
        "false",
        "Carries out the `configuration-snippet`, `server-snippet` and `auth-snippet` annotations: only a closed set of nginx directives (header edits, `return`, `rewrite`, `set`, `if`); a snippet with anything else is refused and its Ingress's paths answer 503. False: snippets are ignored, each with an error naming it.",
        "true",
    ),
    key(
        "block-cidrs",
        "addresses or CIDRs, comma-separated",
        "-",
        "Sources refused on every host: 403 from the proxy (the client address as found, PROXY protocol and trusted X-Forwarded-For included), and with XDP attached their packets dropped on the NIC (by the packet's source address).",
        "192.0.2.0/24,2001:db8::/32",
    ),
    key(
        "block-user-agents",
        "User-Agent patterns, comma-separated: exact strings, or nginx's `~` (regular expression) and `~*` (case-insensitive)",
        "-",
        "Requests whose User-Agent matches one get 403, before routing.",
        "~*bot,BadCrawler/1.0",
    ),
    key(
        "client-body-buffer-size",
        "size (8k, 64k, 1m)",
        "8k",
        "With `proxy-request-buffering: on`: how much of a request body is kept in memory; the rest goes to a temporary file (up to `proxy-body-size`).",
        "16k",
    ),
    key(
        "client-body-timeout",
        "seconds",
        "60",
        "With `proxy-request-buffering: on`: a client that sends no body byte for this long gets 408. Streamed bodies are bounded by the pod's read timeout instead.",
        "30",
    ),
    key(
        "client-header-timeout",
        "seconds",
        "30 (`--client-header-timeout`)",
        "How long a client has to send a request head, live, on both proxy paths (hyper's for connections accepted after a change; TLS handshakes keep the flag's).",
        "60",
    ),
    key(
        "compute-full-forwarded-for",
        "\"true\" | \"false\"",
        "false (`--compute-full-forwarded-for`)",
        "Appends the peer's address to the client's X-Forwarded-For instead of replacing it; over the flag.",
        "true",
    ),
    key(
        "custom-http-errors",
        "status codes, comma-separated",
        "-",
        "Pod responses with these statuses are replaced by the answer of the error backend (the Ingress's `default-backend` annotation, else `--default-backend-service`), asked with ingress-nginx's X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port and X-Request-ID. Routes with it leave the HTTP/1.1 fast path.",
        "404,503",
    ),
    key(
        "disable-access-log",
        "\"true\" | \"false\"",
        "false",
        "Turns the access log off for every Ingress.",
        "true",
    ),
    key(
        "enable-opentelemetry",
        "\"true\" | \"false\"",
        "false",
        "Traces requests: a span per request, exported over OTLP gRPC to `otlp-collector-host`, and a W3C `traceparent` (with our span as parent) sent to the pod; the `enable-opentelemetry` annotation overrides it per Ingress. Traced routes are served on hyper's path.",
        "true",
    ),
    key(
        "enable-real-ip",
        "\"true\" | \"false\"",
        "false",
        "The client's address comes from `forwarded-for-header` when the connection is from `proxy-real-ip-cidr` (nginx's realip module), for allow lists, limits, logs and X-Real-IP; unlike `use-forwarded-headers`, the source's X-Forwarded-Proto, -Host and -Port are not passed on.",
        "true",
    ),
    key(
        "force-ssl-redirect",
        "\"true\" | \"false\"",
        "false",
        "Redirects plain HTTP to HTTPS (308) even for hosts without a TLS section.",
        "true",
    ),
    key(
        "forwarded-for-header",
        "a header name",
        "X-Forwarded-For",
        "With `use-forwarded-headers`, the header a trusted source puts the client's address in (a CDN's `CF-Connecting-IP`, say); read right to left like X-Forwarded-For. What the pod gets is still X-Forwarded-For.",
        "CF-Connecting-IP",
    ),
    key(
        "generate-request-id",
        "\"true\" | \"false\"",
        "true",
        "A request without X-Request-ID gets one (the pod and the access log see it); false passes it on without.",
        "false",
    ),
    key(
        "global-allowed-response-headers",
        "header names, comma-separated",
        "-",
        "The fields the `custom-headers` annotation may set; an Ingress asking for another is told so and it is not set (as ingress-nginx 1.12+).",
        "X-Frame-Options,X-Content-Type-Options",
    ),
    key(
        "hide-headers",
        "header names, comma-separated",
        "-",
        "Fields of the pods' responses not passed to clients (nginx's `proxy_hide_header`).",
        "X-Powered-By,X-AspNet-Version",
    ),
    key(
        "hsts",
        "\"true\" | \"false\"",
        "true (`--hsts`)",
        "Strict-Transport-Security on responses over TLS, replacing the pod's; over `--hsts` and its kin.",
        "false",
    ),
    key(
        "hsts-include-subdomains",
        "\"true\" | \"false\"",
        "true",
        "Adds includeSubDomains.",
        "false",
    ),
    key(
        "hsts-max-age",
        "whole seconds",
        "31536000",
        "Its max-age.",
        "600",
    ),
    key(
        "hsts-preload",
        "\"true\" | \"false\"",
        "false",
        "Adds preload.",
        "true",
    ),
    key(
        "keep-alive",
        "seconds (0: no keep-alive)",
        "`client-header-timeout`",
        "How long an idle keep-alive connection waits for its next request on the fast path; 0 closes each connection after one response (with Connection: close).",
        "75",
    ),
    key(
        "keep-alive-requests",
        "a whole number",
        "unlimited",
        "Requests one client connection serves on the fast path; the last response says Connection: close.",
        "1000",
    ),
    key(
        "large-client-header-buffers",
        "NUMBER SIZE",
        "4 8k (32 KiB)",
        "The largest request head (HTTP/2: header list), NUMBER × SIZE bytes, on both proxy paths; past it 431. Unlike nginx, one line may use the whole size.",
        "8 16k",
    ),
    key(
        "limit-conn-status-code",
        "status 400-599",
        "503",
        "The status of requests refused by `limit-connections`.",
        "429",
    ),
    key(
        "limit-req-status-code",
        "status 400-599",
        "503",
        "The status of requests refused by `limit-rps` / `limit-rpm`.",
        "429",
    ),
    key(
        "load-balance",
        "`round_robin` | `ewma`",
        "round_robin",
        "How a request's pod is picked: in turn, or the faster of two drawn at random by their peak-EWMA response latency (ingress-nginx's Lua balancer); per Ingress with the annotation of the same name.",
        "ewma",
    ),
    key(
        "log-format-escape-json",
        "\"true\" | \"false\"",
        "false",
        "Escapes the values put into `log-format-upstream` for JSON instead of nginx's default escaping.",
        "true",
    ),
    key(
        "log-format-upstream",
        "a template of `$variables`",
        "ingress-nginx's `upstreaminfo` line",
        "The access log line. Variables: `remote_addr`, `remote_user`, `time_local`, `time_iso8601`, `msec`, `request`, `request_method`, `request_uri`, `uri`, `args`, `server_protocol`, `status`, `body_bytes_sent`, `http_referer`, `http_user_agent`, `host`, `request_length`, `request_time`, `proxy_upstream_name`, `proxy_alternative_upstream_name`, `upstream_addr`, `upstream_response_length`, `upstream_response_time`, `upstream_status`, `req_id`, `namespace`, `ingress_name`, `service_name`, `service_port` (the route's), and `http_NAME` for any request header. Any other is an error naming it, and the default line stays.",
        "$remote_addr $status $request_time",
    ),
    key(
        "opentelemetry-operation-name",
        "text with `$request_method`, `$uri`, `$host`, `$service_name`, `$namespace`, `$ingress_name`, `$location_path`",
        "`METHOD PATH` (the rule's path)",
        "The span name.",
        "HTTP $request_method $service_name",
    ),
    key(
        "opentelemetry-trust-incoming-span",
        "\"true\" | \"false\"",
        "false (ingress-nginx: true)",
        "A client's `traceparent`/`tracestate` make our span a child of the client's; false: a new trace starts at the edge and the client's tracestate is not passed on.",
        "true",
    ),
    key(
        "otel-max-export-batch-size",
        "a whole number",
        "512",
        "Spans per OTLP export.",
        "256",
    ),
    key(
        "otel-max-queuesize",
        "a whole number",
        "2048",
        "Spans waiting for export; past it new spans are dropped (counted), never waited for.",
        "4096",
    ),
    key(
        "otel-sampler",
        "`AlwaysOn` | `AlwaysOff` | `TraceIdRatioBased`",
        "AlwaysOff",
        "Which traces are recorded (`traceparent` is sent to pods either way, with the sampled flag).",
        "AlwaysOn",
    ),
    key(
        "otel-sampler-parent-based",
        "\"true\" | \"false\"",
        "false",
        "A trusted incoming span's sampled flag decides instead of the sampler.",
        "true",
    ),
    key(
        "otel-sampler-ratio",
        "a number from 0 to 1",
        "0.01",
        "The share of traces `TraceIdRatioBased` records.",
        "0.5",
    ),
    key(
        "otel-schedule-delay-millis",
        "milliseconds",
        "5000",
        "The longest a span waits for its batch to be exported.",
        "1000",
    ),
    key(
        "otel-service-name",
        "text",
        "nginx",
        "The `service.name` resource attribute of the spans (ingress-nginx's default, so existing queries keep working).",
        "edge-ingress",
    ),
    key(
        "otlp-collector-host",
        "a host name or address",
        "-",
        "The OTLP gRPC collector; without it nothing is exported.",
        "otel-collector.monitoring.svc",
    ),
    key(
        "otlp-collector-port",
        "a port",
        "4317",
        "The collector's OTLP gRPC port.",
        "4317",
    ),
    key(
        "proxy-body-size",
        "size: bytes or k/m/g, 0 = none",
        "1m",
        "Largest request body; larger gets 413.",
        "8m",
    ),
    key(
        "proxy-buffer-size",
        "size (4k, 16k)",
        "4k",
        "With `proxy-buffering: on`: the size of one response buffer.",
        "16k",
    ),
    key(
        "proxy-buffering",
        "`on` | `off`",
        "off",
        "`on`: the pod's response is read ahead of the client into `proxy-buffers-number` × `proxy-buffer-size` bytes of memory, so a slow client ties up the pod only for what does not fit (nginx's buffering with `proxy-max-temp-file-size: 0`: no temporary files for responses).",
        "on",
    ),
    key(
        "proxy-buffers-number",
        "a whole number, 1 to 1024",
        "4",
        "With `proxy-buffering: on`: how many response buffers a request may hold.",
        "8",
    ),
    key(
        "proxy-connect-timeout",
        "whole seconds",
        "5",
        "Time to connect to a pod, then the next endpoint or 502.",
        "3",
    ),
    key(
        "proxy-next-upstream",
        "`error`, `timeout`, `invalid_header`, `http_500`, `http_502`, `http_503`, `http_504`, `http_403`, `http_404`, `http_429`, `non_idempotent`, `off`, space-separated",
        "error timeout",
        "Which failures send a request on to another endpoint.",
        "error timeout http_503",
    ),
    key(
        "proxy-next-upstream-timeout",
        "whole seconds, 0 = none",
        "0",
        "Time limit for a request's tries together.",
        "10",
    ),
    key(
        "proxy-next-upstream-tries",
        "number, 0 = no limit",
        "3",
        "Most tries of one request, the first included.",
        "2",
    ),
    key(
        "proxy-read-timeout",
        "whole seconds",
        "60",
        "Time the pod has for the response head (then 504) and for each read of the body (then the response is cut).",
        "30",
    ),
    key(
        "proxy-real-ip-cidr",
        "addresses or CIDRs, comma-separated",
        "0.0.0.0/0,::/0 (`--proxy-real-ip-cidr`)",
        "Sources whose X-Forwarded-For is trusted with `use-forwarded-headers`; over the flag.",
        "10.0.0.0/8,192.168.0.0/16",
    ),
    key(
        "proxy-request-buffering",
        "`on` | `off`",
        "off",
        "`on`: request bodies are read whole before a pod is chosen (a slow upload ties up no pod; the pod gets a Content-Length; a retry can resend the body), in memory up to `client-body-buffer-size` and in a temporary file past it. Off: bodies stream (ingress-nginx's default is on; see the README).",
        "on",
    ),
    key(
        "proxy-send-timeout",
        "whole seconds",
        "60",
        "Time for each write of the request to the pod (HTTP/1.1 fast path).",
        "30",
    ),
    key(
        "proxy-set-headers",
        "NAMESPACE/NAME of a ConfigMap",
        "-",
        "Each key of that ConfigMap is a field set on every request to a pod, replacing the client's of that name. Values are literal (nginx `$variables` are not expanded). Framing and hop-by-hop names are refused.",
        "ingress-nginx/custom-headers",
    ),
    key(
        "proxy-stream-next-upstream",
        "`on` | `off`",
        "on",
        "TCP services: a pod that cannot be connected to is replaced by the next endpoint of the flow's Maglev order (userspace relay).",
        "off",
    ),
    key(
        "proxy-stream-next-upstream-timeout",
        "nginx time (600s, 10m; 0: no limit)",
        "600s",
        "TCP services: how long the tries of the next endpoints may take in all.",
        "30s",
    ),
    key(
        "proxy-stream-next-upstream-tries",
        "whole number (0: every endpoint)",
        "3",
        "TCP services: endpoints tried per connection, the first included.",
        "2",
    ),
    key(
        "proxy-stream-responses",
        "whole number (0: no limit)",
        "1",
        "UDP services: datagrams a session expects back per datagram it sent; once they have come the session ends (its next datagram starts a new one, to the same pod while the endpoints stay). 0: sessions end by `proxy-stream-timeout` only.",
        "0",
    ),
    key(
        "proxy-stream-timeout",
        "nginx time (600s, 10m)",
        "600s",
        "TCP and UDP services: a connection or UDP session with no byte either way for this long is closed (userspace relay; XDP-steered flows age out of the connection table instead).",
        "1h",
    ),
    key(
        "server-tokens",
        "\"true\" | \"false\"",
        "false",
        "True: the Server header of our own answers (and of pods' answers without one) names the version, `xingress/VERSION`; false: `xingress`.",
        "true",
    ),
    key(
        "skip-access-log-urls",
        "paths, comma-separated",
        "-",
        "Requests for these paths are not logged.",
        "/healthz,/metrics",
    ),
    key(
        "ssl-ciphers",
        "an OpenSSL cipher list (`:`-separated)",
        "every AEAD suite rustls has (ECDHE with AES-GCM or ChaCha20-Poly1305; the TLS 1.3 suites)",
        "The TLS 1.2 suites offered, by OpenSSL or IANA name; TLS 1.3 suites too if the list names any. Names rustls cannot offer (CBC, DHE, RSA key exchange, OpenSSL keywords) are reported and left out; a list with no suite rustls offers is refused.",
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    ),
    key(
        "ssl-protocols",
        "`TLSv1.2`, `TLSv1.3`, space-separated",
        "TLSv1.2 TLSv1.3",
        "The TLS versions offered; TLSv1 and TLSv1.1 are reported as not offered (rustls has neither).",
        "TLSv1.3",
    ),
    key(
        "ssl-redirect",
        "\"true\" | \"false\"",
        "true",
        "Redirects plain HTTP to HTTPS (308) for hosts with a TLS section.",
        "false",
    ),
    key(
        "ssl-session-tickets",
        "\"true\" | \"false\"",
        "true (ingress-nginx: false)",
        "TLS session tickets for resumption; false: resumption by the server's session cache only. On by default: rustls rotates the ticket key every 6 hours (nginx's static keys are why its default is off).",
        "false",
    ),
    key(
        "upstream-keepalive-connections",
        "a whole number (0: none)",
        "128 per endpoint",
        "Idle keep-alive connections to pods kept, per endpoint, on the HTTP/1.1 fast path; 0 closes each after its response.",
        "32",
    ),
    key(
        "upstream-keepalive-requests",
        "a whole number",
        "unlimited",
        "Requests one connection to a pod carries before it is closed (fast path).",
        "10000",
    ),
    key(
        "upstream-keepalive-timeout",
        "seconds",
        "90 (`--upstream-idle-timeout`)",
        "How long an idle connection to a pod is kept (fast path).",
        "60",
    ),
    key(
        "use-forwarded-headers",
        "\"true\" | \"false\"",
        "false (`--use-forwarded-headers`)",
        "Trusts X-Forwarded-For (and -Proto, -Host, -Port) from `proxy-real-ip-cidr` sources; over the flag.",
        "true",
    ),
    key(
        "use-proxy-protocol",
        "\"true\" | \"false\"",
        "false (`--use-proxy-protocol`)",
        "Both listeners expect a PROXY protocol header first; over the flag, for connections accepted from then on.",
        "true",
    ),
];

fn boolean(v: &str) -> Option<bool> {
    match v.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// An nginx time (`600s`, `10m`, `1h`, `500ms`, or bare seconds); `None`
/// when it is not one.
fn nginx_time(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

fn seconds(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| Duration::from_secs(n.into()))
}

/// A ConfigMap's data by namespace and name (`add-headers` and
/// `proxy-set-headers` name one).
pub type ConfigMaps<'a> = &'a dyn Fn(&NamespacedName) -> Option<BTreeMap<String, String>>;

/// The fields of the ConfigMap a key names.
fn fields_from(
    v: &str,
    config_maps: ConfigMaps<'_>,
) -> Result<Vec<(HeaderName, http::HeaderValue)>, String> {
    let id = NamespacedName::parse(v.trim())
        .ok_or("is not NAMESPACE/NAME of a ConfigMap; no field is set")?;
    let data = config_maps(&id).ok_or(format!(
        "names ConfigMap {id}, which does not exist; no field is set"
    ))?;
    let (fields, errors) = header_rules::fields_of(&data);
    if errors.is_empty() {
        Ok(fields)
    } else {
        Err(format!(
            "names ConfigMap {id}, where {}; no field is set",
            errors.join(", ")
        ))
    }
}

/// `block-user-agents`, compiled; equal when written the same.
#[derive(Debug)]
pub struct UserAgents {
    pub set: regex::RegexSet,
}

impl PartialEq for UserAgents {
    fn eq(&self, other: &Self) -> bool {
        self.set.patterns() == other.set.patterns()
    }
}

/// `block-user-agents`: exact strings, `~regex` or `~*regex` (any case),
/// as one set; `None` when empty.
fn user_agent_patterns(v: &str) -> Result<Option<Arc<UserAgents>>, String> {
    let mut patterns = Vec::new();
    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        patterns.push(if let Some(re) = p.strip_prefix("~*") {
            format!("(?i){re}")
        } else if let Some(re) = p.strip_prefix('~') {
            re.to_string()
        } else {
            format!("^{}$", regex::escape(p))
        });
    }
    if patterns.is_empty() {
        return Ok(None);
    }
    regex::RegexSetBuilder::new(&patterns)
        .size_limit(1 << 20)
        .build()
        .map(|set| Some(Arc::new(UserAgents { set })))
        .map_err(|e| format!("has a pattern that is not a regular expression: {e}; none applies"))
}

/// Header names, comma-separated.
fn names(v: &str) -> Result<Vec<HeaderName>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("{n:?} is not a header name; none applies"))
        })
        .collect()
}

/// Reads the ConfigMap's data.
pub fn read(
    data: &BTreeMap<String, String>,
    config_maps: ConfigMaps<'_>,
) -> (ControllerConfig, Vec<KeyStatus>) {
    let mut c = ControllerConfig::default();
    let mut response_edit = HeaderEdit::default();
    let mut report = Vec::new();
    let mut policy = UpstreamPolicy::default();
    let mut policy_set = false;
    for (key, v) in data {
        // A value applied in part says what was left out.
        let mut note: Option<String> = None;
        let ok: Result<(), String> = match key.as_str() {
            "ssl-protocols" => c.tls.set_protocols(v).map(|n| note = n),
            "ssl-ciphers" => c.tls.set_ciphers(v).map(|n| note = n),
            "client-header-timeout" => match v.trim().parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => {
                    c.client_keepalive.header_timeout = Some(Duration::from_secs(n));
                    Ok(())
                }
                _ => Err("is not a number of seconds from 1 to 3600; the flag's value stays".into()),
            },
            "keep-alive" => match v.trim().parse::<u64>() {
                Ok(n) if n <= 3600 => {
                    c.client_keepalive.keep_alive = Some(Duration::from_secs(n));
                    Ok(())
                }
                _ => Err("is not a number of seconds up to 3600; the default stays".into()),
            },
            "large-client-header-buffers" => {
                let mut parts = v.split_whitespace();
                match (
                    parts.next().and_then(|n| n.parse::<usize>().ok()),
                    parts.next().and_then(annotations::parse_size),
                    parts.next(),
                ) {
                    (Some(n), Some(size), None)
                        if (1..=64).contains(&n) && (1024..=1 << 20).contains(&size) =>
                    {
                        c.client_keepalive.header_bytes = Some(n * size as usize);
                        Ok(())
                    }
                    _ => Err("is not NUMBER SIZE (like 4 8k; 1 to 64 buffers of 1k to 1m); the flag's limit stays".into()),
                }
            }
            "keep-alive-requests" => match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => {
                    c.client_keepalive.requests = Some(n);
                    Ok(())
                }
                _ => Err("is not a whole number from 1; no limit stays".into()),
            },
            "upstream-keepalive-connections" => match v.trim().parse::<usize>() {
                Ok(n) if n <= 65_536 => {
                    c.upstream_keepalive.connections = Some(n);
                    Ok(())
                }
                _ => Err("is not a whole number up to 65536; the default stays".into()),
            },
            "upstream-keepalive-requests" => match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => {
                    c.upstream_keepalive.requests = Some(n);
                    Ok(())
                }
                _ => Err("is not a whole number from 1; no limit stays".into()),
            },
            "upstream-keepalive-timeout" => match v.trim().parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => {
                    c.upstream_keepalive.timeout = Some(Duration::from_secs(n));
                    Ok(())
                }
                _ => Err("is not a number of seconds from 1 to 3600; the default stays".into()),
            },
            "client-body-timeout" => match v.trim().parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => {
                    c.client_body_timeout = Duration::from_secs(n);
                    Ok(())
                }
                _ => Err("is not a number of seconds from 1 to 3600; 60 stays".into()),
            },
            "server-tokens" => match boolean(v) {
                Some(b) => {
                    c.server_tokens = b;
                    Ok(())
                }
                None => Err("is not \"true\" or \"false\"; false stays".into()),
            },
            "ssl-session-tickets" => match boolean(v) {
                Some(b) => {
                    c.tls.tickets = b;
                    Ok(())
                }
                None => Err("is not \"true\" or \"false\"; true stays".into()),
            },
            "proxy-body-size" => match annotations::parse_size(v.trim()) {
                Some(0) => {
                    c.body_limit = None;
                    Ok(())
                }
                Some(n) => {
                    c.body_limit = Some(n);
                    Ok(())
                }
                None => {
                    Err("is not a size (like 512k, 8m, 1g, or 0 for no limit); 1m stays".into())
                }
            },
            "proxy-stream-timeout" => match nginx_time(v) {
                Some(d) if !d.is_zero() => {
                    c.stream.timeout = d;
                    Ok(())
                }
                _ => Err("is not a positive nginx time (like 600s, 10m); 600s stays".into()),
            },
            "proxy-stream-next-upstream-timeout" => match nginx_time(v) {
                Some(d) => {
                    c.stream.next_upstream_timeout = d;
                    Ok(())
                }
                None => Err("is not an nginx time (like 600s, 10m, or 0 for no limit); 600s stays".into()),
            },
            "proxy-stream-next-upstream" => match v.trim() {
                "on" | "true" => {
                    c.stream.next_upstream = true;
                    Ok(())
                }
                "off" | "false" => {
                    c.stream.next_upstream = false;
                    Ok(())
                }
                _ => Err("is not on or off; on stays".into()),
            },
            "proxy-stream-next-upstream-tries" | "proxy-stream-responses" => {
                match v.trim().parse::<u32>() {
                    Ok(n) if n <= 1000 => {
                        if key == "proxy-stream-responses" {
                            c.stream.responses = n;
                        } else {
                            c.stream.tries = n;
                        }
                        Ok(())
                    }
                    _ => Err("is not a whole number from 0 to 1000; the default stays".into()),
                }
            }
            "proxy-read-timeout" | "proxy-connect-timeout" => match seconds(v) {
                Some(d) => {
                    if key == "proxy-read-timeout" {
                        c.read_timeout = Some(d);
                    } else {
                        c.connect_timeout = Some(d);
                        c.stream.connect_timeout = d;
                    }
                    Ok(())
                }
                None => Err("is not a positive whole number of seconds; the default stays".into()),
            },
            // The same keys, and the same reader, as the annotations.
            k if UpstreamPolicy::KEYS.contains(&k) && !k.starts_with("upstream-") => {
                policy_set = true;
                policy.set(k, v)
            }
            "ssl-redirect"
            | "force-ssl-redirect"
            | "disable-access-log"
            | "allow-snippet-annotations" => match boolean(v) {
                Some(b) => {
                    match key.as_str() {
                        "ssl-redirect" => c.ssl_redirect = b,
                        "allow-snippet-annotations" => c.allow_snippets = b,
                        "force-ssl-redirect" => c.force_ssl_redirect = b,
                        _ => c.access_log_off = b,
                    }
                    Ok(())
                }
                None => Err("is not \"true\" or \"false\"; the default stays".into()),
            },
            k if super::otel::KEY_NAMES.contains(&k) => c.otel.set(k, v),
            "proxy-buffering" | "proxy-request-buffering" => match v.trim() {
                on @ ("on" | "off") => {
                    *match key.as_str() {
                        "proxy-buffering" => &mut c.response_buffering,
                        _ => &mut c.request_buffering,
                    } = on == "on";
                    Ok(())
                }
                _ => Err("is not on or off; off stays".into()),
            },
            "proxy-buffer-size" => match annotations::parse_size(v) {
                Some(n) if (1..=64 << 20).contains(&n) => {
                    c.proxy_buffer_size = n as u32;
                    Ok(())
                }
                _ => Err("is not a size from 1 byte to 64m (like 4k); 4k stays".into()),
            },
            "proxy-buffers-number" => match v.trim().parse::<u32>() {
                Ok(n) if (1..=1024).contains(&n) => {
                    c.proxy_buffers = n;
                    Ok(())
                }
                _ => Err("is not a whole number from 1 to 1024; 4 stays".into()),
            },
            "client-body-buffer-size" => match annotations::parse_size(v) {
                Some(n) if (1..=64 << 20).contains(&n) => {
                    c.client_body_buffer = n as u32;
                    Ok(())
                }
                _ => Err("is not a size from 1 byte to 64m (like 8k); 8k stays".into()),
            },
            "log-format-upstream" => {
                let escape = data
                    .get("log-format-escape-json")
                    .and_then(|v| boolean(v))
                    .unwrap_or(false);
                match LogTemplate::parse(v, escape) {
                    Ok(t) => {
                        c.log_template = Some(Arc::new(t));
                        Ok(())
                    }
                    Err(e) => Err(format!(
                        "is not a log format: {e}; the default format stays"
                    )),
                }
            }
            "log-format-escape-json" => match boolean(v) {
                Some(_) => Ok(()),
                None => Err("is not \"true\" or \"false\"; false stays".into()),
            },
            "add-headers" => fields_from(v, config_maps).map(|f| response_edit.set = f),
            "use-proxy-protocol"
            | "use-forwarded-headers"
            | "compute-full-forwarded-for"
            | "generate-request-id"
            | "enable-real-ip" => {
                match boolean(v) {
                    Some(b) => {
                        let k = &mut c.client_address;
                        *match key.as_str() {
                            "use-proxy-protocol" => &mut k.use_proxy_protocol,
                            "use-forwarded-headers" => &mut k.use_forwarded_headers,
                            "generate-request-id" => &mut k.generate_request_id,
                            "enable-real-ip" => &mut k.enable_real_ip,
                            _ => &mut k.compute_full_forwarded_for,
                        } = Some(b);
                        Ok(())
                    }
                    None => Err("is not \"true\" or \"false\"; the flag's value stays".into()),
                }
            }
            "forwarded-for-header" => match HeaderName::from_bytes(v.trim().as_bytes()) {
                Ok(h) if !header_rules::framing_or_hop_by_hop(&h) => {
                    c.client_address.forwarded_for_header = Some(h);
                    Ok(())
                }
                _ => Err("is not a header that can carry an address; X-Forwarded-For stays".into()),
            },
            "block-cidrs" => match super::cidr::parse_list(v) {
                (cidrs, bad) if bad.is_empty() => {
                    c.block_cidrs = cidrs;
                    Ok(())
                }
                (_, bad) => Err(format!(
                    "has {} that {} not an address or CIDR; no source is blocked",
                    bad.join(", "),
                    if bad.len() == 1 { "is" } else { "are" }
                )),
            },
            "proxy-real-ip-cidr" => match super::cidr::parse_list(v) {
                (cidrs, bad) if bad.is_empty() && !cidrs.is_empty() => {
                    c.client_address.proxy_real_ip_cidr = Some(cidrs);
                    Ok(())
                }
                (_, bad) => Err(format!(
                    "has {} that {} not an address or CIDR; the flag's value stays",
                    if bad.is_empty() { "nothing".to_string() } else { bad.join(", ") },
                    if bad.len() == 1 { "is" } else { "are" }
                )),
            },
            "hsts" | "hsts-include-subdomains" | "hsts-preload" => {
                match boolean(v) {
                    Some(b) => {
                        match key.as_str() {
                            "hsts" => c.hsts.on = Some(b),
                            "hsts-include-subdomains" => c.hsts.include_subdomains = Some(b),
                            _ => c.hsts.preload = Some(b),
                        }
                        Ok(())
                    }
                    None => Err("is not \"true\" or \"false\"; the default stays".into()),
                }
            }
            "hsts-max-age" => match v.trim().parse::<u64>() {
                Ok(n) => {
                    c.hsts.max_age = Some(n);
                    Ok(())
                }
                Err(_) => Err("is not a whole number of seconds; the default stays".into()),
            },
            "limit-req-status-code" | "limit-conn-status-code" => match v.trim().parse::<u16>() {
                Ok(n) if (400..=599).contains(&n) => {
                    if key == "limit-req-status-code" {
                        c.limit_req_status = n;
                    } else {
                        c.limit_conn_status = n;
                    }
                    Ok(())
                }
                _ => Err("is not a status from 400 to 599; 503 stays".into()),
            },
            "block-user-agents" => user_agent_patterns(v).map(|set| c.block_user_agents = set),
            "load-balance" => match v.trim() {
                "ewma" => {
                    c.ewma = true;
                    Ok(())
                }
                "round_robin" => {
                    c.ewma = false;
                    Ok(())
                }
                _ => Err("is not round_robin or ewma; round_robin stays".into()),
            },
            "access-log-path" => {
                let p = v.trim();
                if p == "/dev/stdout" {
                    c.access_log_path = None;
                    Ok(())
                } else if p.starts_with('/') && !p.ends_with('/') {
                    c.access_log_path = Some(p.into());
                    Ok(())
                } else {
                    Err("is not an absolute file path; the log stays on stdout".into())
                }
            }
            "hide-headers" => names(v).map(|n| response_edit.remove = n),
            "proxy-set-headers" => fields_from(v, config_maps)
                .and_then(|set| {
                    // What the agent says of the client is its own to set.
                    let ours: Vec<&str> = set
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .filter(|n| n.starts_with("x-forwarded-") || *n == "x-real-ip" || *n == "x-request-id")
                        .collect();
                    if ours.is_empty() {
                        Ok(set)
                    } else {
                        Err(format!("sets {}, which the agent sets itself (use-forwarded-headers trusts a balancer's); no field is set", ours.join(", ")))
                    }
                })
                .map(|set| {
                c.request_edit = (!set.is_empty()).then(|| {
                    Arc::new(HeaderEdit {
                        set,
                        ..Default::default()
                    })
                })
            }),
            "global-allowed-response-headers" => names(v).map(|n| c.allowed_response_headers = n),
            "custom-http-errors" => annotations::status_codes(v).map(|codes| c.custom_http_errors = codes.into()),
            "skip-access-log-urls" => {
                c.skip_access_log_urls = v
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(Into::into)
                    .collect();
                Ok(())
            }
            _ => {
                report.push(KeyStatus {
                    key: key.clone(),
                    status: "ignored",
                    detail: "not implemented by xingress".into(),
                });
                continue;
            }
        };
        report.push(match ok {
            Ok(()) => KeyStatus {
                key: key.clone(),
                status: "applied",
                detail: note.unwrap_or_default(),
            },
            Err(detail) => KeyStatus {
                key: key.clone(),
                status: "invalid",
                detail: format!("{v:?} {detail}"),
            },
        });
    }
    if policy_set {
        c.upstream_policy = Some(Arc::new(policy));
    }
    if !response_edit.is_empty() {
        c.response_edit = Some(Arc::new(response_edit));
    }
    (c, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_apply_bad_values_keep_defaults_unknown_keys_are_listed() {
        let (c, report) = read(
            &data(&[
                ("proxy-body-size", "8m"),
                ("proxy-read-timeout", "120"),
                ("proxy-connect-timeout", "soon"),
                ("ssl-redirect", "false"),
                ("proxy-next-upstream", "error timeout http_502"),
                ("proxy-next-upstream-tries", "2"),
                ("skip-access-log-urls", "/healthz, /metrics"),
                ("use-gzip", "true"),
            ]),
            &|_| None,
        );
        assert_eq!(c.body_limit, Some(8 << 20));
        assert_eq!(c.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.connect_timeout, None);
        assert!(!c.ssl_redirect);
        let p = c.upstream_policy.unwrap();
        assert!(p.retries_on(annotations::NEXT_HTTP_502));
        assert_eq!(p.tries, 2);
        assert_eq!(
            c.skip_access_log_urls,
            vec!["/healthz".into(), "/metrics".into()] as Vec<Box<str>>
        );
        let status = |k: &str| report.iter().find(|s| s.key == k).unwrap().status;
        assert_eq!(status("proxy-body-size"), "applied");
        assert_eq!(status("proxy-connect-timeout"), "invalid");
        assert_eq!(status("use-gzip"), "ignored");
        let (c, _) = read(&data(&[("proxy-body-size", "0")]), &|_| None);
        assert_eq!(c.body_limit, None);
        assert_eq!(
            read(&BTreeMap::new(), &|_| None).0,
            ControllerConfig::default()
        );
    }
}

/// A parsed `log-format-upstream`: text and ingress-nginx's `$variables`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTemplate {
    pub pieces: Vec<LogPiece>,
    /// The request headers `$http_NAME` variables name (lowercase), which
    /// a request's log record keeps.
    pub headers: Vec<Box<str>>,
    /// `log-format-escape-json`: values escaped for a JSON string, not
    /// nginx's `\xHH`.
    pub escape_json: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogPiece {
    Text(String),
    Var(LogVar),
}

/// The variables a template may use (the common ones of ingress-nginx's
/// log formats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogVar {
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Status,
    BodyBytesSent,
    HttpReferer,
    HttpUserAgent,
    Host,
    RequestLength,
    RequestTime,
    ProxyUpstreamName,
    ProxyAlternativeUpstreamName,
    UpstreamAddr,
    UpstreamResponseLength,
    UpstreamResponseTime,
    UpstreamStatus,
    ReqId,
    /// The route's Ingress (or Gateway API route): its namespace and name.
    Namespace,
    IngressName,
    /// The route's Service and port.
    ServiceName,
    ServicePort,
    /// `$http_NAME`: the request header NAME (`_` for `-`), by its index
    /// in `LogTemplate::headers`.
    HttpHeader(u8),
}

const LOG_VARS: &[(&str, LogVar)] = &[
    ("remote_addr", LogVar::RemoteAddr),
    ("remote_user", LogVar::RemoteUser),
    ("time_local", LogVar::TimeLocal),
    ("time_iso8601", LogVar::TimeIso8601),
    ("msec", LogVar::Msec),
    ("request", LogVar::Request),
    ("request_method", LogVar::RequestMethod),
    ("request_uri", LogVar::RequestUri),
    ("uri", LogVar::Uri),
    ("args", LogVar::Args),
    ("server_protocol", LogVar::ServerProtocol),
    ("status", LogVar::Status),
    ("body_bytes_sent", LogVar::BodyBytesSent),
    ("http_referer", LogVar::HttpReferer),
    ("http_user_agent", LogVar::HttpUserAgent),
    ("host", LogVar::Host),
    ("http_host", LogVar::Host),
    ("request_length", LogVar::RequestLength),
    ("request_time", LogVar::RequestTime),
    ("proxy_upstream_name", LogVar::ProxyUpstreamName),
    (
        "proxy_alternative_upstream_name",
        LogVar::ProxyAlternativeUpstreamName,
    ),
    ("upstream_addr", LogVar::UpstreamAddr),
    ("upstream_response_length", LogVar::UpstreamResponseLength),
    ("upstream_response_time", LogVar::UpstreamResponseTime),
    ("upstream_status", LogVar::UpstreamStatus),
    ("req_id", LogVar::ReqId),
    ("request_id", LogVar::ReqId),
    ("namespace", LogVar::Namespace),
    ("ingress_name", LogVar::IngressName),
    ("service_name", LogVar::ServiceName),
    ("service_port", LogVar::ServicePort),
];

impl LogTemplate {
    /// Parses `$name` and `${name}`; an unknown variable is an error
    /// naming it (reported at load, never a surprise at run time).
    pub fn parse(format: &str, escape_json: bool) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut headers: Vec<Box<str>> = Vec::new();
        for t in super::template::tokens(format)? {
            let name = match t {
                super::template::Token::Text(text) => {
                    pieces.push(LogPiece::Text(text.to_string()));
                    continue;
                }
                super::template::Token::Var(name) => name,
            };
            let known = LOG_VARS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
            let var = match (known, name.strip_prefix("http_")) {
                (Some(v), _) => v,
                // Any other request header, as nginx's $http_NAME.
                (None, Some(header)) if !header.is_empty() => {
                    let header: Box<str> = header.replace('_', "-").to_ascii_lowercase().into();
                    let i = match headers.iter().position(|h| *h == header) {
                        Some(i) => i,
                        None => {
                            headers.push(header);
                            headers.len() - 1
                        }
                    };
                    LogVar::HttpHeader(
                        u8::try_from(i)
                            .map_err(|_| "more than 256 $http_ variables".to_string())?,
                    )
                }
                _ => return Err(format!("${name} is not a variable xingress fills in")),
            };
            pieces.push(LogPiece::Var(var));
        }
        Ok(Self {
            pieces,
            headers,
            escape_json,
        })
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn templates_parse_and_unknown_variables_are_refused() {
        let t = LogTemplate::parse(
            "{\"s\": $status, \"u\": \"${request_uri}x\", \"c\": 5$}",
            true,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                LogPiece::Text("{\"s\": ".into()),
                LogPiece::Var(LogVar::Status),
                LogPiece::Text(", \"u\": \"".into()),
                LogPiece::Var(LogVar::RequestUri),
                LogPiece::Text("x\", \"c\": 5$}".into()),
            ]
        );
        assert_eq!(
            LogTemplate::parse("$remote_addr $geoip_country", false).unwrap_err(),
            "$geoip_country is not a variable xingress fills in"
        );
        assert!(LogTemplate::parse("${status", false).is_err());
    }
}

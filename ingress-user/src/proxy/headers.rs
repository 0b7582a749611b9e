//! Request and response header rewriting: hop-by-hop removal and the
//! X-Forwarded-* family.

use std::net::SocketAddr;

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SERVER, TE, TRAILER, UPGRADE},
};

pub use crate::model::client_address::{ClientAddress, X_FORWARDED_FOR};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes the headers that describe one hop only (RFC 9110 §7.6.1),
/// including those the Connection header names. Body framing headers
/// (Content-Length, Transfer-Encoding) are kept: hyper frames the body the
/// same way upstream.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        // Framing, routing and tracing fields stay whatever Connection says.
        let kept = [
            &http::header::CONTENT_LENGTH,
            &http::header::TRANSFER_ENCODING,
            &http::header::HOST,
            &X_REQUEST_ID,
        ];
        for name in named {
            if !kept.contains(&&name) {
                headers.remove(name);
            }
        }
        headers.remove(CONNECTION);
    }
    for h in [&KEEP_ALIVE, &PROXY_CONNECTION] {
        headers.remove(h);
    }
    for h in [
        TE,
        TRAILER,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
    ] {
        headers.remove(h);
    }
}

/// The forwarding rules on hyper's path (the fast path's writer of the
/// same rules is `h1::codec::write_request_head`; a test holds the two
/// together): hop-by-hop fields out, X-Forwarded-* and X-Real-IP in, Host
/// the request's host (HTTP/2's `:authority`, an absolute-form target's),
/// and `TE: trailers` kept (gRPC needs it end to end; it is the one TE
/// value a proxy forwards).
pub fn to_pod(
    headers: &mut HeaderMap,
    down: &Downstream,
    host: Option<HeaderValue>,
    rules: &ClientAddress,
) {
    let te_trailers = headers
        .get(TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    strip_hop_by_hop(headers);
    add_forwarded(headers, down, host.as_ref(), rules);
    if let Some(h) = host {
        headers.insert(http::header::HOST, h);
    }
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// `x-forwarded-prefix`'s header.
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// ingress-nginx's client-certificate headers (`auth-tls-*`).
pub const SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
pub const SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");
pub const SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
/// Every `ssl-client-*` header ingress-nginx may set: a client's own are
/// removed on routes that ask for certificates.
pub const SSL_CLIENT: [HeaderName; 4] = [
    SSL_CLIENT_VERIFY,
    SSL_CLIENT_CERT,
    SSL_CLIENT_SUBJECT_DN,
    HeaderName::from_static("ssl-client-issuer-dn"),
];

/// What the proxy knows about the downstream connection.
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    /// The request's client: the TCP peer, or what the PROXY protocol or a
    /// trusted X-Forwarded-For says.
    pub client: SocketAddr,
    /// The connection's client: the TCP peer, or the PROXY protocol's
    /// source (what `compute-full-forwarded-for` appends).
    pub origin: SocketAddr,
    /// The TCP peer (what XDP sees).
    pub peer: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    pub tls: bool,
}

/// Sets X-Forwarded-For (the client's address; with
/// `compute-full-forwarded-for`, the client's list with the connection's
/// address appended), X-Real-IP, X-Forwarded-Proto/Host/Port (the client's
/// own only with `use-forwarded-headers`) and an X-Request-ID when the
/// client sent none.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    down: &Downstream,
    host: Option<&HeaderValue>,
    rules: &ClientAddress,
) {
    let ip = down.client.ip().to_canonical();
    let mut ip_buf = [0u8; 40];
    let ip_str = fmt_ip(ip, &mut ip_buf);
    let ip_value = HeaderValue::from_str(ip_str).unwrap_or(HeaderValue::from_static("unknown"));
    let xff = if rules.compute_full_forwarded_for {
        let prev: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let origin = down.origin.ip().to_canonical().to_string();
        if prev.is_empty() {
            HeaderValue::from_str(&origin).unwrap_or(ip_value.clone())
        } else {
            HeaderValue::from_str(&format!("{}, {origin}", prev.join(", ")))
                .unwrap_or(ip_value.clone())
        }
    } else {
        ip_value.clone()
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), ip_value);
    let passed = |headers: &HeaderMap, name: &HeaderName| {
        rules
            .use_forwarded_headers
            .then(|| headers.get(name).cloned())
            .flatten()
    };
    let proto =
        passed(headers, &X_FORWARDED_PROTO).unwrap_or(HeaderValue::from_static(if down.tls {
            "https"
        } else {
            "http"
        }));
    headers.insert(X_FORWARDED_PROTO.clone(), proto);
    // Only the proxy speaks for the host, unless told to trust the client.
    match passed(headers, &X_FORWARDED_HOST).or_else(|| host.cloned()) {
        Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    let port = passed(headers, &X_FORWARDED_PORT).unwrap_or(HeaderValue::from(down.local.port()));
    headers.insert(X_FORWARDED_PORT.clone(), port);
    if !rules.no_request_id && !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), request_id());
    }
}

fn fmt_ip(ip: std::net::IpAddr, buf: &mut [u8; 40]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address is at most 39 characters: the write cannot fail.
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("unknown")
}

fn request_id() -> HeaderValue {
    HeaderValue::from_bytes(&request_id_hex()).unwrap_or(HeaderValue::from_static("0"))
}

/// 128 random bits as 32 lowercase hex digits (thread-local generator, no syscall).
pub fn request_id_hex() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    let v = fastrand::u128(..);
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (i * 4)) & 0xF) as usize];
    }
    out
}

/// The Server header's value: `xingress`, or `xingress/VERSION` with
/// `server-tokens`.
pub fn server_value() -> &'static str {
    if crate::snapshot::server_tokens() {
        concat!("xingress/", env!("CARGO_PKG_VERSION"))
    } else {
        "xingress"
    }
}

/// Adds our Server header to a response that has none.
pub fn ensure_server(headers: &mut HeaderMap) {
    if !headers.contains_key(SERVER) {
        headers.insert(SERVER, HeaderValue::from_static(server_value()));
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header::HOST};

    use super::strip_hop_by_hop;

    #[test]
    fn connection_cannot_remove_host_framing_or_request_id() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (
                "connection",
                "Host, content-length, X-Request-ID, x-drop, keep-alive",
            ),
            ("host", "a.test"),
            ("content-length", "3"),
            ("x-request-id", "7"),
            ("x-drop", "1"),
            ("keep-alive", "5"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get(HOST).unwrap(), "a.test");
        assert_eq!(h.get("content-length").unwrap(), "3");
        assert_eq!(h.get("x-request-id").unwrap(), "7");
        for gone in ["x-drop", "keep-alive", "connection"] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
    }
}

#[cfg(test)]
mod client_tests {
    use super::ClientAddress;

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let rules = ClientAddress {
            use_forwarded_headers: true,
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            ..ClientAddress::default()
        };
        let xff = |fields: &[&'static str]| fields.iter().map(|f| f.as_bytes()).collect::<Vec<_>>();
        let lb = ip("10.0.0.5");
        assert_eq!(
            rules.client(lb, xff(&["198.51.100.1, 192.0.2.7, 10.0.0.9"]).into_iter()),
            ip("192.0.2.7")
        );
        // Fields in order, the last one last.
        assert_eq!(
            rules.client(lb, xff(&["192.0.2.1", "192.0.2.2"]).into_iter()),
            ip("192.0.2.2")
        );
        // All trusted: the left-most; garbage stops the walk.
        assert_eq!(
            rules.client(lb, xff(&["10.1.1.1, 10.2.2.2"]).into_iter()),
            ip("10.1.1.1")
        );
        assert_eq!(
            rules.client(lb, xff(&["192.0.2.9, junk, 10.2.2.2"]).into_iter()),
            ip("10.2.2.2")
        );
        // An untrusted connection's header is ignored; so is everything
        // without use-forwarded-headers.
        assert_eq!(
            rules.client(ip("203.0.113.4"), xff(&["192.0.2.7"]).into_iter()),
            ip("203.0.113.4")
        );
        let off = ClientAddress::default();
        assert_eq!(off.client(lb, xff(&["192.0.2.7"]).into_iter()), lb);
    }
}

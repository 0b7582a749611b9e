//! Where a request's client address comes from: the connection, the PROXY
//! protocol, or a trusted X-Forwarded-For (ingress-nginx's
//! `use-forwarded-headers`, `proxy-real-ip-cidr`, ... as flags and keys).

use http::HeaderName;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Where the client's address comes from (`--use-proxy-protocol`,
/// `--use-forwarded-headers`, `--compute-full-forwarded-for`,
/// `--proxy-real-ip-cidr`: ingress-nginx's ConfigMap keys of those names).
#[derive(Clone, Debug, Default)]
pub struct ClientAddress {
    pub proxy_protocol: bool,
    pub use_forwarded_headers: bool,
    pub compute_full_forwarded_for: bool,
    pub trusted: Vec<super::Cidr>,
    /// `generate-request-id: "false"`: a request without X-Request-ID is
    /// passed on without one.
    pub no_request_id: bool,
    /// `forwarded-for-header`: where a trusted source puts the client's
    /// address; `None`: X-Forwarded-For.
    pub forwarded_for: Option<HeaderName>,
    /// `enable-real-ip`: a trusted source's forwarded-for header names
    /// the client, but its X-Forwarded-Proto/Host/Port are not passed on.
    pub real_ip: bool,
}

impl ClientAddress {
    /// Whether the client's address may come from a forwarded-for header
    /// (`use-forwarded-headers` or `enable-real-ip`).
    pub fn reads_forwarded_for(&self) -> bool {
        self.use_forwarded_headers || self.real_ip
    }

    /// The header the client's address is read from.
    pub fn forwarded_for_header(&self) -> &HeaderName {
        self.forwarded_for.as_ref().unwrap_or(&X_FORWARDED_FOR)
    }
}

impl ClientAddress {
    /// These rules (the flags) with the ConfigMap's keys over them.
    pub fn with_keys(&self, keys: &super::config::ClientAddressKeys) -> Self {
        Self {
            proxy_protocol: keys.use_proxy_protocol.unwrap_or(self.proxy_protocol),
            use_forwarded_headers: keys
                .use_forwarded_headers
                .unwrap_or(self.use_forwarded_headers),
            compute_full_forwarded_for: keys
                .compute_full_forwarded_for
                .unwrap_or(self.compute_full_forwarded_for),
            trusted: keys
                .proxy_real_ip_cidr
                .clone()
                .unwrap_or_else(|| self.trusted.clone()),
            no_request_id: keys.generate_request_id == Some(false),
            forwarded_for: keys
                .forwarded_for_header
                .clone()
                .filter(|h| *h != X_FORWARDED_FOR),
            real_ip: keys.enable_real_ip.unwrap_or(self.real_ip),
        }
    }

    /// The request's client (nginx's realip with `real_ip_recursive on`):
    /// with `use-forwarded-headers` and a trusted connection, the
    /// right-most X-Forwarded-For address that is not itself trusted.
    pub fn client<'a>(
        &self,
        connection: std::net::IpAddr,
        xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> std::net::IpAddr {
        let trusted = |ip: std::net::IpAddr| self.trusted.iter().any(|c| c.contains(ip));
        if !self.reads_forwarded_for() || !trusted(connection) {
            return connection;
        }
        let mut found = connection;
        let fields: Vec<&[u8]> = xff.collect();
        for field in fields.iter().rev() {
            for part in field.rsplit(|&b| b == b',') {
                let Some(ip) = std::str::from_utf8(part)
                    .ok()
                    .and_then(|p| p.trim().parse::<std::net::IpAddr>().ok())
                else {
                    return found;
                };
                found = ip;
                if !trusted(ip) {
                    return ip;
                }
            }
        }
        found
    }
}

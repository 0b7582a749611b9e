//! Header names no setting may copy or set: what frames a message or
//! describes one hop (RFC 9110 §7.6.1), and Host. Every setting that copies
//! or adds header fields (`auth-response-headers`, and those to come)
//! refuses them when it is read.

use http::HeaderName;

/// Framing (Content-Length, Transfer-Encoding), hop-by-hop fields and Host:
/// copied from elsewhere they would desynchronise a connection (a GET
/// announced with a body the client never sends) or re-route the request.
pub fn framing_or_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "host"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

#[cfg(test)]
mod tests {
    use super::framing_or_hop_by_hop;

    #[test]
    fn framing_and_hop_by_hop_names_are_protected() {
        for n in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "TE",
            "Host",
            "Upgrade",
        ] {
            let name = http::HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert!(framing_or_hop_by_hop(&name), "{n}");
        }
        for n in [
            "x-user",
            "authorization",
            "x-auth-request-email",
            "content-type",
        ] {
            let name = http::HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert!(!framing_or_hop_by_hop(&name), "{n}");
        }
    }
}

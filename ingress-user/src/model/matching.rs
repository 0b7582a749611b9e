//! Host normalisation and path matching, allocation-free (request path).

/// Longest host name we normalise; DNS names are at most 253 bytes.
pub const HOST_BUF_LEN: usize = 256;

/// Normalises a Host header or `:authority`: drops the port and a trailing
/// dot and lowercases, using `buf` only when a copy is needed. Returns `None`
/// for an empty, over-long or malformed host.
pub fn normalize_host<'a>(raw: &'a str, buf: &'a mut [u8; HOST_BUF_LEN]) -> Option<&'a str> {
    let raw = raw.trim();
    let host = strip_port(raw);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > HOST_BUF_LEN || host.ends_with('.') {
        return None;
    }
    // A colon left over is only valid inside an IPv6 address ("a.:" or
    // "x:y:" are no host at all).
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return None;
    }
    // DNS names (letters, digits, '-', '.', and '_' that some use) and IP
    // addresses only: anything else can match no rule.
    let mut upper = false;
    for b in host.bytes() {
        match b {
            b'A'..=b'Z' => upper = true,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b':' => {}
            _ => return None,
        }
    }
    if !upper {
        return Some(host);
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // Lowercasing ASCII bytes of valid UTF-8 keeps it valid UTF-8.
    std::str::from_utf8(out).ok()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: [::1]:8080 → ::1
        return rest.split_once(']').map_or(host, |(addr, _)| addr);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Element-wise prefix match: `prefix` (already without a trailing slash,
/// or exactly "/") matches `path` when every `/`-separated element of the
/// prefix equals the element of the path at the same position.
pub fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The value of cookie `name` in Cookie header `fields` (HTTP/2 may split
/// them).
pub fn cookie_value<'a>(fields: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a [u8]> {
    fields
        .flat_map(|f| f.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (k == name.as_bytes()).then(|| &v[1..])
        })
}

//! Header edits, decided once when the configuration is read and carried
//! out by either transport (hyper's `HeaderMap`, the HTTP/1.1 fast path's
//! bytes): the Gateway API's header modifiers, ingress-nginx's
//! `custom-headers`, `add-headers`, `hide-headers` and `proxy-set-headers`.
//! And the header names no setting may copy or set: what frames a message
//! or describes one hop (RFC 9110 §7.6.1), and Host. Every setting that
//! copies or adds header fields refuses them when it is read.

use std::{collections::BTreeMap, sync::Arc};

use http::{HeaderName, HeaderValue};

/// Set replaces, add appends (to a header the message already has:
/// `old,new`), remove deletes; rewrite changes part of a response field
/// (`proxy-redirect-*`, `proxy-cookie-*`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdit {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    pub rewrite: Vec<Rewrite>,
}

/// Part of a pod's response field replaced, as nginx's `proxy_redirect`,
/// `proxy_cookie_path` and `proxy_cookie_domain` do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Location, and Refresh's `url=`: a URL starting with `from` starts
    /// with `to` instead.
    Redirect { from: Box<str>, to: Box<str> },
    /// Set-Cookie's `Path` attribute starting with `from`.
    CookiePath { from: Box<str>, to: Box<str> },
    /// Set-Cookie's `Domain` attribute equal to `from` (any case).
    CookieDomain { from: Box<str>, to: Box<str> },
}

impl Rewrite {
    /// `field`'s value with this rewrite carried out; `None`: unchanged.
    pub fn apply(&self, field: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        let is = |n: &str| field.eq_ignore_ascii_case(n.as_bytes());
        match self {
            Rewrite::Redirect { from, to } if is("location") => {
                let rest = value.strip_prefix(from.as_bytes())?;
                Some([to.as_bytes(), rest].concat())
            }
            Rewrite::Redirect { from, to } if is("refresh") => {
                let lower = value.to_ascii_lowercase();
                let at = lower.windows(4).position(|w| w == b"url=")? + 4;
                let url = value[at..].strip_prefix(from.as_bytes())?;
                Some([&value[..at], to.as_bytes(), url].concat())
            }
            Rewrite::CookiePath { from, to } if is("set-cookie") => {
                cookie_attribute(value, "path", |v| {
                    v.strip_prefix(from.as_bytes())
                        .map(|rest| [to.as_bytes(), rest].concat())
                })
            }
            Rewrite::CookieDomain { from, to } if is("set-cookie") => {
                cookie_attribute(value, "domain", |v| {
                    v.eq_ignore_ascii_case(from.as_bytes())
                        .then(|| to.as_bytes().to_vec())
                })
            }
            _ => None,
        }
    }
}

/// A Set-Cookie value with attribute `name`'s value changed by `change`;
/// `None`: no such attribute, or unchanged.
fn cookie_attribute(
    value: &[u8],
    name: &str,
    change: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len() + 16);
    let mut changed = false;
    for (i, part) in value.split(|b| *b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let trimmed = part.trim_ascii_start();
        let lead = &part[..part.len() - trimmed.len()];
        match trimmed.iter().position(|b| *b == b'=') {
            Some(eq)
                if i > 0
                    && trimmed[..eq]
                        .trim_ascii()
                        .eq_ignore_ascii_case(name.as_bytes()) =>
            {
                match change(trimmed[eq + 1..].trim_ascii()) {
                    Some(new) => {
                        out.extend_from_slice(lead);
                        out.extend_from_slice(&trimmed[..=eq]);
                        out.extend_from_slice(&new);
                        changed = true;
                    }
                    None => out.extend_from_slice(part),
                }
            }
            _ => out.extend_from_slice(part),
        }
    }
    changed.then_some(out)
}

impl HeaderEdit {
    /// `field`'s value as the rewrites leave it; `None`: unchanged.
    pub fn rewritten(&self, field: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for r in &self.rewrite {
            if let Some(new) = r.apply(field, out.as_deref().unwrap_or(value)) {
                out = Some(new);
            }
        }
        out
    }

    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if !self.rewrite.is_empty() {
            for name in [
                http::header::LOCATION,
                http::header::REFRESH,
                http::header::SET_COOKIE,
            ] {
                let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
                if values.is_empty() {
                    continue;
                }
                headers.remove(&name);
                for v in values {
                    let new = self
                        .rewritten(name.as_str().as_bytes(), v.as_bytes())
                        .and_then(|n| HeaderValue::from_bytes(&n).ok())
                        .unwrap_or(v);
                    headers.append(name.clone(), new);
                }
            }
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            let joined = headers.get(name).map(|old| {
                let mut v = old.as_bytes().to_vec();
                v.push(b',');
                v.extend_from_slice(value.as_bytes());
                v
            });
            match joined.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                Some(v) => {
                    headers.insert(name.clone(), v);
                }
                None => {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }

    /// Whether a field named `name` (as sent) of the message is left out
    /// of what is written: set replaces it, remove deletes it.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.set
            .iter()
            .map(|(n, _)| n)
            .chain(&self.remove)
            .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// Writes the set and added fields as HTTP/1.1 field lines (an added
    /// field beside the message's own of that name is the same as one
    /// comma-joined line).
    pub fn write_h1(&self, out: &mut Vec<u8>) {
        for (name, value) in self.set.iter().chain(&self.add) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.add.is_empty()
            && self.remove.is_empty()
            && self.rewrite.is_empty()
    }
}

/// The header edits of one request, decided with its route and carried
/// out by either transport (hyper's path edits a `HeaderMap`, the fast
/// path writes bytes): the ConfigMap's `proxy-set-headers` on the request;
/// on the pod's response the ConfigMap's `add-headers`/`hide-headers`,
/// then the route's own (`custom-headers`, `ResponseHeaderModifier`),
/// which win.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edits {
    pub request: Option<Arc<HeaderEdit>>,
    pub response: [Option<Arc<HeaderEdit>>; 2],
}

impl Edits {
    /// The response edits, in order.
    pub fn response(&self) -> impl Iterator<Item = &HeaderEdit> {
        self.response.iter().flatten().map(|e| &**e)
    }

    /// Whether the pod's response field `name` is left out.
    pub fn drops_response(&self, name: &[u8]) -> bool {
        self.response().any(|e| e.drops(name))
    }

    /// The pod's response field `name` as the rewrites leave it; `None`:
    /// unchanged.
    pub fn rewritten_response(&self, name: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for e in self.response() {
            if let Some(new) = e.rewritten(name, out.as_deref().unwrap_or(value)) {
                out = Some(new);
            }
        }
        out
    }

    /// Writes the response fields set and added, as `response()` applied
    /// in order to a `HeaderMap` leaves them: the route's replace the
    /// ConfigMap's of the same name.
    pub fn write_response_h1(&self, out: &mut Vec<u8>) {
        let [global, route] = &self.response;
        if let Some(g) = global {
            for (name, value) in g.set.iter().chain(&g.add) {
                if route
                    .as_ref()
                    .is_some_and(|r| r.drops(name.as_str().as_bytes()))
                {
                    continue;
                }
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(r) = route {
            r.write_h1(out);
        }
    }
}

/// The fields of a ConfigMap's data (`add-headers`, `proxy-set-headers`,
/// `custom-headers`): header name to value. An entry that is not a valid
/// field, or names a framing or hop-by-hop one, is an error naming it; the
/// others apply.
pub fn fields_of(data: &BTreeMap<String, String>) -> (Vec<(HeaderName, HeaderValue)>, Vec<String>) {
    let mut fields = Vec::new();
    let mut errors = Vec::new();
    for (k, v) in data {
        let Ok(name) = HeaderName::from_bytes(k.trim().as_bytes()) else {
            errors.push(format!("{k:?} is not a header name"));
            continue;
        };
        if framing_or_hop_by_hop(&name) {
            errors.push(format!(
                "{k} frames the message or describes one hop: not set"
            ));
            continue;
        }
        match HeaderValue::from_str(v.trim()) {
            Ok(value) => fields.push((name, value)),
            Err(_) => errors.push(format!("the value of {k} is not a header value")),
        }
    }
    (fields, errors)
}

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

//! External authentication (`auth-url`), as ingress-nginx does it with
//! nginx's `auth_request`: before a request goes to the pod, a request
//! with its headers (and no body) goes to the auth service; 2xx lets it
//! through, 401 and 403 are the client's answer (401 may become a redirect
//! to `auth-signin`), anything else is a 500.
//!
//! The URLs may use the nginx variables ingress-nginx users write in them
//! (`https://$host/oauth2/auth`, `...?rd=$escaped_request_uri`); each is
//! filled in per request from the request.

use http::{HeaderName, Method};

/// The nginx variables an `auth-url` or `auth-signin` may use.
pub const VARIABLES: &[&str] = &[
    "escaped_request_uri",
    "host",
    "http_host",
    "remote_addr",
    "request_uri",
    "scheme",
];

/// One part of a URL template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The request's host, lowercase, without port.
    Host,
    /// The Host header as sent (with its port).
    HttpHost,
    Scheme,
    /// Path and query as sent.
    RequestUri,
    /// The same, percent-encoded for use as a query value.
    EscapedRequestUri,
    RemoteAddr,
}

/// A URL with nginx variables in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate(Vec<Part>);

/// What a request fills a template with.
pub struct Values<'a> {
    pub host: &'a str,
    pub http_host: &'a str,
    pub scheme: &'a str,
    pub request_uri: &'a str,
    pub remote_addr: &'a str,
}

impl UrlTemplate {
    /// Parses `s`; the result must be an absolute http(s) URL once
    /// filled. `Err` names what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, tail) = match after.strip_prefix('{') {
                Some(braced) => {
                    let end = braced.find('}').ok_or("an unclosed ${")?;
                    (&braced[..end], &braced[end + 1..])
                }
                None => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            let var = match name {
                "host" => Var::Host,
                "http_host" => Var::HttpHost,
                "scheme" => Var::Scheme,
                "request_uri" => Var::RequestUri,
                "escaped_request_uri" => Var::EscapedRequestUri,
                "remote_addr" => Var::RemoteAddr,
                other => {
                    return Err(format!(
                        "the variable ${other} is not one xingress fills in ({})",
                        VARIABLES.join(", ")
                    ));
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Var(var));
            rest = tail;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        let t = UrlTemplate(parts);
        // Filled with plausible values, it must be an absolute http(s) URL.
        let sample = t.fill(&Values {
            host: "example.com",
            http_host: "example.com:8080",
            scheme: "https",
            request_uri: "/a?b=c",
            remote_addr: "192.0.2.1",
        });
        let uri: http::Uri = sample
            .parse()
            .map_err(|_| "not an absolute http or https URL".to_string())?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(a)) if !a.host().is_empty() => Ok(t),
            _ => Err("not an absolute http or https URL".into()),
        }
    }

    pub fn uses(&self, var: Var) -> bool {
        self.0.contains(&Part::Var(var))
    }

    pub fn fill(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Host) => out.push_str(v.host),
                Part::Var(Var::HttpHost) => out.push_str(v.http_host),
                Part::Var(Var::Scheme) => out.push_str(v.scheme),
                Part::Var(Var::RequestUri) => out.push_str(v.request_uri),
                Part::Var(Var::EscapedRequestUri) => escape_component(v.request_uri, &mut out),
                Part::Var(Var::RemoteAddr) => out.push_str(v.remote_addr),
            }
        }
        out
    }
}

/// Percent-encodes all but unreserved characters (RFC 3986), so the value
/// can sit in a query parameter.
pub fn escape_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// An Ingress's `auth-*` settings for an external auth service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalAuth {
    /// `auth-url`.
    pub url: UrlTemplate,
    /// `auth-method` (GET by default).
    pub method: Method,
    /// `auth-signin`: where a 401 sends the browser instead.
    pub signin: Option<UrlTemplate>,
    /// `auth-signin-redirect-param` (`rd`): added to the sign-in URL with
    /// the original URL, unless the URL already has it.
    pub redirect_param: String,
    /// `auth-response-headers`: copied from the auth service's 2xx answer
    /// to the request the pod gets (and never taken from the client).
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the auth request's X-Auth-Request-Redirect
    /// (the request URI by default).
    pub request_redirect: Option<String>,
}

impl ExternalAuth {
    /// The sign-in redirect for a 401: the template filled, and the
    /// original URL in the redirect parameter unless already there.
    pub fn signin_location(&self, v: &Values<'_>) -> Option<String> {
        let mut url = self.signin.as_ref()?.fill(v);
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let has_param = query
            .split('&')
            .any(|kv| kv.split('=').next() == Some(&self.redirect_param));
        if !has_param {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&self.redirect_param);
            url.push('=');
            let original = format!("{}://{}{}", v.scheme, v.http_host, v.request_uri);
            escape_component(&original, &mut url);
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            host: "app.test",
            http_host: "App.test:8443",
            scheme: "https",
            request_uri: "/a b?x=1&y=ü",
            remote_addr: "192.0.2.9",
        }
    }

    #[test]
    fn templates_fill_nginx_variables() {
        let t = UrlTemplate::parse(
            "https://$host/oauth2/auth?from=${remote_addr}&u=$escaped_request_uri",
        )
        .unwrap();
        assert_eq!(
            t.fill(&values()),
            "https://app.test/oauth2/auth?from=192.0.2.9&u=%2Fa%20b%3Fx%3D1%26y%3D%C3%BC"
        );
        let plain = UrlTemplate::parse("http://auth.auth.svc:4180/check").unwrap();
        assert_eq!(plain.fill(&values()), "http://auth.auth.svc:4180/check");
    }

    #[test]
    fn templates_refuse_what_they_cannot_fill_or_send() {
        for (bad, says) in [
            (
                "https://$host/$cookie_x",
                "$cookie_x is not one xingress fills in",
            ),
            ("https://${host/x", "unclosed"),
            ("ftp://auth/x", "absolute http"),
            ("/relative", "absolute http"),
            ("https:///nohost", "absolute http"),
            ("http://auth test/x", "absolute http"),
        ] {
            let e = UrlTemplate::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn signin_gets_the_original_url_unless_it_names_one() {
        let auth = |signin: &str| ExternalAuth {
            url: UrlTemplate::parse("http://auth/").unwrap(),
            method: Method::GET,
            signin: Some(UrlTemplate::parse(signin).unwrap()),
            redirect_param: "rd".into(),
            response_headers: vec![],
            request_redirect: None,
        };
        assert_eq!(
            auth("https://$host/oauth2/start")
                .signin_location(&values())
                .unwrap(),
            "https://app.test/oauth2/start?rd=https%3A%2F%2FApp.test%3A8443%2Fa%20b%3Fx%3D1%26y%3D%C3%BC"
        );
        assert_eq!(
            auth("https://login.test/start?a=1")
                .signin_location(&values())
                .unwrap(),
            "https://login.test/start?a=1&rd=https%3A%2F%2FApp.test%3A8443%2Fa%20b%3Fx%3D1%26y%3D%C3%BC"
        );
        assert_eq!(
            auth("https://$host/oauth2/start?rd=$escaped_request_uri")
                .signin_location(&values())
                .unwrap(),
            "https://app.test/oauth2/start?rd=%2Fa%20b%3Fx%3D1%26y%3D%C3%BC"
        );
    }
}

//! External authentication (`auth-url`), as ingress-nginx does it with
//! nginx's `auth_request`: before a request goes to the pod, a request
//! with its headers (and no body) goes to the auth service; 2xx lets it
//! through, 401 and 403 are the client's answer (401 may become a redirect
//! to `auth-signin`), anything else is a 500.
//!
//! The URLs may use the nginx variables ingress-nginx users write in them
//! (`https://$host/oauth2/auth`, `...?rd=$escaped_request_uri`); each is
//! filled in per request from the request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

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

#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// `$http_NAME` (cache keys only): a request header, `_` for `-`.
    Header(http::HeaderName),
    /// `$cookie_NAME` (cache keys only).
    Cookie(String),
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
    pub headers: &'a http::HeaderMap,
}

impl UrlTemplate {
    /// Parses `s`; the result must be an absolute http(s) URL once
    /// filled. `Err` names what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = UrlTemplate(parts(s, false)?);
        // Filled with plausible values, it must be an absolute http(s) URL.
        let sample = t.fill(&Values {
            host: "example.com",
            http_host: "example.com:8080",
            scheme: "https",
            request_uri: "/a?b=c",
            remote_addr: "192.0.2.1",
            headers: &http::HeaderMap::new(),
        });
        let uri: http::Uri = sample
            .parse()
            .map_err(|_| "not an absolute http or https URL".to_string())?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(a)) if !a.host().is_empty() => Ok(t),
            _ => Err("not an absolute http or https URL".into()),
        }
    }
}

/// Splits `s` into text and nginx variables; request headers and cookies
/// (`$http_*`, `$cookie_*`) only when `headers` allows them.
fn parts(s: &str, headers: bool) -> Result<Vec<Part>, String> {
    {
        let mut parts = Vec::new();
        for t in super::template::tokens(s)? {
            let name = match t {
                super::template::Token::Text(text) => {
                    parts.push(Part::Text(text.to_string()));
                    continue;
                }
                super::template::Token::Var(name) => name,
            };
            let var = match name {
                "host" => Var::Host,
                "http_host" => Var::HttpHost,
                "scheme" => Var::Scheme,
                "request_uri" => Var::RequestUri,
                "escaped_request_uri" => Var::EscapedRequestUri,
                "remote_addr" => Var::RemoteAddr,
                other if headers && other.starts_with("http_") => Var::Header(
                    http::HeaderName::from_bytes(
                        other["http_".len()..].replace('_', "-").as_bytes(),
                    )
                    .map_err(|_| format!("${other} names no header"))?,
                ),
                other
                    if headers && other.starts_with("cookie_") && other.len() > "cookie_".len() =>
                {
                    Var::Cookie(other["cookie_".len()..].to_string())
                }
                other => {
                    return Err(format!(
                        "the variable ${other} is not one xingress fills in ({})",
                        VARIABLES.join(", ")
                    ));
                }
            };
            parts.push(Part::Var(var));
        }
        Ok(parts)
    }
}

fn fill(parts: &[Part], v: &Values<'_>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Var(Var::Host) => out.push_str(v.host),
            Part::Var(Var::HttpHost) => out.push_str(v.http_host),
            Part::Var(Var::Scheme) => out.push_str(v.scheme),
            Part::Var(Var::RequestUri) => out.push_str(v.request_uri),
            Part::Var(Var::EscapedRequestUri) => escape_component(v.request_uri, &mut out),
            Part::Var(Var::RemoteAddr) => out.push_str(v.remote_addr),
            Part::Var(Var::Header(name)) => {
                // All fields of the name, as nginx joins them.
                for (i, value) in v.headers.get_all(name).iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&String::from_utf8_lossy(value.as_bytes()));
                }
            }
            Part::Var(Var::Cookie(name)) => {
                let fields = v.headers.get_all(http::header::COOKIE).iter();
                if let Some(value) =
                    super::cookie_value(fields.map(http::HeaderValue::as_bytes), name)
                {
                    out.push_str(&String::from_utf8_lossy(value));
                }
            }
        }
    }
    out
}

impl UrlTemplate {
    pub fn uses(&self, var: Var) -> bool {
        self.0.contains(&Part::Var(var))
    }

    pub fn fill(&self, v: &Values<'_>) -> String {
        fill(&self.0, v)
    }
}

/// `auth-cache-key` and `auth-cache-duration`: the auth service's answers
/// kept per key (a template of request variables, headers and cookies),
/// for as long as the duration of their status says.
#[derive(Debug)]
pub struct AuthCache {
    key: Vec<Part>,
    /// Status → how long its answers are kept.
    durations: Vec<(u16, Duration)>,
    entries: Mutex<HashMap<String, (Instant, Cached)>>,
}

/// A kept answer: its status, and the headers that matter for it (the
/// `auth-response-headers` of a 2xx, the challenge of a 401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub status: u16,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Kept answers per Ingress; the oldest half is dropped past this.
const CACHE_CAP: usize = 10_000;

impl PartialEq for AuthCache {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.durations == other.durations
    }
}

impl Eq for AuthCache {}

impl AuthCache {
    /// ingress-nginx's default `auth-cache-duration`.
    pub const DEFAULT_DURATION: &str = "200 202 401 5m";

    /// `key` as `auth-cache-key`, `durations` as `auth-cache-duration`
    /// (`STATUS... TIME`, groups separated by commas; TIME in s, m, h or d).
    pub fn parse(key: &str, durations: &str) -> Result<Self, String> {
        let key = parts(key, true)?;
        if key.is_empty() {
            return Err("an empty auth-cache-key".into());
        }
        let mut out = Vec::new();
        for group in durations.split(',') {
            let words: Vec<&str> = group.split_whitespace().collect();
            let Some((time, statuses)) = words.split_last() else {
                continue;
            };
            let time = parse_time(time)
                .ok_or_else(|| format!("{time:?} is not a time like 30s, 5m or 1h"))?;
            if statuses.is_empty() {
                return Err(format!("{group:?} names no status"));
            }
            for s in statuses {
                match s.parse::<u16>() {
                    Ok(code) if (200..300).contains(&code) || code == 401 || code == 403 => {
                        out.push((code, time));
                    }
                    _ => return Err(format!("{s:?} is not a 2xx, 401 or 403 status")),
                }
            }
        }
        if out.is_empty() {
            return Err(format!("{durations:?} keeps nothing"));
        }
        Ok(AuthCache {
            key,
            durations: out,
            entries: Mutex::new(HashMap::new()),
        })
    }

    pub fn key(&self, v: &Values<'_>) -> String {
        fill(&self.key, v)
    }

    /// The answer kept for `key`, if it has not expired by `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, c)| c.clone())
    }

    /// Keeps `answer` under `key` if its status has a duration.
    pub fn put(&self, key: String, answer: Cached, now: Instant) {
        let Some(&(_, keep)) = self.durations.iter().find(|(s, _)| *s == answer.status) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_CAP {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= CACHE_CAP {
                entries.clear();
            }
        }
        entries.insert(key, (now + keep, answer));
    }
}

/// An nginx time: a number and s, m, h or d (seconds without a unit).
fn parse_time(v: &str) -> Option<Duration> {
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c),
        _ => (v, 's'),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
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
    /// `auth-cache-key` / `auth-cache-duration`.
    pub cache: Option<Arc<AuthCache>>,
    /// `auth-snippet`: header edits of the auth request.
    pub snippet: Option<Arc<super::snippet::Snippet>>,
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
            headers: Box::leak(Box::new(http::HeaderMap::new())),
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
            cache: None,
            snippet: None,
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

    #[test]
    fn cache_keys_read_headers_and_cookies() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer t1".parse().unwrap());
        headers.append("cookie", "a=1; _oauth2_proxy=s3cret".parse().unwrap());
        let v = Values {
            headers: Box::leak(Box::new(headers)),
            ..values()
        };
        let c = AuthCache::parse(
            "$http_authorization|${cookie__oauth2_proxy}|$host",
            "200 1m",
        )
        .unwrap();
        assert_eq!(c.key(&v), "Bearer t1|s3cret|app.test");
        // Headers and cookies are for cache keys only.
        assert!(UrlTemplate::parse("http://auth/$http_authorization").is_err());
    }

    #[test]
    fn cache_durations_follow_nginx_and_answers_expire() {
        let c = AuthCache::parse("$remote_addr", AuthCache::DEFAULT_DURATION).unwrap();
        assert_eq!(
            c.durations,
            [
                (200, Duration::from_secs(300)),
                (202, Duration::from_secs(300)),
                (401, Duration::from_secs(300))
            ]
        );
        let c = AuthCache::parse("$remote_addr", "200 202 10m, 401 30s").unwrap();
        assert_eq!(c.durations[2], (401, Duration::from_secs(30)));
        for bad in ["200", "500 5m", "200 5x", "", "200 0s", "1h"] {
            assert!(AuthCache::parse("$remote_addr", bad).is_err(), "{bad:?}");
        }
        assert!(AuthCache::parse("", "200 1m").is_err());

        let now = Instant::now();
        let ok = Cached {
            status: 200,
            headers: vec![],
        };
        c.put("k".into(), ok.clone(), now);
        assert_eq!(c.get("k", now + Duration::from_secs(599)), Some(ok));
        assert_eq!(c.get("k", now + Duration::from_secs(600)), None);
        assert_eq!(c.get("other", now), None);
        // A 403 has no duration here: never kept, always asked again.
        c.put(
            "f".into(),
            Cached {
                status: 403,
                headers: vec![],
            },
            now,
        );
        assert_eq!(c.get("f", now), None);
    }
}

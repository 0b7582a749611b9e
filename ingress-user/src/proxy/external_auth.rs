//! `auth-url`: the auth service is asked before the pod (nginx's
//! `auth_request`, with ingress-nginx's headers).

use std::time::{Duration, Instant};

use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri,
    header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, WWW_AUTHENTICATE},
};
use hyper::body::Incoming;

use super::{Proxy, ProxyBody, ProxyError, body::RequestBody, headers, headers::Downstream};
use crate::model::{
    BackendProtocol, ExternalAuth, HOST_BUF_LEN,
    external_auth::{Cached, Values},
    normalize_host,
};

const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
const X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

impl Proxy {
    /// Asks `auth` about `req`, within `timeout`. `None`: on to the pod
    /// (with the `auth-response-headers` in `req`); `Some`: the client's
    /// answer (401, or the sign-in redirect). Fails (403, or 500 when the
    /// service cannot be reached or answers anything but 2xx, 401 or 403).
    pub(super) async fn external_auth(
        &self,
        auth: &ExternalAuth,
        down: &Downstream,
        req: &mut Request<Incoming>,
        timeout: Duration,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        let http_host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_string();
        let mut buf = [0u8; HOST_BUF_LEN];
        let host = normalize_host(&http_host, &mut buf)
            .unwrap_or("")
            .to_string();
        let request_uri = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let remote_addr = down.client.ip().to_string();
        let values = Values {
            host: &host,
            http_host: &http_host,
            scheme: if down.tls { "https" } else { "http" },
            request_uri: &request_uri,
            remote_addr: &remote_addr,
            headers: req.headers(),
        };
        let cache_key = auth.cache.as_ref().map(|c| c.key(&values));
        if let (Some(cache), Some(key)) = (&auth.cache, &cache_key)
            && let Some(kept) = cache.get(key, Instant::now())
        {
            let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::FORBIDDEN);
            let mut headers = HeaderMap::new();
            for (name, value) in kept.headers {
                headers.append(name, value);
            }
            let signin = (status == StatusCode::UNAUTHORIZED)
                .then(|| auth.signin_location(&values))
                .flatten();
            return verdict(auth, status, &headers, signin, req, "the kept answer");
        }
        let url = auth.url.fill(&values);
        let uri: Uri = url
            .parse()
            .map_err(|_| ProxyError::AuthService(format!("auth-url became {url:?}")))?;
        let protocol = match uri.scheme_str() {
            Some("https") => BackendProtocol::Https,
            _ => BackendProtocol::Http,
        };
        let authority = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| ProxyError::AuthService(format!("auth-url {url:?} has no host")))?;

        // The client's headers, no body, and what ingress-nginx adds.
        let mut h = req.headers().clone();
        headers::strip_hop_by_hop(&mut h);
        for name in [CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT] {
            h.remove(name);
        }
        let value = |s: &str| HeaderValue::from_str(s).ok();
        h.insert(HOST, authority);
        let original = format!("{}://{}{}", values.scheme, http_host, request_uri);
        for (name, v) in [
            (X_ORIGINAL_URL, value(&original)),
            (X_ORIGINAL_METHOD, value(req.method().as_str())),
            (X_SENT_FROM, Some(HeaderValue::from_static("xingress"))),
            (X_REAL_IP, value(&remote_addr)),
            (X_FORWARDED_FOR, value(&remote_addr)),
            (X_FORWARDED_PROTO, value(values.scheme)),
            (
                X_AUTH_REQUEST_REDIRECT,
                value(auth.request_redirect.as_deref().unwrap_or(&request_uri)),
            ),
        ] {
            match v {
                Some(v) => h.insert(name, v),
                None => h.remove(name),
            };
        }
        // `auth-snippet`: its request header edits, last.
        if let Some(snippet) = &auth.snippet {
            let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
            let cookie = |name: &str| {
                let fields = req.headers().get_all(http::header::COOKIE).iter();
                super::cookie_value(fields.map(HeaderValue::as_bytes), name)
            };
            let mut out = crate::model::snippet::Outcome::default();
            snippet.run(
                &crate::model::snippet::Input {
                    method: req.method().as_str(),
                    host: &host,
                    path: req.uri().path(),
                    query: req.uri().query(),
                    request_uri: &request_uri,
                    client: down.client.ip(),
                    tls: down.tls,
                    header: &header,
                    cookie: &cookie,
                },
                &mut out,
            );
            out.request.apply(&mut h, None);
        }
        let mut ask = Request::new(RequestBody::Empty);
        *ask.method_mut() = auth.method.clone();
        *ask.uri_mut() = uri;
        *ask.headers_mut() = h;
        let answer = self
            .upstream
            .send(protocol, &Default::default(), ask, timeout)
            .await
            .map_err(|e| ProxyError::AuthService(format!("{url}: {e}")))?;
        let status = answer.status();
        let signin = (status == StatusCode::UNAUTHORIZED)
            .then(|| auth.signin_location(&values))
            .flatten();
        if let (Some(cache), Some(key)) = (&auth.cache, cache_key) {
            let kept: &[HeaderName] = if status.is_success() {
                &auth.response_headers
            } else {
                std::slice::from_ref(&WWW_AUTHENTICATE)
            };
            let headers = kept
                .iter()
                .flat_map(|n| {
                    answer
                        .headers()
                        .get_all(n)
                        .iter()
                        .map(|v| (n.clone(), v.clone()))
                })
                .collect();
            let kept = Cached {
                status: status.as_u16(),
                headers,
            };
            cache.put(key, kept, Instant::now());
        }
        verdict(auth, status, answer.headers(), signin, req, &url)
    }
}

/// The verdict of an auth service's answer (live or kept): `None` on to
/// the pod with the `auth-response-headers` copied into `req`; `Some` the
/// client's 401 or sign-in redirect; `Err` 403, or 500 for anything else.
fn verdict(
    auth: &ExternalAuth,
    status: StatusCode,
    headers: &HeaderMap,
    signin: Option<String>,
    req: &mut Request<Incoming>,
    from: &str,
) -> Result<Option<Response<ProxyBody>>, ProxyError> {
    if status.is_success() {
        // Only the auth service speaks for these: a client's own values
        // never reach the pod.
        for name in &auth.response_headers {
            req.headers_mut().remove(name);
            for v in headers.get_all(name) {
                req.headers_mut().append(name, v.clone());
            }
        }
        return Ok(None);
    }
    match status {
        StatusCode::UNAUTHORIZED => match signin {
            Some(location) => {
                let location = HeaderValue::from_str(&location).map_err(|_| {
                    ProxyError::AuthService(format!("auth-signin became {location:?}"))
                })?;
                Ok(Some(super::redirect(StatusCode::FOUND, location)))
            }
            None => {
                let mut resp = super::error_response(&ProxyError::Unauthorized(None));
                if let Some(challenge) = headers.get(WWW_AUTHENTICATE) {
                    resp.headers_mut()
                        .insert(WWW_AUTHENTICATE, challenge.clone());
                }
                Ok(Some(resp))
            }
        },
        StatusCode::FORBIDDEN => Err(ProxyError::AuthForbidden),
        other => Err(ProxyError::AuthService(format!(
            "{from} answered {other}, not 2xx, 401 or 403"
        ))),
    }
}

//! Responses the proxy writes itself on hyper's path: redirects, CORS
//! preflights, a snippet's `return`, and error pages.

use super::*;

/// The body of a redirect the proxy answers itself.
pub(super) fn redirect_body(status: StatusCode) -> &'static [u8] {
    match status {
        StatusCode::MOVED_PERMANENTLY => b"301 moved permanently\n",
        StatusCode::FOUND => b"302 found\n",
        StatusCode::SEE_OTHER => b"303 see other\n",
        StatusCode::TEMPORARY_REDIRECT => b"307 temporary redirect\n",
        StatusCode::PERMANENT_REDIRECT => b"308 permanent redirect\n",
        _ => b"redirect\n",
    }
}

/// A snippet's `return`: a 3xx with its URL as Location, else its text
/// as a text/plain body (nginx would send its default type, text/html: a
/// body echoing a request's variables must not become a page), with the
/// snippet's response edits.
pub(super) fn snippet_reply(
    code: u16,
    text: &[u8],
    edit: &crate::model::snippet::Edit,
) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let location = matches!(code, 301 | 302 | 303 | 307 | 308)
        .then(|| HeaderValue::from_bytes(text).ok())
        .flatten();
    let mut resp = match location {
        Some(l) => redirect(status, l),
        None => {
            let mut resp = Response::new(Either::Right(Full::new(Bytes::copy_from_slice(text))));
            *resp.status_mut() = status;
            if !text.is_empty() {
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            headers::ensure_server(resp.headers_mut());
            resp
        }
    };
    edit.apply(resp.headers_mut(), Some(code));
    resp
}

/// 204 to a CORS preflight, with its Access-Control headers.
pub(super) fn preflight(access_control: http::HeaderMap) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    *resp.headers_mut() = access_control;
    headers::ensure_server(resp.headers_mut());
    resp
}

pub(super) fn redirect(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let body = Bytes::from_static(redirect_body(status));
    let mut resp = Response::new(Either::Right(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(LOCATION, location);
    headers::ensure_server(resp.headers_mut());
    resp
}

pub(super) fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        e.body().as_bytes(),
    ))));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let ProxyError::Unauthorized(Some(challenge)) = e {
        h.insert(http::header::WWW_AUTHENTICATE, challenge.clone());
    }
    headers::ensure_server(h);
    resp
}

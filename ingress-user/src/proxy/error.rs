//! Proxy errors: where each came from decides its status code.

use http::StatusCode;

pub use crate::metrics::ErrorSource;
use crate::model::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no snapshot is live yet")]
    NotReady,
    #[error("no rule matches and there is no default backend")]
    NoRoute,
    #[error("backend: {0:?}")]
    Backend(BackendError),
    #[error("invalid request: {0}")]
    BadRequest(&'static str),
    #[error("source not in the allow list")]
    Forbidden,
    #[error("upstream connect failed: {0}")]
    UpstreamConnect(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream failed: {0}")]
    Upstream(String),
    #[error("request body larger than {0} bytes (proxy-body-size)")]
    BodyTooLarge(u64),
    #[error("client body: {0}")]
    ClientBody(String),
    #[error("client body: nothing arrived for {0:?} (client-body-timeout)")]
    ClientBodyTimeout(std::time::Duration),
    #[error("request head larger than the limit")]
    HeadTooLarge,
    #[error("transfer coding not implemented")]
    NotImplemented,
    #[error("per-source limit: {0:?}")]
    Limited(crate::limit::Limited, StatusCode),
    #[error("client certificate: {0:?}")]
    ClientCert(CertRefusal),
    /// No or wrong credentials for a route with `auth-type: basic`; the
    /// value is the route's `WWW-Authenticate` challenge.
    #[error("authentication required")]
    Unauthorized(Option<http::HeaderValue>),
    /// The `auth-url` service refused the request (403).
    #[error("the auth service refused the request")]
    AuthForbidden,
    /// The `auth-url` service failed or gave an answer that is not 2xx,
    /// 401 or 403: 500, as nginx's `auth_request`.
    #[error("auth service: {0}")]
    AuthService(String),
}

/// Why a route that asks for client certificates (`auth-tls-*`) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRefusal {
    /// `auth-tls-verify-client: on` and the client sent none (nginx's 400).
    Missing,
    /// The connection's handshake was for another host (HTTP/2 connection
    /// reuse, or a Host that differs from the SNI): 421, so that the client
    /// opens a connection for this host.
    Misdirected,
    /// Plain HTTP to a route that needs a certificate.
    NotTls,
    /// The certificate's subject does not match `auth-tls-match-cn`.
    Subject,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Backend(BackendError::Invalid) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::UpstreamConnect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            // ingress-nginx's default limit-req-status-code and limit-conn-status-code.
            // limit-req-status-code / limit-conn-status-code (503).
            ProxyError::Limited(_, status) => *status,
            ProxyError::ClientCert(CertRefusal::Missing) => StatusCode::BAD_REQUEST,
            ProxyError::ClientCert(CertRefusal::Misdirected) => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::ClientCert(CertRefusal::NotTls | CertRefusal::Subject) => {
                StatusCode::FORBIDDEN
            }
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::AuthForbidden => StatusCode::FORBIDDEN,
            ProxyError::AuthService(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn source(&self) -> ErrorSource {
        match self {
            ProxyError::NoRoute
            | ProxyError::BadRequest(_)
            | ProxyError::Forbidden
            | ProxyError::BodyTooLarge(_)
            | ProxyError::ClientBody(_)
            | ProxyError::ClientBodyTimeout(_)
            | ProxyError::HeadTooLarge
            | ProxyError::NotImplemented
            | ProxyError::Limited(..)
            | ProxyError::ClientCert(_)
            | ProxyError::Unauthorized(_)
            | ProxyError::AuthForbidden => ErrorSource::Client,
            ProxyError::UpstreamConnect(_)
            | ProxyError::AuthService(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::Upstream(_) => ErrorSource::Upstream,
            ProxyError::NotReady | ProxyError::Backend(_) => ErrorSource::Internal,
        }
    }

    /// Short body text for the error page.
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::NotReady => "503 not ready: no routing snapshot yet\n",
            ProxyError::NoRoute => "404 not found: no Ingress rule matches this host and path\n",
            ProxyError::Backend(BackendError::NoEndpoints) => {
                "503 service unavailable: the backend Service has no ready endpoints\n"
            }
            ProxyError::Backend(BackendError::MissingService) => {
                "503 service unavailable: the backend Service does not exist\n"
            }
            ProxyError::Backend(BackendError::Invalid) => {
                "500 internal server error: the route's backend reference is not valid\n"
            }
            ProxyError::Backend(BackendError::Unsupported) => {
                "503 service unavailable: this route's configuration is not supported\n"
            }
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => "400 bad request\n",
            ProxyError::BodyTooLarge(_) => "413 request entity too large\n",
            ProxyError::ClientBodyTimeout(_) => "408 request timeout\n",
            ProxyError::Forbidden => "403 forbidden: your address may not use this host\n",
            ProxyError::UpstreamConnect(_) | ProxyError::Upstream(_) => "502 bad gateway\n",
            ProxyError::UpstreamTimeout => "504 gateway timeout\n",
            ProxyError::HeadTooLarge => "431 request header fields too large\n",
            ProxyError::NotImplemented => "501 not implemented: unsupported transfer coding\n",
            ProxyError::Limited(_, status) => match status.as_u16() {
                503 => "503 service unavailable: too many requests from your address\n",
                429 => "429 too many requests from your address\n",
                _ => "too many requests from your address\n",
            },
            ProxyError::ClientCert(CertRefusal::Missing) => {
                "400 bad request: no required SSL certificate was sent\n"
            }
            ProxyError::ClientCert(CertRefusal::Misdirected) => {
                "421 misdirected request: this connection was not made for this host\n"
            }
            ProxyError::ClientCert(CertRefusal::NotTls) => {
                "403 forbidden: this host needs a client certificate over HTTPS\n"
            }
            ProxyError::ClientCert(CertRefusal::Subject) => {
                "403 forbidden: this client certificate's subject may not use this host\n"
            }
            ProxyError::Unauthorized(_) => "401 authorization required\n",
            ProxyError::AuthForbidden => "403 forbidden\n",
            ProxyError::AuthService(_) => {
                "500 internal server error: the authentication service failed\n"
            }
        }
    }
}

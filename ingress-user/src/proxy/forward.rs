//! hyper's transport: carries a plan out on a `Request` (header edits,
//! rewrites, client certificates, tracing, buffering), sends it with retries
//! on the next pod, and filters the response (error pages, CORS, cookies);
//! mirrors; WebSocket and other upgrades.

use super::*;

impl Proxy {
    /// Filter the request, forward it to the target's peer, filter the
    /// response. A refused connection is retried on another endpoint when
    /// the request is idempotent and has no body (so nothing was consumed).
    /// Forwards, after asking the route's auth service if it has one.
    pub(super) async fn authorized_forward(
        &self,
        down: &Downstream,
        mut req: Request<Incoming>,
        mut target: Target,
        record: Option<&mut access_log::Record>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let auth = target.changes.as_mut().and_then(|c| c.external_auth.take());
        if let Some(auth) = auth
            && let Some(answer) = self
                .external_auth(&auth, down, &mut req, target.read_timeout)
                .await?
        {
            return Ok(answer);
        }
        self.forward(down, req, target, record).await
    }

    pub(super) async fn forward(
        &self,
        down: &Downstream,
        mut req: Request<Incoming>,
        mut target: Target,
        mut record: Option<&mut access_log::Record>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let protocol = target.backend.protocol;
        // `proxy-http-version: "1.0"` for plain and TLS HTTP/1 pods.
        let version = match upstream_version(protocol) {
            Version::HTTP_11 if target.http10 => Version::HTTP_10,
            v => v,
        };
        if let Some(limit) = target.body_limit
            && content_length(&req).is_some_and(|n| n > limit)
        {
            return Err(ProxyError::BodyTooLarge(limit));
        }
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

        // Same target, method and body; hop-by-hop headers out,
        // X-Forwarded-* in.
        // The request's host as `request_host` chose it when routing: the
        // target's authority, else Host (a clone, not a copy).
        let host_header = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(HOST).cloned(),
        };
        let (mut parts, body) = req.into_parts();
        // `proxy-request-buffering: on`: the body read whole first.
        let request_buffer = target.changes.as_ref().and_then(|c| c.request_buffer);
        let (spool, body) = match request_buffer {
            Some(memory) if upgrade.is_none() && !hyper::body::Body::is_end_stream(&body) => {
                let spool = spool::Spool::read(
                    body,
                    target.body_limit,
                    memory as usize,
                    &std::env::temp_dir(),
                    self.snapshots
                        .load()
                        .table
                        .client_body_timeout
                        .unwrap_or(std::time::Duration::from_secs(60)),
                )
                .await
                .map_err(|e| match e {
                    spool::SpoolError::Body(body::RequestBodyError::TooLarge(n)) => {
                        ProxyError::BodyTooLarge(n)
                    }
                    spool::SpoolError::Timeout(t) => ProxyError::ClientBodyTimeout(t),
                    spool::SpoolError::Body(e) => ProxyError::ClientBody(e.to_string()),
                    e @ spool::SpoolError::File(..) => ProxyError::Upstream(e.to_string()),
                })?;
                parts.headers.remove(http::header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(spool.len()));
                (Some(spool), None)
            }
            _ => (None, Some(body)),
        };
        headers::to_pod(
            &mut parts.headers,
            down,
            host_header,
            &self.client_address(),
        );
        if let Some(r) = record.as_deref_mut()
            && r.request_id.is_none()
        {
            r.request_id = parts
                .headers
                .get(&headers::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(Into::into);
        }
        let changes = target.changes.take().map(|c| *c).unwrap_or_default();
        if let Some(host) = changes.host {
            parts.headers.insert(HOST, host);
        }
        if let Some(prefix) = changes.forwarded_prefix {
            parts.headers.insert(headers::X_FORWARDED_PREFIX, prefix);
        }
        if let Some(edit) = changes
            .filters
            .as_ref()
            .and_then(|f| f.request_headers.as_ref())
        {
            edit.apply(&mut parts.headers);
        }
        if let Some(edit) = target.edits.as_ref().and_then(|e| e.request.as_ref()) {
            edit.apply(&mut parts.headers);
        }
        if let Some((edit, _)) = &changes.snippet {
            edit.apply(&mut parts.headers, None);
        }
        if let Some(c) = changes.client_cert {
            // Only the proxy speaks for the client's certificate.
            for name in headers::SSL_CLIENT {
                parts.headers.remove(name);
            }
            parts.headers.insert(headers::SSL_CLIENT_VERIFY, c.verify);
            if let Some(cert) = c.cert {
                parts.headers.insert(headers::SSL_CLIENT_CERT, cert);
            }
            if let Some(subject) = c.subject {
                parts
                    .headers
                    .insert(headers::SSL_CLIENT_SUBJECT_DN, subject);
            }
        }
        if let Some(proto) = &upgrade {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, proto.clone());
        }
        let tls = matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls);
        let original_uri = match changes
            .rewritten
            .or(target.normalized.take().map(String::from))
        {
            Some(r) => r
                .parse::<Uri>()
                .map_err(|_| ProxyError::BadRequest("rewrite-target made an invalid target"))?,
            None => std::mem::take(&mut parts.uri),
        };
        // `enable-opentelemetry`: our span, and the pod's traceparent.
        let span = changes.otel.as_ref().map(|(route, export, rule_path)| {
            let host = parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let svc = &target.backend.service;
            let ingress = target.ingress.as_deref();
            let span = otel::Span::start(
                route,
                export,
                &parts.headers,
                &otel::SpanInput {
                    method: parts.method.as_str(),
                    path: original_uri.path(),
                    scheme: if down.tls { "https" } else { "http" },
                    host,
                    client: down.client.ip(),
                    user_agent: parts
                        .headers
                        .get(http::header::USER_AGENT)
                        .and_then(|v| v.to_str().ok()),
                    rule_path,
                    namespace: &svc.namespace,
                    ingress: ingress.map_or("", |i| i.name.as_str()),
                    service: &svc.name,
                },
            );
            parts.headers.insert(otel::TRACEPARENT, span.traceparent());
            if !route.trust_incoming {
                parts.headers.remove(otel::TRACESTATE);
            }
            (span, export.clone())
        });
        parts.uri = upstream_uri(&target.peer, tls, &original_uri)?;
        parts.version = version;
        // What the error backend is told of the request, should the pod's
        // answer be one of `custom-http-errors`.
        let error_ask = changes.error_pages.as_ref().map(|_| ErrorAsk {
            // Path and query only (HTTP/2 requests carry the authority too).
            uri: original_uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone())),
            host: parts.headers.get(HOST).cloned(),
            accept: parts.headers.get(http::header::ACCEPT).cloned(),
            request_id: parts.headers.get(&headers::X_REQUEST_ID).cloned(),
        });
        // Requests with a body are not mirrored, spooled ones neither.
        if let Some(f) = changes.filters.as_ref().filter(|_| spool.is_none()) {
            self.mirror(
                &f.mirrors,
                &parts,
                &original_uri,
                body.as_ref(),
                target.read_timeout,
            );
        }
        // Retries (`proxy-next-upstream`): a bodiless request can be built
        // again for another endpoint; one with a body only while the body
        // is unread (the connection failed).
        // A spooled body can be sent again, like none.
        let bodiless =
            body.as_ref().is_none_or(hyper::body::Body::is_end_stream) && upgrade.is_none();
        let policy = target.policy();
        let first = match &target.peer {
            Peer::Addr(a) => Some(*a),
            Peer::Name(..) => None,
        };
        let mut attempts = first.map(|a| {
            retry::Attempts::new(
                &target.backend,
                policy,
                a,
                bodiless,
                parts.method.is_idempotent(),
            )
        });
        let may_retry =
            first.is_some() && upgrade.is_none() && target.backend.ready_endpoints() > 1;
        let resend = may_retry.then(|| (parts.method.clone(), parts.headers.clone()));
        // A body is kept reclaimable: a request whose connection failed
        // never read it, and takes it to the next endpoint.
        let spooled = || -> Result<RequestBody, ProxyError> {
            match &spool {
                Some(s) => s.body().map(RequestBody::Spooled).map_err(|e| {
                    ProxyError::Upstream(format!("cannot read the buffered request body: {e}"))
                }),
                None => Ok(RequestBody::Empty),
            }
        };
        let (body, mut reclaim) = match body.map(|b| RequestBody::new(b, target.body_limit)) {
            None => (spooled()?, None),
            Some(b) if may_retry && !bodiless => {
                let (b, r) = b.reclaimable();
                (b, Some(r))
            }
            Some(b) => (b, None),
        };

        let mut via = target.via();
        via.keepalive = self.snapshots.load().table.upstream_keepalive;
        let sent = Instant::now();
        let mut result = self
            .upstream
            .send(
                protocol,
                &via,
                Request::from_parts(parts, body),
                target.read_timeout,
            )
            .await;
        let mut peer = first;
        let mut try_started = sent;
        while let Some(at) = peer {
            if let Some(r) = record.as_deref_mut() {
                r.tried(&at, answered(&result), try_started.elapsed());
            }
            let (case, sent_to_pod, why) = match &result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let (go_on, counts) = policy.on_status(status);
                    if counts {
                        self.health
                            .failed(at, policy, &format!("answered {status}"));
                    } else {
                        self.health.succeeded(at);
                    }
                    match UpstreamPolicy::status_case(status) {
                        Some(case) if go_on => (case, true, None),
                        _ => break,
                    }
                }
                Err(e @ ProxyError::UpstreamConnect(m)) => {
                    let case = if m.contains("timed out") {
                        NEXT_TIMEOUT
                    } else {
                        NEXT_ERROR
                    };
                    (case, false, Some(e.to_string()))
                }
                Err(e @ ProxyError::UpstreamTimeout) => (NEXT_TIMEOUT, true, Some(e.to_string())),
                Err(e @ ProxyError::Upstream(_)) => (NEXT_ERROR, true, Some(e.to_string())),
                Err(_) => break,
            };
            if let Some(why) = &why {
                self.health.failed(at, policy, why);
            }
            let (Some((method, headers)), Some(attempts)) = (&resend, attempts.as_mut()) else {
                break;
            };
            let Some(next) = attempts.next(case, sent_to_pod, &self.health) else {
                break;
            };
            let body = match &reclaim {
                None => spooled()?,
                // Unread: the pod never got it.
                Some(r) => match r.take_unsent() {
                    Some((body, again)) => {
                        reclaim = Some(again);
                        body
                    }
                    None => break,
                },
            };
            tracing::debug!(failed = %at, retry = %next, "trying another endpoint");
            self.metrics.upstream_retry();
            let mut req = Request::new(body);
            *req.method_mut() = method.clone();
            *req.uri_mut() = upstream_uri(&Peer::Addr(next), tls, &original_uri)?;
            *req.version_mut() = version;
            *req.headers_mut() = headers.clone();
            try_started = Instant::now();
            result = self
                .upstream
                .send(protocol, &via, req, target.read_timeout)
                .await;
            peer = Some(next);
        }
        if first.is_none()
            && let Some(r) = record
        {
            r.tried(&target.peer, answered(&result), sent.elapsed());
        }
        // The span ends with the response body, or here if none comes.
        let span = span.and_then(|(span, export)| {
            let upstream = peer.map(|p| p.to_string());
            let exporter = self.otel.get(&export);
            match &result {
                Ok(r) => Some(otel::PendingSpan::new(
                    span,
                    r.status().as_u16(),
                    upstream,
                    exporter,
                )),
                Err(e) => {
                    let (status, error) = (e.status().as_u16(), e.to_string());
                    if let Some(s) = span.end(Some(status), Some(&error), upstream.as_deref()) {
                        exporter.send(s);
                    }
                    None
                }
            }
        });
        let mut resp = result?;
        self.metrics.upstream_latency(sent.elapsed());
        if target.ewma
            && let Some(at) = peer
        {
            self.ewma.observe(at, try_started.elapsed());
        }
        if let (Some((pages, ingress)), Some(ask)) = (&changes.error_pages, &error_ask)
            && pages.codes.contains(&resp.status().as_u16())
        {
            let code = resp.status().as_u16();
            match self
                .error_page(
                    pages,
                    ingress,
                    &target.backend,
                    code,
                    ask,
                    target.read_timeout,
                )
                .await
            {
                Ok(page) => resp = page,
                Err(e) => {
                    tracing::debug!(code, backend = %pages.backend.service, "error backend failed, the pod's answer passes: {e}");
                }
            }
        }

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = client_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client, upstream, target.in_flight.take()));
            headers::ensure_server(resp.headers_mut());
            return Ok(resp.map(|b| Either::Left(ResponseBody::new(b, None, None).with_span(span))));
        }
        headers::strip_hop_by_hop(resp.headers_mut());
        headers::ensure_server(resp.headers_mut());
        if let Some(cookie) = &changes.set_cookie {
            resp.headers_mut()
                .append(http::header::SET_COOKIE, cookie.clone());
        }
        for edit in target.edits.iter().flat_map(|e| e.response()) {
            edit.apply(resp.headers_mut());
        }
        if let Some((_, edit)) = &changes.snippet {
            let status = resp.status().as_u16();
            edit.apply(resp.headers_mut(), Some(status));
        }
        if let Some(cors) = &changes.cors {
            // Ours replace the pod's (nginx's more_set_headers); Vary adds.
            for (name, value) in cors {
                if name == http::header::VARY {
                    resp.headers_mut().append(name, value.clone());
                } else {
                    resp.headers_mut().insert(name, value.clone());
                }
            }
        }
        let in_flight = target.in_flight.take();
        let read_timeout = Some(target.read_timeout);
        let response_buffer = changes.response_buffer;
        Ok(resp.map(|b| {
            let body = ResponseBody::new(b, in_flight, read_timeout).with_span(span);
            Either::Left(match response_buffer {
                Some(cap) => body.read_ahead(cap as usize),
                None => body,
            })
        }))
    }
}

/// What `custom-http-errors`' backend is told of the request.
pub(super) struct ErrorAsk {
    pub(super) uri: Uri,
    pub(super) host: Option<HeaderValue>,
    pub(super) accept: Option<HeaderValue>,
    pub(super) request_id: Option<HeaderValue>,
}

impl Proxy {
    /// `custom-http-errors`: asks the error backend for the page of `code`
    /// with ingress-nginx's headers (X-Code, X-Format, X-Original-URI,
    /// X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port,
    /// X-Request-ID); its answer replaces the pod's.
    pub(super) async fn error_page(
        &self,
        pages: &crate::model::ErrorPages,
        ingress: &crate::model::NamespacedName,
        backend: &Backend,
        code: u16,
        ask: &ErrorAsk,
        timeout: std::time::Duration,
    ) -> Result<Response<Incoming>, ProxyError> {
        let ejected = |a| self.health.is_ejected(a);
        let peer = pages
            .backend
            .pick_healthy(&ejected)
            .map_err(ProxyError::Backend)?;
        if let Peer::Addr(a) = &peer {
            self.guard
                .check(*a)
                .map_err(|why| ProxyError::Upstream(why.reason().into()))?;
        }
        let protocol = pages.backend.protocol;
        let tls = matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls);
        let mut req = Request::new(RequestBody::Empty);
        *req.uri_mut() = upstream_uri(&peer, tls, &ask.uri)?;
        *req.version_mut() = upstream_version(protocol);
        let h = req.headers_mut();
        if let Some(host) = &ask.host {
            h.insert(HOST, host.clone());
        }
        let value = |s: &str| HeaderValue::from_str(s).ok();
        let fields = [
            ("x-code", value(&code.to_string())),
            (
                "x-format",
                ask.accept
                    .clone()
                    .or(Some(HeaderValue::from_static("text/html"))),
            ),
            ("x-original-uri", value(&ask.uri.to_string())),
            ("x-namespace", value(&ingress.namespace)),
            ("x-ingress-name", value(&ingress.name)),
            ("x-service-name", value(&backend.service.name)),
            ("x-service-port", value(&backend.port)),
            ("x-request-id", ask.request_id.clone()),
        ];
        for (name, v) in fields {
            if let Some(v) = v {
                h.insert(http::HeaderName::from_static(name), v);
            }
        }
        let via = upstream::Via {
            keepalive: self.snapshots.load().table.upstream_keepalive,
            ..upstream::Via::default()
        };
        self.upstream.send(protocol, &via, req, timeout).await
    }

    /// `RequestMirror`: a copy of the request, as its pod gets it, to a pod
    /// of each mirror backend whose share takes this request. Requests
    /// with a body are not copied (the body streams once, to the pod).
    pub(super) fn mirror(
        &self,
        mirrors: &[crate::model::gateway::Mirror],
        parts: &http::request::Parts,
        original: &Uri,
        body: Option<&Incoming>,
        timeout: std::time::Duration,
    ) {
        if mirrors.is_empty() {
            return;
        }
        if !body.is_none_or(hyper::body::Body::is_end_stream) {
            tracing::debug!(uri = %original, "not mirrored: the request has a body");
            return;
        }
        for m in mirrors {
            if !m.takes() {
                continue;
            }
            let ejected = |a| self.health.is_ejected(a);
            let peer = match m.backend.pick_healthy(&ejected) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(backend = %m.backend.service, "not mirrored: {e:?}");
                    continue;
                }
            };
            let protocol = m.backend.protocol;
            let tls = matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls);
            let Ok(uri) = upstream_uri(&peer, tls, original) else {
                continue;
            };
            let mut req = Request::new(RequestBody::Empty);
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = upstream_version(protocol);
            *req.headers_mut() = parts.headers.clone();
            self.metrics.upstream_mirrored();
            self.upstream.mirror(protocol, req, timeout);
        }
    }
}

/// The status of one upstream try, as nginx's `$upstream_status` says it
/// (the error's status when there was no response: 502, 504).
pub(super) fn answered(result: &Result<Response<Incoming>, ProxyError>) -> u16 {
    match result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status().as_u16(),
    }
}

/// The HTTP version spoken to pods of this protocol.
pub(super) fn upstream_version(protocol: BackendProtocol) -> Version {
    match protocol {
        BackendProtocol::Http | BackendProtocol::Https => Version::HTTP_11,
        BackendProtocol::H2c | BackendProtocol::H2Tls => Version::HTTP_2,
    }
}

/// The request's Content-Length, when it has a valid one.
pub(super) fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The Upgrade protocol of an HTTP/1.1 upgrade request (WebSocket, ...).
pub(super) fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        req.headers().get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Copies bytes both ways between the upgraded client and pod connections
/// until either side closes, holding the request's `limit-connections`
/// slot meanwhile. Configuration changes never touch it.
pub(super) async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    _in_flight: Option<LimitGuard>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
}

/// `http(s)://peer/path?query`: the pooled client connects to `peer` and
/// sends the origin-form target unchanged.
pub(super) fn upstream_uri(peer: &Peer, tls: bool, original: &Uri) -> Result<Uri, ProxyError> {
    let pq = original.path_and_query().map_or("/", |pq| pq.as_str());
    let mut buf = [0u8; AUTHORITY_BUF];
    let authority =
        write_authority(peer, &mut buf).ok_or(ProxyError::BadRequest("upstream name too long"))?;
    Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))
}

/// A DNS name (253) plus ":65535", or a socket address.
pub(super) const AUTHORITY_BUF: usize = 264;

pub(super) fn write_authority<'a>(
    peer: &Peer,
    buf: &'a mut [u8; AUTHORITY_BUF],
) -> Option<&'a str> {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    write!(c, "{peer}").ok()?;
    let n = c.position() as usize;
    std::str::from_utf8(&buf[..n]).ok()
}

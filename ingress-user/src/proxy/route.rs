//! The route, access and plan phases, knowing no transport: a request's
//! host, path and the fields a rule asks for (`RequestView`) in, a
//! `Decision` out. Limits, balancers and canary weights count the request
//! here, once, whichever transport carries it out.

use super::*;

/// What routing needs of a request besides its host and target, looked up
/// only for routes that ask (CORS, affinity).
pub(super) struct RequestView<'a> {
    /// The request method (Gateway API method matches).
    pub(super) method: &'a str,
    /// OPTIONS: a CORS preflight on a route with `enable-cors`.
    pub(super) options: bool,
    /// The first value of the named header.
    pub(super) header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
    /// The value of the named cookie.
    pub(super) cookie: &'a dyn Fn(&str) -> Option<&'a [u8]>,
    /// Set by routing: the rule says `enable-access-log: "false"`.
    pub(super) log_off: std::cell::Cell<bool>,
}

/// A request as the Gateway API's matches see it.
pub(super) struct MatchView<'v, 'a> {
    pub(super) view: &'v RequestView<'a>,
    pub(super) query: Option<&'v str>,
    /// The listener bit of the connection (`RoutingTable::listener_bit`).
    pub(super) listener: u64,
}

impl crate::model::gateway::MatchInput for MatchView<'_, '_> {
    fn method(&self) -> &str {
        self.view.method
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        (self.view.header)(name)
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
    fn listener(&self) -> Option<u64> {
        Some(self.listener)
    }
}

/// The Access-Control headers for a request from `origin` (`None` when
/// the route's CORS does not cover it), for a preflight or a response.
pub(super) fn cors_headers(
    cors: &crate::model::annotations::Cors,
    origin: Option<&[u8]>,
    preflight: bool,
) -> Option<http::HeaderMap> {
    use http::header::{
        ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_MAX_AGE, VARY,
    };
    let mut h = http::HeaderMap::new();
    if cors.origins.is_empty() {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else {
        let origin = origin
            .and_then(|o| std::str::from_utf8(o).ok())
            .filter(|o| cors.allows(o))?;
        h.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_str(origin).ok()?,
        );
        // The answer depends on the Origin: caches must key on it.
        h.insert(VARY, HeaderValue::from_static("Origin"));
    }
    if cors.credentials {
        h.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let text = |v: &str| HeaderValue::from_str(v).ok();
    if preflight {
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, text(&cors.methods)?);
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, text(&cors.headers)?);
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age));
    } else if let Some(expose) = &cors.expose {
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, text(expose)?);
    }
    Some(h)
}

/// Whether the connection carries what `required` asks for; if so, the
/// `ssl-client-verify` and `ssl-client-cert` values for the pod.
pub(super) fn client_cert_headers(
    down: &Downstream,
    conn: &ConnState,
    required: &crate::model::ClientAuth,
    match_cn: Option<&regex::Regex>,
) -> Result<ClientCertHeaders, CertRefusal> {
    let Some(cert) = &conn.client_cert else {
        return Err(if down.tls {
            CertRefusal::Misdirected
        } else {
            CertRefusal::NotTls
        });
    };
    if *cert.asked != *required {
        return Err(CertRefusal::Misdirected);
    }
    if cert.leaf.is_none() && required.verify == crate::model::ClientVerify::On {
        return Err(CertRefusal::Missing);
    }
    // `auth-tls-match-cn`: the subject must match, as nginx's
    // `$ssl_client_s_dn !~ pattern` → 403.
    if let Some(pattern) = match_cn
        && !cert.subject.as_deref().is_some_and(|s| pattern.is_match(s))
    {
        return Err(CertRefusal::Subject);
    }
    let verify = HeaderValue::from_str(&cert.verify)
        .unwrap_or(HeaderValue::from_static("FAILED:unprintable reason"));
    let subject = cert
        .subject
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok());
    Ok(ClientCertHeaders {
        verify,
        cert: cert.escaped.clone(),
        subject,
    })
}

impl Proxy {
    /// Pick route and peer on the live snapshot, and let go of it before
    /// anything is awaited. Returns the host's counters either way.
    pub(super) fn pick(
        &self,
        down: &Downstream,
        conn: &ConnState,
        req: &Request<Incoming>,
    ) -> (Result<Decision, ProxyError>, Arc<RouteStats>, bool) {
        let raw_host = match request_host(req) {
            Ok(h) => h,
            Err(e) => return (Err(e), self.metrics.any_host().clone(), true),
        };
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
        let cookie = |name: &str| {
            let fields = req.headers().get_all(http::header::COOKIE).iter();
            cookie_value(fields.map(HeaderValue::as_bytes), name)
        };
        let view = RequestView {
            method: req.method().as_str(),
            options: req.method() == http::Method::OPTIONS,
            header: &header,
            cookie: &cookie,
            log_off: std::cell::Cell::new(false),
        };
        let (decision, stats) = self.route(down, conn, raw_host, req.uri().path(), pq, &view);
        (decision, stats, !view.log_off.get())
    }

    /// Route and peer for a request to `raw_host` (as sent) and `path`;
    /// `target` (path and query) is for redirects.
    pub(super) fn route(
        &self,
        down: &Downstream,
        conn: &ConnState,
        raw_host: Option<&str>,
        path: &str,
        target: &str,
        req: &RequestView<'_>,
    ) -> (Result<Decision, ProxyError>, Arc<RouteStats>) {
        let snap = self.snapshots.load();
        if snap.generation == 0 {
            return (Err(ProxyError::NotReady), self.metrics.any_host().clone());
        }
        let mut buf = [0u8; HOST_BUF_LEN];
        let host = raw_host.and_then(|h| normalize_host(h, &mut buf));
        // Routing, access rules and the pod all see the normalised path.
        let path = match normalize_path(path) {
            Ok(p) => p,
            Err(e) => {
                return (
                    Err(ProxyError::BadRequest(e.reason())),
                    self.metrics.any_host().clone(),
                );
            }
        };
        let normalized = match &path {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(p) => Some(match target.split_once('?') {
                Some((_, q)) => format!("{p}?{q}").into_boxed_str(),
                None => p.clone().into_boxed_str(),
            }),
        };
        let path: &str = &path;
        let matching = MatchView {
            view: req,
            query: target.split_once('?').map(|(_, q)| q),
            listener: snap.table.listener_bit(down.local.port(), down.tls),
        };
        let Some(route) = snap.table.route_request(host, path, &matching) else {
            req.log_off.set(snap.table.access_log_off);
            return (Err(ProxyError::NoRoute), self.metrics.any_host().clone());
        };
        req.log_off.set(
            route.rule.is_some_and(|r| r.settings.access_log_off)
                || snap.table.access_log_off
                || snap.table.skip_access_log_urls.iter().any(|u| **u == *path),
        );
        let stats = snap
            .stats
            .get(match route.rule {
                Some(r) => snap.table.labels().len() + r.stats as usize,
                None => route.label as usize,
            })
            .unwrap_or(self.metrics.any_host())
            .clone();
        // `satisfy: any`: the source lists or the authentication, either.
        let admitted = route.rule.is_none_or(|r| r.admits(down.client.ip()));
        let satisfy_any = route.rule.is_some_and(|r| {
            r.settings.satisfy_any
                && (r.settings.basic_auth.is_some() || r.settings.external_auth.is_some())
        });
        if !admitted && !satisfy_any {
            return (Err(ProxyError::Forbidden), stats);
        }
        // Whether authentication is still asked of this request.
        let authenticate = !(satisfy_any && admitted);
        // `block-cidrs`.
        if snap
            .table
            .block_cidrs
            .iter()
            .any(|c| c.contains(down.client.ip()))
        {
            return (Err(ProxyError::Forbidden), stats);
        }
        // `block-user-agents`.
        if let Some(agents) = &snap.table.block_user_agents
            && (req.header)("user-agent")
                .is_some_and(|ua| agents.set.is_match(&String::from_utf8_lossy(ua)))
        {
            return (Err(ProxyError::Forbidden), stats);
        }
        let in_flight = match route
            .rule
            .and_then(|r| snap.limiters.get(r.settings.limit? as usize))
        {
            None => None,
            Some(limiter) => match limiter.admit(down.client.ip(), Instant::now()) {
                Ok(guard) => guard,
                Err(why) => {
                    let status = match why {
                        crate::limit::Limited::Connections => snap.table.limit_conn_status,
                        _ => snap.table.limit_req_status,
                    };
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    return (Err(ProxyError::Limited(why, status)), stats);
                }
            },
        };
        if !down.tls
            && let (Some(rule), Some(port), Some(host)) = (route.rule, self.https_port, host)
            && rule.redirect_https
        {
            return (
                https_location(host, port, target)
                    .map(|l| Decision::Redirect(StatusCode::PERMANENT_REDIRECT, l)),
                stats,
            );
        }
        if let Some(rule) = route.rule
            && let Some(decision) = rule_redirect(rule, down, raw_host, path, target)
        {
            return (decision, stats);
        }
        // Gateway API `RequestRedirect`.
        if let Some(rule) = route.rule
            && let Some(r) = rule
                .settings
                .filters
                .as_ref()
                .and_then(|f| f.redirect.as_ref())
        {
            let location = crate::model::gateway::Filters::location(
                r,
                if down.tls { "https" } else { "http" },
                raw_host.unwrap_or_default(),
                path,
                &rule.path,
                matching.query,
                // The Gateway listener's port (80 and 443 for the agent's own).
                match (
                    crate::model::gateway::is_gateway_port(matching.listener),
                    down.tls,
                ) {
                    (true, _) => down.local.port(),
                    (false, true) => 443,
                    (false, false) => 80,
                },
            );
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
            return (
                HeaderValue::from_str(&location)
                    .map(|l| Decision::Redirect(status, l))
                    .map_err(|_| ProxyError::BadRequest("cannot build the redirect")),
                stats,
            );
        }
        // `server-snippet` and `configuration-snippet`: nginx's rewrite
        // phase, after the redirects and before authentication (a `return`
        // answers OPTIONS preflights as in nginx), but after the source lists.
        let snippet = route
            .rule
            .and_then(|r| r.settings.snippets.as_deref())
            .map(|s| {
                s.run(&crate::model::snippet::Input {
                    method: req.method,
                    host: host.unwrap_or(""),
                    path,
                    query: target.split_once('?').map(|(_, q)| q),
                    request_uri: target,
                    client: down.client.ip(),
                    tls: down.tls,
                    header: req.header,
                    cookie: req.cookie,
                })
            });
        if let Some(out) = &snippet
            && let Some((code, text)) = &out.reply
        {
            return (
                Ok(Decision::Reply(Box::new(snippet_reply(
                    *code,
                    text,
                    &out.response,
                )))),
                stats,
            );
        }
        // After the redirect: plain HTTP to a TLS host goes to HTTPS first.
        let client_cert = match route.rule.and_then(|r| r.settings.client_auth.as_deref()) {
            None => None,
            Some(required) => {
                let cn = route.rule.and_then(|r| r.settings.client_cn.as_deref());
                match client_cert_headers(down, conn, required, cn) {
                    Ok(headers) => Some(headers),
                    Err(why) => return (Err(ProxyError::ClientCert(why)), stats),
                }
            }
        };
        let filters = route.rule.and_then(|r| r.settings.filters.clone());
        let request_timeout = filters.as_ref().and_then(|f| f.request_timeout);
        let rewrite = filters.as_ref().and_then(|f| f.rewrite.as_ref());
        let rewritten = route.rule.and_then(|r| {
            let query = target.split_once('?').map(|(_, q)| q);
            // Gateway API `URLRewrite` of the path, the query kept.
            if let Some(change) = rewrite.and_then(|w| w.path.as_ref()) {
                let mut p = change.apply(path, &r.path);
                if let Some(q) = query {
                    p.push('?');
                    p.push_str(q);
                }
                return Some(p);
            }
            r.rewritten(path, query)
        });
        // A snippet's `rewrite` wins over `rewrite-target`.
        let rewritten = snippet
            .as_ref()
            .and_then(|o| o.target.clone())
            .or(rewritten);
        let cors = match route.rule.and_then(|r| r.settings.cors.as_deref()) {
            None => None,
            Some(c) => match cors_headers(c, (req.header)("origin"), req.options) {
                Some(h) if req.options => {
                    return (Ok(Decision::Preflight(Box::new(h))), stats);
                }
                // A response's headers; or an origin the route does not
                // cover: the pod answers as to anyone.
                other => other,
            },
        };
        // After the redirects and a CORS preflight, as nginx's access phase.
        if let Some(auth) = route
            .rule
            .and_then(|r| r.settings.basic_auth.as_deref())
            .filter(|_| authenticate)
            && auth.check((req.header)("authorization"), hash_off_loop)
                == crate::model::basic_auth::Check::Refused
        {
            return (
                Err(ProxyError::Unauthorized(Some(auth.challenge.clone()))),
                stats,
            );
        }
        // A canary Ingress takes the requests its header, cookie or weight
        // say; a Gateway API rule's weights pick among its backends.
        let backend = match (
            route.rule.and_then(|r| r.canary.as_deref()),
            route.rule.and_then(|r| r.settings.split.as_deref()),
        ) {
            (Some(c), _) if c.takes(req.header, req.cookie) => &c.backend,
            (_, Some(split)) => match split.pick() {
                Some(b) => b,
                None => {
                    return (
                        Err(ProxyError::Backend(crate::model::BackendError::Invalid)),
                        stats,
                    );
                }
            },
            _ => route.backend,
        };
        let ejected = |a| self.health.is_ejected(a);
        let picked = match route.rule.and_then(|r| r.settings.affinity.as_deref()) {
            None => match route.rule.and_then(|r| r.settings.hash_by.as_deref()) {
                // `upstream-hash-by`: the key's pod.
                Some(h) => {
                    let key = h.key(&crate::model::hashing::KeyInput {
                        request_uri: target,
                        client: down.client.ip(),
                        host: host.unwrap_or(""),
                        header: req.header,
                        cookie: req.cookie,
                    });
                    backend
                        .pick_hashed(key, h.subset, &ejected)
                        .map(|p| (p, None))
                }
                None if route.rule.is_some_and(|r| r.settings.ewma) => {
                    self.ewma.pick(backend, &ejected).map(|p| (p, None))
                }
                None => backend.pick_healthy(&ejected).map(|p| (p, None)),
            },
            Some(a) => backend
                .pick_sticky((req.cookie)(&a.name), &ejected)
                .map(|(p, token)| {
                    let set = token.and_then(|t| {
                        HeaderValue::from_str(&format!("{}={t}{}", a.name, a.attributes)).ok()
                    });
                    (p, set)
                }),
        };
        let (peer, set_cookie) = match picked {
            Ok(v) => v,
            Err(e) => return (Err(ProxyError::Backend(e)), stats),
        };
        let header =
            |v: &Option<Arc<str>>| v.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
        let changes = Changes {
            client_cert,
            rewritten,
            host: route
                .rule
                .and_then(|r| header(&r.settings.upstream_vhost))
                .or_else(|| rewrite.and_then(|w| w.hostname.clone())),
            forwarded_prefix: route
                .rule
                .and_then(|r| header(&r.settings.forwarded_prefix)),
            cors,
            set_cookie,
            external_auth: route
                .rule
                .and_then(|r| r.settings.external_auth.clone())
                .filter(|_| authenticate),
            filters: filters.filter(|f| f.request_headers.is_some() || !f.mirrors.is_empty()),
            error_pages: route
                .rule
                .and_then(|r| Some((r.settings.error_pages.clone()?, r.ingress.clone()))),
            snippet: snippet
                .filter(|o| !o.request.is_empty() || !o.response.is_empty())
                .map(|o| (o.request, o.response)),
            request_buffer: route.rule.and_then(|r| r.settings.request_buffer),
            response_buffer: route.rule.and_then(|r| r.settings.response_buffer),
            otel: route.rule.and_then(|r| {
                Some((
                    r.settings.otel.clone()?,
                    snap.table.otel.clone()?,
                    r.path.clone(),
                ))
            }),
        };
        let body_limit = route
            .rule
            .map_or(Some(DEFAULT_BODY_LIMIT), |r| r.settings.body_limit);
        let read_timeout = route
            .rule
            .and_then(|r| r.settings.read_timeout)
            .unwrap_or(self.limits.upstream_response_timeout);
        let decision = Decision::Forward(Target {
            peer,
            backend: backend.clone(),
            body_limit,
            read_timeout,
            changes: (!changes.is_empty()).then(|| Box::new(changes)),
            in_flight,
            upstream_tls: route.rule.and_then(|r| r.settings.upstream_tls.clone()),
            connect_timeout: route.rule.and_then(|r| r.settings.connect_timeout),
            normalized,
            policy: route.rule.and_then(|r| r.settings.upstream_policy.clone()),
            request_timeout,
            ingress: route.rule.map(|r| r.ingress.clone()),
            ewma: route.rule.is_some_and(|r| r.settings.ewma),
            http10: route.rule.is_some_and(|r| r.settings.http10),
            edits: match route.rule {
                Some(r) => r.settings.edits.clone(),
                None => snap.table.edits.clone(),
            },
        });
        (Ok(decision), stats)
    }

    /// For a connection's first request, tells XDP the agent's verdict if
    /// XDP left the flow UNDECIDED (one map lookup per connection, only
    /// when XDP is on).
    pub(super) fn report_flow(
        &self,
        down: &Downstream,
        conn: &ConnState,
        decision: &Result<Decision, ProxyError>,
    ) {
        let Some(flows) = &self.flows else { return };
        if conn
            .flow_reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let verdict = match decision {
            Err(ProxyError::Forbidden) => ingress_common::VERDICT_REJECT,
            _ => ingress_common::VERDICT_L7,
        };
        match flows.decide_undecided(down.peer, down.local, verdict, ingress_common::REASON_AGENT) {
            Ok(true) => {
                tracing::debug!(client = %down.client, verdict, "decided a flow XDP left undecided")
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("cannot record the flow verdict: {e}"),
        }
    }
}

/// `https://host[:port]/path?query` for a plain-HTTP request to a TLS host.
pub(super) fn https_location(host: &str, port: u16, pq: &str) -> Result<HeaderValue, ProxyError> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    HeaderValue::from_str(&location)
        .map_err(|_| ProxyError::BadRequest("cannot build the redirect"))
}

/// The redirect the rule's Ingress asks for (`permanent-redirect`,
/// `temporal-redirect`, `app-root` for `/`), if any.
pub(super) fn rule_redirect(
    rule: &crate::model::PathRule,
    down: &Downstream,
    raw_host: Option<&str>,
    path: &str,
    target: &str,
) -> Option<Result<Decision, ProxyError>> {
    let location = |l: &str| {
        HeaderValue::from_str(l).map_err(|_| ProxyError::BadRequest("cannot build the redirect"))
    };
    if let Some(r) = &rule.settings.redirect {
        let status = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        if r.to_host {
            // `from-to-www-redirect`: the same request on the other name.
            let scheme = if down.tls { "https" } else { "http" };
            return Some(
                location(&format!("{scheme}://{}{target}", r.location))
                    .map(|l| Decision::Redirect(status, l)),
            );
        }
        return Some(location(&r.location).map(|l| Decision::Redirect(status, l)));
    }
    let root = rule.settings.app_root.as_deref().filter(|_| path == "/")?;
    // nginx's `$scheme://$http_host$app_root`: the Host as the client sent it.
    let scheme = if down.tls { "https" } else { "http" };
    let host = raw_host.unwrap_or_default();
    Some(
        location(&format!("{scheme}://{host}{root}"))
            .map(|l| Decision::Redirect(StatusCode::FOUND, l)),
    )
}

/// Runs a slow password hash (bcrypt, SHA-crypt) without stalling the
/// other connections of this worker: on the multi-threaded runtime the
/// worker hands its queue to another thread for the duration.
pub(super) fn hash_off_loop(verify: &dyn Fn() -> bool) -> bool {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(verify),
        _ => verify(),
    }
}

//! Read head → route → plan on the fast path: parses a request head in
//! place, has the transport-free `route` make the plan, and either writes
//! the pod's request head or hands the plan to hyper's path.

use super::*;

impl Proxy {
    /// Parses the head at the start of `buf` and decides what to do with
    /// it; for a forwarded request, writes the upstream head to `up_head`.
    pub(super) fn prepare(
        &self,
        buf: &[u8],
        down: &Downstream,
        conn: &ConnState,
        up_head: &mut Vec<u8>,
    ) -> Prepared {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Prepared::Incomplete,
            Err(httparse::Error::TooManyHeaders) => {
                return Prepared::Reply(Reply::error(ProxyError::HeadTooLarge));
            }
            Err(httparse::Error::Version) => return Prepared::HandOff(None),
            Err(_) => {
                return Prepared::Reply(Reply::error(ProxyError::BadRequest(
                    "malformed request head",
                )));
            }
        };
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Prepared::HandOff(None);
        };
        // HTTP/1.0 keep-alive rules, absolute-form and asterisk-form
        // targets: hyper's.
        if req.version != Some(1) || !target.starts_with('/') {
            return Prepared::HandOff(None);
        }
        let info = match codec::analyze_request(req.headers) {
            Ok(info) => info,
            Err(e) => {
                let error = match e {
                    HeadError::Bad(why) => ProxyError::BadRequest(why),
                    HeadError::NotImplemented => ProxyError::NotImplemented,
                };
                return Prepared::Reply(Reply::error(error));
            }
        };
        // `use-forwarded-headers`: this request's client, and what the pod
        // is told, come from a trusted X-Forwarded-For.
        // What the pod is told of the client, per request (a few tens of
        // nanoseconds; keeping it per connection cost every idle client
        // 136 bytes).
        let request_down;
        let rules = self.client_address();
        let down = if rules.reads_forwarded_for() {
            let xff = req
                .headers
                .iter()
                .filter(|h| {
                    h.name
                        .eq_ignore_ascii_case(rules.forwarded_for_header().as_str())
                })
                .map(|h| h.value);
            request_down = super::super::Proxy::request_downstream(&rules, *down, xff);
            &request_down
        } else {
            down
        };
        let fwd = &Forwarded::new(down, &rules);
        if info.host.is_none() {
            // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
            return Prepared::Reply(Reply::error(ProxyError::BadRequest(
                "HTTP/1.1 request without Host",
            )));
        }
        if info.upgrade || info.expect {
            return Prepared::HandOff(None);
        }
        let framing = info.framing;
        let has_body = framing != Framing::Empty;
        let head_request = method == "HEAD";
        let (path, _query) = target.split_once('?').unwrap_or((target, ""));
        let raw_host = info.host.and_then(|h| std::str::from_utf8(h).ok());
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let cookie = |name: &str| {
            let fields = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"));
            super::super::cookie_value(fields.map(|h| h.value), name)
        };
        let view = super::super::RequestView {
            method,
            options: method == "OPTIONS",
            header: &header,
            cookie: &cookie,
            log_off: std::cell::Cell::new(false),
        };
        let (decision, stats) = self.route(down, conn, raw_host, path, target, &view);
        self.report_flow(down, conn, &decision);
        // The plan says which path carries it out; hyper's gets it as made,
        // so that it is counted once.
        let hand_off = |decision, stats| {
            Prepared::HandOff(Some(Box::new(Routed {
                decision: Ok(decision),
                stats,
                log: !view.log_off.get(),
            })))
        };
        let decision = match decision {
            Ok(d) if !d.fast_path_carries() => return hand_off(d, stats),
            other => other,
        };
        // X-Request-ID: the client's, or ours (the pod and the log get it).
        let request_id = (!info.has_request_id && !rules.no_request_id)
            .then(super::super::headers::request_id_hex);
        let mut record = match &self.access_log {
            Some(_) if !view.log_off.get() => {
                let mut r = Record::request(down.client.ip(), method, target, "HTTP/1.1", &header);
                if let Some(t) = self.access_log.as_ref().and_then(|l| l.http_headers()) {
                    r.keep_headers(&t, &header);
                }
                if let Some(id) = &request_id {
                    r.request_id = std::str::from_utf8(id).ok().map(Into::into);
                }
                r.request_length = head_len as u64;
                Some(Box::new(r))
            }
            _ => None,
        };
        let mut reply = |status, body, field| {
            Prepared::Reply(Reply {
                status,
                body,
                field,
                head_len,
                head_request,
                close: has_body || info.close,
                stats: Some(stats.clone()),
                record: record.take(),
                method: crate::metrics::method_index(method.as_bytes()),
            })
        };
        let target = match decision {
            Ok(Decision::Forward(t)) => t,
            // `fast_path_carries` gave these to hyper above.
            Ok(d @ (Decision::Preflight(_) | Decision::Reply(_))) => {
                return hand_off(d, stats);
            }
            Ok(Decision::Redirect(status, location)) => {
                return reply(
                    status,
                    super::super::redirect_body(status),
                    Some((&b"Location"[..], location.as_bytes().to_vec())),
                );
            }
            Err(e) => {
                self.metrics.error(e.source());
                let field = match &e {
                    ProxyError::Unauthorized(Some(challenge)) => {
                        Some((&b"WWW-Authenticate"[..], challenge.as_bytes().to_vec()))
                    }
                    _ => None,
                };
                return reply(e.status(), e.body().as_bytes(), field);
            }
        };
        let Peer::Addr(peer) = target.peer else {
            // `fast_path_carries` gave this to hyper above.
            return hand_off(Decision::Forward(target), stats);
        };
        if let (Framing::Length(n), Some(limit)) = (framing, target.body_limit)
            && n > limit
        {
            let e = ProxyError::BodyTooLarge(limit);
            self.metrics.error(e.source());
            return reply(e.status(), e.body().as_bytes(), None);
        }
        codec::write_request_head(
            up_head,
            &req,
            &info,
            fwd,
            target.normalized.as_deref(),
            request_id.as_ref(),
            target.edits.as_ref().and_then(|e| e.request.as_deref()),
        );
        if let Some(r) = record.as_deref_mut() {
            r.upstream_name = Some(super::super::access_log::upstream_name(&target.backend));
            r.route = target.ingress.clone().map(|i| (i, target.backend.clone()));
        }
        Prepared::Forward(Forward {
            peer,
            idempotent: retry::idempotent(method.as_bytes()),
            target,
            head_len,
            framing,
            head_request,
            close: info.close,
            stats,
            record,
            method: crate::metrics::method_index(method.as_bytes()),
        })
    }
}

//! Replies the fast path writes itself (redirects, refusals, error pages),
//! and their metrics and log lines.

use super::*;

impl Proxy {
    /// The access log line of a reply the proxy wrote itself; a request
    /// too malformed to route gets one too (with what could be read).
    pub(super) fn log_reply<S>(
        &self,
        c: &Client<S>,
        reply: &mut Reply,
        started: std::time::Instant,
    ) {
        if let Some(stats) = &reply.stats {
            let body = if reply.head_request {
                0
            } else {
                reply.body.len() as u64
            };
            stats.observe(
                reply.status.as_u16(),
                reply.method,
                reply.head_len as u64,
                body,
                started.elapsed(),
            );
        }
        let Some(log) = &self.access_log else { return };
        let mut r = match reply.record.take() {
            Some(r) => r,
            // No record: refused before routing (a malformed head).
            None if reply.stats.is_none() => Box::new(Record {
                client: Some(c.client),
                version: "HTTP/1.1",
                ..Record::default()
            }),
            // Routed to a rule with `enable-access-log: "false"`.
            None => return,
        };
        r.status = reply.status.as_u16();
        r.body_bytes_sent = if reply.head_request {
            0
        } else {
            reply.body.len() as u64
        };
        r.request_time = started.elapsed();
        log.log(&r);
    }
}

impl Reply {
    /// An error about the request itself; the connection closes after it.
    pub(super) fn error(e: ProxyError) -> Self {
        Reply {
            status: e.status(),
            body: e.body().as_bytes(),
            field: None,
            head_len: 0,
            head_request: false,
            close: true,
            stats: None,
            record: None,
            method: 0,
        }
    }

    pub(super) fn write(&self, out: &mut Vec<u8>, close: bool, hsts: Option<&[u8]>) {
        out.clear();
        codec::write_local_response(
            out,
            self.status,
            self.body,
            self.field.as_ref().map(|(n, v)| (*n, &v[..])),
            self.head_request,
            close,
            hsts,
        );
        if let Some(stats) = &self.stats {
            stats.record(self.status);
        }
    }

    /// The error page for a request that failed before its response began.
    pub(super) fn error_page(
        metrics: &crate::metrics::Metrics,
        e: &ProxyError,
        out: &mut Vec<u8>,
        hsts: Option<&[u8]>,
    ) {
        metrics.error(e.source());
        if e.source() == super::super::ErrorSource::Upstream {
            tracing::debug!("{e}");
        }
        out.clear();
        codec::write_local_response(
            out,
            e.status(),
            e.body().as_bytes(),
            None,
            false,
            true,
            hsts,
        );
    }
}

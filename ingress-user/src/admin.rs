//! The admin listener: /healthz (alive), /readyz (first snapshot live), /metrics.

use std::{convert::Infallible, fmt::Write, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::{
    dataplane::StatsHandle,
    metrics::{Metrics, header},
    shutdown::Shutdown,
    snapshot::SnapshotCell,
};

pub struct Admin {
    pub snapshots: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    /// Present when the XDP program is loaded.
    pub xdp: Option<StatsHandle>,
    /// Readiness turns false as soon as shutdown starts.
    pub shutdown: Shutdown,
    /// Its lines and drops are on /metrics.
    pub access_log: Option<Arc<crate::proxy::access_log::AccessLog>>,
    /// The TCP and UDP services' relay.
    pub l4: Option<Arc<crate::l4::L4Ports>>,
    /// Their XDP steering, when XDP is on.
    pub l4_xdp: Option<crate::dataplane::l4::SharedL4>,
}

impl Admin {
    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" if self.snapshots.is_ready() && !self.shutdown.is_fired() => {
                text(StatusCode::OK, "ready\n".into())
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
            "/metrics" => text(StatusCode::OK, self.render_metrics()),
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        let snap = self.snapshots.load();
        header(&mut out, "xingress_snapshot_generation");
        let _ = writeln!(out, "xingress_snapshot_generation {}", snap.generation);
        header(&mut out, "xingress_config_warnings");
        let _ = writeln!(out, "xingress_config_warnings {}", snap.warnings.len());
        self.metrics.render(&mut out);
        if let Some(log) = &self.access_log {
            use std::sync::atomic::Ordering::Relaxed;
            for (name, v) in [
                ("xingress_access_log_lines_total", &log.lines),
                ("xingress_access_log_dropped_total", &log.dropped),
            ] {
                header(&mut out, name);
                let _ = writeln!(out, "{name} {}", v.load(Relaxed));
            }
        }
        if let Some(l4) = &self.l4 {
            l4.render_metrics(&mut out);
        }
        crate::dataplane::render_metrics(self.xdp.as_ref(), &mut out);
        if let Some(l4) = &self.l4_xdp {
            crate::dataplane::l4::render_metrics(l4, &mut out);
        }
        out
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

pub async fn serve(admin: Arc<Admin>, listener: TcpListener, shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let r = admin.respond(&req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

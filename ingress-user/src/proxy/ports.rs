//! Gateway listener ports beside the agent's HTTP and HTTPS listeners
//! (a listener on 8080, say). A port is bound when a translation asks for
//! it, so a port that cannot be bound shows in the listener's status
//! (`PortUnavailable`); it is served once the snapshot that routes it is
//! live, and drained and closed when no Gateway wants it any more.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use rustls::ServerConfig;

use super::{Proxy, serve_http, serve_https};
use crate::{
    model::{GatewayPort, PortClaims},
    shutdown::{Shutdown, StoppableTask},
};

/// Backlog of a Gateway port's socket (as the agent's own listeners).
const BACKLOG: u32 = 1024;

pub struct GatewayPorts {
    /// HTTP ports listen on `--http-addr`'s address, HTTPS ones on
    /// `--https-addr`'s.
    http_ip: IpAddr,
    https_ip: IpAddr,
    proxy: Arc<Proxy>,
    tls: Arc<ServerConfig>,
    shutdown: Shutdown,
    runtime: tokio::runtime::Handle,
    ports: Mutex<HashMap<u16, Port>>,
}

impl std::fmt::Debug for GatewayPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayPorts")
            .field("http_ip", &self.http_ip)
            .field("https_ip", &self.https_ip)
            .finish_non_exhaustive()
    }
}

/// One bound port: the socket (kept, so a change of protocol keeps the
/// port), and how it is served if it is.
struct Port {
    socket: std::net::TcpListener,
    serving: Option<Serving>,
}

struct Serving {
    tls: bool,
    /// Stopping it stops accepting; in-flight requests drain as at
    /// shutdown.
    task: StoppableTask,
}

impl GatewayPorts {
    /// Must be called within the runtime that will serve the ports.
    pub fn new(
        (http_ip, https_ip): (IpAddr, IpAddr),
        proxy: Arc<Proxy>,
        tls: Arc<ServerConfig>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Arc::new(Self {
            http_ip,
            https_ip,
            proxy,
            tls,
            shutdown,
            runtime: tokio::runtime::Handle::current(),
            ports: Mutex::new(HashMap::new()),
        })
    }

    fn bind(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
        let _in_runtime = self.runtime.enter();
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)?.into_std()
    }

    /// Serves exactly `wanted` (the live snapshot's ports): starts the new
    /// ones, switches one whose protocol changed, stops the rest.
    pub fn sync(&self, wanted: &[GatewayPort]) {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports.retain(|port, p| {
            let keep = wanted.iter().any(|w| w.port == *port);
            if !keep {
                if let Some(s) = p.serving.take() {
                    s.task.stop();
                }
                tracing::info!(port, "Gateway port closed: no listener of ours uses it");
            }
            keep
        });
        for w in wanted {
            let Some(p) = ports.get_mut(&w.port) else {
                // Claimed by translate() before the snapshot went live; a
                // port released since is not reopened behind its status.
                tracing::warn!(
                    port = w.port,
                    "Gateway port not bound; the next change retries"
                );
                continue;
            };
            if p.serving.as_ref().is_some_and(|s| s.tls == w.tls) {
                continue;
            }
            if let Some(s) = p.serving.take() {
                s.task.stop();
            }
            match self.serve(&p.socket, w.tls) {
                Ok(s) => {
                    tracing::info!(
                        port = w.port,
                        protocol = if w.tls { "HTTPS" } else { "HTTP" },
                        "Gateway port open"
                    );
                    p.serving = Some(s);
                }
                Err(e) => tracing::error!(port = w.port, "cannot serve a Gateway port: {e}"),
            }
        }
    }

    fn serve(&self, socket: &std::net::TcpListener, tls: bool) -> std::io::Result<Serving> {
        let _in_runtime = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(socket.try_clone()?)?;
        let proxy = self.proxy.clone();
        let config = self.tls.clone();
        let task = StoppableTask::spawn(
            &self.runtime,
            &self.shutdown,
            move |port_shutdown| async move {
                if tls {
                    serve_https(proxy, listener, config, port_shutdown).await;
                } else {
                    serve_http(proxy, listener, port_shutdown).await;
                }
            },
        );
        Ok(Serving { tls, task })
    }

    /// Waits until every Gateway port has drained (after the agent's
    /// shutdown fired).
    pub async fn drained(&self) {
        let tasks: Vec<_> = {
            let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
            ports
                .values_mut()
                .filter_map(|p| p.serving.take())
                .filter_map(|s| s.task.stop())
                .collect()
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl PortClaims for GatewayPorts {
    fn claim(&self, port: u16, tls: bool) -> Result<(), String> {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if ports.contains_key(&port) {
            return Ok(());
        }
        let addr = SocketAddr::new(if tls { self.https_ip } else { self.http_ip }, port);
        let socket = self
            .bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        ports.insert(
            port,
            Port {
                socket,
                serving: None,
            },
        );
        Ok(())
    }
}

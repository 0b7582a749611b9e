//! A TCP service's relay: accept, read the PROXY header when the entry
//! decodes one, connect to the flow's Maglev endpoint (the next ones when
//! that fails, `proxy-stream-next-upstream*`), send a PROXY v1 header when
//! the entry encodes one, then copy both ways until both sides have closed
//! or nothing moved for `proxy-stream-timeout`.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{PortCounters, Relay};
use crate::{
    model::l4::{L4Protocol, L4Service, StreamSettings},
    proxy::proxy_protocol,
    shutdown::Shutdown,
};

/// How long a client has to send its PROXY header (ingress-nginx's
/// `proxy-protocol-header-timeout`).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Each direction's buffer (nginx's `proxy_buffer_size` for streams).
const BUFFER: usize = 16 * 1024;

pub(super) async fn serve(
    listener: TcpListener,
    port: u16,
    relay: Arc<Relay>,
    counters: Arc<PortCounters>,
    shutdown: Shutdown,
) {
    loop {
        let (client, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and kin: back off instead of spinning.
                    tracing::warn!(port, "L4 accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        let (relay, counters) = (relay.clone(), counters.clone());
        tokio::spawn(async move {
            counters.flows.fetch_add(1, Ordering::Relaxed);
            if !flow(client, peer, port, &relay, &counters).await {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// One connection; false when no pod took it.
async fn flow(
    mut client: TcpStream,
    peer: SocketAddr,
    port: u16,
    relay: &Relay,
    counters: &PortCounters,
) -> bool {
    let Some((service, stream)) = relay.service(L4Protocol::Tcp, port) else {
        return false;
    };
    let local = client
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(peer.ip(), port));
    let (mut source, mut destination) = (peer, local);
    if service.decode_proxy {
        match tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy_protocol::read(&mut client)).await {
            Ok(Ok(proxy_protocol::Header::Proxied {
                source: s,
                destination: d,
            })) => (source, destination) = (s, d),
            Ok(Ok(proxy_protocol::Header::Local)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, service = %service.describe(), "connection closed: {e}");
                return false;
            }
            Err(_) => {
                tracing::debug!(%peer, service = %service.describe(), "connection closed: no PROXY header in time");
                return false;
            }
        }
    }
    let Some((mut pod, endpoint)) = connect(relay, &service, source, &stream).await else {
        // An RST tells the client at once that nothing is behind the port.
        let _ = client.set_zero_linger();
        return false;
    };
    if service.encode_proxy {
        let header = proxy_v1(source, destination);
        if pod.write_all(header.as_bytes()).await.is_err() {
            return false;
        }
    }
    let _ = pod.set_nodelay(true);
    let _ = client.set_nodelay(true);
    tracing::debug!(%source, %endpoint, service = %service.describe(), "L4 flow relayed");
    drop(service);
    pipe(&mut client, &mut pod, stream.timeout, counters).await;
    true
}

/// Connects to the flow's endpoints in Maglev order, as many as
/// `proxy-stream-next-upstream-tries` allows within its timeout.
async fn connect(
    relay: &Relay,
    service: &L4Service,
    client: SocketAddr,
    stream: &StreamSettings,
) -> Option<(TcpStream, SocketAddr)> {
    let candidates = relay.candidates(service, client);
    let tries = match (stream.next_upstream, stream.tries) {
        (false, _) => 1,
        (true, 0) => candidates.len(),
        (true, n) => n as usize,
    };
    let deadline = (!stream.next_upstream_timeout.is_zero())
        .then(|| Instant::now() + stream.next_upstream_timeout);
    for (i, ep) in candidates.into_iter().take(tries).enumerate() {
        if i > 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match tokio::time::timeout(stream.connect_timeout, TcpStream::connect(ep)).await {
            Ok(Ok(s)) => return Some((s, ep)),
            Ok(Err(e)) => {
                tracing::warn!(endpoint = %ep, service = %service.describe(), "cannot connect to the pod: {e}");
            }
            Err(_) => {
                tracing::warn!(endpoint = %ep, service = %service.describe(), timeout = ?stream.connect_timeout, "connecting to the pod timed out");
            }
        }
    }
    tracing::warn!(%client, service = %service.describe(), "no pod took the connection");
    None
}

/// `PROXY TCP4 src dst sport dport\r\n` (v1, what nginx's `proxy_protocol
/// on` sends).
fn proxy_v1(source: SocketAddr, destination: SocketAddr) -> String {
    let (s, d) = (source.ip().to_canonical(), destination.ip().to_canonical());
    let family = match (s, d) {
        (std::net::IpAddr::V4(_), std::net::IpAddr::V4(_)) => "TCP4",
        (std::net::IpAddr::V6(_), std::net::IpAddr::V6(_)) => "TCP6",
        _ => return "PROXY UNKNOWN\r\n".to_string(),
    };
    format!(
        "PROXY {family} {s} {d} {} {}\r\n",
        source.port(),
        destination.port()
    )
}

/// Copies both ways until both directions have ended (a FIN is passed on
/// as a FIN), an error, or `idle` with no byte moving either way.
async fn pipe(
    client: &mut TcpStream,
    pod: &mut TcpStream,
    idle: Duration,
    counters: &PortCounters,
) {
    let (mut cr, mut cw) = client.split();
    let (mut pr, mut pw) = pod.split();
    let mut up = vec![0u8; BUFFER];
    let mut down = vec![0u8; BUFFER];
    let (mut client_open, mut pod_open) = (true, true);
    while client_open || pod_open {
        tokio::select! {
            r = cr.read(&mut up), if client_open => match r {
                Ok(0) => {
                    client_open = false;
                    let _ = pw.shutdown().await;
                }
                Ok(n) => {
                    match tokio::time::timeout(idle, pw.write_all(&up[..n])).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                    counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return,
            },
            r = pr.read(&mut down), if pod_open => match r {
                Ok(0) => {
                    pod_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    match tokio::time::timeout(idle, cw.write_all(&down[..n])).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                    counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return,
            },
            () = tokio::time::sleep(idle) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v1_headers_name_both_ends() {
        let c: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let n: SocketAddr = "[::ffff:10.0.0.1]:5432".parse().unwrap();
        assert_eq!(
            proxy_v1(c, n),
            "PROXY TCP4 192.0.2.7 10.0.0.1 40000 5432\r\n"
        );
        let c6: SocketAddr = "[2001:db8::7]:1".parse().unwrap();
        let n6: SocketAddr = "[2001:db8::1]:2".parse().unwrap();
        assert_eq!(
            proxy_v1(c6, n6),
            "PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n"
        );
        assert_eq!(proxy_v1(c, n6), "PROXY UNKNOWN\r\n");
        // What we send, our own reader takes.
        assert!(proxy_protocol::parse_v1(proxy_v1(c, n).as_bytes()).is_ok());
    }
}

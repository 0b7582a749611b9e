//! A UDP service's relay: one session per client address, each with a
//! socket connected to the client's Maglev endpoint. A session ends when
//! the pod has sent `proxy-stream-responses` datagrams per datagram it got
//! (nginx's `proxy_responses`; 0: never), or after `proxy-stream-timeout`
//! with nothing either way. The session table is bounded, so spoofed
//! sources cannot take every file descriptor.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use tokio::{net::UdpSocket, sync::mpsc};

use super::{PortCounters, Relay};
use crate::{
    model::l4::{L4Protocol, L4Service, StreamSettings},
    shutdown::Shutdown,
};

/// Sessions per port at most; datagrams of new clients past it are dropped.
pub(super) const MAX_SESSIONS: usize = 16_384;
/// Client datagrams queued per session before they are dropped.
const QUEUE: usize = 64;
/// The largest datagram relayed.
const DATAGRAM: usize = 65_535;

pub(super) async fn serve(
    socket: Arc<UdpSocket>,
    port: u16,
    relay: Arc<Relay>,
    counters: Arc<PortCounters>,
    shutdown: Shutdown,
) {
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut swept_at = 0;
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors of earlier sends surface here: not fatal.
                Err(_) => continue,
            },
            () = shutdown.wait() => return,
        };
        let datagram = buf[..n].to_vec();
        if let Some(tx) = sessions.get(&client)
            && !tx.is_closed()
        {
            if tx.try_send(datagram).is_err() {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        // Ended sessions leave closed senders behind: swept when the table
        // has doubled since the last sweep.
        if sessions.len() >= swept_at.max(1024) * 2 || sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, tx| !tx.is_closed());
            swept_at = sessions.len();
        }
        if sessions.len() >= MAX_SESSIONS {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(slot) = super::UdpSlot::take(&relay) else {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some((service, stream)) = relay.service(L4Protocol::Udp, port) else {
            continue;
        };
        counters.flows.fetch_add(1, Ordering::Relaxed);
        let Some(pod) = open(&relay, &service, client).await else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(datagram);
        sessions.insert(client, tx);
        tokio::spawn(session(
            socket.clone(),
            pod,
            client,
            rx,
            stream,
            counters.clone(),
            slot,
        ));
    }
}

/// A socket connected to the client's endpoint (the first the guard allows).
async fn open(relay: &Relay, service: &L4Service, client: SocketAddr) -> Option<UdpSocket> {
    let ep = relay.candidates(service, client).into_iter().next()?;
    let bind: SocketAddr = if ep.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(service = %service.describe(), "cannot open a UDP socket: {e}");
            return None;
        }
    };
    if let Err(e) = sock.connect(ep).await {
        tracing::warn!(endpoint = %ep, service = %service.describe(), "cannot reach the pod: {e}");
        return None;
    }
    tracing::debug!(%client, endpoint = %ep, service = %service.describe(), "UDP session");
    Some(sock)
}

async fn session(
    listener: Arc<UdpSocket>,
    pod: UdpSocket,
    client: SocketAddr,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    stream: StreamSettings,
    counters: Arc<PortCounters>,
    _slot: super::UdpSlot,
) {
    let per_datagram = u64::from(stream.responses);
    let (mut expected, mut received) = (0u64, 0u64);
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        tokio::select! {
            d = from_client.recv() => {
                let Some(d) = d else { return };
                if pod.send(&d).await.is_ok() {
                    counters.bytes_in.fetch_add(d.len() as u64, Ordering::Relaxed);
                    expected += per_datagram;
                }
            }
            r = pod.recv(&mut buf) => match r {
                Ok(n) => {
                    if listener.send_to(&buf[..n], client).await.is_ok() {
                        counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    received += 1;
                    if per_datagram != 0 && received >= expected {
                        // Whatever the client sent meanwhile is queued:
                        // the session goes on for it.
                        if from_client.is_empty() {
                            return;
                        }
                    }
                }
                // The pod's port is closed (ICMP): the session ends.
                Err(_) => return,
            },
            () = tokio::time::sleep(stream.timeout) => return,
        }
    }
}

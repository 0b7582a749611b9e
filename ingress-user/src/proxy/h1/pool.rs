//! Idle keep-alive connections to pods, per endpoint address. Taking and
//! returning one is a short critical section on a plain mutex with a cheap
//! hash: no channel, no task per connection, no background dispatcher.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

pub use crate::model::config::Keepalive;

use tokio::net::TcpStream;

/// Idle connections kept per endpoint (nginx's `keepalive 64` per worker,
/// times the two workers a node might run).
const MAX_IDLE_PER_PEER: usize = 128;
/// Read buffer of an upstream connection: one response head fits.
pub const UPSTREAM_BUF: usize = 16 * 1024;

/// An open connection to a pod and its read buffer.
pub struct UpConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Came from the pool: the pod may have closed it meanwhile.
    pub reused: bool,
    /// Requests it has carried (`upstream-keepalive-requests`).
    pub requests: u32,
}

impl UpConn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            reused: false,
            requests: 0,
        }
    }
}

struct Idle {
    conn: UpConn,
    since: Instant,
}

/// FxHash-style mixing of the address words: endpoint addresses are not
/// attacker-chosen, so no SipHash needed.
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

type Map = HashMap<SocketAddr, Vec<Idle>, BuildHasherDefault<AddrHasher>>;

pub struct Pool {
    idle: Mutex<Map>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(Map::default()),
            idle_timeout,
        }
    }

    /// The most recently used idle connection to `peer` that has not timed
    /// out and has nothing waiting to be read: bytes the pod sent while no
    /// request was out (a response to nothing, or the rest of a body it
    /// did not frame as we did) would be read as the next request's
    /// answer, which belongs to another client; such a connection, or one
    /// the pod closed, is dropped.
    pub fn take(&self, peer: SocketAddr, now: Instant, keep: &Keepalive) -> Option<UpConn> {
        let idle_timeout = keep.timeout.unwrap_or(self.idle_timeout);
        loop {
            let mut i = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(&peer)?;
                loop {
                    let i = list.pop()?;
                    if now.saturating_duration_since(i.since) < idle_timeout {
                        break i;
                    }
                }
            };
            if quiet(&i.conn.stream) {
                i.conn.reused = true;
                return Some(i.conn);
            }
            tracing::debug!(%peer, "dropped a pooled pod connection with unread bytes or closed");
        }
    }

    /// Keeps a connection whose last response ended cleanly.
    pub fn put(&self, peer: SocketAddr, mut conn: UpConn, now: Instant, keep: &Keepalive) {
        conn.requests = conn.requests.saturating_add(1);
        if keep.requests.is_some_and(|max| conn.requests >= max) {
            return;
        }
        conn.buf.clear();
        let max = keep.connections.unwrap_or(MAX_IDLE_PER_PEER);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(peer).or_default();
        if list.len() < max {
            list.push(Idle { conn, since: now });
        }
    }

    /// Closes connections idle past the timeout (and forgets endpoints with
    /// none left).
    /// `timeout`: the ConfigMap's `upstream-keepalive-timeout`, if set.
    pub fn sweep(&self, timeout: Option<Duration>) -> usize {
        let timeout = timeout.unwrap_or(self.idle_timeout);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        idle.retain(|_, list| {
            let before = list.len();
            list.retain(|i| i.since.elapsed() < timeout);
            closed += before - list.len();
            !list.is_empty()
        });
        closed
    }

    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// Nothing to read and not closed. No system call unless the socket was
/// reported readable since its last empty read.
fn quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_come_back_newest_first_until_they_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_millis(200));
        assert!(
            pool.take(addr, Instant::now(), &Keepalive::default())
                .is_none()
        );
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let b_port = b.local_addr().unwrap().port();
        pool.put(addr, UpConn::new(a), Instant::now(), &Keepalive::default());
        pool.put(addr, UpConn::new(b), Instant::now(), &Keepalive::default());
        assert_eq!(pool.idle_count(), 2);
        let got = pool
            .take(addr, Instant::now(), &Keepalive::default())
            .unwrap();
        assert!(got.reused);
        assert_eq!(got.stream.local_addr().unwrap().port(), b_port);
        pool.put(addr, got, Instant::now(), &Keepalive::default());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(pool.sweep(None), 2);
        assert_eq!(pool.idle_count(), 0);
        let c = TcpStream::connect(addr).await.unwrap();
        pool.put(addr, UpConn::new(c), Instant::now(), &Keepalive::default());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            pool.take(addr, Instant::now(), &Keepalive::default())
                .is_none(),
            "a timed-out connection is not reused"
        );
    }

    #[tokio::test]
    async fn connections_with_unsolicited_bytes_or_closed_are_not_reused() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(60));
        let talker = TcpStream::connect(addr).await.unwrap();
        let (mut pod_side, _) = listener.accept().await.unwrap();
        let closer = TcpStream::connect(addr).await.unwrap();
        let (pod_closed, _) = listener.accept().await.unwrap();
        let fine = TcpStream::connect(addr).await.unwrap();
        let fine_port = fine.local_addr().unwrap().port();
        let (_pod_fine, _) = listener.accept().await.unwrap();
        pool.put(
            addr,
            UpConn::new(fine),
            Instant::now(),
            &Keepalive::default(),
        );
        pool.put(
            addr,
            UpConn::new(closer),
            Instant::now(),
            &Keepalive::default(),
        );
        pool.put(
            addr,
            UpConn::new(talker),
            Instant::now(),
            &Keepalive::default(),
        );
        // A response nobody asked for, and a pod that closed.
        pod_side
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        drop(pod_closed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = pool
            .take(addr, Instant::now(), &Keepalive::default())
            .unwrap();
        assert_eq!(got.stream.local_addr().unwrap().port(), fine_port);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn the_configmaps_keepalive_limits_hold() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(60));
        let conn = || async { UpConn::new(TcpStream::connect(addr).await.unwrap()) };
        // upstream-keepalive-connections: 1 per endpoint; 0: none.
        let one = Keepalive {
            connections: Some(1),
            ..Keepalive::default()
        };
        pool.put(addr, conn().await, Instant::now(), &one);
        pool.put(addr, conn().await, Instant::now(), &one);
        assert_eq!(pool.idle_count(), 1);
        let none = Keepalive {
            connections: Some(0),
            ..Keepalive::default()
        };
        let taken = pool.take(addr, Instant::now(), &none).unwrap();
        pool.put(addr, taken, Instant::now(), &none);
        assert_eq!(pool.idle_count(), 0);
        // upstream-keepalive-requests: 3 requests, then closed.
        let three = Keepalive {
            requests: Some(3),
            ..Keepalive::default()
        };
        pool.put(addr, conn().await, Instant::now(), &three);
        for _ in 0..2 {
            let c = pool.take(addr, Instant::now(), &three).unwrap();
            pool.put(addr, c, Instant::now(), &three);
        }
        assert_eq!(pool.idle_count(), 0, "the third request was its last");
        // upstream-keepalive-timeout, shorter than the flag's.
        let short = Keepalive {
            timeout: Some(Duration::from_millis(100)),
            ..Keepalive::default()
        };
        pool.put(addr, conn().await, Instant::now(), &short);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(pool.take(addr, Instant::now(), &short).is_none());
        pool.put(addr, conn().await, Instant::now(), &short);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(pool.sweep(short.timeout), 1);
    }
}

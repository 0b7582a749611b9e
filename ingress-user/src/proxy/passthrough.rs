//! `ssl-passthrough`: on the HTTPS listener, the ClientHello is peeked (not
//! read) for its server name; a pass-through host's connection is then
//! spliced to a pod as it is, so the pod terminates TLS itself.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpStream;

use super::Proxy;
use crate::model::{HOST_BUF_LEN, Peer, normalize_host};

/// A TLS record's header, and the largest record body (RFC 8446 §5.1).
const RECORD_HEADER: usize = 5;
const MAX_RECORD: usize = 1 << 14;
/// How often an incomplete ClientHello is peeked again.
const PEEK_AGAIN: Duration = Duration::from_millis(2);

/// What the first bytes of a connection say about its server name.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// A ClientHello naming this server.
    Name(&'a str),
    /// A ClientHello without a name, or bytes that are not one: the
    /// handshake that follows decides.
    Other,
    /// The first record is not all here yet; it is this long.
    Incomplete(usize),
}

/// Reads the server name of a ClientHello in its first TLS record.
pub fn client_hello(buf: &[u8]) -> Hello<'_> {
    if buf.len() < RECORD_HEADER {
        return if buf.first().is_none_or(|&b| b == 0x16) {
            Hello::Incomplete(RECORD_HEADER)
        } else {
            Hello::Other
        };
    }
    if buf[0] != 0x16 || buf[1] != 3 {
        return Hello::Other;
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > MAX_RECORD {
        return Hello::Other;
    }
    let Some(record) = buf.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Hello::Incomplete(RECORD_HEADER + len);
    };
    server_name(record).map_or(Hello::Other, Hello::Name)
}

/// A cursor over a handshake message; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// A vector with a `width`-byte length prefix.
    fn vec(&mut self, width: usize) -> Option<Cursor<'a>> {
        let len = match width {
            1 => self.u8()?,
            2 => self.u16()?,
            _ => {
                let b = self.take(3)?;
                (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
            }
        };
        self.take(len).map(Cursor)
    }
}

/// The host_name of the server_name extension (RFC 6066 §3) of the
/// ClientHello at the start of `record`, if all of it is in the record.
fn server_name(record: &[u8]) -> Option<&str> {
    let mut c = Cursor(record);
    if c.u8()? != 1 {
        return None; // not a ClientHello
    }
    let mut hello = c.vec(3)?;
    hello.take(2 + 32)?; // legacy_version, random
    hello.vec(1)?; // legacy_session_id
    hello.vec(2)?; // cipher_suites
    hello.vec(1)?; // legacy_compression_methods
    let mut extensions = hello.vec(2)?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vec(2)?;
        if kind != 0 {
            continue;
        }
        let mut names = data.vec(2)?;
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec(2)?;
            if name_type == 0 {
                return std::str::from_utf8(name.0).ok();
            }
        }
        return None;
    }
    None
}

/// Peeks at `stream` until its first TLS record is in, or it is clearly
/// not a ClientHello with a name; returns the normalized name.
async fn peek_server_name(stream: &TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = vec![0u8; RECORD_HEADER + MAX_RECORD];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        match client_hello(&buf[..n]) {
            Hello::Name(name) => {
                let mut host = [0u8; HOST_BUF_LEN];
                return Ok(normalize_host(name, &mut host).map(str::to_string));
            }
            Hello::Other => return Ok(None),
            Hello::Incomplete(_) if n == seen => tokio::time::sleep(PEEK_AGAIN).await,
            Hello::Incomplete(_) => seen = n,
        }
    }
}

impl Proxy {
    /// For a pass-through host, splices the connection to one of its pods
    /// and returns `None` once it ends; else gives the stream back, its
    /// bytes unread, for the handshake.
    pub(super) async fn passthrough(
        &self,
        stream: TcpStream,
        client: SocketAddr,
        timeout: Duration,
    ) -> Option<TcpStream> {
        let name = match tokio::time::timeout(timeout, peek_server_name(&stream)).await {
            Ok(Ok(Some(name))) => name,
            // The handshake reports what is wrong, or times out as usual.
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return Some(stream),
        };
        let (peer, backend) = {
            let snap = self.snapshots.load();
            let Some(p) = snap.table.passthrough(&name) else {
                // A Gateway's TLS listener takes the name, no TLSRoute does,
                // and no certificate would terminate it: closed.
                if snap.table.passthrough_claimed(&name) && !snap.tls.has_own(&name) {
                    tracing::debug!(%client, host = name, "pass-through: no TLSRoute for this name");
                    return None;
                }
                return Some(stream);
            };
            if !p.admits(client.ip())
                || snap
                    .table
                    .block_cidrs
                    .iter()
                    .any(|c| c.contains(client.ip()))
            {
                tracing::debug!(%client, host = name, "pass-through refused: source not admitted");
                return None;
            }
            // A TLSRoute's weights pick the backend; all 0: none.
            let backend = match &p.split {
                None => Some(&p.backend),
                Some(split) => split.pick(),
            };
            let Some(backend) = backend else {
                tracing::debug!(%client, host = name, "pass-through: every backend has weight 0");
                return None;
            };
            match backend.pick() {
                Ok(Peer::Addr(peer)) => (peer, backend.clone()),
                Ok(_) | Err(_) => {
                    tracing::debug!(%client, host = name, "pass-through: no ready endpoint");
                    return None;
                }
            }
        };
        if let Err(why) = self.guard.check(peer) {
            tracing::warn!(%client, %peer, service = %backend.service, "pass-through refused: {}", why.reason());
            return None;
        }
        let connect = TcpStream::connect(peer);
        let mut upstream =
            match tokio::time::timeout(self.limits.upstream_connect_timeout, connect).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%client, %peer, "pass-through connect failed: {e}");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%client, %peer, "pass-through connect timed out");
                    return None;
                }
            };
        let _ = upstream.set_nodelay(true);
        self.metrics.passthrough_connection();
        let started = std::time::Instant::now();
        let mut stream = stream;
        let (from_client, to_client) = match tokio::io::copy_bidirectional(
            &mut stream,
            &mut upstream,
        )
        .await
        {
            Ok(counts) => counts,
            Err(e) => {
                tracing::debug!(%client, %peer, service = %backend.service, "pass-through ended: {e}");
                (0, 0)
            }
        };
        if let Some(log) = &self.access_log {
            log.log_stream(&super::access_log::StreamRecord {
                client: client.ip(),
                sni: &name,
                upstream: peer,
                upstream_name: &super::access_log::upstream_name(&backend),
                bytes_from_client: from_client,
                bytes_to_client: to_client,
                duration: started.elapsed(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A real ClientHello, as rustls sends it.
    fn hello(sni: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::tls::UnverifiedChain::new()))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn the_server_name_is_read_from_a_whole_client_hello() {
        let h = hello("Pass.Example.com");
        assert_eq!(client_hello(&h), Hello::Name("Pass.Example.com"));
        // An IP address sends no server name.
        assert_eq!(client_hello(&hello("192.0.2.1")), Hello::Other);
    }

    #[test]
    fn a_partial_client_hello_asks_for_more_and_never_misreads() {
        let h = hello("pass.example.com");
        let whole = h.len();
        for cut in 0..whole {
            match client_hello(&h[..cut]) {
                Hello::Incomplete(n) => assert!(n > cut && n <= whole, "{cut}: {n}"),
                other => panic!("{cut} of {whole} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn other_bytes_are_not_a_client_hello() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0x16, 3, 1, 0xff, 0xff][..], // longer than any record
            &[0x16, 3, 1, 0, 4, 2, 0, 0, 0][..], // a ServerHello
            &[0x16, 3, 1, 0, 4, 1, 0, 0, 9][..], // a ClientHello longer than its record
            &[0x17][..],
        ] {
            assert_eq!(client_hello(bytes), Hello::Other, "{bytes:?}");
        }
        // Every byte of a real hello flipped in turn: never a panic.
        let h = hello("pass.example.com");
        for i in 0..h.len() {
            let mut m = h.clone();
            m[i] ^= 0xff;
            let _ = client_hello(&m);
        }
    }
}

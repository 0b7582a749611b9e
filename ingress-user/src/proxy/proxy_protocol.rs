//! The PROXY protocol (HAProxy's, v1 text and v2 binary) in front of a
//! connection from an L4 load balancer: the client's real address, read
//! before anything else (`--use-proxy-protocol`, ingress-nginx's
//! `use-proxy-protocol`). Exactly the header is consumed; what follows
//! (TLS, HTTP) is left in the socket. A missing or malformed header closes
//! the connection.

use std::net::{IpAddr, SocketAddr};

use tokio::{io::AsyncReadExt, net::TcpStream};

/// v2's signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
const V1_MAX: usize = 107;
/// The longest v2 header accepted (addresses and TLVs).
const V2_MAX: usize = 4096;

/// What the header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The client's address (and the address it connected to).
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `LOCAL` (v2) or `UNKNOWN` (v1): the connection is the balancer's own
    /// (a health check); the TCP peer is the client.
    Local,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 header")]
    BadV1,
    #[error("malformed PROXY protocol v2 header")]
    BadV2,
    #[error("the connection closed inside the PROXY protocol header")]
    Closed,
}

/// Parses a complete v1 line (`PROXY TCP4 src dst sport dport\r\n`).
pub fn parse_v1(line: &[u8]) -> Result<Header, Error> {
    let line = line.strip_suffix(b"\r\n").ok_or(Error::BadV1)?;
    let line = std::str::from_utf8(line).map_err(|_| Error::BadV1)?;
    let mut parts = line.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(Error::BadV1);
    }
    let family = parts.next().ok_or(Error::BadV1)?;
    if family == "UNKNOWN" {
        return Ok(Header::Local);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Error::BadV1);
    };
    let ip = |s: &str| s.parse::<IpAddr>().map_err(|_| Error::BadV1);
    let port = |s: &str| {
        // No sign, no leading zeros (HAProxy's rule), at most 65535.
        if s.is_empty()
            || (s.len() > 1 && s.starts_with('0'))
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::BadV1);
        }
        s.parse::<u16>().map_err(|_| Error::BadV1)
    };
    let (src, dst) = (ip(src)?, ip(dst)?);
    let family_ok = match family {
        "TCP4" => src.is_ipv4() && dst.is_ipv4(),
        "TCP6" => src.is_ipv6() && dst.is_ipv6(),
        _ => false,
    };
    if !family_ok {
        return Err(Error::BadV1);
    }
    Ok(Header::Proxied {
        source: SocketAddr::new(src, port(sport)?),
        destination: SocketAddr::new(dst, port(dport)?),
    })
}

/// Parses a v2 header: the 16 fixed bytes, then `rest` (its length is
/// in bytes 14 and 15).
pub fn parse_v2(fixed: &[u8; 16], rest: &[u8]) -> Result<Header, Error> {
    if fixed[..12] != V2_SIGNATURE {
        return Err(Error::BadV2);
    }
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    if version != 2 {
        return Err(Error::BadV2);
    }
    match command {
        0 => return Ok(Header::Local),
        1 => {}
        _ => return Err(Error::BadV2),
    }
    let family = fixed[13] >> 4;
    let transport = fixed[13] & 0x0f;
    // STREAM (TCP) only: this is an HTTP listener.
    if transport != 1 {
        return Err(Error::BadV2);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match family {
        // AF_INET: 4 + 4 + 2 + 2.
        1 if rest.len() >= 12 => {
            let ip = |b: &[u8]| IpAddr::from([b[0], b[1], b[2], b[3]]);
            Ok(Header::Proxied {
                source: SocketAddr::new(ip(&rest[0..4]), port(&rest[8..10])),
                destination: SocketAddr::new(ip(&rest[4..8]), port(&rest[10..12])),
            })
        }
        // AF_INET6: 16 + 16 + 2 + 2.
        2 if rest.len() >= 36 => {
            let ip = |b: &[u8]| {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::from(a)
            };
            Ok(Header::Proxied {
                source: SocketAddr::new(ip(&rest[0..16]), port(&rest[32..34])),
                destination: SocketAddr::new(ip(&rest[16..32]), port(&rest[34..36])),
            })
        }
        // AF_UNSPEC with PROXY: nothing to say about the client.
        0 => Ok(Header::Local),
        _ => Err(Error::BadV2),
    }
}

/// Reads the header at the start of `stream`, and nothing after it.
pub async fn read(stream: &mut TcpStream) -> Result<Header, Error> {
    let closed = |_| Error::Closed;
    // Both versions are at least 16 bytes ("PROXY UNKNOWN\r\n" is 15: read
    // it up to its end below).
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed[..15]).await.map_err(closed)?;
    if fixed[..6] == *b"PROXY " {
        let mut line = fixed[..15].to_vec();
        // The rest of the line: peek what is there, take up to CRLF.
        let mut peeked = [0u8; V1_MAX];
        loop {
            if line.ends_with(b"\r\n") {
                return parse_v1(&line);
            }
            if line.len() >= V1_MAX {
                return Err(Error::BadV1);
            }
            let n = stream
                .peek(&mut peeked[..V1_MAX - line.len()])
                .await
                .map_err(closed)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            let take = match peeked[..n].iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                // Not all there yet: take one byte (this waits for more).
                None => 1,
            };
            let mut buf = vec![0u8; take];
            stream.read_exact(&mut buf).await.map_err(closed)?;
            line.extend_from_slice(&buf);
        }
    }
    stream.read_exact(&mut fixed[15..]).await.map_err(closed)?;
    if fixed[..12] != V2_SIGNATURE {
        return Err(Error::Missing);
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX {
        return Err(Error::BadV2);
    }
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).await.map_err(closed)?;
    parse_v2(&fixed, &rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_lines() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"),
            Ok(Header::Proxied {
                source: a("192.0.2.7:56324"),
                destination: a("10.0.0.1:443"),
            })
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n"),
            Ok(Header::Proxied {
                source: a("[2001:db8::7]:4000"),
                destination: a("[2001:db8::1]:80"),
            })
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n"), Ok(Header::Local));
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 065535 1\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 70000 1\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY  TCP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(
                parse_v1(bad),
                Err(Error::BadV1),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> ([u8; 16], Vec<u8>) {
        let mut fixed = [0u8; 16];
        fixed[..12].copy_from_slice(&V2_SIGNATURE);
        fixed[12] = 0x20 | command;
        fixed[13] = family;
        fixed[14..16].copy_from_slice(&(addresses.len() as u16).to_be_bytes());
        (fixed, addresses.to_vec())
    }

    #[test]
    fn v2_headers() {
        let mut v4 = vec![192, 0, 2, 7, 10, 0, 0, 1];
        v4.extend_from_slice(&56324u16.to_be_bytes());
        v4.extend_from_slice(&443u16.to_be_bytes());
        // A TLV after the addresses is skipped.
        v4.extend_from_slice(&[0x04, 0, 1, 0]);
        let (f, r) = v2(1, 0x11, &v4);
        assert_eq!(
            parse_v2(&f, &r),
            Ok(Header::Proxied {
                source: a("192.0.2.7:56324"),
                destination: a("10.0.0.1:443"),
            })
        );
        let (f, r) = v2(0, 0x00, &[]);
        assert_eq!(parse_v2(&f, &r), Ok(Header::Local));
        // Too short, UDP, a bad command, a bad version.
        let (f, r) = v2(1, 0x11, &v4[..8]);
        assert_eq!(parse_v2(&f, &r), Err(Error::BadV2));
        let (f, r) = v2(1, 0x12, &v4);
        assert_eq!(parse_v2(&f, &r), Err(Error::BadV2));
        let (f, r) = v2(7, 0x11, &v4);
        assert_eq!(parse_v2(&f, &r), Err(Error::BadV2));
        let (mut f, r) = v2(1, 0x11, &v4);
        f[12] = 0x11;
        assert_eq!(parse_v2(&f, &r), Err(Error::BadV2));
    }
}

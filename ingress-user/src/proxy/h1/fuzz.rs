//! The HTTP/1.1 fast path's parsers under a fuzzer (see `crate::fuzzing`).

use std::net::IpAddr;

use super::{
    MAX_HEADERS,
    codec::{self, Chunked, Forwarded, Framing},
};

/// Request head → analysis → upstream head, then the body as chunked.
/// Invariants: whatever the analysis accepts is rewritten into a head that
/// parses again with the same framing and Host; the chunked scanner gives
/// the same answer whether the bytes arrive at once or split in two.
pub fn request(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(data) else {
        return;
    };
    if let Ok(info) = codec::analyze_request(req.headers) {
        let fwd = Forwarded::from_parts(IpAddr::from([192, 0, 2, 1]), 80, false);
        let mut out = Vec::new();
        codec::write_request_head(&mut out, &req, &info, &fwd, None, None, None);
        // Room for the fields we add.
        let mut again_headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 16];
        let mut again = httparse::Request::new(&mut again_headers);
        match again.parse(&out) {
            Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "trailing bytes"),
            other => panic!(
                "the upstream head does not parse ({other:?}): {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
        let framing = |f: Framing| match f {
            // Without a body both say nothing.
            Framing::Empty | Framing::Close => None,
            other => Some(other),
        };
        if again.headers.len() > MAX_HEADERS {
            // The fields we add took it past what the analysis takes (and
            // it refuses): read the framing fields directly.
            assert!(codec::analyze_request(again.headers).is_err());
            assert_eq!(framing_of(again.headers), framing(info.framing));
        } else {
            let again_info =
                codec::analyze_request(again.headers).expect("the upstream head is acceptable");
            assert_eq!(framing(again_info.framing), framing(info.framing));
            assert_eq!(again_info.host, info.host);
            assert!(!again_info.upgrade || info.upgrade);
        }
    }
    let body = &data[head_len..];
    let whole = scan(&[body]);
    for cut in [1, body.len() / 2, body.len().saturating_sub(1)] {
        if cut < body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(scan(&[a, b]), whole, "split at {cut}");
        }
    }
}

/// The body framing the Content-Length and Transfer-Encoding fields of a
/// head we wrote say, without the analysis (which takes `MAX_HEADERS`).
fn framing_of(headers: &[httparse::Header<'_>]) -> Option<Framing> {
    let field = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect()
    };
    let lengths = field("content-length");
    let codings = field("transfer-encoding");
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => None,
        ([], [_, ..]) => {
            assert!(
                codings
                    .last()
                    .unwrap()
                    .to_ascii_lowercase()
                    .ends_with("chunked"),
                "{codings:?}"
            );
            Some(Framing::Chunked)
        }
        ([n, rest @ ..], []) => {
            assert!(rest.iter().all(|m| m == n), "{lengths:?}");
            let n: u64 = n.parse().expect("a Content-Length we wrote");
            (n > 0).then_some(Framing::Length(n))
        }
        _ => panic!("both Content-Length {lengths:?} and Transfer-Encoding {codings:?}"),
    }
}

/// (bytes of the body, data bytes, done) or the error.
fn scan(parts: &[&[u8]]) -> Result<(usize, u64, bool), &'static str> {
    let mut c = Chunked::default();
    let mut used = 0;
    for part in parts {
        let n = c.scan(part)?;
        used += n;
        if c.done() {
            break;
        }
    }
    Ok((used, c.decoded(), c.done()))
}

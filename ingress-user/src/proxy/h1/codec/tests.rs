//! Tests of the fast path's codec: request heads analysed and rewritten, response heads read.

use super::*;

fn parse_req(raw: &[u8]) -> (Vec<u8>, Result<(), HeadError>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    assert!(req.parse(raw).unwrap().is_complete());
    let mut out = Vec::new();
    let fwd = Forwarded::from_parts("10.1.2.3".parse().unwrap(), 80, false);
    let result = analyze_request(req.headers).map(|info| {
        write_request_head(&mut out, &req, &info, &fwd, None, None, None);
    });
    (out, result)
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn request_heads_lose_hop_by_hop_fields_and_gain_forwarding_ones() {
    let (out, r) = parse_req(
        b"GET /tea?x=1 HTTP/1.1\r\nHost: cafe.example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
          Keep-Alive: 5\r\nProxy-Authorization: basic x\r\nUpgrade: h2c\r\nX-Forwarded-For: 192.0.2.1\r\n\
          X-Forwarded-Host: evil\r\nX-Real-IP: 1.1.1.1\r\nAccept: */*\r\n\r\n",
    );
    r.unwrap();
    let out = text(&out);
    assert!(
        out.starts_with("GET /tea?x=1 HTTP/1.1\r\nHost: cafe.example.com\r\n"),
        "{out}"
    );
    for gone in [
        "X-Secret",
        "Keep-Alive",
        "Proxy-Authorization",
        "Upgrade",
        "evil",
        "1.1.1.1",
        "Connection",
    ] {
        assert!(!out.contains(gone), "{gone} in {out}");
    }
    for kept in [
        "Accept: */*\r\n",
        // ingress-nginx's default: the client's own list is replaced.
        "X-Forwarded-For: 10.1.2.3\r\n",
        "X-Real-IP: 10.1.2.3\r\n",
        "X-Forwarded-Proto: http\r\n",
        "X-Forwarded-Host: cafe.example.com\r\n",
        "X-Forwarded-Port: 80\r\n",
        "X-Request-ID: ",
    ] {
        assert!(out.contains(kept), "{kept:?} missing in {out}");
    }
    assert!(out.ends_with("\r\n\r\n"));
    assert!(!out.contains("192.0.2.1"), "{out}");
}

#[test]
fn full_forwarded_for_appends_and_forwarded_headers_pass_when_trusted() {
    let raw = b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\n\
                X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Host: b.test\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(raw).unwrap();
    let info = analyze_request(req.headers).unwrap();
    let down = crate::proxy::headers::Downstream {
        client: "192.0.2.2:1".parse().unwrap(),
        origin: "10.0.0.9:1".parse().unwrap(),
        peer: "10.0.0.9:1".parse().unwrap(),
        local: "10.0.0.1:80".parse().unwrap(),
        tls: false,
    };
    let rules = crate::proxy::headers::ClientAddress {
        compute_full_forwarded_for: true,
        use_forwarded_headers: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    write_request_head(
        &mut out,
        &req,
        &info,
        &Forwarded::new(&down, &rules),
        None,
        None,
        None,
    );
    let out = text(&out);
    for kept in [
        "X-Forwarded-For: 192.0.2.1, 192.0.2.2, 10.0.0.9\r\n",
        "X-Real-IP: 192.0.2.2\r\n",
        "X-Forwarded-Proto: https\r\n",
        "X-Forwarded-Port: 443\r\n",
        "X-Forwarded-Host: b.test\r\n",
    ] {
        assert!(out.contains(kept), "{kept:?} missing in {out}");
    }
    // Without use-forwarded-headers the proxy's own values.
    let rules = crate::proxy::headers::ClientAddress::default();
    let mut out = Vec::new();
    write_request_head(
        &mut out,
        &req,
        &info,
        &Forwarded::new(&down, &rules),
        None,
        None,
        None,
    );
    let out = text(&out);
    for kept in [
        "X-Forwarded-For: 192.0.2.2\r\n",
        "X-Forwarded-Proto: http\r\n",
        "X-Forwarded-Port: 80\r\n",
        "X-Forwarded-Host: a.test\r\n",
    ] {
        assert!(out.contains(kept), "{kept:?} missing in {out}");
    }
}

#[test]
fn request_framing() {
    let framing = |raw: &str| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).unwrap();
        analyze_request(req.headers).map(|i| (i.framing, i.close))
    };
    let head = |fields: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
    assert_eq!(framing(&head("")), Ok((Framing::Empty, false)));
    assert_eq!(
        framing(&head("Content-Length: 0\r\n")),
        Ok((Framing::Empty, false))
    );
    assert_eq!(
        framing(&head("Content-Length: 12\r\n")),
        Ok((Framing::Length(12), false))
    );
    assert_eq!(
        framing(&head("Content-Length: 12\r\nContent-Length: 12\r\n")),
        Ok((Framing::Length(12), false))
    );
    assert!(matches!(
        framing(&head("Content-Length: 4\r\nContent-Length: 5\r\n")),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        framing(&head("Content-Length: 4x\r\n")),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        framing(&head("Content-Length: -1\r\n")),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        framing(&head("Content-Length: 99999999999999999999\r\n")),
        Err(HeadError::Bad(_))
    ));
    assert_eq!(
        framing(&head("Transfer-Encoding: chunked\r\n")),
        Ok((Framing::Chunked, false))
    );
    assert_eq!(
        framing(&head("Transfer-Encoding: CHUNKED\r\n")),
        Ok((Framing::Chunked, false))
    );
    // Both, in either order: 400, as nginx (issue 23, fix 8).
    for both in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    ] {
        assert!(
            matches!(framing(&head(both)), Err(HeadError::Bad(_))),
            "{both}"
        );
    }
    assert!(matches!(
        framing(&head("Transfer-Encoding: chunked, gzip\r\n")),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        framing(&head(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
        )),
        Err(HeadError::Bad(_))
    ));
    assert_eq!(
        framing(&head("Transfer-Encoding: gzip, chunked\r\n")),
        Err(HeadError::NotImplemented)
    );
    assert!(matches!(
        framing(&head("Host: b\r\n")),
        Err(HeadError::Bad(_))
    ));
    assert_eq!(
        framing(&head("Connection: close\r\n")),
        Ok((Framing::Empty, true))
    );
}

#[test]
fn upgrade_needs_both_fields() {
    let info = |raw: &str| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).unwrap();
        let i = analyze_request(req.headers).unwrap();
        (i.upgrade, i.expect, i.te_trailers)
    };
    assert_eq!(
        info("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        (true, false, false)
    );
    assert_eq!(
        info("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
        (false, false, false)
    );
    assert_eq!(
        info("POST / HTTP/1.1\r\nExpect: 100-continue\r\nTE: trailers, deflate\r\n\r\n"),
        (false, true, true)
    );
}

fn parse_resp(raw: &[u8], head_request: bool, close: bool) -> (Framing, bool, String) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    assert!(resp.parse(raw).unwrap().is_complete());
    let info = analyze_response(resp.code.unwrap(), head_request, resp.headers).unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &resp, &info, close, None, None);
    (info.framing, info.close, text(&out))
}

#[test]
fn response_framing_and_rewriting() {
    let (f, close, out) = parse_resp(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nKeep-Alive: 5\r\n\r\n",
        false,
        false,
    );
    assert_eq!((f, close), (Framing::Length(3), false));
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nServer: xingress\r\nDate: "),
        "{out}"
    );
    assert!(
        !out.contains("Keep-Alive") && !out.contains("Connection"),
        "{out}"
    );
    // HEAD, 204 and 304 have no body whatever the fields say.
    assert_eq!(
        parse_resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true, false).0,
        Framing::Empty
    );
    assert_eq!(
        parse_resp(b"HTTP/1.1 204 No Content\r\n\r\n", false, false).0,
        Framing::Empty
    );
    assert_eq!(
        parse_resp(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            false
        )
        .0,
        Framing::Empty
    );
    // No length: until the pod closes, and so does the client's connection.
    assert_eq!(
        parse_resp(b"HTTP/1.0 200 OK\r\n\r\n", false, false).0,
        Framing::Close
    );
    let (f, close, out) = parse_resp(
        b"HTTP/1.1 200 OK\r\nServer: pod\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
        false,
        true,
    );
    assert_eq!((f, close), (Framing::Chunked, true));
    assert!(
        out.contains("Server: pod\r\nTransfer-Encoding: chunked\r\n"),
        "{out}"
    );
    assert!(
        !out.contains("Content-Length") && !out.contains("X-Hop") && !out.contains("xingress"),
        "{out}"
    );
    assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
    // A coding without chunked: until close.
    assert_eq!(
        parse_resp(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
            false
        )
        .0,
        Framing::Close
    );
}

#[test]
fn chunked_scanner_finds_the_end_across_splits() {
    let body = b"5\r\nhello\r\n1;ext=\"v\"\r\n!\r\n0\r\nX-Trailer: t\r\n\r\nGET /next";
    let end = body.len() - b"GET /next".len();
    for split in 0..=end {
        let mut c = Chunked::default();
        let a = c.scan(&body[..split]).unwrap();
        assert_eq!(a, split);
        let b = c.scan(&body[split..]).unwrap();
        assert_eq!(split + b, end, "split at {split}");
        assert!(c.done());
        assert_eq!(c.decoded(), 6);
    }
    let mut c = Chunked::default();
    assert_eq!(c.scan(b"0\r\n\r\n"), Ok(5));
    assert!(c.done());
}

#[test]
fn chunked_scanner_rejects_bad_framing() {
    for bad in [
        &b"zz\r\nabc\r\n0\r\n\r\n"[..],
        b"\r\n",
        b"3\nabc\r\n",
        b"3\r\nabcd\r\n",
        b"3\r\nabc\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"1;a\x00b\r\n",
        b"0\r\nX: a\nb\r\n\r\n",
        b"0\r\n\r\r",
    ] {
        let mut c = Chunked::default();
        assert!(c.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let mut c = Chunked::default();
    let long = format!("1;{}\r\n", "a".repeat(5000));
    assert!(c.scan(long.as_bytes()).is_err());
}

#[test]
fn local_responses_are_complete() {
    let mut out = Vec::new();
    write_local_response(
        &mut out,
        http::StatusCode::NOT_FOUND,
        b"nope\n",
        None,
        false,
        true,
        None,
    );
    let t = text(&out);
    assert!(
        t.starts_with("HTTP/1.1 404 Not Found\r\nServer: xingress\r\nDate: "),
        "{t}"
    );
    assert!(
        t.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\nnope\n"),
        "{t}"
    );
    let mut out = Vec::new();
    write_local_response(
        &mut out,
        http::StatusCode::PERMANENT_REDIRECT,
        b"x",
        Some((b"Location", b"https://a/")),
        true,
        false,
        Some(b"max-age=31536000"),
    );
    let t = text(&out);
    assert!(
        t.contains("Location: https://a/\r\n") && t.ends_with("Content-Length: 1\r\n\r\n"),
        "{t}"
    );
    assert!(
        t.contains("Strict-Transport-Security: max-age=31536000\r\n"),
        "{t}"
    );
}

#[test]
fn dates_are_imf_fixdate() {
    assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        &imf_fixdate(1_709_164_800),
        b"Thu, 29 Feb 2024 00:00:00 GMT"
    );
}

#[test]
fn more_fields_than_the_analysis_holds_are_refused_not_cut() {
    // A framing field past MAX_HEADERS must not go unseen (found by the
    // http1_request fuzz target: a rewritten head of 101 fields whose
    // Content-Length came last read as bodiless).
    let mut raw = String::from("POST / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_HEADERS - 1 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("Content-Length: 5\r\n\r\nhello");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 1];
    let mut req = httparse::Request::new(&mut headers);
    assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
    assert_eq!(req.headers.len(), MAX_HEADERS + 1);
    assert!(matches!(
        analyze_request(req.headers),
        Err(HeadError::Bad("too many header fields"))
    ));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 1];
    let mut resp = httparse::Response::new(&mut headers);
    let raw = raw.replacen("POST / HTTP/1.1", "HTTP/1.1 200 OK", 1);
    assert!(resp.parse(raw.as_bytes()).unwrap().is_complete());
    assert!(analyze_response(200, false, resp.headers).is_err());
}

#[test]
fn connection_cannot_remove_routing_or_framing_fields() {
    // Found by the http1_request fuzz target: `Connection: Host` took the
    // Host field out of the request the pod got.
    let (out, r) = parse_req(
        b"GET / HTTP/1.1\r\nConnection: HosT, x-request-id, X-Drop\r\nHost: a.test\r\n\
          X-Request-ID: 7\r\nX-Drop: 1\r\n\r\n",
    );
    r.unwrap();
    let out = text(&out);
    assert!(out.contains("\r\nHost: a.test\r\n"), "{out}");
    assert!(out.contains("\r\nX-Request-ID: 7\r\n"), "{out}");
    assert!(!out.contains("X-Drop"), "{out}");
    // A pod cannot take the response's Content-Length away either.
    let (f, _, out) = parse_resp(
        b"HTTP/1.1 200 OK\r\nConnection: content-length, X-Drop\r\nContent-Length: 3\r\nX-Drop: 1\r\n\r\n",
        false,
        false,
    );
    assert_eq!(f, Framing::Length(3));
    assert!(out.contains("\r\nContent-Length: 3\r\n"), "{out}");
    assert!(!out.contains("X-Drop"), "{out}");
}

/// `proxy-set-headers`, as both writers carry it out.
fn request_edit() -> crate::model::header_rules::HeaderEdit {
    crate::model::header_rules::HeaderEdit {
        set: vec![
            (
                http::HeaderName::from_static("accept"),
                http::HeaderValue::from_static("text/plain"),
            ),
            (
                http::HeaderName::from_static("x-team"),
                http::HeaderValue::from_static("platform"),
            ),
        ],
        ..Default::default()
    }
}

/// The fast path's writer and hyper's (`headers::to_pod`) carry out the same
/// forwarding rules: the same request gives the pod the same fields, for
/// each client-address setting, the ConfigMap's `proxy-set-headers` too.
#[test]
fn both_writers_give_the_pod_the_same_fields() {
    use crate::proxy::headers::{ClientAddress, Downstream, to_pod};
    let raw =
        b"POST /tea?x=1 HTTP/1.1\r\nHost: cafe.example.com\r\nConnection: keep-alive, X-Secret\r\n\
        X-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Authorization: basic x\r\nTE: trailers, deflate\r\n\
        X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\nX-Forwarded-Host: evil\r\n\
        X-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\nX-Real-IP: 1.1.1.1\r\n\
        X-Request-ID: abc\r\nAccept: */*\r\nContent-Length: 4\r\n\r\n";
    let down = Downstream {
        client: "192.0.2.2:1000".parse().unwrap(),
        origin: "10.0.0.9:1000".parse().unwrap(),
        peer: "10.0.0.9:1000".parse().unwrap(),
        local: "10.0.0.1:80".parse().unwrap(),
        tls: false,
    };
    for rules in [
        ClientAddress::default(),
        ClientAddress {
            compute_full_forwarded_for: true,
            ..ClientAddress::default()
        },
        ClientAddress {
            use_forwarded_headers: true,
            compute_full_forwarded_for: true,
            ..ClientAddress::default()
        },
    ] {
        // The fast path.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        let info = analyze_request(req.headers).unwrap();
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &req,
            &info,
            &Forwarded::new(&down, &rules),
            None,
            None,
            Some(&request_edit()),
        );
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut sent = httparse::Request::new(&mut fields);
        sent.parse(&out).unwrap();
        let fast = collect(
            sent.headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec())),
        );
        // hyper's path.
        let mut map = http::HeaderMap::new();
        for h in req.headers.iter() {
            map.append(
                http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        let host = map.get("host").cloned();
        to_pod(&mut map, &down, host, &rules);
        request_edit().apply(&mut map);
        let hyper = collect(
            map.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        assert_eq!(fast, hyper, "{rules:?}");
        assert_eq!(fast["accept"], ["text/plain"]);
        assert_eq!(fast["x-team"], ["platform"]);
    }
}

/// Field name (lowercase) → values, in order, one X-Forwarded-For value
/// split into its list elements (the writers may fold it differently).
fn collect(
    fields: impl Iterator<Item = (String, Vec<u8>)>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in fields {
        let k = k.to_ascii_lowercase();
        let v = String::from_utf8(v).unwrap();
        if k == "x-forwarded-for" {
            m.entry(k)
                .or_default()
                .extend(v.split(',').map(|e| e.trim().to_string()));
        } else {
            m.entry(k).or_default().push(v);
        }
    }
    m
}

/// `add-headers`/`hide-headers` and a route's own edit, as both writers
/// carry them out on a pod's response: the route's win.
#[test]
fn both_writers_edit_the_response_alike() {
    use crate::model::header_rules::{HeaderEdit, Rewrite};
    use http::{HeaderName as N, HeaderValue as V};
    let raw = b"HTTP/1.1 200 OK\r\nX-Frame-Options: ALLOW\r\nX-Powered-By: php\r\n\
        X-Extra: pod\r\nX-Kept: 1\r\nLocation: http://pod:8080/login?next=1\r\n\
        Refresh: 5; url=http://pod:8080/home\r\nSet-Cookie: sid=1; Path=/cart; Domain=POD.local; HttpOnly\r\n\
        Set-Cookie: other=2; Path=/x\r\nContent-Length: 0\r\n\r\n";
    let edits = crate::model::header_rules::Edits {
        request: None,
        response: [
            Some(std::sync::Arc::new(HeaderEdit {
                set: vec![
                    (N::from_static("x-frame-options"), V::from_static("DENY")),
                    (N::from_static("x-served-by"), V::from_static("edge")),
                ],
                remove: vec![N::from_static("x-powered-by")],
                ..Default::default()
            })),
            Some(std::sync::Arc::new(HeaderEdit {
                set: vec![(
                    N::from_static("x-frame-options"),
                    V::from_static("SAMEORIGIN"),
                )],
                add: vec![(N::from_static("x-extra"), V::from_static("route"))],
                remove: vec![N::from_static("x-served-by")],
                rewrite: vec![
                    Rewrite::Redirect {
                        from: "http://pod:8080/".into(),
                        to: "https://shop.test/app/".into(),
                    },
                    Rewrite::CookiePath {
                        from: "/".into(),
                        to: "/app/".into(),
                    },
                    Rewrite::CookieDomain {
                        from: "pod.local".into(),
                        to: "shop.test".into(),
                    },
                ],
            })),
        ],
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(raw).unwrap();
    let info = analyze_response(200, false, resp.headers).unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &resp, &info, false, None, Some(&edits));
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut written = httparse::Response::new(&mut fields);
    written.parse(&out).unwrap();
    let fast = collect(
        written
            .headers
            .iter()
            .filter(|h| {
                !["date", "server", "content-length"].contains(&&*h.name.to_ascii_lowercase())
            })
            .map(|h| (h.name.to_string(), h.value.to_vec())),
    );
    let mut map = http::HeaderMap::new();
    for h in resp
        .headers
        .iter()
        .filter(|h| !h.name.eq_ignore_ascii_case("content-length"))
    {
        map.append(
            N::from_bytes(h.name.as_bytes()).unwrap(),
            V::from_bytes(h.value).unwrap(),
        );
    }
    for e in edits.response() {
        e.apply(&mut map);
    }
    // hyper's map holds an added value comma-joined; the fast path writes
    // a second line: the same field to HTTP.
    let mut hyper = collect(
        map.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
    );
    for values in hyper.values_mut() {
        *values = values
            .iter()
            .flat_map(|v| v.split(',').map(str::to_string))
            .collect();
    }
    assert_eq!(fast, hyper);
    assert_eq!(fast["x-frame-options"], ["SAMEORIGIN"]);
    assert_eq!(fast["x-extra"], ["pod", "route"]);
    assert!(!fast.contains_key("x-powered-by") && !fast.contains_key("x-served-by"));
    assert_eq!(fast["x-kept"], ["1"]);
    assert_eq!(fast["location"], ["https://shop.test/app/login?next=1"]);
    assert_eq!(fast["refresh"], ["5; url=https://shop.test/app/home"]);
    assert_eq!(
        fast["set-cookie"],
        [
            "sid=1; Path=/app/cart; Domain=shop.test; HttpOnly",
            "other=2; Path=/app/x"
        ]
    );
}

#[test]
fn hsts_replaces_the_pods_own() {
    let raw =
        b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=0\r\nContent-Length: 0\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(raw).unwrap();
    let info = analyze_response(200, false, resp.headers).unwrap();
    let mut out = Vec::new();
    write_response_head(
        &mut out,
        &resp,
        &info,
        false,
        Some(b"max-age=31536000"),
        None,
    );
    let t = text(&out);
    assert!(
        t.contains("Strict-Transport-Security: max-age=31536000\r\n"),
        "{t}"
    );
    assert!(!t.contains("max-age=0"), "{t}");
    let mut out = Vec::new();
    write_response_head(&mut out, &resp, &info, false, None, None);
    assert!(text(&out).contains("Strict-Transport-Security: max-age=0\r\n"));
}

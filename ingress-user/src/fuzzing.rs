//! Entry points for the cargo-fuzz targets in `fuzz/`. Each takes raw fuzzer
//! bytes, runs one parser the way the agent does, and panics when an
//! invariant breaks (a panic is what the fuzzer reports).

use crate::{
    dataplane::{Policy, PolicyFlags},
    k8s::parse_documents,
    model::{
        ClassOptions, HOST_BUF_LEN, Objects, TranslateOptions, normalize_host, path_matches,
        translate,
    },
};

/// HTTP/1.1 request heads and chunked bodies (the fast path's codec).
/// Also the first bytes of a TLS connection, as the pass-through listener
/// reads them: a server name is always inside the bytes, and more is
/// asked for only past what is there.
pub fn http1_request(data: &[u8]) {
    crate::proxy::h1_fuzz::request(data);
    use crate::proxy::passthrough::{Hello, client_hello};
    match client_hello(data) {
        Hello::Name(name) => assert!(name.len() < data.len()),
        Hello::Incomplete(n) => assert!(n > data.len(), "{n} for {} bytes", data.len()),
        Hello::Other => {}
    }
}

/// Manifest text → objects → routing table → XDP policy, then lookups of
/// every host it defines. Nothing may panic, and every host the table lists
/// must route.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut objects = Objects::default();
    parse_documents(text, "fuzz.yaml", &mut objects);
    let opts = TranslateOptions {
        classes: ClassOptions {
            watch_without_class: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let t = translate(&objects, &opts);
    let _ = Policy::new(
        &t.table,
        &PolicyFlags {
            strict_hosts: true,
            ..Default::default()
        },
    );
    let rows = t.table.rows();
    for name in t.table.host_names() {
        let host = name.replace("*.", "any.");
        let mut buf = [0u8; HOST_BUF_LEN];
        let normal = normalize_host(&host, &mut buf);
        assert!(normal.is_some(), "table host {name:?} does not normalize");
        for row in &rows {
            let rule = t.table.route(normal, &row.path).and_then(|r| r.rule);
            // A rewritten target is always origin-form.
            if let Some(out) = rule.and_then(|r| r.rewritten(&row.path, Some("q=1"))) {
                assert!(out.starts_with('/'), "{out:?}");
            }
            // Any Authorization value is checked without a panic, and
            // one that is not `Basic` credentials never passes.
            if let Some(auth) = rule.and_then(|r| r.settings.basic_auth.as_deref()) {
                let refused = crate::model::basic_auth::Check::Refused;
                assert_eq!(auth.check(Some(row.path.as_bytes()), |f| f()), refused);
                let _ = auth.check(Some(format!("Basic {}", row.path).as_bytes()), |f| f());
            }
        }
    }
}

/// Host header / authority normalization and path matching.
/// Invariants: the result is lowercase, has no port and no trailing dot,
/// and normalizing it again changes nothing; a path always matches itself.
pub fn host_and_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, path) = text.split_once('\n').unwrap_or((text, "/"));
    let mut buf = [0u8; HOST_BUF_LEN];
    if let Some(h) = normalize_host(host, &mut buf) {
        assert!(!h.is_empty());
        assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{h:?}");
        assert!(!h.ends_with('.'), "{h:?}");
        let owned = h.to_string();
        let mut again = [0u8; HOST_BUF_LEN];
        assert_eq!(normalize_host(&owned, &mut again), Some(owned.as_str()));
    }
    if path.starts_with('/') {
        assert!(path_matches(path, path), "{path:?} does not match itself");
    }
    let _ = path_matches("/", path);
}

/// Snippet text (`configuration-snippet` and the others): parsed in every
/// scope; what parses runs on a request whose header values are the same
/// bytes. Nothing may panic, and what a snippet decides stays inside what
/// snippets may do: no framing or hop-by-hop field is ever set, statuses
/// are 200 to 599, and a redirect's Location is absolute.
pub fn snippet(data: &[u8]) {
    use crate::model::{
        header_rules::framing_or_hop_by_hop,
        snippet::{Input, Outcome, Scope, Snippet},
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for scope in [Scope::Server, Scope::Location, Scope::Auth] {
        let Ok(s) = Snippet::parse(text, scope) else {
            continue;
        };
        let value = &data[..data.len().min(64)];
        let header = |_: &str| Some(value);
        let cookie = |_: &str| Some(value);
        let mut out = Outcome::default();
        s.run(
            &Input {
                method: "GET",
                host: "fuzz.example",
                path: "/a/b",
                query: Some("x=1&y=2"),
                request_uri: "/a/b?x=1&y=2",
                client: std::net::IpAddr::from([192, 0, 2, 1]),
                tls: false,
                header: &header,
                cookie: &cookie,
            },
            &mut out,
        );
        for (name, _) in out.request.set.iter().chain(&out.response.set) {
            assert!(!framing_or_hop_by_hop(name), "{name} set");
        }
        if let Some((code, body)) = &out.reply {
            assert!((200..=599).contains(code), "status {code}");
            if matches!(code, 301 | 302 | 303 | 307 | 308) {
                assert!(
                    body.starts_with(b"http://") || body.starts_with(b"https://"),
                    "Location {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        if scope == Scope::Auth {
            assert!(out.reply.is_none() && out.target.is_none() && out.response.is_empty());
        }
    }
}

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
            if let Some(auth) = rule.and_then(|r| r.basic_auth.as_deref()) {
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

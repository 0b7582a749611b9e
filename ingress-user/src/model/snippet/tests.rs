//! Tests of the snippet directives: parsing, refusals and what each does to a request.

use super::*;

fn run(src: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Outcome {
    let snippet = Snippet::parse(src, Scope::Location).unwrap_or_else(|e| panic!("{src}: {e}"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    };
    let cookie = |name: &str| {
        let all = header("cookie")?;
        std::str::from_utf8(all).ok()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v.as_bytes())
        })
    };
    let input = Input {
        method,
        host: "app.example",
        path,
        query,
        request_uri: target,
        client: "192.0.2.7".parse().unwrap(),
        tls: false,
        header: &header,
        cookie: &cookie,
    };
    let mut out = Outcome::default();
    snippet.run(&input, &mut out);
    out
}

fn field(edit: &[(HeaderName, HeaderValue)], name: &str) -> Option<String> {
    edit.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
}

/// Snippets as ingress-nginx users write them, each accepted.
#[test]
fn accepted_snippets() {
    for src in [
        "more_set_headers \"X-Frame-Options: DENY\";",
        "more_set_headers \"X-A: 1\" \"X-B: 2\";\nmore_clear_headers Server X-Powered-By;",
        "more_clear_headers \"X-Debug-*\";",
        "more_set_input_headers \"X-User: $http_x_auth_user\";",
        "more_clear_input_headers Cookie;",
        "add_header X-Cache-Status $scheme always;",
        "add_header Cache-Control \"no-store\";",
        "proxy_set_header X-Tenant $host;",
        "proxy_hide_header X-Internal;",
        "return 403;",
        "return 200 'ok';",
        "return 301 https://$host$request_uri;",
        "return https://elsewhere.example/;",
        "rewrite ^/old/(.*)$ /new/$1 break;",
        "rewrite ^/(.*)$ /v2/$1;",
        "rewrite ^ https://x.example$uri permanent;",
        "if ($request_method = OPTIONS) { return 204; }",
        "if ($http_user_agent ~* \"(bot|crawler)\") { return 403; }",
        "if ($arg_debug) { more_set_headers \"X-Debug: on\"; }",
        "set $tenant $http_x_tenant;\nif ($tenant = \"\") { set $tenant default; }\nmore_set_input_headers \"X-Tenant: $tenant\";",
        "# a comment\n;\nif ($cookie_beta != yes) { break; }",
    ] {
        if let Err(e) = Snippet::parse(src, Scope::Location) {
            panic!("{src:?} refused: {e}");
        }
    }
}

/// What is refused, and the words the message must carry.
#[test]
fn refused_snippets_name_what_is_refused() {
    for (src, says) in [
        ("proxy_pass http://10.0.0.1;", "proxy_pass"),
        ("content_by_lua_block { ngx.say('x') }", "Lua"),
        ("access_by_lua 'x';", "Lua"),
        ("location /metrics { deny all; }", "location"),
        ("include /etc/nginx/secret.conf;", "no file is read"),
        ("deny all;", "denylist-source-range"),
        ("proxy_buffering off;", "proxy_buffering"),
        ("more_set_headers -s 404 \"X: y\";", "-s"),
        (
            "more_set_headers \"Content-Length: 0\";",
            "frames the message",
        ),
        ("proxy_set_header Host evil.example;", "frames the message"),
        (
            "proxy_set_header X-Forwarded-For 1.2.3.4;",
            "agent sets it itself",
        ),
        (
            "more_set_input_headers \"X-Real-IP: 1.2.3.4\";",
            "agent sets it itself",
        ),
        ("add_header X-A $request_body;", "$request_body"),
        ("set $host x;", "cannot be changed"),
        ("set $x $secret;", "$secret"),
        ("if (-f /etc/passwd) { return 200; }", "file checks"),
        ("if ($a) { if ($b) { return 1; } }", "$a"),
        (
            "if ($http_x) { if ($http_y) { return 200; } }",
            "an if inside an if",
        ),
        ("if ($http_x) { proxy_set_header X-A b; }", "inside if"),
        ("if $http_x { return 200; }", "parentheses"),
        ("if ($http_x ~ \"(\") { return 200; }", "does not compile"),
        ("rewrite ^/(?=x) /y;", "does not compile"),
        ("rewrite ^/a /b sideways;", "unknown flag"),
        ("return 444;", "closes the connection"),
        ("return 199;", "200 to 599"),
        ("return 301 elsewhere;", "needs a URL"),
        ("return 301;", "needs a URL"),
        ("more_set_headers \"X: y\"", "without its \";\""),
        ("if ($http_x) { return 200;", "without its \"}\""),
        ("}", "unexpected"),
        ("more_set_headers \"unclosed;", "unclosed"),
        ("add_header \"X\"y z;", "right after a quoted string"),
        ("more_set_headers \"Bad Name: 1\";", "not a field name"),
    ] {
        match Snippet::parse(src, Scope::Location) {
            Ok(_) => panic!("{src:?} was accepted"),
            Err(e) => assert!(e.contains(says), "{src:?}: {e:?} does not say {says:?}"),
        }
    }
}

#[test]
fn an_auth_snippet_only_edits_the_auth_request() {
    assert!(Snippet::parse("proxy_set_header X-Tenant $host;", Scope::Auth).is_ok());
    assert!(
        Snippet::parse("more_set_input_headers \"X-A: b\";", Scope::Auth).is_ok(),
        "request fields"
    );
    for src in [
        "return 200;",
        "more_set_headers \"X: y\";",
        "if ($http_x) { break; }",
    ] {
        let e = Snippet::parse(src, Scope::Auth).unwrap_err();
        assert!(e.contains("auth"), "{src}: {e}");
    }
}

#[test]
fn header_directives_with_variables() {
    let out = run(
        "more_set_headers \"X-Frame-Options: DENY\" \"X-Host: $host\";\n\
         more_set_input_headers \"X-User: $http_x_auth_user\" \"X-Method: $request_method\";\n\
         proxy_set_header X-Src $remote_addr;\n\
         more_clear_input_headers Cookie;\n\
         more_clear_headers Server \"X-Debug-*\";\n\
         add_header X-Q $arg_q;\n\
         add_header X-Always yes always;",
        "GET",
        "/p?q=42",
        &[("x-auth-user", "ada")],
    );
    assert_eq!(out.reply, None);
    assert_eq!(out.target, None);
    assert_eq!(
        field(&out.response.set, "x-frame-options").as_deref(),
        Some("DENY")
    );
    assert_eq!(
        field(&out.response.set, "x-host").as_deref(),
        Some("app.example")
    );
    assert_eq!(field(&out.request.set, "x-user").as_deref(), Some("ada"));
    assert_eq!(field(&out.request.set, "x-method").as_deref(), Some("GET"));
    assert_eq!(
        field(&out.request.set, "x-src").as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(
        out.request.clear,
        [NameOrPrefix::Name(HeaderName::from_static("cookie"))]
    );
    assert_eq!(
        out.response.clear,
        [
            NameOrPrefix::Name(HeaderName::from_static("server")),
            NameOrPrefix::Prefix("x-debug-".into())
        ]
    );
    assert_eq!(out.response.add.len(), 2);
    assert!(!out.response.add[0].2 && out.response.add[1].2);

    // Carried out on fields: add_header only on success, unless always.
    let mut h = HeaderMap::new();
    h.insert("server", HeaderValue::from_static("pod"));
    h.insert("x-debug-trace", HeaderValue::from_static("1"));
    h.insert("x-keep", HeaderValue::from_static("1"));
    out.response.apply(&mut h, Some(500));
    assert!(h.get("server").is_none() && h.get("x-debug-trace").is_none());
    assert!(h.get("x-keep").is_some());
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert!(h.get("x-q").is_none(), "500: not without always");
    assert_eq!(h.get("x-always").unwrap(), "yes");
    let mut h = HeaderMap::new();
    out.response.apply(&mut h, Some(200));
    assert_eq!(h.get("x-q").unwrap(), "42");
}

#[test]
fn the_rewrite_phase_runs_in_order_and_stops() {
    let preflight = "if ($request_method = OPTIONS) { return 204; }\nmore_set_headers \"X-A: 1\";";
    let out = run(preflight, "OPTIONS", "/", &[]);
    assert_eq!(out.reply, Some((204, Vec::new())));
    // Header directives at the top level apply to returned responses too.
    assert_eq!(field(&out.response.set, "x-a").as_deref(), Some("1"));
    assert_eq!(run(preflight, "GET", "/", &[]).reply, None);

    let bots = "if ($http_user_agent ~* \"(bot|crawler)\") { return 403 \"no $1 here\"; }";
    assert_eq!(
        run(bots, "GET", "/", &[("user-agent", "GoodBot/1")]).reply,
        Some((403, b"no Bot here".to_vec()))
    );
    assert_eq!(run(bots, "GET", "/", &[("user-agent", "curl")]).reply, None);

    // Rewrites chain until a flag stops them; the query follows.
    let chain =
        "rewrite ^/a/(.*)$ /b/$1;\nrewrite ^/b/(.*)$ /c/$1 break;\nrewrite ^/c/(.*)$ /d/$1;";
    assert_eq!(
        run(chain, "GET", "/a/x?k=v", &[]).target.as_deref(),
        Some("/c/x?k=v")
    );
    // A replacement with its own query keeps the client's after it; a
    // trailing `?` drops the client's.
    assert_eq!(
        run("rewrite ^/s$ /search?q=1 break;", "GET", "/s?page=2", &[])
            .target
            .as_deref(),
        Some("/search?q=1&page=2")
    );
    assert_eq!(
        run("rewrite ^/s$ /search? break;", "GET", "/s?page=2", &[])
            .target
            .as_deref(),
        Some("/search")
    );
    // Redirects are absolute, as nginx's absolute_redirect makes them.
    assert_eq!(
        run(
            "rewrite ^/old/(.*) /new/$1 permanent;",
            "GET",
            "/old/p",
            &[]
        )
        .reply,
        Some((301, b"http://app.example/new/p".to_vec()))
    );
    assert_eq!(
        run("return 302 /login;", "GET", "/x", &[]).reply,
        Some((302, b"http://app.example/login".to_vec()))
    );
    assert_eq!(
        run("return https://$host$request_uri;", "GET", "/x?y", &[]).reply,
        Some((302, b"https://app.example/x?y".to_vec()))
    );
    // `break` stops the rewrite phase; header directives still apply.
    let out = run(
        "break;\nreturn 500;\nmore_set_headers \"X-A: 1\";",
        "GET",
        "/",
        &[],
    );
    assert_eq!(out.reply, None);
    assert_eq!(field(&out.response.set, "x-a").as_deref(), Some("1"));
}

#[test]
fn set_variables_and_if_blocks() {
    let src = "set $tenant $http_x_tenant;\n\
               if ($tenant = \"\") { set $tenant default; }\n\
               if ($cookie_beta = yes) { more_set_headers \"X-Beta: on\"; }\n\
               more_set_input_headers \"X-Tenant: $tenant\";";
    let out = run(src, "GET", "/", &[("x-tenant", "acme")]);
    assert_eq!(field(&out.request.set, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(field(&out.response.set, "x-beta"), None);
    let out = run(src, "GET", "/", &[("cookie", "a=b; beta=yes")]);
    assert_eq!(
        field(&out.request.set, "x-tenant").as_deref(),
        Some("default")
    );
    assert_eq!(field(&out.response.set, "x-beta").as_deref(), Some("on"));
    // A variable's value is read after the rewrite phase, as nginx does.
    let out = run(
        "more_set_headers \"X-V: $v\";\nset $v late;",
        "GET",
        "/",
        &[],
    );
    assert_eq!(field(&out.response.set, "x-v").as_deref(), Some("late"));
    // Negated matches, and an empty value removes a request field.
    let out = run(
        "if ($http_x_key !~ ^k-) { return 401; }\nproxy_set_header Authorization \"\";",
        "GET",
        "/",
        &[("x-key", "k-1")],
    );
    assert_eq!(out.reply, None);
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Basic x"));
    out.request.apply(&mut h, None);
    assert!(h.get("authorization").is_none());
}

#[test]
fn a_value_a_client_fills_with_a_newline_is_not_set() {
    // Header values from the request cannot carry CR/LF; a path can carry
    // other bytes HeaderValue refuses, which drops that edit only.
    let out = run(
        "more_set_headers \"X-U: $uri\" \"X-K: 1\";",
        "GET",
        "/a\u{7f}b",
        &[],
    );
    assert_eq!(field(&out.response.set, "x-u"), None);
    assert_eq!(field(&out.response.set, "x-k").as_deref(), Some("1"));
}

//! Access control: source allow and deny lists, basic auth from Secrets, and
//! external auth (`auth-url`).

use super::*;

#[test]
fn a_deny_list_wins_over_the_allow_list() {
    let yaml = format!(
        "{CLASS}{}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: both\n  annotations:\n    \
         nginx.ingress.kubernetes.io/allowlist-source-range: 10.0.0.0/8\n    \
         xingress.dev/denylist-source-range: 10.9.0.0/16\n\
         spec:\n  ingressClassName: xingress\n  rules:\n{}---\n",
        service("a", 1, 1),
        rule("both.test", &[("/", "Prefix", "a")])
    );
    let t = translate(&objects(&yaml), &TranslateOptions::default());
    let rule = t.table.route(Some("both.test"), "/").unwrap().rule.unwrap();
    assert!(rule.admits("10.1.2.3".parse().unwrap()));
    assert!(!rule.admits("10.9.2.3".parse().unwrap()));
    assert!(!rule.admits("11.1.2.3".parse().unwrap()));
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn basic_auth_reads_its_secret_or_refuses_the_ingress() {
    use crate::model::basic_auth::Check;
    let secret = |name: &str, data: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData:\n{data}---\n"
        )
    };
    let auth = own_host;
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        secret(
            "file",
            "  auth: |\n    alice:{PLAIN}wonderland\n    bob:rl0uE2tF/cGzA\n",
        ),
        secret("map", "  carol: \"{PLAIN}c\"\n  dave: \"{PLAIN}d\"\n"),
        secret("nothing", "  other: x\n"),
        auth(
            "file",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: file, \
             nginx.ingress.kubernetes.io/auth-realm: Staff only",
        ),
        auth(
            "map",
            "xingress.dev/auth-type: Basic, xingress.dev/auth-secret: default/map, xingress.dev/auth-secret-type: auth-map",
        ),
        auth(
            "digest",
            "nginx.ingress.kubernetes.io/auth-type: digest, nginx.ingress.kubernetes.io/auth-secret: file",
        ),
        auth("no-type", "nginx.ingress.kubernetes.io/auth-secret: file"),
        auth("no-secret", "nginx.ingress.kubernetes.io/auth-type: basic"),
        auth(
            "missing",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: gone",
        ),
        auth(
            "elsewhere",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: other/file",
        ),
        auth(
            "no-key",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: nothing",
        ),
        auth(
            "bad-kind",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: file, \
             nginx.ingress.kubernetes.io/auth-secret-type: ldap",
        ),
        auth("open", ""),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| messages(&t, name);
    let rule = |host: &str| t.table.route(Some(host), "/").unwrap().rule.unwrap();
    let basic = |user: &str, pw: &str| {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        format!("Basic {token}").into_bytes()
    };
    let check = |host: &str, user: &str, pw: &str| {
        rule(host)
            .settings
            .basic_auth
            .as_ref()
            .unwrap()
            .check(Some(&basic(user, pw)), |f| f())
    };

    let file = rule("file.test").settings.basic_auth.clone().unwrap();
    assert_eq!(file.challenge, "Basic realm=\"Staff only\"");
    assert_eq!(file.users(), 1);
    assert_eq!(check("file.test", "alice", "wonderland"), Check::Allowed);
    assert_eq!(check("file.test", "alice", "x"), Check::Refused);
    // The DES line is named by number and costs nobody else anything.
    assert_eq!(
        of("file"),
        [
            "auth-secret default/file: entry 2 is ignored: traditional DES crypt hashes are not supported (use htpasswd -B or -m)"
        ]
    );
    assert_eq!(check("map.test", "dave", "d"), Check::Allowed);
    assert_eq!(check("map.test", "carol", "d"), Check::Refused);
    assert!(of("map").is_empty(), "{:?}", of("map"));

    // Authentication that cannot be applied refuses the Ingress (503).
    for (name, says) in [
        ("digest", "auth-type \"digest\" is not implemented"),
        ("no-type", "auth-secret is set without auth-type"),
        ("no-secret", "auth-type: basic needs auth-secret"),
        ("missing", "auth-secret default/gone not found"),
        (
            "elsewhere",
            "must name a Secret of the Ingress's own namespace",
        ),
        ("no-key", "has no key \"auth\""),
        (
            "bad-kind",
            "auth-secret-type \"ldap\" is not auth-file or auth-map",
        ),
    ] {
        let r = rule(&format!("{name}.test"));
        assert_eq!(r.backend.pick(), Err(BackendError::Unsupported), "{name}");
        assert!(r.settings.basic_auth.is_none());
        assert!(
            of(name).iter().any(|m| m.contains(says)),
            "{name}: {:?}",
            of(name)
        );
    }
    assert!(rule("open.test").settings.basic_auth.is_none());
    assert!(rule("open.test").backend.pick().is_ok());
}

#[test]
fn auth_url_settings_are_read_or_refuse_the_ingress() {
    let with = |name: &str, host: &str, annotations: &str| {
        annotated(
            name,
            annotations,
            &rule(host, &[(&format!("/{name}"), "Prefix", "a")]),
        )
    };
    let p = "nginx.ingress.kubernetes.io/";
    let yaml = [
        CLASS.to_string(),
        service("a", 1, 1),
        with(
            "full",
            "full.test",
            &format!(
                "{p}auth-url: \"https://$host/oauth2/auth\", {p}auth-signin: \"https://$host/oauth2/start\", \
                 {p}auth-method: post, {p}auth-response-headers: \"X-Auth-Request-User, X-Auth-Request-Email\", \
                 {p}auth-signin-redirect-param: next, {p}auth-request-redirect: /landing"
            ),
        ),
        with("plain", "plain.test", &format!("{p}auth-url: http://auth.svc:4180/check")),
        with("bad-url", "bad-url.test", &format!("{p}auth-url: \"auth.svc/check\"")),
        with("bad-var", "bad-var.test", &format!("{p}auth-url: \"http://auth/$cookie_session\"")),
        with("http-host", "http-host.test", &format!("{p}auth-url: \"http://$http_host/auth\"")),
        with(
            "bad-method",
            "bad-method.test",
            &format!("{p}auth-url: http://auth/, {p}auth-method: \"GE T\""),
        ),
        with(
            "bad-header",
            "bad-header.test",
            &format!("{p}auth-url: http://auth/, {p}auth-response-headers: \"X-Ok, bad header\""),
        ),
        with(
            "framing-header",
            "framing-header.test",
            &format!("{p}auth-url: http://auth/, {p}auth-response-headers: \"X-Ok, Content-Length\""),
        ),
        with(
            "hop-header",
            "hop-header.test",
            &format!("{p}auth-url: http://auth/, {p}auth-response-headers: \"Transfer-Encoding\""),
        ),
        with(
            "bad-signin",
            "bad-signin.test",
            &format!("{p}auth-url: http://auth/, {p}auth-signin: /start"),
        ),
        // No host: `$host` would be the client's choice.
        with("any-host", "", &format!("{p}auth-url: \"http://$host/auth\"")),
        with("any-fixed", "", &format!("{p}auth-url: \"http://auth.svc/check\"")),
    ]
    .concat();
    let mut o = Objects::default();
    parse_documents(&yaml, "test.yaml", &mut o);
    let t = translate(&o, &TranslateOptions::default());
    let of = |name: &str| messages(&t, name);
    let rule = |host: Option<&str>, path: &str| t.table.route(host, path).unwrap().rule.unwrap();

    let full = rule(Some("full.test"), "/full")
        .settings
        .external_auth
        .clone()
        .unwrap();
    assert_eq!(full.method, http::Method::POST);
    assert_eq!(full.redirect_param, "next");
    assert_eq!(full.request_redirect.as_deref(), Some("/landing"));
    assert_eq!(
        full.response_headers,
        ["x-auth-request-user", "x-auth-request-email"]
    );
    assert!(full.signin.is_some());
    assert!(of("full").is_empty(), "{:?}", of("full"));
    let plain = rule(Some("plain.test"), "/plain")
        .settings
        .external_auth
        .clone()
        .unwrap();
    assert_eq!(plain.method, http::Method::GET);
    assert_eq!(plain.redirect_param, "rd");
    assert!(plain.signin.is_none() && plain.response_headers.is_empty());

    for (name, says) in [
        ("bad-url", "not an absolute http or https URL"),
        ("bad-var", "$cookie_session is not one xingress fills in"),
        ("http-host", "uses $http_host"),
        ("bad-method", "is not an HTTP method"),
        ("bad-header", "\"bad header\" is not a header name"),
        ("framing-header", "\"Content-Length\" frames the message"),
        ("hop-header", "\"Transfer-Encoding\" frames the message"),
        ("bad-signin", "auth-signin \"/start\""),
    ] {
        let r = rule(Some(&format!("{name}.test")), &format!("/{name}"));
        assert_eq!(r.backend.pick(), Err(BackendError::Unsupported), "{name}");
        assert!(r.settings.external_auth.is_none());
        assert!(
            of(name).iter().any(|m| m.contains(says)),
            "{name}: {:?}",
            of(name)
        );
    }
    assert_eq!(
        rule(None, "/any-host").backend.pick(),
        Err(BackendError::Unsupported)
    );
    assert!(
        of("any-host")
            .iter()
            .any(|m| m.contains("the client would choose")),
        "{:?}",
        of("any-host")
    );
    assert!(rule(None, "/any-fixed").backend.pick().is_ok());
}

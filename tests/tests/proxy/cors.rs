//! CORS: preflights answered by the agent, Access-Control headers on responses.

use crate::common::{one_pod_per_host, ready_agent, send};

#[test]
fn cors_preflights_are_answered_and_responses_carry_the_headers() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        ("open", &format!("{p}enable-cors: \"true\"")),
        (
            "strict",
            &format!(
                "{p}enable-cors: \"true\", {p}cors-allow-origin: \"https://app.example, https://*.corp.example:8443\", \
                 {p}cors-allow-credentials: \"false\", {p}cors-expose-headers: X-Total, {p}cors-max-age: \"600\""
            ),
        ),
    ]);
    let agent = ready_agent(&dir, &[]);
    let ask = |method: &str, host: &str, origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        send(&agent, method, host, "/x", "1.1", &origin)
    };
    // Any origin: the preflight is answered here with ingress-nginx's defaults.
    let r = ask("OPTIONS", "open.test", Some("https://x.example"));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(r.header("access-control-max-age"), Some("1728000"));
    assert!(r.header("access-control-allow-headers").is_some());
    let r = ask("GET", "open.test", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // Listed origins, an exact one and a one-label wildcard with a port.
    for origin in ["https://app.example", "https://a.corp.example:8443"] {
        let r = ask("OPTIONS", "strict.test", Some(origin));
        assert_eq!(r.status, 204, "{origin}: {}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("vary"), Some("Origin"));
        assert_eq!(r.header("access-control-allow-credentials"), None);
        assert_eq!(r.header("access-control-max-age"), Some("600"));
    }
    // Other origins: the pod answers, without Access-Control headers.
    for origin in [
        "https://a.b.corp.example:8443",
        "https://evil.example",
        "http://app.example",
    ] {
        let r = ask("OPTIONS", "strict.test", Some(origin));
        assert_eq!(r.status, 200, "{origin}: {}", r.text());
        assert_eq!(r.echo_field("method").as_deref(), Some("OPTIONS"));
        assert_eq!(r.header("access-control-allow-origin"), None, "{origin}");
    }
    let r = ask("GET", "strict.test", Some("https://app.example"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"));
    let r = ask("GET", "strict.test", None);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

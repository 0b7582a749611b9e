//! Redirects answered without the pod: permanent/temporal-redirect, app-root,
//! force-ssl-redirect and from-to-www-redirect.

use xingress_tests::http1::Conn;

use crate::common::{ingress_yaml, one_pod_per_host, ready_agent, send};

#[test]
fn redirect_annotations_answer_without_the_pod() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "moved",
            &format!("{p}permanent-redirect: https://new.example/landing"),
        ),
        (
            "moved308",
            &format!(
                "{p}permanent-redirect: https://new.example/, {p}permanent-redirect-code: \"308\""
            ),
        ),
        (
            "away",
            &format!("{p}temporal-redirect: http://elsewhere.example/"),
        ),
        ("rooted", &format!("{p}app-root: /app")),
        ("forced", &format!("{p}force-ssl-redirect: \"true\"")),
    ]);
    let agent = ready_agent(&dir, &[]);
    let check = |host: &str, path: &str, status: u16, location: Option<&str>| {
        // The fast path (HTTP/1.1) and hyper's (HTTP/1.0) answer alike.
        for version in ["1.1", "1.0"] {
            let r = send(&agent, "GET", host, path, version, "");
            assert_eq!(
                r.status,
                status,
                "{host}{path} HTTP/{version}: {}",
                r.text()
            );
            assert_eq!(
                r.header("location"),
                location,
                "{host}{path} HTTP/{version}"
            );
        }
    };
    check(
        "moved.test",
        "/any/path?q=1",
        301,
        Some("https://new.example/landing"),
    );
    check("moved308.test", "/", 308, Some("https://new.example/"));
    check("away.test", "/x", 302, Some("http://elsewhere.example/"));
    // app-root: only `/`, on the host as the client wrote it.
    check(
        "rooted.test:8080",
        "/",
        302,
        Some("http://rooted.test:8080/app"),
    );
    check("rooted.test", "/app", 200, None);
    check("rooted.test", "/other", 200, None);
    // force-ssl-redirect: to HTTPS although the Ingress has no TLS section.
    let port = agent.https.port();
    check(
        "forced.test",
        "/a?b",
        308,
        Some(&*format!("https://forced.test:{port}/a?b")),
    );
}

/// `from-to-www-redirect`: www.HOST → HOST and HOST → www.HOST with 308
/// and the request's path and query; never over a host with rules.
#[test]
fn from_to_www_redirect_sends_the_other_name_to_the_ingress_host() {
    let (_live, dir) = one_pod_per_host(&[]);
    let www = "nginx.ingress.kubernetes.io/from-to-www-redirect: \"true\"";
    dir.write(
        "www.yaml",
        &format!(
            "{}{}{}",
            ingress_yaml("bare", "shop.test", "live", www),
            ingress_yaml("prefixed", "www.blog.test", "live", www),
            ingress_yaml("both", "docs.test", "live", www)
                + &ingress_yaml("both-www", "www.docs.test", "live", "")
        ),
    );
    let agent = ready_agent(&dir, &[]);
    let get = |host: &str, target: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .get(host, target)
            .unwrap()
    };
    let r = get("www.shop.test", "/cart?id=7");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("http://shop.test/cart?id=7"))
    );
    let r = get("blog.test", "/post");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("http://www.blog.test/post"))
    );
    assert_eq!(get("shop.test", "/cart").status, 200);
    // www.docs.test has an Ingress of its own: served, not redirected.
    assert_eq!(get("www.docs.test", "/").status, 200);
}

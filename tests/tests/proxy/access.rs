//! Who may reach the pod: source ranges, basic auth, auth-url (external auth)
//! and `satisfy: any`; unimplemented access rules refuse.

use xingress_tests::http1::{self, Conn};

use crate::common::{one_pod_per_host, ready_agent, send};

#[test]
fn source_ranges_and_unimplemented_access_rules_are_enforced() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "lists",
            "nginx.ingress.kubernetes.io/allowlist-source-range: \"127.0.0.0/24\", \
             nginx.ingress.kubernetes.io/denylist-source-range: \"127.0.0.3/32\"",
        ),
        (
            "auth",
            "nginx.ingress.kubernetes.io/auth-tls-match-cn: \"CN=admin\"",
        ),
        (
            "baddeny",
            "xingress.dev/denylist-source-range: \"127.0.0.3/32, 10.0.0.0/33\"",
        ),
        (
            "ignored",
            "nginx.ingress.kubernetes.io/proxy-read-timeout: \"30\"",
        ),
    ]);
    let agent = ready_agent(&dir, &[]);
    let status = |from: [u8; 4], host: &str| {
        http1::Conn::connect_from(from.into(), agent.http)
            .unwrap()
            .get(host, "/")
            .unwrap()
            .status
    };
    assert_eq!(status([127, 0, 0, 2], "lists.test"), 200);
    // Denied inside the allow list, and outside the allow list.
    assert_eq!(status([127, 0, 0, 3], "lists.test"), 403);
    assert_eq!(status([127, 0, 1, 5], "lists.test"), 403);
    // An access rule xingress does not implement: refused, never served open.
    assert_eq!(status([127, 0, 0, 2], "auth.test"), 503);
    // A deny list with an entry that does not parse cannot be enforced.
    assert_eq!(status([127, 0, 0, 2], "baddeny.test"), 503);
    // An annotation that restricts nothing is ignored: served.
    assert_eq!(status([127, 0, 0, 2], "ignored.test"), 200);
}

/// An Opaque Secret `users` with an htpasswd file: alice's password is
/// "p@ss word" (Apache MD5), erin's "secret" (SHA-512 crypt); both hashes
/// were written by `openssl passwd`.
const HTPASSWD: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\nstringData:\n  auth: |\n    \
    alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.\n    \
    erin:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n";

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}\r\n")
}

#[test]
fn basic_auth_admits_the_secrets_users_and_challenges_everyone_else() {
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "private",
            &format!("{p}auth-type: basic, {p}auth-secret: users, {p}auth-realm: \"Staff only\""),
        ),
        ("public", ""),
    ]);
    dir.write("users.yaml", HTPASSWD);
    let agent = ready_agent(&dir, &[]);
    let ask = |host: &str, extra: &str| send(&agent, "GET", host, "/x", "1.1", extra);

    for (user, password) in [("alice", "p@ss word"), ("erin", "secret")] {
        let r = ask("private.test", &basic(user, password));
        assert_eq!(r.status, 200, "{user}: {}", r.text());
        // The pod sees the credentials, as behind ingress-nginx.
        assert_eq!(
            r.echo_field("authorization"),
            Some(
                basic(user, password)["Authorization: ".len()..]
                    .trim_end()
                    .to_string()
            )
        );
    }
    for extra in [
        String::new(),
        basic("alice", "wrong"),
        basic("mallory", "p@ss word"),
        "Authorization: Bearer abc\r\n".to_string(),
    ] {
        let r = ask("private.test", &extra);
        assert_eq!(r.status, 401, "{extra:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"Staff only\"")
        );
        assert_eq!(r.text(), "401 authorization required\n");
    }
    // HTTP/1.0 and keep-alive requests are checked each time.
    let r = send(&agent, "GET", "private.test", "/", "1.0", "");
    assert_eq!(r.status, 401);
    let mut conn = http1::Conn::connect(agent.http).unwrap();
    let authed = conn
        .raw(
            format!(
                "GET / HTTP/1.1\r\nHost: private.test\r\n{}\r\n",
                basic("alice", "p@ss word")
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(authed.status, 200);
    let again = conn
        .raw(b"GET / HTTP/1.1\r\nHost: private.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(again.status, 401);
    // Other Ingresses are not touched.
    assert_eq!(ask("public.test", "").status, 200);
    // HTTP/2 (hyper's path) checks the same way.
    assert_eq!(
        h2_statuses(
            agent.http,
            "private.test",
            &["", &basic("erin", "secret"), &basic("erin", "x")]
        ),
        [
            (401, Some("Basic realm=\"Staff only\"".to_string())),
            (200, None),
            (401, Some("Basic realm=\"Staff only\"".to_string()))
        ]
    );

    // A catch-all Ingress (only a defaultBackend) keeps its auth there.
    dir.write(
        "catchall.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: catch-all\n  annotations:\n    \
             {p}auth-type: basic\n    {p}auth-secret: users\nspec:\n  \
             defaultBackend: {{service: {{name: live, port: {{number: 80}}}}}}\n"
        ),
    );
    agent.eventually("the catch-all Ingress", || {
        ask("elsewhere.test", "").status == 401
    });
    assert_eq!(ask("elsewhere.test", &basic("erin", "secret")).status, 200);
    assert_eq!(ask("public.test", "").status, 200);
    // A changed Secret applies without a restart: alice's old password stops working.
    dir.replace(
        "users.yaml",
        &HTPASSWD.replace(
            "alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.",
            "alice:{PLAIN}new one",
        ),
    );
    agent.eventually("the new htpasswd file", || {
        ask("private.test", &basic("alice", "new one")).status == 200
    });
    assert_eq!(
        ask("private.test", &basic("alice", "p@ss word")).status,
        401
    );
    // A deleted Secret: the paths refuse (503), never served open.
    dir.remove("users.yaml");
    agent.eventually("503 without the Secret", || {
        ask("private.test", &basic("alice", "new one")).status == 503
    });
    assert_eq!(ask("public.test", "").status, 200);
}

/// Status and WWW-Authenticate of one h2c request per `extra` header line
/// (`Name: value\r\n`, or empty), all on one HTTP/2 connection.
fn h2_statuses(
    addr: std::net::SocketAddr,
    host: &str,
    extra: &[&str],
) -> Vec<(u16, Option<String>)> {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let mut out = Vec::new();
        for line in extra {
            let mut req = http::Request::get(format!("http://{host}/"));
            if let Some((name, value)) = line.trim_end().split_once(": ") {
                req = req.header(name, value);
            }
            let resp = send
                .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
                .await
                .expect("h2 request");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            out.push((
                resp.status().as_u16(),
                resp.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_string()),
            ));
        }
        out
    })
}

/// A small auth service on loopback: by the request's Authorization,
/// `Bearer good` → 200 with X-Auth-Request-User: alice, `Bearer banned` →
/// 403, `Bearer broken` → 502, anything else → 401 with a challenge. It
/// keeps every request head it got.
struct AuthService {
    addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AuthService {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let lower = head.to_ascii_lowercase();
                let reply = if lower.contains("\r\nauthorization: bearer good\r\n") {
                    "200 OK\r\nX-Auth-Request-User: alice\r\nX-Other: not copied"
                } else if lower.contains("\r\nauthorization: bearer banned\r\n") {
                    "403 Forbidden"
                } else if lower.contains("\r\nauthorization: bearer broken\r\n") {
                    "502 Bad Gateway"
                } else {
                    "401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"auth\""
                };
                seen.lock().unwrap().push(head);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {reply}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Self { addr, heads }
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

#[test]
fn auth_url_asks_the_auth_service_before_the_pod() {
    let auth = AuthService::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let p = "nginx.ingress.kubernetes.io/";
    let (_live, dir) = one_pod_per_host(&[
        (
            "private",
            &format!(
                "{p}auth-url: \"http://{}/check?for=$host\", {p}auth-response-headers: X-Auth-Request-User",
                auth.addr
            ),
        ),
        (
            "signin",
            &format!(
                "{p}auth-url: \"http://{}/check\", {p}auth-signin: \"https://login.test/start\"",
                auth.addr
            ),
        ),
        (
            "down",
            &format!("{p}auth-url: \"http://127.0.0.1:{closed_port}/check\""),
        ),
        (
            "cached",
            &format!(
                "{p}auth-url: \"http://{}/check\", {p}auth-cache-key: \"$http_authorization\", \
                 {p}auth-cache-duration: \"200 1m\", {p}auth-response-headers: X-Auth-Request-User",
                auth.addr
            ),
        ),
    ]);
    let agent = ready_agent(&dir, &[]);
    let ask = |host: &str, token: Option<&str>, extra: &str| {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        send(
            &agent,
            "GET",
            host,
            "/x?y=1",
            "1.1",
            &format!("{auth}{extra}"),
        )
    };

    // Allowed: the pod gets the request, with the auth service's user in
    // place of the one the client claimed.
    let r = ask(
        "private.test",
        Some("good"),
        "X-Auth-Request-User: mallory\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.echo_field("x-auth-request-user").as_deref(),
        Some("alice")
    );
    assert_eq!(r.echo_field("x-other"), None);
    let head = auth.last_head();
    assert!(
        head.starts_with("GET /check?for=private.test HTTP/1.1\r\n"),
        "{head}"
    );
    for line in [
        "x-original-url: http://private.test/x?y=1",
        "x-original-method: GET",
        "x-auth-request-redirect: /x?y=1",
        "x-real-ip: 127.0.0.1",
        &format!("host: {}", auth.addr),
        "authorization: Bearer good",
    ] {
        assert!(head.contains(&format!("{line}\r\n")), "{line} in {head}");
    }
    // Without the auth service's header, the client's is dropped, never passed.
    let r = ask("private.test", Some("banned"), "");
    assert_eq!(r.status, 403);
    let r = ask("private.test", None, "X-Auth-Request-User: mallory\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"auth\""));
    // An auth service that fails is a 500, as nginx's auth_request.
    assert_eq!(ask("private.test", Some("broken"), "").status, 500);
    assert_eq!(ask("down.test", Some("good"), "").status, 500);

    // A POST body goes to the pod, not to the auth service.
    let r = http1::Conn::connect(agent.http)
        .unwrap()
        .raw(
            b"POST /form HTTP/1.1\r\nHost: private.test\r\nAuthorization: Bearer good\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo_field("body-bytes").as_deref(), Some("5"));
    let head = auth.last_head();
    assert!(head.contains("x-original-method: POST\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length: 5"),
        "{head}"
    );

    // With auth-signin a 401 becomes a redirect to sign in, with the way back.
    let r = ask("signin.test", None, "");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://login.test/start?rd=http%3A%2F%2Fsignin.test%2Fx%3Fy%3D1")
    );
    assert_eq!(ask("signin.test", Some("good"), "").status, 200);
    // auth-cache-key: one question per token while the answer is kept
    // (200 for a minute); 401s are not kept here, so asked each time.
    let asked = || auth.heads.lock().unwrap().len();
    let before = asked();
    for _ in 0..3 {
        let r = ask(
            "cached.test",
            Some("good"),
            "X-Auth-Request-User: mallory\r\n",
        );
        assert_eq!(r.status, 200);
        // The kept answer's headers still replace the client's.
        assert_eq!(
            r.echo_field("x-auth-request-user").as_deref(),
            Some("alice")
        );
    }
    assert_eq!(asked(), before + 1);
    for _ in 0..2 {
        assert_eq!(ask("cached.test", None, "").status, 401);
    }
    assert_eq!(asked(), before + 3);
    // HTTP/2 asks the same way.
    assert_eq!(
        h2_statuses(
            agent.http,
            "private.test",
            &["", "Authorization: Bearer good\r\n"]
        ),
        [
            (401, Some("Bearer realm=\"auth\"".to_string())),
            (200, None)
        ]
    );
}

/// `satisfy: any`: an allowed source passes without credentials; another
/// source with credentials passes too (403 without `satisfy: any`).
#[test]
fn satisfy_any_takes_the_allow_list_or_the_credentials() {
    let (_live, dir) = one_pod_per_host(&[
        (
            "either",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: users, nginx.ingress.kubernetes.io/allowlist-source-range: 127.0.0.2/32, nginx.ingress.kubernetes.io/satisfy: any",
        ),
        (
            "both",
            "nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: users, nginx.ingress.kubernetes.io/allowlist-source-range: 127.0.0.2/32",
        ),
    ]);
    // staff:staff, {PLAIN}.
    dir.write(
        "users.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\nstringData: {auth: \"staff:{PLAIN}staff\"}\n",
    );
    let agent = ready_agent(&dir, &[]);
    let status = |from: [u8; 4], host: &str, credentials: bool| {
        let mut c = Conn::connect_from(std::net::IpAddr::from(from), agent.http).unwrap();
        let auth = if credentials {
            "Authorization: Basic c3RhZmY6c3RhZmY=\r\n"
        } else {
            ""
        };
        c.raw(format!("GET / HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n").as_bytes())
            .unwrap()
            .status
    };
    // Listed source: no credentials needed with satisfy any.
    assert_eq!(status([127, 0, 0, 2], "either.test", false), 200);
    // Another source: credentials instead.
    assert_eq!(status([127, 0, 0, 3], "either.test", false), 401);
    assert_eq!(status([127, 0, 0, 3], "either.test", true), 200);
    // satisfy all (the default): both.
    assert_eq!(status([127, 0, 0, 2], "both.test", false), 401);
    assert_eq!(status([127, 0, 0, 3], "both.test", true), 403);
    assert_eq!(status([127, 0, 0, 2], "both.test", true), 200);
}

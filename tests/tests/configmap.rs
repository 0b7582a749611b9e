//! The controller ConfigMap (issue 19): ingress-nginx's keys applied as
//! defaults, a bad value warned about with its default kept, unknown keys
//! listed as ignored, a change served live under load, in file mode and
//! from the API server.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    fake_api::FakeApi,
    http1::Conn,
    tls_client,
};

const CONFIGMAP: &str = "xingress/xingress-controller";

fn configmap(data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: xingress-controller, namespace: xingress}}\ndata:\n{data}---\n"
    )
}

fn ingress() -> String {
    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations: {kubernetes.io/ingress.class: xingress}\n\
     spec:\n  tls: [{hosts: [app.test], secretName: app-tls}]\n  rules:\n  - host: app.test\n    http:\n      paths:\n      \
     - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n---\n"
        .to_string()
}

/// One pod behind the Ingress without its TLS section, the controller
/// ConfigMap with `data`, and the agent serving them.
fn plain_site(data: &str) -> (Agent, ManifestDir, Backend) {
    let app = pod();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!("{}{}", service_yaml("app", 80, &[&app]), plain_ingress()),
    );
    dir.write("config.yaml", &configmap(data));
    let mut agent = Agent::start_local(&dir.path, &["--configmap", CONFIGMAP]).unwrap();
    agent.wait_ready().unwrap();
    (agent, dir, app)
}

/// The Ingress without its TLS section.
fn plain_ingress() -> String {
    ingress().replace("  tls: [{hosts: [app.test], secretName: app-tls}]\n", "")
}

fn pod() -> Backend {
    backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap()
}

fn post(agent: &Agent, len: usize) -> u16 {
    let mut r = format!("POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\n\r\n")
        .into_bytes();
    r.extend(std::iter::repeat_n(b'x', len));
    Conn::connect(agent.http)
        .and_then(|mut c| c.raw(&r))
        .map_or(0, |r| r.status)
}

fn get(agent: &Agent, path: &str) -> u16 {
    Conn::connect(agent.http)
        .and_then(|mut c| c.get("app.test", path))
        .map_or(0, |r| r.status)
}

const DATA: &str = "  proxy-body-size: 2k\n  ssl-redirect: \"false\"\n  proxy-connect-timeout: soon\n  \
                    use-gzip: \"true\"\n  skip-access-log-urls: /healthz\n";

#[test]
fn keys_apply_in_file_mode_and_a_change_is_served_live() {
    let app = pod();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}{}",
            service_yaml("app", 80, &[&app]),
            ingress(),
            tls_client::secret_yaml("app-tls", "cafe")
        ),
    );
    dir.write("config.yaml", &configmap(DATA));
    let mut agent = Agent::start_local(&dir.path, &["--configmap", CONFIGMAP]).unwrap();
    agent.wait_ready().unwrap();
    // proxy-body-size: 2k for every Ingress that does not say.
    assert_eq!(post(&agent, 2048), 200);
    assert_eq!(post(&agent, 3000), 413);
    // ssl-redirect "false": plain HTTP to a TLS host is served.
    assert_eq!(get(&agent, "/x"), 200);
    // skip-access-log-urls.
    assert_eq!(get(&agent, "/healthz"), 200);
    agent.eventually("the access log", || agent.access_log().lines().count() >= 3);
    assert!(
        !agent.access_log().contains("/healthz"),
        "{}",
        agent.access_log()
    );
    // The bad key and the unknown one are told, naming the key.
    let logs = agent.logs();
    assert!(
        logs.contains("key proxy-connect-timeout: \"soon\""),
        "{logs}"
    );
    assert!(logs.contains("key use-gzip is ignored"), "{logs}");

    // A change under load: no failed request, the new limit served.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let http = agent.http;
    let load = {
        let (stop, failed) = (stop.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let ok = Conn::connect(http)
                    .and_then(|mut c| c.get("app.test", "/load"))
                    .is_ok_and(|r| r.status == 200);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        })
    };
    dir.replace(
        "config.yaml",
        &configmap("  proxy-body-size: 8k\n  ssl-redirect: \"false\"\n"),
    );
    agent.eventually("the new body limit", || post(&agent, 3000) == 200);
    assert_eq!(post(&agent, 9000), 413);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0);

    // A ConfigMap that goes away: ingress-nginx's defaults (ssl-redirect
    // on: plain HTTP to the TLS host is redirected), said so.
    dir.remove("config.yaml");
    agent.eventually("the default ssl-redirect", || get(&agent, "/x") == 308);
    assert!(
        agent
            .logs()
            .contains("does not exist; ingress-nginx's defaults apply")
    );
}

#[test]
fn check_lists_the_keys_applied_invalid_and_ignored() {
    let app = pod();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!("{}{}", service_yaml("app", 80, &[&app]), configmap(DATA)),
    );
    let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
        .arg("check")
        .arg(&dir.path)
        .args(["--configmap", CONFIGMAP])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "ConfigMap keys applied: proxy-body-size, skip-access-log-urls, ssl-redirect"
        ),
        "{text}"
    );
    assert!(
        text.contains("ConfigMap keys invalid (defaults kept): proxy-connect-timeout"),
        "{text}"
    );
    assert!(
        text.contains("ConfigMap keys ignored (not implemented): use-gzip"),
        "{text}"
    );
}

#[test]
fn keys_apply_from_the_api_server() {
    let app = pod();
    let api = FakeApi::start();
    api.apply_yaml(&format!(
        "{}{}",
        service_yaml("app", 80, &[&app]),
        plain_ingress()
    ));
    api.apply_yaml(&configmap("  proxy-body-size: 1k\n"));
    let dir = ManifestDir::new();
    dir.write("kubeconfig", &api.kubeconfig());
    let mut agent =
        Agent::start_cluster(&dir.path.join("kubeconfig"), &["--configmap", CONFIGMAP]).unwrap();
    agent.wait_ready().unwrap();
    assert_eq!(post(&agent, 1024), 200);
    assert_eq!(post(&agent, 2000), 413);
    api.apply_yaml(&configmap("  proxy-body-size: \"0\"\n"));
    agent.eventually("no body limit", || post(&agent, 4_000_000) == 200);
}

#[test]
fn log_format_upstream_templates_the_access_log() {
    let (agent, dir, app) = plain_site(
        "  log-format-escape-json: \"true\"\n  log-format-upstream: '{\"ip\": \"$remote_addr\", \"uri\": \"$request_uri\", \
             \"status\": $status, \"up\": \"$upstream_addr\", \"id\": \"$req_id\", \"ua\": \"$http_user_agent\"}'\n",
    );
    let r = Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET /q?a=%221%22 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: say \"hi\" \\o/\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    agent.eventually("a line", || agent.access_log().lines().count() >= 1);
    let line = agent.access_log().lines().next().unwrap().to_string();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["ip"], "127.0.0.1");
    assert_eq!(v["uri"], "/q?a=%221%22");
    assert_eq!(v["status"], 200);
    assert_eq!(v["up"], app.addr.to_string());
    assert_eq!(v["ua"], "say \"hi\" \\o/");
    assert_eq!(v["id"].as_str().unwrap().len(), 32);
    // An unknown variable: refused at load, naming it; the default line.
    dir.replace(
        "config.yaml",
        &configmap("  log-format-upstream: '$remote_addr $geoip_country_code'\n"),
    );
    agent.eventually("the warning", || {
        agent
            .logs()
            .contains("$geoip_country_code is not a variable")
    });
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("app.test", "/plain")
        .unwrap();
    assert_eq!(r.status, 200);
    agent.eventually("a second line", || agent.access_log().lines().count() >= 2);
    let line = agent.access_log().lines().nth(1).unwrap().to_string();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
}

/// `$namespace`, `$ingress_name`, `$service_name`, `$service_port` and
/// `$http_NAME` on both proxy paths; `access-log-path` to a file, moved
/// live, and a path that cannot be opened said while the log stays.
#[test]
fn log_variables_of_the_route_and_headers_and_the_access_log_path() {
    let app = pod();
    let dir = ManifestDir::new();
    let logs = ManifestDir::new();
    let first = logs.path.join("first.log");
    let second = logs.path.join("second.log");
    dir.write(
        "all.yaml",
        &format!("{}{}", service_yaml("app", 80, &[&app]), plain_ingress()),
    );
    let config = |path: &std::path::Path| {
        configmap(&format!(
            "  access-log-path: {}\n  log-format-upstream: '$namespace/$ingress_name $service_name:$service_port tenant=$http_x_tenant $request_uri'\n",
            path.display()
        ))
    };
    dir.write("config.yaml", &config(&first));
    let mut agent = Agent::start_local(&dir.path, &["--configmap", CONFIGMAP]).unwrap();
    agent.wait_ready().unwrap();
    let send = |path: &str| {
        let r = Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Tenant: blue\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 200);
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    // The fast path, then hyper's (which serves HTTP/1.0).
    send("/fast");
    let r = Conn::connect(agent.http)
        .unwrap()
        .raw(b"GET /hyper HTTP/1.0\r\nHost: app.test\r\nX-Tenant: green\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200);
    agent.eventually("two lines in the file", || {
        read(&first).lines().count() >= 2
    });
    let text = read(&first);
    assert!(
        text.contains("default/app app:80 tenant=blue /fast\n")
            && text.contains("default/app app:80 tenant=green /hyper\n"),
        "{text}"
    );
    assert_eq!(agent.access_log(), "", "nothing on stdout");
    // Moved live.
    dir.replace("config.yaml", &config(&second));
    agent.eventually("the new file", || {
        send("/moved");
        read(&second).contains("/moved\n")
    });
    // A path that cannot be opened: said, and the log stays in the second.
    dir.replace(
        "config.yaml",
        &config(std::path::Path::new("/nonexistent-dir/xingress/access.log")),
    );
    agent.eventually("the warning", || {
        agent
            .logs()
            .contains("key access-log-path: cannot open /nonexistent-dir/xingress/access.log")
    });
    send("/still");
    agent.eventually("still logged", || read(&second).contains("/still\n"));
}

/// `block-user-agents` (exact, `~`, `~*`) answers 403 before routing, on
/// both paths; `limit-req-status-code` is the status of rate-limited
/// requests.
#[test]
fn blocked_user_agents_and_the_limit_status() {
    let app = pod();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!(
            "{}{}",
            service_yaml("app", 80, &[&app]),
            plain_ingress()
                .replace(
                    "annotations: {kubernetes.io/ingress.class: xingress}",
                    "annotations: {kubernetes.io/ingress.class: xingress, nginx.ingress.kubernetes.io/limit-rpm: \"1\", nginx.ingress.kubernetes.io/limit-burst-multiplier: \"1\"}"
                )
        ),
    );
    dir.write(
        "config.yaml",
        &configmap("  block-user-agents: \"~*crawler, EvilBot/1.0, ~^curl/7\"\n  limit-req-status-code: \"429\"\n"),
    );
    let mut agent = Agent::start_local(&dir.path, &["--configmap", CONFIGMAP]).unwrap();
    agent.wait_ready().unwrap();
    let with_agent = |version: &str, ua: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!("GET / {version}\r\nHost: app.test\r\nUser-Agent: {ua}\r\n\r\n").as_bytes(),
            )
            .unwrap()
            .status
    };
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        assert_eq!(with_agent(version, "Big-CRAWLER 2"), 403, "{version}");
        assert_eq!(with_agent(version, "EvilBot/1.0"), 403, "{version}");
        assert_eq!(with_agent(version, "curl/7.88"), 403, "{version}");
    }
    // Not blocked: an exact string matches only itself, `~` is anchored as
    // written. The first passes, then the one-a-minute limit answers 429.
    assert_eq!(with_agent("HTTP/1.1", "EvilBot/1.0 (compatible)"), 200);
    assert_eq!(with_agent("HTTP/1.1", "curl/8.5"), 429);
}

/// `block-cidrs`: listed sources get 403 on every host and both proxy
/// paths; the others are served.
#[test]
fn block_cidrs_refuse_listed_sources() {
    let (agent, dir, _app) = plain_site("  block-cidrs: \"127.0.0.2/32, 10.9.0.0/16\"\n");
    let status = |from: [u8; 4], version: &str| {
        Conn::connect_from(std::net::IpAddr::from(from), agent.http)
            .unwrap()
            .raw(format!("GET / {version}\r\nHost: app.test\r\n\r\n").as_bytes())
            .unwrap()
            .status
    };
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        assert_eq!(status([127, 0, 0, 2], version), 403, "{version}");
        assert_eq!(status([127, 0, 0, 3], version), 200, "{version}");
    }
    // A bad entry: said, and nothing is blocked.
    dir.replace(
        "config.yaml",
        &configmap("  block-cidrs: \"127.0.0.2/32, nonsense\"\n"),
    );
    agent.eventually("the bad key said", || {
        agent.logs().contains("key block-cidrs") && agent.logs().contains("nonsense")
    });
    agent.eventually("nothing blocked", || {
        status([127, 0, 0, 2], "HTTP/1.1") == 200
    });
}

/// `generate-request-id: "false"`: the pod gets no X-Request-ID the client
/// did not send, on both paths; a client's own still passes.
#[test]
fn generate_request_id_false_adds_none() {
    let (agent, dir, _app) = plain_site("  generate-request-id: \"false\"\n");
    let id = |version: &str, extra: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .raw(format!("GET / {version}\r\nHost: app.test\r\n{extra}\r\n").as_bytes())
            .unwrap()
            .echo_field("x-request-id")
    };
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        assert_eq!(id(version, ""), None, "{version}");
        assert_eq!(
            id(version, "X-Request-ID: mine\r\n").as_deref(),
            Some("mine")
        );
    }
    // The default: one is made.
    dir.replace(
        "config.yaml",
        &configmap("  generate-request-id: \"true\"\n"),
    );
    agent.eventually("an id again", || {
        id("HTTP/1.1", "").is_some_and(|v| v.len() == 32)
    });
}

#[test]
fn server_tokens_name_the_version_in_our_server_header_live() {
    let (agent, dir, _app) = plain_site("  server-tokens: \"true\"\n");
    let versioned = concat!("xingress/", env!("CARGO_PKG_VERSION"));
    let get = |path: &str| {
        Conn::connect(agent.http)
            .unwrap()
            .get("app.test", path)
            .unwrap()
    };
    // The echo pod sends no Server: ours is added; our own 404 too, and
    // over h2c (hyper's path).
    assert_eq!(get("/").header("server"), Some(versioned));
    let r = Conn::connect(agent.http)
        .unwrap()
        .get("nothing.test", "/")
        .unwrap();
    assert_eq!((r.status, r.header("server")), (404, Some(versioned)));
    let r = xingress_tests::h2c::request(agent.http, "GET", "app.test", "/", &[]);
    assert_eq!(r.header("server"), Some(versioned));
    dir.replace("config.yaml", &configmap("  server-tokens: \"false\"\n"));
    agent.eventually("no version", || {
        get("/").header("server") == Some("xingress")
    });
}

#[test]
fn client_connection_keys_bound_keep_alive_live() {
    use std::time::{Duration, Instant};
    let (agent, dir, _app) = plain_site("  keep-alive-requests: \"2\"\n  keep-alive: \"1\"\n");
    // keep-alive-requests: the second response says close, and closes.
    let mut c = Conn::connect(agent.http).unwrap();
    let r = c.get("app.test", "/").unwrap();
    assert_eq!((r.status, r.header("connection")), (200, None));
    let r = c.get("app.test", "/").unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(c.read_rest(&mut rest).unwrap(), 0, "closed after it");
    // keep-alive: an idle connection is closed after 1 s.
    let mut c = Conn::connect(agent.http).unwrap();
    assert_eq!(c.get("app.test", "/").unwrap().status, 200);
    let t = Instant::now();
    assert_eq!(c.read_rest(&mut rest).unwrap(), 0);
    let idle = t.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
    // client-header-timeout, live: a head unfinished for 1 s is dropped.
    dir.replace(
        "config.yaml",
        &configmap("  client-header-timeout: \"1\"\n"),
    );
    agent.eventually("the new header timeout", || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(agent.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
            .unwrap();
        let t = Instant::now();
        // Closed (0 bytes) within the new timeout, not the flag's 30 s.
        matches!(s.read(&mut [0u8; 64]), Ok(0)) && t.elapsed() < Duration::from_secs(2)
    });
}

/// An h2c connection to `addr`: `n` GETs one after another, then how long
/// the agent took to end the connection after the last one (`None`: it
/// stayed open for 5 s).
fn h2c_gets_then_close(addr: SocketAddr, n: usize) -> Option<std::time::Duration> {
    h2c_gets(addr, n, std::time::Duration::from_secs(5))
}

/// `n` GETs on one h2c connection, then up to `wait` for the agent to end
/// it: how long that took.
fn h2c_gets(addr: SocketAddr, n: usize, wait: std::time::Duration) -> Option<std::time::Duration> {
    xingress_tests::h2c::gets_then_close(addr, "app.test", n, wait)
}

#[test]
fn keep_alive_keys_hold_on_hypers_path_too() {
    use std::time::{Duration, Instant};
    let (agent, dir, _app) = plain_site("  keep-alive-requests: \"2\"\n  keep-alive: \"1\"\n");
    // HTTP/1.0 with keep-alive is served by hyper: the second response is
    // the last, and the connection closes after it.
    let req10 = b"GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n";
    let mut c = Conn::connect(agent.http).unwrap();
    let r = c.raw(req10).unwrap();
    assert_eq!(
        (r.status, r.header("connection")),
        (200, Some("keep-alive"))
    );
    let r = c.raw(req10).unwrap();
    assert_eq!(r.status, 200);
    assert_ne!(r.header("connection"), Some("keep-alive"));
    let mut rest = Vec::new();
    assert_eq!(c.read_rest(&mut rest).unwrap(), 0, "closed after it");
    // keep-alive: an idle HTTP/1.0 connection is closed after 1 s.
    let mut c = Conn::connect(agent.http).unwrap();
    assert_eq!(c.raw(req10).unwrap().status, 200);
    let t = Instant::now();
    assert_eq!(c.read_rest(&mut rest).unwrap(), 0);
    let idle = t.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
    // HTTP/2: GOAWAY after the second request; an idle connection ends
    // after 1 s (before, only the client's going away ended it).
    let after = h2c_gets_then_close(agent.http, 2).expect("GOAWAY after two requests");
    assert!(after < Duration::from_millis(800), "{after:?}");
    let after = h2c_gets_then_close(agent.http, 1).expect("closed when idle");
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(3),
        "{after:?}"
    );
    // keep-alive longer than client-header-timeout: a quiet connection
    // stays for keep-alive, a started head still gets the header timeout.
    dir.replace(
        "config.yaml",
        &configmap("  keep-alive: \"4\"\n  client-header-timeout: \"1\"\n"),
    );
    agent.eventually("the new keys", || {
        h2c_gets_then_close(agent.http, 1).is_some_and(|d| d >= Duration::from_secs(3))
    });
    let mut c = Conn::connect(agent.http).unwrap();
    assert_eq!(c.raw(req10).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(
        c.raw(req10).unwrap().status,
        200,
        "still open past 1 s idle"
    );
    c.send(b"GET / HTTP/1.0\r\nHost: app.test\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(c.read_rest(&mut rest).unwrap(), 0);
    let slow = t.elapsed();
    assert!(
        slow >= Duration::from_millis(800) && slow < Duration::from_millis(2500),
        "a head unfinished for {slow:?}"
    );
}

#[test]
fn upstream_keepalive_keys_hold_on_hypers_path_too() {
    use std::{sync::atomic::Ordering::Relaxed, time::Duration};
    let (agent, dir, app) = plain_site("  upstream-keepalive-requests: \"2\"\n");
    // HTTP/2 clients go through hyper's pod pool: six requests, two per
    // pod connection.
    let opened = |n| {
        let before = app.connections.load(Relaxed);
        h2c_gets(agent.http, n, Duration::ZERO);
        app.connections.load(Relaxed) - before
    };
    assert_eq!(opened(6), 3);
    // No idle connection kept: one per request.
    dir.replace(
        "config.yaml",
        &configmap("  upstream-keepalive-connections: \"0\"\n"),
    );
    agent.eventually("no pooling", || opened(4) == 4);
    // The defaults: one connection carries them all.
    dir.replace("config.yaml", &configmap(""));
    agent.eventually("pooling again", || opened(6) <= 1);
    assert_eq!(opened(6), 0);
    // The idle timeout: a connection idle for longer is not reused.
    dir.replace(
        "config.yaml",
        &configmap("  upstream-keepalive-timeout: \"1\"\n"),
    );
    agent.eventually("the timeout", || {
        opened(1);
        std::thread::sleep(Duration::from_millis(1600));
        opened(1) == 1
    });
    opened(1);
    assert_eq!(opened(1), 0, "reused within the timeout");
}

#[test]
fn large_client_header_buffers_bound_the_head() {
    let (agent, dir, _app) = plain_site("");
    // HTTP/1.1 on the fast path, HTTP/1.0 on hyper's.
    let head = |version: &str, bytes: usize| {
        let filler = "a".repeat(bytes);
        Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!("GET / {version}\r\nHost: app.test\r\nX-Filler: {filler}\r\n\r\n")
                    .as_bytes(),
            )
            .map(|r| r.status)
            .unwrap_or(0)
    };
    // The default (4 8k, 32 KiB) takes a 10 KB head.
    assert_eq!(head("HTTP/1.1", 10_000), 200);
    assert_eq!(head("HTTP/1.0", 10_000), 200);
    dir.replace(
        "config.yaml",
        &configmap("  large-client-header-buffers: \"2 4k\"\n"),
    );
    agent.eventually("8 KiB heads", || head("HTTP/1.1", 10_000) == 431);
    assert_eq!(head("HTTP/1.0", 10_000), 431);
    assert_eq!(head("HTTP/1.1", 6_000), 200);
    assert_eq!(head("HTTP/1.0", 6_000), 200);
    // HTTP/2 (hyper's path): the header list is bounded the same way.
    let h2 = |bytes: usize| {
        let filler = "a".repeat(bytes);
        xingress_tests::h2c::request(agent.http, "GET", "app.test", "/", &[("x-filler", &filler)])
            .status
    };
    assert_eq!(h2(6_000), 200);
    assert_eq!(h2(10_000), 431, "hyper's path");
}

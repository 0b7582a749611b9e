//! Which pod gets a request: cookie affinity, canary Ingresses,
//! upstream-hash-by and EWMA load balancing.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use xingress_tests::{
    agent::ManifestDir,
    backend::{self, Backend},
    http1::Conn,
};

use crate::common::{CLASS, ingress_yaml, pods, ready_agent, send, service};

#[test]
fn cookie_affinity_keeps_a_client_on_one_pod() {
    let sticky = pods("sticky", 3);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "svc.yaml",
        &service("sticky", &sticky.iter().collect::<Vec<_>>()),
    );
    let p = "nginx.ingress.kubernetes.io/";
    let ingress = |name: &str, annotations: &str| {
        ingress_yaml(name, &format!("{name}.test"), "sticky", annotations)
    };
    dir.write(
        "ing.yaml",
        &[
            ingress("aff", &format!("{p}affinity: cookie")),
            ingress(
                "custom",
                &format!(
                    "{p}affinity: cookie, {p}session-cookie-name: route, {p}session-cookie-max-age: \"3600\", \
                     {p}session-cookie-samesite: None"
                ),
            ),
        ]
        .concat(),
    );
    let agent = ready_agent(&dir, &[]);
    let get = |host: &str, cookie: Option<&str>| {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        send(&agent, "GET", host, "/", "1.1", &cookie)
    };
    let first = get("aff.test", None);
    assert_eq!(first.status, 200, "{}", first.text());
    let set = first.header("set-cookie").expect("Set-Cookie").to_string();
    assert!(set.starts_with("INGRESSCOOKIE="), "{set}");
    assert!(set.ends_with("; Path=/; HttpOnly"), "{set}");
    let value = set.split(';').next().unwrap().to_string();
    let pod = first.header("x-pod").unwrap().to_string();
    // Every later request with the cookie, among other cookies: the same
    // pod, and no new cookie.
    for _ in 0..6 {
        let r = get("aff.test", Some(&format!("a=1; {value}; b=2")));
        assert_eq!(r.header("x-pod"), Some(pod.as_str()));
        assert_eq!(r.header("set-cookie"), None);
    }
    // Without it, requests spread; a value naming no pod gets a new cookie.
    let pods_seen: std::collections::BTreeSet<String> = (0..6)
        .map(|_| get("aff.test", None).header("x-pod").unwrap().to_string())
        .collect();
    assert_eq!(pods_seen.len(), 3, "{pods_seen:?}");
    let r = get("aff.test", Some("INGRESSCOOKIE=0123456789abcdef"));
    assert!(r.header("set-cookie").is_some());
    // Name and attributes from the annotations.
    let set = get("custom.test", None)
        .header("set-cookie")
        .unwrap()
        .to_string();
    assert!(set.starts_with("route="), "{set}");
    assert!(
        set.ends_with("; Path=/; Max-Age=3600; SameSite=None; Secure; HttpOnly"),
        "{set}"
    );
}

#[test]
fn a_canary_ingress_takes_its_share_and_what_its_header_or_cookie_asks() {
    let stable = pods("stable", 1);
    let canary = pods("canary", 1);
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "svc.yaml",
        &format!(
            "{}{}",
            service("stable", &[&stable[0]]),
            service("canary", &[&canary[0]])
        ),
    );
    let p = "nginx.ingress.kubernetes.io/";
    let ingress =
        |name: &str, svc: &str, annotations: &str| ingress_yaml(name, "c.test", svc, annotations);
    dir.write(
        "ing.yaml",
        &[
            ingress("main", "stable", ""),
            ingress(
                "new",
                "canary",
                &format!(
                    "{p}canary: \"true\", {p}canary-weight: \"25\", {p}canary-by-header: X-Canary, {p}canary-by-cookie: canary"
                ),
            ),
        ]
        .concat(),
    );
    let agent = ready_agent(&dir, &[]);
    let pod = |extra: &str| {
        let r = send(&agent, "GET", "c.test", "/", "1.1", extra);
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("x-pod")
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_string()
    };
    // 25 of 100: every 4th request.
    let picks: Vec<String> = (0..8).map(|_| pod("")).collect();
    assert_eq!(
        picks.iter().filter(|p| *p == "canary").count(),
        2,
        "{picks:?}"
    );
    // The header decides first, then the cookie; other values fall through.
    for _ in 0..4 {
        assert_eq!(pod("X-Canary: always\r\n"), "canary");
        assert_eq!(
            pod("X-Canary: never\r\nCookie: canary=always\r\n"),
            "stable"
        );
        assert_eq!(pod("Cookie: canary=always\r\n"), "canary");
        assert_eq!(pod("X-Canary: maybe\r\nCookie: canary=never\r\n"), "stable");
    }
}

/// `upstream-hash-by`: one key, one pod, on both proxy paths; keys spread
/// over the pods; a pod leaving moves only its own keys.
#[test]
fn upstream_hash_by_keeps_a_key_on_its_pod() {
    let shop = pods("shop", 4);
    let dir = ManifestDir::new();
    let write = |pods: &[&Backend]| {
        dir.replace(
            "all.yaml",
            &format!(
                "{}{}",
                service("shop", pods),
                ingress_yaml(
                    "shop",
                    "shop.test",
                    "shop",
                    "nginx.ingress.kubernetes.io/upstream-hash-by: \"$http_x_user\""
                )
            ),
        )
    };
    dir.write("class.yaml", CLASS);
    write(&shop.iter().collect::<Vec<_>>());
    let agent = ready_agent(&dir, &[]);
    let pod_of = |user: &str, version: &str| -> String {
        Conn::connect(agent.http)
            .unwrap()
            .raw(format!("GET / {version}\r\nHost: shop.test\r\nX-User: {user}\r\n\r\n").as_bytes())
            .unwrap()
            .header("x-pod")
            .unwrap_or("")
            .to_string()
    };
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let before: Vec<String> = users.iter().map(|u| pod_of(u, "HTTP/1.1")).collect();
    for (u, pod) in users.iter().zip(&before) {
        // Again on the fast path, and on hyper's (HTTP/1.0): the same pod.
        assert_eq!(&pod_of(u, "HTTP/1.1"), pod, "{u}");
        assert_eq!(&pod_of(u, "HTTP/1.0"), pod, "{u}");
    }
    let distinct: BTreeSet<&String> = before.iter().collect();
    assert_eq!(distinct.len(), 4, "{before:?}");
    // shop-2 leaves: its users move, nobody else's does.
    write(&[&shop[0], &shop[2], &shop[3]]);
    agent.eventually("shop-2 gone", || {
        users.iter().all(|u| pod_of(u, "HTTP/1.1") != "shop-2")
    });
    for (u, was) in users.iter().zip(&before) {
        if was != "shop-2" {
            assert_eq!(&pod_of(u, "HTTP/1.1"), was, "{u} moved");
        }
    }
}

/// A pod that answers every request 150 ms late (keep-alive).
fn slow_pod() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    // The head ends with an empty line; requests have no body.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    std::thread::sleep(Duration::from_millis(150));
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\nx-pod: slow-1\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `load-balance: ewma`: a slow pod gets few requests once measured, on
/// both proxy paths (round robin would give it half).
#[test]
fn ewma_load_balancing_avoids_a_slow_pod() {
    let fast = pods("fast", 1);
    let slow = slow_pod();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write(
        "all.yaml",
        &format!(
            "{}{}",
            backend::service_yaml_at("mixed", 80, &[fast[0].addr, slow]),
            ingress_yaml(
                "mixed",
                "mixed.test",
                "mixed",
                "nginx.ingress.kubernetes.io/load-balance: ewma"
            ),
        ),
    );
    let agent = ready_agent(&dir, &[]);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let mut to_slow = 0;
        for _ in 0..60 {
            let r = Conn::connect(agent.http)
                .unwrap()
                .raw(format!("GET / {version}\r\nHost: mixed.test\r\n\r\n").as_bytes())
                .unwrap();
            assert_eq!(r.status, 200);
            if r.header("x-pod") == Some("slow-1") {
                to_slow += 1;
            }
        }
        assert!(
            to_slow <= 6,
            "{version}: {to_slow} of 60 went to the slow pod"
        );
    }
}

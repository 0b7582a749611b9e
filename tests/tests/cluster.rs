//! Kubernetes mode (`xingress run --kubeconfig`) against a fake API server
//! that speaks the real list/watch protocol: the same objects give the same
//! routes as file mode; adds, updates and deletes are reflected; broken
//! watches and 410 Gone are survived without losing routes.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, service_yaml},
    fake_api::FakeApi,
    http1,
};

const CLASS: &str = include_str!("../examples/cafe/ingressclass.yaml");

fn ingress(name: &str, host: &str, paths: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{xingress.dev/ssl-redirect: \"false\"}}\nspec:\n  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n"
    );
    for (path, svc) in paths {
        y.push_str(&format!("      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"));
    }
    y.push_str("---\n");
    y
}

struct Cluster {
    tea: Vec<Backend>,
    coffee: Vec<Backend>,
    yaml: String,
}

fn cafe() -> Cluster {
    let start =
        |n: &str| backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), n, Mode::Echo).unwrap();
    let tea = vec![start("tea-1"), start("tea-2")];
    let coffee = vec![start("coffee-1")];
    let yaml = format!(
        "{CLASS}---\n{}{}{}{}",
        service_yaml("tea-svc", 80, &tea.iter().collect::<Vec<_>>()),
        service_yaml("coffee-svc", 80, &coffee.iter().collect::<Vec<_>>()),
        ingress(
            "cafe",
            "cafe.example.com",
            &[("/tea", "tea-svc"), ("/coffee", "coffee-svc")]
        ),
        ingress("shop", "*.shop.test", &[("/", "coffee-svc")]),
    );
    Cluster { tea, coffee, yaml }
}

fn cluster_agent(api: &FakeApi, dir: &ManifestDir) -> Agent {
    dir.write("kubeconfig", &api.kubeconfig());
    let mut agent = Agent::start_cluster(&dir.path.join("kubeconfig"), &[]).unwrap();
    agent.wait_ready().unwrap();
    agent
}

/// (status, answering pod or "-") for a request.
fn probe(agent: &Agent, host: &str, path: &str) -> (u16, String) {
    let r = http1::get(agent.http, host, path).unwrap();
    (
        r.status,
        r.header("x-pod")
            .map(|p| p.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
            .unwrap_or("-".into()),
    )
}

const PROBES: [(&str, &str); 7] = [
    ("cafe.example.com", "/tea"),
    ("cafe.example.com", "/coffee/x"),
    ("cafe.example.com", "/milk"),
    ("a.shop.test", "/"),
    ("a.b.shop.test", "/"),
    ("CAFE.example.com:80", "/tea/green"),
    ("other.test", "/tea"),
];

#[test]
fn the_same_objects_route_the_same_as_in_file_mode() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    let dir = ManifestDir::new();
    let kube = cluster_agent(&api, &dir);
    let files = ManifestDir::new();
    files.write("all.yaml", &c.yaml);
    let mut file_agent = Agent::start_local(&files.path, &[]).unwrap();
    file_agent.wait_ready().unwrap();
    for (host, path) in PROBES {
        assert_eq!(
            probe(&kube, host, path),
            probe(&file_agent, host, path),
            "{host}{path}"
        );
    }
    assert_eq!(
        probe(&kube, "cafe.example.com", "/tea"),
        (200, "tea-".to_string())
    );
    assert_eq!(c.tea.len() + c.coffee.len(), 3);
}

#[test]
fn adds_updates_and_deletes_are_served() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    let dir = ManifestDir::new();
    let agent = cluster_agent(&api, &dir);
    assert_eq!(probe(&agent, "juice.test", "/").0, 404);

    api.apply_yaml(&ingress("juice", "juice.test", &[("/", "tea-svc")]));
    agent.eventually("a new Ingress", || {
        probe(&agent, "juice.test", "/").0 == 200
    });

    // tea-2 leaves the EndpointSlices: only tea-1 answers.
    api.delete("EndpointSlice", "default", "tea-svc-1");
    agent.eventually("an endpoint removal", || {
        (0..6).all(|_| {
            http1::get(agent.http, "cafe.example.com", "/tea")
                .unwrap()
                .header("x-pod")
                == Some("tea-1")
        })
    });

    api.delete("Service", "default", "coffee-svc");
    agent.eventually("a Service deletion", || {
        probe(&agent, "cafe.example.com", "/coffee").0 == 503
    });

    api.delete("Ingress", "default", "juice");
    agent.eventually("an Ingress deletion", || {
        probe(&agent, "juice.test", "/").0 == 404
    });
    // The rest stayed served throughout.
    assert_eq!(probe(&agent, "cafe.example.com", "/tea").0, 200);
}

#[test]
fn broken_watches_and_410_gone_keep_routes_and_recover() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    let dir = ManifestDir::new();
    let agent = cluster_agent(&api, &dir);

    // Watches dropped mid-stream: routes stay, later changes still arrive.
    api.drop_watches();
    assert_eq!(probe(&agent, "cafe.example.com", "/tea").0, 200);
    api.apply_yaml(&ingress(
        "after-drop",
        "after-drop.test",
        &[("/", "tea-svc")],
    ));
    agent.eventually("a change after dropped watches", || {
        probe(&agent, "after-drop.test", "/").0 == 200
    });

    // History compacted: resuming watches get 410 Gone and list again.
    let lists = api.lists();
    api.compact();
    api.apply_yaml(&ingress(
        "after-gone",
        "after-gone.test",
        &[("/", "coffee-svc")],
    ));
    agent.eventually("a change after 410 Gone", || {
        probe(&agent, "after-gone.test", "/").0 == 200
    });
    agent.eventually("every kind listing again after 410 Gone", || {
        api.lists() >= lists + 5
    });
    assert_eq!(probe(&agent, "cafe.example.com", "/tea").0, 200);
    let _ = &c;
}

#[test]
fn readiness_waits_for_the_api_server() {
    // An API server that is not there: the agent starts, stays unready, and serves nothing yet.
    let dir = ManifestDir::new();
    dir.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster: {server: \"http://127.0.0.1:9\"}\nusers:\n- name: x\n  user: {token: x}\ncontexts:\n- name: x\n  context: {cluster: x, user: x}\ncurrent-context: x\n",
    );
    let agent = Agent::start_cluster(&dir.path.join("kubeconfig"), &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while http1::get(agent.admin, "localhost", "/healthz").is_err() {
        assert!(Instant::now() < deadline, "{}", agent.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        http1::get(agent.admin, "localhost", "/readyz")
            .unwrap()
            .status,
        503
    );
    assert_eq!(
        http1::get(agent.http, "cafe.example.com", "/")
            .unwrap()
            .status,
        503,
        "not ready: no snapshot yet"
    );
}

fn status_ips(api: &FakeApi, name: &str) -> Vec<String> {
    api.get("Ingress", "default", name)
        .and_then(|i| i["status"]["loadBalancer"]["ingress"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["ip"].as_str().map(str::to_string))
        .collect()
}

fn lease_holder(api: &FakeApi) -> Option<String> {
    api.get("Lease", "xingress", "xingress-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn status_agent(api: &FakeApi, dir: &ManifestDir, name: &str, ip: &str) -> Agent {
    dir.write("kubeconfig", &api.kubeconfig());
    let mut agent = Agent::start_cluster(
        &dir.path.join("kubeconfig"),
        &[
            "--publish-address",
            ip,
            "--pod-name",
            name,
            "--pod-namespace",
            "xingress",
            "--lease-duration",
            "2",
        ],
    )
    .unwrap();
    agent.wait_ready().unwrap();
    agent
}

#[test]
fn status_is_written_once_routes_are_live_and_cleared_when_not_ours() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    // Another controller's Ingress: never touched.
    api.apply_yaml(
        &ingress("theirs", "theirs.test", &[("/", "tea-svc")])
            .replace("spec:\n", "spec:\n  ingressClassName: other\n"),
    );
    let dir = ManifestDir::new();
    let agent = status_agent(&api, &dir, "agent-a", "192.0.2.10");
    agent.eventually("status on the cafe Ingress", || {
        status_ips(&api, "cafe") == ["192.0.2.10"]
    });
    assert_eq!(lease_holder(&api).as_deref(), Some("agent-a"));

    // A new Ingress: the moment its address shows, its route answers.
    api.apply_yaml(&ingress("late", "late.test", &[("/", "coffee-svc")]));
    agent.eventually("status on a new Ingress", || {
        !status_ips(&api, "late").is_empty()
    });
    assert_eq!(probe(&agent, "late.test", "/"), (200, "coffee-".into()));

    // It moves to another class: its status is cleared, the route goes.
    api.apply_yaml(
        &ingress("late", "late.test", &[("/", "coffee-svc")])
            .replace("spec:\n", "spec:\n  ingressClassName: other\n"),
    );
    agent.eventually("status cleared on an Ingress that left", || {
        status_ips(&api, "late").is_empty()
    });
    assert_eq!(probe(&agent, "late.test", "/").0, 404);
    assert!(status_ips(&api, "theirs").is_empty());
    assert!(
        !api.writes()
            .iter()
            .any(|(_, r, path)| r == "ingresses" && path.contains("theirs")),
        "another controller's Ingress was written: {:?}",
        api.writes()
    );
    // Status writes only: the agent never writes an Ingress itself.
    assert!(
        api.writes()
            .iter()
            .filter(|(_, r, _)| r == "ingresses")
            .all(|(m, _, path)| m == "PATCH" && path.ends_with("/status")),
        "{:?}",
        api.writes()
    );
}

#[test]
fn one_leader_writes_status_and_a_successor_takes_over() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    let (da, db) = (ManifestDir::new(), ManifestDir::new());
    let mut a = status_agent(&api, &da, "agent-a", "192.0.2.1");
    let mut b = status_agent(&api, &db, "agent-b", "192.0.2.2");
    a.eventually("a leader writing status", || {
        lease_holder(&api).is_some() && !status_ips(&api, "cafe").is_empty()
    });
    let leader = lease_holder(&api).unwrap();
    let (ip, other_ip) = if leader == "agent-a" {
        ("192.0.2.1", "192.0.2.2")
    } else {
        ("192.0.2.2", "192.0.2.1")
    };
    // Over several renewals, one holder and one writer: the status never
    // shows the follower's address.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(lease_holder(&api).as_deref(), Some(leader.as_str()));
        assert_eq!(status_ips(&api, "cafe"), [ip]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The leader crashes: after the lease expires the other takes over.
    let (gone, survivor) = if leader == "agent-a" {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    gone.kill().unwrap();
    survivor.eventually("the follower taking over and rewriting status", || {
        lease_holder(&api).is_some_and(|h| h != leader) && status_ips(&api, "cafe") == [other_ip]
    });
    // A clean stop releases the lease at once.
    let survivor = if leader == "agent-a" { &mut b } else { &mut a };
    survivor.stop(Duration::from_secs(5)).unwrap();
    assert_eq!(
        lease_holder(&api),
        None,
        "a stopped leader releases its lease"
    );
}

#[test]
fn events_report_bad_ingresses_and_missing_services_and_secrets() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    api.apply_yaml(
        &ingress("broken", "broken.test", &[("/", "nope-svc")]).replace(
            "spec:\n",
            "spec:\n  tls:\n  - hosts: [broken.test]\n    secretName: missing-secret\n",
        ),
    );
    let dir = ManifestDir::new();
    let agent = status_agent(&api, &dir, "agent-a", "192.0.2.10");
    let has = |reason: &str| {
        api.list("Event").iter().any(|e| {
            e["reason"] == reason
                && e["type"] == "Warning"
                && e["regarding"]["kind"] == "Ingress"
                && e["regarding"]["name"] == "broken"
                && e["regarding"]["uid"] == "uid-ingresses-default-broken"
                && e["reportingController"] == "xingress.dev/controller"
                && e["reportingInstance"] == "agent-a"
        })
    };
    agent.eventually("a ServiceNotFound Event", || has("ServiceNotFound"));
    agent.eventually("a SecretNotFound Event", || has("SecretNotFound"));
    // The bad Ingress costs nothing else.
    assert_eq!(probe(&agent, "cafe.example.com", "/tea").0, 200);
    assert_eq!(probe(&agent, "broken.test", "/").0, 503);
    // Once per problem, not once per snapshot.
    api.apply_yaml(&ingress("juice", "juice.test", &[("/", "tea-svc")]));
    agent.eventually("a later change", || {
        probe(&agent, "juice.test", "/").0 == 200
    });
    let count = api
        .list("Event")
        .iter()
        .filter(|e| e["regarding"]["name"] == "broken")
        .count();
    assert_eq!(count, 2, "{:#?}", api.list("Event"));
}

#[test]
fn updates_of_every_kind_are_served() {
    use xingress_tests::tls_client::{self, fixture, leaf, secret_yaml};
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    let dir = ManifestDir::new();
    let agent = cluster_agent(&api, &dir);

    // Ingress update: a path renamed.
    api.apply_yaml(&ingress(
        "cafe",
        "cafe.example.com",
        &[("/chai", "tea-svc"), ("/coffee", "coffee-svc")],
    ));
    agent.eventually("an Ingress update", || {
        probe(&agent, "cafe.example.com", "/chai").0 == 200
            && probe(&agent, "cafe.example.com", "/tea").0 == 404
    });

    // IngressClass: an Ingress of a class that appears, changes controller
    // and comes back, then is deleted.
    api.apply_yaml(
        &ingress("classy", "classy.test", &[("/", "tea-svc")])
            .replace("spec:\n", "spec:\n  ingressClassName: late\n"),
    );
    let class = |controller: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: late}}\nspec: {{controller: {controller}}}\n"
        )
    };
    assert_eq!(probe(&agent, "classy.test", "/").0, 404);
    api.apply_yaml(&class("xingress.dev/controller"));
    agent.eventually("an IngressClass add", || {
        probe(&agent, "classy.test", "/").0 == 200
    });
    api.apply_yaml(&class("example.com/other"));
    agent.eventually("an IngressClass update", || {
        probe(&agent, "classy.test", "/").0 == 404
    });
    api.apply_yaml(&class("xingress.dev/controller"));
    agent.eventually("an IngressClass update back", || {
        probe(&agent, "classy.test", "/").0 == 200
    });
    api.delete("IngressClass", "", "late");
    agent.eventually("an IngressClass delete", || {
        probe(&agent, "classy.test", "/").0 == 404
    });

    // Service update: the port the Ingress names goes away and comes back.
    let svc = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: tea-svc}}\nspec:\n  ports: [{{name: http, port: {port}}}]\n"
        )
    };
    api.apply_yaml(&svc(8080));
    agent.eventually("a Service port change", || {
        probe(&agent, "cafe.example.com", "/chai").0 == 503
    });
    api.apply_yaml(&svc(80));
    agent.eventually("a Service port change back", || {
        probe(&agent, "cafe.example.com", "/chai").0 == 200
    });

    // EndpointSlice add, then update to not ready.
    let coffee2 = backend::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "coffee-2",
        Mode::Echo,
    )
    .unwrap();
    let slice = |ready: bool| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: coffee-svc-extra, labels: {{kubernetes.io/service-name: coffee-svc}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: {ready}}}}}]\n",
            coffee2.addr.port()
        )
    };
    let pods = |n: usize| -> std::collections::BTreeSet<String> {
        (0..n)
            .filter_map(|_| {
                http1::get(agent.http, "cafe.example.com", "/coffee")
                    .ok()?
                    .header("x-pod")
                    .map(str::to_string)
            })
            .collect()
    };
    api.apply_yaml(&slice(true));
    agent.eventually("an EndpointSlice add", || pods(4).len() == 2);
    api.apply_yaml(&slice(false));
    agent.eventually("an endpoint turning not ready", || {
        pods(6) == ["coffee-1".to_string()].into()
    });

    // Secret add, update and delete (the last good certificate stays).
    api.apply_yaml(&ingress("rot", "rot.test", &[("/", "tea-svc")]).replace(
        "spec:\n",
        "spec:\n  tls:\n  - hosts: [rot.test]\n    secretName: rot\n",
    ));
    let served = || {
        let config = tls_client::config(&[b"http/1.1"]);
        tls_client::connect(agent.https, "rot.test", &config)
            .map(|(_, info)| info.chain[0].clone())
            .unwrap_or_default()
    };
    agent.eventually("the rot Ingress", || {
        probe(&agent, "rot.test", "/").0 == 200
    });
    assert_ne!(served(), leaf(&fixture("rot-a.crt")));
    api.apply_yaml(&secret_yaml("rot", "rot-a"));
    agent.eventually("a Secret add", || served() == leaf(&fixture("rot-a.crt")));
    api.apply_yaml(&secret_yaml("rot", "rot-b"));
    agent.eventually("a Secret update", || {
        served() == leaf(&fixture("rot-b.crt"))
    });
    api.delete("Secret", "default", "rot");
    agent.eventually("the warning for the deleted Secret", || {
        agent
            .logs()
            .contains("TLS Secret default/rot not found; keeping its last good certificate")
    });
    assert_eq!(served(), leaf(&fixture("rot-b.crt")));
}

#[test]
fn basic_auth_reads_opaque_secrets_from_the_api_server() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let pod = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "staff-1", Mode::Echo).unwrap();
    let api = FakeApi::start();
    api.apply_yaml(&format!(
        "{CLASS}---\n{}\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: staff\n  annotations:\n    \
         nginx.ingress.kubernetes.io/auth-type: basic\n    nginx.ingress.kubernetes.io/auth-secret: users\n\
         spec:\n  rules:\n  - host: staff.test\n    http:\n      paths:\n      \
         - {{path: /, pathType: Prefix, backend: {{service: {{name: staff, port: {{number: 80}}}}}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: users, namespace: default}}\ntype: Opaque\ndata:\n  auth: {}\n",
        service_yaml("staff", 80, &[&pod]),
        b64("alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.\n"),
    ));
    let dir = ManifestDir::new();
    let agent = cluster_agent(&api, &dir);
    let ask = |credentials: Option<&str>| {
        let auth = credentials
            .map(|c| format!("Authorization: Basic {}\r\n", b64(c)))
            .unwrap_or_default();
        http1::Conn::connect(agent.http)
            .unwrap()
            .raw(
                format!("GET / HTTP/1.1\r\nHost: staff.test\r\n{auth}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap()
            .status
    };
    assert_eq!(ask(Some("alice:p@ss word")), 200);
    assert_eq!(ask(Some("alice:nope")), 401);
    assert_eq!(ask(None), 401);
    // Without the Secret the Ingress refuses rather than serve open.
    api.delete("Secret", "default", "users");
    agent.eventually("503 once the Secret is gone", || {
        ask(Some("alice:p@ss word")) == 503
    });
}

const GATEWAY: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {team: cafe}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xingress}
spec: {controllerName: xingress.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: xingress
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
";

fn http_route(name: &str, host: &str, svc: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [{host}]\n  rules:\n  - backendRefs: [{{name: {svc}, port: 80}}]\n---\n"
    )
}

/// The conditions of type `t` in a status list: (status, reason, observedGeneration, lastTransitionTime).
fn condition_of(conds: &serde_json::Value, t: &str) -> Option<(String, String, i64, String)> {
    conds.as_array()?.iter().find(|c| c["type"] == t).map(|c| {
        (
            c["status"].as_str().unwrap_or("").to_string(),
            c["reason"].as_str().unwrap_or("").to_string(),
            c["observedGeneration"].as_i64().unwrap_or(-1),
            c["lastTransitionTime"].as_str().unwrap_or("").to_string(),
        )
    })
}

#[test]
fn gateway_api_objects_route_and_get_status_from_the_leader() {
    let c = cafe();
    let api = FakeApi::start();
    api.apply_yaml(&c.yaml);
    api.apply_yaml(GATEWAY);
    api.apply_yaml(&http_route("tea", "tea.gw.test", "tea-svc"));
    // Another controller's parent entry on the route: kept as it is.
    let mut route = api.get("HTTPRoute", "default", "tea").unwrap();
    route["status"] = serde_json::json!({"parents": [{
        "parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]});
    api.apply(route);
    let dir = ManifestDir::new();
    let agent = status_agent(&api, &dir, "agent-a", "192.0.2.10");
    assert_eq!(probe(&agent, "tea.gw.test", "/"), (200, "tea-".into()));
    agent.eventually("route status written", || {
        api.get("HTTPRoute", "default", "tea").is_some_and(|r| {
            r["status"]["parents"]
                .as_array()
                .is_some_and(|p| p.len() == 2)
        })
    });
    let route = api.get("HTTPRoute", "default", "tea").unwrap();
    let parents = route["status"]["parents"].as_array().unwrap();
    assert!(
        parents
            .iter()
            .any(|p| p["controllerName"] == "example.com/other"),
        "{parents:?}"
    );
    let ours = parents
        .iter()
        .find(|p| p["controllerName"] == "xingress.dev/gateway-controller")
        .unwrap();
    let accepted = condition_of(&ours["conditions"], "Accepted").unwrap();
    assert_eq!(
        (accepted.0.as_str(), accepted.1.as_str(), accepted.2),
        ("True", "Accepted", 1)
    );
    assert!(
        accepted.3.ends_with('Z') && accepted.3.len() == 20,
        "{accepted:?}"
    );
    agent.eventually("gateway status written", || {
        api.get("Gateway", "default", "edge").is_some_and(|g| {
            condition_of(&g["status"]["conditions"], "Programmed").is_some_and(|c| c.0 == "True")
                && g["status"]["addresses"][0]["value"] == "192.0.2.10"
                && g["status"]["listeners"][0]["attachedRoutes"] == 1
        })
    });
    agent.eventually("class status written", || {
        api.get("GatewayClass", "", "xingress").is_some_and(|g| {
            condition_of(&g["status"]["conditions"], "Accepted").is_some_and(|c| c.0 == "True")
        })
    });
    // A change of the route's spec: routed, and observedGeneration follows,
    // while the Accepted condition keeps its transition time.
    api.apply_yaml(&http_route("tea", "tea.gw.test", "coffee-svc"));
    agent.eventually("the route's new backend", || {
        probe(&agent, "tea.gw.test", "/") == (200, "coffee-".into())
    });
    agent.eventually("observedGeneration 2", || {
        api.get("HTTPRoute", "default", "tea").is_some_and(|r| {
            r["status"]["parents"].as_array().unwrap().iter().any(|p| {
                condition_of(&p["conditions"], "Accepted")
                    .is_some_and(|c| c.2 == 2 && c.3 == accepted.3)
            })
        })
    });
    // A route to a missing Service: accepted, unresolved, 500.
    api.apply_yaml(&http_route("broken", "broken.gw.test", "missing-svc"));
    agent.eventually("the broken route answers 500", || {
        probe(&agent, "broken.gw.test", "/").0 == 500
    });
    agent.eventually("ResolvedRefs False", || {
        api.get("HTTPRoute", "default", "broken").is_some_and(|r| {
            r["status"]["parents"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    condition_of(&p["conditions"], "ResolvedRefs")
                        .is_some_and(|c| c.0 == "False" && c.1 == "BackendNotFound")
                })
            })
        })
    });
    // A TLSRoute (v1alpha2) on the HTTP-only Gateway: watched, and told why
    // it is not attached.
    api.apply_yaml(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: tls, namespace: default}\n\
         spec:\n  parentRefs: [{name: edge}]\n  hostnames: [tls.gw.test]\n  rules:\n  - backendRefs: [{name: tea-svc, port: 80}]\n",
    );
    agent.eventually("TLSRoute status written", || {
        api.get("TLSRoute", "default", "tls").is_some_and(|r| {
            r["status"]["parents"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    condition_of(&p["conditions"], "Accepted")
                        .is_some_and(|c| c.0 == "False" && c.1 == "NotAllowedByListeners")
                })
            })
        })
    });
    // Writes are status writes only.
    assert!(
        api.writes()
            .iter()
            .filter(|(_, r, _)| r.starts_with("gateway") || r.ends_with("routes"))
            .all(|(m, _, path)| m == "PATCH" && path.ends_with("/status")),
        "{:?}",
        api.writes()
    );
}

#[test]
fn without_tlsroute_installed_gateways_are_still_served() {
    let c = cafe();
    let api = FakeApi::start();
    // The standard channel's CRDs: no TLSRoute.
    api.hide(&["tlsroutes"]);
    api.apply_yaml(&c.yaml);
    api.apply_yaml(GATEWAY);
    api.apply_yaml(&http_route("tea", "tea.gw.test", "tea-svc"));
    let dir = ManifestDir::new();
    let agent = cluster_agent(&api, &dir);
    agent.eventually("the HTTPRoute served", || {
        probe(&agent, "tea.gw.test", "/") == (200, "tea-".into())
    });
    assert!(
        agent
            .logs()
            .contains("TLSRoute (gateway.networking.k8s.io/v1 or v1alpha2) is not installed"),
        "{}",
        agent.logs()
    );
}

/// The standard channel of Gateway API v1.5+ serves TLSRoute in `v1`
/// only; older experimental channels in `v1alpha2` only. Either way the
/// agent watches the version served and writes status in it (a write in a
/// version the fake API does not serve would fail).
#[test]
fn tls_routes_are_watched_in_the_version_the_cluster_serves() {
    for (hidden, manifest_version) in [("tlsroutes/v1alpha2", "v1"), ("tlsroutes/v1", "v1alpha2")] {
        let c = cafe();
        let api = FakeApi::start();
        api.hide(&[hidden]);
        api.apply_yaml(&c.yaml);
        api.apply_yaml(GATEWAY);
        api.apply_yaml(&format!(
            "apiVersion: gateway.networking.k8s.io/{manifest_version}\nkind: TLSRoute\nmetadata: {{name: tls, namespace: default}}\n\
             spec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [tls.gw.test]\n  rules:\n  - backendRefs: [{{name: tea-svc, port: 80}}]\n"
        ));
        let dir = ManifestDir::new();
        let agent = status_agent(&api, &dir, "agent-a", "192.0.2.10");
        agent.eventually(
            &format!("TLSRoute status written with {hidden} hidden"),
            || {
                api.get("TLSRoute", "default", "tls").is_some_and(|r| {
                    r["status"]["parents"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| {
                            condition_of(&p["conditions"], "Accepted")
                                .is_some_and(|c| c.0 == "False" && c.1 == "NotAllowedByListeners")
                        })
                    })
                })
            },
        );
        assert!(!agent.logs().contains("not installed"), "{}", agent.logs());
    }
}

#[test]
fn without_the_gateway_api_installed_ingresses_are_still_served() {
    let c = cafe();
    let api = FakeApi::start();
    api.hide(&[
        "gatewayclasses",
        "gateways",
        "httproutes",
        "referencegrants",
    ]);
    api.apply_yaml(&c.yaml);
    let dir = ManifestDir::new();
    let agent = cluster_agent(&api, &dir);
    assert_eq!(
        probe(&agent, "cafe.example.com", "/tea"),
        (200, "tea-".into())
    );
    assert!(
        agent
            .logs()
            .contains("Gateway API (gateway.networking.k8s.io/v1) is not installed"),
        "{}",
        agent.logs()
    );
}

//! Gateway API: the core GATEWAY-HTTP conformance tests of
//! kubernetes-sigs/gateway-api (v1.6), and the extended features xingress
//! claims, ported to `xingress run --manifests`. The manifests are our own
//! rewrite of the suite's: the same namespaces, Gateways, Services and
//! routes, with one echo pod per Service (answering `x-pod:
//! NAMESPACE/SERVICE-1`). Responses are checked as the suite checks them
//! (status, backend and namespace, the headers the pod got); status
//! conditions through `xingress check --output json`.
//!
//! Every test runs twice: in file mode, and in Kubernetes mode with the
//! same manifests applied to the fake API server (edits as `kubectl apply`,
//! objects gone from a file deleted). There the status the elected leader
//! writes must say what `xingress check` says of the same objects (times,
//! generations and addresses aside), every condition at its object's
//! generation, before the test's own assertions run on it.
//!
//! Not ported here, and why: HTTPRouteMultipleGateways (every Gateway of a
//! node shares the node's listeners, so two Gateways cannot send the same
//! host and path to different backends), HTTPRouteServiceTypes (headless and manual slices route
//! the same as any EndpointSlice here).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use xingress_tests::{
    agent::{Agent, ManifestDir, xingress_bin},
    backend::{self, Backend, Mode},
    fake_api::FakeApi,
    http1::{Conn, Response},
    tls_client,
};

const INFRA: &str = "gateway-conformance-infra";
const APP: &str = "gateway-conformance-app-backend";
const WEB: &str = "gateway-conformance-web-backend";

/// Our rewrite of conformance/base/manifests.yaml (HTTP part).
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {gateway-conformance: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-app-backend, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xingress}
spec: {controllerName: xingress.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: someone-else}
spec: {controllerName: example.com/other-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: xingress
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: backend-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: xingress
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-conformance: backend}}
"#;

/// Services and their one echo pod each.
const SERVICES: &[(&str, &str)] = &[
    (INFRA, "infra-backend-v1"),
    (INFRA, "infra-backend-v2"),
    (INFRA, "infra-backend-v3"),
    (APP, "app-backend-v1"),
    (APP, "app-backend-v2"),
    (WEB, "web-backend"),
];

/// Where the agent reads the manifests from: a directory (file mode), or
/// the fake API server they are applied to (Kubernetes mode, status written
/// by the elected leader). Every test runs in both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Files,
    Kube,
}

struct Suite {
    /// The manifests as files: served in file mode; in Kubernetes mode what
    /// `xingress check` is asked about, so that the status the leader
    /// writes is compared with what check says of the same objects.
    dir: ManifestDir,
    kube: Option<Kube>,
    pods: Vec<Backend>,
    agent: Agent,
}

struct Kube {
    api: FakeApi,
    _config: ManifestDir,
    /// The objects each file put in the API: (kind, namespace, name).
    applied: RefCell<BTreeMap<String, Vec<ObjectKey>>>,
}

const CONTROLLER: &str = "xingress.dev/gateway-controller";

fn services_yaml(pods: &[(String, SocketAddr)]) -> String {
    let mut out = String::new();
    for ((ns, name), (_, addr)) in SERVICES.iter().zip(pods) {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  ports: [{{name: first-port, port: 8080}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: first-port, port: {}}}]\n\
             endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
            addr.port(),
            addr.ip()
        ));
    }
    out
}

/// The base manifests, the test's own (`routes`), and the agent serving
/// them from `src`.
fn suite(src: Source, routes: &str) -> Suite {
    let dir = ManifestDir::new();
    let pods: Vec<Backend> = SERVICES
        .iter()
        .map(|(ns, name)| {
            backend::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &format!("{ns}/{name}-1"),
                Mode::Echo,
            )
            .unwrap()
        })
        .collect();
    let addrs: Vec<(String, SocketAddr)> = pods.iter().map(|p| (String::new(), p.addr)).collect();
    let (kube, mut agent) = match src {
        Source::Files => {
            dir.write("base.yaml", BASE);
            dir.write("services.yaml", &services_yaml(&addrs));
            dir.write("test.yaml", routes);
            (None, Agent::start_local(&dir.path, &[]).unwrap())
        }
        Source::Kube => {
            let kube = Kube {
                api: FakeApi::start(),
                _config: ManifestDir::new(),
                applied: RefCell::default(),
            };
            kube.apply(&dir, "base.yaml", BASE);
            kube.apply(&dir, "services.yaml", &services_yaml(&addrs));
            kube.apply(&dir, "test.yaml", routes);
            let config = kube._config.path.join("kubeconfig");
            std::fs::write(&config, kube.api.kubeconfig()).unwrap();
            let agent = Agent::start_cluster(
                &config,
                &[
                    "--publish-address",
                    "192.0.2.10",
                    "--pod-name",
                    "agent-0",
                    "--pod-namespace",
                    "xingress",
                    "--lease-duration",
                    "2",
                ],
            )
            .unwrap();
            (Some(kube), agent)
        }
    };
    agent.wait_ready().unwrap();
    Suite {
        dir,
        kube,
        pods,
        agent,
    }
}

/// (kind, namespace, name) of an object.
type ObjectKey = (String, String, String);

/// The key of a manifest, as the fake API stores it.
fn key_of(doc: &Value) -> ObjectKey {
    let kind = doc["kind"].as_str().unwrap().to_string();
    let cluster_scoped = matches!(kind.as_str(), "Namespace" | "GatewayClass" | "IngressClass");
    let ns = match doc["metadata"]["namespace"].as_str() {
        _ if cluster_scoped => "",
        Some(ns) => ns,
        None => "default",
    };
    (
        kind,
        ns.to_string(),
        doc["metadata"]["name"].as_str().unwrap().to_string(),
    )
}

impl Kube {
    /// As `kubectl apply` of the file would, and the file's objects that
    /// are gone from it deleted; the file is written for `xingress check`.
    fn apply(&self, dir: &ManifestDir, name: &str, yaml: &str) {
        use serde::Deserialize;
        dir.replace(name, yaml);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        let keys: Vec<_> = docs.iter().map(key_of).collect();
        for doc in docs {
            self.api.apply(doc);
        }
        let before = self
            .applied
            .borrow_mut()
            .insert(name.to_string(), keys.clone())
            .unwrap_or_default();
        for (kind, ns, n) in before.iter().filter(|k| !keys.contains(k)) {
            self.api.delete(kind, ns, n);
        }
    }

    /// The Gateway API objects' status as the leader wrote it, in the shape
    /// of `xingress check --output json`'s `gateway_api`.
    fn report(&self) -> Value {
        let named = |kinds: &[&str]| -> Value {
            let mut out = Vec::new();
            for kind in kinds {
                // Objects nobody wrote status for are not listed, as check
                // lists only what our controller reports on.
                for o in self
                    .api
                    .list(kind)
                    .into_iter()
                    .filter(|o| !o["status"].is_null())
                {
                    let (_, ns, name) = key_of(&o);
                    let name = if ns.is_empty() {
                        name
                    } else {
                        format!("{ns}/{name}")
                    };
                    out.push(json!({"kind": kind, "name": name, "status": o["status"],
                        "generation": o["metadata"]["generation"]}));
                }
            }
            Value::Array(out)
        };
        json!({
            "classes": named(&["GatewayClass"]),
            "gateways": named(&["Gateway"]),
            "routes": named(&["HTTPRoute", "GRPCRoute", "TLSRoute"]),
        })
    }
}

/// A status as compared between the two modes: without times and
/// generations (which files do not have), addresses (`--publish-address`),
/// and other controllers' route parents.
fn comparable(status: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("lastTransitionTime");
                m.remove("observedGeneration");
                m.remove("addresses");
                if let Some(Value::Array(ps)) = m.get_mut("parents") {
                    ps.retain(|p| p["controllerName"] == CONTROLLER);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = status.clone();
    strip(&mut v);
    match v {
        // Nothing written for a route none of our Gateways is asked for.
        Value::Null => json!({"parents": []}),
        v => v,
    }
}

/// Whether every condition in `status` carries `generation`.
fn at_generation(status: &Value, generation: &Value) -> bool {
    match status {
        Value::Object(m) => {
            m.get("observedGeneration").is_none_or(|g| g == generation)
                && m.values().all(|v| at_generation(v, generation))
        }
        Value::Array(a) => a.iter().all(|v| at_generation(v, generation)),
        _ => true,
    }
}

impl Suite {
    /// Writes (or rewrites) manifest file `name`: in Kubernetes mode its
    /// objects are applied to the API server instead.
    fn write(&self, name: &str, yaml: &str) {
        match &self.kube {
            None => self.dir.replace(name, yaml),
            Some(k) => k.apply(&self.dir, name, yaml),
        }
    }

    /// The Gateway API objects' status: in file mode what `xingress check
    /// --output json` reports; in Kubernetes mode what the leader wrote,
    /// once it says what check says of the same objects (and every
    /// condition carries its object's generation).
    fn report(&self) -> Value {
        let expected = report(&self.dir);
        let Some(k) = &self.kube else {
            return expected;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let written = k.report();
            let mut differs = Vec::new();
            for list in ["classes", "gateways", "routes"] {
                for want in expected[list].as_array().unwrap() {
                    let name = want["name"].as_str().unwrap();
                    let have = written[list]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|o| o["name"] == name && o["kind"] == want["kind"]);
                    let have_status = have.map(|h| h["status"].clone()).unwrap_or_default();
                    let ok = comparable(&have_status) == comparable(&want["status"])
                        && have.is_none_or(|h| at_generation(&h["status"], &h["generation"]));
                    if !ok {
                        differs.push(format!(
                            "{name}:\n  check says {:#}\n  the leader wrote {:#}",
                            comparable(&want["status"]),
                            have_status
                        ));
                    }
                }
            }
            if differs.is_empty() {
                return written;
            }
            assert!(
                Instant::now() < deadline,
                "status in Kubernetes mode differs from xingress check's:\n{}\n{}",
                differs.join("\n"),
                self.agent.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A request to the HTTP listener.
fn get(s: &Suite, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    Conn::connect(s.agent.http)
        .unwrap()
        .raw(req.as_bytes())
        .unwrap()
}

/// The pod that answered: `NAMESPACE/SERVICE`.
fn backend_of(r: &Response) -> String {
    r.header("x-pod")
        .and_then(|p| p.strip_suffix("-1"))
        .unwrap_or("")
        .to_string()
}

/// `GET host path` is answered 200 by `ns/svc` (the suite's check of the
/// echoed namespace and pod-name prefix).
#[track_caller]
fn expect(s: &Suite, host: &str, path: &str, headers: &[(&str, &str)], ns: &str, svc: &str) {
    let r = get(s, "GET", host, path, headers);
    assert_eq!(
        (r.status, backend_of(&r)),
        (200, format!("{ns}/{svc}")),
        "{host}{path} {headers:?}: {}",
        r.text()
    );
}

#[track_caller]
fn expect_status(s: &Suite, host: &str, path: &str, headers: &[(&str, &str)], status: u16) {
    let r = get(s, "GET", host, path, headers);
    assert_eq!(r.status, status, "{host}{path} {headers:?}: {}", r.text());
}

/// What `xingress check --output json` reports for the Gateway API objects.
fn report(dir: &ManifestDir) -> Value {
    let out = Command::new(xingress_bin())
        .arg("check")
        .arg(&dir.path)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    v["gateway_api"].clone()
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:#}"))
}

/// `(status, reason)` of condition `type_`.
fn condition(conds: &Value, type_: &str) -> (String, String) {
    let c = conds
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conds:#}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

fn is(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

/// The parent status of route `ns/name` for Gateway `gw` (in infra).
fn route_parent(report: &Value, route: &str, gw: &str) -> Value {
    let r = named(&report["routes"], route);
    r["status"]["parents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["parentRef"]["name"] == gw)
        .unwrap_or_else(|| panic!("no parent {gw} in {r:#}"))
        .clone()
}

fn listener<'a>(report: &'a Value, gw: &str, name: &str) -> &'a Value {
    let g = named(&report["gateways"], gw);
    g["status"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener {name} in {g:#}"))
}

/// A route to `same-namespace` with these rules.
fn route(name: &str, ns: &str, parent: &str, extra_spec: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  parentRefs: [{{name: {parent}, namespace: {INFRA}}}]\n{extra_spec}  rules:\n{rules}---\n"
    )
}

fn backend_ref(svc: &str) -> String {
    format!("    backendRefs: [{{name: {svc}, port: 8080}}]\n")
}

fn simple_same_namespace_route_is_accepted_and_served(src: Source) {
    let s = suite(
        src,
        &route(
            "gateway-conformance-infra-test",
            INFRA,
            "same-namespace",
            "",
            &format!("  -\n{}", backend_ref("infra-backend-v1")),
        ),
    );
    expect(&s, "any.example", "/", &[], INFRA, "infra-backend-v1");
    expect(
        &s,
        "any.example",
        "/deep/path?x=1",
        &[],
        INFRA,
        "infra-backend-v1",
    );
    let rep = s.report();
    let class = named(&rep["classes"], "xingress");
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    // Another controller's class is not ours: no status from us.
    assert!(
        !rep["classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "someone-else"),
        "{rep:#}"
    );
    let gw = named(&rep["gateways"], &format!("{INFRA}/same-namespace"));
    assert_eq!(
        condition(&gw["status"]["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&gw["status"]["conditions"], "Programmed"),
        is("True", "Programmed")
    );
    let l = listener(&rep, &format!("{INFRA}/same-namespace"), "http");
    assert_eq!(l["attachedRoutes"], 1);
    assert_eq!(
        l["supportedKinds"],
        serde_json::json!([
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}
        ])
    );
    for t in ["Accepted", "ResolvedRefs", "Programmed"] {
        assert_eq!(condition(&l["conditions"], t).0, "True", "{t}");
    }
    let p = route_parent(
        &rep,
        &format!("{INFRA}/gateway-conformance-infra-test"),
        "same-namespace",
    );
    assert_eq!(p["controllerName"], "xingress.dev/gateway-controller");
    assert_eq!(p["parentRef"]["group"], "gateway.networking.k8s.io");
    assert_eq!(p["parentRef"]["kind"], "Gateway");
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
}

fn exact_paths_and_path_match_order(src: Source) {
    let rules = "  - matches: [{path: {type: Exact, value: /one}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: Exact, value: /two}}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n";
    let order = "  - matches: [{path: {type: Exact, value: /match}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: Exact, value: /match/exact}}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n\
                 \x20 - matches: [{path: {type: Exact, value: /match/exact/one}}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /match/}}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /match/prefix/}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /match/prefix/one}}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n";
    let s = suite(
        src,
        &format!(
            "{}{}",
            route(
                "exact-matching",
                INFRA,
                "same-namespace",
                "  hostnames: [exact.test]\n",
                rules
            ),
            route(
                "path-matching-order",
                INFRA,
                "same-namespace",
                "  hostnames: [order.test]\n",
                order
            )
        ),
    );
    expect(&s, "exact.test", "/one", &[], INFRA, "infra-backend-v1");
    expect(&s, "exact.test", "/two", &[], INFRA, "infra-backend-v2");
    for p in ["/", "/one/example", "/two/", "/Two"] {
        expect_status(&s, "exact.test", p, &[], 404);
    }
    for (p, svc) in [
        ("/match/exact/one", "infra-backend-v3"),
        ("/match/exact", "infra-backend-v2"),
        ("/match", "infra-backend-v1"),
        ("/match/prefix/one/any", "infra-backend-v2"),
        ("/match/prefix/any", "infra-backend-v1"),
        ("/match/any", "infra-backend-v3"),
    ] {
        expect(&s, "order.test", p, &[], INFRA, svc);
    }
}

fn header_matching_and_combined_matches(src: Source) {
    let hdr = |name: &str, v: &str| format!("{{name: {name}, value: {v}}}");
    let rule = |headers: &[String], svc: &str| {
        format!(
            "  - matches: [{{headers: [{}]}}]\n    backendRefs: [{{name: {svc}, port: 8080}}]\n",
            headers.join(", ")
        )
    };
    let or_rule = |a: &str, b: &str, svc: &str| {
        format!(
            "  - matches: [{{headers: [{}]}}, {{headers: [{}]}}]\n    backendRefs: [{{name: {svc}, port: 8080}}]\n",
            hdr("color", a),
            hdr("color", b)
        )
    };
    let rules = [
        rule(&[hdr("version", "one")], "infra-backend-v1"),
        rule(&[hdr("version", "two")], "infra-backend-v2"),
        rule(
            &[hdr("version", "two"), hdr("color", "orange")],
            "infra-backend-v1",
        ),
        or_rule("blue", "green", "infra-backend-v1"),
        or_rule("red", "yellow", "infra-backend-v2"),
    ]
    .concat();
    let matching = "  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: version, value: one}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                    \x20 - matches: [{path: {type: PathPrefix, value: /v2}, headers: [{name: version, value: two}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n";
    let s = suite(
        src,
        &format!(
            "{}{}",
            route(
                "header-matching",
                INFRA,
                "same-namespace",
                "  hostnames: [headers.test]\n",
                &rules
            ),
            route(
                "matching",
                INFRA,
                "same-namespace",
                "  hostnames: [matching.test]\n",
                matching
            ),
        ),
    );
    let (v1, v2) = ("infra-backend-v1", "infra-backend-v2");
    for (headers, want) in [
        (vec![("Version", "one")], Some(v1)),
        (vec![("Version", "two")], Some(v2)),
        (vec![("Version", "two"), ("Color", "orange")], Some(v1)),
        (vec![("Version", "two"), ("Color", "blue")], Some(v2)),
        (vec![("Color", "orange")], None),
        (vec![("Some-Other-Header", "one")], None),
        (vec![("Color", "blue")], Some(v1)),
        (vec![("Color", "green")], Some(v1)),
        (vec![("Color", "red")], Some(v2)),
        (vec![("Color", "yellow")], Some(v2)),
        (vec![("Color", "purple")], None),
    ] {
        match want {
            Some(svc) => expect(&s, "headers.test", "/", &headers, INFRA, svc),
            None => expect_status(&s, "headers.test", "/", &headers, 404),
        }
    }
    // HTTPRouteMatching: a rule's path and headers together.
    for (path, headers, svc) in [
        ("/", vec![("Version", "one")], v1),
        ("/example", vec![("Version", "one")], v1),
        ("/v2", vec![("Version", "two")], v2),
        ("/v2/example", vec![("Version", "two")], v2),
        ("/v2example", vec![("Version", "one")], v1),
    ] {
        expect(&s, "matching.test", path, &headers, INFRA, svc);
    }
    expect_status(
        &s,
        "matching.test",
        "/v2example",
        &[("Version", "two")],
        404,
    );
}

fn hostname_intersection_with_listener_hostnames(src: Source) {
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: httproute-hostname-intersection, namespace: {INFRA}}}\n\
         spec:\n  gatewayClassName: xingress\n  listeners:\n\
         \x20 - {{name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com}}\n\
         \x20 - {{name: listener-2, port: 80, protocol: HTTP, hostname: \"*.wildcard.io\"}}\n\
         \x20 - {{name: listener-3, port: 80, protocol: HTTP, hostname: \"*.anotherwildcard.io\"}}\n---\n"
    );
    let r = |name: &str, hosts: &str, prefix: &str, svc: &str| {
        route(
            name,
            INFRA,
            "httproute-hostname-intersection",
            &format!("  hostnames: [{hosts}]\n"),
            &format!(
                "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n{}",
                backend_ref(svc)
            ),
        )
    };
    let s = suite(
        src,
        &format!(
            "{gateway}{}{}{}{}{}",
            r(
                "specific-host-matches-listener-specific-host",
                "non.matching.com, \"*.nonmatchingwildcard.io\", very.specific.com",
                "/s1",
                "infra-backend-v1"
            ),
            r(
                "specific-host-matches-listener-wildcard-host",
                "non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io",
                "/s2",
                "infra-backend-v2"
            ),
            r(
                "wildcard-host-matches-listener-specific-host",
                "non.matching.com, \"*.specific.com\"",
                "/s3",
                "infra-backend-v3"
            ),
            r(
                "wildcard-host-matches-listener-wildcard-host",
                "\"*.anotherwildcard.io\"",
                "/s4",
                "infra-backend-v1"
            ),
            r(
                "no-intersecting-hosts",
                "specific.but.wrong.com, wildcard.io",
                "/s5",
                "infra-backend-v2"
            ),
        ),
    );
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    expect(&s, "very.specific.com", "/s1", &[], INFRA, v1);
    expect(&s, "very.specific.com:1234", "/s1", &[], INFRA, v1);
    for h in [
        "non.matching.com",
        "foo.nonmatchingwildcard.io",
        "foo.wildcard.io",
    ] {
        expect_status(&s, h, "/s1", &[], 404);
    }
    expect_status(&s, "very.specific.com", "/non-matching-prefix", &[], 404);
    for h in ["foo.wildcard.io", "bar.wildcard.io", "foo.bar.wildcard.io"] {
        expect(&s, h, "/s2", &[], INFRA, v2);
    }
    for h in ["non.matching.com", "wildcard.io", "very.specific.com"] {
        expect_status(&s, h, "/s2", &[], 404);
    }
    expect(&s, "very.specific.com", "/s3", &[], INFRA, v3);
    for h in ["non.matching.com", "foo.specific.com", "foo.wildcard.io"] {
        expect_status(&s, h, "/s3", &[], 404);
    }
    for h in [
        "foo.anotherwildcard.io",
        "bar.anotherwildcard.io",
        "foo.bar.anotherwildcard.io",
    ] {
        expect(&s, h, "/s4", &[], INFRA, v1);
    }
    for h in ["anotherwildcard.io", "foo.wildcard.io", "very.specific.com"] {
        expect_status(&s, h, "/s4", &[], 404);
    }
    for h in ["specific.but.wrong.com", "wildcard.io"] {
        expect_status(&s, h, "/s5", &[], 404);
    }
    let rep = s.report();
    let gw = format!("{INFRA}/httproute-hostname-intersection");
    assert_eq!(listener(&rep, &gw, "listener-1")["attachedRoutes"], 2);
    assert_eq!(listener(&rep, &gw, "listener-2")["attachedRoutes"], 1);
    assert_eq!(listener(&rep, &gw, "listener-3")["attachedRoutes"], 1);
    let p = route_parent(
        &rep,
        &format!("{INFRA}/no-intersecting-hosts"),
        "httproute-hostname-intersection",
    );
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("False", "NoMatchingListenerHostname")
    );
}

fn listener_hostname_matching_by_section_name(src: Source) {
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: httproute-listener-hostname-matching, namespace: {INFRA}}}\n\
         spec:\n  gatewayClassName: xingress\n  listeners:\n\
         \x20 - {{name: listener-1, port: 80, protocol: HTTP, hostname: bar.com}}\n\
         \x20 - {{name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com}}\n\
         \x20 - {{name: listener-3, port: 80, protocol: HTTP, hostname: \"*.bar.com\"}}\n\
         \x20 - {{name: listener-4, port: 80, protocol: HTTP, hostname: \"*.foo.com\"}}\n---\n"
    );
    let r = |name: &str, sections: &[&str], svc: &str| {
        let parents: Vec<String> = sections
            .iter()
            .map(|s| format!("{{name: httproute-listener-hostname-matching, namespace: {INFRA}, sectionName: {s}}}"))
            .collect();
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{}]\n  rules:\n  -\n{}---\n",
            parents.join(", "),
            backend_ref(svc)
        )
    };
    // HTTPRouteInvalidParentRefNotMatchingSectionName.
    let unmatched = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: httproute-listener-not-matching-section-name, namespace: {INFRA}}}\n\
         spec:\n  parentRefs: [{{name: same-namespace, namespace: {INFRA}, port: 80, sectionName: http1}}]\n  rules:\n  -\n{}---\n",
        backend_ref("infra-backend-v1")
    );
    let s = suite(
        src,
        &format!(
            "{gateway}{unmatched}{}{}{}",
            r("backend-v1", &["listener-1"], "infra-backend-v1"),
            r("backend-v2", &["listener-2"], "infra-backend-v2"),
            r(
                "backend-v3",
                &["listener-3", "listener-4"],
                "infra-backend-v3"
            ),
        ),
    );
    expect(&s, "bar.com", "/", &[], INFRA, "infra-backend-v1");
    expect(&s, "foo.bar.com", "/", &[], INFRA, "infra-backend-v2");
    for h in [
        "baz.bar.com",
        "boo.bar.com",
        "multiple.prefixes.bar.com",
        "multiple.prefixes.foo.com",
    ] {
        expect(&s, h, "/", &[], INFRA, "infra-backend-v3");
    }
    for h in ["foo.com", "no.matching.host"] {
        expect_status(&s, h, "/", &[], 404);
    }
    let rep = s.report();
    let p = route_parent(
        &rep,
        &format!("{INFRA}/httproute-listener-not-matching-section-name"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("False", "NoMatchingParent")
    );
    assert_eq!(
        listener(&rep, &format!("{INFRA}/same-namespace"), "http")["attachedRoutes"],
        0
    );
}

fn cross_namespace_routes_and_reference_grants(src: Source) {
    let grant = |name: &str, ns: &str, to_name: Option<&str>| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}]\n\
             \x20 to: [{{group: \"\", kind: Service{}}}]\n---\n",
            to_name.map(|n| format!(", name: {n}")).unwrap_or_default()
        )
    };
    let cross = |name: &str, host: &str, ns: &str, svc: &str| {
        route(
            name,
            INFRA,
            "same-namespace",
            &format!("  hostnames: [{host}]\n"),
            &format!("  - backendRefs: [{{name: {svc}, namespace: {ns}, port: 8080}}]\n"),
        )
    };
    let s = suite(
        src,
        &format!(
            "{}{}{}{}{}{}",
            // HTTPRouteCrossNamespace: a route in web-backend on the Gateway that selects it.
            route(
                "cross-namespace",
                WEB,
                "backend-namespaces",
                "  hostnames: [cross.test]\n",
                &format!("  -\n{}", backend_ref("web-backend"))
            ),
            // HTTPRouteInvalidCrossNamespaceParentRef: same-namespace allows only its own namespace.
            route(
                "invalid-cross-namespace-parent-ref",
                WEB,
                "same-namespace",
                "  hostnames: [refused.test]\n",
                &format!("  -\n{}", backend_ref("web-backend"))
            ),
            // HTTPRouteReferenceGrant.
            cross("reference-grant", "granted.test", WEB, "web-backend"),
            grant("reference-grant", WEB, Some("web-backend")),
            // HTTPRouteInvalidCrossNamespaceBackendRef: no grant in app-backend for app-backend-v2.
            cross(
                "invalid-cross-namespace-backend-ref",
                "ungranted.test",
                APP,
                "app-backend-v2"
            ),
            grant("only-v1", APP, Some("app-backend-v1")),
        ),
    );
    expect(&s, "cross.test", "/", &[], WEB, "web-backend");
    expect_status(&s, "refused.test", "/", &[], 404);
    expect(&s, "granted.test", "/", &[], WEB, "web-backend");
    expect_status(&s, "ungranted.test", "/", &[], 500);
    let rep = s.report();
    let p = route_parent(
        &rep,
        &format!("{WEB}/cross-namespace"),
        "backend-namespaces",
    );
    assert_eq!(p["parentRef"]["namespace"], INFRA);
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    let p = route_parent(
        &rep,
        &format!("{WEB}/invalid-cross-namespace-parent-ref"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("False", "NotAllowedByListeners")
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    let p = route_parent(
        &rep,
        &format!("{INFRA}/invalid-cross-namespace-backend-ref"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("False", "RefNotPermitted")
    );
    // Deleting the grant revokes the reference, live.
    s.write(
        "test.yaml",
        &cross("reference-grant", "granted.test", WEB, "web-backend"),
    );
    s.agent.eventually("the revoked grant answers 500", || {
        get(&s, "GET", "granted.test", "/", &[]).status == 500
    });
}

fn invalid_backend_refs_answer_500_and_say_why(src: Source) {
    let s = suite(
        src,
        &format!(
            "{}{}{}",
            route(
                "invalid-nonexistent-backend-ref",
                INFRA,
                "same-namespace",
                "  hostnames: [missing.test]\n",
                &format!("  -\n{}", backend_ref("nonexistent"))
            ),
            route(
                "invalid-backend-ref-unknown-kind",
                INFRA,
                "same-namespace",
                "  hostnames: [kind.test]\n",
                "  - backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}]\n"
            ),
            route(
                "omitted-backendrefs",
                INFRA,
                "same-namespace",
                "  hostnames: [omitted.test]\n",
                &format!(
                    "  - matches: [{{path: {{type: Exact, value: /omitted-no-forward}}}}]\n  - matches: [{{path: {{type: Exact, value: /empty-no-forward}}}}]\n    backendRefs: []\n  -\n{}",
                    backend_ref("infra-backend-v1")
                )
            ),
        ),
    );
    expect_status(&s, "missing.test", "/", &[], 500);
    expect_status(&s, "kind.test", "/v2", &[], 500);
    expect(
        &s,
        "omitted.test",
        "/forward",
        &[],
        INFRA,
        "infra-backend-v1",
    );
    expect_status(&s, "omitted.test", "/omitted-no-forward", &[], 500);
    expect_status(&s, "omitted.test", "/empty-no-forward", &[], 500);
    let rep = s.report();
    let p = route_parent(
        &rep,
        &format!("{INFRA}/invalid-nonexistent-backend-ref"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("False", "BackendNotFound")
    );
    let p = route_parent(
        &rep,
        &format!("{INFRA}/invalid-backend-ref-unknown-kind"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("False", "InvalidKind")
    );
    let p = route_parent(
        &rep,
        &format!("{INFRA}/omitted-backendrefs"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
}

fn weighted_backends_split_requests_by_weight(src: Source) {
    let s = suite(
        src,
        &route(
            "weighted-backends",
            INFRA,
            "same-namespace",
            "",
            "  - backendRefs:\n    - {name: infra-backend-v1, port: 8080, weight: 70}\n    - {name: infra-backend-v2, port: 8080, weight: 30}\n    - {name: infra-backend-v3, port: 8080, weight: 0}\n",
        ),
    );
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let r = get(&s, "GET", "weights.test", "/", &[]);
        assert_eq!(r.status, 200);
        *counts.entry(backend_of(&r)).or_insert(0) += 1;
    }
    let share =
        |svc: &str| f64::from(counts.get(&format!("{INFRA}/{svc}")).copied().unwrap_or(0)) / 200.0;
    assert!(
        (share("infra-backend-v1") - 0.7).abs() <= 0.05,
        "{counts:?}"
    );
    assert!(
        (share("infra-backend-v2") - 0.3).abs() <= 0.05,
        "{counts:?}"
    );
    assert_eq!(share("infra-backend-v3"), 0.0, "{counts:?}");
}

fn redirects_rewrites_and_header_modifiers(src: Source) {
    let rules = "  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]\n    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /host-and-status}}]\n    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /scheme-and-prefix}}]\n    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /set}}]\n    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}]}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /add}}]\n    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Header-Add, value: add-appends-values}]}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /remove}}]\n    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [X-Header-Remove]}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /response}}]\n    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Resp-Set, value: ours}], add: [{name: X-Resp-Add, value: added}], remove: [X-Resp-Remove]}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]\n    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.test, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /full}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n";
    let s = suite(
        src,
        &route(
            "filters",
            INFRA,
            "same-namespace",
            "  hostnames: [filters.test]\n",
            rules,
        ),
    );
    let r = get(&s, "GET", "filters.test", "/hostname-redirect/x?q=1", &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("http://example.org/hostname-redirect/x?q=1"))
    );
    let r = get(&s, "GET", "filters.test", "/host-and-status", &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("http://example.org/host-and-status"))
    );
    let r = get(&s, "GET", "filters.test", "/scheme-and-prefix/a", &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("https://filters.test/new/a"))
    );

    let pod_header = |r: &Response, name: &str| r.echo_field(name);
    let r = get(
        &s,
        "GET",
        "filters.test",
        "/set",
        &[
            ("X-Header-Set", "some-other-value"),
            ("Some-Other-Header", "val"),
        ],
    );
    assert_eq!(
        pod_header(&r, "x-header-set").as_deref(),
        Some("set-overwrites-values"),
        "{}",
        r.text()
    );
    assert_eq!(pod_header(&r, "some-other-header").as_deref(), Some("val"));
    let r = get(
        &s,
        "GET",
        "filters.test",
        "/add",
        &[("x-header-add", "some-other-value")],
    );
    assert_eq!(
        pod_header(&r, "x-header-add").as_deref(),
        Some("some-other-value,add-appends-values"),
        "{}",
        r.text()
    );
    let r = get(&s, "GET", "filters.test", "/add", &[]);
    assert_eq!(
        pod_header(&r, "x-header-add").as_deref(),
        Some("add-appends-values")
    );
    let r = get(
        &s,
        "GET",
        "filters.test",
        "/remove",
        &[("X-Header-Remove", "gone"), ("Keep", "kept")],
    );
    assert_eq!(pod_header(&r, "x-header-remove"), None, "{}", r.text());
    assert_eq!(pod_header(&r, "keep").as_deref(), Some("kept"));
    // ResponseHeaderModifier over what the pod answered (X-Echo-Set-Header).
    let r = get(
        &s,
        "GET",
        "filters.test",
        "/response",
        &[(
            "X-Echo-Set-Header",
            "X-Resp-Set:pods,X-Resp-Add:pods,X-Resp-Remove:pods",
        )],
    );
    assert_eq!(r.header("x-resp-set"), Some("ours"), "{:?}", r.headers);
    // Two field lines or one comma-joined: the same to HTTP (and to the
    // suite, which joins them with ",").
    let added: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-resp-add"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(added.join(","), "pods,added", "{:?}", r.headers);
    assert_eq!(r.header("x-resp-remove"), None, "{:?}", r.headers);
    // URLRewrite: prefix and host; full path; the query stays.
    let r = get(&s, "GET", "filters.test", "/strip-prefix/three?x=1", &[]);
    assert_eq!(
        pod_header(&r, "uri").as_deref(),
        Some("/three?x=1"),
        "{}",
        r.text()
    );
    assert_eq!(pod_header(&r, "host").as_deref(), Some("rewritten.test"));
    let r = get(&s, "GET", "filters.test", "/strip-prefix", &[]);
    assert_eq!(pod_header(&r, "uri").as_deref(), Some("/"));
    let r = get(&s, "GET", "filters.test", "/full/any/thing", &[]);
    assert_eq!(pod_header(&r, "uri").as_deref(), Some("/one"));
}

fn query_parameter_and_method_matching(src: Source) {
    let q = |name: &str, v: &str| format!("{{name: {name}, value: {v}}}");
    let rules = format!(
        "  - matches: [{{queryParams: [{}]}}]\n{}\
         \x20 - matches: [{{queryParams: [{}]}}]\n{}\
         \x20 - matches: [{{queryParams: [{}, {}]}}, {{queryParams: [{}]}}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /path5}}}}]\n{}\
         \x20 - matches: [{{queryParams: [{}]}}]\n{}\
         \x20 - matches: [{{headers: [{{name: version, value: four}}]}}]\n{}",
        q("animal", "whale"),
        backend_ref("infra-backend-v1"),
        q("animal", "dolphin"),
        backend_ref("infra-backend-v2"),
        q("animal", "dolphin"),
        q("color", "blue"),
        q("ANIMAL", "Whale"),
        backend_ref("infra-backend-v3"),
        backend_ref("infra-backend-v1"),
        q("animal", "hydra"),
        backend_ref("infra-backend-v2"),
        backend_ref("infra-backend-v3"),
    );
    let methods = format!(
        "  - matches: [{{method: POST}}]\n{}\
         \x20 - matches: [{{method: GET}}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /path1}}, method: GET}}]\n{}",
        backend_ref("infra-backend-v1"),
        backend_ref("infra-backend-v2"),
        backend_ref("infra-backend-v1"),
    );
    let s = suite(
        src,
        &format!(
            "{}{}",
            route(
                "query-param-matching",
                INFRA,
                "same-namespace",
                "  hostnames: [query.test]\n",
                &rules
            ),
            route(
                "method-matching",
                INFRA,
                "same-namespace",
                "  hostnames: [method.test]\n",
                &methods
            ),
        ),
    );
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (path, headers, want) in [
        ("/?animal=whale", vec![], Some(v1)),
        ("/?animal=dolphin", vec![], Some(v2)),
        ("/?animal=dolphin&color=blue", vec![], Some(v3)),
        ("/?ANIMAL=Whale", vec![], Some(v3)),
        ("/?animal=whale&otherparam=irrelevant", vec![], Some(v1)),
        ("/?animal=dolphin&color=yellow", vec![], Some(v2)),
        ("/?color=blue", vec![], None),
        ("/?animal=dog", vec![], None),
        ("/?animal=whaledolphin", vec![], None),
        ("/", vec![], None),
        ("/path5?animal=hydra", vec![], Some(v1)),
        ("/?animal=hydra", vec![("version", "four")], Some(v3)),
    ] {
        match want {
            Some(svc) => {
                expect(&s, "query.test", path, &headers, INFRA, svc);
                // The pod gets the query as sent.
                let r = get(&s, "GET", "query.test", path, &headers);
                assert_eq!(r.echo_field("uri").as_deref(), Some(path));
            }
            None => expect_status(&s, "query.test", path, &headers, 404),
        }
    }
    let r = get(&s, "POST", "method.test", "/", &[]);
    assert_eq!(backend_of(&r), format!("{INFRA}/{v1}"));
    expect(&s, "method.test", "/", &[], INFRA, v2);
    expect(&s, "method.test", "/path1", &[], INFRA, v1);
    assert_eq!(get(&s, "PUT", "method.test", "/", &[]).status, 404);
}

/// A self-signed certificate for `names`, as a kubernetes.io/tls Secret.
fn certificate(ns: &str, name: &str, names: &[&str]) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    (
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
            indent(cert.pem()),
            indent(key.serialize_pem())
        ),
        cert.der().to_vec(),
    )
}

fn https_listeners_terminate_with_their_certificates(src: Source) {
    let (secret, der) = certificate(
        INFRA,
        "tls-validity-checks-certificate",
        &["*", "*.org", "*.wildcard.org"],
    );
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: same-namespace-with-https-listener, namespace: {INFRA}}}\n\
         spec:\n  gatewayClassName: xingress\n  listeners:\n\
         \x20 - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}}}\n\
         \x20 - {{name: https-with-hostname, port: 443, protocol: HTTPS, hostname: second-example.org, tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}}}\n---\n"
    );
    let https_route = |name: &str, extra: &str, svc: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n{extra}  rules:\n  -\n{}---\n",
            backend_ref(svc)
        )
    };
    let s = suite(
        src,
        &format!(
            "{secret}{gateway}{}{}",
            https_route(
                "httproute-https-test",
                "  parentRefs: [{name: same-namespace-with-https-listener}]\n  hostnames: [example.org]\n",
                "infra-backend-v1"
            ),
            https_route(
                "httproute-https-test-no-hostname",
                "  parentRefs: [{name: same-namespace-with-https-listener, sectionName: https-with-hostname}]\n",
                "infra-backend-v2"
            ),
        ),
    );
    let config = tls_client::config(&[b"http/1.1"]);
    let https = |sni: &str| -> (Response, Vec<u8>) {
        let (mut conn, info) = tls_client::connect(s.agent.https, sni, &config).unwrap();
        let r = conn
            .raw(format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        (r, info.chain[0].clone())
    };
    let (r, leaf) = https("example.org");
    assert_eq!(leaf, der, "the listener's certificate");
    assert_eq!(
        backend_of(&r),
        format!("{INFRA}/infra-backend-v1"),
        "{}",
        r.text()
    );
    let (r, leaf) = https("unknown-example.org");
    assert_eq!((r.status, leaf == der), (404, true));
    let (r, _) = https("second-example.org");
    assert_eq!(
        backend_of(&r),
        format!("{INFRA}/infra-backend-v2"),
        "{}",
        r.text()
    );
    // An HTTPS-only route is not served on the HTTP listener.
    expect_status(&s, "example.org", "/", &[], 404);
    let rep = s.report();
    for l in ["https", "https-with-hostname"] {
        let l = listener(
            &rep,
            &format!("{INFRA}/same-namespace-with-https-listener"),
            l,
        );
        for t in ["Accepted", "ResolvedRefs", "Programmed"] {
            assert_eq!(condition(&l["conditions"], t).0, "True", "{t}: {l:#}");
        }
    }
}

fn invalid_listeners_are_reported_and_the_rest_serves(src: Source) {
    let (good, _) = certificate(WEB, "certificate", &["*"]);
    let gw = |name: &str, listeners: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n{listeners}---\n"
        )
    };
    let https = |cert: &str| {
        format!(
            "  - {{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {{certificateRefs: [{cert}]}}}}\n"
        )
    };
    let malformed = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: malformed-certificate, namespace: {INFRA}}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: Hello world, tls.key: Hello world}}\n---\n"
    );
    let grant_all = format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: all-secrets, namespace: {WEB}}}\n\
         spec:\n  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {INFRA}}}]\n  to: [{{group: \"\", kind: Secret}}]\n---\n"
    );
    let with_params = gw(
        "gateway-invalid-parameters-ref",
        "  - {name: http, port: 80, protocol: HTTP}\n",
    )
    .replace(
        "  gatewayClassName: xingress\n",
        "  gatewayClassName: xingress\n  infrastructure: {parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}}\n",
    );
    let s = suite(
        src,
        &format!(
            "{good}{malformed}{with_params}{grant_all}{}{}{}{}{}{}{}{}",
            gw(
                "gateway-only-unsupported-protocols",
                "  - {name: invalid, port: 1111, protocol: INVALID}\n"
            ),
            gw(
                "gateway-supported-and-unsupported-protocols",
                "  - {name: http, port: 80, protocol: HTTP}\n  - {name: invalid, port: 1111, protocol: INVALID}\n"
            ),
            gw(
                "gateway-only-invalid-route-kind",
                "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: InvalidRoute}]}}\n"
            ),
            gw(
                "gateway-certificate-nonexistent-secret",
                &https("{name: nonexistent-certificate}")
            ),
            gw(
                "gateway-certificate-unsupported-group",
                &https(
                    "{group: wrong.group.company.io, kind: Secret, name: tls-validity-checks-certificate}"
                )
            ),
            gw(
                "gateway-certificate-unsupported-kind",
                &https("{group: \"\", kind: WrongKind, name: tls-validity-checks-certificate}")
            ),
            gw(
                "gateway-certificate-malformed-secret",
                &https("{name: malformed-certificate}")
            ),
            gw(
                "gateway-secret-missing-reference-grant",
                &https(&format!("{{name: certificate, namespace: {WEB}}}"))
            ),
        ),
    );
    let rep = s.report();
    let gw_status =
        |name: &str| named(&rep["gateways"], &format!("{INFRA}/{name}"))["status"].clone();
    let g = gw_status("gateway-only-unsupported-protocols");
    assert_eq!(
        condition(&g["conditions"], "Accepted"),
        is("False", "ListenersNotValid")
    );
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-only-unsupported-protocols"),
        "invalid",
    );
    assert_eq!(
        condition(&l["conditions"], "Accepted"),
        is("False", "UnsupportedProtocol")
    );
    assert_eq!(l["supportedKinds"], serde_json::json!([]));
    let g = gw_status("gateway-supported-and-unsupported-protocols");
    assert_eq!(
        condition(&g["conditions"], "Accepted"),
        is("True", "ListenersNotValid")
    );
    assert_eq!(
        condition(&g["conditions"], "Programmed"),
        is("True", "Programmed")
    );
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-only-invalid-route-kind"),
        "http",
    );
    assert_eq!(
        condition(&l["conditions"], "ResolvedRefs"),
        is("False", "InvalidRouteKinds")
    );
    assert_eq!(l["supportedKinds"], serde_json::json!([]));
    for name in [
        "gateway-certificate-nonexistent-secret",
        "gateway-certificate-unsupported-group",
        "gateway-certificate-unsupported-kind",
        "gateway-certificate-malformed-secret",
    ] {
        let l = listener(&rep, &format!("{INFRA}/{name}"), "https");
        assert_eq!(
            condition(&l["conditions"], "ResolvedRefs"),
            is("False", "InvalidCertificateRef"),
            "{name}"
        );
        assert_eq!(l["attachedRoutes"], 0);
    }
    // Granted for every Secret of web-backend: the reference resolves.
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-secret-missing-reference-grant"),
        "https",
    );
    assert_eq!(
        condition(&l["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs"),
        "{l:#}"
    );
    let g = gw_status("gateway-invalid-parameters-ref");
    assert_eq!(
        condition(&g["conditions"], "Accepted"),
        is("False", "InvalidParameters")
    );
    // Without the grant, RefNotPermitted.
    s.write(
        "test.yaml",
        &format!(
            "{good}{}",
            gw(
                "gateway-secret-missing-reference-grant",
                &https(&format!("{{name: certificate, namespace: {WEB}}}"))
            )
        ),
    );
    let rep = s.report();
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-secret-missing-reference-grant"),
        "https",
    );
    assert_eq!(
        condition(&l["conditions"], "ResolvedRefs"),
        is("False", "RefNotPermitted")
    );
    // The agent still serves the base Gateways.
    s.write(
        "route.yaml",
        &route(
            "still-serving",
            INFRA,
            "same-namespace",
            "",
            &format!("  -\n{}", backend_ref("infra-backend-v1")),
        ),
    );
    s.agent.eventually("the route is served", || {
        backend_of(&get(&s, "GET", "x.test", "/", &[])) == format!("{INFRA}/infra-backend-v1")
    });
}

fn ingress_and_gateway_routes_share_a_host(src: Source) {
    let ingress = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: xingress}}\nspec: {{controller: xingress.dev/controller}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: legacy, namespace: {INFRA}}}\n\
         spec:\n  ingressClassName: xingress\n  rules:\n  - host: shared.test\n    http:\n      paths:\n\
         \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: infra-backend-v1, port: {{number: 8080}}}}}}}}\n\
         \x20     - {{path: /api, pathType: Prefix, backend: {{service: {{name: infra-backend-v1, port: {{number: 8080}}}}}}}}\n---\n"
    );
    let rules = "  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: \"yes\"}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /api}}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n\
                 \x20 - matches: [{path: {type: PathPrefix, value: /new}}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n";
    let s = suite(
        src,
        &format!(
            "{ingress}{}",
            route(
                "gateway-side",
                INFRA,
                "same-namespace",
                "  hostnames: [shared.test]\n",
                rules
            )
        ),
    );
    // The most specific match wins whichever API defined it; on a full tie
    // (same path, no other match) the Ingress's rule.
    expect(&s, "shared.test", "/", &[], INFRA, "infra-backend-v1");
    expect(&s, "shared.test", "/new/x", &[], INFRA, "infra-backend-v3");
    expect(
        &s,
        "shared.test",
        "/api",
        &[("X-Canary", "yes")],
        INFRA,
        "infra-backend-v2",
    );
    expect(&s, "shared.test", "/api", &[], INFRA, "infra-backend-v1");
    // Removing the route is served live.
    s.write("test.yaml", &ingress);
    s.agent.eventually("the Gateway route is gone", || {
        get(&s, "GET", "shared.test", "/new/x", &[]).status == 200
            && backend_of(&get(&s, "GET", "shared.test", "/new/x", &[]))
                == format!("{INFRA}/infra-backend-v1")
    });
}

/// GRPCExactMethodMatching and GRPCRouteHeaderMatching: gRPC over h2c
/// (prior knowledge) to the HTTP listener, routed by service and method.
fn grpc_routes_match_service_method_and_headers(src: Source) {
    const SVC: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
    let grpc_pods: Vec<Backend> = ["grpc-infra-backend-v1", "grpc-infra-backend-v2"]
        .iter()
        .map(|n| {
            backend::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &format!("{INFRA}/{n}-1"),
                Mode::GrpcStream,
            )
            .unwrap()
        })
        .collect();
    let mut yaml = String::new();
    for (name, pod) in ["grpc-infra-backend-v1", "grpc-infra-backend-v2"]
        .iter()
        .zip(&grpc_pods)
    {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  ports: [{{name: grpc, port: 8080, appProtocol: kubernetes.io/h2c}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: grpc, port: {}}}]\n\
             endpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n---\n",
            pod.addr.port()
        ));
    }
    yaml.push_str(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: exact-matching, namespace: {INFRA}}}\n\
         spec:\n  parentRefs: [{{name: same-namespace}}]\n  hostnames: [grpc.test]\n  rules:\n\
         \x20 - matches: [{{method: {{service: {SVC}, method: Echo}}}}]\n    backendRefs: [{{name: grpc-infra-backend-v1, port: 8080}}]\n\
         \x20 - matches: [{{method: {{service: {SVC}, method: EchoTwo}}}}]\n    backendRefs: [{{name: grpc-infra-backend-v2, port: 8080}}]\n\
         \x20 - matches: [{{headers: [{{name: version, value: two}}]}}]\n    backendRefs: [{{name: grpc-infra-backend-v2, port: 8080}}]\n---\n"
    ));
    let s = suite(src, &yaml);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = |method: &str, headers: &[(&str, &str)]| -> (u16, String) {
        rt.block_on(async {
            use http_body_util::{BodyExt, Full};
            let tcp = tokio::net::TcpStream::connect(s.agent.http).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::post(format!("http://grpc.test/{SVC}/{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = send
                .send_request(
                    req.body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let pod = resp
                .headers()
                .get("x-pod")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_end_matches("-1")
                .to_string();
            let _ = resp.into_body().collect().await;
            (status, pod)
        })
    };
    assert_eq!(
        call("Echo", &[]),
        (200, format!("{INFRA}/grpc-infra-backend-v1"))
    );
    assert_eq!(
        call("EchoTwo", &[]),
        (200, format!("{INFRA}/grpc-infra-backend-v2"))
    );
    // No rule for EchoThree: no route (grpc-go reads the 404 as UNIMPLEMENTED).
    assert_eq!(call("EchoThree", &[]).0, 404);
    assert_eq!(
        call("EchoThree", &[("version", "two")]),
        (200, format!("{INFRA}/grpc-infra-backend-v2"))
    );
    let rep = s.report();
    let p = route_parent(&rep, &format!("{INFRA}/exact-matching"), "same-namespace");
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        named(&rep["routes"], &format!("{INFRA}/exact-matching"))["kind"],
        "GRPCRoute"
    );
}

/// The requests pod `i` of `SERVICES` got, waiting up to 2 s for `want` of
/// them (mirrored copies travel on their own task).
fn seen_by(s: &Suite, i: usize, path: &str, want: usize) -> usize {
    let count = || {
        s.pods[i]
            .requests()
            .iter()
            .filter(|r| r.split(' ').nth(1) == Some(path))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while count() < want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Past `want`, a late copy would still show: look once more.
    std::thread::sleep(std::time::Duration::from_millis(50));
    count()
}

/// HTTPRouteRequestMirror, HTTPRouteRequestMultipleMirrors and
/// HTTPRouteRequestPercentageMirror: the client gets the backendRef's
/// answer; each mirror's pod gets a copy of the request as the backend
/// got it (its share of them for a fraction); a mirror to a missing
/// Service is reported and the route keeps serving.
fn request_mirrors_copy_requests_to_their_backends(src: Source) {
    let mirror = |svc: &str, extra: &str| {
        format!(
            "{{type: RequestMirror, requestMirror: {{backendRef: {{name: {svc}, port: 8080}}{extra}}}}}"
        )
    };
    let rules = format!(
        "  - matches: [{{path: {{type: PathPrefix, value: /mirror}}}}]\n    filters: [{}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /multi-mirror}}}}]\n    filters: [{}, {}, {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: X-Header-Set, value: mirrored}}]}}}}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /half}}}}]\n    filters: [{}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /tenth}}}}]\n    filters: [{}]\n{}",
        mirror("infra-backend-v2", ""),
        backend_ref("infra-backend-v1"),
        mirror("infra-backend-v2", ""),
        mirror("infra-backend-v3", ""),
        backend_ref("infra-backend-v1"),
        mirror("infra-backend-v2", ", percent: 50"),
        backend_ref("infra-backend-v1"),
        mirror(
            "infra-backend-v3",
            ", fraction: {numerator: 1, denominator: 10}"
        ),
        backend_ref("infra-backend-v1"),
    );
    let broken = route(
        "mirror-to-nowhere",
        INFRA,
        "same-namespace",
        "  hostnames: [broken-mirror.test]\n",
        &format!(
            "  - filters: [{}]\n{}",
            mirror("no-such-service", ""),
            backend_ref("infra-backend-v1")
        ),
    );
    let s = suite(
        src,
        &format!(
            "{}{broken}",
            route(
                "request-mirror",
                INFRA,
                "same-namespace",
                "  hostnames: [mirror.test]\n",
                &rules
            )
        ),
    );
    // One mirror: the client's answer is the backendRef's.
    expect(&s, "mirror.test", "/mirror", &[], INFRA, "infra-backend-v1");
    assert_eq!(seen_by(&s, 0, "/mirror", 1), 1);
    assert_eq!(seen_by(&s, 1, "/mirror", 1), 1, "the mirror got no copy");
    assert_eq!(seen_by(&s, 2, "/mirror", 0), 0);
    // Two mirrors, after the request's header edit: each gets the request
    // as the backend did.
    let r = get(&s, "GET", "mirror.test", "/multi-mirror", &[]);
    assert_eq!(r.echo_field("x-header-set").as_deref(), Some("mirrored"));
    assert_eq!(seen_by(&s, 1, "/multi-mirror", 1), 1);
    assert_eq!(seen_by(&s, 2, "/multi-mirror", 1), 1);
    // Shares: 50% of 20 requests, 1/10 of 20, spread evenly.
    for _ in 0..20 {
        expect(&s, "mirror.test", "/half", &[], INFRA, "infra-backend-v1");
        expect(&s, "mirror.test", "/tenth", &[], INFRA, "infra-backend-v1");
    }
    assert_eq!(seen_by(&s, 1, "/half", 10), 10);
    assert_eq!(seen_by(&s, 2, "/tenth", 2), 2);
    // A mirror to a Service that does not exist: reported, and the route
    // still answers from its backend.
    expect(
        &s,
        "broken-mirror.test",
        "/x",
        &[],
        INFRA,
        "infra-backend-v1",
    );
    let rep = s.report();
    let parent = route_parent(
        &rep,
        &format!("{INFRA}/mirror-to-nowhere"),
        "same-namespace",
    );
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs"),
        is("False", "BackendNotFound")
    );
    let parent = route_parent(&rep, &format!("{INFRA}/request-mirror"), "same-namespace");
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    let metrics = xingress_tests::http1::get(s.agent.admin, "localhost", "/metrics")
        .unwrap()
        .text();
    assert!(
        metrics.contains("xingress_upstream_mirrored_total 15"),
        "1 + 2 + 10 + 2 copies: {metrics}"
    );
}

/// HTTPRouteTimeoutRequest and HTTPRouteTimeoutBackendRequest: a pod
/// slower than `timeouts.request` (or `backendRequest`) gets the client a
/// 504 when the timeout passes, a quick one answers; a rule whose
/// backendRequest exceeds its request timeout, or with a malformed
/// duration, is dropped and said so.
fn route_timeouts_answer_504_when_the_pod_is_slower(src: Source) {
    let s = suite(
        src,
        &format!(
            "{}{}",
            route(
                "request-timeout",
                INFRA,
                "same-namespace",
                "  hostnames: [timeout.test]\n",
                &format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: /delay}}}}]\n    timeouts: {{request: 500ms}}\n{}\
                 \x20 - matches: [{{path: {{type: PathPrefix, value: /backend/delay}}}}]\n    timeouts: {{backendRequest: 300ms}}\n    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /delay}}}}}}]\n{}\
                 \x20 - matches: [{{path: {{type: PathPrefix, value: /none/delay}}}}]\n    timeouts: {{request: 0s}}\n    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /delay}}}}}}]\n{}",
                    backend_ref("infra-backend-v1"),
                    backend_ref("infra-backend-v1"),
                    backend_ref("infra-backend-v1"),
                )
            ),
            route(
                "bad-timeouts",
                INFRA,
                "same-namespace",
                "  hostnames: [bad-timeout.test]\n",
                &format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: /inverted}}}}]\n    timeouts: {{request: 1s, backendRequest: 2s}}\n{}\
                 \x20 - matches: [{{path: {{type: PathPrefix, value: /days}}}}]\n    timeouts: {{request: 1d}}\n{}\
                 \x20 -\n{}",
                    backend_ref("infra-backend-v1"),
                    backend_ref("infra-backend-v1"),
                    backend_ref("infra-backend-v2"),
                )
            ),
        ),
    );
    let timed = |path: &str| {
        let t = std::time::Instant::now();
        let r = get(&s, "GET", "timeout.test", path, &[]);
        (r.status, t.elapsed())
    };
    let (status, took) = timed("/delay/2000");
    assert_eq!(status, 504);
    assert!(
        took >= std::time::Duration::from_millis(450)
            && took < std::time::Duration::from_millis(1500),
        "504 after {took:?}, not at the 500ms timeout"
    );
    assert_eq!(timed("/delay/10").0, 200);
    let (status, took) = timed("/backend/delay/2000");
    assert_eq!(status, 504);
    assert!(
        took < std::time::Duration::from_millis(1500),
        "504 after {took:?}, not at the 300ms backendRequest timeout"
    );
    assert_eq!(timed("/backend/delay/10").0, 200);
    // 0s: no timeout of the route's own (the agent's 60 s read timeout).
    assert_eq!(timed("/none/delay/700").0, 200);
    // The invalid rules are gone (their paths fall to the catch-all rule).
    for path in ["/inverted", "/days"] {
        expect(&s, "bad-timeout.test", path, &[], INFRA, "infra-backend-v2");
    }
    let rep = s.report();
    let parent = route_parent(&rep, &format!("{INFRA}/bad-timeouts"), "same-namespace");
    let partially = parent["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PartiallyInvalid")
        .unwrap_or_else(|| panic!("{parent:#}"));
    let message = partially["message"].as_str().unwrap();
    assert!(
        message.contains("backendRequest 2s is longer than timeouts.request 1s")
            && message.contains("duration \"1d\""),
        "{message}"
    );
}

/// A Service of one pod at `addr` in `ns`, port 443.
fn tls_service(ns: &str, name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  ports: [{{name: https, port: 443}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: https, port: {}}}]\n\
         endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
        addr.port(),
        addr.ip()
    )
}

/// TLSRouteSimpleSameNamespace, TLSRouteInvalidReferenceGrant and the
/// hostname rules of TLSRoute: a TLS listener in Passthrough mode sends
/// connections by server name to the route's pod, which terminates TLS
/// with its own certificate; the agent never decrypts them. HTTPS
/// termination on the same port goes on for other names. A TLSRoute
/// refused by the listener, a cross-namespace backend without a grant, and
/// a listener asking to terminate say why in status.
fn tls_routes_pass_tls_through_by_server_name(src: Source) {
    // The pod's own certificate, for abc.example.com.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["abc.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pod_der = cert.der().to_vec();
    let tls_pod = backend::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "tls-backend-1",
        Mode::Echo,
        Some(backend::tls_config(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )),
    )
    .unwrap();
    let (secret, listener_der) = certificate(INFRA, "listener-cert", &["terminated.example.com"]);
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gateway-tlsroute, namespace: {INFRA}}}\n\
         spec:\n  gatewayClassName: xingress\n  listeners:\n\
         \x20 - {{name: tls, port: 443, protocol: TLS, hostname: \"*.example.com\", tls: {{mode: Passthrough}}}}\n\
         \x20 - {{name: https, port: 443, protocol: HTTPS, hostname: terminated.example.com, tls: {{certificateRefs: [{{name: listener-cert}}]}}}}\n\
         \x20 - {{name: tls-terminate, port: 443, protocol: TLS, hostname: terminate.test, tls: {{mode: Terminate, certificateRefs: [{{name: listener-cert}}]}}}}\n---\n"
    );
    let tls_route = |name: &str, parent: &str, hosts: &str, backend_ns: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{{name: gateway-tlsroute, sectionName: {parent}}}]\n  hostnames: {hosts}\n\
             \x20 rules:\n  - backendRefs: [{{name: tls-backend, namespace: {backend_ns}, port: 443}}]\n---\n"
        )
    };
    let https_route = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: terminated, namespace: {INFRA}}}\n\
         spec:\n  parentRefs: [{{name: gateway-tlsroute, sectionName: https}}]\n  rules:\n  -\n{}---\n",
        backend_ref("infra-backend-v1")
    );
    let s = suite(
        src,
        &format!(
            "{secret}{gateway}{}{}{}{}{}{https_route}",
            tls_service(INFRA, "tls-backend", tls_pod.addr),
            tls_service(APP, "tls-backend", tls_pod.addr),
            // abc.example.com meets the listener's *.example.com; other.org does not.
            tls_route(
                "gateway-conformance-infra-test",
                "tls",
                "[abc.example.com, other.org]",
                INFRA
            ),
            // No ReferenceGrant lets infra's routes reach the app namespace.
            tls_route(
                "invalid-reference-grant",
                "tls",
                "[ungranted.example.com]",
                APP
            ),
            // An HTTP listener takes no TLSRoute.
            &format!(
                "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {{name: on-http, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{{name: same-namespace}}]\n  hostnames: [http.example.com]\n\
             \x20 rules:\n  - backendRefs: [{{name: tls-backend, port: 443}}]\n---\n"
            ),
        ),
    );
    let config = tls_client::config(&[b"http/1.1"]);
    // The pod's certificate comes back and the pod answers: passed through.
    let (mut conn, info) = tls_client::connect(s.agent.https, "abc.example.com", &config).unwrap();
    assert_eq!(info.chain[0], pod_der, "the pod's own certificate");
    let r = conn.get("abc.example.com", "/inside").unwrap();
    assert_eq!(
        (r.status, r.header("x-pod")),
        (200, Some("tls-backend-1")),
        "{}",
        r.text()
    );
    // Nobody but the client wrote the request the pod got.
    assert_eq!(r.echo_field("x-forwarded-for"), None);
    // The HTTPS listener on the same port still terminates its own name.
    let (mut conn, info) =
        tls_client::connect(s.agent.https, "terminated.example.com", &config).unwrap();
    assert_eq!(info.chain[0], listener_der);
    let r = conn.get("terminated.example.com", "/").unwrap();
    assert_eq!(backend_of(&r), format!("{INFRA}/infra-backend-v1"));
    // other.org is outside the listener's hostname, ungranted.example.com
    // has no backend it may use: neither reaches the pod.
    for sni in ["other.org", "ungranted.example.com"] {
        let passed = tls_client::connect(s.agent.https, sni, &config)
            .map(|(_, info)| info.chain[0] == pod_der)
            .unwrap_or(false);
        assert!(!passed, "{sni} reached the pod");
    }

    let rep = s.report();
    let gw = format!("{INFRA}/gateway-tlsroute");
    let parent = route_parent(
        &rep,
        &format!("{INFRA}/gateway-conformance-infra-test"),
        "gateway-tlsroute",
    );
    assert_eq!(
        condition(&parent["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    let parent = route_parent(
        &rep,
        &format!("{INFRA}/invalid-reference-grant"),
        "gateway-tlsroute",
    );
    assert_eq!(
        condition(&parent["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs"),
        is("False", "RefNotPermitted")
    );
    let parent = route_parent(&rep, &format!("{INFRA}/on-http"), "same-namespace");
    assert_eq!(
        condition(&parent["conditions"], "Accepted"),
        is("False", "NotAllowedByListeners")
    );
    let l = listener(&rep, &gw, "tls");
    assert_eq!(l["attachedRoutes"], 2);
    assert_eq!(l["supportedKinds"][0]["kind"], "TLSRoute");
    for t in ["Accepted", "ResolvedRefs", "Programmed"] {
        assert_eq!(condition(&l["conditions"], t).0, "True", "{t}: {l:#}");
    }
    let l = listener(&rep, &gw, "tls-terminate");
    assert_eq!(
        condition(&l["conditions"], "Accepted"),
        is("False", "UnsupportedValue")
    );
}

/// A GET to `addr` (a Gateway port) with `host`.
fn get_at(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Response> {
    Conn::connect(addr)?
        .raw(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
}

/// GatewayWithAttachedRoutes' listener on 8080, and listeners on ports
/// other than 80 and 443 as they come and go: the agent opens the port
/// (HTTP or HTTPS) for the routes attached to that listener alone, closes
/// it when the listener goes, and reports a port it cannot bind
/// (`PortUnavailable`) or one two Gateways want with different protocols
/// (`ProtocolConflict`) while every other listener serves.
fn gateway_listeners_on_other_ports_open_and_close_with_them(src: Source) {
    let port = xingress_tests::agent::free_port();
    let tls_port = xingress_tests::agent::free_port();
    // A port somebody else holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let (secret, der) = certificate(INFRA, "ports-cert", &["secure.ports.test"]);
    let gateway = |listeners: &str| {
        format!(
            "{secret}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: ports, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n{listeners}---\n"
        )
    };
    let all_listeners = format!(
        "  - {{name: http, port: 80, protocol: HTTP}}\n\
         \x20 - {{name: extra, port: {port}, protocol: HTTP}}\n\
         \x20 - {{name: secure, port: {tls_port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: ports-cert}}]}}}}\n\
         \x20 - {{name: taken, port: {taken_port}, protocol: HTTP}}\n"
    );
    let routes = format!(
        "{}{}{}",
        route(
            "on-extra",
            INFRA,
            "ports",
            "  hostnames: [ports.test]\n",
            &format!("  -\n{}", backend_ref("infra-backend-v1"))
        )
        .replace(
            "[{name: ports, namespace",
            "[{name: ports, sectionName: extra, namespace"
        ),
        route(
            "on-main",
            INFRA,
            "ports",
            "  hostnames: [ports.test]\n",
            &format!("  -\n{}", backend_ref("infra-backend-v2"))
        )
        .replace(
            "[{name: ports, namespace",
            "[{name: ports, sectionName: http, namespace"
        ),
        route(
            "on-secure",
            INFRA,
            "ports",
            "  hostnames: [secure.ports.test]\n",
            &format!("  -\n{}", backend_ref("infra-backend-v3"))
        )
        .replace(
            "[{name: ports, namespace",
            "[{name: ports, sectionName: secure, namespace"
        ),
    );
    let s = suite(src, &routes);
    s.write("gateway.yaml", &gateway(&all_listeners));
    let extra = SocketAddr::from(([127, 0, 0, 1], port));
    s.agent.eventually("the Gateway port serves", || {
        get_at(extra, "ports.test", "/").is_ok_and(|r| r.status == 200)
    });
    // Each listener serves the routes attached to it, and only those.
    let r = get_at(extra, "ports.test", "/").unwrap();
    assert_eq!(backend_of(&r), format!("{INFRA}/infra-backend-v1"));
    expect(&s, "ports.test", "/", &[], INFRA, "infra-backend-v2");
    assert_eq!(get_at(extra, "secure.ports.test", "/").unwrap().status, 404);
    assert_eq!(get_at(extra, "unknown.test", "/").unwrap().status, 404);
    // The HTTPS port terminates with the listener's certificate.
    let config = tls_client::config(&[b"http/1.1"]);
    let (mut conn, info) = tls_client::connect(
        SocketAddr::from(([127, 0, 0, 1], tls_port)),
        "secure.ports.test",
        &config,
    )
    .unwrap();
    assert_eq!(info.chain[0], der);
    let r = conn.get("secure.ports.test", "/").unwrap();
    assert_eq!(backend_of(&r), format!("{INFRA}/infra-backend-v3"));
    // The port somebody holds: said in the log (the status in Kubernetes
    // mode), and nothing else suffers.
    s.agent.eventually("the unbindable port is reported", || {
        s.agent.logs().contains(&format!(
            "listener taken: cannot listen on 127.0.0.1:{taken_port}"
        ))
    });
    if let Some(k) = &s.kube {
        s.agent
            .eventually("PortUnavailable in the Gateway's status", || {
                let rep = k.report();
                rep["gateways"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g["name"] == format!("{INFRA}/ports"))
                    && condition(
                        &listener(&rep, &format!("{INFRA}/ports"), "taken")["conditions"],
                        "Accepted",
                    ) == is("False", "PortUnavailable")
            });
    }
    drop(taken);

    // The listener goes: its port closes; it comes back: open again.
    s.write(
        "gateway.yaml",
        &gateway("  - {name: http, port: 80, protocol: HTTP}\n"),
    );
    s.agent.eventually("the Gateway port closed", || {
        std::net::TcpStream::connect(extra).is_err()
    });
    expect(&s, "ports.test", "/", &[], INFRA, "infra-backend-v2");
    s.write("gateway.yaml", &gateway(&all_listeners));
    s.agent.eventually("the Gateway port open again", || {
        get_at(extra, "ports.test", "/").is_ok_and(|r| r.status == 200)
    });
    // Now free, the once-taken port opens too.
    let taken_addr = SocketAddr::from(([127, 0, 0, 1], taken_port));
    s.agent.eventually("the freed port serves", || {
        get_at(taken_addr, "ports.test", "/").is_ok_and(|r| r.status == 404)
    });

    // Two Gateways wanting one port with different protocols: the older
    // keeps it (as `xingress check` reports it).
    s.write(
        "conflict.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: zz-conflict, namespace: {INFRA}, creationTimestamp: \"2030-01-01T00:00:00Z\"}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n\
             \x20 - {{name: wants-https, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: ports-cert}}]}}}}\n---\n"
        ),
    );
    let rep = s.report();
    let l = listener(&rep, &format!("{INFRA}/zz-conflict"), "wants-https");
    assert_eq!(
        condition(&l["conditions"], "Accepted"),
        is("False", "ProtocolConflict")
    );
    assert_eq!(
        condition(&l["conditions"], "Conflicted"),
        is("True", "ProtocolConflict")
    );
    let l = listener(&rep, &format!("{INFRA}/ports"), "extra");
    assert_eq!(l["attachedRoutes"], 1);
    for t in ["Accepted", "Programmed"] {
        assert_eq!(condition(&l["conditions"], t).0, "True", "{t}: {l:#}");
    }
    s.agent
        .eventually("the older Gateway keeps its HTTP port", || {
            get_at(extra, "ports.test", "/").is_ok_and(|r| r.status == 200)
        });
}

/// GatewayModifyListeners and HTTPRouteObservedGenerationBump: a listener
/// added to a live Gateway serves and is reported with the routes attached
/// to it, one removed goes from status; a route's new backend is served;
/// in Kubernetes mode every condition follows the objects' new generations.
fn modified_listeners_and_routes_are_reported_at_their_generation(src: Source) {
    let (secret, _) = certificate(
        INFRA,
        "tls-validity-checks-certificate",
        &["secure.test.com"],
    );
    let gateway = |listeners: &str| {
        format!(
            "{secret}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gateway-add-listener, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n{listeners}---\n"
        )
    };
    let https = "  - {name: https, port: 443, protocol: HTTPS, hostname: secure.test.com, allowedRoutes: {namespaces: {from: All}}, tls: {certificateRefs: [{name: tls-validity-checks-certificate}]}}\n";
    let http = "  - {name: http, port: 80, protocol: HTTP, hostname: data.test.com, allowedRoutes: {namespaces: {from: All}}}\n";
    let http_route = |svc: &str| {
        route(
            "http-route-1",
            INFRA,
            "gateway-add-listener",
            "",
            &format!("  -\n{}", backend_ref(svc)),
        )
    };
    let s = suite(
        src,
        &format!("{}{}", gateway(https), http_route("infra-backend-v1")),
    );
    let gw = format!("{INFRA}/gateway-add-listener");
    let listeners = |rep: &Value| -> Vec<(String, i64)> {
        named(&rep["gateways"], &gw)["status"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                for t in ["Accepted", "ResolvedRefs", "Programmed"] {
                    assert_eq!(condition(&l["conditions"], t).0, "True", "{t}: {l:#}");
                }
                (
                    l["name"].as_str().unwrap().to_string(),
                    l["attachedRoutes"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(listeners(&s.report()), [("https".to_string(), 1)]);
    expect_status(&s, "data.test.com", "/", &[], 404);

    // Add the HTTP listener: the route (no sectionName) attaches to both.
    s.write(
        "test.yaml",
        &format!(
            "{}{}",
            gateway(&format!("{https}{http}")),
            http_route("infra-backend-v1")
        ),
    );
    assert_eq!(
        listeners(&s.report()),
        [("https".to_string(), 1), ("http".to_string(), 1)]
    );
    s.agent.eventually("the added listener serves", || {
        backend_of(&get(&s, "GET", "data.test.com", "/", &[]))
            == format!("{INFRA}/infra-backend-v1")
    });

    // Remove the HTTPS listener, and send the route elsewhere.
    s.write(
        "test.yaml",
        &format!("{}{}", gateway(http), http_route("infra-backend-v2")),
    );
    let rep = s.report();
    assert_eq!(listeners(&rep), [("http".to_string(), 1)]);
    let p = route_parent(
        &rep,
        &format!("{INFRA}/http-route-1"),
        "gateway-add-listener",
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    s.agent.eventually("the route's new backend", || {
        backend_of(&get(&s, "GET", "data.test.com", "/", &[]))
            == format!("{INFRA}/infra-backend-v2")
    });
    if let Some(k) = &s.kube {
        // The report above waited for every condition at these generations.
        let generation = |kind: &str, name: &str| {
            k.api.get(kind, INFRA, name).unwrap()["metadata"]["generation"].clone()
        };
        assert_eq!(generation("Gateway", "gateway-add-listener"), 3);
        assert_eq!(generation("HTTPRoute", "http-route-1"), 2);
        let g = named(&rep["gateways"], &gw);
        assert_eq!(
            g["status"]["conditions"][0]["observedGeneration"], 3,
            "{g:#}"
        );
    }
}

/// Where a redirect sends the client: (status, scheme, host, port, path),
/// the port empty when the Location has none.
fn redirect_of(r: &Response) -> (u16, String, String, String, String) {
    let loc = r
        .header("location")
        .unwrap_or_else(|| panic!("no Location: {}", r.text()));
    let (scheme, rest) = loc.split_once("://").unwrap_or_else(|| panic!("{loc}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (authority, ""),
    };
    (
        r.status,
        scheme.to_string(),
        host.to_string(),
        port.to_string(),
        path.to_string(),
    )
}

/// As the suite compares a redirect: host only when given, the port
/// "" meaning absent or the scheme's well-known one.
#[track_caller]
fn expect_redirect(r: &Response, status: u16, scheme: &str, host: &str, port: &str, path: &str) {
    let (st, sc, h, p, pa) = redirect_of(r);
    let well_known = match sc.as_str() {
        "http" => "80",
        _ => "443",
    };
    let port_ok = if port.is_empty() {
        p.is_empty() || p == well_known
    } else {
        p == port
    };
    assert!(
        st == status && sc == scheme && (host.is_empty() || h == host) && port_ok && pa == path,
        "want {status} {scheme}://{host}:{port}{path}, got {:?}",
        r.header("location")
    );
}

/// HTTPRouteRedirectPath, -Port, -Scheme, HTTPRoute303/307/308Redirect and
/// HTTPRouteRedirectPortAndScheme: a listener's own port is kept when
/// neither scheme nor port is set, the scheme's well-known one used when
/// the scheme changes; HTTPS listeners redirect as https.
fn redirects_keep_or_change_scheme_and_port_as_the_spec_says(src: Source) {
    let port_8080 = xingress_tests::agent::free_port();
    let (secret, _) = certificate(
        INFRA,
        "tls-validity-checks-certificate",
        &["*", "*.org", "*.wildcard.org"],
    );
    // Rules of (path prefix, requestRedirect settings).
    let redirects = |rules: &[(&str, &str)]| -> String {
        rules
            .iter()
            .map(|(prefix, filter)| {
                format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {filter}}}]\n"
                )
            })
            .collect()
    };
    let on_80 = redirects(&[
        (
            "/original-prefix",
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        (
            "/full",
            "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}",
        ),
        (
            "/path-and-host",
            "{hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        (
            "/path-and-status",
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}, statusCode: 301}",
        ),
        (
            "/full-path-and-host",
            "{hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}",
        ),
        (
            "/full-path-and-status",
            "{path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}, statusCode: 301}",
        ),
        ("/port", "{port: 8083}"),
        ("/port-and-host", "{hostname: example.org, port: 8083}"),
        ("/port-and-status", "{port: 8083, statusCode: 301}"),
        (
            "/port-and-host-and-status",
            "{port: 8083, hostname: example.org, statusCode: 302}",
        ),
        ("/scheme", "{scheme: https}"),
        ("/scheme-and-host", "{hostname: example.org, scheme: https}"),
        ("/scheme-and-status", "{scheme: https, statusCode: 301}"),
        (
            "/scheme-and-host-and-status",
            "{scheme: https, statusCode: 302, hostname: example.org}",
        ),
        ("/see-other", "{statusCode: 303}"),
        ("/temporary", "{statusCode: 307}"),
        ("/permanent", "{statusCode: 308}"),
        ("/scheme-nil-and-port-nil", "{hostname: example.org}"),
        (
            "/scheme-nil-and-port-80",
            "{hostname: example.org, port: 80}",
        ),
        (
            "/scheme-nil-and-port-8080",
            "{hostname: example.org, port: 8080}",
        ),
        (
            "/scheme-https-and-port-nil",
            "{hostname: example.org, scheme: https}",
        ),
        (
            "/scheme-https-and-port-443",
            "{hostname: example.org, scheme: https, port: 443}",
        ),
        (
            "/scheme-https-and-port-8443",
            "{hostname: example.org, scheme: https, port: 8443}",
        ),
    ]);
    let on_8080 = redirects(&[
        ("/scheme-nil-and-port-nil", "{hostname: example.org}"),
        (
            "/scheme-nil-and-port-80",
            "{hostname: example.org, port: 80}",
        ),
        (
            "/scheme-https-and-port-nil",
            "{hostname: example.org, scheme: https}",
        ),
    ]);
    let on_443 = redirects(&[
        ("/scheme-nil-and-port-nil", "{hostname: example.org}"),
        (
            "/scheme-nil-and-port-443",
            "{hostname: example.org, port: 443}",
        ),
        (
            "/scheme-nil-and-port-8443",
            "{hostname: example.org, port: 8443}",
        ),
        (
            "/scheme-http-and-port-nil",
            "{hostname: example.org, scheme: http}",
        ),
        (
            "/scheme-http-and-port-80",
            "{hostname: example.org, scheme: http, port: 80}",
        ),
        (
            "/scheme-http-and-port-8080",
            "{hostname: example.org, scheme: http, port: 8080}",
        ),
    ]);
    let s = suite(
        src,
        &format!(
            "{secret}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: same-namespace-with-http-listener-on-8080, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n  - {{name: http, port: {port_8080}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: same-namespace-with-https-listener, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n\
             \x20 - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}}}\n\
             \x20 - {{name: https-with-hostname, port: 443, protocol: HTTPS, hostname: second-example.org, tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}}}\n\
             \x20 - {{name: https-with-wildcard-hostname, port: 443, protocol: HTTPS, hostname: \"*.wildcard.org\", tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}}}\n\
             \x20 - {{name: https-with-hostname-matching-wildcard, port: 443, protocol: HTTPS, hostname: fourth-example.wildcard.org, tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}}}\n---\n\
             {}{}{}",
            route(
                "http-route-for-listener-on-port-80",
                INFRA,
                "same-namespace",
                "",
                &on_80
            ),
            route(
                "http-route-for-listener-on-port-8080",
                INFRA,
                "same-namespace-with-http-listener-on-8080",
                "",
                &on_8080
            ),
            route(
                "http-route-for-listener-on-port-443",
                INFRA,
                "same-namespace-with-https-listener",
                "",
                &on_443
            ),
        ),
    );
    let rep = s.report();
    for (r, gw) in [
        ("http-route-for-listener-on-port-80", "same-namespace"),
        (
            "http-route-for-listener-on-port-8080",
            "same-namespace-with-http-listener-on-8080",
        ),
        (
            "http-route-for-listener-on-port-443",
            "same-namespace-with-https-listener",
        ),
    ] {
        let p = route_parent(&rep, &format!("{INFRA}/{r}"), gw);
        assert_eq!(
            condition(&p["conditions"], "Accepted"),
            is("True", "Accepted")
        );
        assert_eq!(
            condition(&p["conditions"], "ResolvedRefs"),
            is("True", "ResolvedRefs")
        );
    }
    let at = |path: &str| get(&s, "GET", "redirect.test", path, &[]);
    // HTTPRouteRedirectPath: prefixes are replaced segment-wise.
    expect_redirect(
        &at("/original-prefix/lemon"),
        302,
        "http",
        "",
        "",
        "/replacement-prefix/lemon",
    );
    expect_redirect(
        &at("/full/path/original"),
        302,
        "http",
        "",
        "",
        "/full-path-replacement",
    );
    expect_redirect(
        &at("/path-and-host"),
        302,
        "http",
        "example.org",
        "",
        "/replacement-prefix",
    );
    expect_redirect(
        &at("/path-and-status"),
        301,
        "http",
        "",
        "",
        "/replacement-prefix",
    );
    expect_redirect(
        &at("/full-path-and-host"),
        302,
        "http",
        "example.org",
        "",
        "/replacement-full",
    );
    expect_redirect(
        &at("/full-path-and-status"),
        301,
        "http",
        "",
        "",
        "/replacement-full",
    );
    // HTTPRouteRedirectPort.
    expect_redirect(&at("/port"), 302, "http", "", "8083", "/port");
    expect_redirect(
        &at("/port-and-host"),
        302,
        "http",
        "example.org",
        "8083",
        "/port-and-host",
    );
    expect_redirect(
        &at("/port-and-status"),
        301,
        "http",
        "",
        "8083",
        "/port-and-status",
    );
    expect_redirect(
        &at("/port-and-host-and-status"),
        302,
        "http",
        "example.org",
        "8083",
        "/port-and-host-and-status",
    );
    // HTTPRouteRedirectScheme: to https, without the listener's port 80.
    expect_redirect(&at("/scheme"), 302, "https", "", "", "/scheme");
    expect_redirect(
        &at("/scheme-and-host"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-and-host",
    );
    expect_redirect(
        &at("/scheme-and-status"),
        301,
        "https",
        "",
        "",
        "/scheme-and-status",
    );
    expect_redirect(
        &at("/scheme-and-host-and-status"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-and-host-and-status",
    );
    // HTTPRoute303/307/308Redirect (303 to a POST).
    expect_redirect(
        &get(&s, "POST", "redirect.test", "/see-other", &[]),
        303,
        "http",
        "",
        "",
        "/see-other",
    );
    expect_redirect(&at("/temporary"), 307, "http", "", "", "/temporary");
    expect_redirect(&at("/permanent"), 308, "http", "", "", "/permanent");
    // HTTPRouteRedirectPortAndScheme, port 80.
    expect_redirect(
        &at("/scheme-nil-and-port-nil"),
        302,
        "http",
        "example.org",
        "",
        "/scheme-nil-and-port-nil",
    );
    expect_redirect(
        &at("/scheme-nil-and-port-80"),
        302,
        "http",
        "example.org",
        "",
        "/scheme-nil-and-port-80",
    );
    expect_redirect(
        &at("/scheme-nil-and-port-8080"),
        302,
        "http",
        "example.org",
        "8080",
        "/scheme-nil-and-port-8080",
    );
    expect_redirect(
        &at("/scheme-https-and-port-nil"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-https-and-port-nil",
    );
    expect_redirect(
        &at("/scheme-https-and-port-443"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-https-and-port-443",
    );
    expect_redirect(
        &at("/scheme-https-and-port-8443"),
        302,
        "https",
        "example.org",
        "8443",
        "/scheme-https-and-port-8443",
    );
    // ... on the listener of port 8080: its port is kept while the scheme is.
    let on_8080 = SocketAddr::from(([127, 0, 0, 1], port_8080));
    s.agent.eventually("the 8080 listener serves", || {
        get_at(on_8080, "redirect.test", "/scheme-nil-and-port-nil").is_ok_and(|r| r.status == 302)
    });
    let at_8080 = |path: &str| get_at(on_8080, "redirect.test", path).unwrap();
    expect_redirect(
        &at_8080("/scheme-nil-and-port-nil"),
        302,
        "http",
        "example.org",
        &port_8080.to_string(),
        "/scheme-nil-and-port-nil",
    );
    expect_redirect(
        &at_8080("/scheme-nil-and-port-80"),
        302,
        "http",
        "example.org",
        "",
        "/scheme-nil-and-port-80",
    );
    expect_redirect(
        &at_8080("/scheme-https-and-port-nil"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-https-and-port-nil",
    );
    // ... on the HTTPS listener: https unless the filter says http.
    let config = tls_client::config(&[b"http/1.1"]);
    let at_443 = |path: &str| {
        let (mut conn, _) = tls_client::connect(s.agent.https, "example.org", &config).unwrap();
        conn.raw(
            format!("GET {path} HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap()
    };
    expect_redirect(
        &at_443("/scheme-nil-and-port-nil"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-nil-and-port-nil",
    );
    expect_redirect(
        &at_443("/scheme-nil-and-port-443"),
        302,
        "https",
        "example.org",
        "",
        "/scheme-nil-and-port-443",
    );
    expect_redirect(
        &at_443("/scheme-nil-and-port-8443"),
        302,
        "https",
        "example.org",
        "8443",
        "/scheme-nil-and-port-8443",
    );
    expect_redirect(
        &at_443("/scheme-http-and-port-nil"),
        302,
        "http",
        "example.org",
        "",
        "/scheme-http-and-port-nil",
    );
    expect_redirect(
        &at_443("/scheme-http-and-port-80"),
        302,
        "http",
        "example.org",
        "",
        "/scheme-http-and-port-80",
    );
    expect_redirect(
        &at_443("/scheme-http-and-port-8080"),
        302,
        "http",
        "example.org",
        "8080",
        "/scheme-http-and-port-8080",
    );
}

/// GatewaySecretInvalidReferenceGrant, GatewaySecretReferenceGrantSpecific,
/// HTTPRouteInvalidReferenceGrant and
/// HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: a grant counts only
/// when its namespace, from (group, kind, namespace) and to (group, kind,
/// name) all fit; one rule's refused backend leaves the others serving.
fn reference_grants_count_only_when_every_field_fits(src: Source) {
    let (cert, _) = certificate(WEB, "certificate", &["*"]);
    let grant = |ns: &str, name: &str, from: &str, to: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  from: [{from}]\n  to: [{to}]\n---\n"
        )
    };
    let gw_from =
        format!("{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {INFRA}}}");
    let secret_to = "{group: \"\", kind: Secret, name: certificate}";
    let https_gateway = |name: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n\
             \x20 - {{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {{certificateRefs: [{{group: \"\", kind: Secret, name: certificate, namespace: {WEB}}}]}}}}\n---\n"
        )
    };
    // GatewaySecretInvalidReferenceGrant.
    let invalid = [
        grant(APP, "reference-grant-wrong-namespace", &gw_from, secret_to),
        grant(WEB, "reference-grant-wrong-from-group", &format!("{{group: not-the-group-youre-looking-for, kind: Gateway, namespace: {INFRA}}}"), secret_to),
        grant(WEB, "reference-grant-wrong-from-kind", &format!("{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}"), secret_to),
        grant(WEB, "reference-grant-wrong-from-namespace", "{group: gateway.networking.k8s.io, kind: Gateway, namespace: not-the-namespace-youre-looking-for}", secret_to),
        grant(WEB, "reference-grant-wrong-to-group", &gw_from, "{group: not-the-group-youre-looking-for, kind: Secret, name: not-the-certificate-youre-looking-for}"),
        grant(WEB, "reference-grant-wrong-to-kind", &gw_from, "{group: \"\", kind: Service, name: certificate}"),
        grant(WEB, "reference-grant-wrong-to-name", &gw_from, "{group: \"\", kind: Secret, name: not-the-certificate-youre-looking-for}"),
    ]
    .concat();
    let s = suite(
        src,
        &format!(
            "{cert}{}{invalid}",
            https_gateway("gateway-secret-invalid-reference-grant")
        ),
    );
    let rep = s.report();
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-secret-invalid-reference-grant"),
        "https",
    );
    assert_eq!(
        condition(&l["conditions"], "ResolvedRefs"),
        is("False", "RefNotPermitted")
    );
    assert_eq!(l["attachedRoutes"], 0);
    assert!(
        l["supportedKinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kind"] == "HTTPRoute"),
        "{l:#}"
    );

    // GatewaySecretReferenceGrantSpecific.
    s.write(
        "test.yaml",
        &format!(
            "{cert}{}{}",
            https_gateway("gateway-secret-reference-grant-specific"),
            grant(WEB, "reference-grant-specific", &gw_from, secret_to)
        ),
    );
    let rep = s.report();
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-secret-reference-grant-specific"),
        "https",
    );
    assert_eq!(
        condition(&l["conditions"], "Programmed"),
        is("True", "Programmed")
    );
    assert_eq!(condition(&l["conditions"], "ResolvedRefs").0, "True");
    assert_eq!(l["attachedRoutes"], 0);

    // HTTPRouteInvalidReferenceGrant: every grant is wrong in one field.
    let route_from =
        format!("{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}");
    let service_to = "{group: \"\", kind: Service, name: web-backend}";
    let invalid = [
        grant(INFRA, "reference-grant-wrong-namespace", &route_from, service_to),
        grant(WEB, "reference-grant-wrong-from-group", &format!("{{group: not-the-group-youre-looking-for, kind: HTTPRoute, namespace: {INFRA}}}"), service_to),
        grant(WEB, "reference-grant-wrong-from-kind", &format!("{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {INFRA}}}"), service_to),
        grant(WEB, "reference-grant-wrong-from-namespace", "{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: not-the-namespace-youre-looking-for}", service_to),
        grant(WEB, "reference-grant-wrong-to-group", &route_from, "{group: not-the-group-youre-looking-for, kind: Service, name: web-backend}"),
        grant(WEB, "reference-grant-wrong-to-kind", &route_from, "{group: \"\", kind: Secret, name: web-backend}"),
        grant(WEB, "reference-grant-wrong-to-name", &route_from, "{group: \"\", kind: Secret, name: not-the-service-youre-looking-for}"),
    ]
    .concat();
    s.write(
        "test.yaml",
        &format!(
            "{invalid}{}",
            route(
                "reference-grant",
                INFRA,
                "same-namespace",
                "",
                &format!(
                    "  - backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]\n"
                )
            )
        ),
    );
    let rep = s.report();
    let p = route_parent(&rep, &format!("{INFRA}/reference-grant"), "same-namespace");
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("False", "RefNotPermitted")
    );
    s.agent.eventually("the refused backend answers 500", || {
        get(&s, "GET", "any.test", "/", &[]).status == 500
    });

    // HTTPRoutePartiallyInvalidViaInvalidReferenceGrant.
    s.write(
        "test.yaml",
        &format!(
            "{}{}",
            grant(APP, "invalid-reference-grant", &route_from, "{group: \"\", kind: Service, name: app-backend-v1}"),
            route(
                "invalid-reference-grant",
                INFRA,
                "same-namespace",
                "",
                &format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]\n    backendRefs: [{{name: app-backend-v2, namespace: {APP}, port: 8080}}]\n\
                     \x20 - backendRefs: [{{name: app-backend-v1, namespace: {APP}, port: 8080}}]\n"
                )
            )
        ),
    );
    let rep = s.report();
    let p = route_parent(
        &rep,
        &format!("{INFRA}/invalid-reference-grant"),
        "same-namespace",
    );
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        is("False", "RefNotPermitted")
    );
    s.agent.eventually("the granted rule serves", || {
        backend_of(&get(&s, "GET", "any.test", "/", &[])) == format!("{APP}/app-backend-v1")
    });
    expect_status(&s, "any.test", "/v2", &[], 500);
}

/// HTTPRouteMatchingAcrossRoutes: precedence is decided over the rules of
/// every route of a host together (a header match beats a bare `/`).
fn matching_is_ordered_across_routes(src: Source) {
    let s = suite(
        src,
        &format!(
            "{}{}",
            route(
                "matching-part1",
                INFRA,
                "same-namespace",
                "  hostnames: [example.com, example.net]\n",
                "  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n"
            ),
            route(
                "matching-part2",
                INFRA,
                "same-namespace",
                "  hostnames: [example.com]\n",
                "  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n"
            ),
        ),
    );
    let rep = s.report();
    for r in ["matching-part1", "matching-part2"] {
        let p = route_parent(&rep, &format!("{INFRA}/{r}"), "same-namespace");
        assert_eq!(
            condition(&p["conditions"], "Accepted"),
            is("True", "Accepted")
        );
        assert_eq!(
            condition(&p["conditions"], "ResolvedRefs"),
            is("True", "ResolvedRefs")
        );
    }
    let v1 = "infra-backend-v1";
    let v2 = "infra-backend-v2";
    expect(&s, "example.com", "/", &[], INFRA, v1);
    expect(&s, "example.com", "/example", &[], INFRA, v1);
    expect(&s, "example.net", "/example", &[], INFRA, v1);
    expect(
        &s,
        "example.com",
        "/example",
        &[("Version", "one")],
        INFRA,
        v1,
    );
    expect(&s, "example.com", "/v2", &[], INFRA, v2);
    expect(&s, "example.net", "/v2", &[], INFRA, v1);
    expect(&s, "example.com", "/v2/example", &[], INFRA, v2);
    expect(&s, "example.com", "/", &[("Version", "two")], INFRA, v2);
    let r = get(&s, "GET", "example.com", "/v2/example", &[]);
    assert_eq!(r.echo_field("host").as_deref(), Some("example.com"));
    assert_eq!(r.echo_field("uri").as_deref(), Some("/v2/example"));
}

/// Whether the agent closes a TLS connection for `sni` during the
/// handshake (EOF or reset, as the suite's rejection check wants; a TLS
/// alert does not count).
fn rejected(addr: SocketAddr, sni: &str) -> bool {
    let config = tls_client::config(&[b"http/1.1"]);
    match tls_client::connect(addr, sni, &config) {
        Ok(_) => false,
        Err(e) => {
            let text = e.to_string();
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) && !text.contains("alert")
        }
    }
}

/// HTTPRouteDisallowedKind, TLSRouteInvalidNoMatchingListener,
/// TLSRouteInvalidNoMatchingListenerHostname,
/// TLSRouteListenerPassthroughSupportedKinds,
/// TLSRouteListenerTerminateNotSupported and TLSRouteInvalidBackendRef
/// {Nonexistent,UnknownKind}: routes that cannot attach, and listeners
/// that cannot take them, say why; a server name whose route has no
/// backend is closed during the handshake.
fn tls_listeners_and_routes_that_do_not_fit_say_why(src: Source) {
    let (secret, _) = certificate(INFRA, "tls-validity-checks-certificate", &["*", "*.org"]);
    let (terminate, _) = certificate(
        INFRA,
        "tls-terminate-checks-certificate",
        &["tls.example.com"],
    );
    let gateway = |name: &str, listener: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n  - {listener}\n---\n"
        )
    };
    let passthrough = |name: &str, extra: &str| {
        format!(
            "{{name: {name}, port: 443, protocol: TLS, {extra}allowedRoutes: {{namespaces: {{from: Same}}, kinds: [{{kind: TLSRoute}}]}}, tls: {{mode: Passthrough}}}}"
        )
    };
    let tls_route = |name: &str, parent: &str, hosts: &str, backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{parent}]\n  hostnames: {hosts}\n  rules:\n  - backendRefs: [{backend}]\n---\n"
        )
    };
    let tls_backend = "{name: tls-backend, port: 443}";
    let yaml = [
        secret,
        terminate,
        // HTTPRouteDisallowedKind.
        gateway("tlsroutes-only", &passthrough("tls", "")),
        route("disallowed-kind", INFRA, "tlsroutes-only", "", &format!("  -\n{}", backend_ref("infra-backend-v1"))),
        // TLSRouteInvalidNoMatchingListener.
        gateway("gateway-tlsroute-tls-passthrough-only", "{name: tls-passthrough, port: 443, protocol: TLS, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}"),
        gateway("gateway-tlsroute-http-only", "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}"),
        gateway("gateway-tlsroute-https-only", &format!("{{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: Same}}}}, tls: {{mode: Terminate, certificateRefs: [{{name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}}}")),
        tls_route("tlsroute-not-allowed-protocol-http", "{name: gateway-tlsroute-http-only}", "[tls.example.com]", tls_backend),
        tls_route("tlsroute-not-allowed-protocol-https", "{name: gateway-tlsroute-https-only}", "[tls.example.com]", tls_backend),
        tls_route("tlsroute-no-matching-section-name", "{name: gateway-tlsroute-tls-passthrough-only, sectionName: nonexistent-listener}", "[tls.example.com]", tls_backend),
        // TLSRouteInvalidNoMatchingListenerHostname.
        gateway("gateway-tls-exact-hostname", &passthrough("tls", "hostname: www.example.com, ")),
        gateway("gateway-tls-wildcard-hostname", &passthrough("tls", "hostname: \"*.example.com\", ")),
        tls_route("tlsroute-hostname-mismatch-1", "{name: gateway-tls-exact-hostname}", "[www.nomatch.com, \"*.nomatch.com\"]", tls_backend),
        tls_route("tlsroute-hostname-mismatch-2", "{name: gateway-tls-wildcard-hostname}", "[www.different.com, \"*.different.com\"]", tls_backend),
        // TLSRouteListenerPassthroughSupportedKinds.
        gateway("gateway-tlsroute-passthrough-supported-kind", "{name: tls-passthrough, port: 443, protocol: TLS, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TCPRoute}, {kind: TLSRoute}]}, tls: {mode: Passthrough}}"),
        // TLSRouteListenerTerminateNotSupported.
        gateway("gateway-tlsroute-terminate-unsupported", "{name: tls-terminate, port: 8443, protocol: TLS, hostname: terminate.example.com, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}, tls: {mode: Terminate, certificateRefs: [{name: tls-terminate-checks-certificate}]}}"),
        // TLSRouteInvalidBackendRef{Nonexistent,UnknownKind}.
        gateway("gateway-tlsroute-invalid-backend-ref", "{name: tls, port: 443, protocol: TLS, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}"),
        tls_route("invalid-backend-ref-nonexistent", &format!("{{name: gateway-tlsroute-invalid-backend-ref, namespace: {INFRA}}}"), "[nonexistent.example.com]", &format!("{{name: nonexistent, namespace: {INFRA}, port: 443}}")),
        tls_route("invalid-backend-ref-unknown-kind", &format!("{{name: gateway-tlsroute-invalid-backend-ref, namespace: {INFRA}}}"), "[unknown-kind.example.com]", "{group: unknownkind.example.com, kind: NonExistent, name: tls-backend, port: 443}"),
    ]
    .concat();
    let s = suite(src, &yaml);
    let rep = s.report();
    let parent_conds =
        |r: &str, gw: &str| route_parent(&rep, &format!("{INFRA}/{r}"), gw)["conditions"].clone();
    let only_parent = |r: &str| {
        let parents = named(&rep["routes"], &format!("{INFRA}/{r}"))["status"]["parents"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(parents.len(), 1, "{r}: {parents:#?}");
        assert_eq!(
            condition(&parents[0]["conditions"], "Accepted").0,
            "False",
            "{r}"
        );
    };
    let zero_routes = |gw: &str| {
        let g = named(&rep["gateways"], &format!("{INFRA}/{gw}"));
        let ls = g["status"]["listeners"].as_array().unwrap();
        assert!(ls.len() == 1 && ls[0]["attachedRoutes"] == 0, "{gw}: {g:#}");
    };
    // HTTPRouteDisallowedKind.
    let c = parent_conds("disallowed-kind", "tlsroutes-only");
    assert_eq!(condition(&c, "ResolvedRefs"), is("True", "ResolvedRefs"));
    assert_eq!(
        condition(&c, "Accepted"),
        is("False", "NotAllowedByListeners")
    );
    only_parent("disallowed-kind");
    zero_routes("tlsroutes-only");
    let g = named(&rep["gateways"], &format!("{INFRA}/tlsroutes-only"));
    for t in ["Accepted", "Programmed"] {
        assert_eq!(
            condition(&g["status"]["conditions"], t).0,
            "True",
            "{t}: {g:#}"
        );
    }
    // TLSRouteInvalidNoMatchingListener.
    for (r, gw, reason) in [
        (
            "tlsroute-not-allowed-protocol-http",
            "gateway-tlsroute-http-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-not-allowed-protocol-https",
            "gateway-tlsroute-https-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-no-matching-section-name",
            "gateway-tlsroute-tls-passthrough-only",
            "NoMatchingParent",
        ),
    ] {
        assert_eq!(
            condition(&parent_conds(r, gw), "Accepted"),
            is("False", reason),
            "{r}"
        );
        only_parent(r);
    }
    zero_routes("gateway-tlsroute-http-only");
    zero_routes("gateway-tlsroute-https-only");
    // TLSRouteInvalidNoMatchingListenerHostname.
    for (r, gw) in [
        ("tlsroute-hostname-mismatch-1", "gateway-tls-exact-hostname"),
        (
            "tlsroute-hostname-mismatch-2",
            "gateway-tls-wildcard-hostname",
        ),
    ] {
        assert_eq!(
            condition(&parent_conds(r, gw), "Accepted"),
            is("False", "NoMatchingListenerHostname"),
            "{r}"
        );
        only_parent(r);
        zero_routes(gw);
    }
    // TLSRouteListenerPassthroughSupportedKinds.
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-tlsroute-passthrough-supported-kind"),
        "tls-passthrough",
    );
    assert_eq!(
        condition(&l["conditions"], "ResolvedRefs"),
        is("False", "InvalidRouteKinds")
    );
    assert_eq!(l["attachedRoutes"], 0);
    assert!(
        l["supportedKinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kind"] == "TLSRoute"),
        "{l:#}"
    );
    // TLSRouteListenerTerminateNotSupported: no kinds supported at all.
    let l = listener(
        &rep,
        &format!("{INFRA}/gateway-tlsroute-terminate-unsupported"),
        "tls-terminate",
    );
    assert_eq!(
        condition(&l["conditions"], "Accepted"),
        is("False", "UnsupportedValue")
    );
    assert_eq!(l["attachedRoutes"], 0);
    assert!(
        l["supportedKinds"].as_array().is_none_or(|k| k.is_empty()),
        "{l:#}"
    );
    // TLSRouteInvalidBackendRef{Nonexistent,UnknownKind}.
    for (r, reason, sni) in [
        (
            "invalid-backend-ref-nonexistent",
            "BackendNotFound",
            "nonexistent.example.com",
        ),
        (
            "invalid-backend-ref-unknown-kind",
            "InvalidKind",
            "unknown-kind.example.com",
        ),
    ] {
        let c = parent_conds(r, "gateway-tlsroute-invalid-backend-ref");
        assert_eq!(condition(&c, "Accepted"), is("True", "Accepted"), "{r}");
        assert_eq!(condition(&c, "ResolvedRefs"), is("False", reason), "{r}");
        s.agent
            .eventually(&format!("{sni} closed in the handshake"), || {
                rejected(s.agent.https, sni)
            });
    }
}

/// GatewayClassObservedGenerationBump, GatewayNameMaximumLength and
/// GatewayObservedGenerationBump: a second class of ours, a Gateway with a
/// 253-character name, and a listener added to a live Gateway are reported
/// at their objects' new generations (which `Suite::report` checks in
/// Kubernetes mode).
fn classes_and_gateways_are_reported_at_their_generation(src: Source) {
    let class = |description: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: gatewayclass-observed-generation-bump}}\n\
             spec: {{controllerName: xingress.dev/gateway-controller, description: {description}}}\n---\n"
        )
    };
    let long_name = format!("gateway-name-maximum-length-{}", "a".repeat(225));
    assert_eq!(long_name.len(), 253);
    let gateways = |extra: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {long_name}, namespace: {INFRA}, annotations: {{gateway-api/skip-this-for-readiness: \"true\"}}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n  - {{name: http, port: 80, protocol: HTTP}}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gateway-observed-generation-bump, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n  - {{name: http, hostname: bar.com, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}\n{extra}---\n"
        )
    };
    let s = suite(src, &format!("{}{}", class("old"), gateways("")));
    let ready = |rep: &Value, gw: &str, listeners: usize| {
        let g = named(&rep["gateways"], &format!("{INFRA}/{gw}"));
        for t in ["Accepted", "Programmed"] {
            assert_eq!(
                condition(&g["status"]["conditions"], t).0,
                "True",
                "{t}: {g:#}"
            );
        }
        assert_eq!(
            g["status"]["listeners"].as_array().unwrap().len(),
            listeners
        );
    };
    let rep = s.report();
    let c = named(&rep["classes"], "gatewayclass-observed-generation-bump");
    assert_eq!(
        condition(&c["status"]["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    ready(&rep, &long_name, 1);
    ready(&rep, "gateway-observed-generation-bump", 1);
    s.write(
        "test.yaml",
        &format!(
            "{}{}",
            class("new"),
            gateways("  - {name: alternate, hostname: foo.com, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n")
        ),
    );
    let rep = s.report();
    ready(&rep, "gateway-observed-generation-bump", 2);
    let c = named(&rep["classes"], "gatewayclass-observed-generation-bump");
    assert_eq!(
        condition(&c["status"]["conditions"], "Accepted"),
        is("True", "Accepted")
    );
    if let Some(k) = &s.kube {
        let generation = |kind: &str, ns: &str, name: &str| {
            k.api.get(kind, ns, name).unwrap()["metadata"]["generation"].clone()
        };
        assert_eq!(
            generation("GatewayClass", "", "gatewayclass-observed-generation-bump"),
            2
        );
        assert_eq!(
            generation("Gateway", INFRA, "gateway-observed-generation-bump"),
            2
        );
        assert_eq!(
            c["status"]["conditions"][0]["observedGeneration"], 2,
            "{c:#}"
        );
    }
}

/// A TLS echo pod named `name` whose certificate (DER, returned too) is
/// for `names`.
fn tls_pod(name: &str, names: &[&str]) -> (Backend, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let pod = backend::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        name,
        Mode::Echo,
        Some(backend::tls_config(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )),
    )
    .unwrap();
    (pod, cert.der().to_vec())
}

/// TLSRouteHostnameIntersection: a connection goes to the route whose
/// hostnames, intersected with its listener's, name the server most
/// specifically (a Gateway wildcard covering any number of labels); a name
/// the listener's hostname covers but no route's is closed in the
/// handshake. Two deviations, both from Gateways sharing the node's port
/// 443 with each other and with Ingresses: the suite's four Gateways are
/// applied one at a time here (at once they would be one listener, see
/// HTTPRouteMultipleGateways), and a name outside every listener's hostname
/// (x-1 and x-2's non.matching.com) gets the agent's default certificate,
/// as ingress-nginx serves names nobody claims, where the suite expects the
/// connection closed.
fn tls_route_hostnames_intersect_with_listener_hostnames(src: Source) {
    let (one, pod_der) = tls_pod("tls-backend-1", &["abc.example.com", "other.example.com"]);
    let (two, _) = tls_pod("tls-backend-2-1", &["abc.example.com", "other.example.com"]);
    let services = format!(
        "{}{}",
        tls_service(INFRA, "tls-backend", one.addr),
        tls_service(INFRA, "tls-backend-2", two.addr)
    );
    let case = |gw: &str, listener: &str, hostname: &str, routes: &[(&str, &str, &str)]| {
        let mut y = format!(
            "{services}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: xingress\n  listeners:\n\
             \x20 - {{name: {listener}, port: 443, protocol: TLS, {hostname}allowedRoutes: {{namespaces: {{from: Same}}, kinds: [{{kind: TLSRoute}}]}}, tls: {{mode: Passthrough}}}}\n---\n"
        );
        for (name, host, backend) in routes {
            y.push_str(&format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
                 spec:\n  parentRefs: [{{name: {gw}, namespace: {INFRA}}}]\n  hostnames: [\"{host}\"]\n\
                 \x20 rules:\n  - backendRefs: [{{name: {backend}, port: 443}}]\n---\n"
            ));
        }
        y
    };
    let cases = [
        (
            case(
                "gw-tlsroute-exact-hostname-x-1",
                "listener-exact-hostname",
                "hostname: abc.example.com, ",
                &[(
                    "tlsroute-more-specific-wc-hostname-x-1",
                    "*.example.com",
                    "tls-backend",
                )],
            ),
            "gw-tlsroute-exact-hostname-x-1",
            false,
            "non.matching.com",
        ),
        (
            case(
                "gw-tlsroute-more-specific-wc-hostname-x-2",
                "listener-more-specific-wc-hostname",
                "hostname: \"*.example.com\", ",
                &[
                    (
                        "tlsroute-exact-hostname-x-2",
                        "abc.example.com",
                        "tls-backend",
                    ),
                    (
                        "tlsroute-less-specific-wc-hostname-x-2",
                        "*.com",
                        "tls-backend-2",
                    ),
                ],
            ),
            "gw-tlsroute-more-specific-wc-hostname-x-2",
            true,
            "non.matching.com",
        ),
        (
            case(
                "gw-tlsroute-less-specific-wc-hostname-x-3",
                "listener-less-specific-wc-hostname",
                "hostname: \"*.com\", ",
                &[
                    (
                        "tlsroute-exact-hostname-x-3",
                        "abc.example.com",
                        "tls-backend",
                    ),
                    (
                        "tlsroute-more-specific-wc-hostname-x-3",
                        "*.example.com",
                        "tls-backend-2",
                    ),
                ],
            ),
            "gw-tlsroute-less-specific-wc-hostname-x-3",
            true,
            "non.matching.com",
        ),
        (
            case(
                "gw-tlsroute-empty-hostname-x-4",
                "listener-empty-hostname",
                "",
                &[
                    (
                        "tlsroute-exact-hostname-x-4",
                        "abc.example.com",
                        "tls-backend",
                    ),
                    (
                        "tlsroute-less-specific-wc-hostname-x-4",
                        "*.com",
                        "tls-backend-2",
                    ),
                ],
            ),
            "gw-tlsroute-empty-hostname-x-4",
            true,
            "non.matching.org",
        ),
    ];
    let s = suite(src, &cases[0].0);
    let config = tls_client::config(&[b"http/1.1"]);
    let pod = |sni: &str| -> Option<String> {
        let (mut conn, _) = tls_client::connect(s.agent.https, sni, &config).ok()?;
        let r = conn.get(sni, "/").ok()?;
        r.header("x-pod").map(str::to_string)
    };
    for (yaml, gw, other, unmatched) in &cases {
        s.write("test.yaml", yaml);
        let rep = s.report();
        for r in rep["routes"].as_array().unwrap() {
            let Some(p) = r["status"]["parents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["parentRef"]["name"] == *gw)
            else {
                continue;
            };
            assert_eq!(
                condition(&p["conditions"], "Accepted"),
                is("True", "Accepted"),
                "{r:#}"
            );
            assert_eq!(
                condition(&p["conditions"], "ResolvedRefs"),
                is("True", "ResolvedRefs"),
                "{r:#}"
            );
        }
        // abc.example.com: the exact route where there is one (x-1: the
        // wildcard route, narrowed to the listener's name).
        s.agent
            .eventually(&format!("{gw}: abc.example.com to tls-backend"), || {
                pod("abc.example.com").as_deref() == Some("tls-backend-1")
            });
        if *other {
            assert_eq!(
                pod("other.example.com").as_deref(),
                Some("tls-backend-2-1"),
                "{gw}"
            );
        }
        if gw.contains("x-1") || gw.contains("x-2") {
            // Outside the listener's hostname: the default certificate, no pod.
            let (mut conn, info) = tls_client::connect(s.agent.https, unmatched, &config).unwrap();
            assert_ne!(info.chain[0], pod_der, "{gw}");
            assert_eq!(conn.get(unmatched, "/").unwrap().status, 404, "{gw}");
        } else {
            assert!(
                rejected(s.agent.https, unmatched),
                "{gw}: {unmatched} not closed"
            );
        }
    }
}

/// A gRPC Echo call over h2c to `addr` with this `:authority`: the HTTP
/// status and the answering pod (`NAMESPACE/NAME`).
fn grpc_echo(rt: &tokio::runtime::Runtime, addr: SocketAddr, authority: &str) -> (u16, String) {
    const SVC: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
    rt.block_on(async {
        use http_body_util::Full;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("http://{authority}/{SVC}/Echo"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let pod = resp
            .headers()
            .get("x-pod")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_end_matches("-1")
            .to_string();
        // The pod is known from the head; its streamed body is not waited for.
        drop(resp);
        (status, pod)
    })
}

/// GRPCRouteListenerHostnameMatching and GRPCRouteWeight: GRPCRoutes
/// attached to listeners by section name take the listener's hostname
/// (wildcards match several labels, exact beats wildcard); weights split
/// calls, weight 0 takes none.
fn grpc_routes_take_listener_hostnames_and_weights(src: Source) {
    let names = [
        "grpc-infra-backend-v1",
        "grpc-infra-backend-v2",
        "grpc-infra-backend-v3",
    ];
    let pods: Vec<Backend> = names
        .iter()
        .map(|n| {
            backend::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &format!("{INFRA}/{n}-1"),
                Mode::GrpcStream,
            )
            .unwrap()
        })
        .collect();
    let mut services = String::new();
    for (name, pod) in names.iter().zip(&pods) {
        services.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  ports: [{{name: grpc, port: 8080, appProtocol: kubernetes.io/h2c}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: grpc, port: {}}}]\n\
             endpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n---\n",
            pod.addr.port()
        ));
    }
    let gw = "grpcroute-listener-hostname-matching";
    let grpc_route = |name: &str, sections: &[&str], backends: &str| {
        let parents: Vec<String> = sections
            .iter()
            .map(|s| format!("{{name: {gw}, namespace: {INFRA}, sectionName: {s}}}"))
            .collect();
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{}]\n  rules:\n  - backendRefs: [{backends}]\n---\n",
            parents.join(", ")
        )
    };
    let hostnames = format!(
        "{services}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: {INFRA}}}\n\
         spec:\n  gatewayClassName: xingress\n  listeners:\n\
         \x20 - {{name: listener-1, port: 80, protocol: HTTP, hostname: bar.com, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n\
         \x20 - {{name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n\
         \x20 - {{name: listener-3, port: 80, protocol: HTTP, hostname: \"*.bar.com\", allowedRoutes: {{namespaces: {{from: Same}}}}}}\n\
         \x20 - {{name: listener-4, port: 80, protocol: HTTP, hostname: \"*.foo.com\", allowedRoutes: {{namespaces: {{from: Same}}}}}}\n---\n\
         {}{}{}",
        grpc_route(
            "backend-v1",
            &["listener-1"],
            "{name: grpc-infra-backend-v1, port: 8080}"
        ),
        grpc_route(
            "backend-v2",
            &["listener-2"],
            "{name: grpc-infra-backend-v2, port: 8080}"
        ),
        grpc_route(
            "backend-v3",
            &["listener-3", "listener-4"],
            "{name: grpc-infra-backend-v3, port: 8080}"
        ),
    );
    let s = suite(src, &hostnames);
    let rep = s.report();
    for r in ["backend-v1", "backend-v2", "backend-v3"] {
        let p = route_parent(&rep, &format!("{INFRA}/{r}"), gw);
        assert_eq!(
            condition(&p["conditions"], "Accepted"),
            is("True", "Accepted"),
            "{r}"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = |n: u8| (200, format!("{INFRA}/grpc-infra-backend-v{n}"));
    for (authority, want) in [
        ("bar.com", v(1)),
        ("foo.bar.com", v(2)),
        ("baz.bar.com", v(3)),
        ("boo.bar.com", v(3)),
        ("multiple.prefixes.bar.com", v(3)),
        ("multiple.prefixes.foo.com", v(3)),
    ] {
        assert_eq!(grpc_echo(&rt, s.agent.http, authority), want, "{authority}");
    }
    // No route: 404, which gRPC clients read as UNIMPLEMENTED.
    for authority in ["foo.com", "no.matching.host"] {
        assert_eq!(
            grpc_echo(&rt, s.agent.http, authority).0,
            404,
            "{authority}"
        );
    }

    // GRPCRouteWeight: 70/30/0 over 500 calls, within the suite's ±5 %.
    s.write(
        "test.yaml",
        &format!(
            "{services}apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: weighted-backends, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{{name: same-namespace}}]\n  rules:\n  - backendRefs:\n\
             \x20   - {{name: grpc-infra-backend-v1, port: 8080, weight: 70}}\n\
             \x20   - {{name: grpc-infra-backend-v2, port: 8080, weight: 30}}\n\
             \x20   - {{name: grpc-infra-backend-v3, port: 8080, weight: 0}}\n---\n"
        ),
    );
    s.agent.eventually("the weighted route serves", || {
        grpc_echo(&rt, s.agent.http, "weights.test").0 == 200
    });
    let mut seen = std::collections::HashMap::<String, u32>::new();
    for _ in 0..500 {
        let (status, pod) = grpc_echo(&rt, s.agent.http, "weights.test");
        assert_eq!(status, 200);
        *seen.entry(pod).or_default() += 1;
    }
    let share = |n: u8| f64::from(*seen.get(&v(n).1).unwrap_or(&0)) / 500.0;
    assert!(
        (share(1) - 0.7).abs() <= 0.05 && (share(2) - 0.3).abs() <= 0.05,
        "{seen:?}"
    );
    assert_eq!(share(3), 0.0, "{seen:?}");
}

/// Each test in file mode and in Kubernetes mode.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn files() {
                super::$name(super::Source::Files)
            }
            #[test]
            fn kube() {
                super::$name(super::Source::Kube)
            }
        }
    )*};
}

in_both_modes!(
    simple_same_namespace_route_is_accepted_and_served,
    exact_paths_and_path_match_order,
    header_matching_and_combined_matches,
    hostname_intersection_with_listener_hostnames,
    listener_hostname_matching_by_section_name,
    cross_namespace_routes_and_reference_grants,
    invalid_backend_refs_answer_500_and_say_why,
    weighted_backends_split_requests_by_weight,
    redirects_rewrites_and_header_modifiers,
    query_parameter_and_method_matching,
    https_listeners_terminate_with_their_certificates,
    invalid_listeners_are_reported_and_the_rest_serves,
    ingress_and_gateway_routes_share_a_host,
    grpc_routes_match_service_method_and_headers,
    request_mirrors_copy_requests_to_their_backends,
    route_timeouts_answer_504_when_the_pod_is_slower,
    tls_routes_pass_tls_through_by_server_name,
    gateway_listeners_on_other_ports_open_and_close_with_them,
    modified_listeners_and_routes_are_reported_at_their_generation,
    redirects_keep_or_change_scheme_and_port_as_the_spec_says,
    reference_grants_count_only_when_every_field_fits,
    matching_is_ordered_across_routes,
    tls_listeners_and_routes_that_do_not_fit_say_why,
    classes_and_gateways_are_reported_at_their_generation,
    tls_route_hostnames_intersect_with_listener_hostnames,
    grpc_routes_take_listener_hostnames_and_weights,
);

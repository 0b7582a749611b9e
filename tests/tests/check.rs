//! `xingress check DIR`: the route table and warnings, text and JSON, and
//! the exit code.

use std::process::{Command, Output};

use xingress_tests::agent::{ManifestDir, xingress_bin};

fn check(dir: &std::path::Path, json: bool) -> Output {
    let mut cmd = Command::new(xingress_bin());
    cmd.arg("check").arg(dir);
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.output().expect("run xingress check")
}

#[test]
fn cafe_example_checks_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cafe");
    let out = check(&dir, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("cafe.example.com      /coffee"), "{text}");
    assert!(text.contains("default/tea-svc:80"), "{text}");
    assert!(text.contains("TLS: cafe.example.com"), "{text}");
    assert!(
        text.contains("note: Ingress default/cafe-ingress: extensions/v1beta1 is deprecated"),
        "{text}"
    );

    let out = check(&dir, true);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["ingresses"],
        serde_json::json!(["default/cafe-ingress"])
    );
    let routes = report["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 4);
    let from = |host: &str| {
        routes
            .iter()
            .filter(|r| r["host"] == host)
            .map(|r| {
                (
                    r["ingress"].as_str().unwrap(),
                    r["ready_endpoints"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(from("cafe.example.com"), [("default/cafe-ingress", 2); 2]);
    // The same cafe through a Gateway and an HTTPRoute (cafe-gateway.yaml).
    assert_eq!(from("cafe.gateway.example"), [("default/cafe-route", 2); 2]);
    let gateway = &report["gateway_api"];
    assert!(gateway.to_string().contains("cafe-route"), "{gateway}");
    assert!(
        text.contains(
            "HTTPRoute default/cafe-route on Gateway default/cafe-gateway: Accepted=True"
        ),
        "{text}"
    );
}

#[test]
fn errors_make_check_fail_and_name_the_object() {
    let dir = ManifestDir::new();
    dir.write(
        "class.yaml",
        include_str!("../examples/cafe/ingressclass.yaml"),
    );
    dir.write("bad.yaml", "kind: [oops\n");
    dir.write("tls.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: t}\nspec:\n  tls: [{secretName: nope, hosts: [t.test]}]\n");
    dir.write("ing.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec:\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: missing, port: {number: 80}}}}\n      - {path: relative, pathType: Prefix, backend: {service: {name: missing, port: {number: 80}}}}\n");
    let out = check(&dir.path, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.yaml: not valid YAML"), "{text}");
    assert!(
        text.contains("error: Ingress default/i: path \"relative\" must start with '/'"),
        "{text}"
    );
    assert!(text.contains("Service default/missing not found"), "{text}");
    assert!(text.contains("TLS Secret default/nope not found"), "{text}");
    // The valid rule is still in the table, with 0 ready endpoints.
    assert!(text.contains("a.test  /"), "{text}");
}

//! `xingress migrate DIR` (issue 20, part 5): the report on a directory of
//! real-world-shaped ingress-nginx Ingresses and its controller ConfigMap
//! (`tests/examples/migration`).

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use xingress_tests::agent::xingress_bin;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/migration")
}

fn report() -> Value {
    let out = Command::new(xingress_bin())
        .args(["migrate"])
        .arg(example())
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (verdict, detail) of `name` in a list of verdicts.
fn verdict(list: &Value, name: &str) -> (String, String) {
    let v = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:#}"));
    (
        v["verdict"].as_str().unwrap().to_string(),
        v["detail"].as_str().unwrap_or("").to_string(),
    )
}

fn ingress<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ingress"] == id)
        .unwrap_or_else(|| panic!("{id} not in the report"))
}

#[test]
fn every_annotation_and_key_gets_a_verdict_with_its_reason() {
    let r = report();
    // Class `nginx` Ingresses are read as if they were xingress's.
    assert_eq!(r["ingresses"].as_array().unwrap().len(), 5, "{r:#}");
    let api = &ingress(&r, "shop/shop-api")["annotations"];
    assert_eq!(verdict(api, "rewrite-target").0, "honoured");
    // A difference in meaning is spelled out.
    let (v, detail) = verdict(api, "use-regex");
    assert_eq!(v, "honoured");
    assert!(detail.contains("that Ingress's paths only"), "{detail}");
    // A snippet of the closed set is carried out; one with a `location`
    // block refuses its Ingress, naming it.
    let (v, detail) = verdict(api, "configuration-snippet");
    assert_eq!(v, "honoured");
    assert!(detail.contains("closed set"), "{detail}");
    assert_eq!(
        ingress(&r, "shop/shop-api")["refused"],
        serde_json::json!([])
    );
    let refused = ingress(&r, "shop/web")["refused"].as_array().unwrap();
    assert!(
        refused.iter().any(|m| {
            let m = m.as_str().unwrap();
            m.contains("server-snippet refused, line 1: location") && m.contains("503")
        }),
        "{refused:?}"
    );
    // A typo is caught.
    let (v, detail) = verdict(api, "proxy-body-sise");
    assert_eq!(v, "unknown");
    assert!(detail.contains("typo"), "{detail}");
    let admin = &ingress(&r, "shop/admin")["annotations"];
    assert_eq!(verdict(admin, "auth-url").0, "honoured");
    assert_eq!(verdict(admin, "enable-modsecurity").0, "ignored");
    assert!(verdict(admin, "auth-keepalive").1.contains("refuse more"));
    let web = &ingress(&r, "shop/web")["annotations"];
    assert_eq!(verdict(web, "upstream-hash-by").0, "honoured");
    assert_eq!(verdict(web, "from-to-www-redirect").0, "honoured");
    let (v, detail) = verdict(web, "proxy-buffering");
    assert_eq!(v, "honoured");
    assert!(detail.contains("proxy-max-temp-file-size"), "{detail}");
    // What xingress refuses: basic auth cannot apply to passed-through TLS.
    let refused = ingress(&r, "infra/vault")["refused"].as_array().unwrap();
    assert!(
        refused.iter().any(|m| m
            .as_str()
            .unwrap()
            .contains("ssl-passthrough passes TLS through undecrypted")),
        "{refused:?}"
    );
    // The ConfigMap, found by its Helm name.
    let cm = &r["configmap"];
    assert_eq!(verdict(cm, "use-forwarded-headers").0, "honoured");
    assert_eq!(verdict(cm, "log-format-upstream").0, "honoured");
    let (v, detail) = verdict(cm, "proxy-connect-timeout");
    assert_eq!(v, "honoured");
    assert!(detail.contains("refused"), "{detail}");
    assert!(verdict(cm, "use-gzip").1.contains("compress"));
    assert_eq!(verdict(cm, "ssl-protocols").0, "honoured");
    assert_eq!(verdict(cm, "enable-opentelemetry").0, "honoured");
    assert_eq!(verdict(cm, "proxy-buffer-szie").0, "unknown");
    assert_eq!(r["summary"]["unknown"], 2, "{:#}", r["summary"]);
}

#[test]
fn the_text_report_names_each_verdict() {
    let out = Command::new(xingress_bin())
        .args(["migrate"])
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "Ingress shop/shop-api",
        "  honoured  rewrite-target",
        "  unknown   proxy-body-sise: not an annotation of ingress-nginx (a typo?)",
        "ConfigMap",
        "summary: ",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }
}

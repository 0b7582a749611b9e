//! Converts the old Ingress forms (extensions/v1beta1, networking.k8s.io/v1beta1)
//! to networking.k8s.io/v1, so older manifests (and the seeds) run as written.

use serde_json::{Map, Value, json};

pub const LEGACY_INGRESS_VERSIONS: [&str; 2] = ["extensions/v1beta1", "networking.k8s.io/v1beta1"];

/// Rewrites a v1beta1 Ingress document in place into the v1 shape.
pub fn convert_ingress(doc: &mut Value) {
    doc["apiVersion"] = json!("networking.k8s.io/v1");
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(backend) = spec.remove("backend") {
        spec.insert("defaultBackend".into(), convert_backend(backend));
    }
    let rules = spec.get_mut("rules").and_then(Value::as_array_mut);
    for rule in rules.into_iter().flatten() {
        let paths = rule
            .get_mut("http")
            .and_then(|h| h.get_mut("paths"))
            .and_then(Value::as_array_mut);
        for path in paths.into_iter().flatten() {
            let Some(path) = path.as_object_mut() else {
                continue;
            };
            if !path.contains_key("pathType") {
                path.insert("pathType".into(), json!("ImplementationSpecific"));
            }
            if let Some(b) = path.remove("backend") {
                path.insert("backend".into(), convert_backend(b));
            }
        }
    }
}

/// `{serviceName, servicePort}` → `{service: {name, port: {number | name}}}`.
fn convert_backend(backend: Value) -> Value {
    let Value::Object(mut b) = backend else {
        return backend;
    };
    let name = b.remove("serviceName");
    let port = b.remove("servicePort");
    if name.is_none() && port.is_none() {
        return Value::Object(b);
    }
    let port = match port {
        Some(Value::Number(n)) => json!({ "number": n }),
        Some(Value::String(s)) => match s.parse::<i32>() {
            Ok(n) => json!({ "number": n }),
            Err(_) => json!({ "name": s }),
        },
        _ => Value::Object(Map::new()),
    };
    let mut out = b;
    out.insert(
        "service".into(),
        json!({ "name": name.unwrap_or(Value::Null), "port": port }),
    );
    Value::Object(out)
}

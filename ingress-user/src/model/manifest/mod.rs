//! Manifest text → typed objects. One bad document is a warning; the other
//! documents of the same file still load.

use std::sync::Arc;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use super::{NamespacedName, Objects, Warning};

mod legacy;

use legacy::{LEGACY_INGRESS_VERSIONS, convert_ingress};

/// What one text yielded besides the objects it added.
#[derive(Debug, Default)]
pub struct ParseOutcome {
    pub warnings: Vec<Warning>,
    /// Documents of kinds xingress does not use (Deployments, ...).
    pub ignored: usize,
    pub objects: usize,
}

/// Parses every YAML (or JSON) document of `text` into `objects`.
/// `origin` names the file in warnings.
pub fn parse_documents(text: &str, origin: &str, objects: &mut Objects) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    let docs = match split_documents(text) {
        Ok(docs) => docs,
        Err(first_err) => match tabs_expanded(text).map(|t| split_documents(&t)) {
            // Notes copied from editors often indent YAML with tabs, which
            // YAML forbids; accept them as 2-column tab stops, and say so.
            Some(Ok(docs)) => {
                out.warnings.push(Warning::note(origin.to_string(), "YAML is indented with tabs (not allowed by YAML); read with tabs as 2-column stops"));
                docs
            }
            _ => {
                out.warnings.push(Warning::error(
                    origin.to_string(),
                    format!("not valid YAML or JSON, file skipped: {first_err}"),
                ));
                return out;
            }
        },
    };
    for (i, doc) in docs.into_iter().enumerate() {
        let place = format!("{origin} (document {})", i + 1);
        add_document(doc, &place, objects, &mut out);
    }
    out
}

fn split_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(de)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Expands tabs in each line's indentation (whitespace and `- ` markers)
/// to 2-column tab stops; `None` when the text has no such tabs.
fn tabs_expanded(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let indent_len = line
            .find(|c: char| !matches!(c, ' ' | '\t' | '-'))
            .unwrap_or(line.len());
        let (indent, rest) = line.split_at(indent_len);
        let mut col = 0;
        for c in indent.chars() {
            if c == '\t' {
                changed = true;
                let next = (col / 2 + 1) * 2;
                out.extend(std::iter::repeat_n(' ', next - col));
                col = next;
            } else {
                out.push(c);
                col += 1;
            }
        }
        out.push_str(rest);
    }
    changed.then_some(out)
}

fn add_document(mut doc: Value, place: &str, objects: &mut Objects, out: &mut ParseOutcome) {
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind.is_empty() || api_version.is_empty() {
        out.warnings.push(Warning::error(
            place.to_string(),
            "document has no apiVersion or kind; skipped",
        ));
        return;
    }
    if kind == "List" || kind.ends_with("List") && doc.get("items").is_some() {
        let items = doc
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .map(std::mem::take);
        for (i, item) in items.unwrap_or_default().into_iter().enumerate() {
            add_document(item, &format!("{place} item {}", i + 1), objects, out);
        }
        return;
    }
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let label = format!("{kind} {name} in {place}");
    if name.is_empty() {
        out.warnings.push(Warning::error(
            place.to_string(),
            format!("{kind} has no metadata.name; skipped"),
        ));
        return;
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    // Namespaced kinds default to "default", as kubectl does.
    let cluster_scoped = matches!(kind.as_str(), "IngressClass" | "GatewayClass" | "Namespace");
    if !cluster_scoped && doc.pointer("/metadata/namespace").is_none() {
        doc["metadata"]["namespace"] = Value::from("default");
    }
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let id = NamespacedName::new(namespace, name.clone());
    // Ok(true) when an object of the same kind and name was already read.
    let result: Result<bool, serde_json::Error> = match (group, kind.as_str()) {
        ("networking.k8s.io" | "extensions", "Ingress") => {
            if LEGACY_INGRESS_VERSIONS.contains(&api_version.as_str()) {
                out.warnings.push(Warning::note(
                    format!("Ingress {id}"),
                    format!("{api_version} is deprecated (removed in Kubernetes 1.22); converted to networking.k8s.io/v1"),
                ));
                convert_ingress(&mut doc);
            }
            typed(doc).map(|v| objects.ingresses.insert(id.clone(), Arc::new(v)).is_some())
        }
        ("networking.k8s.io", "IngressClass") => {
            doc["apiVersion"] = Value::from("networking.k8s.io/v1");
            typed(doc).map(|v| {
                objects
                    .ingress_classes
                    .insert(name.clone(), Arc::new(v))
                    .is_some()
            })
        }
        ("", "Service") => {
            typed(doc).map(|v| objects.services.insert(id.clone(), Arc::new(v)).is_some())
        }
        ("", "Endpoints") => {
            typed(doc).map(|v| objects.endpoints.insert(id.clone(), Arc::new(v)).is_some())
        }
        ("", "Secret") => {
            typed(doc).map(|v| objects.secrets.insert(id.clone(), Arc::new(v)).is_some())
        }
        ("", "ConfigMap") => typed(doc).map(|v| {
            objects
                .config_maps
                .insert(id.clone(), Arc::new(v))
                .is_some()
        }),
        ("discovery.k8s.io", "EndpointSlice") => {
            doc["apiVersion"] = Value::from("discovery.k8s.io/v1");
            typed(doc).map(|v| {
                objects
                    .endpoint_slices
                    .insert(id.clone(), Arc::new(v))
                    .is_some()
            })
        }
        ("", "Namespace") => typed(doc).map(|v| {
            objects
                .namespaces
                .insert(name.clone(), Arc::new(v))
                .is_some()
        }),
        (GATEWAY_GROUP, "GatewayClass") if GATEWAY_VERSIONS.contains(&api_version.as_str()) => {
            typed(doc).map(|v| {
                objects
                    .gateway_classes
                    .insert(name.clone(), Arc::new(v))
                    .is_some()
            })
        }
        (GATEWAY_GROUP, "Gateway") if GATEWAY_VERSIONS.contains(&api_version.as_str()) => {
            typed(doc).map(|v| objects.gateways.insert(id.clone(), Arc::new(v)).is_some())
        }
        (GATEWAY_GROUP, "HTTPRoute") if GATEWAY_VERSIONS.contains(&api_version.as_str()) => {
            typed(doc).map(|v| {
                objects
                    .http_routes
                    .insert(id.clone(), Arc::new(v))
                    .is_some()
            })
        }
        (GATEWAY_GROUP, "GRPCRoute") if GATEWAY_VERSIONS.contains(&api_version.as_str()) => {
            typed(doc).map(|v| {
                objects
                    .grpc_routes
                    .insert(id.clone(), Arc::new(v))
                    .is_some()
            })
        }
        (GATEWAY_GROUP, "TLSRoute")
            if api_version.ends_with("/v1alpha2")
                || api_version.ends_with("/v1alpha3")
                || api_version.ends_with("/v1") =>
        {
            typed(doc).map(|v| objects.tls_routes.insert(id.clone(), Arc::new(v)).is_some())
        }
        (GATEWAY_GROUP, "ReferenceGrant")
            if api_version.ends_with("/v1beta1")
                || api_version.ends_with("/v1")
                || api_version.ends_with("/v1alpha2") =>
        {
            typed(doc).map(|v| {
                objects
                    .reference_grants
                    .insert(id.clone(), Arc::new(v))
                    .is_some()
            })
        }
        (GATEWAY_GROUP, _) => {
            out.warnings.push(Warning::note(
                label,
                format!("{api_version} {kind} is not served by xingress (GatewayClass, Gateway, HTTPRoute and GRPCRoute in v1 or v1beta1, TLSRoute, ReferenceGrant); skipped"),
            ));
            out.ignored += 1;
            return;
        }
        _ => {
            out.ignored += 1;
            return;
        }
    };
    match result {
        Ok(false) => out.objects += 1,
        Ok(true) => {
            out.objects += 1;
            out.warnings.push(defined_twice(label, &kind, &id));
        }
        Err(e) => out.warnings.push(Warning::error(
            label,
            format!("invalid {kind}, skipped: {e}"),
        )),
    }
}

/// The warning for an object read more than once (in one file or across
/// files): the definition read last is the one used.
pub fn defined_twice(label: String, kind: &str, id: &dyn std::fmt::Display) -> Warning {
    Warning::error(
        label,
        format!("{kind} {id} is defined more than once; the definition read last wins"),
    )
}

const GATEWAY_GROUP: &str = crate::model::gateway::types::GROUP;
const GATEWAY_VERSIONS: [&str; 2] = [
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1beta1",
];

fn typed<T: DeserializeOwned>(doc: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(doc)
}

#[cfg(test)]
mod tests;

//! Tests of manifest parsing: documents, kinds and the errors that name what was wrong.

use super::*;
use crate::model::Severity;

const SEED_CAFE: &str = include_str!("../../../../tests/examples/cafe/cafe-ingress.yaml");

#[test]
fn seed_cafe_ingress_extensions_v1beta1_converts() {
    let mut o = Objects::default();
    let out = parse_documents(SEED_CAFE, "cafe-ingress.yaml", &mut o);
    let ing = o
        .ingresses
        .get(&NamespacedName::new("default", "cafe-ingress"))
        .expect("parsed");
    let spec = ing.spec.as_ref().unwrap();
    let paths = &spec.rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths;
    assert_eq!(paths[0].path.as_deref(), Some("/tea"));
    assert_eq!(paths[0].path_type, "ImplementationSpecific");
    let svc = paths[0].backend.service.as_ref().unwrap();
    assert_eq!(svc.name, "tea-svc");
    assert_eq!(svc.port.as_ref().unwrap().number, Some(80));
    assert_eq!(
        spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
        Some("cafe-secret")
    );
    assert!(
        out.warnings
            .iter()
            .any(|w| w.message.contains("deprecated") && w.severity == Severity::Note)
    );
}

/// The seeds' first example, indented with tabs exactly as written there.
const SEED_KUBIA_TABS: &str = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n\tname: kubia\nspec:\n\trules:\n\t-\thost: kubia.example.com #Ingress将域名映射到你的服务\n\t\thttp:\n\t\t\tpaths:\n\t\t\t-\tpath: /\n\t\t\t\tbackend:\n\t\t\t\t\tserviceName: kubia-nodeport\t#将所有的请求都发送到kubia-nodeport:80\n\t\t\t\t\tservicePort: 80\n";

#[test]
fn tab_indented_seed_yaml_loads_with_a_note() {
    let mut o = Objects::default();
    let out = parse_documents(SEED_KUBIA_TABS, "kubia.yaml", &mut o);
    let ing = o
        .ingresses
        .get(&NamespacedName::new("default", "kubia"))
        .expect("parsed");
    let rule = &ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("kubia.example.com"));
    let backend = &rule.http.as_ref().unwrap().paths[0].backend;
    assert_eq!(backend.service.as_ref().unwrap().name, "kubia-nodeport");
    assert!(out.warnings.iter().any(|w| w.message.contains("tabs")));
}

#[test]
fn one_bad_document_does_not_lose_the_others() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: good}\nspec: {ports: [{port: 80}]}\n---\n\
                apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: \"not a list\"}\n---\n\
                apiVersion: v1\nkind: Service\nspec: {}\n---\n\
                kind: Service\nmetadata: {name: noversion}\n---\n\
                apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n";
    let mut o = Objects::default();
    let out = parse_documents(text, "mixed.yaml", &mut o);
    assert_eq!(o.services.len(), 1);
    assert!(
        o.services
            .contains_key(&NamespacedName::new("default", "good"))
    );
    assert_eq!(out.ignored, 1);
    assert_eq!(out.warnings.len(), 3, "{:?}", out.warnings);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.object.contains("Service bad"))
    );
}

#[test]
fn invalid_yaml_is_a_warning_naming_the_file() {
    let mut o = Objects::default();
    let out = parse_documents("kind: [unclosed\n", "broken.yaml", &mut o);
    assert_eq!(out.warnings.len(), 1);
    assert_eq!(out.warnings[0].object, "broken.yaml");
    assert!(out.warnings[0].message.contains("not valid YAML"));
}

#[test]
fn json_and_lists_load() {
    let text = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"ns"},"spec":{"ports":[{"port":80}]}},
        {"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"a","namespace":"ns"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":8080}]}]}
    ]}"#;
    let mut o = Objects::default();
    let out = parse_documents(text, "list.json", &mut o);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert!(o.services.contains_key(&NamespacedName::new("ns", "a")));
    assert!(o.endpoints.contains_key(&NamespacedName::new("ns", "a")));
}

#[test]
fn an_object_defined_twice_is_reported_and_the_last_wins() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n---\n\
                apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 81}]}\n";
    let mut o = Objects::default();
    let out = parse_documents(text, "dup.yaml", &mut o);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].message.contains("more than once"));
    let svc = &o.services[&NamespacedName::new("default", "a")];
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        81
    );
}

//! Synthetic clusters of any size for benchmarks and scale tests.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
            IngressServiceBackend, IngressSpec, ServiceBackendPort,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use xingress::model::{NamespacedName, Objects};

/// Shape of a synthetic cluster.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub ingresses: usize,
    pub paths_per_ingress: usize,
    pub namespaces: usize,
    pub services_per_namespace: usize,
    pub endpoints_per_service: usize,
}

impl Shape {
    /// The scale the issues set targets for: 10,000 Ingresses, 50,000 paths.
    pub const LARGE: Shape = Shape {
        ingresses: 10_000,
        paths_per_ingress: 5,
        namespaces: 100,
        services_per_namespace: 20,
        endpoints_per_service: 3,
    };
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

/// Host of Ingress `i`: every tenth one is a wildcard.
pub fn host(i: usize) -> String {
    if i % 10 == 9 {
        format!("*.w{i}.example.com")
    } else {
        format!("app{i}.example.com")
    }
}

/// Path `j` of every Ingress: a mix of Prefix and Exact, nested.
pub fn path(j: usize) -> (String, &'static str) {
    let kind = if j % 4 == 3 { "Exact" } else { "Prefix" };
    (format!("/api/v{}/svc{j}", j % 3), kind)
}

pub fn objects(shape: Shape) -> Objects {
    let mut o = Objects::default();
    for n in 0..shape.namespaces {
        let ns = format!("ns{n}");
        for s in 0..shape.services_per_namespace {
            let name = format!("svc{s}");
            let svc = Service {
                metadata: meta(&ns, &name),
                spec: Some(ServiceSpec {
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            o.services
                .insert(NamespacedName::new(&ns, &name), Arc::new(svc));
            let endpoints = (0..shape.endpoints_per_service)
                .map(|e| Endpoint {
                    addresses: vec![format!("10.{}.{}.{}", n % 250, s % 250, e + 1)],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect();
            let mut slice_meta = meta(&ns, &format!("{name}-abcde"));
            slice_meta.labels = Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                name.clone(),
            )]));
            let slice = EndpointSlice {
                metadata: slice_meta,
                address_type: "IPv4".into(),
                endpoints,
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    ..Default::default()
                }]),
            };
            o.endpoint_slices.insert(
                NamespacedName::new(&ns, format!("{name}-abcde")),
                Arc::new(slice),
            );
        }
    }
    for i in 0..shape.ingresses {
        let ns = format!("ns{}", i % shape.namespaces);
        let paths = (0..shape.paths_per_ingress)
            .map(|j| {
                let (p, kind) = path(j);
                HTTPIngressPath {
                    path: Some(p),
                    path_type: kind.into(),
                    backend: IngressBackend {
                        service: Some(IngressServiceBackend {
                            name: format!("svc{}", (i + j) % shape.services_per_namespace),
                            port: Some(ServiceBackendPort {
                                number: Some(80),
                                name: None,
                            }),
                        }),
                        resource: None,
                    },
                }
            })
            .collect();
        let ing = Ingress {
            metadata: meta(&ns, &format!("ing{i}")),
            spec: Some(IngressSpec {
                rules: Some(vec![IngressRule {
                    host: Some(host(i)),
                    http: Some(HTTPIngressRuleValue { paths }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        o.ingresses
            .insert(NamespacedName::new(&ns, format!("ing{i}")), Arc::new(ing));
    }
    o
}

/// Gives Ingresses `0..count` TLS for their host, each with a Secret
/// `tls{i}` holding its own ECDSA P-256 certificate (rcgen, self-signed).
pub fn add_tls(o: &mut Objects, shape: Shape, count: usize) {
    use k8s_openapi::{
        ByteString,
        api::{core::v1::Secret, networking::v1::IngressTLS},
    };
    for i in 0..count.min(shape.ingresses) {
        let ns = format!("ns{}", i % shape.namespaces);
        let secret_name = format!("tls{i}");
        let cert =
            rcgen::generate_simple_self_signed(vec![host(i)]).expect("generate a certificate");
        let secret = Secret {
            metadata: meta(&ns, &secret_name),
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_string(),
                    ByteString(cert.cert.pem().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(cert.signing_key.serialize_pem().into_bytes()),
                ),
            ])),
            ..Default::default()
        };
        o.secrets
            .insert(NamespacedName::new(&ns, &secret_name), Arc::new(secret));
        let ing = o
            .ingresses
            .get_mut(&NamespacedName::new(&ns, format!("ing{i}")))
            .expect("generated Ingress");
        Arc::make_mut(ing).spec.get_or_insert_default().tls = Some(vec![IngressTLS {
            hosts: Some(vec![host(i)]),
            secret_name: Some(secret_name),
        }]);
    }
}

/// Points every Service's EndpointSlice at one ready endpoint, `pod`.
pub fn point_at(o: &mut Objects, pod: std::net::SocketAddr) {
    for slice in o.endpoint_slices.values_mut() {
        let slice = Arc::make_mut(slice);
        slice.endpoints.truncate(1);
        for e in &mut slice.endpoints {
            e.addresses = vec![pod.ip().to_string()];
        }
        for p in slice.ports.iter_mut().flatten() {
            p.port = Some(i32::from(pod.port()));
        }
    }
}

/// The objects of namespace `ns` as one multi-document YAML manifest.
pub fn namespace_manifest(o: &Objects, ns: &str) -> String {
    fn docs<T: serde::Serialize>(
        out: &mut String,
        map: &BTreeMap<NamespacedName, Arc<T>>,
        ns: &str,
    ) {
        for (_, obj) in map.iter().filter(|(k, _)| k.namespace == ns) {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&**obj).expect("serialize"));
        }
    }
    let mut out = String::new();
    docs(&mut out, &o.services, ns);
    docs(&mut out, &o.endpoint_slices, ns);
    docs(&mut out, &o.secrets, ns);
    docs(&mut out, &o.ingresses, ns);
    out
}

/// File name of namespace `ns`'s manifest.
pub fn manifest_file(ns: &str) -> String {
    format!("{ns}.yaml")
}

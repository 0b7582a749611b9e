//! Tests of certificates from Secrets: parsing, the default certificate and SNI lookup.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use rustls::pki_types::{CertificateDer, pem::PemObject};

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../../tests/fixtures/tls/", $name)).as_slice()
    };
}

fn secret(ns: &str, name: &str, crt: &[u8], key: &[u8]) -> Arc<Secret> {
    Arc::new(Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.to_vec())),
            ("tls.key".to_string(), ByteString(key.to_vec())),
        ])),
        ..Default::default()
    })
}

fn binding(secret: &str, hosts: &[&str]) -> TlsBinding {
    TlsBinding {
        kind: "Ingress",
        ingress: NamespacedName::new("default", "ing"),
        secret: Some(NamespacedName::new("default", secret)),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
    }
}

fn leaf_der(k: &CertifiedKey) -> Vec<u8> {
    k.end_entity_cert().unwrap().as_ref().to_vec()
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn every_key_format_loads() {
    for (name, crt, key) in [
        ("PKCS#1 RSA", fixture!("rsa.crt"), fixture!("rsa.key")),
        ("SEC1 EC", fixture!("sec1.crt"), fixture!("sec1.key")),
        ("PKCS#8 EC", fixture!("pkcs8.crt"), fixture!("pkcs8.key")),
    ] {
        let k = certified_key(crt, key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(leaf_der(&k), pem_der(crt), "{name}");
    }
}

#[test]
fn full_chains_are_kept() {
    let k = certified_key(fixture!("chain.crt"), fixture!("chain.key")).unwrap();
    assert_eq!(k.cert.len(), 2, "leaf + intermediate");
}

#[test]
fn bad_pairs_are_errors() {
    assert!(matches!(
        certified_key(fixture!("rsa.crt"), fixture!("sec1.key")),
        Err(CertError::Rustls(_))
    ));
    assert!(matches!(
        certified_key(b"nothing", fixture!("sec1.key")),
        Err(CertError::NoCertificate)
    ));
    assert!(
        certified_key(
            fixture!("sec1.crt"),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err()
    );
    assert!(matches!(
        certified_key(fixture!("sec1.crt"), b""),
        Err(CertError::Key(_))
    ));
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let mut objects = Objects::default();
    objects.secrets.insert(
        NamespacedName::new("default", "exact"),
        secret(
            "default",
            "exact",
            fixture!("pkcs8.crt"),
            fixture!("pkcs8.key"),
        ),
    );
    objects.secrets.insert(
        NamespacedName::new("default", "wild"),
        secret(
            "default",
            "wild",
            fixture!("wild.crt"),
            fixture!("wild.key"),
        ),
    );
    objects.secrets.insert(
        NamespacedName::new("default", "dflt"),
        secret(
            "default",
            "dflt",
            fixture!("default.crt"),
            fixture!("default.key"),
        ),
    );
    let mut store = CertStore::new().unwrap();
    let mut warnings = Vec::new();
    let bindings = [
        binding("exact", &["pkcs8.test", "a.wild.test"]),
        binding("wild", &["*.wild.test"]),
    ];
    let table = store.build(
        &objects,
        &bindings,
        Some(&NamespacedName::new("default", "dflt")),
        &mut warnings,
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let served = |sni: Option<&str>| leaf_der(table.lookup(sni).unwrap());
    assert_eq!(served(Some("pkcs8.test")), pem_der(fixture!("pkcs8.crt")));
    assert_eq!(
        served(Some("a.wild.test")),
        pem_der(fixture!("pkcs8.crt")),
        "exact beats wildcard"
    );
    assert_eq!(served(Some("b.wild.test")), pem_der(fixture!("wild.crt")));
    assert_eq!(
        served(Some("x.b.wild.test")),
        pem_der(fixture!("default.crt")),
        "one label only"
    );
    assert_eq!(
        served(Some("unknown.test")),
        pem_der(fixture!("default.crt"))
    );
    assert_eq!(served(None), pem_der(fixture!("default.crt")));

    // Without --default-ssl-certificate: the self-signed certificate.
    let table = store.build(&objects, &bindings, None, &mut warnings);
    let fallback = leaf_der(table.lookup(Some("unknown.test")).unwrap());
    assert_ne!(fallback, pem_der(fixture!("default.crt")));
    assert_eq!(fallback, leaf_der(&store.self_signed));
}

#[test]
fn broken_or_deleted_secrets_keep_the_last_good_certificate() {
    let id = NamespacedName::new("default", "rot");
    let mut objects = Objects::default();
    objects.secrets.insert(
        id.clone(),
        secret(
            "default",
            "rot",
            fixture!("rot-a.crt"),
            fixture!("rot-a.key"),
        ),
    );
    let mut store = CertStore::new().unwrap();
    let bindings = [binding("rot", &["rot.test"])];
    let mut w = Vec::new();
    let served = |store: &mut CertStore, objects: &Objects, w: &mut Vec<Warning>| {
        leaf_der(
            store
                .build(objects, &bindings, None, w)
                .lookup(Some("rot.test"))
                .unwrap(),
        )
    };
    assert_eq!(
        served(&mut store, &objects, &mut w),
        pem_der(fixture!("rot-a.crt"))
    );

    // Rotation: the new certificate is served.
    objects.secrets.insert(
        id.clone(),
        secret(
            "default",
            "rot",
            fixture!("rot-b.crt"),
            fixture!("rot-b.key"),
        ),
    );
    assert_eq!(
        served(&mut store, &objects, &mut w),
        pem_der(fixture!("rot-b.crt"))
    );
    assert!(w.is_empty());

    // Broken (key of another certificate): keep rot-b, and say so.
    objects.secrets.insert(
        id.clone(),
        secret(
            "default",
            "rot",
            fixture!("rot-a.crt"),
            fixture!("rot-b.key"),
        ),
    );
    assert_eq!(
        served(&mut store, &objects, &mut w),
        pem_der(fixture!("rot-b.crt"))
    );
    assert!(
        w.iter()
            .any(|w| w.message.contains("keeping the last good certificate")),
        "{w:?}"
    );

    // Deleted: still rot-b.
    w.clear();
    objects.secrets.remove(&id);
    assert_eq!(
        served(&mut store, &objects, &mut w),
        pem_der(fixture!("rot-b.crt"))
    );
    assert!(
        w.iter().any(|w| w.message.contains("not found; keeping")),
        "{w:?}"
    );
}

#[test]
fn a_host_claimed_by_two_secrets_keeps_the_first() {
    let mut objects = Objects::default();
    objects.secrets.insert(
        NamespacedName::new("default", "a"),
        secret("default", "a", fixture!("rot-a.crt"), fixture!("rot-a.key")),
    );
    objects.secrets.insert(
        NamespacedName::new("default", "b"),
        secret("default", "b", fixture!("rot-b.crt"), fixture!("rot-b.key")),
    );
    let mut store = CertStore::new().unwrap();
    let mut w = Vec::new();
    let table = store.build(
        &objects,
        &[binding("a", &["rot.test"]), binding("b", &["rot.test"])],
        None,
        &mut w,
    );
    assert_eq!(
        leaf_der(table.lookup(Some("rot.test")).unwrap()),
        pem_der(fixture!("rot-a.crt"))
    );
    assert_eq!(w.len(), 1, "{w:?}");
}

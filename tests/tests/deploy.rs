//! Every manifest in deploy/ parses into the k8s-openapi types, the
//! DaemonSet has the shape an edge agent needs, and its arguments are valid
//! for the agent's own command line.

use std::{collections::BTreeSet, path::PathBuf};

use clap::Parser;
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Namespace, ServiceAccount},
    networking::v1::IngressClass,
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use serde::Deserialize;
use serde_json::Value;
use xingress::cli::{Cli, Command};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn documents(name: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn kustomization_resources() -> Vec<String> {
    let k = &documents("kustomization.yaml")[0];
    k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_manifest_parses_into_its_type() {
    let mut kinds = BTreeSet::new();
    let resources = kustomization_resources();
    let yaml_files: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        resources.iter().cloned().collect::<BTreeSet<_>>(),
        yaml_files,
        "kustomization lists every manifest"
    );
    for file in &resources {
        for doc in documents(file) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let parsed = match kind.as_str() {
                "Namespace" => serde_json::from_value::<Namespace>(doc).map(drop),
                "ServiceAccount" => serde_json::from_value::<ServiceAccount>(doc).map(drop),
                "ClusterRole" => serde_json::from_value::<ClusterRole>(doc).map(drop),
                "ClusterRoleBinding" => serde_json::from_value::<ClusterRoleBinding>(doc).map(drop),
                "IngressClass" => serde_json::from_value::<IngressClass>(doc).map(drop),
                "DaemonSet" => serde_json::from_value::<DaemonSet>(doc).map(drop),
                "PodDisruptionBudget" => {
                    serde_json::from_value::<PodDisruptionBudget>(doc).map(drop)
                }
                other => panic!("{file}: unexpected kind {other:?}"),
            };
            parsed.unwrap_or_else(|e| panic!("{file}: {kind}: {e}"));
            kinds.insert(kind);
        }
    }
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "IngressClass",
        "DaemonSet",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(k), "deploy/ has no {k}");
    }
    assert!(deploy_dir().join("Dockerfile").exists());
}

fn ds_grace_period() -> u64 {
    daemonset()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .termination_grace_period_seconds
        .unwrap() as u64
}

fn daemonset() -> DaemonSet {
    serde_json::from_value(documents("daemonset.yaml").remove(0)).unwrap()
}

#[test]
fn the_daemonset_is_an_edge_agent_with_least_privilege() {
    let ds = daemonset();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert!(
        pod.node_selector
            .unwrap()
            .contains_key("node-role.kubernetes.io/edge")
    );
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.key.as_deref() == Some("node-role.kubernetes.io/edge"))
    );
    assert!(pod.termination_grace_period_seconds.unwrap() >= 15);
    assert_eq!(pod.service_account_name.as_deref(), Some("xingress"));
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true), "capabilities, not privileged");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let add: BTreeSet<&str> = caps
        .add
        .as_ref()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        add,
        BTreeSet::from(["BPF", "PERFMON", "NET_ADMIN", "NET_BIND_SERVICE"])
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    assert!(c.resources.as_ref().unwrap().requests.is_some());
    assert!(
        c.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/sys/fs/bpf")
    );
}

#[test]
fn the_daemonset_arguments_are_valid_for_the_agent() {
    let ds = daemonset();
    let c = ds.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let mut argv = vec!["xingress".to_string()];
    argv.extend(c.args.unwrap());
    // XINGRESS_* variables are flags too (`XINGRESS_XDP_IFACE` = `--xdp-iface`).
    // Downward-API values get what the kubelet would put there.
    let downward = |field: &str| match field {
        "metadata.name" => "xingress-7x2kq",
        "metadata.namespace" => "xingress",
        "status.hostIP" => "192.0.2.7",
        other => panic!("unexpected downward-API field {other}"),
    };
    for e in c.env.unwrap() {
        let value = e.value.or_else(|| {
            let field = e.value_from?.field_ref?.field_path;
            Some(downward(&field).to_string())
        });
        if let (Some(flag), Some(value)) = (e.name.strip_prefix("XINGRESS_"), value)
            && flag != "LOG"
        {
            argv.push(format!(
                "--{}={value}",
                flag.to_ascii_lowercase().replace('_', "-")
            ));
        }
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Run(run) = cli.command else {
        panic!("not `run`")
    };
    assert_eq!(run.admin_addr.port(), 10254);
    // /metrics stays on the node: loopback, probed by the kubelet there.
    assert!(run.admin_addr.ip().is_loopback());
    for probe in [&c.readiness_probe, &c.liveness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(10254)
        );
    }
    // The grace period covers the delay, the drain and a margin.
    let grace = ds_grace_period();
    assert!(
        grace >= run.shutdown_delay + run.shutdown_grace_period + 5,
        "terminationGracePeriodSeconds {grace}"
    );
    assert_eq!(run.xdp_iface.as_deref(), Some("eth0"));
    let config = run.into_config().unwrap();
    assert_eq!(
        config.status.addresses,
        ["192.0.2.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(config.status.identity, "xingress-7x2kq");
    assert_eq!(config.status.lease_namespace, "xingress");
}

#[test]
fn rbac_grants_only_what_the_agent_uses() {
    let role: ClusterRole = serde_json::from_value(documents("rbac.yaml").remove(0)).unwrap();
    let mut grants = BTreeSet::new();
    for rule in role.rules.unwrap() {
        for resource in rule.resources.unwrap() {
            for verb in &rule.verbs {
                assert_ne!(verb, "*");
                grants.insert(format!("{resource}:{verb}"));
            }
        }
    }
    let writes: BTreeSet<&String> = grants
        .iter()
        .filter(|g| !g.ends_with(":get") && !g.ends_with(":list") && !g.ends_with(":watch"))
        .collect();
    let allowed_writes = [
        "ingresses/status:update",
        "ingresses/status:patch",
        "gatewayclasses/status:update",
        "gatewayclasses/status:patch",
        "gateways/status:update",
        "gateways/status:patch",
        "httproutes/status:update",
        "httproutes/status:patch",
        "grpcroutes/status:update",
        "grpcroutes/status:patch",
        "tlsroutes/status:update",
        "tlsroutes/status:patch",
        "leases:create",
        "leases:update",
        "events:create",
        "events:patch",
    ];
    for w in writes {
        assert!(
            allowed_writes.contains(&w.as_str()),
            "unexpected write permission {w}"
        );
    }
    for r in [
        "ingresses",
        "ingressclasses",
        "services",
        "secrets",
        "endpointslices",
        // The controller ConfigMap (--configmap).
        "configmaps",
        // Gateway API, and the Namespaces its listeners select routes by.
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "tlsroutes",
        "referencegrants",
        "namespaces",
    ] {
        assert!(
            grants.contains(&format!("{r}:watch")),
            "missing watch on {r}"
        );
    }
}

#[test]
fn the_e2e_cafe_manifest_routes_tea_and_coffee() {
    use xingress::{
        k8s::parse_documents,
        model::{Objects, TranslateOptions, translate},
    };
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/cafe.yaml"))
            .unwrap();
    let mut objects = Objects::default();
    let out = parse_documents(&text, "e2e/cafe.yaml", &mut objects);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        out.ignored, 2,
        "the two Deployments are not the agent's business"
    );
    let class = documents("ingressclass.yaml").remove(0);
    objects.ingress_classes.insert(
        "xingress".into(),
        std::sync::Arc::new(serde_json::from_value(class).unwrap()),
    );
    let t = translate(&objects, &TranslateOptions::default());
    for (path, svc) in [("/tea", "tea-svc"), ("/coffee", "coffee-svc")] {
        let route = t.table.route(Some("cafe.example.com"), path).expect(path);
        assert_eq!(route.backend.service.name, svc);
    }
    assert_eq!(t.tls[0].secret.as_ref().unwrap().name, "cafe-secret");
}

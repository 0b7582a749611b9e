//! `xingress check DIR`: validate manifests and print the route table.

use std::process::ExitCode;

use serde::Serialize;

use crate::{
    cli::{CheckArgs, OutputFormat},
    k8s::ManifestDir,
    model::{ClassOptions, RouteRow, Severity, TranslateOptions, Warning, translate},
    tls::CertStore,
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub files: usize,
    pub ingresses: Vec<String>,
    pub routes: Vec<RouteRow>,
    /// Hosts served with a certificate of their own.
    pub tls_hosts: Vec<String>,
    /// The TCP and UDP services (`--tcp-services-configmap`,
    /// `--udp-services-configmap`).
    pub l4_services: Vec<L4Row>,
    /// The controller ConfigMap's keys (`--configmap`): applied, invalid, ignored.
    pub configmap_keys: Vec<crate::model::config::KeyStatus>,
    /// The status conditions of our Gateway API objects, as the leader
    /// would write them.
    pub gateway_api: crate::model::GatewayReport,
    pub warnings: Vec<Warning>,
}

/// One TCP or UDP service of the node.
#[derive(Debug, Serialize)]
pub struct L4Row {
    pub protocol: &'static str,
    pub port: u16,
    /// `NAMESPACE/SERVICE:PORT`.
    pub service: String,
    pub endpoints: Vec<std::net::SocketAddr>,
    pub decode_proxy: bool,
    pub encode_proxy: bool,
}

/// Builds the report the same way `run` builds its snapshot.
pub fn report(args: &CheckArgs) -> std::io::Result<Report> {
    let loaded = ManifestDir::new(&args.dir).load()?;
    let opts = TranslateOptions {
        classes: ClassOptions {
            ingress_class: args.ingress_class.clone(),
            controller_name: args.controller_name.clone(),
            watch_without_class: args.watch_ingress_without_class,
        },
        configmap: args.configmap.clone(),
        tcp_services: args.tcp_services_configmap.clone(),
        udp_services: args.udp_services_configmap.clone(),
        gateway_controller: args.gateway_controller_name.clone(),
        ..Default::default()
    };
    let t = translate(&loaded.objects, &opts);
    let mut warnings = loaded.warnings;
    warnings.extend(t.warnings);
    // Load every referenced certificate, as the agent would.
    let tls_hosts = match CertStore::new() {
        Ok(mut store) => {
            let mut table = store.build(
                &loaded.objects,
                &t.tls,
                args.default_ssl_certificate.as_ref(),
                &mut warnings,
            );
            // And every client-certificate CA.
            store.add_client_auth(&mut table, &loaded.objects, &t.client_auth, &mut warnings);
            table.hosts()
        }
        Err(e) => {
            warnings.push(Warning::error("TLS", e.to_string()));
            Vec::new()
        }
    };
    Ok(Report {
        files: loaded.files,
        ingresses: t.ingresses.iter().map(ToString::to_string).collect(),
        routes: t.table.rows(),
        tls_hosts,
        l4_services: t
            .table
            .l4
            .services
            .iter()
            .map(|s| L4Row {
                protocol: s.protocol.label(),
                port: s.port,
                service: format!("{}:{}", s.service, s.service_port),
                endpoints: s.endpoints.clone(),
                decode_proxy: s.decode_proxy,
                encode_proxy: s.encode_proxy,
            })
            .collect(),
        configmap_keys: t.config_keys,
        gateway_api: t.gateway,
        warnings,
    })
}

pub fn main(args: &CheckArgs) -> ExitCode {
    let report = match report(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xingress check: cannot read {}: {e}", args.dir.display());
            return ExitCode::from(2);
        }
    };
    match args.output {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("xingress check: {e}"),
        },
        OutputFormat::Text => print_text(&report),
    }
    if !report
        .warnings
        .iter()
        .any(|w| w.severity == Severity::Error)
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_text(r: &Report) {
    println!(
        "{} files, {} Ingresses: {}",
        r.files,
        r.ingresses.len(),
        r.ingresses.join(", ")
    );
    let w_host = r
        .routes
        .iter()
        .map(|x| x.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_path = r
        .routes
        .iter()
        .map(|x| x.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_backend = r
        .routes
        .iter()
        .map(|x| x.backend.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:w_host$}  {:w_path$}  {:6}  {:w_backend$}  {:5}  FROM",
        "HOST", "PATH", "TYPE", "BACKEND", "READY"
    );
    for row in &r.routes {
        println!(
            "{:w_host$}  {:w_path$}  {:6}  {:w_backend$}  {:5}  {}",
            row.host,
            row.path,
            format!("{:?}", row.kind),
            row.backend,
            row.ready_endpoints,
            row.ingress
        );
    }
    if !r.tls_hosts.is_empty() {
        println!("TLS: {}", r.tls_hosts.join(", "));
    }
    for s in &r.l4_services {
        let proxy = match (s.decode_proxy, s.encode_proxy) {
            (false, false) => "",
            (true, false) => " (PROXY from the client)",
            (false, true) => " (PROXY to the pod)",
            (true, true) => " (PROXY from the client and to the pod)",
        };
        println!(
            "{} {} → {}: {} ready{proxy}",
            s.protocol,
            s.port,
            s.service,
            s.endpoints.len()
        );
    }
    for (status, label) in [
        ("applied", "ConfigMap keys applied"),
        ("invalid", "ConfigMap keys invalid (defaults kept)"),
        ("ignored", "ConfigMap keys ignored (not implemented)"),
    ] {
        let keys: Vec<&str> = r
            .configmap_keys
            .iter()
            .filter(|k| k.status == status)
            .map(|k| k.key.as_str())
            .collect();
        if !keys.is_empty() {
            println!("{label}: {}", keys.join(", "));
        }
    }
    print_gateway_api(&r.gateway_api);
    for w in &r.warnings {
        let level = match w.severity {
            Severity::Error => "error",
            Severity::Note => "note",
        };
        println!("{level}: {}: {}", w.object, w.message);
    }
}

fn conditions(list: &[crate::model::gateway::types::Condition]) -> String {
    list.iter()
        .map(|c| {
            let mut s = format!("{}={} ({}", c.type_, c.status, c.reason);
            if !c.message.is_empty() {
                s.push_str(": ");
                s.push_str(&c.message);
            }
            s.push(')');
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_gateway_api(g: &crate::model::GatewayReport) {
    for c in &g.classes {
        println!(
            "GatewayClass {}: {}",
            c.name,
            conditions(&c.status.conditions)
        );
    }
    for gw in &g.gateways {
        println!("Gateway {}: {}", gw.name, conditions(&gw.status.conditions));
        for l in &gw.status.listeners {
            println!(
                "  listener {}: {} attached routes; {}",
                l.name,
                l.attached_routes,
                conditions(&l.conditions)
            );
        }
    }
    for r in &g.routes {
        for p in &r.status.parents {
            let section = p
                .parent_ref
                .section_name
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            println!(
                "{} {} on Gateway {}/{}{section}: {}",
                r.kind,
                r.name,
                p.parent_ref.namespace.as_deref().unwrap_or(""),
                p.parent_ref.name,
                conditions(&p.conditions)
            );
        }
    }
}

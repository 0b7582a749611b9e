//! `xingress migrate DIR`: what becomes of an ingress-nginx setup under
//! xingress, before switching. For each Ingress, each of its annotations
//! is honoured (with any difference in meaning), ignored (an ingress-nginx
//! annotation xingress does not implement, and why) or unknown (not an
//! ingress-nginx annotation: a typo?), and what xingress would refuse of
//! it is named; the same for the keys of the controller ConfigMap. Every
//! Ingress is read as if it were of xingress's class, whatever it names.

use std::{collections::BTreeMap, process::ExitCode, sync::Arc};

use serde::Serialize;

use crate::{
    cli::{MigrateArgs, OutputFormat},
    k8s::ManifestDir,
    model::{ClassOptions, Severity, TranslateOptions, annotation_table, config, translate},
};

/// ingress-nginx's annotations (its annotations page) that xingress does
/// not implement; the rest of the page's are in `annotation_table`.
pub const NGINX_ANNOTATIONS_NOT_SERVED: &[&str] = &[
    "affinity-canary-behavior",
    "auth-always-set-cookie",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "auth-proxy-set-headers",
    "auth-tls-error-page",
    "connection-proxy-header",
    "enable-global-auth",
    "enable-modsecurity",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "http2-push-preload",
    "limit-rate",
    "limit-rate-after",
    "mirror-host",
    "mirror-request-body",
    "mirror-target",
    "modsecurity-snippet",
    "modsecurity-transaction-id",
    "preserve-trailing-slash",
    "proxy-busy-buffers-size",
    "proxy-max-temp-file-size",
    "proxy-ssl-ciphers",
    "proxy-ssl-protocols",
    "session-cookie-change-on-failure",
    "session-cookie-conditional-samesite-none",
    "session-cookie-domain",
    "session-cookie-expires",
    "ssl-ciphers",
    "ssl-prefer-server-ciphers",
    "stream-snippet",
];

/// Every key of ingress-nginx's controller ConfigMap (its configmap page).
pub const NGINX_CONFIGMAP_KEYS: &[&str] = &[
    "access-log-params",
    "access-log-path",
    "add-headers",
    "allow-backend-server-header",
    "allow-cross-namespace-resources",
    "allow-snippet-annotations",
    "annotation-value-word-blocklist",
    "annotations-risk-level",
    "bind-address",
    "block-cidrs",
    "block-referers",
    "block-user-agents",
    "brotli-level",
    "brotli-min-length",
    "brotli-types",
    "client-body-buffer-size",
    "client-body-timeout",
    "client-header-buffer-size",
    "client-header-timeout",
    "compute-full-forwarded-for",
    "custom-http-errors",
    "debug-connections",
    "default-type",
    "denylist-source-range",
    "disable-access-log",
    "disable-ipv6",
    "disable-ipv6-dns",
    "enable-access-log-for-default-backend",
    "enable-aio-write",
    "enable-brotli",
    "enable-modsecurity",
    "enable-multi-accept",
    "enable-ocsp",
    "enable-opentelemetry",
    "enable-owasp-modsecurity-crs",
    "enable-real-ip",
    "enable-serial-reloads",
    "enable-syslog",
    "enable-underscores-in-headers",
    "error-log-level",
    "error-log-path",
    "force-ssl-redirect",
    "forwarded-for-header",
    "forwarded-for-proxy-protocol-header",
    "generate-request-id",
    "geoip2-autoreload-in-minutes",
    "global-allowed-response-headers",
    "global-auth-cache-duration",
    "global-auth-cache-key",
    "global-auth-method",
    "global-auth-request-redirect",
    "global-auth-response-headers",
    "global-auth-signin",
    "global-auth-signin-redirect-param",
    "global-auth-snippet",
    "global-auth-url",
    "grpc-buffer-size-kb",
    "gzip-disable",
    "gzip-level",
    "gzip-min-length",
    "gzip-types",
    "hide-headers",
    "hsts",
    "hsts-include-subdomains",
    "hsts-max-age",
    "hsts-preload",
    "http-access-log-path",
    "http-redirect-code",
    "http-snippet",
    "http2-max-concurrent-streams",
    "http2-max-field-size",
    "http2-max-header-size",
    "http2-max-requests",
    "ignore-invalid-headers",
    "jaeger-baggage-header",
    "jaeger-collector-host",
    "jaeger-collector-port",
    "jaeger-debug-header",
    "jaeger-endpoint",
    "jaeger-propagation-format",
    "jaeger-sampler-host",
    "jaeger-sampler-param",
    "jaeger-sampler-port",
    "jaeger-sampler-type",
    "jaeger-service-name",
    "jaeger-trace-baggage-header-prefix",
    "jaeger-trace-context-header-name",
    "keep-alive",
    "keep-alive-requests",
    "large-client-header-buffers",
    "limit-conn-status-code",
    "limit-conn-zone-variable",
    "limit-rate",
    "limit-rate-after",
    "limit-req-status-code",
    "load-balance",
    "location-snippet",
    "log-format-escape-json",
    "log-format-escape-none",
    "log-format-stream",
    "log-format-upstream",
    "lua-shared-dicts",
    "main-snippet",
    "map-hash-bucket-size",
    "max-worker-connections",
    "max-worker-open-files",
    "modsecurity-snippet",
    "nginx-status-ipv4-whitelist",
    "nginx-status-ipv6-whitelist",
    "no-auth-locations",
    "no-tls-redirect-locations",
    "opentelemetry-config",
    "opentelemetry-operation-name",
    "opentelemetry-trust-incoming-span",
    "otel-max-export-batch-size",
    "otel-max-queuesize",
    "otel-sampler",
    "otel-sampler-parent-based",
    "otel-sampler-ratio",
    "otel-schedule-delay-millis",
    "otel-service-name",
    "otlp-collector-host",
    "otlp-collector-port",
    "proxy-add-original-uri-header",
    "proxy-body-size",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-connect-timeout",
    "proxy-headers-hash-bucket-size",
    "proxy-headers-hash-max-size",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-protocol-header-timeout",
    "proxy-read-timeout",
    "proxy-real-ip-cidr",
    "proxy-request-buffering",
    "proxy-send-timeout",
    "proxy-set-headers",
    "proxy-ssl-location-only",
    "proxy-stream-next-upstream",
    "proxy-stream-next-upstream-timeout",
    "proxy-stream-next-upstream-tries",
    "proxy-stream-responses",
    "proxy-stream-timeout",
    "relative-redirects",
    "retry-non-idempotent",
    "reuse-port",
    "server-name-hash-bucket-size",
    "server-name-hash-max-size",
    "server-snippet",
    "server-tokens",
    "service-upstream",
    "skip-access-log-urls",
    "ssl-buffer-size",
    "ssl-ciphers",
    "ssl-dh-param",
    "ssl-ecdh-curve",
    "ssl-protocols",
    "ssl-redirect",
    "ssl-reject-handshake",
    "ssl-session-cache",
    "ssl-session-cache-size",
    "ssl-session-ticket-key",
    "ssl-session-tickets",
    "ssl-session-timeout",
    "stream-access-log-path",
    "stream-snippet",
    "strict-validate-path-type",
    "syslog-host",
    "syslog-port",
    "upstream-keepalive-connections",
    "upstream-keepalive-requests",
    "upstream-keepalive-time",
    "upstream-keepalive-timeout",
    "use-forwarded-headers",
    "use-geoip",
    "use-geoip2",
    "use-gzip",
    "use-http2",
    "use-proxy-protocol",
    "variables-hash-bucket-size",
    "variables-hash-max-size",
    "whitelist-source-range",
    "worker-cpu-affinity",
    "worker-processes",
    "worker-shutdown-timeout",
];

const PREFIXES: [&str; 2] = ["nginx.ingress.kubernetes.io/", "xingress.dev/"];

/// Why an ingress-nginx annotation or key is not carried out.
fn why_not(name: &str) -> &'static str {
    match name {
        n if n.ends_with("snippet") => {
            "nginx configuration text in this place is not run (xingress carries out configuration-, server- and auth-snippet only, a closed set of directives)"
        }
        "annotations-risk-level" | "annotation-value-word-blocklist" => {
            "snippets are a closed set of directives (allow-snippet-annotations), so there is nothing else to screen"
        }
        n if n.contains("modsecurity") || n.contains("owasp") => {
            "no web application firewall in xingress"
        }
        "opentelemetry-config" => {
            "the nginx module's own file: xingress reads the otel-* and otlp-* keys instead"
        }
        n if n.starts_with("jaeger") || n.starts_with("zipkin") || n.starts_with("datadog") => {
            "only OpenTelemetry tracing (OTLP) is implemented"
        }
        n if n.contains("buffer")
            || n.ends_with("-buffering")
            || n == "proxy-max-temp-file-size" =>
        {
            "this buffer setting is not implemented (proxy-buffering, proxy-buffer-size, proxy-buffers-number, proxy-request-buffering and client-body-buffer-size are; no temporary files for responses)"
        }
        n if n.starts_with("mirror-") => {
            "request mirroring by annotation is not implemented (a Gateway API RequestMirror filter is)"
        }
        "limit-rate" | "limit-rate-after" => "bandwidth limits are not implemented",
        n if n.starts_with("gzip")
            || n.starts_with("brotli")
            || n == "use-gzip"
            || n == "enable-brotli" =>
        {
            "xingress does not compress responses (pods' compressed responses pass as they are)"
        }
        n if n.contains("geoip") => "no GeoIP database in xingress",
        n if n.starts_with("worker-")
            || n.starts_with("max-worker")
            || n.contains("hash-bucket")
            || n.contains("hash-max")
            || n == "enable-multi-accept"
            || n == "reuse-port"
            || n == "enable-aio-write"
            || n == "lua-shared-dicts"
            || n == "enable-serial-reloads" =>
        {
            "an nginx process or table setting: xingress has no such tuning"
        }
        n if n.starts_with("ssl-") || n.contains("ssl-ciphers") || n.contains("ssl-protocols") => {
            "this TLS setting is not implemented (ssl-protocols, ssl-ciphers and ssl-session-tickets are; rustls offers TLS 1.2 and 1.3 with AEAD suites)"
        }
        n if n.starts_with("proxy-stream") => "TCP/UDP services are not implemented yet",
        n if n.starts_with("global-auth")
            || n == "enable-global-auth"
            || n == "no-auth-locations" =>
        {
            "global external authentication is not implemented; set auth-url per Ingress"
        }
        n if n.starts_with("auth-keepalive")
            || n == "auth-proxy-set-headers"
            || n == "auth-always-set-cookie" =>
        {
            "not implemented; leaving it out can only make the auth service refuse more, never less"
        }
        n if n.starts_with("syslog")
            || n.ends_with("log-path")
            || n.starts_with("error-log")
            || n == "log-format-stream"
            || n == "log-format-escape-none"
            || n == "access-log-params"
            || n == "enable-rewrite-log" =>
        {
            "this log setting is not implemented (the agent logs to stderr, the access log to access-log-path)"
        }
        _ => "not implemented by xingress",
    }
}

/// One annotation or key, and what becomes of it.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub name: String,
    /// `honoured`, `ignored` or `unknown`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct IngressReport {
    /// `namespace/name`.
    pub ingress: String,
    pub annotations: Vec<Verdict>,
    /// What xingress refuses or skips of this Ingress, as its log would say.
    pub refused: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ingresses: Vec<IngressReport>,
    /// The controller ConfigMap's keys (`--configmap`).
    pub configmap: Vec<Verdict>,
    pub summary: BTreeMap<&'static str, usize>,
}

/// The verdict on annotation `name` (without prefix).
fn annotation(name: &str) -> Verdict {
    let (verdict, detail) = match annotation_table::find(name) {
        Some(a) => ("honoured", a.nginx_difference.to_string()),
        None if NGINX_ANNOTATIONS_NOT_SERVED.contains(&name) => {
            ("ignored", why_not(name).to_string())
        }
        None => (
            "unknown",
            "not an annotation of ingress-nginx (a typo?); nothing reads it".to_string(),
        ),
    };
    Verdict {
        name: name.to_string(),
        verdict,
        detail,
    }
}

/// The verdict on ConfigMap key `name`.
fn key(name: &str, applied: Option<&config::KeyStatus>) -> Verdict {
    let (verdict, detail) = if config::KEYS.iter().any(|k| k.name == name) {
        match applied {
            Some(s) if s.status == "invalid" => (
                "honoured",
                format!("but this value is refused: {}", s.detail),
            ),
            _ => ("honoured", String::new()),
        }
    } else if NGINX_CONFIGMAP_KEYS.contains(&name) {
        ("ignored", why_not(name).to_string())
    } else {
        (
            "unknown",
            "not a key of ingress-nginx's ConfigMap (a typo?); nothing reads it".to_string(),
        )
    };
    Verdict {
        name: name.to_string(),
        verdict,
        detail,
    }
}

pub fn report(args: &MigrateArgs) -> std::io::Result<Report> {
    let mut loaded = ManifestDir::new(&args.dir).load()?;
    // Every Ingress as if it were ours: no class, and classless ones served.
    for ing in loaded.objects.ingresses.values_mut() {
        let mut i = (**ing).clone();
        if let Some(spec) = i.spec.as_mut() {
            spec.ingress_class_name = None;
        }
        if let Some(a) = i.metadata.annotations.as_mut() {
            a.remove("kubernetes.io/ingress.class");
        }
        *ing = Arc::new(i);
    }
    // ingress-nginx's ConfigMap: named, else by its usual names.
    let configmap = args.configmap.clone().or_else(|| {
        loaded
            .objects
            .config_maps
            .keys()
            .find(|id| {
                matches!(
                    id.name.as_str(),
                    "ingress-nginx-controller" | "nginx-configuration"
                )
            })
            .cloned()
    });
    let opts = TranslateOptions {
        classes: ClassOptions {
            watch_without_class: true,
            ..ClassOptions::default()
        },
        configmap: configmap.clone(),
        ..Default::default()
    };
    let t = translate(&loaded.objects, &opts);
    let mut summary: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut ingresses = Vec::new();
    for (id, ing) in &loaded.objects.ingresses {
        let mut annotations = Vec::new();
        for name in ing.metadata.annotations.iter().flatten().map(|(k, _)| k) {
            let Some(short) = PREFIXES.iter().find_map(|p| name.strip_prefix(p)) else {
                continue;
            };
            let v = annotation(short);
            *summary.entry(v.verdict).or_default() += 1;
            annotations.push(v);
        }
        let object = format!("Ingress {id}");
        // Without any Service in DIR (Ingresses alone), missing Services
        // say nothing about the migration.
        let services_known = !loaded.objects.services.is_empty();
        let refused: Vec<String> = t
            .warnings
            .iter()
            .filter(|w| w.object == object && w.severity == Severity::Error)
            .filter(|w| services_known || w.reason != "ServiceNotFound")
            .map(|w| w.message.clone())
            .collect();
        *summary.entry("refused").or_default() += refused.len();
        ingresses.push(IngressReport {
            ingress: id.to_string(),
            annotations,
            refused,
        });
    }
    let mut keys = Vec::new();
    if let Some(id) = &configmap {
        for name in loaded
            .objects
            .config_maps
            .get(id)
            .and_then(|c| c.data.as_ref())
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let v = key(name, t.config_keys.iter().find(|k| &k.key == name));
            *summary.entry(v.verdict).or_default() += 1;
            keys.push(v);
        }
    }
    Ok(Report {
        ingresses,
        configmap: keys,
        summary,
    })
}

pub fn main(args: &MigrateArgs) -> ExitCode {
    let report = match report(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xingress migrate: cannot read {}: {e}", args.dir.display());
            return ExitCode::from(2);
        }
    };
    match args.output {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("xingress migrate: {e}");
                return ExitCode::from(1);
            }
        },
        OutputFormat::Text => print_text(&report),
    }
    ExitCode::SUCCESS
}

fn print_text(r: &Report) {
    for i in &r.ingresses {
        println!("Ingress {}", i.ingress);
        for a in &i.annotations {
            if a.detail.is_empty() {
                println!("  {:<9} {}", a.verdict, a.name);
            } else {
                println!("  {:<9} {}: {}", a.verdict, a.name, a.detail);
            }
        }
        for p in &i.refused {
            println!("  refused   {p}");
        }
    }
    if !r.configmap.is_empty() {
        println!("ConfigMap");
        for k in &r.configmap {
            if k.detail.is_empty() {
                println!("  {:<9} {}", k.verdict, k.name);
            } else {
                println!("  {:<9} {}: {}", k.verdict, k.name, k.detail);
            }
        }
    }
    let counts: Vec<String> = r.summary.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("summary: {}", counts.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_annotation_and_key_of_ingress_nginx_has_a_verdict() {
        assert_eq!(annotation("rewrite-target").verdict, "honoured");
        assert_eq!(annotation("configuration-snippet").verdict, "honoured");
        assert!(
            annotation("configuration-snippet")
                .detail
                .contains("closed set")
        );
        assert_eq!(annotation("stream-snippet").verdict, "ignored");
        assert!(
            annotation("stream-snippet")
                .detail
                .contains("nginx configuration")
        );
        assert_eq!(annotation("rewrite-targt").verdict, "unknown");
        assert_eq!(key("proxy-body-size", None).verdict, "honoured");
        assert_eq!(key("use-gzip", None).verdict, "ignored");
        assert_eq!(key("proxy-body-sise", None).verdict, "unknown");
        // Nothing we honour is also listed as not served.
        for n in NGINX_ANNOTATIONS_NOT_SERVED {
            assert!(annotation_table::find(n).is_none(), "{n}");
        }
        // Every ingress-nginx key is honoured or has a reason.
        for k in NGINX_CONFIGMAP_KEYS {
            assert_ne!(key(k, None).verdict, "unknown", "{k}");
        }
    }
}

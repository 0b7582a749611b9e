//! OpenTelemetry tracing settings: the controller ConfigMap's keys
//! (ingress-nginx's names and defaults: `enable-opentelemetry`,
//! `otlp-collector-host`, `otlp-collector-port`, `otel-service-name`,
//! `otel-sampler`, `otel-sampler-ratio`, `otel-sampler-parent-based`,
//! `otel-max-queuesize`, `otel-schedule-delay-millis`,
//! `otel-max-export-batch-size`, `opentelemetry-trust-incoming-span`,
//! `opentelemetry-operation-name`) and the per-Ingress annotations
//! (`enable-opentelemetry`, `opentelemetry-trust-incoming-span`).

use std::time::Duration;

/// Which traces are recorded (spans are always propagated to pods).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// This share of trace ids.
    Ratio(f64),
}

/// Where and how spans are exported: one per routing table.
#[derive(Clone, Debug, PartialEq)]
pub struct OtelExport {
    /// `http://HOST:PORT`, the collector's OTLP gRPC endpoint.
    pub endpoint: String,
    pub service_name: String,
    pub sampler: Sampler,
    /// `otel-sampler-parent-based`: a trusted incoming span's sampled flag
    /// decides.
    pub parent_based: bool,
    pub max_queue: usize,
    pub delay: Duration,
    pub max_batch: usize,
}

/// A rule's tracing: it is traced, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtelRoute {
    /// `opentelemetry-trust-incoming-span`: a client's traceparent is the
    /// parent of our span (else a new trace starts here).
    pub trust_incoming: bool,
    /// `opentelemetry-operation-name`: the span name's template; `None`:
    /// `METHOD PATH` with the rule's path (the semantic conventions').
    pub operation: Option<Vec<OperationPiece>>,
}

/// A piece of an operation name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationPiece {
    Text(Box<str>),
    Method,
    Uri,
    Host,
    ServiceName,
    Namespace,
    IngressName,
    /// The rule's path (`$location_path`).
    RulePath,
}

/// The ConfigMap's tracing keys as read.
#[derive(Clone, Debug, PartialEq)]
pub struct OtelKeys {
    pub enabled: bool,
    pub trust_incoming: bool,
    pub operation: Option<Vec<OperationPiece>>,
    pub host: Option<String>,
    pub port: u16,
    pub service_name: String,
    pub sampler: Sampler,
    pub ratio: f64,
    pub parent_based: bool,
    pub max_queue: usize,
    pub delay: Duration,
    pub max_batch: usize,
}

impl Default for OtelKeys {
    fn default() -> Self {
        Self {
            enabled: false,
            // ingress-nginx trusts a client's span by default; an edge
            // proxy should not let any client pick trace ids and sampling.
            trust_incoming: false,
            operation: None,
            host: None,
            port: 4317,
            service_name: "nginx".into(),
            sampler: Sampler::AlwaysOff,
            ratio: 0.01,
            parent_based: false,
            max_queue: 2048,
            delay: Duration::from_millis(5000),
            max_batch: 512,
        }
    }
}

/// The ConfigMap keys this module reads.
pub const KEY_NAMES: &[&str] = &[
    "enable-opentelemetry",
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
];

fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

impl OtelKeys {
    /// Applies one key; `Err` says why the value is refused (the default
    /// stays).
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        let v = v.trim();
        let number = |lo: usize, hi: usize| -> Result<usize, String> {
            v.parse::<usize>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| {
                    format!("is not a whole number from {lo} to {hi}; the default stays")
                })
        };
        let flag = || {
            boolean(v).ok_or_else(|| "is not \"true\" or \"false\"; the default stays".to_string())
        };
        match key {
            "enable-opentelemetry" => self.enabled = flag()?,
            "opentelemetry-trust-incoming-span" => self.trust_incoming = flag()?,
            "otel-sampler-parent-based" => self.parent_based = flag()?,
            "opentelemetry-operation-name" => {
                self.operation = if v.is_empty() {
                    None
                } else {
                    Some(operation(v)?)
                }
            }
            "otlp-collector-host" => {
                let ok = !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
                if !ok {
                    return Err("is not a host name or address; tracing stays off".into());
                }
                self.host = Some(v.to_string());
            }
            "otlp-collector-port" => self.port = number(1, 65535)? as u16,
            "otel-service-name" => {
                if v.is_empty() {
                    return Err("is empty; nginx stays".into());
                }
                self.service_name = v.to_string();
            }
            "otel-sampler" => {
                self.sampler = match v {
                    "AlwaysOn" => Sampler::AlwaysOn,
                    "AlwaysOff" => Sampler::AlwaysOff,
                    "TraceIdRatioBased" => Sampler::Ratio(self.ratio),
                    _ => {
                        return Err(
                            "is not AlwaysOn, AlwaysOff or TraceIdRatioBased; AlwaysOff stays"
                                .into(),
                        );
                    }
                }
            }
            "otel-sampler-ratio" => {
                let r: f64 = v
                    .parse()
                    .ok()
                    .filter(|r: &f64| (0.0..=1.0).contains(r))
                    .ok_or("is not a number from 0 to 1; 0.01 stays")?;
                self.ratio = r;
                if let Sampler::Ratio(_) = self.sampler {
                    self.sampler = Sampler::Ratio(r);
                }
            }
            "otel-max-queuesize" => self.max_queue = number(1, 1 << 20)?,
            "otel-schedule-delay-millis" => {
                self.delay = Duration::from_millis(number(1, 3_600_000)? as u64)
            }
            "otel-max-export-batch-size" => self.max_batch = number(1, 1 << 16)?,
            _ => return Err("is not a tracing key".into()),
        }
        Ok(())
    }

    /// Where spans go; `None`: no collector named, nothing is exported.
    pub fn export(&self) -> Option<OtelExport> {
        let host = self.host.as_ref()?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Some(OtelExport {
            endpoint: format!("http://{host}:{}", self.port),
            service_name: self.service_name.clone(),
            sampler: self.sampler,
            parent_based: self.parent_based,
            max_queue: self.max_queue,
            delay: self.delay,
            max_batch: self.max_batch,
        })
    }
}

/// `opentelemetry-operation-name`: text and `$request_method`, `$uri`,
/// `$host`, `$service_name`, `$namespace`, `$ingress_name`,
/// `$location_path`.
pub fn operation(v: &str) -> Result<Vec<OperationPiece>, String> {
    let mut out = Vec::new();
    for t in super::template::tokens(v)? {
        out.push(match t {
            super::template::Token::Text(s) => OperationPiece::Text(s.into()),
            super::template::Token::Var(name) => match name {
                "request_method" => OperationPiece::Method,
                "uri" => OperationPiece::Uri,
                "host" => OperationPiece::Host,
                "service_name" => OperationPiece::ServiceName,
                "namespace" => OperationPiece::Namespace,
                "ingress_name" => OperationPiece::IngressName,
                "location_path" => OperationPiece::RulePath,
                n => {
                    return Err(format!(
                        "${n} is not a variable a span name can use ($request_method, $uri, $host, $service_name, $namespace, $ingress_name, $location_path)"
                    ));
                }
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_ingress_nginx_defines_them() {
        let mut k = OtelKeys::default();
        assert_eq!(k.export(), None, "no collector, no export");
        k.set("otlp-collector-host", "otel.monitoring.svc").unwrap();
        k.set("otel-sampler", "TraceIdRatioBased").unwrap();
        k.set("otel-sampler-ratio", "0.25").unwrap();
        k.set(
            "opentelemetry-operation-name",
            "HTTP $request_method $service_name",
        )
        .unwrap();
        let e = k.export().unwrap();
        assert_eq!(e.endpoint, "http://otel.monitoring.svc:4317");
        assert_eq!(e.sampler, Sampler::Ratio(0.25));
        assert_eq!(e.service_name, "nginx");
        assert!(k.set("otel-sampler", "Sometimes").is_err());
        assert!(k.set("otel-sampler-ratio", "2").is_err());
        assert!(k.set("otlp-collector-port", "0").is_err());
        assert!(k.set("otlp-collector-host", "a b").is_err());
        let e = k
            .set("opentelemetry-operation-name", "$request_body")
            .unwrap_err();
        assert!(e.contains("$request_body"), "{e}");
        k.set("otlp-collector-host", "fd00::1").unwrap();
        assert_eq!(k.export().unwrap().endpoint, "http://[fd00::1]:4317");
    }
}

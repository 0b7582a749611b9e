//! Command line (the CLI contract of DESIGN.md): clap's parsing, and its
//! validation into [`crate::config::Config`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

pub use crate::config::{
    Config, OutputFormat, PolicyFlags, ProxyLimits, Source, StatusOptions, XdpConfig, XdpMode,
};
use crate::model::{Cidr, ClassOptions, NamespacedName};

/// Exit code for a configuration the agent refuses to start with (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "xingress",
    version,
    about = "Kubernetes Ingress controller for edge nodes, accelerated by XDP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: watch the objects, serve the routes, drive XDP.
    Run(Box<RunArgs>),
    /// Validate manifests and print the route table they produce.
    Check(Box<CheckArgs>),
    /// What becomes of an ingress-nginx setup: per Ingress and annotation,
    /// and per ConfigMap key, honoured (and any difference), ignored, refused.
    Migrate(MigrateArgs),
    /// Read the XDP data plane's pinned maps.
    #[command(subcommand)]
    Xdp(XdpCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read objects from YAML/JSON manifests in DIR (and watch it) instead of a cluster.
    #[arg(long, env = "XINGRESS_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig for Kubernetes mode (default: in-cluster configuration).
    #[arg(long, env = "XINGRESS_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Plain HTTP listener.
    #[arg(long, env = "XINGRESS_HTTP_ADDR", default_value = "0.0.0.0:80")]
    pub http_addr: SocketAddr,
    /// HTTPS listener (certificates by SNI from the Ingresses' TLS Secrets).
    #[arg(long, env = "XINGRESS_HTTPS_ADDR", default_value = "0.0.0.0:443")]
    pub https_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "XINGRESS_ADMIN_ADDR", default_value = "127.0.0.1:10254")]
    pub admin_addr: SocketAddr,
    /// Class name matched against the legacy kubernetes.io/ingress.class annotation.
    #[arg(long, env = "XINGRESS_INGRESS_CLASS", default_value = "xingress")]
    pub ingress_class: String,
    /// IngressClass spec.controller value that marks Ingresses as ours.
    #[arg(
        long,
        env = "XINGRESS_CONTROLLER_NAME",
        default_value = "xingress.dev/controller"
    )]
    pub controller_name: String,
    /// GatewayClass spec.controllerName value that marks Gateway API classes as ours.
    #[arg(
        long,
        env = "XINGRESS_GATEWAY_CONTROLLER_NAME",
        default_value = crate::model::DEFAULT_GATEWAY_CONTROLLER
    )]
    pub gateway_controller_name: String,
    /// Also serve Ingresses that name no class.
    #[arg(long, env = "XINGRESS_WATCH_INGRESS_WITHOUT_CLASS")]
    pub watch_ingress_without_class: bool,
    /// Only consider Ingresses in this namespace.
    #[arg(long, env = "XINGRESS_WATCH_NAMESPACE", value_name = "NS")]
    pub watch_namespace: Option<String>,
    /// Service answering requests that match no rule (NS/NAME, port 80 or its only port).
    #[arg(long, env = "XINGRESS_DEFAULT_BACKEND_SERVICE", value_name = "NS/NAME")]
    pub default_backend_service: Option<String>,
    /// Certificate for SNI names no Ingress covers (NS/NAME of a kubernetes.io/tls Secret).
    #[arg(long, env = "XINGRESS_DEFAULT_SSL_CERTIFICATE", value_name = "NS/NAME")]
    pub default_ssl_certificate: Option<String>,
    /// Address(es) written to the status of our Ingresses (Kubernetes mode);
    /// the DaemonSet sets the node IP through the downward API.
    #[arg(
        long,
        env = "XINGRESS_PUBLISH_ADDRESS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub publish_address: Vec<std::net::IpAddr>,
    /// This agent's name in the leader-election Lease (default: the host name and pid).
    #[arg(long, env = "XINGRESS_POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    /// Namespace of the leader-election Lease (default: "default").
    #[arg(long, env = "XINGRESS_POD_NAMESPACE", value_name = "NS")]
    pub pod_namespace: Option<String>,
    /// Name of the Lease that elects the one agent writing status and Events.
    #[arg(long, env = "XINGRESS_ELECTION_ID", default_value = "xingress-leader")]
    pub election_id: String,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(
        long,
        env = "XINGRESS_LEASE_DURATION",
        default_value_t = 15,
        hide = true
    )]
    pub lease_duration: u64,
    /// The controller ConfigMap, ingress-nginx's keys (file mode: the
    /// ConfigMap of that name among the manifests).
    #[arg(long, env = "XINGRESS_CONFIGMAP", value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub configmap: Option<NamespacedName>,
    /// TCP services exposed by port, ingress-nginx's format
    /// (`"PORT": "NAMESPACE/SERVICE:PORT[:PROXY][:PROXY]"`).
    #[arg(long, env = "XINGRESS_TCP_SERVICES_CONFIGMAP", value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub tcp_services_configmap: Option<NamespacedName>,
    /// UDP services exposed by port (`"PORT": "NAMESPACE/SERVICE:PORT"`).
    #[arg(long, env = "XINGRESS_UDP_SERVICES_CONFIGMAP", value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub udp_services_configmap: Option<NamespacedName>,
    /// Route to ExternalName Services (off: they let an Ingress author reach any host).
    #[arg(long, env = "XINGRESS_ENABLE_EXTERNAL_NAME_SERVICES")]
    pub enable_external_name_services: bool,
    /// Connect to link-local addresses (169.254.0.0/16, fe80::/10) named by
    /// endpoints or auth-url (off: cloud metadata services live there).
    #[arg(long, env = "XINGRESS_ALLOW_LINK_LOCAL_UPSTREAMS")]
    pub allow_link_local_upstreams: bool,
    /// In Kubernetes mode, connect to loopback addresses named by endpoints
    /// or auth-url (off: no pod is the node's loopback; file mode always
    /// allows them).
    #[arg(long, env = "XINGRESS_ALLOW_LOOPBACK_UPSTREAMS")]
    pub allow_loopback_upstreams: bool,
    /// Seconds a client has to send a request's headers (and to finish the TLS handshake).
    #[arg(
        long,
        env = "XINGRESS_CLIENT_HEADER_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub client_header_timeout: u64,
    /// Seconds a write to a client may wait for it to read (slow readers are dropped).
    #[arg(
        long,
        env = "XINGRESS_CLIENT_SEND_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub client_send_timeout: u64,
    /// The access log on stdout, one line per request: `upstreaminfo`
    /// (ingress-nginx's default line), `json`, or `off`.
    #[arg(
        long,
        env = "XINGRESS_ACCESS_LOG",
        value_name = "FORMAT",
        default_value = "upstreaminfo"
    )]
    pub access_log: String,
    /// Access log lines queued for the writer; past it lines are dropped
    /// (and counted) rather than slow a request.
    #[arg(
        long,
        env = "XINGRESS_ACCESS_LOG_BUFFER",
        value_name = "LINES",
        default_value_t = crate::proxy::access_log::DEFAULT_BUFFER,
        hide = true
    )]
    pub access_log_buffer: usize,
    /// Both listeners expect a PROXY protocol header (v1 or v2) first, from
    /// an L4 load balancer: its client address is the request's
    /// (ingress-nginx's `use-proxy-protocol`).
    #[arg(long, env = "XINGRESS_USE_PROXY_PROTOCOL")]
    pub use_proxy_protocol: bool,
    /// Trust X-Forwarded-For (and -Proto, -Host, -Port) from sources in
    /// --proxy-real-ip-cidr: behind an L7 load balancer (ingress-nginx's
    /// `use-forwarded-headers`).
    #[arg(long, env = "XINGRESS_USE_FORWARDED_HEADERS")]
    pub use_forwarded_headers: bool,
    /// Append the peer's address to the client's X-Forwarded-For instead of
    /// replacing it (ingress-nginx's `compute-full-forwarded-for`).
    #[arg(long, env = "XINGRESS_COMPUTE_FULL_FORWARDED_FOR")]
    pub compute_full_forwarded_for: bool,
    /// Sources whose X-Forwarded-For is trusted (ingress-nginx's
    /// `proxy-real-ip-cidr`).
    #[arg(
        long,
        env = "XINGRESS_PROXY_REAL_IP_CIDR",
        value_name = "CIDR",
        value_delimiter = ',',
        default_value = "0.0.0.0/0,::/0"
    )]
    pub proxy_real_ip_cidr: Vec<String>,
    /// Send Strict-Transport-Security on responses over TLS (ingress-nginx's
    /// `hsts`, on by default there too); `--hsts=false` turns it off.
    #[arg(
        long,
        env = "XINGRESS_HSTS",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub hsts: bool,
    /// Its max-age in seconds (`hsts-max-age`: one year).
    #[arg(
        long,
        env = "XINGRESS_HSTS_MAX_AGE",
        value_name = "SECONDS",
        default_value_t = 31_536_000
    )]
    pub hsts_max_age: u64,
    /// Add includeSubDomains (`hsts-include-subdomains`).
    #[arg(
        long,
        env = "XINGRESS_HSTS_INCLUDE_SUBDOMAINS",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub hsts_include_subdomains: bool,
    /// Add preload (`hsts-preload`).
    #[arg(
        long,
        env = "XINGRESS_HSTS_PRELOAD",
        value_name = "BOOL",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub hsts_preload: bool,
    /// Seconds between SIGTERM and closing the listeners: /readyz answers
    /// 503 at once while requests are still served, so load balancers and
    /// the kubelet stop sending new clients first.
    #[arg(
        long,
        env = "XINGRESS_SHUTDOWN_DELAY",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    pub shutdown_delay: u64,
    /// Seconds in-flight requests get to finish once the listeners close.
    #[arg(
        long,
        env = "XINGRESS_SHUTDOWN_GRACE_PERIOD",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub shutdown_grace_period: u64,
    /// Runtime worker threads (default: one per core; 1 runs a single-threaded runtime).
    #[arg(long, env = "XINGRESS_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Attach the XDP program to this interface.
    #[arg(long, env = "XINGRESS_XDP_IFACE", value_name = "IFACE")]
    pub xdp_iface: Option<String>,
    /// XDP attach mode: auto tries native and falls back to generic (skb).
    #[arg(long, env = "XINGRESS_XDP_MODE", value_enum, default_value_t = XdpMode::Auto)]
    pub xdp_mode: XdpMode,
    /// Drop packets from these source CIDRs at XDP.
    #[arg(
        long,
        env = "XINGRESS_XDP_DENY_CIDR",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub xdp_deny_cidr: Vec<String>,
    /// SYNs per second allowed per source at XDP.
    #[arg(long, env = "XINGRESS_XDP_SYN_RATE", value_name = "N")]
    pub xdp_syn_rate: Option<u32>,
    /// Reject, at XDP, flows to hosts that no rule serves.
    #[arg(long, env = "XINGRESS_XDP_STRICT_HOSTS")]
    pub xdp_strict_hosts: bool,
    /// Directory (on bpffs) where the XDP maps are pinned for `xingress xdp`.
    #[arg(long, env = "XINGRESS_XDP_PIN_PATH", default_value = crate::dataplane::DEFAULT_PIN_PATH)]
    pub xdp_pin_path: PathBuf,
    /// Node ports the TCP and UDP services' flows steered in XDP are
    /// translated from (SNAT), LO-HI; a range inside the kernel's ephemeral
    /// ports is added to ip_local_reserved_ports.
    #[arg(
        long,
        env = "XINGRESS_XDP_L4_SNAT_PORTS",
        value_name = "LO-HI",
        default_value = "61000-65535"
    )]
    pub xdp_l4_snat_ports: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory of manifests to validate.
    pub dir: PathBuf,
    /// How to print the route table and the notes.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Class name for the legacy annotation (as `run`).
    #[arg(long, default_value = "xingress")]
    pub ingress_class: String,
    /// Controller name for IngressClass ownership (as `run`).
    #[arg(long, default_value = "xingress.dev/controller")]
    pub controller_name: String,
    /// Controller name for GatewayClass ownership (as `run`).
    #[arg(long, default_value = crate::model::DEFAULT_GATEWAY_CONTROLLER)]
    pub gateway_controller_name: String,
    /// Treat Ingresses without a class as ours (as `run`).
    #[arg(long)]
    pub watch_ingress_without_class: bool,
    /// Default certificate Secret to validate (as `run`).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub default_ssl_certificate: Option<NamespacedName>,
    /// The controller ConfigMap to validate (as `run`).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub configmap: Option<NamespacedName>,
    /// The TCP services ConfigMap to validate (as `run`).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub tcp_services_configmap: Option<NamespacedName>,
    /// The UDP services ConfigMap to validate (as `run`).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub udp_services_configmap: Option<NamespacedName>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Directory of manifests (Ingresses, Services, the ingress-nginx ConfigMap).
    pub dir: PathBuf,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// ingress-nginx's controller ConfigMap (default: the one named
    /// ingress-nginx-controller or nginx-configuration in DIR).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_namespaced)]
    pub configmap: Option<NamespacedName>,
}

fn parse_namespaced(v: &str) -> Result<NamespacedName, String> {
    NamespacedName::parse(v).ok_or_else(|| format!("expected NAMESPACE/NAME, got {v:?}"))
}

#[derive(Debug, Subcommand)]
pub enum XdpCommand {
    /// Packet counters of the running agent's XDP program.
    Stats(XdpReadArgs),
    /// Tracked connections.
    Flows(XdpReadArgs),
}

#[derive(Debug, Args)]
pub struct XdpReadArgs {
    /// How to print what the maps hold.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Where the running agent pinned its maps (its --xdp-pin-path).
    #[arg(long, env = "XINGRESS_XDP_PIN_PATH", default_value = crate::dataplane::DEFAULT_PIN_PATH)]
    pub pin_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("--manifests DIR: {0} is not a readable directory")]
    ManifestDir(PathBuf),
}

impl RunArgs {
    /// Validates the arguments. Flags of later stages are refused with a
    /// clear message rather than silently ignored.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let source = match (self.manifests, self.kubeconfig) {
            (Some(dir), None) => {
                if !dir.is_dir() {
                    return Err(ConfigError::ManifestDir(dir));
                }
                Source::Manifests(dir)
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    flag: "--kubeconfig",
                    value: String::new(),
                    reason: "conflicts with --manifests: choose one source".into(),
                });
            }
            (None, kubeconfig) => Source::Cluster { kubeconfig },
        };
        if matches!(source, Source::Manifests(_)) && !self.publish_address.is_empty() {
            tracing::info!(
                "--publish-address only applies in Kubernetes mode; ignored with --manifests"
            );
        }
        if self.lease_duration == 0 {
            return Err(ConfigError::Invalid {
                flag: "--lease-duration",
                value: "0".into(),
                reason: "a lease must last at least a second".into(),
            });
        }
        let status = StatusOptions {
            addresses: self.publish_address,
            identity: self
                .pod_name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(default_identity),
            lease_namespace: self
                .pod_namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            lease_name: self.election_id,
            lease_duration: Duration::from_secs(self.lease_duration),
        };
        let policy_flag = if !self.xdp_deny_cidr.is_empty() {
            Some("--xdp-deny-cidr")
        } else if self.xdp_syn_rate.is_some() {
            Some("--xdp-syn-rate")
        } else if self.xdp_strict_hosts {
            Some("--xdp-strict-hosts")
        } else {
            None
        };
        if let (Some(flag), None) = (policy_flag, &self.xdp_iface) {
            return Err(ConfigError::Invalid {
                flag,
                value: String::new(),
                reason: "XDP policy needs --xdp-iface".into(),
            });
        }
        let deny = self
            .xdp_deny_cidr
            .iter()
            .map(|v| {
                v.parse::<Cidr>().map_err(|reason| ConfigError::Invalid {
                    flag: "--xdp-deny-cidr",
                    value: v.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_backend = self
            .default_backend_service
            .as_deref()
            .map(|v| {
                NamespacedName::parse(v).ok_or_else(|| ConfigError::Invalid {
                    flag: "--default-backend-service",
                    value: v.into(),
                    reason: "expected NAMESPACE/NAME".into(),
                })
            })
            .transpose()?;
        let default_certificate = self
            .default_ssl_certificate
            .as_deref()
            .map(|v| {
                NamespacedName::parse(v).ok_or_else(|| ConfigError::Invalid {
                    flag: "--default-ssl-certificate",
                    value: v.into(),
                    reason: "expected NAMESPACE/NAME of a kubernetes.io/tls Secret".into(),
                })
            })
            .transpose()?;
        let xdp = match self.xdp_iface {
            Some(iface) if iface.is_empty() => {
                return Err(ConfigError::Invalid {
                    flag: "--xdp-iface",
                    value: iface,
                    reason: "empty interface name".into(),
                });
            }
            Some(iface) => Some(XdpConfig {
                l4_snat: parse_port_range(&self.xdp_l4_snat_ports).ok_or_else(|| {
                    ConfigError::Invalid {
                        flag: "--xdp-l4-snat-ports",
                        value: self.xdp_l4_snat_ports.clone(),
                        reason: "expected LO-HI, two ports from 1024 with LO <= HI".into(),
                    }
                })?,
                iface,
                mode: self.xdp_mode,
                pin_path: self.xdp_pin_path,
                policy: PolicyFlags {
                    deny,
                    syn_rate: self.xdp_syn_rate.unwrap_or(0),
                    strict_hosts: self.xdp_strict_hosts,
                },
            }),
            None => None,
        };
        let access_log = match self.access_log.as_str() {
            "off" => None,
            v => Some(crate::proxy::access_log::Format::parse(v).ok_or_else(|| {
                ConfigError::Invalid {
                    flag: "--access-log",
                    value: v.into(),
                    reason: "expected upstreaminfo, json or off".into(),
                }
            })?),
        };
        let allow_loopback_upstreams =
            self.allow_loopback_upstreams || matches!(source, Source::Manifests(_));
        Ok(Config {
            source,
            http_addr: self.http_addr,
            https_addr: self.https_addr,
            admin_addr: self.admin_addr,
            default_certificate,
            classes: ClassOptions {
                ingress_class: self.ingress_class,
                controller_name: self.controller_name,
                watch_without_class: self.watch_ingress_without_class,
            },
            gateway_controller: self.gateway_controller_name,
            watch_namespace: self.watch_namespace,
            default_backend,
            allow_external_name: self.enable_external_name_services,
            configmap: self.configmap,
            tcp_services: self.tcp_services_configmap,
            udp_services: self.udp_services_configmap,
            allow_link_local_upstreams: self.allow_link_local_upstreams,
            allow_loopback_upstreams,
            xdp,
            limits: ProxyLimits {
                header_read_timeout: match self.client_header_timeout {
                    0 => {
                        return Err(ConfigError::Invalid {
                            flag: "--client-header-timeout",
                            value: "0".into(),
                            reason: "clients need at least a second".into(),
                        });
                    }
                    s => Duration::from_secs(s),
                },
                client_send_timeout: match self.client_send_timeout {
                    0 => {
                        return Err(ConfigError::Invalid {
                            flag: "--client-send-timeout",
                            value: "0".into(),
                            reason: "clients need at least a second".into(),
                        });
                    }
                    s => Duration::from_secs(s),
                },
                drain_timeout: Duration::from_secs(self.shutdown_grace_period),
                ..ProxyLimits::default()
            },
            shutdown_delay: Duration::from_secs(self.shutdown_delay),
            access_log,
            access_log_buffer: self.access_log_buffer,
            hsts: crate::model::config::Hsts {
                on: self.hsts,
                max_age: self.hsts_max_age,
                include_subdomains: self.hsts_include_subdomains,
                preload: self.hsts_preload,
            },
            client_address: crate::proxy::headers::ClientAddress {
                proxy_protocol: self.use_proxy_protocol,
                use_forwarded_headers: self.use_forwarded_headers,
                compute_full_forwarded_for: self.compute_full_forwarded_for,
                real_ip: false,
                trusted: self
                    .proxy_real_ip_cidr
                    .iter()
                    .map(|v| {
                        v.parse::<Cidr>().map_err(|reason| ConfigError::Invalid {
                            flag: "--proxy-real-ip-cidr",
                            value: v.clone(),
                            reason,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                no_request_id: false,
                forwarded_for: None,
            },
            worker_threads: match self.worker_threads {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        flag: "--worker-threads",
                        value: "0".into(),
                        reason: "at least one worker is needed".into(),
                    });
                }
                n => n,
            },
            manifest_poll: Duration::from_millis(500),
            status,
        })
    }
}

/// The host name (the node's, with host networking) and the process id.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "xingress".into()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests;

/// `LO-HI`, both from 1024, LO <= HI.
fn parse_port_range(v: &str) -> Option<(u16, u16)> {
    let (lo, hi) = v.trim().split_once('-')?;
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo >= 1024 && lo <= hi).then_some((lo, hi))
}

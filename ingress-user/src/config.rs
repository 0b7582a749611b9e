//! The agent's configuration as validated values: what `cli` parses the
//! command line into, and what the rest of the agent reads. No parsing
//! here (clap's `ValueEnum` derive only names the choices).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::ValueEnum;

use crate::model::{Cidr, ClassOptions, NamespacedName};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpMode {
    Auto,
    Native,
    Skb,
}

/// Where objects come from.
#[derive(Clone, Debug)]
pub enum Source {
    Manifests(PathBuf),
    /// The API server: this kubeconfig, else KUBECONFIG / in-cluster.
    Cluster {
        kubeconfig: Option<PathBuf>,
    },
}

/// Timeouts and limits of the proxy, each with a name.
#[derive(Clone, Debug)]
pub struct ProxyLimits {
    /// Time a client has to send the request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Time a write to the client may wait for it to read (slow-read guard).
    pub client_send_timeout: Duration,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list): 431 past it.
    pub max_header_bytes: usize,
    /// Time to establish a TCP connection to an endpoint (502 after).
    pub upstream_connect_timeout: Duration,
    /// Time for an endpoint to send the response head (504 after).
    pub upstream_response_timeout: Duration,
    /// Idle upstream connections are closed after this.
    pub upstream_idle_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            client_send_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub struct XdpConfig {
    pub iface: String,
    pub mode: XdpMode,
    pub pin_path: PathBuf,
    pub policy: PolicyFlags,
    /// `--xdp-l4-snat-ports`.
    pub l4_snat: (u16, u16),
}

/// Validated configuration of `xingress run`.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub classes: ClassOptions,
    /// `--gateway-controller-name`.
    pub gateway_controller: String,
    /// `--default-ssl-certificate`; else a self-signed certificate.
    pub default_certificate: Option<NamespacedName>,
    pub watch_namespace: Option<String>,
    pub default_backend: Option<NamespacedName>,
    /// `--configmap`.
    pub configmap: Option<NamespacedName>,
    /// `--tcp-services-configmap`, `--udp-services-configmap`.
    pub tcp_services: Option<NamespacedName>,
    pub udp_services: Option<NamespacedName>,
    pub allow_external_name: bool,
    /// `--allow-link-local-upstreams`.
    pub allow_link_local_upstreams: bool,
    /// Loopback upstreams: file mode, or `--allow-loopback-upstreams`.
    pub allow_loopback_upstreams: bool,
    pub xdp: Option<XdpConfig>,
    pub limits: ProxyLimits,
    /// `--shutdown-delay`: /readyz is 503 this long before the listeners close.
    pub shutdown_delay: Duration,
    /// `--access-log`: the format, `None` for off.
    pub access_log: Option<AccessLogFormat>,
    /// Where the client's address comes from.
    pub client_address: crate::model::client_address::ClientAddress,
    /// `--hsts*`, which the ConfigMap's `hsts*` keys override.
    pub hsts: crate::model::config::Hsts,
    pub access_log_buffer: usize,
    /// `None`: one per core.
    pub worker_threads: Option<usize>,
    /// How often the manifest directory is checked for changes.
    pub manifest_poll: Duration,
    /// Status write-back and leader election (Kubernetes mode).
    pub status: StatusOptions,
}

#[derive(Clone, Debug)]
pub struct StatusOptions {
    pub addresses: Vec<std::net::IpAddr>,
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
}

/// Settings of the XDP policy that come from flags, not from objects.
#[derive(Clone, Debug, Default)]
pub struct PolicyFlags {
    /// `--xdp-deny-cidr`.
    pub deny: Vec<Cidr>,
    /// `--xdp-syn-rate` (SYNs per second per source; 0: off).
    pub syn_rate: u32,
    /// `--xdp-strict-hosts`.
    pub strict_hosts: bool,
}

/// `--access-log` and `log-format-upstream`'s built-in formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// ingress-nginx's `log_format upstreaminfo`.
    Upstreaminfo,
    Json,
}

impl AccessLogFormat {
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "upstreaminfo" => Some(Self::Upstreaminfo),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

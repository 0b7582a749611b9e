//! Wires the agent together: source → translate → snapshot → {proxy, admin,
//! data plane}; owns readiness, signals and the drain on shutdown.

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use ingress_common::{F_LISTENER_HTTP, F_LISTENER_TLS};
use tokio::net::TcpListener;

use crate::{
    admin::{self, Admin},
    config::{Config, Source, XdpConfig},
    dataplane::{Dataplane, Policy, PolicyFlags, PolicySync},
    k8s::{
        ManifestDir, cluster,
        dirwatch::{Changes, DirWatch},
        leader::{self, LeaseConfig},
        status::{self, StatusConfig},
    },
    limit::Limiters,
    metrics::{Metrics, ReloadPhase},
    model::{NamespacedName, Objects, Severity, TranslateOptions, Warning, translate},
    proxy::{self, Proxy, guard::UpstreamGuard},
    shutdown::{self, Shutdown},
    snapshot::{Snapshot, SnapshotCell},
    tls::{CertError, CertStore, server_config},
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("access log writer: {0}")]
    AccessLog(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Cert(#[from] CertError),
    #[error("{0}")]
    Cluster(#[from] cluster::ClusterError),
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, what, source })
}

/// Runs until SIGINT or SIGTERM, then drains and detaches.
pub async fn run(config: Config) -> Result<(), AppError> {
    // Before anything else: a SIGHUP during start-up must not kill us.
    let mut signals = Signals::new()?;
    let http = bind(config.http_addr, "HTTP").await?;
    let https = bind(config.https_addr, "HTTPS").await?;
    let admin_listener = bind(config.admin_addr, "admin").await?;
    let port = |l: &TcpListener, fallback: SocketAddr| {
        l.local_addr().map_or(fallback.port(), |a| a.port())
    };
    let (http_port, https_port) = (
        port(&http, config.http_addr),
        port(&https, config.https_addr),
    );
    tracing::info!(http = %config.http_addr, https = %config.https_addr, admin = %config.admin_addr, "listening");

    let snapshots = SnapshotCell::new();
    let metrics = Arc::new(Metrics::default());
    metrics.set_controller(
        &config.classes.ingress_class,
        &config.status.lease_namespace,
        &config.status.identity,
    );
    let (trigger, shutdown) = shutdown::channel();
    // Readiness turns off first, the listeners close `--shutdown-delay` later.
    let (ready_off, not_ready) = shutdown::channel();

    // XDP is an accelerator: when it cannot load, L7 still serves every route.
    let listeners = [(http_port, F_LISTENER_HTTP), (https_port, F_LISTENER_TLS)];
    let mut dataplane = config
        .xdp
        .as_ref()
        .and_then(|x| match start_dataplane(x, &listeners) {
            Ok(dp) => Some(dp),
            Err(e) => {
                tracing::error!("XDP disabled, serving L7 only: {e}");
                None
            }
        });
    // The TCP and UDP services' steering in XDP.
    let l4_xdp = match (dataplane.as_mut(), &config.xdp) {
        (Some(dp), Some(x)) => match dp.take_l4(
            x.l4_snat,
            crate::dataplane::l4::Ageing {
                opening: Duration::from_secs(30),
                closing: Duration::from_secs(30),
                idle: Duration::from_secs(600),
            },
        ) {
            Some(Ok(l4)) => {
                crate::dataplane::l4::reserve_ports(x.l4_snat);
                Some(l4)
            }
            Some(Err(e)) => {
                tracing::error!(
                    "XDP steering of TCP and UDP services is off (the relay serves them): {e}"
                );
                None
            }
            None => None,
        },
        _ => None,
    };
    let policy = match (dataplane.as_mut(), &config.xdp) {
        (Some(dp), Some(x)) => dp.take_policy().map(|maps| {
            let sync = PolicySync::new(maps).with_flows(dp.flows());
            dp.stats().set_names(sync.names());
            (sync, x.policy.clone())
        }),
        _ => None,
    };

    let access_log = match config.access_log {
        None => None,
        Some(format) => Some(
            proxy::access_log::AccessLog::start(
                format,
                config.access_log_buffer,
                Box::new(std::io::stdout()),
            )
            .map_err(AppError::AccessLog)?,
        ),
    };
    // The agent's own listeners are never an upstream, of the proxy or the relay.
    let guard = || {
        UpstreamGuard::new(
            [&http, &https, &admin_listener]
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .collect(),
            !config.allow_loopback_upstreams,
            config.allow_link_local_upstreams,
        )
    };
    // TCP and UDP services: the userspace relay.
    let l4_ports = crate::l4::L4Ports::new(
        config.http_addr.ip(),
        snapshots.clone(),
        guard(),
        shutdown.clone(),
    );
    let admin = Arc::new(Admin {
        l4: Some(l4_ports.clone()),
        l4_xdp: l4_xdp.clone(),
        access_log: access_log.clone(),
        snapshots: snapshots.clone(),
        metrics: metrics.clone(),
        xdp: dataplane.as_ref().map(Dataplane::stats),
        shutdown: not_ready,
    });
    let proxy = Proxy::new(
        snapshots.clone(),
        metrics.clone(),
        dataplane.as_ref().map(Dataplane::flows),
        proxy::ProxySettings {
            limits: config.limits.clone(),
            https_port: Some(https_port),
            guard: guard(),
            access_log: access_log.clone(),
            client_address: config.client_address.clone(),
        },
    );
    let tls = server_config(snapshots.clone())?;
    // Gateway listeners on ports other than 80 and 443.
    let gateway_ports = proxy::ports::GatewayPorts::new(
        (config.http_addr.ip(), config.https_addr.ip()),
        proxy.clone(),
        tls.clone(),
        shutdown.clone(),
    );

    let mut publisher = Publisher::new(&config, snapshots.clone(), metrics, policy)?;
    publisher.opts.gateway_ports = Some(gateway_ports.clone());
    publisher.ports = Some(gateway_ports.clone());
    publisher.l4_ports = Some(l4_ports.clone());
    publisher.l4_xdp = l4_xdp.clone();
    if let Some(l4) = l4_xdp.clone() {
        tokio::spawn(crate::dataplane::l4::age_flows(l4, shutdown.clone()));
    }
    // The ConfigMap's `log-format-upstream` reaches the log with each snapshot.
    publisher.access_log = access_log;
    let source = match &config.source {
        Source::Manifests(dir) => tokio::spawn(watch_manifests(
            ManifestDir::new(dir),
            publisher,
            config.manifest_poll,
            shutdown.clone(),
        )),
        Source::Cluster { kubeconfig } => {
            let client = cluster::client(kubeconfig.as_deref()).await?;
            let status = ClusterStatus {
                config: StatusConfig {
                    addresses: config.status.addresses.clone(),
                    controller: config.classes.controller_name.clone(),
                    instance: config.status.identity.clone(),
                },
                lease: LeaseConfig {
                    namespace: config.status.lease_namespace.clone(),
                    name: config.status.lease_name.clone(),
                    identity: config.status.identity.clone(),
                    duration: config.status.lease_duration,
                },
            };
            tokio::spawn(watch_cluster(
                client,
                config.watch_namespace.clone(),
                publisher,
                status,
                shutdown.clone(),
            ))
        }
    };
    // The admin listener outlives the drain, so probes see /readyz turn 503.
    let (admin_stop, admin_stopped) = shutdown::channel();
    let admin_task = tokio::spawn(admin::serve(admin, admin_listener, admin_stopped));
    tokio::spawn(proxy.clone().sweep_idle(shutdown.clone()));
    let http_task = tokio::spawn(proxy::serve_http(proxy.clone(), http, shutdown.clone()));
    let https_task = tokio::spawn(proxy::serve_https(proxy, https, tls, shutdown.clone()));

    signals.next().await;
    // Readiness off first; the listeners keep serving for the delay, so
    // load balancers stop sending new clients before anyone is refused.
    ready_off.fire();
    if !config.shutdown_delay.is_zero() {
        tracing::info!(
            delay = ?config.shutdown_delay,
            "shutting down: /readyz answers 503; listeners stay open for --shutdown-delay (a second signal skips it)"
        );
        tokio::select! {
            () = tokio::time::sleep(config.shutdown_delay) => {}
            () = signals.next() => {}
        }
    }
    tracing::info!(grace = ?config.limits.drain_timeout, "shutting down: listeners closed, draining in-flight requests");
    trigger.fire();
    let _ = tokio::join!(
        http_task,
        https_task,
        source,
        gateway_ports.drained(),
        l4_ports.drained()
    );
    admin_stop.fire();
    let _ = admin_task.await;
    if let Some(dp) = dataplane.as_mut()
        && let Err(e) = dp.detach()
    {
        tracing::warn!("{e}");
    }
    tracing::info!("stopped");
    Ok(())
}

fn start_dataplane(
    x: &XdpConfig,
    listeners: &[(u16, u32)],
) -> Result<Dataplane, crate::dataplane::DataplaneError> {
    let mut dp = Dataplane::load(&x.pin_path)?;
    dp.spawn_log_drain();
    dp.set_listeners(listeners)?;
    dp.attach(&x.iface, x.mode)?;
    Ok(dp)
}

/// SIGTERM and SIGINT stop the agent; SIGHUP is logged and ignored (the
/// configuration is watched and applied as it changes: there is nothing
/// to re-read), where its default action would kill the agent silently.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, AppError> {
        use tokio::signal::unix::{SignalKind, signal};
        let s = |kind| signal(kind).map_err(AppError::Signal);
        Ok(Self {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            hup: s(SignalKind::hangup())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => tracing::info!(
                    "SIGHUP ignored: the configuration is watched and applied as it changes"
                ),
            }
        }
    }
}

/// Turns object sets into published snapshots; shared by every source.
/// Keeps what must outlive one snapshot: the last good certificates and
/// which warnings were already logged.
pub struct Publisher {
    opts: TranslateOptions,
    default_certificate: Option<NamespacedName>,
    certs: CertStore,
    snapshots: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
    reported: HashSet<Warning>,
    /// The access log, told the ConfigMap's log format on each publish.
    pub access_log: Option<Arc<proxy::access_log::AccessLog>>,
    /// Where the access log goes now (`None`: stdout).
    access_log_path: Option<std::path::PathBuf>,
    /// The flags' client-address rules, which the ConfigMap's keys override.
    client_address: proxy::headers::ClientAddress,
    /// Per-source limiter counters, kept across snapshots.
    limiters: Limiters,
    /// The XDP policy maps and the flags that shape them, when XDP is on.
    policy: Option<(PolicySync, PolicyFlags)>,
    /// Gateway listener ports, served as each snapshot says.
    pub ports: Option<Arc<proxy::ports::GatewayPorts>>,
    /// The TCP and UDP services' ports, likewise.
    pub l4_ports: Option<Arc<crate::l4::L4Ports>>,
    /// Their steering in XDP, when XDP is on.
    pub l4_xdp: Option<crate::dataplane::l4::SharedL4>,
}

impl Publisher {
    pub fn new(
        config: &Config,
        snapshots: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        policy: Option<(PolicySync, PolicyFlags)>,
    ) -> Result<Self, CertError> {
        Ok(Self {
            access_log: None,
            access_log_path: None,
            client_address: config.client_address.clone(),
            opts: TranslateOptions {
                classes: config.classes.clone(),
                watch_namespace: config.watch_namespace.clone(),
                default_backend: config.default_backend.clone(),
                allow_external_name: config.allow_external_name,
                configmap: config.configmap.clone(),
                tcp_services: config.tcp_services.clone(),
                udp_services: config.udp_services.clone(),
                gateway_controller: config.gateway_controller.clone(),
                gateway_addresses: config
                    .status
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                gateway_ports: None,
                hsts: config.hsts,
            },
            default_certificate: config.default_certificate.clone(),
            certs: {
                let certs = CertStore::new()?;
                tracing::info!(fingerprint = %certs.self_signed_fingerprint(), "generated the self-signed default certificate");
                certs
            },
            snapshots,
            metrics,
            reported: HashSet::new(),
            limiters: Limiters::default(),
            policy,
            ports: None,
            l4_ports: None,
            l4_xdp: None,
        })
    }

    /// Translates `objects` (with the source's own `warnings`) and publishes
    /// the result as the next snapshot.
    pub fn publish(&mut self, objects: &Objects, mut warnings: Vec<Warning>) -> Arc<Snapshot> {
        let started = std::time::Instant::now();
        let mut translation = translate(objects, &self.opts);
        warnings.append(&mut translation.warnings);
        if let Some(log) = &self.access_log {
            log.set_template(translation.log_template.clone());
            // `access-log-path`: reopened when it changes; one that cannot
            // be opened is said, and the log stays where it was.
            if translation.access_log_path != self.access_log_path {
                match log.set_output(translation.access_log_path.as_deref()) {
                    Ok(()) => {
                        tracing::info!(path = ?translation.access_log_path, "the access log goes to a new place");
                        self.access_log_path = translation.access_log_path.clone();
                    }
                    Err(e) => {
                        let path = translation
                            .access_log_path
                            .as_deref()
                            .unwrap_or(std::path::Path::new("/dev/stdout"));
                        warnings.push(
                            Warning::error(
                                format!("ConfigMap {}", self.opts.configmap.as_ref().map(ToString::to_string).unwrap_or_default()),
                                format!("key access-log-path: cannot open {}: {e}; the access log stays where it was", path.display()),
                            )
                            .because("InvalidConfigMapKey"),
                        );
                    }
                }
            }
        }
        let mut tls = self.certs.build(
            objects,
            &translation.tls,
            self.default_certificate.as_ref(),
            &mut warnings,
        );
        self.certs
            .add_client_auth(&mut tls, objects, &translation.client_auth, &mut warnings);
        // Log each problem once, not on every reload.
        for w in warnings.iter().filter(|w| !self.reported.contains(*w)) {
            match w.severity {
                Severity::Error => tracing::warn!(object = %w.object, "{}", w.message),
                Severity::Note => tracing::info!(object = %w.object, "{}", w.message),
            }
        }
        self.reported = warnings.iter().cloned().collect();
        // XDP learns new hosts before the snapshot serves them.
        if let Some((sync, flags)) = &mut self.policy {
            match sync.apply(&Policy::new(&translation.table, flags)) {
                Ok(report) => {
                    if !report.skipped.is_empty() {
                        tracing::info!(hosts = ?report.skipped, "hosts XDP cannot key (longer than 64 bytes) are decided by the agent");
                    }
                    tracing::debug!(
                        upserts = report.upserts,
                        deletes = report.deletes,
                        "XDP policy synced"
                    );
                }
                Err(e) => tracing::error!("XDP policy sync failed, the previous policy stays: {e}"),
            }
        }
        translation.warnings = warnings;
        let ingresses = translation.ingresses.len();
        let stats = self.metrics.route_stats(&translation.table.metric_labels());
        let limiters = self.limiters.for_table(translation.table.limits());
        let client_address = Arc::new(self.client_address.with_keys(&translation.client_address));
        self.metrics.set_cert_expiry(tls.expiry.clone());
        let snap = self
            .snapshots
            .publish(translation, stats, limiters, tls, client_address);
        self.metrics.published();
        if let Some(ports) = &self.ports {
            ports.sync(&snap.table.gateway_ports);
        }
        if let Some(ports) = &self.l4_ports {
            ports.sync(&snap.table.l4);
            // XDP steers once the relay (its fallback) listens.
            if let Some(l4) = &self.l4_xdp {
                let allowed = |ep| ports.allowed(ep);
                let mut l4 = l4.lock().unwrap_or_else(|e| e.into_inner());
                match l4.apply(&snap.table.l4, &allowed) {
                    Ok(r) => tracing::debug!(?r, "XDP L4 services synced"),
                    Err(e) => tracing::error!("XDP L4 sync failed, the relay serves: {e}"),
                }
            }
        }
        let took = started.elapsed();
        self.metrics.reload_phase(ReloadPhase::Build, took);
        tracing::info!(
            generation = snap.generation,
            build_ms = took.as_secs_f64() * 1e3,
            ingresses,
            hosts = snap.table.host_names().count(),
            tls_hosts = snap.tls.hosts().len(),
            warnings = snap.warnings.len(),
            "routing snapshot live"
        );
        snap
    }
}

/// File mode: re-reads the directory whenever its content changes and
/// publishes a new snapshot. inotify wakes the reload at once; the poll
/// (a cheap fingerprint of names, sizes and times) is the fallback. Read
/// errors keep the last good snapshot.
async fn watch_manifests(
    dir: ManifestDir,
    publisher: Publisher,
    poll: std::time::Duration,
    shutdown: Shutdown,
) {
    let publisher = Arc::new(std::sync::Mutex::new(publisher));
    let mut watch = match DirWatch::new(dir.path()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.path().display(), "no inotify, polling every {poll:?}: {e}");
            None
        }
    };
    let mut last_fingerprint = None;
    // A reported change is always re-read, the files it names from disk:
    // two writes within one timestamp tick can leave the fingerprint (and
    // a file's stamp) unchanged.
    let mut reported = Changes::everything();
    loop {
        let d = dir.clone();
        let last = last_fingerprint.clone();
        let p = publisher.clone();
        let changes = std::mem::take(&mut reported);
        // Reading, parsing, translating and certificate parsing are blocking work.
        let result = tokio::task::spawn_blocking(move || {
            let fp = d.fingerprint()?;
            if changes.is_empty() && last.as_ref() == Some(&fp) {
                return Ok(None);
            }
            if changes.everything {
                d.forget_all();
            } else {
                d.forget(&changes.names);
            }
            let read = std::time::Instant::now();
            let loaded = d.load()?;
            let mut publisher = p.lock().unwrap_or_else(|e| e.into_inner());
            publisher
                .metrics
                .reload_phase(ReloadPhase::Read, read.elapsed());
            publisher.publish(&loaded.objects, loaded.warnings);
            Ok::<_, std::io::Error>(Some(fp))
        })
        .await;
        match result {
            Ok(Ok(Some(fp))) => last_fingerprint = Some(fp),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %dir.path().display(), "cannot read manifests, keeping the last snapshot: {e}")
            }
            Err(e) => tracing::error!("manifest reload task failed: {e}"),
        }
        let changed = async {
            match watch.as_mut() {
                Some(w) => {
                    let mut changes = match w.changed().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("inotify failed, polling only: {e}");
                            watch = None;
                            return std::future::pending().await;
                        }
                    };
                    // Let a burst of writes settle into one reload.
                    while let Ok(Ok(more)) =
                        tokio::time::timeout(MANIFEST_SETTLE, w.changed()).await
                    {
                        changes.extend(more);
                    }
                    changes
                }
                None => std::future::pending().await,
            }
        };
        reported = tokio::select! {
            () = tokio::time::sleep(poll) => Changes::default(),
            c = changed => c,
            () = shutdown.wait() => return,
        };
    }
}

/// Quiet time after a reported change before the directory is re-read.
const MANIFEST_SETTLE: std::time::Duration = std::time::Duration::from_millis(5);

/// What Kubernetes mode writes back, and the election of who writes it.
struct ClusterStatus {
    config: StatusConfig,
    lease: LeaseConfig,
}

/// Kubernetes mode: the first snapshot once every store has listed, then one
/// per debounced burst of changes. Publishing runs on the blocking pool.
/// Each published snapshot goes to the status writer, which acts only while
/// this agent holds the leader Lease.
async fn watch_cluster(
    client: kube::Client,
    namespace: Option<String>,
    publisher: Publisher,
    status: ClusterStatus,
    shutdown: Shutdown,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let gateway_api = cluster::gateway_api_installed(&client).await;
    let stores = cluster::start(
        &client,
        namespace.as_deref(),
        &[
            &publisher.opts.configmap,
            &publisher.opts.tcp_services,
            &publisher.opts.udp_services,
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>(),
        gateway_api,
        changed.clone(),
        &shutdown,
    );
    let (leading, election) = leader::spawn(client.clone(), status.lease, shutdown.clone());
    let (live_tx, live) = tokio::sync::watch::channel(None);
    let writer = tokio::spawn(status::run(
        client,
        stores.clone(),
        status.config,
        leading,
        live,
        shutdown.clone(),
    ));
    let ready = tokio::select! {
        ready = stores.ready() => ready.is_ok(),
        () = shutdown.wait() => false,
    };
    if ready {
        tracing::info!("initial lists complete");
        let publisher = Arc::new(std::sync::Mutex::new(publisher));
        loop {
            let (s, p) = (stores.clone(), publisher.clone());
            let published = tokio::task::spawn_blocking(move || {
                let objects = s.objects();
                p.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .publish(&objects, Vec::new())
            })
            .await;
            match published {
                Ok(snap) => {
                    live_tx.send_replace(Some(snap));
                }
                Err(e) => tracing::error!("snapshot task failed: {e}"),
            }
            if !cluster::next_change(&changed, &shutdown).await {
                break;
            }
        }
    }
    // The election releases the Lease on the way out.
    shutdown.wait().await;
    let _ = tokio::join!(election, writer);
}

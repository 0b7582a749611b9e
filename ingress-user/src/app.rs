//! Wires the agent together: source → translate → snapshot → {proxy, admin,
//! data plane}; owns readiness, signals and the drain on shutdown.

use std::{collections::HashSet, net::SocketAddr, sync::Arc};

use ingress_common::F_LISTENER_HTTP;
use tokio::net::TcpListener;

use crate::{
    admin::{self, Admin},
    cli::{Config, Source},
    dataplane::Dataplane,
    k8s::ManifestDir,
    metrics::Metrics,
    model::{Severity, TranslateOptions, Warning, translate},
    proxy::{self, Proxy},
    shutdown::{self, Shutdown},
    snapshot::SnapshotCell,
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
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, what, source })
}

/// Runs until SIGINT or SIGTERM, then drains and detaches.
pub async fn run(config: Config) -> Result<(), AppError> {
    let http = bind(config.http_addr, "HTTP").await?;
    let admin_listener = bind(config.admin_addr, "admin").await?;
    let http_port = http
        .local_addr()
        .map_or(config.http_addr.port(), |a| a.port());
    tracing::info!(http = %config.http_addr, admin = %config.admin_addr, "listening");

    let snapshots = SnapshotCell::new();
    let metrics = Arc::new(Metrics::default());
    let (trigger, shutdown) = shutdown::channel();

    // XDP is an accelerator: when it cannot load, L7 still serves every route.
    let mut dataplane = config.xdp.as_ref().and_then(|x| {
        match start_dataplane(&x.iface, x.mode, &[(http_port, F_LISTENER_HTTP)]) {
            Ok(dp) => Some(dp),
            Err(e) => {
                tracing::error!("XDP disabled, serving L7 only: {e}");
                None
            }
        }
    });

    let admin = Arc::new(Admin {
        snapshots: snapshots.clone(),
        metrics: metrics.clone(),
        xdp: dataplane.as_ref().map(Dataplane::stats),
        shutdown: shutdown.clone(),
    });
    let proxy = Proxy::new(snapshots.clone(), metrics.clone(), config.limits.clone());

    let opts = TranslateOptions {
        classes: config.classes.clone(),
        watch_namespace: config.watch_namespace.clone(),
        default_backend: config.default_backend.clone(),
        allow_external_name: config.allow_external_name,
    };
    let source = match &config.source {
        Source::Manifests(dir) => tokio::spawn(watch_manifests(
            ManifestDir::new(dir),
            opts,
            snapshots.clone(),
            metrics,
            config.manifest_poll,
            shutdown.clone(),
        )),
    };
    let admin_task = tokio::spawn(admin::serve(admin, admin_listener, shutdown.clone()));
    let http_task = tokio::spawn(proxy::serve_http(proxy, http, shutdown.clone()));

    wait_for_signal().await?;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    trigger.fire();
    let _ = http_task.await;
    let _ = source.await;
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
    iface: &str,
    mode: crate::cli::XdpMode,
    listeners: &[(u16, u32)],
) -> Result<Dataplane, crate::dataplane::DataplaneError> {
    let mut dp = Dataplane::load()?;
    dp.spawn_log_drain();
    dp.set_listeners(listeners)?;
    dp.attach(iface, mode)?;
    Ok(dp)
}

async fn wait_for_signal() -> Result<(), AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signal)?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

/// File mode: re-reads the directory whenever its content changes and
/// publishes a new snapshot. Read errors keep the last good snapshot.
async fn watch_manifests(
    dir: ManifestDir,
    opts: TranslateOptions,
    snapshots: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
    poll: std::time::Duration,
    shutdown: Shutdown,
) {
    let mut last_fingerprint = None;
    let mut reported: HashSet<Warning> = HashSet::new();
    loop {
        let d = dir.clone();
        let o = opts.clone();
        let last = last_fingerprint.clone();
        let result = tokio::task::spawn_blocking(move || {
            let fp = d.fingerprint()?;
            if last.as_ref() == Some(&fp) {
                return Ok(None);
            }
            let loaded = d.load()?;
            let translation = translate(&loaded.objects, &o);
            Ok::<_, std::io::Error>(Some((fp, loaded, translation)))
        })
        .await;
        match result {
            Ok(Ok(Some((fp, loaded, mut translation)))) => {
                let mut warnings = loaded.warnings;
                warnings.append(&mut translation.warnings);
                // Log each problem once, not on every reload.
                let current: HashSet<Warning> = warnings.iter().cloned().collect();
                for w in warnings.iter().filter(|w| !reported.contains(*w)) {
                    match w.severity {
                        Severity::Error => tracing::warn!(object = %w.object, "{}", w.message),
                        Severity::Note => tracing::info!(object = %w.object, "{}", w.message),
                    }
                }
                reported = current;
                translation.warnings = warnings;
                let ingresses = translation.ingresses.len();
                let host_stats = metrics.host_stats(translation.table.labels());
                let snap = snapshots.publish(translation, host_stats);
                tracing::info!(
                    generation = snap.generation,
                    files = loaded.files,
                    ingresses,
                    hosts = snap.table.host_names().count(),
                    warnings = snap.warnings.len(),
                    "routing snapshot live"
                );
                last_fingerprint = Some(fp);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %dir.path().display(), "cannot read manifests, keeping the last snapshot: {e}")
            }
            Err(e) => tracing::error!("manifest reload task failed: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.wait() => return,
        }
    }
}

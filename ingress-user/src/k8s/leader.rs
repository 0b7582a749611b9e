//! Lease-based leader election (coordination.k8s.io/v1), so that exactly one
//! agent of the DaemonSet writes Ingress status and Events.
//!
//! The protocol is client-go's: the holder renews `renewTime` every retry
//! period; a candidate takes the Lease over only when it has seen the record
//! unchanged for a whole `leaseDurationSeconds` by its *own* clock (so clock
//! skew between nodes cannot cut a live leader short), or when the record
//! names no holder. Every write carries the resourceVersion it read, so two
//! candidates racing for an expired Lease cannot both win. A leader that
//! cannot renew within the renew deadline steps down before its Lease can
//! expire for the others; on shutdown it releases the Lease so a successor
//! takes over at once.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::shutdown::Shutdown;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This agent's identity in `holderIdentity` (its pod name).
    pub identity: String,
    pub duration: Duration,
}

impl LeaseConfig {
    fn retry(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(100))
    }

    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// Starts the election; the receiver says whether this agent leads now.
/// The task ends on shutdown, after releasing the Lease if it held it.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    shutdown: Shutdown,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let api = Api::<Lease>::namespaced(client, &config.namespace);
    let task = tokio::spawn(run(api, config, tx, shutdown));
    (rx, task)
}

/// What a candidate last saw, and when (by its own clock).
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Leading,
    Following,
}

async fn run(api: Api<Lease>, config: LeaseConfig, tx: watch::Sender<bool>, shutdown: Shutdown) {
    let mut observed: Option<Observed> = None;
    let mut last_renew: Option<Instant> = None;
    let mut failures_logged = false;
    loop {
        let leading = *tx.borrow();
        match try_acquire_or_renew(&api, &config, &mut observed).await {
            Ok(Outcome::Leading) => {
                last_renew = Some(Instant::now());
                failures_logged = false;
                if !leading {
                    tracing::info!(lease = %config.name, identity = %config.identity, "became the leader: this agent writes Ingress status and Events");
                    tx.send_replace(true);
                }
            }
            Ok(Outcome::Following) => {
                failures_logged = false;
                if leading {
                    tracing::warn!(lease = %config.name, "lost the lease to another agent");
                    tx.send_replace(false);
                }
            }
            Err(e) => {
                if !failures_logged {
                    tracing::warn!(lease = %config.name, "leader election: {e}");
                    failures_logged = true;
                }
                if leading && last_renew.is_none_or(|t| t.elapsed() >= config.renew_deadline()) {
                    tracing::warn!(lease = %config.name, "could not renew the lease in time: stepping down");
                    tx.send_replace(false);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.retry()) => {}
            () = shutdown.wait() => break,
        }
    }
    if *tx.borrow() {
        tx.send_replace(false);
        match release(&api, &config).await {
            Ok(()) => tracing::info!(lease = %config.name, "released the lease"),
            Err(e) => {
                tracing::warn!(lease = %config.name, "could not release the lease (it expires by itself): {e}")
            }
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<Outcome, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds(config.duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leading),
            Err(e) if is_conflict(&e) => Ok(Outcome::Following),
            Err(e) => Err(e),
        };
    };
    let rv = lease.metadata.resource_version.clone();
    if observed.as_ref().is_none_or(|o| o.resource_version != rv) {
        *observed = Some(Observed {
            resource_version: rv,
            at: Instant::now(),
        });
    }
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    let mine = holder == Some(config.identity.as_str());
    if !mine && holder.is_some() {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(config.duration, Duration::from_secs);
        let since = observed.as_ref().map_or(Duration::ZERO, |o| o.at.elapsed());
        if since < duration {
            return Ok(Outcome::Following);
        }
        tracing::info!(lease = %config.name, previous = holder, "the lease expired: taking it over");
    }
    if !mine {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(seconds(config.duration));
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Outcome::Leading),
        // Somebody wrote the Lease since we read it: look again next round.
        Err(e) if is_conflict(&e) => Ok(Outcome::Following),
        Err(e) => Err(e),
    }
}

/// Empties the holder so a successor need not wait for the Lease to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

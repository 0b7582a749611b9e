//! What the leader writes back to the cluster: `status.loadBalancer.ingress`
//! of our Ingresses, and Events for bad objects.
//!
//! It works from the *published* snapshot, so an Ingress gets its address
//! only once its routes are live (a client may send traffic the moment the
//! address appears). It reconciles rather than reacts: on every snapshot,
//! on becoming leader, and every `RESYNC`, it compares each Ingress's current
//! status (from the reflector store) with what it should be, and patches only
//! the difference. Ingresses that stop being ours get their status cleared
//! when it is ours to clear: written by this agent, or exactly our addresses.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{core::v1::ObjectReference, networking::v1::Ingress};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use serde_json::json;
use tokio::sync::watch;

use super::cluster::Stores;
use crate::{
    model::{NamespacedName, Severity, Warning},
    shutdown::Shutdown,
    snapshot::Snapshot,
};

/// Reconcile even without a change, to repair status someone else edited.
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct StatusConfig {
    /// Written to status.loadBalancer.ingress; empty: status is not written.
    pub addresses: Vec<IpAddr>,
    /// Events' reportingController / reportingInstance.
    pub controller: String,
    pub instance: String,
}

/// Runs until shutdown: writes status and Events while `leader` is true.
pub async fn run(
    client: Client,
    stores: Stores,
    config: StatusConfig,
    mut leader: watch::Receiver<bool>,
    mut live: watch::Receiver<Option<Arc<Snapshot>>>,
    shutdown: Shutdown,
) {
    if config.addresses.is_empty() {
        tracing::warn!(
            "no --publish-address (XINGRESS_PUBLISH_ADDRESS, the node IP in the DaemonSet): Ingress status is not written"
        );
    }
    let mut writer = Writer::new(client, config);
    loop {
        let leading = *leader.borrow_and_update();
        let snapshot = live.borrow_and_update().clone();
        match (leading, snapshot) {
            (true, Some(snap)) => writer.reconcile(&stores, &snap).await,
            (true, None) => {}
            (false, _) => writer.forget(),
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            r = live.changed() => if r.is_err() { return },
            () = tokio::time::sleep(RESYNC) => {}
            () = shutdown.wait() => return,
        }
    }
}

struct Writer {
    client: Client,
    addresses: Vec<String>,
    recorder: Recorder,
    /// What we last patched per Ingress, and the resourceVersion the patch
    /// was computed from (its echo in the store has a newer one).
    written: HashMap<NamespacedName, (Vec<String>, Option<String>)>,
    /// Warnings already published as Events while leading.
    emitted: HashSet<Warning>,
}

impl Writer {
    fn new(client: Client, config: StatusConfig) -> Self {
        let reporter = Reporter {
            controller: config.controller,
            instance: Some(config.instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            addresses: config.addresses.iter().map(IpAddr::to_string).collect(),
            written: HashMap::new(),
            emitted: HashSet::new(),
        }
    }

    /// No longer leading: a later term starts from what the cluster shows.
    fn forget(&mut self) {
        self.written.clear();
        self.emitted.clear();
    }

    async fn reconcile(&mut self, stores: &Stores, snap: &Snapshot) {
        if !self.addresses.is_empty() {
            self.reconcile_status(stores, snap).await;
        }
        self.publish_events(stores, snap).await;
    }

    async fn reconcile_status(&mut self, stores: &Stores, snap: &Snapshot) {
        let ours: HashSet<&NamespacedName> = snap.ingresses.iter().collect();
        for ing in stores.ingresses() {
            let id = NamespacedName::new(
                ing.metadata.namespace.clone().unwrap_or_default(),
                ing.metadata.name.clone().unwrap_or_default(),
            );
            let current = current_addresses(&ing);
            let want = if ours.contains(&id) {
                self.addresses.clone()
            } else if !current.is_empty()
                && (self.written.contains_key(&id) || current == self.addresses)
            {
                Vec::new()
            } else {
                continue;
            };
            if current == want {
                continue;
            }
            let rv = ing.metadata.resource_version.clone();
            if self.written.get(&id) == Some(&(want.clone(), rv.clone())) {
                continue; // patched already; the store has not seen it yet
            }
            match self.patch(&id, &want).await {
                Ok(()) => {
                    if want.is_empty() {
                        tracing::info!(ingress = %id, "status cleared: the Ingress is no longer ours");
                    } else {
                        tracing::info!(ingress = %id, addresses = ?want, "status written: routes are live");
                    }
                    self.written.insert(id, (want, rv));
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => tracing::warn!(ingress = %id, "cannot write status (retried later): {e}"),
            }
        }
    }

    async fn patch(&self, id: &NamespacedName, addresses: &[String]) -> Result<(), kube::Error> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &id.namespace);
        let ingress = if addresses.is_empty() {
            serde_json::Value::Null
        } else {
            addresses.iter().map(|ip| json!({"ip": ip})).collect()
        };
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        api.patch_status(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// One Event per new problem with a Kubernetes object.
    async fn publish_events(&mut self, stores: &Stores, snap: &Snapshot) {
        let current: HashSet<&Warning> = snap
            .warnings
            .iter()
            .filter(|w| w.severity == Severity::Error)
            .collect();
        self.emitted.retain(|w| current.contains(w));
        for w in current {
            if self.emitted.contains(w) {
                continue;
            }
            let Some(reference) = reference(stores, &w.object) else {
                self.emitted.insert(w.clone());
                continue;
            };
            let event = Event {
                type_: EventType::Warning,
                reason: w.reason.to_string(),
                note: Some(truncate(&w.message, 1024)),
                action: "Sync".into(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => {
                    self.emitted.insert(w.clone());
                }
                Err(e) => {
                    tracing::warn!(object = %w.object, "cannot publish Event (retried later): {e}")
                }
            }
        }
    }
}

fn current_addresses(ing: &Ingress) -> Vec<String> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The object a warning names (`Kind namespace/name`), with its uid when the
/// store has it, so `kubectl describe` shows the Event.
fn reference(stores: &Stores, object: &str) -> Option<ObjectReference> {
    let (kind, id) = object.split_once(' ')?;
    let id = NamespacedName::parse(id)?;
    let api_version = match kind {
        "Ingress" => "networking.k8s.io/v1",
        "Service" | "Secret" | "Endpoints" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        _ => return None,
    };
    Some(ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        uid: stores.uid(kind, &id),
        namespace: Some(id.namespace),
        name: Some(id.name),
        ..Default::default()
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}

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

use super::cluster::{GatewayStores, Stores, TlsRouteVersion};
use crate::{
    model::{
        NamespacedName, Severity, Warning,
        gateway::types::{
            Condition, GRPCRoute, Gateway, GatewayClass, GatewayClassStatus, HTTPRoute,
            RouteParentStatus, RouteStatus, TLSRoute, TLSRouteV1,
        },
    },
    proxy::access_log::time_iso8601,
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
    /// The last Gateway API status patch per object.
    gateway_written: HashMap<String, serde_json::Value>,
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
            gateway_written: HashMap::new(),
        }
    }

    /// No longer leading: a later term starts from what the cluster shows.
    fn forget(&mut self) {
        self.written.clear();
        self.emitted.clear();
        self.gateway_written.clear();
    }

    async fn reconcile(&mut self, stores: &Stores, snap: &Snapshot) {
        if !self.addresses.is_empty() {
            self.reconcile_status(stores, snap).await;
        }
        if let Some(g) = stores.gateway() {
            self.reconcile_gateway_api(g, snap).await;
        }
        self.publish_events(stores, snap).await;
    }

    /// Gateway API status: each condition as the snapshot computed it,
    /// its lastTransitionTime kept while its status stays; route parents of
    /// other controllers kept as they are.
    async fn reconcile_gateway_api(&mut self, stores: &GatewayStores, snap: &Snapshot) {
        let now = time_iso8601(std::time::SystemTime::now()).replace("+00:00", "Z");
        for c in &snap.gateway.classes {
            let Some(current) = stores.class(&c.name) else {
                continue;
            };
            let have = current.status.clone().unwrap_or_default();
            let want = GatewayClassStatus {
                conditions: with_times(&c.status.conditions, &have.conditions, &now),
            };
            if want != have {
                let api: Api<GatewayClass> = Api::all(self.client.clone());
                self.patch_gateway_status(&api, "GatewayClass", &c.name, &want)
                    .await;
            }
        }
        for g in &snap.gateway.gateways {
            let Some(id) = NamespacedName::parse(&g.name) else {
                continue;
            };
            let Some(current) = stores.gateway(&id) else {
                continue;
            };
            let have = current.status.clone().unwrap_or_default();
            let mut want = g.status.clone();
            want.conditions = with_times(&want.conditions, &have.conditions, &now);
            for l in &mut want.listeners {
                let before = have
                    .listeners
                    .iter()
                    .find(|h| h.name == l.name)
                    .map(|h| h.conditions.as_slice())
                    .unwrap_or_default();
                l.conditions = with_times(&l.conditions, before, &now);
            }
            if want != have {
                let api: Api<Gateway> = Api::namespaced(self.client.clone(), &id.namespace);
                self.patch_gateway_status(&api, "Gateway", &id.name, &want)
                    .await;
            }
        }
        for r in &snap.gateway.routes {
            let Some(id) = NamespacedName::parse(&r.name) else {
                continue;
            };
            let have = match r.kind {
                "GRPCRoute" => stores.grpc_route(&id).map(|c| c.status.clone()),
                "TLSRoute" => stores.tls_route(&id).map(|c| c.status.clone()),
                _ => stores.route(&id).map(|c| c.status.clone()),
            };
            let Some(have) = have else {
                continue;
            };
            let have = have.unwrap_or_default();
            let ours = r
                .status
                .parents
                .first()
                .map(|p| p.controller_name.clone())
                .unwrap_or_default();
            // Other controllers' entries stay; ours are replaced.
            let mut parents: Vec<RouteParentStatus> = have
                .parents
                .iter()
                .filter(|p| p.controller_name != ours)
                .cloned()
                .collect();
            for p in &r.status.parents {
                let mut p = p.clone();
                let before = have
                    .parents
                    .iter()
                    .find(|h| h.controller_name == ours && h.parent_ref == p.parent_ref)
                    .map(|h| h.conditions.as_slice())
                    .unwrap_or_default();
                p.conditions = with_times(&p.conditions, before, &now);
                parents.push(p);
            }
            let want = RouteStatus { parents };
            if want != have {
                if r.kind == "GRPCRoute" {
                    let api: Api<GRPCRoute> = Api::namespaced(self.client.clone(), &id.namespace);
                    self.patch_gateway_status(&api, r.kind, &id.name, &want)
                        .await;
                } else if r.kind == "TLSRoute" {
                    // In the version watched: the standard channel serves
                    // only v1.
                    if stores.tls_route_version() == Some(TlsRouteVersion::V1) {
                        let api: Api<TLSRouteV1> =
                            Api::namespaced(self.client.clone(), &id.namespace);
                        self.patch_gateway_status(&api, r.kind, &id.name, &want)
                            .await;
                    } else {
                        let api: Api<TLSRoute> =
                            Api::namespaced(self.client.clone(), &id.namespace);
                        self.patch_gateway_status(&api, r.kind, &id.name, &want)
                            .await;
                    }
                } else {
                    let api: Api<HTTPRoute> = Api::namespaced(self.client.clone(), &id.namespace);
                    self.patch_gateway_status(&api, r.kind, &id.name, &want)
                        .await;
                }
            }
        }
    }

    async fn patch_gateway_status<K, S>(&mut self, api: &Api<K>, kind: &str, name: &str, status: &S)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        S: serde::Serialize,
    {
        let patch = json!({"status": status});
        let key = format!("{kind} {}/{name}", api.resource_url());
        if self.gateway_written.get(&key) == Some(&patch) {
            return; // patched already; the store has not seen it yet
        }
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(kind, name, "Gateway API status written");
                self.gateway_written.insert(key, patch);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(kind, name, "cannot write status (retried later): {e}"),
        }
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
        "Gateway" | "HTTPRoute" | "GRPCRoute" => "gateway.networking.k8s.io/v1",
        "TLSRoute" => stores.gateway()?.tls_route_version()?.api_version(),
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

/// `want` with each condition's lastTransitionTime: the one `before` has
/// for the same type and status, else `now`.
fn with_times(want: &[Condition], before: &[Condition], now: &str) -> Vec<Condition> {
    want.iter()
        .map(|c| {
            let mut c = c.clone();
            c.last_transition_time = before
                .iter()
                .find(|b| {
                    b.type_ == c.type_ && b.status == c.status && !b.last_transition_time.is_empty()
                })
                .map_or_else(|| now.to_string(), |b| b.last_transition_time.clone());
            c
        })
        .collect()
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

//! Kubernetes mode: kube-runtime reflectors for the five kinds feed the same
//! `model::Objects` file mode builds. The first snapshot is published only
//! once every initial list is complete; later changes are debounced. Watch
//! errors (dropped streams, 410 Gone) are retried with backoff while the
//! stores, and so the served routes, stay as they were.

use std::{fmt::Debug, hash::Hash, path::Path, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        core::v1::{ConfigMap, Namespace, Secret, Service},
        discovery::v1::EndpointSlice,
        networking::v1::{Ingress, IngressClass},
    },
};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt, reflector,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::{
    model::{
        NamespacedName, Objects,
        gateway::types::{
            GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TLSRoute, TLSRouteV1,
        },
    },
    shutdown::Shutdown,
};

/// Quiet time after a change before a new snapshot is built, and the
/// longest a burst can delay it.
const DEBOUNCE: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot configure the Kubernetes client (no kubeconfig, not in a cluster?): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `--kubeconfig`, else KUBECONFIG / ~/.kube/config, else the in-cluster configuration.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// One store per kind (two for Secrets: TLS and Opaque).
#[derive(Clone)]
pub struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    /// Opaque Secrets: htpasswd files for `auth-type: basic`.
    opaque: Store<Secret>,
    /// ConfigMaps: the controller's (`--configmap`) and those its keys and
    /// the Ingresses' `custom-headers` name, anywhere (as ingress-nginx
    /// watches them); with `--watch-namespace`, that namespace's and, by
    /// name, the controller's and the TCP and UDP services ones.
    config_maps: Vec<Store<ConfigMap>>,
    /// Gateway API objects, when the cluster serves their API.
    gateway: Option<GatewayStores>,
}

#[derive(Clone)]
pub struct GatewayStores {
    classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    routes: Store<HTTPRoute>,
    grpc_routes: Store<GRPCRoute>,
    /// `None`: the cluster does not serve TLSRoute.
    tls_routes: Option<TlsRoutes>,
    grants: Store<ReferenceGrant>,
    /// Their labels select routes (`allowedRoutes.namespaces.from: Selector`).
    namespaces: Store<Namespace>,
}

/// What of the Gateway API the cluster serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayApi {
    /// GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant.
    pub installed: bool,
    /// The TLSRoute version watched: `v1` when served (the standard
    /// channel from v1.5 on), else `v1alpha2` (older experimental
    /// channels); `None` when neither is.
    pub tls_routes: Option<TlsRouteVersion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRouteVersion {
    V1,
    V1alpha2,
}

impl TlsRouteVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "gateway.networking.k8s.io/v1",
            Self::V1alpha2 => "gateway.networking.k8s.io/v1alpha2",
        }
    }
}

/// TLSRoutes in the version the cluster serves.
#[derive(Clone)]
enum TlsRoutes {
    V1(Store<TLSRouteV1>),
    V1alpha2(Store<TLSRoute>),
}

impl TlsRoutes {
    async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        match self {
            Self::V1(s) => s.wait_until_ready().await,
            Self::V1alpha2(s) => s.wait_until_ready().await,
        }
    }

    fn state(&self) -> Vec<Arc<TLSRoute>> {
        match self {
            Self::V1(s) => s
                .state()
                .iter()
                .map(|r| Arc::new(TLSRoute::from(&**r)))
                .collect(),
            Self::V1alpha2(s) => s.state(),
        }
    }

    fn get(&self, id: &NamespacedName) -> Option<Arc<TLSRoute>> {
        match self {
            Self::V1(s) => s
                .get(&ObjectRef::new(&id.name).within(&id.namespace))
                .map(|r| Arc::new(TLSRoute::from(&*r))),
            Self::V1alpha2(s) => s.get(&ObjectRef::new(&id.name).within(&id.namespace)),
        }
    }
}

/// Whether the cluster serves the Gateway API (its CRDs are installed):
/// without them the agent serves Ingresses only, and says so. TLSRoute
/// comes with the experimental channel's CRDs only, so it is asked apart.
pub async fn gateway_api_installed(client: &Client) -> GatewayApi {
    let installed = served(Api::<GatewayClass>::all(client.clone())).await;
    if !installed {
        tracing::info!(
            "the Gateway API (gateway.networking.k8s.io/v1) is not installed in this cluster: serving Ingresses only; install its CRDs and restart the agent to serve Gateways"
        );
        return GatewayApi::default();
    }
    let tls_routes = if served(Api::<TLSRouteV1>::all(client.clone())).await {
        Some(TlsRouteVersion::V1)
    } else if served(Api::<TLSRoute>::all(client.clone())).await {
        Some(TlsRouteVersion::V1alpha2)
    } else {
        tracing::info!(
            "TLSRoute (gateway.networking.k8s.io/v1 or v1alpha2) is not installed in this cluster: TLS listeners have no routes; install the Gateway API's CRDs of v1.5 or later and restart the agent to serve them"
        );
        None
    };
    GatewayApi {
        installed,
        tls_routes,
    }
}

/// Whether the API server serves a kind (a list of one item answers).
async fn served<K>(api: Api<K>) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    match api.list(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(e) => {
            // Installed or not, the reflectors retry; better to wait for
            // them than to ignore objects that exist.
            let kind = K::kind(&Default::default()).to_string();
            tracing::warn!("cannot tell whether {kind} is served ({e}); watching it");
            true
        }
    }
}

fn namespaced<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts one reflector per kind; `changed` is notified on every event.
pub fn start(
    client: &Client,
    namespace: Option<&str>,
    configmaps: &[&NamespacedName],
    gateway_api: GatewayApi,
    changed: Arc<Notify>,
    shutdown: &Shutdown,
) -> Stores {
    let all = watcher::Config::default();
    // TLS Secrets (certificates, client CAs) and Opaque ones (htpasswd
    // files); never service-account tokens, Helm releases or the like.
    let tls = watcher::Config::default().fields("type=kubernetes.io/tls");
    let opaque = watcher::Config::default().fields("type=Opaque");
    Stores {
        ingresses: reflect(
            namespaced::<Ingress>(client, namespace),
            all.clone(),
            &changed,
            shutdown,
        ),
        classes: reflect(
            Api::<IngressClass>::all(client.clone()),
            all.clone(),
            &changed,
            shutdown,
        ),
        services: reflect(
            namespaced::<Service>(client, namespace),
            all.clone(),
            &changed,
            shutdown,
        ),
        slices: reflect(
            namespaced::<EndpointSlice>(client, namespace),
            all,
            &changed,
            shutdown,
        ),
        secrets: reflect(
            namespaced::<Secret>(client, namespace),
            tls,
            &changed,
            shutdown,
        ),
        opaque: reflect(
            namespaced::<Secret>(client, namespace),
            opaque,
            &changed,
            shutdown,
        ),
        config_maps: {
            let mut stores = vec![reflect(
                namespaced::<ConfigMap>(client, namespace),
                watcher::Config::default(),
                &changed,
                shutdown,
            )];
            for id in configmaps {
                let Some(ns) = namespace else { break };
                if id.namespace == ns {
                    continue;
                }
                stores.push(reflect(
                    Api::<ConfigMap>::namespaced(client.clone(), &id.namespace),
                    watcher::Config::default().fields(&format!("metadata.name={}", id.name)),
                    &changed,
                    shutdown,
                ));
            }
            stores
        },
        gateway: gateway_api.installed.then(|| GatewayStores {
            classes: reflect(
                Api::<GatewayClass>::all(client.clone()),
                watcher::Config::default(),
                &changed,
                shutdown,
            ),
            gateways: reflect(
                namespaced::<Gateway>(client, namespace),
                watcher::Config::default(),
                &changed,
                shutdown,
            ),
            routes: reflect(
                namespaced::<HTTPRoute>(client, namespace),
                watcher::Config::default(),
                &changed,
                shutdown,
            ),
            grpc_routes: reflect(
                namespaced::<GRPCRoute>(client, namespace),
                watcher::Config::default(),
                &changed,
                shutdown,
            ),
            tls_routes: gateway_api.tls_routes.map(|v| match v {
                TlsRouteVersion::V1 => TlsRoutes::V1(reflect(
                    namespaced::<TLSRouteV1>(client, namespace),
                    watcher::Config::default(),
                    &changed,
                    shutdown,
                )),
                TlsRouteVersion::V1alpha2 => TlsRoutes::V1alpha2(reflect(
                    namespaced::<TLSRoute>(client, namespace),
                    watcher::Config::default(),
                    &changed,
                    shutdown,
                )),
            }),
            grants: reflect(
                namespaced::<ReferenceGrant>(client, namespace),
                watcher::Config::default(),
                &changed,
                shutdown,
            ),
            namespaces: reflect(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
                &changed,
                shutdown,
            ),
        }),
    }
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    shutdown: &Shutdown,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let shutdown = shutdown.clone();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(_)) => changed.notify_one(),
                    Some(Err(e)) => tracing::warn!(kind, "watch failed, retrying with backoff (served routes are kept): {e}"),
                    None => return,
                },
                () = shutdown.wait() => return,
            }
        }
    });
    reader
}

fn id<K: Resource>(obj: &K) -> NamespacedName {
    let meta = obj.meta();
    NamespacedName::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Stores {
    /// Waits until every initial list is complete.
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.ingresses.wait_until_ready().await?;
        self.classes.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        for cm in &self.config_maps {
            cm.wait_until_ready().await?;
        }
        if let Some(g) = &self.gateway {
            g.classes.wait_until_ready().await?;
            g.gateways.wait_until_ready().await?;
            g.routes.wait_until_ready().await?;
            g.grpc_routes.wait_until_ready().await?;
            if let Some(t) = &g.tls_routes {
                t.wait_until_ready().await?;
            }
            g.grants.wait_until_ready().await?;
            g.namespaces.wait_until_ready().await?;
        }
        self.opaque.wait_until_ready().await
    }

    /// Every Ingress as the API server last showed it (status included).
    pub fn ingresses(&self) -> Vec<Arc<Ingress>> {
        self.ingresses.state()
    }

    /// The Gateway API stores, when the cluster serves the API.
    pub fn gateway(&self) -> Option<&GatewayStores> {
        self.gateway.as_ref()
    }

    /// The uid of a stored object of one of the five kinds.
    pub fn uid(&self, kind: &str, id: &NamespacedName) -> Option<String> {
        fn get<K>(store: &Store<K>, id: &NamespacedName) -> Option<String>
        where
            K: Resource + Clone + 'static,
            K::DynamicType: Default + Eq + Hash + Clone,
        {
            let key = ObjectRef::new(&id.name).within(&id.namespace);
            store.get(&key).and_then(|o| o.meta().uid.clone())
        }
        match kind {
            "Ingress" => get(&self.ingresses, id),
            "Service" => get(&self.services, id),
            "EndpointSlice" => get(&self.slices, id),
            "Secret" => get(&self.secrets, id).or_else(|| get(&self.opaque, id)),
            "Gateway" => get(&self.gateway.as_ref()?.gateways, id),
            "HTTPRoute" => get(&self.gateway.as_ref()?.routes, id),
            "GRPCRoute" => get(&self.gateway.as_ref()?.grpc_routes, id),
            "TLSRoute" => self.gateway.as_ref()?.tls_route(id)?.metadata.uid.clone(),
            _ => None,
        }
    }

    /// The stores' current content as one object set.
    pub fn objects(&self) -> Objects {
        Objects {
            ingresses: self
                .ingresses
                .state()
                .iter()
                .map(|i| (id(&**i), i.clone()))
                .collect(),
            ingress_classes: self
                .classes
                .state()
                .iter()
                .map(|c| (c.metadata.name.clone().unwrap_or_default(), c.clone()))
                .collect(),
            services: self
                .services
                .state()
                .iter()
                .map(|s| (id(&**s), s.clone()))
                .collect(),
            endpoint_slices: self
                .slices
                .state()
                .iter()
                .map(|s| (id(&**s), s.clone()))
                .collect(),
            endpoints: Default::default(),
            secrets: self
                .secrets
                .state()
                .iter()
                .chain(&self.opaque.state())
                .map(|s| (id(&**s), s.clone()))
                .collect(),
            config_maps: self
                .config_maps
                .iter()
                .flat_map(Store::state)
                .map(|c| (id(&*c), c))
                .collect(),
            namespaces: self
                .gateway
                .iter()
                .flat_map(|g| g.namespaces.state())
                .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
                .collect(),
            gateway_classes: self
                .gateway
                .iter()
                .flat_map(|g| g.classes.state())
                .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
                .collect(),
            gateways: self
                .gateway
                .iter()
                .flat_map(|g| g.gateways.state())
                .map(|o| (id(&*o), o))
                .collect(),
            http_routes: self
                .gateway
                .iter()
                .flat_map(|g| g.routes.state())
                .map(|o| (id(&*o), o))
                .collect(),
            grpc_routes: self
                .gateway
                .iter()
                .flat_map(|g| g.grpc_routes.state())
                .map(|o| (id(&*o), o))
                .collect(),
            tls_routes: self
                .gateway
                .iter()
                .filter_map(|g| g.tls_routes.as_ref())
                .flat_map(|t| t.state())
                .map(|o| (id(&*o), o))
                .collect(),
            reference_grants: self
                .gateway
                .iter()
                .flat_map(|g| g.grants.state())
                .map(|o| (id(&*o), o))
                .collect(),
        }
    }
}

impl GatewayStores {
    /// The stored object's status and generation, to compare with ours.
    pub fn class(&self, name: &str) -> Option<Arc<GatewayClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    pub fn gateway(&self, id: &NamespacedName) -> Option<Arc<Gateway>> {
        self.gateways
            .get(&ObjectRef::new(&id.name).within(&id.namespace))
    }

    pub fn route(&self, id: &NamespacedName) -> Option<Arc<HTTPRoute>> {
        self.routes
            .get(&ObjectRef::new(&id.name).within(&id.namespace))
    }

    pub fn grpc_route(&self, id: &NamespacedName) -> Option<Arc<GRPCRoute>> {
        self.grpc_routes
            .get(&ObjectRef::new(&id.name).within(&id.namespace))
    }

    pub fn tls_route(&self, id: &NamespacedName) -> Option<Arc<TLSRoute>> {
        self.tls_routes.as_ref()?.get(id)
    }

    /// The TLSRoute version watched (its status is written in it).
    pub fn tls_route_version(&self) -> Option<TlsRouteVersion> {
        match self.tls_routes.as_ref()? {
            TlsRoutes::V1(_) => Some(TlsRouteVersion::V1),
            TlsRoutes::V1alpha2(_) => Some(TlsRouteVersion::V1alpha2),
        }
    }
}

/// Waits for a change, then for a quiet `DEBOUNCE` (at most `MAX_DELAY`).
/// Returns false on shutdown.
pub async fn next_change(changed: &Notify, shutdown: &Shutdown) -> bool {
    tokio::select! {
        () = changed.notified() => {}
        () = shutdown.wait() => return false,
    }
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        tokio::select! {
            () = changed.notified() => {
                if tokio::time::Instant::now() >= deadline {
                    return true;
                }
            }
            () = tokio::time::sleep(DEBOUNCE) => return true,
            () = shutdown.wait() => return false,
        }
    }
}

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
        core::v1::{ConfigMap, Secret, Service},
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
    model::{NamespacedName, Objects},
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
    /// The controller ConfigMap (`--configmap`), watched by name.
    config_map: Option<Store<ConfigMap>>,
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
    configmap: Option<&NamespacedName>,
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
        config_map: configmap.map(|id| {
            reflect(
                Api::<ConfigMap>::namespaced(client.clone(), &id.namespace),
                watcher::Config::default().fields(&format!("metadata.name={}", id.name)),
                &changed,
                shutdown,
            )
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
        if let Some(cm) = &self.config_map {
            cm.wait_until_ready().await?;
        }
        self.opaque.wait_until_ready().await
    }

    /// Every Ingress as the API server last showed it (status included).
    pub fn ingresses(&self) -> Vec<Arc<Ingress>> {
        self.ingresses.state()
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
                .config_map
                .iter()
                .flat_map(Store::state)
                .map(|c| (id(&*c), c))
                .collect(),
            // Gateway API objects are read from manifests only, so far.
            ..Objects::default()
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

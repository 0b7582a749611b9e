//! A fake Kubernetes API server speaking the real list/watch protocol for
//! the kinds the agent reads (Ingress's and the Gateway API's): resourceVersions, newline-delimited watch
//! events, bookmarks, 410 Gone after compaction, and watches it can drop.
//! It also takes what the agent writes: status merge patches, Leases (with
//! optimistic concurrency on resourceVersion) and Events.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::ChannelBody;

/// (resource, group/version, kind)
const KINDS: [(&str, &str, &str); 15] = [
    ("namespaces", "v1", "Namespace"),
    (
        "gatewayclasses",
        "gateway.networking.k8s.io/v1",
        "GatewayClass",
    ),
    ("gateways", "gateway.networking.k8s.io/v1", "Gateway"),
    ("httproutes", "gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("grpcroutes", "gateway.networking.k8s.io/v1", "GRPCRoute"),
    (
        "tlsroutes",
        "gateway.networking.k8s.io/v1alpha2",
        "TLSRoute",
    ),
    (
        "referencegrants",
        "gateway.networking.k8s.io/v1beta1",
        "ReferenceGrant",
    ),
    ("ingresses", "networking.k8s.io/v1", "Ingress"),
    ("ingressclasses", "networking.k8s.io/v1", "IngressClass"),
    ("services", "v1", "Service"),
    ("endpointslices", "discovery.k8s.io/v1", "EndpointSlice"),
    ("secrets", "v1", "Secret"),
    ("configmaps", "v1", "ConfigMap"),
    ("leases", "coordination.k8s.io/v1", "Lease"),
    ("events", "events.k8s.io/v1", "Event"),
];

type Key = (String, String, String);

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// (rv, resource, event type, object)
    log: Vec<(u64, String, &'static str, Value)>,
    /// Watches from below this resourceVersion get 410 Gone.
    floor: u64,
    /// Bumped by compaction: streams of an older era end without sending more.
    era: u64,
    lists: usize,
    /// Writes by clients: (method, resource, namespace/name[/subresource]).
    writes: Vec<(String, String, String)>,
    /// Resources answered 404, as a cluster without their CRDs does.
    hidden: Vec<String>,
}

impl State {
    /// Stores `obj` under a new resourceVersion and logs the watch event.
    fn put(&mut self, resource: &str, ns: String, name: String, mut obj: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{resource}-{ns}-{name}"));
        }
        let key = (resource.to_string(), ns, name);
        // metadata.generation, as the API server keeps it: 1 on create,
        // +1 when the spec changes (never for status).
        let generation = match self.objects.get(&key) {
            None => 1,
            Some(old) => {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if old.get("spec") != obj.get("spec") {
                    g + 1
                } else {
                    g
                }
            }
        };
        obj["metadata"]["generation"] = json!(generation);
        let kind_of_event = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key, obj.clone());
        self.log
            .push((rv, resource.to_string(), kind_of_event, obj.clone()));
        obj
    }
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Bumped on every change; watches wake on it.
    changed: Arc<watch::Sender<u64>>,
    /// Bumped to end every open watch stream.
    epoch: watch::Sender<u64>,
    _stop: oneshot::Sender<()>,
}

fn resource_of(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, _, k)| *k == kind)
        .map(|(r, _, _)| *r)
}

impl FakeApi {
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(watch::channel(0u64).0);
        let (epoch, _) = watch::channel(0u64);
        let (stop, stop_rx) = oneshot::channel();
        let (st, ch, ep) = (state.clone(), changed.clone(), epoch.subscribe());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (st, ch, ep) = (st.clone(), ch.clone(), ep.clone());
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                handle(st.clone(), ch.clone(), ep.clone(), req)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        Self {
            addr,
            state,
            changed,
            epoch,
            _stop: stop,
        }
    }

    /// Answers 404 for these resources from now on, as a cluster without
    /// their CRDs (e.g. the Gateway API's) does; `RESOURCE/VERSION` for one
    /// version of it (objects are served in any other, as the API server
    /// converts them).
    pub fn hide(&self, resources: &[&str]) {
        let mut st = self.state.lock().unwrap();
        st.hidden.extend(resources.iter().map(|r| r.to_string()));
    }

    /// Creates or updates an object (a full manifest with apiVersion and kind).
    pub fn apply(&self, mut obj: Value) {
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let resource =
            resource_of(&kind).unwrap_or_else(|| panic!("the fake API does not serve {kind}"));
        let cluster_scoped = matches!(kind.as_str(), "IngressClass" | "GatewayClass" | "Namespace");
        if !cluster_scoped && obj["metadata"]["namespace"].is_null() {
            obj["metadata"]["namespace"] = json!("default");
        }
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        let mut st = self.state.lock().unwrap();
        // As `kubectl apply` of a manifest: status is the server's to keep.
        if let Some(old) = st
            .objects
            .get(&(resource.to_string(), ns.clone(), name.clone()))
            && obj.get("status").is_none()
            && let Some(status) = old.get("status")
        {
            obj["status"] = status.clone();
        }
        st.put(resource, ns, name, obj);
        let rv = st.rv;
        drop(st);
        self.changed.send_replace(rv);
    }

    /// The stored object, as a client would GET it.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_of(kind).expect("kind");
        let st = self.state.lock().unwrap();
        st.objects
            .get(&(resource.to_string(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every stored object of a kind.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let resource = resource_of(kind).expect("kind");
        let st = self.state.lock().unwrap();
        st.objects
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Client writes so far: (method, resource, `ns/name[/subresource]`).
    pub fn writes(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().writes.clone()
    }

    /// Applies every document of a YAML text.
    pub fn apply_yaml(&self, yaml: &str) {
        use serde::Deserialize;
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v = Value::deserialize(doc).expect("YAML");
            if !v.is_null() {
                self.apply(v);
            }
        }
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let resource = resource_of(kind).expect("kind");
        let mut st = self.state.lock().unwrap();
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(mut obj) = st.objects.remove(&key) else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.log.push((rv, resource.to_string(), "DELETED", obj));
        drop(st);
        self.changed.send_replace(rv);
    }

    /// Ends every open watch stream (as an API server restart or a proxy timeout would).
    pub fn drop_watches(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the event history: watches resuming from an older
    /// resourceVersion get 410 Gone and must list again (the list lands at
    /// the new floor, so one relist suffices).
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        st.floor = st.rv;
        st.era += 1;
        st.log.clear();
        drop(st);
        self.drop_watches();
    }

    /// List requests served so far.
    pub fn lists(&self) -> usize {
        self.state.lock().unwrap().lists
    }

    /// A kubeconfig pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://{}\"}}\nusers:\n- name: fake\n  user: {{token: fake}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\ncurrent-context: fake\n",
            self.addr
        )
    }
}

type Body = Either<Full<Bytes>, ChannelBody>;

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(v.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// An API path: namespace, resource, object name, subresource.
struct Target {
    ns: Option<String>,
    version: String,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (version, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("v1", rest),
        ["apis", _group, version, rest @ ..] => (*version, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let s = |v: &&str| v.to_string();
    let (resource, name, sub) = match rest {
        [r] => (s(r), None, None),
        [r, n] => (s(r), Some(s(n)), None),
        [r, n, sub] => (s(r), Some(s(n)), Some(s(sub))),
        _ => return None,
    };
    Some(Target {
        ns,
        version: version.to_string(),
        resource,
        name,
        sub,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).expect("status code"),
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "message": message, "code": code}),
    )
}

fn matches(obj: &Value, ns: &Option<String>, field_selector: Option<&str>) -> bool {
    if let Some(ns) = ns
        && obj["metadata"]["namespace"].as_str() != Some(ns)
    {
        return false;
    }
    match field_selector {
        Some(sel) => sel.split(',').all(|term| match term.split_once('=') {
            Some(("type", v)) => obj["type"].as_str() == Some(v),
            Some(("metadata.name", v)) => obj["metadata"]["name"].as_str() == Some(v),
            _ => true,
        }),
        None => true,
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
    epoch: watch::Receiver<u64>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let Some(target) = route(req.uri().path()) else {
        return Ok(status(404, "NotFound", "no such path"));
    };
    let Some(&(_, api_version, kind)) = KINDS.iter().find(|(r, _, _)| *r == target.resource) else {
        return Ok(status(404, "NotFound", "no such resource"));
    };
    let hidden = {
        let hidden = &state.lock().unwrap().hidden;
        hidden.contains(&target.resource)
            || hidden.contains(&format!("{}/{}", target.resource, target.version))
    };
    if hidden {
        return Ok(status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if req.method() != http::Method::GET || target.name.is_some() {
        return Ok(write(&state, &changed, target, req).await);
    }
    let Target { ns, resource, .. } = target;
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    let field_selector = query.get("fieldSelector").map(String::as_str);
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watching {
        let mut st = state.lock().unwrap();
        st.lists += 1;
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|((r, _, _), o)| *r == resource && matches(o, &ns, field_selector))
            .map(|(_, o)| o.clone())
            .collect();
        let list = json!({
            "apiVersion": api_version,
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        });
        return Ok(json_response(StatusCode::OK, &list));
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(60), |s: u64| {
            Duration::from_secs(s.min(60))
        });
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(64);
    tokio::spawn(stream_events(
        state,
        changed.subscribe(),
        epoch,
        resource,
        ns,
        field_selector.map(str::to_string),
        from,
        bookmarks,
        timeout,
        (api_version, kind),
        tx,
    ));
    let mut r = Response::new(Either::Right(ChannelBody::new(rx)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// GET of one object, and every write: create, replace (with optimistic
/// concurrency), merge patch of an object or its status.
async fn write(
    state: &Mutex<State>,
    changed: &watch::Sender<u64>,
    target: Target,
    req: Request<Incoming>,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400, "BadRequest", "unreadable body"),
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let ns = target.ns.clone().unwrap_or_default();
    let mut st = state.lock().unwrap();
    let path = match (&target.name, &target.sub) {
        (Some(n), Some(sub)) => format!("{ns}/{n}/{sub}"),
        (Some(n), None) => format!("{ns}/{n}"),
        (None, _) => ns.clone(),
    };
    if method != http::Method::GET {
        st.writes
            .push((method.to_string(), target.resource.clone(), path));
    }
    let key = |name: &str| (target.resource.clone(), ns.clone(), name.to_string());
    let response = match (method.as_str(), &target.name, parsed) {
        ("GET", Some(name), _) => match st.objects.get(&key(name)) {
            Some(o) => json_response(StatusCode::OK, o),
            None => status(
                404,
                "NotFound",
                &format!("{} {name} not found", target.resource),
            ),
        },
        ("POST", None, Some(mut obj)) => {
            let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
                return status(422, "Invalid", "metadata.name is required");
            };
            if st.objects.contains_key(&key(&name)) {
                return status(409, "AlreadyExists", &format!("{name} already exists"));
            }
            if target.ns.is_some() {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let stored = st.put(&target.resource, ns.clone(), name, obj);
            json_response(StatusCode::CREATED, &stored)
        }
        ("PUT", Some(name), Some(mut obj)) => {
            let Some(old) = st.objects.get(&key(name)) else {
                return status(404, "NotFound", &format!("{name} not found"));
            };
            let sent = obj["metadata"]["resourceVersion"].as_str();
            if sent.is_some() && sent != old["metadata"]["resourceVersion"].as_str() {
                return status(409, "Conflict", "the object has been modified");
            }
            obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
            if target.ns.is_some() {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let stored = st.put(&target.resource, ns.clone(), name.clone(), obj);
            json_response(StatusCode::OK, &stored)
        }
        ("PATCH", Some(name), Some(patch)) => {
            let Some(mut obj) = st.objects.get(&key(name)).cloned() else {
                return status(404, "NotFound", &format!("{name} not found"));
            };
            match target.sub.as_deref() {
                // The status subresource changes status only.
                Some("status") => merge_patch(&mut obj["status"], &patch["status"]),
                Some(_) => return status(404, "NotFound", "no such subresource"),
                None => {
                    let mut p = patch.clone();
                    if let Some(m) = p.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                        m.remove("uid");
                    }
                    merge_patch(&mut obj, &p);
                }
            }
            let stored = st.put(&target.resource, ns.clone(), name.clone(), obj);
            json_response(StatusCode::OK, &stored)
        }
        (_, _, None) if method != http::Method::GET => {
            status(400, "BadRequest", "the body is not JSON")
        }
        _ => status(405, "MethodNotAllowed", "not supported by the fake API"),
    };
    let rv = st.rv;
    drop(st);
    changed.send_replace(rv);
    response
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(h) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[allow(clippy::too_many_arguments)]
async fn stream_events(
    state: Arc<Mutex<State>>,
    mut changed: watch::Receiver<u64>,
    mut epoch: watch::Receiver<u64>,
    resource: String,
    ns: Option<String>,
    field_selector: Option<String>,
    from: u64,
    bookmarks: bool,
    timeout: Duration,
    (api_version, kind): (&'static str, &'static str),
    tx: mpsc::Sender<Frame<Bytes>>,
) {
    let line = |v: Value| Frame::data(Bytes::from(format!("{v}\n")));
    epoch.mark_unchanged();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut sent = from;
    let (expired, era) = {
        let st = state.lock().unwrap();
        (from != 0 && from < st.floor, st.era)
    };
    if expired {
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410}});
        let _ = tx.send(line(gone)).await;
        return;
    }
    loop {
        let pending: Vec<Value> = {
            let st = state.lock().unwrap();
            if st.era != era {
                // Compacted since this watch began: end it unsent, as a
                // restarted API server would.
                return;
            }
            let events = st
                .log
                .iter()
                .filter(|(rv, r, _, o)| {
                    *rv > sent && *r == resource && matches(o, &ns, field_selector.as_deref())
                })
                .map(|(_, _, t, o)| json!({"type": t, "object": o}))
                .collect();
            sent = sent.max(st.rv);
            events
        };
        for e in pending {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        if bookmarks {
            let bm = json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": sent.to_string()}}});
            if tx.send(line(bm)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = epoch.changed() => return,
            () = tokio::time::sleep_until(deadline) => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

//! A tiny Kubernetes API server on 127.0.0.1 that speaks enough of the API for
//! kube's client and watcher: list (with resourceVersion), watch (streamed
//! JSON lines, replayed from the resourceVersion asked for), get, create,
//! replace (resourceVersion-guarded), merge patch (of the object or its status
//! subresource; guarded when the patch carries metadata.resourceVersion),
//! server-side apply (merged, simplified), metadata-only lists/watches, and
//! TokenReview. Every request is recorded with the listener it came through.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One recorded request.
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub struct Recorded {
    pub listener: usize,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
    pub status: u16,
    /// Whether the client asked for metadata only (PartialObjectMetadata).
    pub meta_only: bool,
}

type Key = (String, String); // (group, resource)

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    key: Key,
    namespace: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, BTreeMap<(String, String), Value>>,
    log: Vec<Event>,
    requests: Vec<Recorded>,
    tokens: BTreeMap<String, String>,
    /// Answer this many next writes with 500.
    fail: usize,
    /// Answer this many next GETs of one object of this resource with 500.
    fail_gets: Option<(String, usize)>,
    /// Resources whose requests get no answer (a hung API server).
    stalled: Vec<String>,
    /// Resources whose watch events are held back (a lagging cache).
    paused: Vec<Key>,
    held: Vec<Event>,
    /// Gateway API versions served, preferred first: (version, kinds).
    served: Vec<(String, Vec<String>)>,
}

/// The kinds of the v1.6.1 experimental channel at each version it serves.
pub fn experimental_channel() -> Vec<(&'static str, Vec<&'static str>)> {
    let all = vec![
        "GatewayClass",
        "Gateway",
        "ListenerSet",
        "HTTPRoute",
        "GRPCRoute",
        "TLSRoute",
        "TCPRoute",
        "UDPRoute",
        "ReferenceGrant",
        "BackendTLSPolicy",
    ];
    vec![
        ("v1", all),
        (
            "v1beta1",
            vec!["GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"],
        ),
        ("v1alpha3", vec!["TLSRoute"]),
        ("v1alpha2", vec!["TLSRoute", "TCPRoute", "UDPRoute"]),
    ]
}

/// The kinds of the v1.6.1 standard channel at each version it serves
/// (TCPRoute, UDPRoute and TLSRoute at v1 only).
pub fn standard_channel() -> Vec<(&'static str, Vec<&'static str>)> {
    experimental_channel()
        .into_iter()
        .filter(|(v, _)| *v == "v1" || *v == "v1beta1")
        .collect()
}

/// The fake API server.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
}

/// `(group, resource)` of an `apiVersion` + `kind`.
pub fn resource_of(api_version: &str, kind: &str) -> Key {
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let lower = kind.to_ascii_lowercase();
    let plural = if let Some(stem) = lower
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o']))
    {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    };
    (group, plural)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
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
        other => *target = other.clone(),
    }
}

impl FakeApi {
    pub fn new() -> Self {
        let api = FakeApi {
            state: Arc::default(),
            events: broadcast::channel(65536).0,
        };
        api.serve_versions(experimental_channel());
        api
    }

    /// Serve these Gateway API versions and kinds (preferred version first);
    /// discovery answers accordingly and other versions are 404.
    #[allow(dead_code)]
    pub fn serve_versions(&self, served: Vec<(&str, Vec<&str>)>) {
        self.state.lock().unwrap().served = served
            .into_iter()
            .map(|(v, ks)| (v.to_string(), ks.into_iter().map(String::from).collect()))
            .collect();
    }

    /// Discovery documents, and 404 for Gateway API versions that are not served.
    fn discovery(&self, path: &str) -> Option<(u16, Value)> {
        let st = self.state.lock().unwrap();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segs.as_slice() {
            ["apis"] => {
                let versions: Vec<Value> = st
                    .served
                    .iter()
                    .map(|(v, _)| json!({"groupVersion": format!("{}/{v}", super::GW), "version": v}))
                    .collect();
                let mut groups: Vec<Value> = match versions.first() {
                    Some(pref) => vec![
                        json!({"name": super::GW, "versions": versions, "preferredVersion": pref}),
                    ],
                    None => vec![],
                };
                // Portcullis' own CRDs (the chart installs them).
                let own = json!({"groupVersion": "portcullis.dev/v1alpha1", "version": "v1alpha1"});
                groups.push(json!({"name": "portcullis.dev", "versions": [own.clone()], "preferredVersion": own}));
                Some((
                    200,
                    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                ))
            }
            ["apis", "portcullis.dev", "v1alpha1"] => Some((
                200,
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "portcullis.dev/v1alpha1", "resources": [
                    {"name": "securitypolicies", "singularName": "", "namespaced": true, "kind": "SecurityPolicy", "verbs": ["get", "list", "watch", "patch"]},
                    {"name": "securitypolicies/status", "singularName": "", "namespaced": true, "kind": "SecurityPolicy", "verbs": ["get", "patch"]},
                    {"name": "backendtrafficpolicies", "singularName": "", "namespaced": true, "kind": "BackendTrafficPolicy", "verbs": ["get", "list", "watch", "patch"]},
                    {"name": "backendtrafficpolicies/status", "singularName": "", "namespaced": true, "kind": "BackendTrafficPolicy", "verbs": ["get", "patch"]},
                    {"name": "clienttrafficpolicies", "singularName": "", "namespaced": true, "kind": "ClientTrafficPolicy", "verbs": ["get", "list", "watch", "patch"]},
                    {"name": "clienttrafficpolicies/status", "singularName": "", "namespaced": true, "kind": "ClientTrafficPolicy", "verbs": ["get", "patch"]},
                ]}),
            )),
            ["apis", g, v, rest @ ..] if *g == super::GW => {
                let kinds = st.served.iter().find(|(sv, _)| sv == v).map(|(_, k)| k);
                let Some(kinds) = kinds else {
                    return Some((404, status(404, "NotFound", "version not served")));
                };
                if rest.is_empty() {
                    let resources: Vec<Value> = kinds
                        .iter()
                        .flat_map(|k| {
                            let plural = resource_of("x/v", k).1;
                            let namespaced = k != "GatewayClass";
                            [
                                json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": k, "verbs": ["get", "list", "watch", "patch"]}),
                                json!({"name": format!("{plural}/status"), "singularName": "", "namespaced": namespaced, "kind": k, "verbs": ["get", "patch"]}),
                            ]
                        })
                        .collect();
                    return Some((
                        200,
                        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{g}/{v}"), "resources": resources}),
                    ));
                }
                let resource = match rest {
                    ["namespaces", _, r, ..] => r,
                    [r, ..] => r,
                    [] => unreachable!(),
                };
                if kinds.iter().any(|k| resource_of("x/v", k).1 == *resource) {
                    None
                } else {
                    Some((
                        404,
                        status(
                            404,
                            "NotFound",
                            "the server could not find the requested resource",
                        ),
                    ))
                }
            }
            _ => None,
        }
    }

    /// Accept the token `token` as `username` in TokenReviews.
    #[allow(dead_code)]
    pub fn allow_token(&self, token: &str, username: &str) {
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.into(), username.into());
    }

    /// Create or replace an object as a third party would (bumps resourceVersion, emits a watch event).
    pub fn put(&self, mut obj: Value) -> Value {
        let key = resource_of(
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut st = self.state.lock().unwrap();
        let old = st
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned();
        st.rv += 1;
        let rv = st.rv;
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("uid")
            .or_insert_with(|| json!(format!("uid-{ns}-{name}")));
        meta.entry("creationTimestamp")
            .or_insert_with(|| json!("2024-01-01T00:00:00Z"));
        let generation = match &old {
            Some(o) if o.get("spec") != obj.get("spec") => {
                o["metadata"]["generation"].as_i64().unwrap_or(1) + 1
            }
            Some(o) => o["metadata"]["generation"].as_i64().unwrap_or(1),
            None => obj["metadata"]["generation"].as_i64().unwrap_or(1),
        };
        obj["metadata"]["generation"] = json!(generation);
        st.objects
            .entry(key.clone())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        let ev = Event {
            rv,
            key,
            namespace: ns,
            type_: if old.is_some() { "MODIFIED" } else { "ADDED" },
            object: obj.clone(),
        };
        Self::emit(&mut st, &self.events, ev);
        obj
    }

    fn emit(st: &mut State, tx: &broadcast::Sender<Event>, ev: Event) {
        st.log.push(ev.clone());
        if st.paused.contains(&ev.key) {
            st.held.push(ev);
        } else {
            let _ = tx.send(ev);
        }
    }

    /// Answer the next `n` writes (non-GET requests) with 500 Internal Server Error.
    #[allow(dead_code)]
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail = n;
    }

    /// Answer the next `n` GETs of single objects of `resource` with 500 (a transient read failure).
    #[allow(dead_code)]
    pub fn fail_gets(&self, resource: &str, n: usize) {
        self.state.lock().unwrap().fail_gets = Some((resource.to_string(), n));
    }

    /// Leave every request for `resource` unanswered (`None`: answer again).
    #[allow(dead_code)]
    pub fn stall(&self, resource: Option<&str>) {
        self.state.lock().unwrap().stalled =
            resource.map(|r| vec![r.to_string()]).unwrap_or_default();
    }

    /// Hold back watch events of a resource (the controller's cache lags) until [`FakeApi::resume`].
    #[allow(dead_code)]
    pub fn pause(&self, group: &str, resource: &str) {
        self.state
            .lock()
            .unwrap()
            .paused
            .push((group.into(), resource.into()));
    }

    /// Deliver held-back events.
    #[allow(dead_code)]
    pub fn resume(&self) {
        let mut st = self.state.lock().unwrap();
        st.paused.clear();
        for ev in std::mem::take(&mut st.held) {
            let _ = self.events.send(ev);
        }
    }

    pub fn get(&self, group: &str, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(group.into(), resource.into()))
            .and_then(|m| m.get(&(ns.into(), name.into())))
            .cloned()
    }

    pub fn list(&self, group: &str, resource: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(group.into(), resource.into()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Writes (non-GET requests), optionally only through one listener.
    #[allow(dead_code)]
    pub fn writes(&self, listener: Option<usize>) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET" && listener.is_none_or(|l| r.listener == l))
            .collect()
    }

    /// Serve on a new 127.0.0.1 port; requests through it are tagged `index`.
    pub async fn listen(&self, index: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(index, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        addr
    }

    /// A kube client talking to `addr`.
    pub fn client(addr: SocketAddr) -> kube::Client {
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    async fn handle(
        &self,
        listener: usize,
        req: http::Request<Incoming>,
    ) -> http::Response<BoxBody<Bytes, Infallible>> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let stalled = parse_path(&path)
            .is_some_and(|p| self.state.lock().unwrap().stalled.contains(&p.resource));
        if stalled {
            std::future::pending::<()>().await;
        }
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%2F", "/")))
            .collect();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let meta_only = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let bytes = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let parsed = parse_path(&path);
        let discovered = self.discovery(&path);
        let (code, resp) = match parsed {
            _ if discovered.is_some() => {
                let (code, v) = discovered.expect("some");
                (code, if code == 200 { Ok(v) } else { Err(v) })
            }
            None => (404, Err(status(404, "NotFound", "unknown path"))),
            Some(p) => {
                if method == "GET"
                    && p.name.is_none()
                    && query.get("watch").is_some_and(|w| w == "true" || w == "1")
                {
                    let since: u64 = query
                        .get("resourceVersion")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    self.record(
                        listener,
                        &method,
                        &path,
                        &query,
                        &content_type,
                        body,
                        200,
                        meta_only,
                    );
                    return self.watch(p, since, meta_only);
                }
                self.dispatch(&method, p, &content_type, &body, meta_only)
            }
        };
        self.record(
            listener,
            &method,
            &path,
            &query,
            &content_type,
            body,
            code,
            meta_only,
        );
        let v = resp.unwrap_or_else(|e| e);
        let mut r =
            http::Response::new(Full::new(Bytes::from(serde_json::to_vec(&v).unwrap())).boxed());
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        listener: usize,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        ct: &str,
        body: Value,
        status: u16,
        meta_only: bool,
    ) {
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        self.state.lock().unwrap().requests.push(Recorded {
            listener,
            method: method.into(),
            path: path.into(),
            query,
            content_type: ct.into(),
            body,
            status,
            meta_only,
        });
    }

    fn dispatch(
        &self,
        method: &str,
        p: Parsed,
        ct: &str,
        body: &Value,
        meta_only: bool,
    ) -> (u16, Result<Value, Value>) {
        let mut st = self.state.lock().unwrap();
        if method != "GET" && st.fail > 0 {
            st.fail -= 1;
            return (500, Err(status(500, "InternalError", "injected failure")));
        }
        if method == "GET"
            && p.name.is_some()
            && let Some((r, n)) = st.fail_gets.as_mut()
            && *r == p.resource
            && *n > 0
        {
            *n -= 1;
            return (
                500,
                Err(status(500, "InternalError", "injected read failure")),
            );
        }
        let key = (p.group.clone(), p.resource.clone());
        if p.resource == "tokenreviews" && method == "POST" {
            let token = body["spec"]["token"].as_str().unwrap_or_default();
            let mut out = body.clone();
            out["status"] = match st.tokens.get(token) {
                Some(user) => {
                    json!({"authenticated": true, "user": {"username": user}, "audiences": body["spec"]["audiences"]})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            return (201, Ok(out));
        }
        match (method, &p.name) {
            ("GET", None) => {
                let items: Vec<Value> = st
                    .objects
                    .get(&key)
                    .map(|m| {
                        m.iter()
                            .filter(|((ns, _), _)| p.namespace.as_ref().is_none_or(|n| n == ns))
                            .map(|(_, v)| if meta_only { to_meta(v) } else { v.clone() })
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    200,
                    Ok(
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                    ),
                )
            }
            ("GET", Some(name)) => match st
                .objects
                .get(&key)
                .and_then(|m| m.get(&(p.namespace.clone().unwrap_or_default(), name.clone())))
            {
                Some(o) => (200, Ok(o.clone())),
                None => (
                    404,
                    Err(status(404, "NotFound", &format!("{name} not found"))),
                ),
            },
            ("POST", None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ns = p.namespace.clone().unwrap_or_default();
                if st
                    .objects
                    .get(&key)
                    .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
                {
                    return (409, Err(status(409, "AlreadyExists", "already exists")));
                }
                drop(st);
                let mut obj = body.clone();
                obj["metadata"]["namespace"] = if ns.is_empty() {
                    Value::Null
                } else {
                    json!(ns)
                };
                strip_nulls(&mut obj);
                (201, Ok(self.put(obj)))
            }
            ("PUT", Some(name)) | ("PATCH", Some(name)) => {
                let ns = p.namespace.clone().unwrap_or_default();
                let current = st
                    .objects
                    .get(&key)
                    .and_then(|m| m.get(&(ns.clone(), name.clone())))
                    .cloned();
                let apply = ct.contains("apply-patch");
                let Some(mut obj) = current.clone().or_else(|| {
                    apply.then(|| json!({"metadata": {"name": name, "namespace": ns}}))
                }) else {
                    return (
                        404,
                        Err(status(404, "NotFound", &format!("{name} not found"))),
                    );
                };
                let want_rv = if method == "PUT" {
                    body["metadata"]["resourceVersion"].as_str()
                } else {
                    body.get("metadata")
                        .and_then(|m| m["resourceVersion"].as_str())
                };
                let have_rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Some(w) = want_rv
                    && current.is_some()
                    && w != have_rv
                {
                    return (
                        409,
                        Err(status(
                            409,
                            "Conflict",
                            "the object has been modified; please apply your changes to the latest version and try again",
                        )),
                    );
                }
                match (method, p.subresource.as_deref()) {
                    ("PUT", _) => obj = body.clone(),
                    ("PATCH", Some("status")) => merge_patch(&mut obj["status"], &body["status"]),
                    ("PATCH", _) => {
                        let mut patch = body.clone();
                        if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.remove("resourceVersion");
                        }
                        merge_patch(&mut obj, &patch)
                    }
                    _ => {}
                }
                let status_only = p.subresource.as_deref() == Some("status");
                drop(st);
                if status_only {
                    // The status subresource never changes the generation.
                    let g = obj["metadata"]["generation"].clone();
                    let mut out = self.put(obj);
                    if !g.is_null() {
                        out["metadata"]["generation"] = g;
                    }
                    (200, Ok(out))
                } else {
                    strip_nulls(&mut obj);
                    (if current.is_some() { 200 } else { 201 }, Ok(self.put(obj)))
                }
            }
            _ => (405, Err(status(405, "MethodNotAllowed", method))),
        }
    }

    fn watch(
        &self,
        p: Parsed,
        since: u64,
        meta_only: bool,
    ) -> http::Response<BoxBody<Bytes, Infallible>> {
        let key = (p.group.clone(), p.resource.clone());
        let mut rx = self.events.subscribe();
        let backlog: Vec<Event> = {
            let st = self.state.lock().unwrap();
            st.log
                .iter()
                .filter(|e| e.rv > since && e.key == key && !st.held.iter().any(|h| h.rv == e.rv))
                .cloned()
                .collect()
        };
        let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(1024);
        let ns = p.namespace.clone();
        let line = move |e: &Event| {
            let obj = if meta_only {
                to_meta(&e.object)
            } else {
                e.object.clone()
            };
            let mut b = serde_json::to_vec(&json!({"type": e.type_, "object": obj})).unwrap();
            b.push(b'\n');
            Bytes::from(b)
        };
        tokio::spawn(async move {
            let mut last = since;
            for e in backlog
                .iter()
                .filter(|e| ns.as_ref().is_none_or(|n| *n == e.namespace))
            {
                last = last.max(e.rv);
                if tx.send(line(e)).await.is_err() {
                    return;
                }
            }
            loop {
                let e = tokio::select! {
                    e = rx.recv() => e,
                    _ = tx.closed() => return,
                };
                match e {
                    Ok(e)
                        if e.key == key
                            && e.rv > last
                            && ns.as_ref().is_none_or(|n| *n == e.namespace) =>
                    {
                        last = e.rv;
                        if tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(_) => return,
                }
            }
        });
        let stream = futures_util::stream::unfold(out, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let mut r = http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

fn to_meta(v: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": v["metadata"]})
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        m.values_mut().for_each(strip_nulls);
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(strip_nulls);
    }
}

#[derive(Clone, Debug)]
struct Parsed {
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Parsed> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
        _ => return None,
    };
    let s = |x: &&str| x.to_string();
    Some(match rest {
        ["namespaces", ns, res, tail @ ..] => Parsed {
            group,
            resource: res.to_string(),
            namespace: Some(ns.to_string()),
            name: tail.first().map(s),
            subresource: tail.get(1).map(s),
        },
        [res, tail @ ..] => Parsed {
            group,
            resource: res.to_string(),
            namespace: None,
            name: tail.first().map(s),
            subresource: tail.get(1).map(s),
        },
        [] => return None,
    })
}

/// Poll `f` every 20 ms until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

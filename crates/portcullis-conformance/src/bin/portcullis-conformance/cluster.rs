//! A tiny stand-in for the cluster around the conformance manifests: every
//! Deployment becomes local `portcullis-echo` processes ("pods", one per replica,
//! each on its own loopback IP), and every Service with a selector gets an
//! EndpointSlice pointing at the matching pods.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::manifests::{kind, name, namespace};

/// What a pod runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodMode {
    /// The echo-basic image (HTTP, gRPC or TCP mode chosen by its environment).
    Echo,
    /// coredns: a minimal DNS responder on the given UDP port.
    Dns(u16),
    /// An image we cannot run locally.
    Unsupported(String),
}

/// A pod derived from a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub deployment: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    pub env: Vec<(String, String)>,
    pub container_ports: Vec<(String, u16)>,
    /// Files to materialise: (path relative to the pod directory, content).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Mount path → path relative to the pod directory.
    pub mounts: Vec<(String, PathBuf)>,
    pub mode: PodMode,
}

struct Pod {
    plan: PodPlan,
    scope: String,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
}

/// The local "cluster": pods (echo processes), secrets and config maps.
pub struct Cluster {
    echo_bin: PathBuf,
    pods_dir: PathBuf,
    pool_base: u32,
    pool_size: u32,
    next_ip: u32,
    data: BTreeMap<(String, String, String), BTreeMap<String, Vec<u8>>>,
    pods: Vec<Pod>,
    verbose: bool,
}

const SAFE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn safe_string(seed: u64, len: usize) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            SAFE_CHARS[((x >> 33) % SAFE_CHARS.len() as u64) as usize] as char
        })
        .collect()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// A pod name in the `<deployment>-<rs-hash>-<5-char-id>` shape.
pub fn pod_name(deployment: &str, namespace: &str, replica: usize) -> String {
    let hash = safe_string(fnv(&format!("{namespace}/{deployment}")), 10);
    let id = safe_string(
        fnv(&format!("{namespace}/{deployment}/{replica}")) ^ rand::random::<u64>(),
        5,
    );
    format!("{deployment}-{hash}-{id}")
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl Cluster {
    pub fn new(echo_bin: PathBuf, pods_dir: PathBuf, pool: (Ipv4Addr, u8), verbose: bool) -> Self {
        let pool_size = 1u32 << (32 - u32::from(pool.1));
        Self {
            echo_bin,
            pods_dir,
            pool_base: u32::from(pool.0),
            pool_size,
            next_ip: 1,
            data: BTreeMap::new(),
            pods: Vec::new(),
            verbose,
        }
    }

    fn allocate_ip(&mut self) -> Result<Ipv4Addr> {
        if self.next_ip >= self.pool_size - 1 {
            bail!("backend address pool exhausted");
        }
        let ip = Ipv4Addr::from(self.pool_base + self.next_ip);
        self.next_ip += 1;
        Ok(ip)
    }

    /// Remembers Secret and ConfigMap data so pods can mount it.
    pub fn register_data(&mut self, docs: &[Value]) {
        for doc in docs {
            let k = kind(doc);
            if k != "Secret" && k != "ConfigMap" {
                continue;
            }
            let mut entries = BTreeMap::new();
            if let Some(data) = doc.get("data").and_then(Value::as_object) {
                for (key, v) in data {
                    let s = v.as_str().unwrap_or_default();
                    let bytes = if k == "Secret" {
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .unwrap_or_default()
                    } else {
                        s.as_bytes().to_vec()
                    };
                    entries.insert(key.clone(), bytes);
                }
            }
            if let Some(data) = doc.get("stringData").and_then(Value::as_object) {
                for (key, v) in data {
                    entries.insert(
                        key.clone(),
                        v.as_str().unwrap_or_default().as_bytes().to_vec(),
                    );
                }
            }
            self.data.insert(
                (
                    k.to_string(),
                    namespace(doc).to_string(),
                    name(doc).to_string(),
                ),
                entries,
            );
        }
    }

    /// Turns one Deployment into pod plans (allocating IPs).
    pub fn plan_deployment(&mut self, doc: &Value) -> Result<Vec<PodPlan>> {
        let deployment = name(doc).to_string();
        let ns = namespace(doc).to_string();
        let replicas = doc
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let template = doc
            .pointer("/spec/template")
            .with_context(|| format!("Deployment {ns}/{deployment} has no template"))?;
        let labels = string_map(template.pointer("/metadata/labels"));
        let container = template
            .pointer("/spec/containers/0")
            .with_context(|| format!("Deployment {ns}/{deployment} has no container"))?;
        let image = container.get("image").and_then(Value::as_str).unwrap_or("");
        let mode = if image.contains("echo-basic") {
            PodMode::Echo
        } else if image.contains("coredns") {
            PodMode::Dns(53)
        } else {
            PodMode::Unsupported(image.to_string())
        };
        let container_ports: Vec<(String, u16)> = container
            .get("ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let port = p.get("containerPort")?.as_u64()? as u16;
                        Some((
                            p.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            port,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Volumes backed by Secrets or ConfigMaps become files.
        let mut files = Vec::new();
        let mut mounts = Vec::new();
        let volumes = template
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for mount in container
            .get("volumeMounts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let vol_name = mount.get("name").and_then(Value::as_str).unwrap_or("");
            let mount_path = mount.get("mountPath").and_then(Value::as_str).unwrap_or("");
            let Some(volume) = volumes
                .iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(vol_name))
            else {
                continue;
            };
            let (data_kind, source) = if let Some(s) = volume.get("secret") {
                ("Secret", s)
            } else if let Some(c) = volume.get("configMap") {
                ("ConfigMap", c)
            } else {
                continue;
            };
            let source_name = source
                .get("secretName")
                .or_else(|| source.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let rel_dir = PathBuf::from(mount_path.trim_start_matches('/'));
            mounts.push((mount_path.to_string(), rel_dir.clone()));
            let data = self
                .data
                .get(&(data_kind.to_string(), ns.clone(), source_name.to_string()))
                .cloned()
                .unwrap_or_default();
            match source.get("items").and_then(Value::as_array) {
                Some(items) => {
                    for item in items {
                        let key = item.get("key").and_then(Value::as_str).unwrap_or("");
                        let path = item.get("path").and_then(Value::as_str).unwrap_or(key);
                        if let Some(content) = data.get(key) {
                            files.push((rel_dir.join(path), content.clone()));
                        }
                    }
                }
                None => {
                    for (key, content) in data {
                        files.push((rel_dir.join(key), content));
                    }
                }
            }
        }
        let mut plans = Vec::new();
        for replica in 0..replicas {
            let pod = pod_name(&deployment, &ns, replica);
            let ip = self.allocate_ip()?;
            let mut env = Vec::new();
            for e in container
                .get("env")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let Some(env_name) = e.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let value = if let Some(v) = e.get("value") {
                    v.as_str().unwrap_or_default().to_string()
                } else {
                    match e
                        .pointer("/valueFrom/fieldRef/fieldPath")
                        .and_then(Value::as_str)
                    {
                        Some("metadata.name") => pod.clone(),
                        Some("metadata.namespace") => ns.clone(),
                        Some("status.podIP") => ip.to_string(),
                        _ => String::new(),
                    }
                };
                env.push((env_name.to_string(), value));
            }
            plans.push(PodPlan {
                deployment: deployment.clone(),
                namespace: ns.clone(),
                name: pod,
                labels: labels.clone(),
                ip,
                env,
                container_ports: container_ports.clone(),
                files: files.clone(),
                mounts: mounts.clone(),
                mode: mode.clone(),
            });
        }
        Ok(plans)
    }

    /// Applies the workload part of `docs`: Deployments become pods (started
    /// here), and EndpointSlices are appended for Services with selectors.
    /// Returns the documents to write (without Deployments).
    pub async fn apply(&mut self, docs: Vec<Value>, scope: &str) -> Result<Vec<Value>> {
        self.register_data(&docs);
        let mut out = Vec::new();
        let mut new_pods = Vec::new();
        for doc in docs {
            if kind(&doc) == "Deployment" {
                new_pods.extend(self.plan_deployment(&doc)?);
            } else {
                out.push(doc);
            }
        }
        for plan in new_pods {
            self.start_pod(plan, scope).await?;
        }
        let plans: Vec<&PodPlan> = self
            .pods
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| &p.plan)
            .collect();
        let slices: Vec<Value> = out
            .iter()
            .filter(|d| kind(d) == "Service")
            .filter_map(|svc| endpoint_slice(svc, &plans))
            .collect();
        out.extend(slices);
        Ok(out)
    }

    async fn start_pod(&mut self, plan: PodPlan, scope: &str) -> Result<()> {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let child = match &plan.mode {
            PodMode::Echo | PodMode::Dns(_) => Some(self.spawn_echo(&plan, logs.clone()).await?),
            PodMode::Unsupported(image) => {
                if self.verbose {
                    eprintln!(
                        "note: pod {}/{} (image {image}) is not run locally",
                        plan.namespace, plan.name
                    );
                }
                None
            }
        };
        self.pods.push(Pod {
            plan,
            scope: scope.to_string(),
            child,
            logs,
        });
        Ok(())
    }

    async fn spawn_echo(&self, plan: &PodPlan, logs: Arc<Mutex<Vec<String>>>) -> Result<Child> {
        let pod_dir = self.pods_dir.join(&plan.name);
        for (rel, content) in &plan.files {
            let path = pod_dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let mut cmd = Command::new(&self.echo_bin);
        cmd.arg("--bind").arg(plan.ip.to_string());
        if let PodMode::Dns(port) = plan.mode {
            cmd.arg("--dns-port").arg(port.to_string());
        }
        for (k, v) in &plan.env {
            cmd.env(k, rewrite_mount_path(v, &plan.mounts, &pod_dir));
        }
        // Upstream's tcp-backend spells its key variable TLS_SERVER_PRIV_KEY.
        if let Some((_, key)) = plan.env.iter().find(|(k, _)| k == "TLS_SERVER_PRIV_KEY")
            && !plan.env.iter().any(|(k, _)| k == "TLS_SERVER_PRIVKEY")
        {
            cmd.env(
                "TLS_SERVER_PRIVKEY",
                rewrite_mount_path(key, &plan.mounts, &pod_dir),
            );
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if self.verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.echo_bin.display()))?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("listening")
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(());
                    }
                    logs.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        // The echo prints its "listening" line once every socket is bound.
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(())) => {}
            _ => {
                if let Some(status) = child.try_wait()? {
                    bail!("echo pod {} exited early: {status}", plan.name);
                }
                bail!(
                    "echo pod {} did not start listening on {}",
                    plan.name,
                    plan.ip
                );
            }
        }
        Ok(child)
    }

    /// Stops the pods started for `scope`.
    pub async fn remove_scope(&mut self, scope: &str) {
        let mut kept = Vec::new();
        for mut pod in std::mem::take(&mut self.pods) {
            if pod.scope == scope {
                if let Some(child) = pod.child.as_mut() {
                    let _ = child.kill().await;
                }
            } else {
                kept.push(pod);
            }
        }
        self.pods = kept;
    }

    /// Stops every pod.
    pub async fn shutdown(&mut self) {
        for pod in &mut self.pods {
            if let Some(child) = pod.child.as_mut() {
                let _ = child.kill().await;
            }
        }
        self.pods.clear();
    }

    /// Log lines of the pods of `namespace` whose name starts with `prefix`.
    pub fn logs(&self, namespace: &str, prefix: &str) -> Vec<Vec<String>> {
        self.pods
            .iter()
            .filter(|p| p.plan.namespace == namespace && p.plan.name.starts_with(prefix))
            .map(|p| p.logs.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// (name, IP) of the running pods of a deployment.
    pub fn pod_endpoints(&self, namespace: &str, deployment: &str) -> Vec<(String, Ipv4Addr)> {
        self.pods
            .iter()
            .filter(|p| p.plan.namespace == namespace && p.plan.deployment == deployment)
            .filter(|p| p.child.is_some())
            .map(|p| (p.plan.name.clone(), p.plan.ip))
            .collect()
    }
}

fn rewrite_mount_path(value: &str, mounts: &[(String, PathBuf)], pod_dir: &Path) -> String {
    for (mount_path, rel) in mounts {
        if let Some(rest) = value.strip_prefix(mount_path.as_str()) {
            return format!("{}{}", pod_dir.join(rel).display(), rest);
        }
    }
    value.to_string()
}

/// The EndpointSlice the endpoints controller would write for `svc`, or `None`
/// for a Service without selector.
pub fn endpoint_slice(svc: &Value, pods: &[&PodPlan]) -> Option<Value> {
    let selector = svc.pointer("/spec/selector")?.as_object()?;
    if selector.is_empty() {
        return None;
    }
    let ns = namespace(svc);
    let svc_name = name(svc);
    let matching: Vec<&&PodPlan> = pods
        .iter()
        .filter(|p| {
            p.namespace == ns
                && selector
                    .iter()
                    .all(|(k, v)| p.labels.get(k).map(String::as_str) == v.as_str())
        })
        .collect();
    let mut ports = Vec::new();
    for port in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let port_name = port.get("name").and_then(Value::as_str).unwrap_or("");
        let service_port = port.get("port").and_then(Value::as_u64).unwrap_or(0);
        let target = match port.get("targetPort") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => match s.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => matching.first().and_then(|p| {
                    p.container_ports
                        .iter()
                        .find(|(n, _)| n == s)
                        .map(|(_, port)| u64::from(*port))
                }),
            },
            _ => Some(service_port),
        };
        let Some(target) = target else { continue };
        let mut entry = json!({
            "name": port_name,
            "port": target,
            "protocol": port.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
        });
        if let Some(app) = port.get("appProtocol") {
            entry["appProtocol"] = app.clone();
        }
        ports.push(entry);
    }
    let endpoints: Vec<Value> = matching
        .iter()
        .map(|p| {
            json!({
                "addresses": [p.ip.to_string()],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace},
            })
        })
        .collect();
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{svc_name}-{}", safe_string(fnv(svc_name), 5)),
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": svc_name,
                "endpointslice.kubernetes.io/managed-by": "portcullis-conformance",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::parse_yaml_docs;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: infra-backend-v1
  namespace: infra
spec:
  selector:
    app: infra-backend-v1
  ports:
    - name: first-port
      port: 8080
      targetPort: 3000
    - name: second-port
      appProtocol: kubernetes.io/h2c
      port: 8081
      targetPort: 3001
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: infra-backend-v1
  namespace: infra
spec:
  replicas: 2
  selector:
    matchLabels:
      app: infra-backend-v1
  template:
    metadata:
      labels:
        app: infra-backend-v1
    spec:
      containers:
        - name: infra-backend-v1
          image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
          volumeMounts:
            - name: secret-volume
              mountPath: /etc/secret-volume
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: TLS_SERVER_CERT
              value: /etc/secret-volume/crt
      volumes:
        - name: secret-volume
          secret:
            secretName: certs
            items:
              - key: tls.crt
                path: crt
---
apiVersion: v1
kind: Secret
metadata:
  name: certs
  namespace: infra
data:
  tls.crt: SGVsbG8=
"#;

    fn cluster() -> Cluster {
        Cluster::new(
            PathBuf::from("/nonexistent"),
            PathBuf::from("/tmp/pods"),
            (Ipv4Addr::new(127, 0, 20, 0), 22),
            false,
        )
    }

    #[test]
    fn deployment_becomes_pods_with_env_files_and_ips() {
        let docs = parse_yaml_docs(MANIFEST).unwrap();
        let mut c = cluster();
        c.register_data(&docs);
        let plans = c.plan_deployment(&docs[1]).unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].ip, Ipv4Addr::new(127, 0, 20, 1));
        assert_eq!(plans[1].ip, Ipv4Addr::new(127, 0, 20, 2));
        let parts: Vec<&str> = plans[0].name.rsplitn(3, '-').collect();
        assert_eq!(parts[0].len(), 5);
        assert_eq!(parts[1].len(), 10);
        assert_eq!(parts[2], "infra-backend-v1");
        assert_ne!(plans[0].name, plans[1].name);
        assert_eq!(
            plans[0].env[0],
            ("POD_NAME".to_string(), plans[0].name.clone())
        );
        assert_eq!(
            plans[0].env[1],
            ("NAMESPACE".to_string(), "infra".to_string())
        );
        assert_eq!(
            plans[0].files,
            vec![(PathBuf::from("etc/secret-volume/crt"), b"Hello".to_vec())]
        );
        assert_eq!(plans[0].mode, PodMode::Echo);
        assert_eq!(
            rewrite_mount_path("/etc/secret-volume/crt", &plans[0].mounts, Path::new("/p")),
            "/p/etc/secret-volume/crt"
        );
    }

    #[test]
    fn endpoint_slice_maps_port_names_to_target_ports() {
        let docs = parse_yaml_docs(MANIFEST).unwrap();
        let mut c = cluster();
        let plans = c.plan_deployment(&docs[1]).unwrap();
        let refs: Vec<&PodPlan> = plans.iter().collect();
        let slice = endpoint_slice(&docs[0], &refs).unwrap();
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "infra-backend-v1"
        );
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(slice["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.20.1");
        assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(
            slice["endpoints"][1]["targetRef"]["name"],
            plans[1].name.as_str()
        );
        assert_eq!(
            slice["ports"],
            json!([
                {"name": "first-port", "port": 3000, "protocol": "TCP"},
                {"name": "second-port", "port": 3001, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
            ])
        );
        // A pod in another namespace or with other labels does not match.
        let mut other = plans[0].clone();
        other.namespace = "elsewhere".into();
        let slice = endpoint_slice(&docs[0], &[&other]).unwrap();
        assert!(slice["endpoints"].as_array().unwrap().is_empty());
    }
}

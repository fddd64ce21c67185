//! Pods on the testbed, made the way a container runtime makes them: a network namespace, then
//! every plugin of the node's installed conflist executed in turn inside the node's namespace,
//! with the standard `CNI_*` environment and the network configuration on stdin.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::TestbedError;
use crate::agents::{NodeDir, sibling_binary};
use crate::cmd;
use crate::containerd::{self, ContainerdDir};
use crate::cri::{self, ContainerSpec, Cri, PodSpec};
use crate::state::{Status, state_dir};

/// Where the Debian plugins (portmap, tuning, ptp, host-local) live.
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub node: String,
    pub name: String,
    pub namespace: String,
    pub netns: String,
    pub container_id: String,
    pub ip: String,
    /// The conflist used and the chain's final result (prevResult of DEL); for a CRI pod, no
    /// conflist and what `pod add` printed.
    pub conflist: Value,
    pub result: Value,
    #[serde(default)]
    pub runtime: PodRuntime,
}

impl PodRecord {
    fn save(&self, path: &Path) -> Result<(), TestbedError> {
        files::write_atomic(
            path,
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
            0o644,
        )
        .map_err(|e| other(format!("{}: {e}", path.display())))
    }
}

/// Who makes a pod: the testbed running the node's conflist itself, or the node's containerd
/// asked through its CRI (which then runs the conflist on its own schedule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PodRuntime {
    #[default]
    Cni,
    Cri,
}

pub struct PodOptions {
    /// Another conflist than the node's (e.g. with more chained plugins).
    pub conflist: Option<PathBuf>,
    /// Override the conflist's cniVersion.
    pub cni_version: Option<String>,
}

fn other(msg: String) -> TestbedError {
    TestbedError::Other(msg)
}

fn record_path(prefix: &str, node: &str, namespace: &str, name: &str) -> PathBuf {
    state_dir(prefix)
        .join("pods")
        .join(node)
        .join(format!("{namespace}_{name}.json"))
}

/// Every pod record of a run, for `status`.
pub fn records(prefix: &str) -> Vec<PodRecord> {
    let mut out = Vec::new();
    let Ok(nodes) = std::fs::read_dir(state_dir(prefix).join("pods")) else {
        return out;
    };
    for node in nodes.flatten() {
        for f in std::fs::read_dir(node.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(f.path())
                && let Ok(r) = serde_json::from_str::<PodRecord>(&text)
            {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| (&a.node, &a.namespace, &a.name).cmp(&(&b.node, &b.namespace, &b.name)));
    out
}

fn container_id(prefix: &str, node: &str, namespace: &str, name: &str) -> String {
    let mut parts = Vec::new();
    for salt in 0u8..4 {
        let mut h = DefaultHasher::new();
        (salt, prefix, node, namespace, name).hash(&mut h);
        parts.push(format!("{:016x}", h.finish()));
    }
    parts.concat()
}

fn cni_path() -> String {
    let ours = sibling_binary("aws-cni", "VPC_TESTBED_AWS_CNI");
    let dir = ours.parent().map(Path::to_path_buf).unwrap_or_default();
    format!("{}:{SYSTEM_CNI_DIR}", dir.display())
}

fn find_plugin(path: &str, plugin: &str) -> Result<PathBuf, TestbedError> {
    path.split(':')
        .map(|d| Path::new(d).join(plugin))
        .find(|p| p.exists())
        .ok_or_else(|| other(format!("CNI plugin {plugin:?} is not in CNI_PATH {path}")))
}

struct Invocation<'a> {
    node_netns: &'a str,
    command: &'a str,
    container_id: &'a str,
    netns: &'a str,
    args: String,
}

/// Runs one plugin as a runtime does; returns its stdout (the result) or the CNI error.
fn exec(inv: &Invocation, plugin: &str, stdin: &Value) -> Result<Value, TestbedError> {
    let path = cni_path();
    let binary = find_plugin(&path, plugin)?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", inv.node_netns])
        .arg(&binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", &inv.args)
        .env("CNI_PATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| other(format!("run {}: {e}", binary.display())))?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(stdin.to_string().as_bytes())
            .map_err(|e| other(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| other(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(other(format!("{plugin} {}: {text} {stderr}", inv.command)));
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| {
        other(format!(
            "{plugin} {} printed no JSON ({e}): {text}",
            inv.command
        ))
    })
}

/// The network configuration for plugin `i` of a conflist, as libcni builds it.
fn netconf(list: &Value, i: usize, version: &str, prev: Option<&Value>) -> Value {
    let mut conf = list["plugins"][i].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = json!(version);
    if let Some(p) = prev.filter(|p| !p.is_null()) {
        conf["prevResult"] = p.clone();
    }
    conf
}

/// The status of a testbed that is up.
fn running(prefix: &str) -> Result<Status, TestbedError> {
    Status::read(prefix).ok_or_else(|| other(format!("testbed {prefix} is not up")))
}

fn node_of<'a>(
    status: &'a Status,
    node: &str,
) -> Result<&'a crate::state::NodeStatus, TestbedError> {
    status
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| other(format!("no node {node:?} in testbed {}", status.prefix)))
}

pub fn add(
    prefix: &str,
    node: &str,
    name: &str,
    namespace: &str,
    options: &PodOptions,
) -> Result<Value, TestbedError> {
    let status = running(prefix)?;
    node_of(&status, node)?;
    let conflist_path = match &options.conflist {
        Some(p) => p.clone(),
        None => NodeDir::new(Path::new(&status.state_dir), node).conflist(),
    };
    let list: Value = match std::fs::read_to_string(&conflist_path) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| other(format!("{}: {e}", conflist_path.display())))?,
        Err(_) => {
            return Err(other(format!(
                "node {node} is not network-ready: it has no CNI config ({}); see its ipamd.log",
                conflist_path.display()
            )));
        }
    };
    let version = options
        .cni_version
        .clone()
        .unwrap_or_else(|| list["cniVersion"].as_str().unwrap_or("1.0.0").to_string());
    let sandbox = Sandbox::of_pod(prefix, node, namespace, name);
    let result = add_sandbox(prefix, &sandbox, &list, &version)?;
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let record = PodRecord {
        node: node.to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        netns: sandbox.netns,
        container_id: sandbox.container_id,
        ip,
        conflist: list,
        result: result.clone(),
        runtime: PodRuntime::Cni,
    };
    record.save(&record_path(prefix, node, namespace, name))?;
    Ok(result)
}

pub fn del(prefix: &str, node: &str, name: &str, namespace: &str) -> Result<(), TestbedError> {
    let status = running(prefix)?;
    node_of(&status, node)?;
    let path = record_path(prefix, node, namespace, name);
    let record: Option<PodRecord> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if record
        .as_ref()
        .is_some_and(|r| r.runtime == PodRuntime::Cri)
    {
        return del_cri(prefix, node, name, namespace);
    }
    let sandbox = Sandbox::of_pod(prefix, node, namespace, name);
    let list = match &record {
        Some(r) => r.conflist.clone(),
        None => {
            let p = NodeDir::new(Path::new(&status.state_dir), node).conflist();
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_default())
                .unwrap_or(Value::Null)
        }
    };
    let version = list["cniVersion"].as_str().unwrap_or("1.0.0").to_string();
    let version = record
        .as_ref()
        .and_then(|r| r.result["cniVersion"].as_str().map(str::to_string))
        .unwrap_or(version);
    let prev = record.as_ref().map(|r| r.result.clone());
    let result = del_sandbox(prefix, &sandbox, &list, &version, prev.as_ref());
    let _ = cmd::run(&["ip", "netns", "del", &sandbox.netns]);
    let _ = std::fs::remove_file(&path);
    result
}

/// One incarnation of a pod as a runtime sees it: a container id and a network namespace. A
/// re-created pod has the same namespace/name and a new sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub node: String,
    pub namespace: String,
    pub name: String,
    pub container_id: String,
    /// The network namespace's name (under /run/netns).
    pub netns: String,
}

impl Sandbox {
    /// The sandbox `pod add` makes for a pod.
    pub fn of_pod(prefix: &str, node: &str, namespace: &str, name: &str) -> Sandbox {
        Sandbox {
            node: node.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            container_id: container_id(prefix, node, namespace, name),
            netns: format!("{prefix}-{node}-{namespace}-{name}"),
        }
    }

    /// Another sandbox of the same pod, told apart by `tag`.
    pub fn another(&self, tag: &str) -> Sandbox {
        Sandbox {
            container_id: format!(
                "{}{tag}",
                &self.container_id[..self.container_id.len().min(48)]
            ),
            netns: format!("{}-{tag}", self.netns),
            ..self.clone()
        }
    }

    fn invocation<'a>(
        &'a self,
        node_netns: &'a str,
        command: &'a str,
        netns: &'a str,
    ) -> Invocation<'a> {
        let (namespace, name, id) = (&self.namespace, &self.name, &self.container_id);
        Invocation {
            node_netns,
            command,
            container_id: id,
            netns,
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={id}"
            ),
        }
    }
}

/// ADD of every plugin of `list` for the sandbox, as a runtime runs it (its namespace is made
/// first, and removed again when the ADD fails). Returns the chain's result.
pub fn add_sandbox(
    prefix: &str,
    sandbox: &Sandbox,
    list: &Value,
    version: &str,
) -> Result<Value, TestbedError> {
    let status = running(prefix)?;
    let n = node_of(&status, &sandbox.node)?;
    let netns = format!("/run/netns/{}", sandbox.netns);
    if !Path::new(&netns).exists() {
        cmd::run(&["ip", "netns", "add", &sandbox.netns])?;
        cmd::ip(&sandbox.netns, &["link", "set", "lo", "up"])?;
    }
    let inv = sandbox.invocation(&n.netns, "ADD", &netns);
    let plugins = list["plugins"].as_array().map(Vec::len).unwrap_or(0);
    let mut result = Value::Null;
    for i in 0..plugins {
        let plugin = list["plugins"][i]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let conf = netconf(list, i, version, Some(&result));
        match exec(&inv, &plugin, &conf) {
            Ok(r) => result = r,
            Err(e) => {
                // The runtime's part of a failed ADD: remove the sandbox's namespace.
                let _ = cmd::run(&["ip", "netns", "del", &sandbox.netns]);
                return Err(e);
            }
        }
    }
    Ok(result)
}

/// DEL of every plugin of `list` (in reverse) for the sandbox with `prev` as prevResult, as a
/// runtime runs it; the sandbox's namespace is left as it is (gone or not).
pub fn del_sandbox(
    prefix: &str,
    sandbox: &Sandbox,
    list: &Value,
    version: &str,
    prev: Option<&Value>,
) -> Result<(), TestbedError> {
    let status = running(prefix)?;
    let n = node_of(&status, &sandbox.node)?;
    let netns = format!("/run/netns/{}", sandbox.netns);
    let inv = sandbox.invocation(&n.netns, "DEL", &netns);
    let plugins = list["plugins"].as_array().map(Vec::len).unwrap_or(0);
    let mut errors = Vec::new();
    for i in (0..plugins).rev() {
        let plugin = list["plugins"][i]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Err(e) = exec(&inv, &plugin, &netconf(list, i, version, prev)) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(other(errors.join("; ")))
    }
}

/// Runs one CNI command (CHECK, STATUS, …) for a pod with its recorded prevResult.
pub fn invoke(
    prefix: &str,
    node: &str,
    name: &str,
    namespace: &str,
    command: &str,
) -> Result<Value, TestbedError> {
    let status = running(prefix)?;
    let n = node_of(&status, node)?;
    let path = record_path(prefix, node, namespace, name);
    let record: PodRecord = serde_json::from_str(
        &std::fs::read_to_string(&path).map_err(|e| other(format!("{}: {e}", path.display())))?,
    )
    .map_err(|e| other(e.to_string()))?;
    let version = record.result["cniVersion"]
        .as_str()
        .unwrap_or("1.0.0")
        .to_string();
    let inv = Invocation {
        node_netns: &n.netns,
        command,
        container_id: &record.container_id,
        netns: &format!("/run/netns/{}", record.netns),
        args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}"),
    };
    exec(
        &inv,
        "aws-cni",
        &netconf(&record.conflist, 0, &version, Some(&record.result)),
    )
}

/// CNI GC on a node, as a runtime runs it: every pod recorded on the node is a valid
/// attachment; ipamd releases whatever else its plugin's network holds (e.g. the address of a
/// pod deleted while ipamd was down).
pub fn gc(prefix: &str, node: &str) -> Result<(), TestbedError> {
    let valid: Vec<Value> = records(prefix)
        .iter()
        .filter(|r| r.node == node)
        .map(|r| json!({"containerID": r.container_id, "ifname": "eth0"}))
        .collect();
    gc_with(prefix, node, Some(valid))
}

/// CNI GC with the given `cni.dev/valid-attachments` (None: the key left out, which CNI 1.1
/// forbids).
pub fn gc_with(prefix: &str, node: &str, valid: Option<Vec<Value>>) -> Result<(), TestbedError> {
    let status = running(prefix)?;
    let n = node_of(&status, node)?;
    let p = NodeDir::new(Path::new(&status.state_dir), node).conflist();
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(&p).map_err(|e| other(format!("{}: {e}", p.display())))?,
    )
    .map_err(|e| other(format!("{}: {e}", p.display())))?;
    let mut conf = netconf(&list, 0, "1.1.0", None);
    if let Some(valid) = valid {
        conf["cni.dev/valid-attachments"] = json!(valid);
    }
    let inv = Invocation {
        node_netns: &n.netns,
        command: "GC",
        container_id: "",
        netns: "",
        args: String::new(),
    };
    exec(&inv, "aws-cni", &conf).map(|_| ())
}

/// A pod UID as the API server would give one (a UUID's shape; unique per call).
pub fn pod_uid(prefix: &str, node: &str, namespace: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = DefaultHasher::new();
    (prefix, node, namespace, name, nanos, std::process::id()).hash(&mut h);
    let a = h.finish();
    (a, nanos).hash(&mut h);
    let b = h.finish();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The pod as the kubelet would describe it to the node's containerd.
pub fn cri_pod_spec(
    prefix: &str,
    dir: &ContainerdDir,
    namespace: &str,
    name: &str,
    attempt: u32,
) -> PodSpec {
    let uid = pod_uid(prefix, &dir.node, namespace, name);
    PodSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        log_directory: dir.pod_logs().join(format!("{namespace}_{name}_{uid}")),
        cgroup_parent: containerd::cgroup_parent(prefix, &dir.node, &uid),
        uid,
        attempt,
        host_ports: Vec::new(),
    }
}

/// The pod's container: busybox httpd on port 8080, answering with the pod's namespace/name.
pub fn listener(namespace: &str, name: &str) -> ContainerSpec {
    ContainerSpec {
        name: "listener".into(),
        image: containerd::BUSYBOX_IMAGE.into(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "mkdir -p /www && echo \"$POD\" > /www/index.html && exec httpd -f -p {LISTENER_PORT} -h /www"
            ),
        ],
        env: vec![("POD".into(), format!("{namespace}/{name}"))],
    }
}

/// The port of the listener container of CRI pods.
pub const LISTENER_PORT: u16 = 8080;

fn containerd_of(status: &Status, node: &str) -> Result<(PathBuf, ContainerdDir), TestbedError> {
    let n = node_of(status, node)?;
    let socket = n.cri_socket.clone().ok_or_else(|| {
        other(format!(
            "node {node} runs no containerd: give it `runtime: containerd` in the testbed config"
        ))
    })?;
    let dir = ContainerdDir::of(&NodeDir::new(Path::new(&status.state_dir), node));
    Ok((PathBuf::from(socket), dir))
}

/// A pod made through the node's containerd, as a kubelet makes one: RunPodSandbox (containerd
/// runs the conflist), CreateContainer and StartContainer (a listener), PodSandboxStatus.
/// Prints what containerd reports; a failure after the sandbox was made removes it again.
pub fn add_cri(
    prefix: &str,
    node: &str,
    name: &str,
    namespace: &str,
) -> Result<Value, TestbedError> {
    let status = running(prefix)?;
    let (socket, dir) = containerd_of(&status, node)?;
    let path = record_path(prefix, node, namespace, name);
    if path.exists() {
        return Err(other(format!(
            "pod {namespace}/{name} already exists on {node}: `vpc-testbed pod del` it first"
        )));
    }
    let pod = cri_pod_spec(prefix, &dir, namespace, name, 0);
    std::fs::create_dir_all(&pod.log_directory)
        .map_err(|e| other(format!("create {}: {e}", pod.log_directory.display())))?;
    let container = listener(namespace, name);
    let made = cri::block_on(async {
        let mut cri = Cri::connect(&socket).await?;
        let version = cri.version().await?;
        let sandbox = cri.run_pod_sandbox(&pod).await?;
        let rest = async {
            let c = cri.start_container(&sandbox, &pod, &container).await?;
            let st = cri.sandbox_status(&sandbox).await?;
            Ok::<_, cri::CriError>((c, st))
        }
        .await;
        match rest {
            Ok((c, st)) => Ok((version, sandbox, c, st)),
            Err(e) => {
                let _ = cri.stop_pod_sandbox(&sandbox).await;
                let _ = cri.remove_pod_sandbox(&sandbox).await;
                Err(e)
            }
        }
    })?;
    let (version, sandbox, container_id, st) = made;
    let ip = st.ip.map(|i| i.to_string()).unwrap_or_default();
    let netns = st
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let result = json!({
        "runtime": version,
        "pod": format!("{namespace}/{name}"),
        "uid": pod.uid,
        "sandbox": sandbox,
        "ready": st.ready,
        "ip": ip,
        "netns": netns,
        "containers": [{"name": container.name, "id": container_id, "image": container.image, "port": LISTENER_PORT}],
    });
    let record = PodRecord {
        node: node.to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        netns,
        container_id: sandbox,
        ip,
        conflist: Value::Null,
        result: result.clone(),
        runtime: PodRuntime::Cri,
    };
    record.save(&path)?;
    Ok(result)
}

/// StopPodSandbox (containerd runs CNI DEL) and RemovePodSandbox for every sandbox of the pod
/// the node's containerd knows.
pub fn del_cri(prefix: &str, node: &str, name: &str, namespace: &str) -> Result<(), TestbedError> {
    let status = running(prefix)?;
    let (socket, _) = containerd_of(&status, node)?;
    let removed = cri::block_on(async {
        let mut cri = Cri::connect(&socket).await?;
        let mut removed = 0;
        for s in cri.list_pod_sandboxes().await? {
            let Some(m) = &s.metadata else { continue };
            if m.name == name && m.namespace == namespace {
                cri.stop_pod_sandbox(&s.id).await?;
                cri.remove_pod_sandbox(&s.id).await?;
                removed += 1;
            }
        }
        Ok::<_, cri::CriError>(removed)
    })?;
    let _ = std::fs::remove_file(record_path(prefix, node, namespace, name));
    if removed == 0 {
        return Err(other(format!(
            "containerd on {node} has no sandbox for pod {namespace}/{name}"
        )));
    }
    Ok(())
}

//! One ipamd per node, inside the node's namespace, in standalone mode, configured only through
//! its environment; and the manifests it watches (a Node and the ENIConfigs, as a person would
//! `kubectl apply` them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use eniconfig::{EniConfig, EniConfigSpec, NodeObject, Object};

use crate::TestbedError;
use crate::config::{Config, NodeConfig};
use crate::fabric::EC2_RELAY_PORT;
use crate::seed::Seeded;

/// A node's files: manifests, checkpoint, socket, CNI config, logs.
pub struct NodeDir(pub PathBuf);

impl NodeDir {
    pub fn new(state_dir: &Path, node: &str) -> Self {
        NodeDir(state_dir.join("nodes").join(node))
    }
    pub fn manifests(&self) -> PathBuf {
        self.0.join("manifests")
    }
    pub fn socket(&self) -> PathBuf {
        self.0.join("ipamd.sock")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.0.join("net.d")
    }
    pub fn conflist(&self) -> PathBuf {
        self.cni_conf_dir().join("10-aws.conflist")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("ipam.json")
    }
    pub fn ipamd_log(&self) -> PathBuf {
        self.0.join("ipamd.log")
    }
    pub fn plugin_log(&self) -> PathBuf {
        self.0.join("plugin.log")
    }
}

fn yaml_err(e: serde_yaml::Error) -> TestbedError {
    TestbedError::Other(format!("manifest: {e}"))
}

pub fn node_manifest(n: &NodeObject) -> Result<String, TestbedError> {
    let mut doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": n.name, "labels": n.labels, "annotations": n.annotations},
    });
    // What ipamd reads besides metadata: the kubelet's max pods and the cordon.
    if let Some(pods) = n.pod_capacity {
        doc["status"] = serde_json::json!({"capacity": {"pods": pods.to_string()}});
    }
    if n.unschedulable {
        doc["spec"] = serde_json::json!({"unschedulable": true});
    }
    serde_yaml::to_string(&doc).map_err(yaml_err)
}

pub fn eniconfig_manifest(c: &EniConfig) -> Result<String, TestbedError> {
    let doc = serde_json::json!({
        "apiVersion": eniconfig::API_VERSION,
        "kind": "ENIConfig",
        "metadata": {"name": c.name},
        "spec": c.spec,
    });
    serde_yaml::to_string(&doc).map_err(yaml_err)
}

fn write(path: &Path, text: &str) -> Result<(), TestbedError> {
    files::write_atomic(path, text.as_bytes(), 0o644)
        .map_err(|e| TestbedError::Other(format!("write {}: {e}", path.display())))
}

/// Writes one object into a manifests directory under a name derived from it, so a later apply
/// replaces it and `delete` finds it.
pub fn apply_object(dir: &Path, object: &Object) -> Result<(), TestbedError> {
    match object {
        Object::Node(n) => write(&dir.join("node.yaml"), &node_manifest(n)?),
        Object::EniConfig(c) => write(
            &dir.join(format!("eniconfig-{}.yaml", c.name)),
            &eniconfig_manifest(c)?,
        ),
    }
}

pub fn delete_eniconfig(dir: &Path, name: &str) -> Result<bool, TestbedError> {
    let path = dir.join(format!("eniconfig-{name}.yaml"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(TestbedError::Other(format!(
            "remove {}: {e}",
            path.display()
        ))),
    }
}

/// The manifests a node starts with: its Node object and the config's ENIConfigs (names
/// resolved to EC2 ids; no `securityGroups` field when the list is empty or absent).
pub fn initial_manifests(
    dir: &Path,
    config: &Config,
    node: &NodeConfig,
    seeded: &Seeded,
) -> Result<(), TestbedError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| TestbedError::Other(format!("create {}: {e}", dir.display())))?;
    let n = NodeObject {
        name: node.name.clone(),
        labels: node.labels.clone(),
        annotations: node.annotations.clone(),
        ..Default::default()
    };
    apply_object(dir, &Object::Node(n))?;
    for e in &config.eniconfigs {
        let groups: Vec<String> = e
            .security_groups
            .iter()
            .flatten()
            .map(|g| seeded.security_groups[g].clone())
            .collect();
        let spec = EniConfigSpec {
            subnet: seeded.subnets[&e.subnet].clone(),
            security_groups: (!groups.is_empty()).then_some(groups),
            subnets: e
                .subnets
                .as_ref()
                .map(|names| names.iter().map(|n| seeded.subnets[n].clone()).collect()),
        };
        apply_object(
            dir,
            &Object::EniConfig(EniConfig {
                name: e.name.clone(),
                spec,
            }),
        )?;
    }
    Ok(())
}

/// The binary next to this one (the same build), or the one `env` names.
pub fn sibling_binary(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    // From a test binary (target/debug/deps/…) the workspace's binaries are one level up.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .map(|d| {
            if d.ends_with("deps") {
                d.parent().map(Path::to_path_buf).unwrap_or(d)
            } else {
                d
            }
        })
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The access key id a node's ipamd signs its EC2 calls with: the emulator's calls
/// `?by=caller` are per node.
pub fn access_key(node: &str) -> String {
    format!("testbed-{node}")
}

/// Starts ipamd in the node's namespace with the environment a DaemonSet would give it.
pub fn start_ipamd(
    netns: &str,
    dir: &NodeDir,
    region: &str,
    config: &Config,
    node: &NodeConfig,
) -> Result<Child, TestbedError> {
    for d in [dir.cni_conf_dir(), dir.manifests()] {
        std::fs::create_dir_all(&d)
            .map_err(|e| TestbedError::Other(format!("create {}: {e}", d.display())))?;
    }
    let ipamd = sibling_binary("ipamd", "VPC_TESTBED_IPAMD");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]);
    if node.read_only_sysctls {
        // `ip netns exec` runs it in a mount namespace of its own: the read-only bind mount
        // stays there.
        cmd.args([
            "sh",
            "-c",
            "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec \"$0\"",
        ]);
    }
    cmd.arg(&ipamd).env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_REGION", region)
        // Its own key per node: the emulator counts calls per signing key (`make fleet`).
        .env("AWS_ACCESS_KEY_ID", access_key(&node.name))
        .env("AWS_SECRET_ACCESS_KEY", "testbed")
        .env(
            "AWS_ENDPOINT_URL_EC2",
            format!("http://127.0.0.1:{EC2_RELAY_PORT}"),
        )
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://169.254.169.254",
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4")
        .env("MY_NODE_NAME", &node.name)
        .env("IPAMD_MANIFESTS", dir.manifests())
        .env(
            "IPAMD_GRPC_ADDRESS",
            format!("unix://{}", dir.socket().display()),
        )
        .env("CNI_CONF_DIR", dir.cni_conf_dir())
        .env("AWS_VPC_K8S_CNI_BACKING_STORE", dir.checkpoint())
        .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.ipamd_log())
        .env("AWS_VPC_K8S_PLUGIN_LOG_FILE", dir.plugin_log());
    for (k, v) in config.ipamd_env.iter().chain(node.ipamd_env.iter()) {
        cmd.env(k, v);
    }
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.0.join("ipamd.stderr"))
        .map_err(|e| TestbedError::Other(format!("ipamd stderr: {e}")))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| TestbedError::Other(format!("start {} in {netns}: {e}", ipamd.display())))
}

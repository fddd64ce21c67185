//! A CRI client (runtime.v1 over the runtime's unix socket), asking for what a kubelet asks for:
//! pod sandboxes with Kubernetes metadata, containers in them, their status, exec, stop and
//! remove. The runtime (containerd) runs the CNI plugins itself, on its own schedule.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    KeyValue, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest,
    NamespaceMode, NamespaceOption, PodSandbox, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxState, PodSandboxStatusRequest, PortMapping, Protocol, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::Channel;

/// How long one CRI call may take (a kubelet's default `--runtime-request-timeout` is 2 min).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("CRI runtime at {socket}: {source}")]
    Connect {
        socket: String,
        source: tonic::transport::Error,
    },
    #[error("CRI {call} on {socket}: {code:?}: {message}")]
    Call {
        call: &'static str,
        socket: String,
        code: tonic::Code,
        message: String,
    },
    #[error("CRI {call} on {socket}: {problem}")]
    Answer {
        call: &'static str,
        socket: String,
        problem: String,
    },
}

/// A pod as the kubelet describes it to the runtime.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Incremented by the kubelet each time it makes a new sandbox for the same pod.
    pub attempt: u32,
    /// Where the runtime writes the containers' logs (the kubelet's /var/log/pods/<pod>).
    pub log_directory: PathBuf,
    /// The pod's cgroup (the kubelet's /kubepods/…/pod<uid>); cgroupfs driver.
    pub cgroup_parent: String,
    /// TCP hostPorts: (container port, host port); containerd hands them to portmap.
    pub host_ports: Vec<(u16, u16)>,
}

impl PodSpec {
    pub fn sandbox_config(&self) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: self.attempt,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_directory.display().to_string(),
            port_mappings: self
                .host_ports
                .iter()
                .map(|(container, host)| PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: i32::from(*container),
                    host_port: i32::from(*host),
                    host_ip: String::new(),
                })
                .collect(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_string(), self.name.clone()),
                (
                    "io.kubernetes.pod.namespace".to_string(),
                    self.namespace.clone(),
                ),
                ("io.kubernetes.pod.uid".to_string(), self.uid.clone()),
            ]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A container of a pod: image, command, environment.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What PodSandboxStatus (verbose) says about a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub id: String,
    pub ready: bool,
    /// The address the runtime reports (from the CNI result).
    pub ip: Option<Ipv4Addr>,
    /// The sandbox's network namespace, as the runtime mounted it.
    pub netns: Option<PathBuf>,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Clones share one connection (HTTP/2 multiplexes concurrent calls).
#[derive(Clone)]
pub struct Cri {
    socket: String,
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    pub async fn connect(socket: &Path) -> Result<Cri, CriError> {
        let socket = socket.display().to_string();
        let channel = rpc::channel(&format!("unix://{socket}"), CALL_TIMEOUT)
            .await
            .map_err(|source| CriError::Connect {
                socket: socket.clone(),
                source,
            })?;
        Ok(Cri {
            socket,
            client: RuntimeServiceClient::new(channel),
        })
    }

    fn failed(&self, call: &'static str) -> impl FnOnce(tonic::Status) -> CriError + use<> {
        let socket = self.socket.clone();
        move |s| CriError::Call {
            call,
            socket,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    fn answer(&self, call: &'static str, problem: impl Into<String>) -> CriError {
        CriError::Answer {
            call,
            socket: self.socket.clone(),
            problem: problem.into(),
        }
    }

    /// "<runtime name> <version> (CRI <api version>)"
    pub async fn version(&mut self) -> Result<String, CriError> {
        let v = self
            .client
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(self.failed("Version"))?
            .into_inner();
        Ok(format!(
            "{} {} (CRI {})",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        ))
    }

    /// RunPodSandbox: the runtime makes the sandbox and its network (CNI ADD); returns its id.
    pub async fn run_pod_sandbox(&mut self, pod: &PodSpec) -> Result<String, CriError> {
        let id = self
            .client
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod.sandbox_config()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(self.failed("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;
        Ok(id)
    }

    /// CreateContainer and StartContainer in a sandbox; returns the container's id.
    pub async fn start_container(
        &mut self,
        sandbox_id: &str,
        pod: &PodSpec,
        container: &ContainerSpec,
    ) -> Result<String, CriError> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: container.name.clone(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: container.image.clone(),
                ..Default::default()
            }),
            command: container.command.clone(),
            envs: container
                .env
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            log_path: format!("{}/0.log", container.name),
            ..Default::default()
        };
        let id = self
            .client
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(pod.sandbox_config()),
            })
            .await
            .map_err(self.failed("CreateContainer"))?
            .into_inner()
            .container_id;
        self.client
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(self.failed("StartContainer"))?;
        Ok(id)
    }

    /// PodSandboxStatus, verbose: the address, the network namespace and the sandbox's pid.
    pub async fn sandbox_status(&mut self, sandbox_id: &str) -> Result<SandboxStatus, CriError> {
        let reply = self
            .client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                verbose: true,
            })
            .await
            .map_err(self.failed("PodSandboxStatus"))?
            .into_inner();
        let status = reply
            .status
            .ok_or_else(|| self.answer("PodSandboxStatus", "no status in the reply"))?;
        let ip = match status.network.as_ref().map(|n| n.ip.as_str()) {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                self.answer("PodSandboxStatus", format!("address {ip:?} is not IPv4"))
            })?),
        };
        // containerd's verbose info: {"pid": …, "runtimeSpec": {"linux": {"namespaces": […]}}}
        let info: serde_json::Value = reply
            .info
            .get("info")
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Ok(SandboxStatus {
            id: status.id,
            ready: status.state == PodSandboxState::SandboxReady as i32,
            ip,
            netns,
            pid: info["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
        })
    }

    /// StopPodSandbox: the runtime stops the sandbox's containers and tears its network down
    /// (CNI DEL).
    pub async fn stop_pod_sandbox(&mut self, sandbox_id: &str) -> Result<(), CriError> {
        self.client
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            })
            .await
            .map_err(self.failed("StopPodSandbox"))?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, sandbox_id: &str) -> Result<(), CriError> {
        self.client
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            })
            .await
            .map_err(self.failed("RemovePodSandbox"))?;
        Ok(())
    }

    /// Every sandbox the runtime knows, ready or not.
    pub async fn list_pod_sandboxes(&mut self) -> Result<Vec<PodSandbox>, CriError> {
        Ok(self
            .client
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(self.failed("ListPodSandbox"))?
            .into_inner()
            .items)
    }

    /// ExecSync: a command in a running container, as an exec probe runs it.
    pub async fn exec_sync(
        &mut self,
        container_id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<ExecResult, CriError> {
        let r = self
            .client
            .exec_sync(ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd: cmd.iter().map(|c| c.to_string()).collect(),
                timeout: timeout.as_secs().max(1) as i64,
            })
            .await
            .map_err(self.failed("ExecSync"))?
            .into_inner();
        Ok(ExecResult {
            exit_code: r.exit_code,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        })
    }
}

/// Runs a future to completion on its own thread and runtime, so synchronous code (the CLI,
/// the daemon, a test) can call the async client whether or not it is inside a runtime.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(future))
        })
        .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    .unwrap_or_else(|e| panic!("a tokio runtime for the CRI client: {e}"))
}

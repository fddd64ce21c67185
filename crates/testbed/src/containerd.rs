//! A node's own containerd (`runtime: containerd`): Debian's package, run inside the node's
//! network namespace with every path it owns under the node's directory, its CRI plugin pointed
//! at the node's CNI config and at a bin dir holding the conflist's plugins, and images built
//! here from Debian's busybox (no registry can be reached).
//!
//! One path is outside our reach: containerd 1.6 puts its shims' sockets in
//! `/run/containerd/s/<sha256 of our socket path, namespace, id>` (hard-coded), so they never
//! collide with a system containerd's, and each shim removes its own on exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::agents::{NodeDir, sibling_binary};
use crate::cri::{self, Cri};
use crate::pods::SYSTEM_CNI_DIR;

/// The CRI's containerd namespace (what the kubelet's pods live in).
pub const NAMESPACE: &str = "k8s.io";
/// The sandbox image containerd starts every pod with (`sandbox_image`).
pub const PAUSE_IMAGE: &str = "localhost/vpc-testbed/pause:1";
/// busybox with sh, httpd, nc, wget, ip: for the containers of a pod.
pub const BUSYBOX_IMAGE: &str = "localhost/vpc-testbed/busybox:1";
/// Applets linked in the busybox image.
const APPLETS: [&str; 14] = [
    "sh", "sleep", "nc", "httpd", "wget", "ip", "echo", "cat", "mkdir", "ls", "hostname", "ps",
    "true", "kill",
];
/// Every pod cgroup of a run lives under `/vpc-testbed/<prefix>-<node>` in each hierarchy.
pub const CGROUP_ROOT: &str = "vpc-testbed";
const CGROUP_FS: &str = "/sys/fs/cgroup";
const SETUP: &str = "run scripts/setup";

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("containerd of {node}: {what}: {source}")]
    Io {
        node: String,
        what: String,
        source: std::io::Error,
    },
    #[error("{what} is missing ({path}): {fix}")]
    Missing {
        what: &'static str,
        path: String,
        fix: &'static str,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("containerd of {node} did not serve its CRI within {limit:?}: {problem}\n{log}")]
    NotReady {
        node: String,
        limit: Duration,
        problem: String,
        log: String,
    },
}

/// `<node dir>/containerd`: config, root, state, socket, log, CNI bin dir, pod logs.
#[derive(Debug, Clone)]
pub struct ContainerdDir {
    pub node: String,
    pub path: PathBuf,
}

impl ContainerdDir {
    pub fn of(node_dir: &NodeDir) -> ContainerdDir {
        ContainerdDir {
            node: node_dir
                .0
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: node_dir.0.join("containerd"),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }
    pub fn root(&self) -> PathBuf {
        self.path.join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.path.join("state")
    }
    pub fn socket(&self) -> PathBuf {
        self.path.join("containerd.sock")
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("containerd.log")
    }
    /// The conflist's plugins (containerd 1.6 takes one bin dir).
    pub fn cni_bin(&self) -> PathBuf {
        self.path.join("cni-bin")
    }
    /// The kubelet's /var/log/pods.
    pub fn pod_logs(&self) -> PathBuf {
        self.path.join("pods")
    }

    fn io(&self, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerdError {
        let (node, what) = (self.node.clone(), what.into());
        move |source| ContainerdError::Io { node, what, source }
    }
}

/// The cgroup a pod's sandbox and containers go in (cgroupfs driver, as the kubelet's
/// `/kubepods/…/pod<uid>`); the sweep finds a crashed run's containers there.
pub fn cgroup_parent(prefix: &str, node: &str, uid: &str) -> String {
    format!("/{CGROUP_ROOT}/{prefix}-{node}/pod{uid}")
}

/// A program on PATH or in the usual system directories.
fn find_program(name: &'static str) -> Result<PathBuf, ContainerdError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(ContainerdError::Missing {
            what: name,
            path: "PATH".into(),
            fix: SETUP,
        })
}

fn toml_string(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// containerd's configuration (version 2, containerd 1.6): every path under `dir`, the CRI's
/// CNI conf dir the node's (where ipamd writes the conflist), runc with its state under ours.
pub fn config_toml(dir: &ContainerdDir, cni_conf_dir: &Path, runc: &Path) -> String {
    let s = |p: PathBuf| toml_string(&p);
    let state = dir.state();
    format!(
        r#"# Written by vpc-testbed for node {node}: containerd in the node's network namespace.
version = 2
root = {root}
state = {state}
# Storage drivers this machine cannot use; skipping them keeps the log quiet.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}
  # The v1 runtime is unused but the tasks service needs it loaded; its runc root is ours too.
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = {runc_v1}
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause}"
    # Pod network namespaces under our state dir, not /var/run/netns.
    netns_mounts_under_state_dir = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    # Sandboxes ask for oom_score_adj -998, which this host refuses to a container (runc then
    # fails with "can't get final child's PID from pipe"): no lower than containerd's own.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = {cni_bin}
      conf_dir = {cni_conf}
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        # runc, not crun (which refuses this host's hybrid cgroups); cgroupfs, no systemd.
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = {runc}
          Root = {runc_root}
          SystemdCgroup = false
"#,
        node = dir.node,
        root = s(dir.root()),
        state = s(state.clone()),
        socket = s(dir.socket()),
        ttrpc = s(dir.path.join("containerd.sock.ttrpc")),
        opt = s(dir.path.join("opt")),
        runc_v1 = s(state.join("runc-v1")),
        pause = PAUSE_IMAGE,
        cni_bin = s(dir.cni_bin()),
        cni_conf = s(cni_conf_dir.to_path_buf()),
        runc = s(runc.to_path_buf()),
        runc_root = s(state.join("runc")),
    )
}

/// Writes the config and the CNI bin dir (our aws-cni and Debian's plugins, linked).
pub fn prepare(node_dir: &NodeDir) -> Result<ContainerdDir, ContainerdError> {
    let dir = ContainerdDir::of(node_dir);
    for d in [
        dir.path.clone(),
        dir.cni_bin(),
        dir.pod_logs(),
        node_dir.cni_conf_dir(),
    ] {
        std::fs::create_dir_all(&d).map_err(dir.io(format!("create {}", d.display())))?;
    }
    let aws_cni = sibling_binary("aws-cni", "VPC_TESTBED_AWS_CNI");
    if !aws_cni.is_file() {
        return Err(ContainerdError::Missing {
            what: "the aws-cni binary",
            path: aws_cni.display().to_string(),
            fix: "cargo build --workspace --bins",
        });
    }
    let mut plugins = vec![("aws-cni".to_string(), aws_cni)];
    let system = std::fs::read_dir(SYSTEM_CNI_DIR).map_err(|_| ContainerdError::Missing {
        what: "containernetworking-plugins",
        path: SYSTEM_CNI_DIR.into(),
        fix: SETUP,
    })?;
    for e in system.flatten() {
        plugins.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    for (name, target) in plugins {
        let link = dir.cni_bin().join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).map_err(dir.io(format!(
            "link {} to {}",
            link.display(),
            target.display()
        )))?;
    }
    let runc = find_program("runc")?;
    let text = config_toml(&dir, &node_dir.cni_conf_dir(), &runc);
    files::write_atomic(&dir.config(), text.as_bytes(), 0o644)
        .map_err(dir.io(format!("write {}", dir.config().display())))?;
    Ok(dir)
}

/// Starts the node's containerd in its namespace (under `nsenter --net`: `ip netns exec`
/// remounts /sys, which hides the cgroup mounts runc needs) and waits until its CRI answers.
pub fn start(netns: &str, dir: &ContainerdDir) -> Result<Child, ContainerdError> {
    let containerd = find_program("containerd")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())
        .map_err(dir.io(format!("open {}", dir.log().display())))?;
    // A socket left by a killed containerd would pass for a ready one.
    let _ = std::fs::remove_file(dir.socket());
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(&containerd)
        .arg("--config")
        .arg(dir.config())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(dir.io("log"))?)
        .stderr(log)
        .spawn()
        .map_err(dir.io(format!("start {} in {netns}", containerd.display())))?;
    let limit = Duration::from_secs(30);
    let started = Instant::now();
    let mut problem = String::from("no socket yet");
    while started.elapsed() < limit {
        if let Ok(Some(code)) = child.try_wait() {
            problem = format!("it exited ({code})");
            break;
        }
        if dir.socket().exists() {
            let socket = dir.socket();
            match cri::block_on(async move { Cri::connect(&socket).await?.version().await }) {
                Ok(_) => return Ok(child),
                Err(e) => problem = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(ContainerdError::NotReady {
        node: dir.node.clone(),
        limit,
        problem,
        log: crate::daemon::tail(&dir.log(), 20),
    })
}

/// Imports the sandbox and busybox images (built once per run in `images_dir`) into the node's
/// containerd, in the CRI's namespace.
pub fn import_images(dir: &ContainerdDir, images_dir: &Path) -> Result<(), ContainerdError> {
    let archive = build_images(images_dir)?;
    let ctr = find_program("ctr")?;
    let out = Command::new(&ctr)
        .arg("--address")
        .arg(dir.socket())
        .args(["-n", NAMESPACE, "images", "import"])
        .arg(&archive)
        .output()
        .map_err(dir.io(format!("run {}", ctr.display())))?;
    if !out.status.success() {
        return Err(ContainerdError::Command {
            command: format!(
                "ctr --address {} -n {NAMESPACE} images import {}",
                dir.socket().display(),
                archive.display()
            ),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An OCI image layout archive holding both images (one busybox layer, two configs), built
/// from Debian's busybox-static; `ctr images import` reads the names from the index's
/// `io.containerd.image.name` annotations. Returns the archive's path.
pub fn build_images(images_dir: &Path) -> Result<PathBuf, ContainerdError> {
    let archive = images_dir.join("images.tar");
    if archive.exists() {
        return Ok(archive);
    }
    let io = |what: String| {
        move |source| ContainerdError::Io {
            node: "-".into(),
            what,
            source,
        }
    };
    let work = images_dir.join("build");
    let _ = std::fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    let blobs = work.join("layout/blobs/sha256");
    for d in [rootfs.join("bin"), rootfs.join("tmp"), blobs.clone()] {
        std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Err(ContainerdError::Missing {
            what: "busybox-static",
            path: busybox.display().to_string(),
            fix: SETUP,
        });
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox"))
        .map_err(io(format!("copy {}", busybox.display())))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .map_err(io(format!("link {applet}")))?;
    }
    let layer_tar = work.join("layer.tar");
    run_tar(&[
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "-C",
        &rootfs.display().to_string(),
        "-cf",
        &layer_tar.display().to_string(),
        ".",
    ])?;
    let write_blob = |data: &[u8]| -> Result<(String, usize), ContainerdError> {
        let digest = sha256_hex(data);
        let path = blobs.join(&digest);
        std::fs::write(&path, data).map_err(io(format!("write {}", path.display())))?;
        Ok((format!("sha256:{digest}"), data.len()))
    };
    let layer = std::fs::read(&layer_tar).map_err(io(format!("read {}", layer_tar.display())))?;
    let (layer_digest, layer_size) = write_blob(&layer)?;
    let mut manifests = Vec::new();
    for (name, entrypoint, cmd) in [
        // The pause container only has to exist; containerd kills it with SIGKILL.
        (PAUSE_IMAGE, vec!["/bin/sleep", "infinity"], vec![]),
        (BUSYBOX_IMAGE, vec![], vec!["/bin/sh"]),
    ] {
        let config = serde_json::json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Entrypoint": entrypoint, "Cmd": cmd, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let (config_digest, config_size) = write_blob(config.to_string().as_bytes())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        });
        let (digest, size) = write_blob(manifest.to_string().as_bytes())?;
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "platform": {"architecture": oci_arch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": name},
        }));
    }
    let layout = work.join("layout");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    for (file, text) in [
        ("index.json", index.to_string()),
        (
            "oci-layout",
            r#"{"imageLayoutVersion":"1.0.0"}"#.to_string(),
        ),
    ] {
        std::fs::write(layout.join(file), text).map_err(io(format!("write {file}")))?;
    }
    let tmp = images_dir.join("images.tar.tmp");
    run_tar(&[
        "-C",
        &layout.display().to_string(),
        "-cf",
        &tmp.display().to_string(),
        "oci-layout",
        "index.json",
        "blobs",
    ])?;
    std::fs::rename(&tmp, &archive).map_err(io(format!("rename to {}", archive.display())))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(archive)
}

fn run_tar(args: &[&str]) -> Result<(), ContainerdError> {
    let mut full = vec!["tar"];
    full.extend_from_slice(args);
    crate::cmd::run(&full)
        .map(|_| ())
        .map_err(|e| ContainerdError::Command {
            command: e.command,
            output: e.message,
        })
}

/// The processes running this node's containerd (the daemon's, or one a test restarted).
pub fn pids(dir: &ContainerdDir) -> Vec<i32> {
    let config = dir.config().display().to_string();
    crate::sweep::pids_matching(|cmdline| {
        cmdline
            .split('\0')
            .next()
            .is_some_and(|argv0| argv0.ends_with("containerd"))
            && cmdline.contains(&config)
    })
}

/// Stops the node's pods as a drained node's kubelet would (StopPodSandbox, RemovePodSandbox:
/// containerd runs CNI DEL for each), then containerd itself. Keeps going past failures.
pub fn stop(dir: &ContainerdDir) -> Vec<String> {
    let mut errors = Vec::new();
    if dir.socket().exists() {
        let socket = dir.socket();
        let result = cri::block_on(async move {
            let mut cri = Cri::connect(&socket).await?;
            let mut failures = Vec::new();
            for sandbox in cri.list_pod_sandboxes().await? {
                if let Err(e) = cri.stop_pod_sandbox(&sandbox.id).await {
                    failures.push(e.to_string());
                } else if let Err(e) = cri.remove_pod_sandbox(&sandbox.id).await {
                    failures.push(e.to_string());
                }
            }
            Ok::<_, cri::CriError>(failures)
        });
        match result {
            Ok(failures) => errors.extend(failures),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let pids = pids(dir);
    crate::sweep::terminate(&pids);
    errors
}

/// A crashed run's containers: every process in its pod cgroups is killed and the cgroups
/// removed, in every hierarchy.
pub fn sweep_cgroups(prefix: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut dirs = Vec::new();
    for hierarchy in std::fs::read_dir(CGROUP_FS).into_iter().flatten().flatten() {
        let root = hierarchy.path().join(CGROUP_ROOT);
        for node in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            if node
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
            {
                collect_dirs(&node.path(), &mut dirs);
            }
        }
    }
    for _ in 0..50 {
        let mut any = false;
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                any = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Deepest first: a cgroup is removed once its children are.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        if d.exists()
            && let Err(e) = std::fs::remove_dir(d)
        {
            errors.push(format!("remove cgroup {}: {e}", d.display()));
        }
    }
    for hierarchy in std::fs::read_dir(CGROUP_FS).into_iter().flatten().flatten() {
        // Only when no other run uses it.
        let _ = std::fs::remove_dir(hierarchy.path().join(CGROUP_ROOT));
    }
    errors
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Mounts a runtime left under `dir` (sandbox network namespaces, container root filesystems,
/// shm), unmounted deepest first so the directory can be removed.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    let mut errors = Vec::new();
    for p in points {
        if let Err(e) = crate::cmd::run(&["umount", "--lazy", &p]) {
            errors.push(e.to_string());
        }
    }
    errors
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(p: &str) -> String {
    p.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Where containerd 1.6 puts a shim's socket: hard-coded under /run/containerd/s, named by the
/// SHA-256 of "<our socket>/<namespace>/<id>".
pub fn shim_socket(dir: &ContainerdDir, id: &str) -> PathBuf {
    let key = format!("{}/{NAMESPACE}/{id}", dir.socket().display());
    Path::new("/run/containerd/s").join(sha256_hex(key.as_bytes()))
}

/// Sockets of the run's shims that were killed before they could remove them.
pub fn sweep_shim_sockets(state_dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for node in std::fs::read_dir(state_dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = ContainerdDir::of(&NodeDir(node.path()));
        let tasks = dir
            .state()
            .join("io.containerd.runtime.v2.task")
            .join(NAMESPACE);
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let socket = shim_socket(&dir, &task.file_name().to_string_lossy());
            match std::fs::remove_file(&socket) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(format!("remove {}: {e}", socket.display()))
                }
                _ => {}
            }
        }
    }
    errors
}

/// libcni's cache of the results containerd's CNI calls returned (`/var/lib/cni/results`, not
/// configurable in containerd 1.6): DEL removes a sandbox's entries, a crash leaves them. Ours
/// are those naming a sandbox namespace under the run's state directory.
pub const CNI_CACHE: &str = "/var/lib/cni/results";

pub fn sweep_cni_cache(state_dir: &Path) -> Vec<String> {
    let needle = format!("\"{}/", state_dir.display());
    let mut errors = Vec::new();
    for e in std::fs::read_dir(CNI_CACHE).into_iter().flatten().flatten() {
        let ours = std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle));
        if ours && let Err(err) = std::fs::remove_file(e.path()) {
            errors.push(format!("remove {}: {err}", e.path().display()));
        }
    }
    errors
}

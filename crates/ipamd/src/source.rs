//! Where the Node and the ENIConfigs come from. One shape for every source: a watch channel
//! of [`Objects`]. This file has standalone mode (a directory of manifests, re-read on change);
//! the Kubernetes source feeds the same channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eniconfig::{Object, parse_manifests};
use tokio::sync::watch;

pub use eniconfig::Objects;

pub use cluster::ObjectsRx;

/// How often the manifests directory is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Watches `dir` for `*.yaml`, `*.yml` and `*.json` files holding a Node (the one named
/// `node_name`, or the only one) and ENIConfigs.
pub fn standalone(dir: PathBuf, node_name: Option<String>) -> ObjectsRx {
    let mut watcher = DirWatcher {
        dir,
        node_name,
        files: BTreeMap::new(),
    };
    let (tx, rx) = watch::channel(Arc::new(watcher.scan()));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL).await;
            let objects = watcher.scan();
            if **tx.borrow() != objects && tx.send(Arc::new(objects)).is_err() {
                return;
            }
        }
    });
    rx
}

struct DirWatcher {
    dir: PathBuf,
    node_name: Option<String>,
    /// path → (modified, size, last good objects, current error)
    files: BTreeMap<PathBuf, (SystemTime, u64, Vec<Object>, Option<String>)>,
}

impl DirWatcher {
    fn scan(&mut self) -> Objects {
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if !is_manifest(&path) {
                        continue;
                    }
                    seen.push(path.clone());
                    self.refresh(&path);
                }
            }
            Err(e) => errors.push(format!("manifests directory {}: {e}", self.dir.display())),
        }
        self.files.retain(|p, _| seen.contains(p));
        let mut objects = Objects::default();
        let mut nodes = Vec::new();
        for (path, (_, _, parsed, error)) in &self.files {
            if let Some(e) = error {
                errors.push(format!("{}: {e}", path.display()));
            }
            for o in parsed {
                match o {
                    Object::Node(n) => nodes.push(n.clone()),
                    Object::EniConfig(c) => {
                        objects.eniconfigs.insert(c.name.clone(), c.spec.clone());
                    }
                }
            }
        }
        objects.node = match &self.node_name {
            Some(name) => nodes.into_iter().find(|n| &n.name == name),
            None if nodes.len() == 1 => nodes.pop(),
            None if nodes.is_empty() => None,
            None => {
                errors.push(format!(
                    "{} Node objects in {} and MY_NODE_NAME is not set: cannot tell which is this node",
                    nodes.len(),
                    self.dir.display()
                ));
                None
            }
        };
        objects.errors = errors;
        objects
    }

    fn refresh(&mut self, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if let Some((m, l, _, _)) = self.files.get(path)
            && (*m, *l) == stamp
        {
            return;
        }
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_manifests(&t).map_err(|e| e.to_string()));
        let entry =
            self.files
                .entry(path.to_path_buf())
                .or_insert((stamp.0, stamp.1, Vec::new(), None));
        entry.0 = stamp.0;
        entry.1 = stamp.1;
        match parsed {
            Ok(objects) => {
                entry.2 = objects;
                entry.3 = None;
            }
            // Loses nothing: the file's last good objects stay in force.
            Err(e) => entry.3 = Some(e),
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Kubernetes mode: the API server (waited for, bounded) feeds the Node and the ENIConfigs;
/// Events go to the Node; the agent holding the Lease writes ENIConfig status.
pub async fn kubernetes<C: ec2::Ec2 + 'static>(
    cli: &crate::cli::Cli,
    id: &ec2::InstanceIdentity,
    ec2: Arc<C>,
) -> Result<(ObjectsRx, crate::events::EventSink), String> {
    let Some(node_name) = cli.settings.my_node_name.clone() else {
        return Err(
            "Kubernetes mode needs MY_NODE_NAME (the DaemonSet sets it from spec.nodeName); for standalone mode pass --manifests DIR (IPAMD_MANIFESTS)".into(),
        );
    };
    let client = cluster::connect(cli.options.kubeconfig.as_deref(), cluster::Retry::default())
        .await
        .map_err(|e| e.to_string())?;
    let objects = cluster::watch_objects(client.clone(), &node_name);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(cluster::publish_node_events(
        client.clone(),
        node_name.clone(),
        rx,
    ));
    let leader = cluster::elect(
        client.clone(),
        cluster::Election {
            namespace: cli.options.lease_namespace.clone(),
            identity: node_name,
            duration: Duration::from_secs(15),
            period: Duration::from_secs(5),
        },
    );
    tokio::spawn(cluster::run_writer(
        client,
        crate::facts::Ec2Facts(ec2),
        id.vpc_id.clone(),
        leader,
        objects.clone(),
        Duration::from_secs(cli.options.eniconfig_status_interval.max(5)),
    ));
    Ok((objects, crate::events::EventSink::kubernetes(tx)))
}

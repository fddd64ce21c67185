//! Where ENIConfigs are read from (`validate`) and written to (`custom-networking apply`), and
//! the aws-node DaemonSet's environment. A directory of manifests today; the cluster plugs in as
//! another implementation of the same traits.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use eniconfig::{EniConfigSpec, Object, parse_manifests};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Cluster(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// ENIConfigs by name.
pub trait EniConfigSource {
    /// Where they come from, for messages.
    fn describe(&self) -> String;
    fn eniconfigs(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, EniConfigSpec>, StoreError>>;
}

/// Where `apply` puts ENIConfigs and, when it can reach it, the aws-node environment.
pub trait EniConfigSink: EniConfigSource {
    fn put(&self, name: &str, spec: &EniConfigSpec)
    -> impl Future<Output = Result<(), StoreError>>;
    /// None: this destination cannot see the aws-node DaemonSet (the user sets it by hand).
    fn aws_node_env(
        &self,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, StoreError>>;
    fn set_aws_node_env(
        &self,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> impl Future<Output = Result<(), StoreError>>;
}

/// A directory of manifests as `kubectl apply -f DIR` takes them: `<name>.yaml` per ENIConfig.
pub struct Directory {
    pub path: PathBuf,
}

impl Directory {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Directory { path: path.into() }
    }

    fn manifest_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            // Nothing written yet: no ENIConfigs.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.path, e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// One ENIConfig manifest's text.
    pub fn manifest(name: &str, spec: &EniConfigSpec) -> String {
        let mut text = format!(
            "apiVersion: {}\nkind: ENIConfig\nmetadata:\n  name: {name}\nspec:\n  subnet: {}\n",
            eniconfig::API_VERSION,
            spec.subnet
        );
        for (key, list) in [
            ("securityGroups", &spec.security_groups),
            ("subnets", &spec.subnets),
        ] {
            if let Some(items) = list {
                text.push_str(&format!("  {key}:\n"));
                for i in items {
                    text.push_str(&format!("    - {i}\n"));
                }
            }
        }
        text
    }
}

impl EniConfigSource for Directory {
    fn describe(&self) -> String {
        format!("directory {}", self.path.display())
    }

    async fn eniconfigs(&self) -> Result<BTreeMap<String, EniConfigSpec>, StoreError> {
        let mut out = BTreeMap::new();
        for p in self.manifest_files()? {
            let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            let objects = parse_manifests(&text).map_err(|e| StoreError::Manifest {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            for o in objects {
                if let Object::EniConfig(c) = o {
                    out.insert(c.name, c.spec);
                }
            }
        }
        Ok(out)
    }
}

impl EniConfigSink for Directory {
    async fn put(&self, name: &str, spec: &EniConfigSpec) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.path).map_err(|e| io(&self.path, e))?;
        // Another file may hold this name (written by hand): replace it there, not twice.
        let mut target = self.path.join(format!("{name}.yaml"));
        for p in self.manifest_files()? {
            let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            let named = parse_manifests(&text)
                .map(|objects| {
                    objects
                        .iter()
                        .any(|o| matches!(o, Object::EniConfig(c) if c.name == name))
                })
                .unwrap_or(false);
            if named {
                if parse_manifests(&text).map(|o| o.len()).unwrap_or(0) > 1 {
                    return Err(StoreError::Manifest {
                        path: p.display().to_string(),
                        message: format!(
                            "holds ENIConfig {name} among other objects; move it to its own file so it can be replaced"
                        ),
                    });
                }
                target = p;
                break;
            }
        }
        // Written next to the target and renamed, so a reader never sees half a file.
        let tmp = target.with_extension("yaml.tmp");
        std::fs::write(&tmp, Self::manifest(name, spec)).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| io(&target, e))
    }

    async fn aws_node_env(&self) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        Ok(None)
    }

    async fn set_aws_node_env(
        &self,
        _set: &BTreeMap<String, String>,
        _remove: &[String],
    ) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(format!(
            "{} cannot change the aws-node DaemonSet",
            self.describe()
        )))
    }
}

/// The cluster behind a kubeconfig: ENIConfigs through the API server, and the `aws-node`
/// DaemonSet in `kube-system` (container `aws-node`), as the reference procedure names them.
pub struct Cluster {
    client: kube::Client,
    kubeconfig: PathBuf,
}

const AWS_NODE: &str = "aws-node";
const AWS_NODE_NAMESPACE: &str = "kube-system";

fn cluster_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(e.to_string())
}

impl Cluster {
    /// Fails fast (three attempts) when the API server does not answer.
    pub async fn connect(kubeconfig: &Path) -> Result<Self, StoreError> {
        let retry = cluster::Retry {
            attempts: 3,
            ..cluster::Retry::default()
        };
        let client = cluster::connect(Some(kubeconfig), retry)
            .await
            .map_err(cluster_error)?;
        Ok(Cluster {
            client,
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    /// Every Node, with its kubelet max pods.
    pub async fn nodes(&self) -> Result<Vec<eniconfig::NodeObject>, StoreError> {
        cluster::admin::nodes(&self.client)
            .await
            .map_err(cluster_error)
    }
}

impl EniConfigSource for Cluster {
    fn describe(&self) -> String {
        format!("the cluster of {}", self.kubeconfig.display())
    }

    async fn eniconfigs(&self) -> Result<BTreeMap<String, EniConfigSpec>, StoreError> {
        cluster::admin::eniconfigs(&self.client)
            .await
            .map_err(cluster_error)
    }
}

impl EniConfigSink for Cluster {
    async fn put(&self, name: &str, spec: &EniConfigSpec) -> Result<(), StoreError> {
        cluster::admin::apply_eniconfig(&self.client, name, spec)
            .await
            .map(|_| ())
            .map_err(cluster_error)
    }

    async fn aws_node_env(&self) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        cluster::admin::daemonset_env(&self.client, AWS_NODE_NAMESPACE, AWS_NODE, AWS_NODE)
            .await
            .map(Some)
            .map_err(cluster_error)
    }

    async fn set_aws_node_env(
        &self,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), StoreError> {
        cluster::admin::set_daemonset_env(
            &self.client,
            AWS_NODE_NAMESPACE,
            AWS_NODE,
            AWS_NODE,
            set,
            remove,
        )
        .await
        .map(|_| ())
        .map_err(cluster_error)
    }
}

/// Either destination, chosen by the flags (`--eniconfig-dir` or `--kubeconfig`).
pub enum Store {
    Directory(Directory),
    Cluster(Cluster),
}

impl Store {
    pub async fn open(
        dir: Option<&Path>,
        kubeconfig: Option<&Path>,
    ) -> Result<Option<Store>, StoreError> {
        Ok(match (dir, kubeconfig) {
            (_, Some(k)) => Some(Store::Cluster(Cluster::connect(k).await?)),
            (Some(d), None) => Some(Store::Directory(Directory::new(d))),
            (None, None) => None,
        })
    }
}

impl EniConfigSource for Store {
    fn describe(&self) -> String {
        match self {
            Store::Directory(d) => d.describe(),
            Store::Cluster(c) => c.describe(),
        }
    }

    async fn eniconfigs(&self) -> Result<BTreeMap<String, EniConfigSpec>, StoreError> {
        match self {
            Store::Directory(d) => d.eniconfigs().await,
            Store::Cluster(c) => c.eniconfigs().await,
        }
    }
}

impl EniConfigSink for Store {
    async fn put(&self, name: &str, spec: &EniConfigSpec) -> Result<(), StoreError> {
        match self {
            Store::Directory(d) => d.put(name, spec).await,
            Store::Cluster(c) => c.put(name, spec).await,
        }
    }

    async fn aws_node_env(&self) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        match self {
            Store::Directory(d) => d.aws_node_env().await,
            Store::Cluster(c) => c.aws_node_env().await,
        }
    }

    async fn set_aws_node_env(
        &self,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), StoreError> {
        match self {
            Store::Directory(d) => d.set_aws_node_env(set, remove).await,
            Store::Cluster(c) => c.set_aws_node_env(set, remove).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn written_configs_read_back_and_replace_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::new(dir.path().join("out"));
        assert!(block_on(d.eniconfigs()).unwrap().is_empty());
        let a = EniConfigSpec {
            subnet: "subnet-1".into(),
            security_groups: Some(vec!["sg-1".into(), "sg-2".into()]),
            subnets: None,
        };
        block_on(d.put("us-west-2a", &a)).unwrap();
        // spec.subnets is written and read back too.
        let b = EniConfigSpec {
            subnet: "subnet-2".into(),
            security_groups: None,
            subnets: Some(vec!["subnet-3".into(), "subnet-4".into()]),
        };
        block_on(d.put("us-west-2b", &b)).unwrap();
        let read = block_on(d.eniconfigs()).unwrap();
        assert_eq!(read["us-west-2a"], a);
        assert_eq!(read["us-west-2b"], b);
        // A hand-written file holding the name is replaced, not duplicated.
        std::fs::write(
            d.path.join("mine.yml"),
            Directory::manifest("us-west-2c", &b),
        )
        .unwrap();
        block_on(d.put("us-west-2c", &a)).unwrap();
        assert!(!d.path.join("us-west-2c.yaml").exists());
        assert_eq!(block_on(d.eniconfigs()).unwrap()["us-west-2c"], a);
        let e = block_on(d.set_aws_node_env(&BTreeMap::new(), &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot change the aws-node DaemonSet"), "{e}");
    }

    #[test]
    fn a_file_with_several_objects_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::new(dir.path());
        let spec = EniConfigSpec {
            subnet: "subnet-1".into(),
            security_groups: None,
            subnets: None,
        };
        let both = format!(
            "{}---\n{}",
            Directory::manifest("a", &spec),
            Directory::manifest("b", &spec)
        );
        std::fs::write(dir.path().join("both.yaml"), both).unwrap();
        let e = block_on(d.put("a", &spec)).unwrap_err().to_string();
        assert!(e.contains("holds ENIConfig a among other objects"), "{e}");
    }
}

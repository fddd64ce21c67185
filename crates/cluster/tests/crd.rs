#![allow(clippy::unwrap_used)]
//! The CRD in deploy/ (and the chart's copy) is exactly what the Rust type generates.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

fn parsed(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap()
}

#[test]
fn deploy_crds_match_the_type() {
    let generated = cluster::crd_yaml().unwrap();
    for file in [
        "deploy/crd.yaml",
        "deploy/helm/aws-vpc-cni-rs/crds/eniconfigs.crd.k8s.amazonaws.com.yaml",
    ] {
        let on_disk =
            std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            parsed(&on_disk) == parsed(&generated),
            "{file} drifted from the ENIConfig type: regenerate it with `vpcctl crd > {file}`\n--- generated:\n{generated}"
        );
    }
}

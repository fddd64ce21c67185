//! The CNI configuration (`10-aws.conflist`), written atomically once the node can serve pods:
//! its presence is what tells the container runtime the node is network-ready.

use std::path::PathBuf;

use serde_json::json;

use crate::node::Node;

pub const FILE_NAME: &str = "10-aws.conflist";

pub fn render(node: &Node) -> String {
    let s = &node.cli.settings;
    let o = &node.cli.options;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "aws-cni",
        "disableCheck": false,
        "plugins": [
            {
                "type": "aws-cni",
                "mtu": s.pod_mtu().to_string(),
                "vethPrefix": s.veth_prefix,
                "pluginLogFile": o.plugin_log_file,
                "pluginLogLevel": o.plugin_log_level,
                "ipamdAddress": o.grpc_address,
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    });
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

/// In `HOST_CNI_CONFDIR_PATH` (upstream's variable) when set, else in `CNI_CONF_DIR`.
pub fn path(node: &Node) -> PathBuf {
    node.cli
        .settings
        .host_cni_confdir_path
        .as_ref()
        .unwrap_or(&node.cli.options.cni_conf_dir)
        .join(FILE_NAME)
}

pub fn write(node: &Node) -> std::io::Result<()> {
    files::write_atomic(&path(node), render(node).as_bytes(), 0o644)
}

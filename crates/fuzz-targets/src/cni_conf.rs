//! The plugin's inputs: the network configuration on stdin and the `CNI_*` environment.
//! Input: the configuration, then after a NUL byte `NAME=value` lines for the environment.

use aws_cni::conf::{CniEnv, NetConf};

pub fn run(data: &[u8]) {
    let (stdin, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(conf) = NetConf::parse(stdin) {
        let _ = conf.prev_ip();
        assert!((576..=9001).contains(&conf.mtu));
    }
    let env = String::from_utf8_lossy(env);
    let lookup = |name: &str| {
        env.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    if let Ok(e) = CniEnv::from_lookup(lookup) {
        let _ = (e.pod_name(), e.pod_namespace(), e.infra_container_id());
    }
}

//! The ADD result, shaped for the CNI version the runtime asked for.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

pub use node_contract::POD_GATEWAY as GATEWAY;

pub struct AddResult<'a> {
    pub host_if: &'a str,
    pub host_mac: &'a str,
    pub pod_if: &'a str,
    pub pod_mac: &'a str,
    pub sandbox: &'a str,
    pub ip: Ipv4Addr,
}

/// 0.3.x and 0.4.0 carry `"version": "4"` on each IP; 1.x dropped it.
pub fn render(version: &str, r: &AddResult) -> Value {
    let legacy = version.starts_with("0.");
    let mut ip =
        json!({"address": format!("{}/32", r.ip), "gateway": GATEWAY.to_string(), "interface": 1});
    if legacy {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": r.host_if, "mac": r.host_mac},
            {"name": r.pod_if, "mac": r.pod_mac, "sandbox": r.sandbox},
        ],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY.to_string()}],
        "dns": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult<'static> {
        AddResult {
            host_if: "eni1234",
            host_mac: "02:00:00:00:00:01",
            pod_if: "eth0",
            pod_mac: "02:00:00:00:00:02",
            sandbox: "/run/netns/p",
            ip: Ipv4Addr::new(100, 64, 0, 9),
        }
    }

    #[test]
    fn shapes_per_version() {
        let old = render("0.4.0", &sample());
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][0]["interface"], 1);
        assert_eq!(old["interfaces"][1]["sandbox"], "/run/netns/p");
        let new = render("1.1.0", &sample());
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["ips"][0]["address"], "100.64.0.9/32");
        assert_eq!(new["cniVersion"], "1.1.0");
    }
}

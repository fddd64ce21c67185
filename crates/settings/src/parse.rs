//! Value parsers for the settings: each error says what is accepted. clap prefixes it with the
//! variable (the value name is the environment variable's name).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ipnet::Ipv4Net;

use crate::{CidrList, Tags};

/// The reserved tag-key fragment: tags with it are ours alone.
const RESERVED_TAG_FRAGMENT: &str = "k8s.amazonaws.com";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{0}")]
    Conflict(String),
}

/// Booleans as Go's strconv.ParseBool reads them, so existing manifests keep working.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err("expected true or false (also 1/0, t/f, TRUE/FALSE)".to_string()),
    }
}

pub(crate) fn parse_exclude_cidrs(v: &str) -> Result<CidrList, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv4Net>()
                .map_err(|_| format!("{s:?} is not an IPv4 CIDR; expected a comma-separated list like 10.1.0.0/16,192.168.0.0/24"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(CidrList)
}

pub(crate) fn parse_connmark(v: &str) -> Result<u32, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => v.parse::<u32>(),
    };
    match parsed {
        Ok(0) => Err("the mark must not be 0".to_string()),
        Ok(m) => Ok(m),
        Err(_) => Err("expected a 32-bit mark, hex (0x80) or decimal (128)".to_string()),
    }
}

pub(crate) fn parse_veth_prefix(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 4 {
        return Err("expected 1 to 4 characters".to_string());
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("expected letters, digits, - or _ only".to_string());
    }
    if ["eth", "lo", "vlan"].contains(&v) {
        return Err("eth, lo and vlan are taken by the node's own interfaces".to_string());
    }
    Ok(v.to_string())
}

pub(crate) fn parse_mtu(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(m) if (576..=9001).contains(&m) => Ok(m),
        _ => Err("expected an MTU between 576 and 9001".to_string()),
    }
}

pub(crate) fn parse_tags(v: &str) -> Result<Tags, String> {
    let v = if v.trim().is_empty() { "{}" } else { v };
    let map: BTreeMap<String, String> = serde_json::from_str(v).map_err(|e| {
        format!("expected a JSON object of string tags like {{\"team\":\"net\"}}: {e}")
    })?;
    let (refused, tags): (BTreeMap<_, _>, BTreeMap<_, _>) = map
        .into_iter()
        .partition(|(k, _)| k.contains(RESERVED_TAG_FRAGMENT));
    Ok(Tags {
        tags,
        refused: refused.into_keys().collect(),
    })
}

pub(crate) fn parse_loopback_addr(v: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = v
        .parse()
        .map_err(|_| "expected an address:port like 127.0.0.1:61679".to_string())?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address; introspection is served on loopback only",
            addr.ip()
        ));
    }
    Ok(addr)
}

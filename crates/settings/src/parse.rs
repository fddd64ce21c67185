//! The parsers behind every setting, with the existing implementation's reading of each value:
//! an empty value is the default (as `os.Getenv` returning "" is there), booleans are Go's
//! `strconv.ParseBool`, numbers Go's `strconv.Atoi`, and the documented "unset" spellings
//! (`MAX_ENI` ≤ 0, targets ≤ 0) mean unset. Where the existing implementation logs a bad value and
//! carries on with the default, we refuse it with an error naming the variable and what it takes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ipnet::Ipv4Net;

use crate::{CidrList, Tags};

/// The reserved tag-key fragment: tags with it are ours alone.
const RESERVED_TAG_FRAGMENT: &str = "k8s.amazonaws.com";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{variable}={value:?}: {expected}")]
    Invalid {
        variable: &'static str,
        value: String,
        expected: String,
    },
    #[error("{0}")]
    Conflict(String),
}

/// One variable's raw value; `None` and "" both mean "not set".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Value<'a> {
    pub variable: &'static str,
    pub text: Option<&'a str>,
}

impl<'a> Value<'a> {
    /// The value when it is set to something.
    pub fn given(&self) -> Option<&'a str> {
        self.text.filter(|t| !t.is_empty())
    }

    pub fn invalid(&self, expected: impl Into<String>) -> SettingsError {
        SettingsError::Invalid {
            variable: self.variable,
            value: self.text.unwrap_or_default().to_string(),
            expected: expected.into(),
        }
    }

    pub fn boolean(&self, default: bool) -> Result<bool, SettingsError> {
        match self.given() {
            None => Ok(default),
            Some(v) => parse_bool(v).map_err(|e| self.invalid(e)),
        }
    }

    /// Go's `strconv.Atoi`: optional sign, decimal digits, nothing else.
    pub fn integer(&self) -> Result<Option<i64>, SettingsError> {
        let Some(v) = self.given() else {
            return Ok(None);
        };
        atoi(v)
            .map(Some)
            .ok_or_else(|| self.invalid("expected a whole number"))
    }

    /// A count where a negative number means the default (`WARM_ENI_TARGET`,
    /// `WARM_PREFIX_TARGET`) or, with `default` 0, unset (`WARM_IP_TARGET`, `MINIMUM_IP_TARGET`).
    pub fn count(&self, default: u32) -> Result<u32, SettingsError> {
        match self.integer()? {
            None => Ok(default),
            Some(n) if n < 0 => Ok(default),
            Some(n) => u32::try_from(n).map_err(|_| self.invalid("expected at most 4294967295")),
        }
    }

    /// `MAX_ENI`: unset, 0 or negative mean no cap.
    pub fn cap(&self) -> Result<Option<u32>, SettingsError> {
        match self.integer()? {
            None => Ok(None),
            Some(n) if n <= 0 => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.invalid("expected at most 4294967295")),
        }
    }

    pub fn text(&self) -> Option<String> {
        self.given().map(str::to_string)
    }

    /// A value parsed by `f` (whose error says what is accepted), or `default` when unset.
    pub fn with<T>(
        &self,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, SettingsError> {
        match self.given() {
            None => Ok(default),
            Some(v) => f(v).map_err(|e| self.invalid(e)),
        }
    }
}

/// Go's `strconv.Atoi` (base 10, optional sign, no spaces, no underscores).
pub fn atoi(v: &str) -> Option<i64> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Booleans as Go's strconv.ParseBool reads them, so existing manifests keep working.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err("expected true or false (also 1/0, t/f, TRUE/FALSE, True/False)".to_string()),
    }
}

/// A comma-separated list of CIDRs: IPv4 ones are kept, IPv6 ones skipped (the existing
/// implementation skips them too; the compatibility review says so), anything else refused.
pub(crate) fn parse_cidrs(v: &str) -> Result<CidrList, String> {
    let mut kept = Vec::new();
    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Ok(net) = s.parse::<Ipv4Net>() {
            kept.push(net);
        } else if s.parse::<ipnet::Ipv6Net>().is_err() {
            return Err(format!(
                "{s:?} is not a CIDR; expected a comma-separated list like 10.1.0.0/16,192.168.0.0/24"
            ));
        }
    }
    Ok(CidrList(kept))
}

/// The IPv6 entries of a CIDR list (skipped by [`parse_cidrs`]).
pub(crate) fn ipv6_entries(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| s.parse::<ipnet::Ipv6Net>().is_ok())
        .map(str::to_string)
        .collect()
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
    node_contract::check_veth_prefix(v)?;
    Ok(v.to_string())
}

pub(crate) fn parse_mtu(v: &str) -> Result<u32, String> {
    let range = node_contract::MTU_RANGE;
    match atoi(v).and_then(|m| u32::try_from(m).ok()) {
        Some(m) if range.contains(&m) => Ok(m),
        _ => Err(format!(
            "expected an MTU between {} and {}",
            range.start(),
            range.end()
        )),
    }
}

pub(crate) fn parse_tags(v: &str) -> Result<Tags, String> {
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
    if v.starts_with("unix:") {
        return Err(
            "a unix socket is not supported: introspection is served on a loopback address:port only"
                .to_string(),
        );
    }
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

/// An endpoint URL; a bare host or host:port gets `https://` (the existing implementation takes
/// "any kind of URL or IP address").
pub(crate) fn parse_endpoint(v: &str) -> Result<String, String> {
    let url = if v.contains("://") {
        v.to_string()
    } else {
        format!("https://{v}")
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "expected an http:// or https:// URL, or a host[:port]".to_string())?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("expected a URL with a host, like https://ec2.us-west-2.amazonaws.com".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_is_gos() {
        for (text, want) in [
            ("0", Some(0)),
            ("+7", Some(7)),
            ("-1", Some(-1)),
            ("007", Some(7)),
            ("", None),
            ("-", None),
            (" 5", None),
            ("5 ", None),
            ("1_000", None),
            ("0x10", None),
            ("1.5", None),
            ("9223372036854775808", None),
        ] {
            assert_eq!(atoi(text), want, "{text:?}");
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("localhost:8080").unwrap(),
            "https://localhost:8080"
        );
        assert_eq!(
            parse_endpoint("http://10.0.0.5:5000").unwrap(),
            "http://10.0.0.5:5000"
        );
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("https://").is_err());
    }
}

/// What a caller must do about an EC2 failure (`ipam.md`, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Back off and retry.
    Throttled,
    /// Stop asking this subnet for a while.
    SubnetFull,
    /// Our picture of the instance is wrong: re-read it from EC2.
    LimitExceeded,
    /// An IAM permission is missing; retrying will not help.
    Unauthorized,
    NotFound,
    /// The resource is attached or otherwise busy.
    InUse,
    /// A request EC2 refused as invalid.
    Invalid,
    /// No answer: connection, timeout, or a malformed response.
    Transport,
    Other,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Ec2Error {
    #[error("EC2 {action}: missing IAM permission ec2:{action} ({code}: {message})")]
    MissingPermission {
        action: &'static str,
        code: String,
        message: String,
    },
    #[error("EC2 {action} failed: {code}: {message}")]
    Api {
        action: &'static str,
        class: ErrorClass,
        code: String,
        message: String,
    },
    #[error("EC2 {action}: no usable answer: {message}")]
    Transport {
        action: &'static str,
        message: String,
    },
    #[error("EC2 {action}: the response lacks {what}")]
    Incomplete {
        action: &'static str,
        what: &'static str,
    },
}

impl Ec2Error {
    /// No free aligned /28 in the subnet: prefix delegation may fall back to single addresses.
    pub fn no_free_prefix(&self) -> bool {
        matches!(self, Ec2Error::Api { code, .. } if code == NO_FREE_PREFIX)
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Ec2Error::MissingPermission { .. } => ErrorClass::Unauthorized,
            Ec2Error::Api { class, .. } => *class,
            Ec2Error::Transport { .. } | Ec2Error::Incomplete { .. } => ErrorClass::Transport,
        }
    }

    /// EC2 may or may not have done what was asked (no answer came back): a caller must read
    /// the truth before acting as if the call had failed.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Ec2Error::Transport { .. })
    }

    /// The EC2 error code, or a short label of ours, for metrics.
    pub fn code(&self) -> &str {
        match self {
            Ec2Error::MissingPermission { code, .. } | Ec2Error::Api { code, .. } => code,
            Ec2Error::Transport { .. } => "Transport",
            Ec2Error::Incomplete { .. } => "IncompleteResponse",
        }
    }

    pub fn action(&self) -> &'static str {
        match self {
            Ec2Error::MissingPermission { action, .. }
            | Ec2Error::Api { action, .. }
            | Ec2Error::Transport { action, .. }
            | Ec2Error::Incomplete { action, .. } => action,
        }
    }
}

/// EC2's code for a subnet without a free aligned /28 (fragmented or full): the ENI may still get
/// single addresses there.
pub const NO_FREE_PREFIX: &str = "InsufficientCidrBlocks";

/// Classifies an EC2 error by its code and, where EC2 reuses a generic code, its message:
/// `InvalidParameterValue` "There aren't sufficient free Ipv4 addresses or prefixes" is a full
/// subnet, not bad input.
pub fn classify(code: &str, message: &str) -> ErrorClass {
    if code == "InvalidParameterValue" && says_subnet_full(message) {
        return ErrorClass::SubnetFull;
    }
    match code {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "RequestThrottled" => {
            ErrorClass::Throttled
        }
        "InsufficientFreeAddressesInSubnet" | NO_FREE_PREFIX => ErrorClass::SubnetFull,
        "AttachmentLimitExceeded" | "PrivateIpAddressLimitExceeded" => ErrorClass::LimitExceeded,
        "UnauthorizedOperation" | "AuthFailure" => ErrorClass::Unauthorized,
        c if c.ends_with(".NotFound") => ErrorClass::NotFound,
        c if c.ends_with(".InUse") || c == "IncorrectState" => ErrorClass::InUse,
        c if c.starts_with("InvalidParameter") || c == "MissingParameter" => ErrorClass::Invalid,
        _ => ErrorClass::Other,
    }
}

/// EC2's wordings of "the subnet has too few free addresses" under a generic code.
fn says_subnet_full(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("sufficient free") && (m.contains("address") || m.contains("prefix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        assert_eq!(classify("RequestLimitExceeded", ""), ErrorClass::Throttled);
        assert_eq!(
            classify("InsufficientFreeAddressesInSubnet", ""),
            ErrorClass::SubnetFull
        );
        assert_eq!(
            classify("InsufficientCidrBlocks", ""),
            ErrorClass::SubnetFull
        );
        assert_eq!(
            classify("AttachmentLimitExceeded", ""),
            ErrorClass::LimitExceeded
        );
        assert_eq!(
            classify("PrivateIpAddressLimitExceeded", ""),
            ErrorClass::LimitExceeded
        );
        assert_eq!(
            classify("UnauthorizedOperation", ""),
            ErrorClass::Unauthorized
        );
        assert_eq!(
            classify("InvalidNetworkInterfaceID.NotFound", ""),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify("InvalidNetworkInterface.InUse", ""),
            ErrorClass::InUse
        );
        assert_eq!(
            classify("InvalidParameterValue", "Invalid id: \"subnet-1\""),
            ErrorClass::Invalid
        );
        // EC2's answer to CreateNetworkInterface and AssignPrivateIpAddresses on a full subnet.
        assert_eq!(
            classify(
                "InvalidParameterValue",
                "There aren't sufficient free Ipv4 addresses or prefixes"
            ),
            ErrorClass::SubnetFull
        );
        assert_eq!(
            classify(
                "InvalidParameterValue",
                "insufficient free addresses in subnet-1"
            ),
            ErrorClass::SubnetFull
        );
        assert_eq!(classify("SomethingNew", ""), ErrorClass::Other);
    }

    #[test]
    fn missing_permission_names_the_action() {
        let e = Ec2Error::MissingPermission {
            action: "CreateNetworkInterface",
            code: "UnauthorizedOperation".into(),
            message: "You are not authorized".into(),
        };
        assert!(
            e.to_string()
                .contains("missing IAM permission ec2:CreateNetworkInterface")
        );
        assert_eq!(e.class(), ErrorClass::Unauthorized);
    }
}

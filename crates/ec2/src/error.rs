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

/// Classifies an EC2 error code.
pub fn classify(code: &str) -> ErrorClass {
    match code {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "RequestThrottled" => {
            ErrorClass::Throttled
        }
        "InsufficientFreeAddressesInSubnet" | "InsufficientCidrBlocks" => ErrorClass::SubnetFull,
        "AttachmentLimitExceeded" | "PrivateIpAddressLimitExceeded" => ErrorClass::LimitExceeded,
        "UnauthorizedOperation" | "AuthFailure" => ErrorClass::Unauthorized,
        c if c.ends_with(".NotFound") => ErrorClass::NotFound,
        c if c.ends_with(".InUse") || c == "IncorrectState" => ErrorClass::InUse,
        c if c.starts_with("InvalidParameter") || c == "MissingParameter" => ErrorClass::Invalid,
        _ => ErrorClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        assert_eq!(classify("RequestLimitExceeded"), ErrorClass::Throttled);
        assert_eq!(
            classify("InsufficientFreeAddressesInSubnet"),
            ErrorClass::SubnetFull
        );
        assert_eq!(classify("InsufficientCidrBlocks"), ErrorClass::SubnetFull);
        assert_eq!(
            classify("AttachmentLimitExceeded"),
            ErrorClass::LimitExceeded
        );
        assert_eq!(
            classify("PrivateIpAddressLimitExceeded"),
            ErrorClass::LimitExceeded
        );
        assert_eq!(classify("UnauthorizedOperation"), ErrorClass::Unauthorized);
        assert_eq!(
            classify("InvalidNetworkInterfaceID.NotFound"),
            ErrorClass::NotFound
        );
        assert_eq!(classify("InvalidNetworkInterface.InUse"), ErrorClass::InUse);
        assert_eq!(classify("InvalidParameterValue"), ErrorClass::Invalid);
        assert_eq!(classify("SomethingNew"), ErrorClass::Other);
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

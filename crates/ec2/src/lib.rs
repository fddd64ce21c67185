//! The cloud seam: exactly what `ipamd` needs from EC2 and instance metadata, as a trait
//! ([`Ec2`]), implemented on the official AWS SDK ([`SdkEc2`]). Every call is counted and timed
//! by action and outcome ([`Ec2Metrics`]); errors are typed by what the caller must do about
//! them ([`Ec2Error`]).

mod error;
mod facts;
mod imds;
mod metrics;
mod sdk;
mod setup;
mod types;

pub use error::{Ec2Error, ErrorClass, NO_FREE_PREFIX};
pub use imds::{
    InstanceIdentity, Metadata, MetadataEni, MetadataError, MetadataTimeouts, fetch_identity,
};
pub use metrics::Ec2Metrics;
pub use sdk::{DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT, RetryMode, SdkEc2, SdkOptions};
pub use setup::{
    Ec2Setup, IngressRule, IngressSource, Instance, InstanceEni, NewSubnet, SecurityGroupDetail,
    VpcCidrBlock, VpcDetail,
};
pub use types::{
    AddressRequest, Attachment, CreateEni, Ec2, NetworkInterface, SecurityGroup, Subnet,
    SubnetQuery, Vpc,
};

//! Fixtures shared by tests: the EC2 emulator as a child process (killed on drop), its control
//! endpoint, and an SDK client pointed at it. Panics here are test failures with a message that
//! says what is missing.

#![allow(clippy::unwrap_used)]

pub mod invariants;
pub mod testbed;
pub mod world;

use ::testbed::emulator::EmulatorProcess;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, Region};

pub const REGION: &str = "us-west-2";

/// A running emulator on a free loopback port, stopped when dropped.
pub struct Emulator {
    process: EmulatorProcess,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with(&["--ip-allocation", "lowest"])
    }

    pub fn start_with(args: &[&str]) -> Emulator {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let verbose = std::env::var_os("VPCEMU_TEST_LOG").is_some();
        let log = Box::new(move |line: &str| {
            if verbose {
                eprintln!("vpcemu: {line}");
            }
        });
        let process = EmulatorProcess::start(&args, log).unwrap_or_else(|e| panic!("{e}"));
        let endpoint = process.endpoint.clone();
        Emulator { process, endpoint }
    }

    pub async fn client(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&sdk_config(&self.endpoint).await)
    }

    /// A JSON request to the control endpoint; returns (status, body).
    pub fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.process
            .control(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// SDK configuration for the emulator: dummy credentials, fixed region, no retries beyond the
/// standard ones.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// The reference document's shape: VPC 10.0.0.0/16 with secondary block 100.64.0.0/16, a node
/// subnet and pod subnets per zone, a pod security group.
#[derive(Debug, Clone)]
pub struct SeededVpc {
    pub vpc_id: String,
    pub nodes_a: String,
    pub pods_a: String,
    pub pods_b: String,
    /// A /28 in us-west-2a: 11 usable addresses.
    pub tiny_a: String,
    pub pods_sg: String,
    pub default_sg: String,
}

pub async fn seed_vpc(ec2: &aws_sdk_ec2::Client) -> SeededVpc {
    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    ec2.associate_vpc_cidr_block()
        .vpc_id(&vpc_id)
        .cidr_block("100.64.0.0/16")
        .send()
        .await
        .unwrap();
    let subnet = |cidr: &'static str, az: &'static str| {
        let vpc_id = vpc_id.clone();
        async move {
            ec2.create_subnet()
                .vpc_id(vpc_id)
                .cidr_block(cidr)
                .availability_zone(az)
                .send()
                .await
                .unwrap()
                .subnet()
                .unwrap()
                .subnet_id()
                .unwrap()
                .to_string()
        }
    };
    let nodes_a = subnet("10.0.1.0/24", "us-west-2a").await;
    let pods_a = subnet("100.64.0.0/19", "us-west-2a").await;
    let pods_b = subnet("100.64.32.0/19", "us-west-2b").await;
    let tiny_a = subnet("100.64.64.0/28", "us-west-2a").await;
    let pods_sg = ec2
        .create_security_group()
        .vpc_id(&vpc_id)
        .group_name("pods")
        .description("pods")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let default_sg = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&vpc_id)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();
    SeededVpc {
        vpc_id,
        nodes_a,
        pods_a,
        pods_b,
        tiny_a,
        pods_sg,
        default_sg,
    }
}

/// Runs one instance of `instance_type` in `subnet`; returns its id.
pub async fn run_instance(ec2: &aws_sdk_ec2::Client, instance_type: &str, subnet: &str) -> String {
    ec2.run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1)
        .instance_type(aws_sdk_ec2::types::InstanceType::from(instance_type))
        .subnet_id(subnet)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string()
}

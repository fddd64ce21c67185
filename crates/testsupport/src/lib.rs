//! Fixtures shared by tests: the EC2 emulator as a child process (killed on drop), its control
//! endpoint, and an SDK client pointed at it. Panics here are test failures with a message that
//! says what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, Region};

pub const REGION: &str = "us-west-2";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A running emulator on a free loopback port.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with(&["--ip-allocation", "lowest"])
    }

    pub fn start_with(args: &[&str]) -> Emulator {
        let root = repo_root();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make setup` (scripts/setup) to create the emulator's virtualenv",
            python.display()
        );
        let mut child = Command::new(&python)
            .args(["-m", "vpcemu", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("PYTHONPATH", root.join("emulator"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the emulator");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // The emulator logs "EC2 endpoint on http://..." once it listens; keep
        // draining stderr afterwards so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("EC2 endpoint on ").nth(1)
                    && rest.starts_with("http://")
                    && let Some(t) = tx.take()
                {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = t.send(url);
                } else if std::env::var_os("VPCEMU_TEST_LOG").is_some() {
                    eprintln!("vpcemu: {line}");
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("the emulator did not report its endpoint within 60 s (exit: {status:?})");
            }
        };
        Emulator { child, endpoint }
    }

    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
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
        http_json(self.port(), method, path, body)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A minimal HTTP/1.1 JSON client over loopback, enough for the control endpoint.
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the emulator");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let value = if payload.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(payload).unwrap_or(serde_json::Value::String(payload.to_string()))
    };
    (status, value)
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

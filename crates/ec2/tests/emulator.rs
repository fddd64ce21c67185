//! The EC2 client crate against the emulator, over the wire as on EC2.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use ec2::{AddressRequest, CreateEni, Ec2, Ec2Error, Ec2Metrics, ErrorClass, SdkEc2, SdkOptions};
use ipnet::Ipv4Net;
use serde_json::json;
use testsupport::{Emulator, SeededVpc, run_instance, seed_vpc};

struct Fixture {
    emulator: Emulator,
    ec2: SdkEc2,
    metrics: Arc<Ec2Metrics>,
    vpc: SeededVpc,
}

async fn fixture() -> Fixture {
    let emulator = Emulator::start();
    // SAFETY-free configuration: the SDK reads the endpoint from its loader here, not the env.
    let metrics = Arc::new(Ec2Metrics::unregistered());
    let config = testsupport::sdk_config(&emulator.endpoint).await;
    let ec2 = SdkEc2::from_config(&config, &SdkOptions::default(), metrics.clone());
    let vpc = seed_vpc(ec2.sdk()).await;
    Fixture {
        emulator,
        ec2,
        metrics,
        vpc,
    }
}

fn eni_request(subnet: &str, groups: &[&str], addresses: AddressRequest) -> CreateEni {
    CreateEni {
        subnet_id: subnet.to_string(),
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        description: "aws-K8S-i-test".to_string(),
        tags: BTreeMap::from([(
            "node.k8s.amazonaws.com/instance_id".to_string(),
            "i-test".to_string(),
        )]),
        addresses,
    }
}

fn class(r: Result<impl std::fmt::Debug, Ec2Error>) -> (ErrorClass, String) {
    let e = r.expect_err("the call should fail");
    (e.class(), e.code().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_eni_lifecycle_through_the_client() {
    let f = fixture().await;
    let ec2 = &f.ec2;
    let instance = run_instance(ec2.sdk(), "m5.large", &f.vpc.nodes_a).await;

    let enis = ec2.instance_enis(&instance).await.unwrap();
    assert_eq!(enis.len(), 1);
    let primary = &enis[0];
    assert_eq!(primary.attachment.as_ref().unwrap().device_index, 0);
    assert!(primary.secondary_ips.is_empty());

    let vpc = ec2.vpc(&f.vpc.vpc_id).await.unwrap().unwrap();
    let want: Vec<Ipv4Net> = vec![
        "10.0.0.0/16".parse().unwrap(),
        "100.64.0.0/16".parse().unwrap(),
    ];
    assert_eq!(vpc.cidrs, want);
    let subnet = ec2.subnet(&f.vpc.pods_a).await.unwrap().unwrap();
    assert_eq!(
        (
            subnet.availability_zone.as_str(),
            subnet.cidr.to_string().as_str()
        ),
        ("us-west-2a", "100.64.0.0/19")
    );
    assert_eq!(subnet.available_addresses, 8192 - 5);
    assert!(
        ec2.subnet("subnet-00000000000000000")
            .await
            .unwrap()
            .is_none()
    );
    let groups = ec2
        .security_groups(&[f.vpc.pods_sg.clone(), "sg-0123456789abcdef0".to_string()])
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].vpc_id, f.vpc.vpc_id);

    // Create with addresses, groups, description and tags in one call.
    let eni = ec2
        .create_eni(&eni_request(
            &f.vpc.pods_a,
            &[&f.vpc.pods_sg],
            AddressRequest::Secondary(9),
        ))
        .await
        .unwrap();
    assert_eq!(eni.secondary_ips.len(), 9);
    assert_eq!(eni.security_groups, vec![f.vpc.pods_sg.clone()]);
    assert_eq!(eni.tags["node.k8s.amazonaws.com/instance_id"], "i-test");
    assert_eq!(eni.description, "aws-K8S-i-test");
    let attachment = ec2.attach_eni(&eni.id, &instance, 1).await.unwrap();
    ec2.set_delete_on_termination(&eni.id, &attachment)
        .await
        .unwrap();
    let enis = ec2.instance_enis(&instance).await.unwrap();
    let attached = enis.iter().find(|e| e.id == eni.id).unwrap();
    let a = attached.attachment.as_ref().unwrap();
    assert_eq!((a.device_index, a.delete_on_termination), (1, true));
    assert!(
        attached
            .secondary_ips
            .iter()
            .all(|ip| subnet.cidr.contains(ip))
    );

    // The 10th secondary (11th address) on an m5.large ENI is refused.
    assert_eq!(
        class(
            ec2.assign_addresses(&eni.id, AddressRequest::Secondary(1))
                .await
        ),
        (
            ErrorClass::LimitExceeded,
            "PrivateIpAddressLimitExceeded".into()
        )
    );
    let some: Vec<Ipv4Net> = attached.secondary_ips[..3]
        .iter()
        .map(|ip| Ipv4Net::from(*ip))
        .collect();
    ec2.unassign_addresses(&eni.id, &some).await.unwrap();
    let added = ec2
        .assign_addresses(&eni.id, AddressRequest::Secondary(2))
        .await
        .unwrap();
    assert_eq!(added.len(), 2);

    // A prefix ENI: aligned /28s, unassigned one at a time.
    let pd = ec2
        .create_eni(&eni_request(
            &f.vpc.pods_a,
            &[],
            AddressRequest::Prefixes(2),
        ))
        .await
        .unwrap();
    assert_eq!(pd.prefixes.len(), 2);
    assert!(
        pd.prefixes
            .iter()
            .all(|p| p.prefix_len() == 28 && p.network() == p.addr())
    );
    assert_eq!(
        pd.security_groups,
        vec![f.vpc.default_sg.clone()],
        "no groups means the VPC default"
    );
    let attachment_pd = ec2.attach_eni(&pd.id, &instance, 2).await.unwrap();
    let more = ec2
        .assign_addresses(&pd.id, AddressRequest::Prefixes(1))
        .await
        .unwrap();
    assert_eq!(more.len(), 1);
    ec2.unassign_addresses(&pd.id, &more).await.unwrap();

    // A 4th ENI on an m5.large is refused; so is deleting an attached ENI.
    let extra = ec2
        .create_eni(&eni_request(
            &f.vpc.pods_a,
            &[],
            AddressRequest::Secondary(0),
        ))
        .await
        .unwrap();
    assert_eq!(
        class(ec2.attach_eni(&extra.id, &instance, 3).await),
        (ErrorClass::LimitExceeded, "AttachmentLimitExceeded".into())
    );
    assert_eq!(class(ec2.delete_eni(&pd.id).await).0, ErrorClass::InUse);

    // Detached ENIs tagged for an instance are what leak clean-up looks at.
    ec2.detach_eni(&attachment_pd, false).await.unwrap();
    let tag = "node.k8s.amazonaws.com/instance_id";
    let detached = ec2
        .detached_enis_tagged(&f.vpc.vpc_id, tag, &[])
        .await
        .unwrap();
    let ids: Vec<&str> = detached.iter().map(|e| e.id.as_str()).collect();
    assert!(
        ids.contains(&pd.id.as_str()) && ids.contains(&extra.id.as_str()),
        "{ids:?}"
    );
    assert!(!ids.contains(&eni.id.as_str()));
    let none = ec2
        .detached_enis_tagged(
            &f.vpc.vpc_id,
            tag,
            &[("cluster.k8s.amazonaws.com/name", "other")],
        )
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    // The running instance is live; a made-up one is not (and does not fail the call).
    assert_eq!(
        ec2.live_instances(&[instance.clone(), "i-0123456789abcdef0".into()])
            .await
            .unwrap(),
        vec![instance.clone()]
    );
    ec2.delete_eni(&pd.id).await.unwrap();
    ec2.delete_eni(&pd.id)
        .await
        .expect("deleting a deleted ENI is success");

    // Every call was counted by action.
    assert!(f.metrics.requests("CreateNetworkInterface") >= 3);
    assert_eq!(
        f.metrics
            .errors("AttachNetworkInterface", "AttachmentLimitExceeded"),
        1
    );
    drop(f.emulator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_subnet_runs_out() {
    let f = fixture().await;
    let r = f
        .ec2
        .create_eni(&eni_request(
            &f.vpc.tiny_a,
            &[],
            AddressRequest::Secondary(9),
        ))
        .await;
    assert!(r.is_ok(), "{r:?}");
    // 11 usable addresses: 10 taken, asking for 2 more fails.
    assert_eq!(
        class(
            f.ec2
                .create_eni(&eni_request(
                    &f.vpc.tiny_a,
                    &[],
                    AddressRequest::Secondary(1)
                ))
                .await
        ),
        (
            ErrorClass::SubnetFull,
            "InsufficientFreeAddressesInSubnet".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_through() {
    let f = fixture().await;
    let instance = run_instance(f.ec2.sdk(), "m5.large", &f.vpc.nodes_a).await;
    let (status, _) = f.emulator.control(
        "POST",
        "/_testbed/throttle",
        Some(json!({"enabled": true, "buckets": {"DescribeNetworkInterfaces": {"burst": 2, "rate": 4}}})),
    );
    assert_eq!(status, 200);
    f.emulator.control("DELETE", "/_testbed/calls", None);
    for _ in 0..8 {
        let enis = f
            .ec2
            .instance_enis(&instance)
            .await
            .expect("retried through throttling");
        assert_eq!(enis.len(), 1);
    }
    let (_, calls) = f.emulator.control("GET", "/_testbed/calls", None);
    let throttled = calls["DescribeNetworkInterfaces"]["error_codes"]["RequestLimitExceeded"]
        .as_u64()
        .unwrap_or(0);
    assert!(throttled > 0, "the emulator never throttled: {calls}");
    assert_eq!(calls["DescribeNetworkInterfaces"]["ok"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_operation_names_the_missing_permission() {
    let f = fixture().await;
    let (status, _) = f.emulator.control(
        "POST",
        "/_testbed/faults",
        Some(json!({"action": "CreateNetworkInterface", "error_code": "UnauthorizedOperation", "rate": 1.0})),
    );
    assert_eq!(status, 200);
    let err = f
        .ec2
        .create_eni(&eni_request(
            &f.vpc.pods_a,
            &[],
            AddressRequest::Secondary(1),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Ec2Error::MissingPermission {
                action: "CreateNetworkInterface",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("missing IAM permission ec2:CreateNetworkInterface"),
        "{err}"
    );
    assert_eq!(
        f.metrics
            .errors("CreateNetworkInterface", "UnauthorizedOperation"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_metadata_is_per_instance_and_follows_attachments() {
    let f = fixture().await;
    let a = run_instance(f.ec2.sdk(), "m5.large", &f.vpc.nodes_a).await;
    let b = run_instance(f.ec2.sdk(), "t3.small", &f.vpc.nodes_a).await;
    let endpoint = |id: &str| {
        let (status, body) =
            f.emulator
                .control("POST", "/_testbed/imds", Some(json!({"instance_id": id})));
        assert_eq!(status, 200, "{body}");
        body["endpoint"].as_str().unwrap().to_string()
    };
    let (ea, eb) = (endpoint(&a), endpoint(&b));
    let ia = ec2::fetch_identity(Some(&ea)).await.unwrap();
    let ib = ec2::fetch_identity(Some(&eb)).await.unwrap();
    assert_eq!(
        (ia.instance_id.as_str(), ia.instance_type.as_str()),
        (a.as_str(), "m5.large")
    );
    assert_eq!(
        (ib.instance_id.as_str(), ib.instance_type.as_str()),
        (b.as_str(), "t3.small")
    );
    assert_ne!(ia.primary_mac, ib.primary_mac);
    assert_ne!(ia.primary_ip, ib.primary_ip);
    assert_eq!(ia.region, "us-west-2");
    assert_eq!(ia.availability_zone, "us-west-2a");
    assert_eq!(ia.vpc_id, f.vpc.vpc_id);
    assert_eq!(ia.subnet_id, f.vpc.nodes_a);
    assert_eq!(ia.vpc_cidrs.len(), 2, "{:?}", ia.vpc_cidrs);
    assert_eq!(
        ia.primary_eni_id,
        f.ec2.instance_enis(&a).await.unwrap()[0].id
    );

    let imds = aws_config::imds::Client::builder()
        .endpoint(ea.as_str())
        .unwrap()
        .build();
    let macs = || async {
        imds.get("/latest/meta-data/network/interfaces/macs/")
            .await
            .unwrap()
            .as_ref()
            .to_string()
    };
    assert_eq!(macs().await.lines().count(), 1);
    let eni = f
        .ec2
        .create_eni(&eni_request(
            &f.vpc.pods_a,
            &[],
            AddressRequest::Secondary(2),
        ))
        .await
        .unwrap();
    let attachment = f.ec2.attach_eni(&eni.id, &a, 1).await.unwrap();
    let listed = macs().await;
    assert!(listed.contains(&format!("{}/", eni.mac)), "{listed}");
    f.ec2.detach_eni(&attachment, false).await.unwrap();
    assert_eq!(macs().await.lines().count(), 1);
}

/// The setup verbs `vpcctl custom-networking` uses, read back through the same client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_verbs_create_and_describe_blocks_subnets_groups_and_instances() {
    use ec2::{Ec2Setup, IngressRule, IngressSource, NewSubnet};
    let f = fixture().await;
    let ec2 = &f.ec2;
    let vpc = &f.vpc.vpc_id;
    let block: Ipv4Net = "100.65.0.0/16".parse().unwrap();
    let a = ec2.associate_vpc_cidr(vpc, block).await.unwrap();
    assert!(a.association_id.starts_with("vpc-cidr-assoc"), "{a:?}");
    let detail = ec2.vpc_detail(vpc).await.unwrap().unwrap();
    assert_eq!(
        detail.primary_cidr,
        "10.0.0.0/16".parse::<Ipv4Net>().unwrap()
    );
    let states: Vec<(String, String)> = detail
        .blocks
        .iter()
        .map(|b| (b.cidr.to_string(), b.state.clone()))
        .collect();
    assert!(
        states.contains(&("100.65.0.0/16".into(), "associated".into())),
        "{states:?}"
    );
    assert!(
        ec2.vpc_detail("vpc-0000000000000dead")
            .await
            .unwrap()
            .is_none()
    );

    let tags = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let s = ec2
        .create_subnet(&NewSubnet {
            vpc_id: vpc.clone(),
            cidr: "100.65.0.0/20".parse().unwrap(),
            availability_zone: "us-west-2c".into(),
            tags: tags.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        (s.availability_zone.as_str(), s.available_addresses),
        ("us-west-2c", 4091)
    );
    assert_eq!(s.tags, tags);
    let more = BTreeMap::from([("other".to_string(), "x".to_string())]);
    ec2.create_tags(std::slice::from_ref(&s.id), &more)
        .await
        .unwrap();
    let all = ec2.vpc_subnets(vpc).await.unwrap();
    let again = all.iter().find(|x| x.id == s.id).unwrap();
    assert_eq!(again.tags.len(), 2, "{again:?}");
    assert_eq!(all.len(), 5, "the seeded four and this one: {all:?}");

    let zones = ec2.availability_zones().await.unwrap();
    assert!(
        zones.contains(&"us-west-2a".to_string()) && zones.is_sorted(),
        "{zones:?}"
    );

    let g = ec2
        .create_security_group(vpc, "p", "pods", &tags)
        .await
        .unwrap();
    let rules = vec![
        IngressRule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            source: IngressSource::Group(g.clone()),
        },
        IngressRule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            source: IngressSource::Cidr("10.0.0.0/16".parse().unwrap()),
        },
    ];
    ec2.authorize_ingress(&g, &rules).await.unwrap();
    let groups = ec2.vpc_security_groups(vpc).await.unwrap();
    let mine = groups.iter().find(|x| x.group.id == g).unwrap();
    let mut have = mine.ingress.clone();
    have.sort();
    let mut want = rules.clone();
    want.sort();
    assert_eq!(have, want);
    assert_eq!(mine.tags, tags);

    let instance = run_instance(ec2.sdk(), "m5.large", &f.vpc.nodes_a).await;
    let eni = &ec2.instance_enis(&instance).await.unwrap()[0];
    ec2.assign_addresses(&eni.id, AddressRequest::Secondary(3))
        .await
        .unwrap();
    let instances = ec2.vpc_instances(vpc).await.unwrap();
    let i = instances.iter().find(|i| i.id == instance).unwrap();
    assert_eq!(
        (i.instance_type.as_str(), i.availability_zone.as_str()),
        ("m5.large", "us-west-2a")
    );
    assert_eq!(i.enis.len(), 1);
    assert_eq!(
        (
            i.enis[0].device_index,
            i.enis[0].pod_address_blocks,
            i.enis[0].subnet_id.as_str()
        ),
        (0, 3, f.vpc.nodes_a.as_str())
    );
}

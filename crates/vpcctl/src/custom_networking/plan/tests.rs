#![allow(clippy::unwrap_used)]

use super::*;
use ec2::{InstanceEni, VpcCidrBlock};
use proptest::prelude::*;

pub(crate) fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub(crate) fn zones() -> Vec<String> {
    ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]
        .iter()
        .map(|z| z.to_string())
        .collect()
}

pub(crate) fn subnet(id: &str, az: &str, cidr: &str) -> Subnet {
    Subnet {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        availability_zone: az.into(),
        cidr: net(cidr),
        available_addresses: 100,
        tags: BTreeMap::new(),
    }
}

fn node(id: &str, enis: Vec<InstanceEni>) -> Instance {
    Instance {
        id: id.into(),
        instance_type: "m5.large".into(),
        availability_zone: "us-west-2a".into(),
        state: "running".into(),
        enis,
    }
}

fn eni(id: &str, subnet: &str, device: u32, blocks: u32) -> InstanceEni {
    InstanceEni {
        id: id.into(),
        subnet_id: subnet.into(),
        device_index: device,
        security_groups: vec!["sg-nodes".into()],
        pod_address_blocks: blocks,
    }
}

/// The reference document's starting point: only the primary block, a node subnet per zone.
pub(crate) fn observed() -> Observed {
    Observed {
        vpc: VpcDetail {
            id: "vpc-1".into(),
            primary_cidr: net("10.0.0.0/16"),
            blocks: vec![VpcCidrBlock {
                cidr: net("10.0.0.0/16"),
                association_id: "a-0".into(),
                state: "associated".into(),
            }],
        },
        zones: zones(),
        subnets: vec![
            subnet("subnet-na", "us-west-2a", "10.0.1.0/24"),
            subnet("subnet-nb", "us-west-2b", "10.0.2.0/24"),
        ],
        groups: vec![SecurityGroupDetail {
            group: SecurityGroup {
                id: "sg-nodes".into(),
                vpc_id: "vpc-1".into(),
                name: "nodes".into(),
            },
            ingress: vec![],
            tags: BTreeMap::new(),
        }],
        foreign_group: None,
        instances: vec![node("i-1", vec![eni("eni-1", "subnet-na", 0, 0)])],
        eniconfigs: Some(BTreeMap::new()),
        aws_node_env: None,
    }
}

fn request() -> Request {
    Request {
        vpc_id: "vpc-1".into(),
        cidr: net("100.64.0.0/16"),
        azs: None,
        subnet_prefix: Some(19),
        security_group: GroupChoice::Create,
        instance_types: vec!["m5.large".into()],
    }
}

/// What EC2 and the destination look like after the changes run (ids made up).
pub(crate) fn execute(obs: &Observed, plan: &Plan) -> Observed {
    let mut o = obs.clone();
    let mut new_subnets: BTreeMap<String, String> = BTreeMap::new();
    let mut new_group = None;
    let subnet_id = |r: &SubnetRef, new: &BTreeMap<String, String>| match r {
        SubnetRef::Existing(id) => id.clone(),
        SubnetRef::New { az } => new[az].clone(),
    };
    let group_id = |r: &GroupRef, new: &Option<String>| match r {
        GroupRef::Existing(id) => id.clone(),
        GroupRef::New => new.clone().unwrap(),
    };
    for c in &plan.changes {
        match c {
            Change::AssociateCidr { cidr } => o.vpc.blocks.push(VpcCidrBlock {
                cidr: *cidr,
                association_id: "a-new".into(),
                state: "associated".into(),
            }),
            Change::CreateSubnet { az, cidr, tags } => {
                // EC2 would refuse a subnet outside the VPC's blocks or overlapping another.
                assert!(
                    o.vpc
                        .blocks
                        .iter()
                        .any(|b| b.state == "associated" && b.cidr.contains(cidr))
                );
                assert!(
                    o.subnets
                        .iter()
                        .all(|s| !s.cidr.contains(cidr) && !cidr.contains(&s.cidr))
                );
                let id = format!("subnet-new-{az}");
                let mut s = subnet(&id, az, &cidr.to_string());
                s.tags = tags.clone();
                o.subnets.push(s);
                new_subnets.insert(az.clone(), id);
            }
            Change::TagSubnet {
                subnet_id, tags, ..
            } => {
                let s = o.subnets.iter_mut().find(|s| &s.id == subnet_id).unwrap();
                s.tags.extend(tags.clone());
            }
            Change::CreateSecurityGroup { name, .. } => {
                o.groups.push(SecurityGroupDetail {
                    group: SecurityGroup {
                        id: "sg-new".into(),
                        vpc_id: "vpc-1".into(),
                        name: name.clone(),
                    },
                    ingress: vec![],
                    tags: BTreeMap::new(),
                });
                new_group = Some("sg-new".to_string());
            }
            Change::AuthorizeIngress { group, sources } => {
                let id = group_id(group, &new_group);
                let rules: Vec<IngressRule> = sources
                    .iter()
                    .map(|s| IngressRule {
                        protocol: "-1".into(),
                        from_port: None,
                        to_port: None,
                        source: match s {
                            PlannedSource::Group(g) => {
                                IngressSource::Group(group_id(g, &new_group))
                            }
                            PlannedSource::Cidr(c) => IngressSource::Cidr(*c),
                        },
                    })
                    .collect();
                let g = o.groups.iter_mut().find(|g| g.group.id == id).unwrap();
                g.ingress.extend(rules);
            }
            Change::WriteEniConfig {
                name,
                subnet,
                groups,
                replaces,
            } => {
                let spec = EniConfigSpec {
                    subnet: subnet_id(subnet, &new_subnets),
                    security_groups: groups
                        .as_ref()
                        .map(|gs| gs.iter().map(|g| group_id(g, &new_group)).collect()),
                    subnets: replaces.as_ref().and_then(|r| r.subnets.clone()),
                };
                o.eniconfigs
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name.clone(), spec);
            }
            Change::AddEniConfigSubnet {
                name,
                subnet,
                current,
            } => {
                let spec = current.with_subnet(subnet_id(subnet, &new_subnets));
                o.eniconfigs
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name.clone(), spec);
            }
            Change::SetAwsNodeEnv { set, remove } => {
                let env = o.aws_node_env.as_mut().unwrap();
                env.extend(set.clone());
                for r in remove {
                    env.remove(r);
                }
            }
        }
    }
    o
}

#[test]
fn the_reference_procedure_from_a_primary_only_vpc() {
    let p = plan(&request(), &observed()).unwrap();
    let lines: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "associate 100.64.0.0/16 with the VPC",
            "create subnet 100.64.0.0/19 in us-west-2a (8187 usable addresses), tagged Name=custom-networking-us-west-2a, vpc-cni.k8s.aws/eniconfig=us-west-2a",
            "create subnet 100.64.32.0/19 in us-west-2b (8187 usable addresses), tagged Name=custom-networking-us-west-2b, vpc-cni.k8s.aws/eniconfig=us-west-2b",
            "create security group custom-networking-pods for the pods",
            "allow all traffic into <new group custom-networking-pods> from sg-nodes, <new group custom-networking-pods>",
            "write ENIConfig us-west-2a: subnet <new subnet in us-west-2a>, securityGroups [<new group custom-networking-pods>]",
            "write ENIConfig us-west-2b: subnet <new subnet in us-west-2b>, securityGroups [<new group custom-networking-pods>]",
        ]
    );
    assert_eq!(p.max_pods, vec![("m5.large".to_string(), 20)]);
    assert!(p.manual[0].contains("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone"), "{:?}", p.manual);
    assert_eq!(p.nodes_to_replace, Some(vec![]));
    let after = execute(&observed(), &p);
    let again = plan(&request(), &after).unwrap();
    assert_eq!(again.changes, vec![], "{:?}", again.changes);
    assert!(
        again
            .notes
            .iter()
            .any(|n| n == "ENIConfig us-west-2a is up to date")
    );
}

#[test]
fn an_overlapping_cidr_is_refused_with_the_block_it_overlaps() {
    let mut r = request();
    r.cidr = net("10.0.128.0/17");
    assert_eq!(
        plan(&r, &observed()).unwrap_err(),
        Refusal::Overlaps {
            cidr: net("10.0.128.0/17"),
            block: net("10.0.0.0/16")
        }
    );
    r.cidr = net("10.0.0.0/8");
    let e = plan(&r, &observed()).unwrap_err();
    assert!(matches!(e, Refusal::BlockSize(_)), "{e}");
    // A block containing the VPC's.
    let mut o = observed();
    o.vpc.primary_cidr = net("10.0.0.0/20");
    o.vpc.blocks[0].cidr = net("10.0.0.0/20");
    r.cidr = net("10.0.0.0/16");
    let e = plan(&r, &o).unwrap_err().to_string();
    assert!(e.contains("overlaps the VPC's block 10.0.0.0/20"), "{e}");
    // The nodes' own block is no place for pod subnets.
    let e = plan(&r, &observed()).unwrap_err();
    assert_eq!(e, Refusal::PrimaryBlock(net("10.0.0.0/16")));
}

#[test]
fn unassociable_blocks_are_refused_with_a_reason() {
    let mut r = request();
    r.cidr = net("192.168.0.0/16");
    let e = plan(&r, &observed()).unwrap_err().to_string();
    assert!(e.contains("RFC 1918"), "{e}");
    r.cidr = net("100.64.1.0/16");
    let e = plan(&r, &observed()).unwrap_err().to_string();
    assert!(e.contains("the block it names is 100.64.0.0/16"), "{e}");
    let mut o = observed();
    for (i, c) in [
        "100.65.0.0/16",
        "100.66.0.0/16",
        "100.67.0.0/16",
        "100.68.0.0/16",
    ]
    .iter()
    .enumerate()
    {
        o.vpc.blocks.push(VpcCidrBlock {
            cidr: net(c),
            association_id: format!("a-{i}"),
            state: "associated".into(),
        });
    }
    r.cidr = net("100.64.0.0/16");
    let e = plan(&r, &o).unwrap_err().to_string();
    assert!(e.contains("already has 5 IPv4 blocks"), "{e}");
    // A disassociated block no longer counts.
    o.vpc.blocks[4].state = "disassociated".into();
    assert!(plan(&r, &o).is_ok());
}

#[test]
fn a_cidr_too_small_for_the_zones_is_refused() {
    let mut r = request();
    r.cidr = net("100.64.0.0/28");
    r.azs = Some(zones()[..3].to_vec());
    r.subnet_prefix = None;
    let e = plan(&r, &observed()).unwrap_err();
    assert_eq!(
        e,
        Refusal::TooSmall {
            cidr: net("100.64.0.0/28"),
            prefix: 28,
            zones: 3,
            names: "us-west-2a, us-west-2b, us-west-2c".into(),
            free: 1
        }
    );
    r.cidr = net("100.64.0.0/16");
    r.subnet_prefix = Some(15);
    assert!(matches!(
        plan(&r, &observed()).unwrap_err(),
        Refusal::SubnetPrefix { prefix: 15, .. }
    ));
}

#[test]
fn zones_default_to_the_node_subnets_and_unknown_zones_are_refused() {
    let mut r = request();
    r.subnet_prefix = None;
    let p = plan(&r, &observed()).unwrap();
    let azs: Vec<&str> = p.subnets.iter().map(|s| s.az.as_str()).collect();
    assert_eq!(azs, ["us-west-2a", "us-west-2b"]);
    // Two zones: each gets half the block.
    assert!(p.subnets.iter().all(|s| s.cidr.prefix_len() == 17));
    r.azs = Some(vec!["us-east-1a".into()]);
    let e = plan(&r, &observed()).unwrap_err().to_string();
    assert!(
        e.contains("zone us-east-1a is not an available zone"),
        "{e}"
    );
    let mut o = observed();
    o.subnets.clear();
    r.azs = None;
    let p = plan(&r, &o).unwrap();
    assert_eq!(p.subnets.len(), 4);
}

#[test]
fn given_groups_must_exist_in_the_vpc() {
    let mut r = request();
    r.security_group = GroupChoice::Given("sg-nodes".into());
    let p = plan(&r, &observed()).unwrap();
    assert!(p.changes.iter().all(|c| !matches!(
        c,
        Change::CreateSecurityGroup { .. } | Change::AuthorizeIngress { .. }
    )));
    r.security_group = GroupChoice::Given("sg-x".into());
    assert_eq!(
        plan(&r, &observed()).unwrap_err(),
        Refusal::GroupMissing("sg-x".into())
    );
    let mut o = observed();
    o.foreign_group = Some(SecurityGroup {
        id: "sg-x".into(),
        vpc_id: "vpc-2".into(),
        name: "x".into(),
    });
    let e = plan(&r, &o).unwrap_err().to_string();
    assert_eq!(e, "security group sg-x is in VPC vpc-2, not in VPC vpc-1");
    r.security_group = GroupChoice::None;
    let p = plan(&r, &observed()).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("default security group"))
    );
}

#[test]
fn existing_subnets_and_eniconfigs_are_kept_or_fixed() {
    let mut o = observed();
    o.vpc.blocks.push(VpcCidrBlock {
        cidr: net("100.64.0.0/16"),
        association_id: "a-1".into(),
        state: "associated".into(),
    });
    o.subnets
        .push(subnet("subnet-pa", "us-west-2a", "100.64.0.0/19"));
    // Someone else's subnet in the block, in a zone we do not want: carving skips it.
    o.subnets
        .push(subnet("subnet-x", "us-west-2d", "100.64.32.0/19"));
    o.eniconfigs = Some(BTreeMap::from([(
        "us-west-2a".to_string(),
        EniConfigSpec {
            subnet: "subnet-old".into(),
            security_groups: None,
            subnets: None,
        },
    )]));
    let r = Request {
        security_group: GroupChoice::Given("sg-nodes".into()),
        ..request()
    };
    let p = plan(&r, &o).unwrap();
    let lines: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "create subnet 100.64.64.0/19 in us-west-2b (8187 usable addresses), tagged Name=custom-networking-us-west-2b, vpc-cni.k8s.aws/eniconfig=us-west-2b",
            "tag subnet subnet-pa (us-west-2a) Name=custom-networking-us-west-2a, vpc-cni.k8s.aws/eniconfig=us-west-2a",
            "update ENIConfig us-west-2a: subnet subnet-pa, securityGroups [sg-nodes] (was subnet subnet-old, securityGroups [])",
            "write ENIConfig us-west-2b: subnet <new subnet in us-west-2b>, securityGroups [sg-nodes]",
        ]
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n == "100.64.0.0/16 is already associated with vpc-1")
    );
}

#[test]
fn nodes_running_pods_outside_the_custom_subnets_are_listed() {
    let mut o = observed();
    o.instances = vec![
        // Pods on the primary ENI's secondary addresses: no custom networking.
        node("i-old", vec![eni("eni-a", "subnet-na", 0, 9)]),
        // Only a primary ENI with no pods: nothing to move.
        node("i-idle", vec![eni("eni-b", "subnet-na", 0, 0)]),
        node(
            "i-second",
            vec![
                eni("eni-c", "subnet-na", 0, 0),
                eni("eni-d", "subnet-nb", 1, 4),
            ],
        ),
    ];
    let p = plan(&request(), &o).unwrap();
    let nodes = p.nodes_to_replace.clone().unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-old", "i-second"]);
    assert!(
        nodes[1]
            .reason
            .contains("eni-d (device 1) holds 4 pod address(es) in subnet-nb")
    );
    // After the change, a new node's pods live in a custom subnet: it is not listed.
    let after = execute(&o, &p);
    let mut o2 = after.clone();
    o2.instances = vec![node(
        "i-new",
        vec![
            eni("eni-e", "subnet-na", 0, 0),
            eni("eni-f", "subnet-new-us-west-2a", 1, 9),
        ],
    )];
    assert_eq!(
        plan(&request(), &o2).unwrap().nodes_to_replace,
        Some(vec![])
    );
}

#[test]
fn the_aws_node_environment_is_changed_only_where_it_differs() {
    let mut o = observed();
    o.aws_node_env = Some(BTreeMap::from([
        (
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".to_string(),
            "true".to_string(),
        ),
        (
            ANNOTATION_ENV.to_string(),
            "k8s.amazonaws.com/eniConfig".to_string(),
        ),
    ]));
    let p = plan(&request(), &o).unwrap();
    assert!(p.manual.is_empty());
    assert_eq!(
        p.changes.last().unwrap(),
        &Change::SetAwsNodeEnv {
            set: BTreeMap::from([(
                "ENI_CONFIG_LABEL_DEF".to_string(),
                "topology.kubernetes.io/zone".to_string()
            )]),
            remove: vec![ANNOTATION_ENV.to_string()],
        }
    );
    let after = execute(&o, &p);
    assert!(plan(&request(), &after).unwrap().changes.is_empty());
}

#[test]
fn an_unknown_instance_type_is_refused_by_name() {
    let mut r = request();
    r.instance_types = vec!["m5.nonsense".into()];
    let e = plan(&r, &observed()).unwrap_err().to_string();
    assert!(e.contains("m5.nonsense"), "{e}");
}

#[test]
fn default_prefixes() {
    assert_eq!(default_prefix(net("100.64.0.0/16"), 1), 16);
    assert_eq!(default_prefix(net("100.64.0.0/16"), 2), 17);
    assert_eq!(default_prefix(net("100.64.0.0/16"), 3), 18);
    assert_eq!(default_prefix(net("100.64.0.0/16"), 4), 18);
    assert_eq!(default_prefix(net("100.64.0.0/27"), 6), 28);
}

fn arb_case() -> impl Strategy<Value = (u8, u8, usize, Vec<u8>, u8)> {
    // block prefix, subnet prefix offset, zone count, pre-existing subnet slots, group choice
    (
        16u8..=28,
        0u8..=6,
        1usize..=4,
        proptest::collection::vec(0u8..16, 0..4),
        0u8..3,
    )
}

proptest! {
    /// Whatever the block, sizes, zones, existing subnets and group choice: either a refusal, or
    /// changes that EC2 would accept (disjoint subnets inside the block, one per zone, of the
    /// asked size) after which the plan is empty.
    #[test]
    fn plan_then_apply_then_plan_is_empty((block, offset, nzones, slots, group) in arb_case()) {
        let cidr = Ipv4Net::new(std::net::Ipv4Addr::new(100, 64, 0, 0), block).unwrap();
        let prefix = (block + offset).min(SMALLEST_PREFIX);
        let mut o = observed();
        let taken_prefix = (block + 4).min(SMALLEST_PREFIX);
        if !slots.is_empty() {
            o.vpc.blocks.push(VpcCidrBlock { cidr, association_id: "a-1".into(), state: "associated".into() });
        }
        let mut seen = BTreeSet::new();
        for (i, slot) in slots.iter().enumerate() {
            let Some(c) = cidr.subnets(taken_prefix).unwrap().nth(usize::from(*slot)) else { continue };
            if seen.insert(c) {
                o.subnets.push(subnet(&format!("subnet-p{i}"), &zones()[i % 4], &c.to_string()));
            }
        }
        let r = Request {
            cidr,
            azs: Some(zones()[..nzones].to_vec()),
            subnet_prefix: Some(prefix),
            security_group: match group { 0 => GroupChoice::None, 1 => GroupChoice::Create, _ => GroupChoice::Given("sg-nodes".into()) },
            ..request()
        };
        match plan(&r, &o) {
            Err(Refusal::TooSmall { free, zones, .. }) => prop_assert!(free < zones),
            Err(e) => prop_assert!(false, "unexpected refusal {e}"),
            Ok(p) => {
                prop_assert_eq!(p.subnets.len(), nzones);
                for s in &p.subnets {
                    prop_assert!(cidr.contains(&s.cidr));
                    if s.existing.is_none() {
                        prop_assert_eq!(s.cidr.prefix_len(), prefix);
                    }
                }
                for (i, a) in p.subnets.iter().enumerate() {
                    for b in &p.subnets[i + 1..] {
                        prop_assert!(!a.cidr.contains(&b.cidr) && !b.cidr.contains(&a.cidr));
                    }
                }
                let after = execute(&o, &p);
                let again = plan(&r, &after).unwrap();
                prop_assert!(again.changes.is_empty(), "{:?}", again.changes);
                prop_assert_eq!(after.eniconfigs.unwrap().len(), nzones);
            }
        }
    }
}

use super::*;

const VPC: &str = "vpc-1";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn spec(subnet: &str, groups: Option<&[&str]>) -> EniConfigResourceSpec {
    EniConfigResourceSpec(eniconfig::EniConfigSpec {
        subnet: subnet.into(),
        security_groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
        subnets: None,
    })
}

fn subnet(vpc: &str, az: &str) -> SubnetFacts {
    SubnetFacts {
        id: "subnet-a".into(),
        vpc_id: vpc.into(),
        availability_zone: az.into(),
        cidr: "100.64.0.0/19".parse().unwrap(),
        available_addresses: 8187,
        tags: Default::default(),
    }
}

fn group(id: &str, vpc: &str) -> GroupFacts {
    GroupFacts {
        id: id.into(),
        vpc_id: vpc.into(),
    }
}

fn condition<'a>(s: &'a EniConfigStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn is(s: &EniConfigStatus, type_: &str, status: &str, reason: &str) {
    let c = condition(s, type_).unwrap_or_else(|| panic!("no {type_} condition in {s:?}"));
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{type_}: {c:?}"
    );
}

#[test]
fn a_valid_eniconfig_is_ready_with_zone_and_free_addresses() {
    let s = status_for(
        "us-west-2a",
        &spec("subnet-a", Some(&["sg-1"])),
        VPC,
        &[subnet(VPC, "us-west-2a")],
        &[group("sg-1", VPC)],
        None,
        at(0),
    );
    is(&s, "SubnetFound", "True", "SubnetFound");
    is(&s, "SameVPC", "True", "SameVPC");
    is(&s, "SecurityGroupsFound", "True", "SecurityGroupsFound");
    is(&s, "Ready", "True", "Valid");
    assert!(condition(&s, "SecurityGroupsDefaulted").is_none());
    assert_eq!(s.availability_zone.as_deref(), Some("us-west-2a"));
    assert_eq!(s.available_ip_address_count, Some(8187));
}

#[test]
fn a_missing_subnet_is_not_ready() {
    let s = status_for(
        "x",
        &spec("subnet-gone", Some(&["sg-1"])),
        VPC,
        &[],
        &[group("sg-1", VPC)],
        None,
        at(0),
    );
    is(&s, "SubnetFound", "False", "SubnetNotFound");
    is(&s, "SameVPC", "Unknown", "SubnetNotFound");
    is(&s, "Ready", "False", "SubnetNotFound");
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .message
            .contains("subnet-gone")
    );
    assert_eq!(s.availability_zone, None);
}

#[test]
fn a_subnet_in_another_vpc_is_not_ready() {
    let s = status_for(
        "x",
        &spec("subnet-a", Some(&["sg-1"])),
        VPC,
        &[subnet("vpc-2", "us-west-2a")],
        &[group("sg-1", VPC)],
        None,
        at(0),
    );
    is(&s, "SameVPC", "False", "OtherVPC");
    is(&s, "Ready", "False", "OtherVPC");
    assert!(condition(&s, "Ready").unwrap().message.contains("vpc-2"));
}

#[test]
fn no_groups_is_defaulted_and_still_ready() {
    for groups in [None, Some(&[][..])] {
        let s = status_for(
            "x",
            &spec("subnet-a", groups),
            VPC,
            &[subnet(VPC, "us-west-2a")],
            &[],
            None,
            at(0),
        );
        is(&s, "SecurityGroupsDefaulted", "True", "NoSecurityGroups");
        assert!(condition(&s, "SecurityGroupsFound").is_none());
        is(&s, "Ready", "True", "Valid");
    }
}

#[test]
fn missing_and_foreign_groups_are_named() {
    let s = status_for(
        "x",
        &spec("subnet-a", Some(&["sg-1", "sg-2"])),
        VPC,
        &[subnet(VPC, "z")],
        &[group("sg-1", "vpc-9")],
        None,
        at(0),
    );
    is(&s, "SecurityGroupsFound", "False", "SecurityGroupsNotFound");
    let m = &condition(&s, "SecurityGroupsFound").unwrap().message;
    assert!(
        m.contains("sg-2 do not exist") && m.contains("sg-1 (VPC vpc-9)"),
        "{m}"
    );
    let s = status_for(
        "x",
        &spec("subnet-a", Some(&["sg-1"])),
        VPC,
        &[subnet(VPC, "z")],
        &[group("sg-1", "vpc-9")],
        None,
        at(0),
    );
    is(
        &s,
        "SecurityGroupsFound",
        "False",
        "SecurityGroupsInOtherVPC",
    );
    is(&s, "Ready", "False", "SecurityGroupsInOtherVPC");
}

#[test]
fn an_eniconfig_named_after_another_zone_is_not_ready() {
    let s = status_for(
        "us-west-2b",
        &spec("subnet-a", None),
        VPC,
        &[subnet(VPC, "us-west-2a")],
        &[],
        None,
        at(0),
    );
    is(&s, "Ready", "False", "ZoneMismatch");
    // A name that is not a zone says nothing about the zone.
    let s = status_for(
        "pods-blue",
        &spec("subnet-a", None),
        VPC,
        &[subnet(VPC, "us-west-2a")],
        &[],
        None,
        at(0),
    );
    is(&s, "Ready", "True", "Valid");
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let good = status_for(
        "x",
        &spec("subnet-a", None),
        VPC,
        &[subnet(VPC, "z")],
        &[],
        None,
        at(0),
    );
    let again = status_for(
        "x",
        &spec("subnet-a", None),
        VPC,
        &[subnet(VPC, "z")],
        &[],
        Some(&good),
        at(60),
    );
    assert_eq!(good, again);
    let bad = status_for(
        "x",
        &spec("subnet-a", None),
        VPC,
        &[subnet("vpc-2", "z")],
        &[],
        Some(&good),
        at(120),
    );
    assert_eq!(
        condition(&bad, "SubnetFound").unwrap().last_transition_time,
        condition(&good, "SubnetFound")
            .unwrap()
            .last_transition_time
    );
    assert_eq!(
        condition(&bad, "Ready").unwrap().last_transition_time,
        at(120).to_string()
    );
    assert_ne!(bad, good);
}

#[test]
fn several_subnets_are_each_shown_with_zone_and_free_addresses() {
    let mut two = spec("subnet-a", Some(&["sg-1"]));
    two.0.subnets = Some(vec!["subnet-b".into()]);
    let b = SubnetFacts {
        id: "subnet-b".into(),
        cidr: "100.64.32.0/19".parse().unwrap(),
        available_addresses: 100,
        ..subnet(VPC, "us-west-2a")
    };
    let s = status_for(
        "us-west-2a",
        &two,
        VPC,
        &[subnet(VPC, "us-west-2a"), b.clone()],
        &[group("sg-1", VPC)],
        None,
        at(0),
    );
    is(&s, "Ready", "True", "Valid");
    assert_eq!(s.available_ip_address_count, Some(8187 + 100));
    let listed: Vec<(&str, &str, i64)> = s
        .subnets
        .iter()
        .flatten()
        .map(|x| {
            (
                x.id.as_str(),
                x.availability_zone.as_str(),
                x.available_ip_address_count,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("subnet-a", "us-west-2a", 8187),
            ("subnet-b", "us-west-2a", 100)
        ]
    );
    // One of them missing, one in another zone: not ready, each named.
    two.0.subnets = Some(vec!["subnet-b".into(), "subnet-c".into()]);
    let elsewhere = SubnetFacts {
        availability_zone: "us-west-2b".into(),
        ..b
    };
    let s = status_for(
        "us-west-2a",
        &two,
        VPC,
        &[subnet(VPC, "us-west-2a"), elsewhere],
        &[group("sg-1", VPC)],
        None,
        at(0),
    );
    is(&s, "SubnetFound", "False", "SubnetNotFound");
    let ready = condition(&s, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("subnet-c does not exist"),
        "{ready:?}"
    );
    assert!(
        ready.message.contains("us-west-2a, us-west-2b"),
        "{ready:?}"
    );
    assert!(
        ready.message.contains("subnet-b is in us-west-2b"),
        "{ready:?}"
    );
}

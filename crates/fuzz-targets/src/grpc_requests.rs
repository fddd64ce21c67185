//! ipamd's handling of the plugin's AddNetwork/DelNetwork requests, without its EC2 side: each
//! request is decoded from protobuf bytes, keyed as the server keys it, and applied to the pure
//! datastore, whose invariants and checkpoint round trip are checked after every request.
//! Input: frames of [kind byte][length byte][request bytes].

use ipam::checkpoint::Checkpoint;
use ipam::{AllocKey, Datastore, Eni, PodMetadata, Time};
use prost::Message;
use rpc::{AddNetworkRequest, DelNetworkRequest};
use std::collections::BTreeSet;
use std::time::Duration;

fn node() -> Datastore {
    let mut ds = Datastore::new(Duration::from_secs(1), 12);
    // A /28 prefix on one ENI and four secondary addresses on another.
    let blocks: [(u32, &[&str]); 2] = [
        (1, &["100.64.0.16/28"]),
        (
            2,
            &[
                "100.64.0.33/32",
                "100.64.0.34/32",
                "100.64.0.35/32",
                "100.64.0.36/32",
            ],
        ),
    ];
    for (i, cidrs) in blocks {
        ds.add_eni(Eni {
            id: format!("eni-{i}"),
            device_number: i,
            network_card: 0,
            primary: false,
            excluded: false,
            subnet_id: "subnet-1".into(),
            subnet_cidr: "100.64.0.0/19".parse().unwrap(),
            security_groups: vec![],
            mac: format!("02:00:00:00:00:0{i}"),
            primary_ip: format!("100.64.1.{i}").parse().unwrap(),
            created_at: Time::from_secs(0),
        })
        .unwrap();
        for cidr in cidrs {
            ds.add_block(&format!("eni-{i}"), cidr.parse().unwrap())
                .unwrap();
        }
    }
    ds
}

pub fn run(data: &[u8]) {
    let mut ds = node();
    let mut now = Time::from_secs(1);
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        now = Time::from_secs(now.unix_nanos() / 1_000_000_000 + u64::from(kind >> 4));
        // (key fields, pod of an ADD) as the server reads them; undecodable bytes are refused.
        let decoded = if kind & 1 == 0 {
            AddNetworkRequest::decode(frame).map(|r| {
                let fields = [
                    r.network_name,
                    r.container_id,
                    r.k8s_pod_infra_container_id,
                    r.if_name,
                ];
                let pod = PodMetadata {
                    namespace: r.k8s_pod_namespace,
                    name: r.k8s_pod_name,
                };
                (fields, Some(pod))
            })
        } else {
            DelNetworkRequest::decode(frame).map(|r| {
                (
                    [
                        r.network_name,
                        r.container_id,
                        r.k8s_pod_infra_container_id,
                        r.if_name,
                    ],
                    None,
                )
            })
        };
        let Ok(([network, container, infra, if_name], pod)) = decoded else {
            continue;
        };
        let Some(key) = AllocKey::for_request(&network, &container, &infra, &if_name) else {
            continue;
        };
        let held = ds.allocation(&key).map(|a| a.ip);
        match pod {
            Some(metadata) => {
                if let Ok(a) = ds.assign(&key, metadata, now) {
                    // A repeated ADD gets the same address back.
                    assert!(held.is_none_or(|ip| ip == a.ip && !a.fresh));
                }
            }
            None => assert_eq!(ds.release(&key, now).map(|r| r.ip), held),
        }
        // No address held twice; the counts agree; the checkpoint restores the same state.
        let ips: BTreeSet<_> = ds.allocations().map(|(_, a)| a.ip).collect();
        assert_eq!(ips.len(), ds.allocations().count());
        assert_eq!(ds.stats(now).assigned, ips.len());
        let restored = Checkpoint::parse(&Checkpoint::from_datastore(&ds).to_json())
            .expect("a checkpoint we write parses")
            .restorable()
            .unwrap();
        let mut fresh = node();
        for r in &restored {
            fresh
                .restore(&r.key, r.ip, r.metadata.clone(), r.assigned_at)
                .expect("our own checkpoint restores");
        }
        assert_eq!(fresh.allocations().count(), ds.allocations().count());
    }
}

//! Assign/release throughput on a full node: an m5.24xlarge-sized pool (14 pod ENIs x 49
//! addresses) with 250 pods assigned, cycling one pod in and out.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ipam::{AllocKey, Datastore, Eni, PodMetadata, Time};
use ipnet::Ipv4Net;

fn full_node() -> Datastore {
    let mut ds = Datastore::new(Duration::from_secs(30), 737);
    for d in 1..=14u32 {
        let id = format!("eni-{d}");
        ds.add_eni(Eni {
            id: id.clone(),
            device_number: d,
            network_card: 0,
            primary: false,
            excluded: false,
            subnet_id: "subnet-1".into(),
            subnet_cidr: "100.64.0.0/16".parse().unwrap(),
            security_groups: vec!["sg-1".into()],
            mac: format!("02:00:00:00:00:{d:02x}"),
            primary_ip: Ipv4Addr::new(100, 64, d as u8, 1),
            created_at: Time::from_secs(0),
        })
        .unwrap();
        for i in 0..49u8 {
            let ip = Ipv4Addr::new(100, 64, d as u8, 10 + i);
            ds.add_block(&id, Ipv4Net::new(ip, 32).unwrap()).unwrap();
        }
    }
    let t = Time::from_secs(1);
    for n in 0..250 {
        let key = AllocKey::new("aws-cni", &format!("pod-{n}"), "eth0");
        ds.assign(&key, PodMetadata::default(), t).unwrap();
    }
    ds
}

fn bench(c: &mut Criterion) {
    let mut ds = full_node();
    let key = AllocKey::new("aws-cni", "churn", "eth0");
    let mut now = Time::from_secs(100);
    c.bench_function("assign+release, 250 of 686 assigned", |b| {
        b.iter(|| {
            // Past the cooldown each round so the freed address is eligible again.
            now = now.plus(Duration::from_secs(31));
            let a = ds.assign(&key, PodMetadata::default(), now).unwrap();
            black_box(a.ip);
            black_box(ds.release(&key, now));
        })
    });
    c.bench_function("stats, 686 addresses", |b| {
        b.iter(|| black_box(ds.stats(now)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

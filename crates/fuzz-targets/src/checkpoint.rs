//! ipamd's checkpoint file (`ipam.json`): parsed, and what parses restores into a datastore
//! and survives a round trip.

use ipam::checkpoint::Checkpoint;
use ipam::{Datastore, Eni, Time};
use std::time::Duration;

pub fn run(data: &[u8]) {
    let Ok(checkpoint) = Checkpoint::parse(data) else {
        return;
    };
    let restorable = checkpoint
        .restorable()
        .expect("a parsed checkpoint restores");
    // Every address of 100.64.0.0/24 on one ENI: restore must place or refuse, never panic.
    let mut ds = Datastore::new(Duration::from_secs(30), 250);
    ds.add_eni(Eni {
        id: "eni-1".into(),
        device_number: 1,
        network_card: 0,
        primary: false,
        excluded: false,
        subnet_id: "subnet-1".into(),
        subnet_cidr: "100.64.0.0/16".parse().unwrap(),
        security_groups: vec![],
        mac: "02:00:00:00:00:01".into(),
        primary_ip: "100.64.1.1".parse().unwrap(),
        created_at: Time::from_secs(0),
    })
    .unwrap();
    for cidr in ["100.64.0.0/28", "100.64.0.16/28"] {
        ds.add_block("eni-1", cidr.parse().unwrap()).unwrap();
    }
    for r in &restorable {
        let _ = ds.restore(&r.key, r.ip, r.metadata.clone(), r.assigned_at);
    }
    let again = Checkpoint::parse(&Checkpoint::from_datastore(&ds).to_json())
        .expect("a checkpoint we write parses");
    assert_eq!(again.restorable().unwrap().len(), ds.allocations().count());
}

//! The manifests ipamd reads (Node and ENIConfig objects, YAML or JSON, several documents).

use eniconfig::{Object, SelectionKeys, parse_manifests, select};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_manifests(text) else {
        return;
    };
    let keys = SelectionKeys::new(None, None);
    for o in &objects {
        match o {
            Object::Node(n) => {
                let s = select(&n.labels, &n.annotations, &keys);
                assert!(!s.name.is_empty());
            }
            Object::EniConfig(e) => {
                let _ = e.spec.groups();
            }
        }
    }
}

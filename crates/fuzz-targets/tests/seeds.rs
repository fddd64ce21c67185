//! Every committed seed (and every crash input turned into a seed) through its fuzz target, as an
//! ordinary test: the fuzzer's instrumented build stays in `make fuzz`.

use std::path::Path;

#[test]
fn every_seed_passes_its_target() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (name, run) in fuzz_targets::TARGETS {
        let dir = seeds.join(name);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the seeds of {name} ({}): {e}", dir.display()))
        {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            run(&data);
            count += 1;
        }
        assert!(count > 0, "{name} has no seeds in {}", dir.display());
    }
}

# The two commands of the README: `make demo` and `make test`. Both set up what they need first.
SHELL := /bin/bash
VENV := .venv

.PHONY: setup test lint unit emulator-test manifests demo bench fleet fuzz soak

setup:
	@scripts/setup

test: setup lint unit emulator-test manifests

lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo nextest run --workspace --no-fail-fast

# Every fuzz target under libFuzzer for FUZZ_SECONDS (default 300) each. `make test` runs the
# committed seeds through the same targets as an ordinary test (crates/fuzz-targets).
fuzz: setup
	scripts/fuzz $${FUZZ_SECONDS:-300}

# The long crash suite: VPC_CRASH_KILLS (default 100) kill -9 of ipamd during pod churn.
soak: setup
	cargo build --workspace --bins
	VPC_CRASH_KILLS=$${VPC_CRASH_KILLS:-100} cargo nextest run -p testbed --test reliability \
		--no-capture -E 'test(ipamd_killed_during_pod_churn)'

emulator-test:
	$(VENV)/bin/python -m pytest emulator/tests scripts/tests -q

manifests:
	scripts/validate-manifests

demo: setup
	cargo build --workspace --bins
	"$${CARGO_TARGET_DIR:-target}/debug/vpc-testbed" --prefix demo demo

bench:
	cargo bench -p ipam --bench datastore
	scripts/bench

# FLEET_NODES (default 100) custom-networking nodes started at once under EC2's throttling, and
# how long until all are network-ready against the floor EC2's buckets allow (a script, not a
# test; docs/benchmarks.md).
fleet: setup
	scripts/fleet

# The two commands of the README: `make demo` and `make test`. Both set up what they need first.
SHELL := /bin/bash
VENV := .venv

.PHONY: setup test lint unit emulator-test manifests demo bench

setup:
	@scripts/setup

test: setup lint unit emulator-test manifests

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo nextest run --workspace --no-fail-fast

emulator-test:
	$(VENV)/bin/python -m pytest emulator/tests -q

manifests:
	scripts/validate-manifests

demo: setup
	cargo build --workspace --bins
	"$${CARGO_TARGET_DIR:-target}/debug/vpc-testbed" --prefix demo demo

bench:
	cargo bench -p ipam --bench datastore
	scripts/bench

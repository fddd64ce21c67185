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
	@echo "make demo: the demo is not there yet (it comes with the end-to-end issue)."
	@echo "What works today: 'cargo run -p vpcctl -- max-pods m5.large --custom-networking' prints 20."

bench:
	cargo bench -p ipam --bench datastore

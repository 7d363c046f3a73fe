#!/usr/bin/env bash
# The whole test suite: install what is missing, check formatting and lints,
# then run every test (unit, the store conformance suite on both backends,
# the 3-member etcd cluster test, and the end-to-end tests with the real
# docker CLI). Tests start their own etcd on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked

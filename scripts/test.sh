#!/usr/bin/env bash
# The whole test suite: install what is missing, check formatting and lints,
# then run every test (unit, the store conformance suite on both backends,
# the 3-member etcd cluster test, and the end-to-end tests with the real
# docker CLI). Tests start their own etcd on free loopback ports and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --locked 2>&1 | tee "$log" || status=$?

# One closing line over every test binary, so the total is not mistaken
# for the last binary's count.
echo
awk '/^test result: / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

#!/usr/bin/env bash
# The image-pull benchmark: sdc-docker vs the reference Docker Engine
# (Debian's docker.io, dockerd 20.10), side by side in one run. Installs
# what is missing (the project's packages and docker.io) without starting
# or enabling the system Docker, then runs `cargo bench --bench pull`,
# which starts its own registry, dockerd and sdc-docker on loopback and
# prints a Markdown table for docs/performance.md.
#
#   SDC_BENCH_RUNS=5 SDC_BENCH_MB=100 SDC_BENCH_LAYERS=5 bash scripts/bench-pull.sh
#
# Needs root (dockerd does).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

bash scripts/install-dockerd.sh

export SDC_BENCH_RUNS=${SDC_BENCH_RUNS:-5}
cargo bench --bench pull

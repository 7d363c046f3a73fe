#!/usr/bin/env bash
# The container-start benchmark: a Container spec written to sdc-docker
# until its process runs, side by side with `docker run -d` on the
# reference Docker Engine (Debian's docker.io, dockerd 20.10) and with bare
# `runc run -d`, for 100 containers one at a time and 100 at once, and the
# memory of our monitors against containerd's shims with all of them
# running. Installs what is missing (the project's packages and docker.io)
# without starting or enabling the system Docker, then runs
# `cargo bench --bench zones`, which starts its own registry, dockerd and
# sdc-docker and prints a Markdown table for docs/performance.md.
#
#   SDC_BENCH_CONTAINERS=100 bash scripts/bench-zones.sh
#
# Needs root (containers do).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

bash scripts/install-dockerd.sh

export SDC_BENCH_CONTAINERS=${SDC_BENCH_CONTAINERS:-100}
# The monitor serve.sh deploys (static); the bench's servers run it.
SDC_BENCH_MONITOR=$(bash scripts/build-monitor.sh)
export SDC_BENCH_MONITOR
cargo bench --bench zones

#!/usr/bin/env bash
# The container-API benchmark: the stock docker CLI against sdc-docker and
# against the reference Docker Engine (Debian's docker.io, dockerd 20.10),
# both running side by side: `docker run --rm`, `docker run -d`, creates
# from 16 concurrent API clients (and from 16 parallel `docker create`
# processes), `docker ps -a` with 1,000 containers stored, and the daemons'
# memory then. Installs what is missing (the project's packages and
# docker.io) without starting or enabling the system Docker, builds the
# static monitor serve.sh deploys, then runs `cargo bench --bench api`,
# which starts its own registry, dockerd and sdc-docker and prints a
# Markdown table for docs/performance.md.
#
#   SDC_BENCH_RUNS=20 SDC_BENCH_CONTAINERS=1000 SDC_BENCH_CLIENTS=16 \
#   SDC_BENCH_CLI_CREATES=200 SDC_BENCH_PS=10 bash scripts/bench-api.sh
#
# SDC_BENCH_SERVER_LOG=FILE keeps our server's log, SDC_BENCH_LIST_DIR=DIR one
# answer of each engine to GET /containers/json?all=1. Needs root (containers do).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

bash scripts/install-dockerd.sh

export SDC_BENCH_RUNS=${SDC_BENCH_RUNS:-20}
export SDC_BENCH_CONTAINERS=${SDC_BENCH_CONTAINERS:-1000}
export SDC_BENCH_CLIENTS=${SDC_BENCH_CLIENTS:-16}
export SDC_BENCH_CLI_CREATES=${SDC_BENCH_CLI_CREATES:-200}
export SDC_BENCH_PS=${SDC_BENCH_PS:-10}
# The monitor serve.sh deploys (static); the bench's server runs it.
SDC_BENCH_MONITOR=$(bash scripts/build-monitor.sh)
export SDC_BENCH_MONITOR
cargo bench --bench api

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

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! installed docker.io; then
  echo "installing: docker.io (Debian's dockerd 20.10; the system service is left stopped)" >&2
  # While installing, forbid maintainer scripts to start services: a
  # policy-rc.d answering 101, ours only if there is none already.
  ours_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    ours_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$ours_policy" >/dev/null
    $SUDO chmod 755 "$ours_policy"
  fi
  cleanup_policy() { [ -z "$ours_policy" ] || $SUDO rm -f "$ours_policy"; }
  trap cleanup_policy EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  cleanup_policy
  trap - EXIT
  # With systemd, units may still have been enabled (or started by socket
  # activation): stop and disable them so nothing listens on
  # /var/run/docker.sock and no system containerd runs.
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now docker.service docker.socket containerd.service >/dev/null 2>&1 || true
  fi
fi

# The bench's dockerd gets its own socket, data root and containerd; a
# system dockerd would only compete for the two cores.
if [ -S /var/run/docker.sock ]; then
  echo "note: something listens on /var/run/docker.sock; the bench does not use it" >&2
fi

export SDC_BENCH_RUNS=${SDC_BENCH_RUNS:-5}
cargo bench --bench pull

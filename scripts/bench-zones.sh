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

export SDC_BENCH_CONTAINERS=${SDC_BENCH_CONTAINERS:-100}
cargo bench --bench zones

#!/usr/bin/env bash
# Installs Debian's docker.io (dockerd 20.10), the reference Docker Engine
# the benchmarks compare against, without starting or enabling the system
# Docker: each bench starts its own dockerd on its own socket and data
# root. Safe to run again.
set -euo pipefail

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

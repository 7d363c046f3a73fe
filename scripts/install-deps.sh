#!/usr/bin/env bash
# Install what sdc-docker needs to build and test, from Debian's packages,
# skipping what is already there. Safe to run again. Needs root (or sudo).
set -euo pipefail

# package:command-it-provides
needed=(
  protobuf-compiler:protoc   # etcd-client's build needs protoc
  etcd-server:etcd           # the HA store backend, and the tests' etcd
  etcd-client:etcdctl        # operators' tool; tests write specs with it
  curl:curl                  # serve.sh waits for /_ping with it
)

missing=()
for entry in "${needed[@]}"; do
  pkg=${entry%%:*}
  cmd=${entry##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's etcd-server package enables a system etcd on 2379; we never use
# it (tests start their own on free ports), so leave it stopped.
command -v cargo >/dev/null 2>&1 || {
  echo "cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
}

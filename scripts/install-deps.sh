#!/usr/bin/env bash
# Install what sdc-docker needs to build and test, from Debian's packages,
# skipping what is already there. Safe to run again. Needs root (or sudo).
set -euo pipefail

needed=(
  protobuf-compiler   # etcd-client's build needs protoc
  etcd-server         # the HA store backend, and the tests' etcd
  etcd-client         # etcdctl: operators' tool; tests write specs with it
  curl                # serve.sh waits for /_ping with it
  docker-registry     # the tests' Registry v2 (testkit::Registry)
  busybox-static      # the tests' images are built from its static /bin/busybox
  skopeo              # tests check OCI layouts / docker archives with it
  runc                # the OCI runtime the linux zone driver runs containers with
  python3-venv        # the docker-py tests install the SDK from PyPI into a venv
)

# By package, not by command: Debian's dynamic `busybox` also provides
# /bin/busybox, but the images need the static one.
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
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

#!/usr/bin/env bash
# Builds the release sdc-docker-monitor as a static-pie binary and prints
# its path. One monitor runs per container; linked statically it maps no
# libc.so, ld.so or libgcc_s, which is most of a dynamic monitor's resident
# set (2.3 MiB VmRSS dynamic, 1.5 MiB static; see docs/performance.md).
# `sdc-docker serve --monitor PATH` runs it.
#
# An explicit --target keeps proc macros and build scripts (host
# artifacts) dynamic, which they must be; the monitor lands in
# target/<triple>/release/, apart from the workspace's own release build.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=$(rustc -vV | sed -n 's/^host: //p')
if cargo build --release -p sdc-docker-monitor --target "$triple" \
  --config "target.$triple.rustflags=[\"-C\",\"target-feature=+crt-static\"]" >&2; then
  echo "$PWD/target/$triple/release/sdc-docker-monitor"
else
  # No static C library here (libc6-dev provides it on Debian): the
  # dynamic monitor works the same, with a larger resident set.
  echo "build-monitor.sh: the static build failed; using the dynamic monitor" >&2
  cargo build --release -p sdc-docker-monitor >&2
  echo "$PWD/target/release/sdc-docker-monitor"
fi

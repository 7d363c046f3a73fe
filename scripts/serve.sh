#!/usr/bin/env bash
# Install what is missing, build sdc-docker, and start it on the embedded
# store, reachable with `docker -H tcp://127.0.0.1:2375` (and on the default
# unix socket /var/run/sdc-docker.sock). Logs go to $DATA_DIR/sdc-docker.log.
#
#   ADDR=127.0.0.1:2375 DATA_DIR=/var/lib/sdc-docker bash scripts/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR=${ADDR:-127.0.0.1:2375}
DATA_DIR=${DATA_DIR:-/var/lib/sdc-docker}

bash scripts/install-deps.sh
cargo build --release -p sdc-docker
# One monitor runs per container: a static one, for its small footprint.
MONITOR=$(bash scripts/build-monitor.sh)

if [ -f "$DATA_DIR/sdc-docker.pid" ] && kill -0 "$(cat "$DATA_DIR/sdc-docker.pid")" 2>/dev/null; then
  echo "stopping the running sdc-docker (pid $(cat "$DATA_DIR/sdc-docker.pid"))" >&2
  kill "$(cat "$DATA_DIR/sdc-docker.pid")"
  while kill -0 "$(cat "$DATA_DIR/sdc-docker.pid")" 2>/dev/null; do sleep 0.1; done
fi

mkdir -p "$DATA_DIR"
nohup target/release/sdc-docker serve \
  --store embedded \
  --data-dir "$DATA_DIR" \
  -H "tcp://$ADDR" \
  -H unix:///var/run/sdc-docker.sock \
  --admin-host unix:///var/run/sdc-docker-admin.sock \
  --monitor "$MONITOR" \
  >>"$DATA_DIR/sdc-docker.log" 2>&1 &
echo $! >"$DATA_DIR/sdc-docker.pid"

for _ in $(seq 1 100); do
  if curl -fsS "http://$ADDR/_ping" >/dev/null 2>&1; then
    echo "sdc-docker is up (pid $(cat "$DATA_DIR/sdc-docker.pid")): docker -H tcp://$ADDR version"
    exit 0
  fi
  kill -0 "$(cat "$DATA_DIR/sdc-docker.pid")" 2>/dev/null || break
  sleep 0.1
done
echo "sdc-docker did not come up; last log lines:" >&2
tail -n 20 "$DATA_DIR/sdc-docker.log" >&2
exit 1

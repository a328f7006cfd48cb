#!/usr/bin/env bash
# Start a one-machine Spark standalone cluster (one master, N workers, 2 by default) from the
# pyspark installation of the project's virtual env, to run the cluster path here:
#   infra/spark/start-local-cluster.sh            # prints spark://127.0.0.1:7177 on its last line
#   PDP_SPARK_MASTER=spark://127.0.0.1:7177 .venv/bin/pdp ingest DIR
#   infra/spark/stop-local-cluster.sh
#
# Why a script and not sbin/start-*.sh: pyspark's wheel ships bin/spark-class but not sbin/,
# and we want a run directory of our own (pids, logs, the workers' work dirs) under var/, not
# inside the venv. Why non-default ports: other people's Spark (7077/8080) may run on the same
# machine. Idempotent: a master or worker that already runs from the run directory is kept.
# It returns once every worker shows ALIVE in the master's JSON status, or fails with one line
# (and stops what it started) after PDP_CLUSTER_TIMEOUT seconds.
#
# Settings (environment):
#   PDP_CLUSTER_DIR            run directory: pids, logs, work dirs (default $PDP_VAR_DIR/spark-cluster, ./var/...)
#   PDP_CLUSTER_HOST           address every daemon binds to (127.0.0.1)
#   PDP_CLUSTER_MASTER_PORT    master RPC port (7177)
#   PDP_CLUSTER_UI_PORT        master web UI port (8190); worker i uses PDP_CLUSTER_UI_PORT + i
#   PDP_CLUSTER_WORKERS        number of workers (2)
#   PDP_CLUSTER_WORKER_CORES   cores per worker (1)
#   PDP_CLUSTER_WORKER_MEMORY  memory per worker for executors, e.g. 2g or 1536m (2g)
#   PDP_CLUSTER_TIMEOUT        seconds to wait for the master and the workers (120)
#   VENV                       the virtual env holding pyspark (the repository's .venv)
set -euo pipefail

die() { echo "start-local-cluster: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$REPO/.venv}
PY="$VENV/bin/python"
[ -x "$PY" ] || die "no Python in $VENV: run 'make setup' first"
command -v java >/dev/null || die "java not found (Java 17+ is required by Spark)"

HOST=${PDP_CLUSTER_HOST:-127.0.0.1}
MASTER_PORT=${PDP_CLUSTER_MASTER_PORT:-7177}
UI_PORT=${PDP_CLUSTER_UI_PORT:-8190}
WORKERS=${PDP_CLUSTER_WORKERS:-2}
CORES=${PDP_CLUSTER_WORKER_CORES:-1}
MEMORY=${PDP_CLUSTER_WORKER_MEMORY:-2g}
TIMEOUT=${PDP_CLUSTER_TIMEOUT:-120}

is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
for pair in "PDP_CLUSTER_MASTER_PORT=$MASTER_PORT" "PDP_CLUSTER_UI_PORT=$UI_PORT"; do
  value=${pair#*=}
  { is_int "$value" && [ "$value" -ge 1024 ] && [ "$value" -le 65000 ]; } \
    || die "${pair%%=*} must be a port number between 1024 and 65000, not '$value'"
done
{ is_int "$WORKERS" && [ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 16 ]; } \
  || die "PDP_CLUSTER_WORKERS must be a number of workers from 1 to 16, not '$WORKERS'"
{ is_int "$CORES" && [ "$CORES" -ge 1 ]; } || die "PDP_CLUSTER_WORKER_CORES must be a positive integer, not '$CORES'"
[[ $MEMORY =~ ^[1-9][0-9]*[mMgG]$ ]] || die "PDP_CLUSTER_WORKER_MEMORY must look like 2g or 1536m, not '$MEMORY'"
{ is_int "$TIMEOUT" && [ "$TIMEOUT" -ge 1 ]; } || die "PDP_CLUSTER_TIMEOUT must be a positive number of seconds"

SPARK_HOME=$("$PY" -c "import os, pyspark; print(os.path.dirname(pyspark.__file__))" 2>/dev/null) \
  || die "pyspark is not installed in $VENV: run 'make setup' first"
export SPARK_HOME
# Executors run the venv's Python, whatever `python3` is on the workers' PATH.
export PYSPARK_PYTHON="$PY"
# A port taken by someone else must fail the start, not move the master to the next port. The
# master's REST submission server (cluster-mode submits, which pdp never uses: it is the driver)
# is off: on its fixed port 6066 a second cluster on the machine failed to bind, and its master
# then never answered the workers' registration (they retried until the timeout).
export SPARK_DAEMON_JAVA_OPTS="${SPARK_DAEMON_JAVA_OPTS:-} -Dspark.port.maxRetries=0 -Dspark.master.rest.enabled=false"

RUN=${PDP_CLUSTER_DIR:-${PDP_VAR_DIR:-./var}/spark-cluster}
mkdir -p "$RUN" || die "cannot create the run directory $RUN"
RUN=$(cd "$RUN" && pwd)
MASTER_URL="spark://$HOST:$MASTER_PORT"
STATUS_URL="http://$HOST:$UI_PORT/json/"
CONFIG="master=$MASTER_URL ui=$UI_PORT workers=$WORKERS cores=$CORES memory=$MEMORY"

# running ROLE: the pid in $RUN/ROLE.pid if that process is still our Spark daemon.
running() {
  local pid
  [ -f "$RUN/$1.pid" ] || return 1
  pid=$(cat "$RUN/$1.pid")
  is_int "$pid" && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "org.apache.spark.deploy" \
    && echo "$pid"
}

port_free() {
  "$PY" - "$HOST" "$1" <<'EOF'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((sys.argv[1], int(sys.argv[2])))
    except OSError:
        sys.exit(1)
EOF
}

# alive_workers: how many workers the master reports ALIVE (0 when it does not answer yet).
alive_workers() {
  "$PY" - "$STATUS_URL" <<'EOF' 2>/dev/null || echo 0
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    status = json.load(answer)
print(sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE"))
EOF
}

STARTED=0
fail() {
  # Leave nothing half-started behind: stop the whole run directory, then say why in one line.
  if [ "$STARTED" = 1 ]; then PDP_CLUSTER_DIR="$RUN" bash "$REPO/infra/spark/stop-local-cluster.sh" >/dev/null 2>&1 || true; fi
  die "$*"
}

# start ROLE ARGS...: spark-class in its own session (a Ctrl-C or a test's process group kill
# does not reach it), pid written by the process itself; spark-class execs the JVM, so the pid is
# the JVM's.
start() {
  local role=$1
  shift
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$role.pid" "$SPARK_HOME/bin/spark-class" "$@" \
    >"$RUN/$role.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do [ -s "$RUN/$role.pid" ] && break; sleep 0.1; done
  STARTED=1
}

if running master >/dev/null; then
  [ "$(cat "$RUN/cluster.conf" 2>/dev/null)" = "$CONFIG" ] \
    || die "a cluster with other settings already runs from $RUN ($(cat "$RUN/cluster.conf" 2>/dev/null)): stop it first"
else
  for port in "$MASTER_PORT" "$UI_PORT"; do
    port_free "$port" || die "port $port on $HOST is in use: choose others with PDP_CLUSTER_MASTER_PORT/PDP_CLUSTER_UI_PORT"
  done
  # Workers left from a master that died would register with the new one unasked: stop them.
  PDP_CLUSTER_DIR="$RUN" bash "$REPO/infra/spark/stop-local-cluster.sh" >/dev/null 2>&1 || true
  echo "$CONFIG" >"$RUN/cluster.conf"
  start master org.apache.spark.deploy.master.Master --host "$HOST" --port "$MASTER_PORT" --webui-port "$UI_PORT"
fi

deadline=$((SECONDS + TIMEOUT))
until "$PY" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$STATUS_URL" 2>/dev/null; do
  running master >/dev/null || fail "the master exited (see $RUN/master.log)"
  [ $SECONDS -lt $deadline ] || fail "the master did not answer on $STATUS_URL within ${TIMEOUT}s (see $RUN/master.log)"
  sleep 1
done

for i in $(seq 1 "$WORKERS"); do
  running "worker-$i" >/dev/null && continue
  port_free $((UI_PORT + i)) || fail "port $((UI_PORT + i)) (worker $i's web UI) on $HOST is in use"
  mkdir -p "$RUN/work-$i"
  start "worker-$i" org.apache.spark.deploy.worker.Worker --host "$HOST" --cores "$CORES" --memory "$MEMORY" \
    --webui-port $((UI_PORT + i)) --work-dir "$RUN/work-$i" "$MASTER_URL"
done

until [ "$(alive_workers)" -ge "$WORKERS" ]; do
  for i in $(seq 1 "$WORKERS"); do
    running "worker-$i" >/dev/null || fail "worker $i exited (see $RUN/worker-$i.log)"
  done
  [ $SECONDS -lt $deadline ] \
    || fail "$(alive_workers) of $WORKERS workers registered with $MASTER_URL within ${TIMEOUT}s (see $RUN/worker-*.log)"
  sleep 1
done
echo "$MASTER_URL"

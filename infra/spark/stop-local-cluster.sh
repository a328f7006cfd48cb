#!/usr/bin/env bash
# Stop the cluster started by start-local-cluster.sh: workers first, then the master, then any
# process still working in the run directory (executors and their Python workers run with their
# cwd in a worker's work dir), so no JVM outlives the cluster. SIGTERM, then SIGKILL after
# PDP_CLUSTER_STOP_TIMEOUT seconds (20). Only processes of the run directory are touched, never
# other people's Spark. Stopping a cluster that is not running is not an error.
#
# Settings: PDP_CLUSTER_DIR (default $PDP_VAR_DIR/spark-cluster, ./var/spark-cluster).
set -uo pipefail

die() { echo "stop-local-cluster: $*" >&2; exit 1; }

RUN=${PDP_CLUSTER_DIR:-${PDP_VAR_DIR:-./var}/spark-cluster}
TIMEOUT=${PDP_CLUSTER_STOP_TIMEOUT:-20}
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "PDP_CLUSTER_STOP_TIMEOUT must be a number of seconds, not '$TIMEOUT'"
[ -d "$RUN" ] || exit 0
RUN=$(cd "$RUN" && pwd)

# daemon_pid FILE: the pid it holds if that process is still a Spark daemon.
daemon_pid() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] \
    && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "org.apache.spark.deploy" && echo "$pid"
}

# in_run_dir: pids of our processes working in an application dir of a worker (executors, Python workers).
in_run_dir() {
  local dir cwd pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    cwd=$(readlink "$dir/cwd" 2>/dev/null) || continue
    case "$cwd" in "$RUN"/work-*/*) echo "$pid" ;; esac
  done
}

# stop PID...: SIGTERM, wait, then SIGKILL whatever is left.
stop() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  local deadline=$((SECONDS + TIMEOUT)) pid left
  while :; do
    left=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && return 0
    [ $SECONDS -ge $deadline ] && break
    sleep 0.5
  done
  kill -KILL "${left[@]}" 2>/dev/null
  sleep 0.5
}

pids=()
for file in "$RUN"/worker-*.pid; do
  [ -e "$file" ] || continue
  pid=$(daemon_pid "$file") && pids+=("$pid")
done
stop "${pids[@]}"
pid=$(daemon_pid "$RUN/master.pid") && stop "$pid"
# shellcheck disable=SC2046
stop $(in_run_dir)
rm -f "$RUN"/master.pid "$RUN"/worker-*.pid
left=$(in_run_dir | tr '\n' ' ')
[ -z "$left" ] || die "processes still running in $RUN: $left"
exit 0

#!/usr/bin/env bash
# Stop the cluster started by start-local-cluster.sh.
set -u
RUN=${PDP_VAR_DIR:-./var}/spark-cluster
for role in worker master; do
  [ -f "$RUN/$role.pid" ] && kill "$(cat "$RUN/$role.pid")" 2>/dev/null && rm -f "$RUN/$role.pid"
done
exit 0

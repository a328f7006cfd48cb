#!/usr/bin/env bash
# Stops the private test cluster that infra/setup/postgres.sh started (fast shutdown); idempotent.
# The cluster and its data stay: postgres.sh starts it again.
set -euo pipefail

VAR_DIR=${PDP_VAR_DIR:-./var}
PG_USER=postgres

say() { echo "postgres-stop.sh: $*" >&2; }
die() { echo "postgres-stop.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the server runs as '$PG_USER')"
[ -e "$VAR_DIR/pg" ] || { say "no cluster under $VAR_DIR/pg"; exit 0; }
DATA=$(readlink -f "$VAR_DIR/pg")/data
[ -s "$DATA/PG_VERSION" ] || { say "no cluster in $DATA"; exit 0; }
BINDIR=/usr/lib/postgresql/$(cat "$DATA/PG_VERSION")/bin
[ -x "$BINDIR/pg_ctl" ] || BINDIR=$(dirname "$(readlink -f "$(command -v pg_ctl)")") ||
    die "pg_ctl not found"

if (cd / && runuser -u "$PG_USER" -- "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1); then
    (cd / && runuser -u "$PG_USER" -- "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2) ||
        die "the server did not stop"
    say "stopped ($DATA)"
else
    say "not running ($DATA)"
fi

#!/usr/bin/env bash
# PostgreSQL for the test suite: a private cluster, started if needed; prints its SQLAlchemy URL.
#
# Why: the governance store runs on SQLite by default and on PostgreSQL in production; CI must
# prove the PostgreSQL path on a real server, installed from the Debian package, not mocked.
#
# Idempotent, safe to run concurrently (a lock serialises runs):
#   1. finds the server binaries under /usr/lib/postgresql/*/bin or on PATH; if none, installs
#      the Debian package `postgresql` (needs root, which is what the machines run as);
#   2. initialises, once, a cluster under ${PDP_VAR_DIR:-./var}/pg owned by the `postgres` OS
#      user (the server refuses to run as root). If that user cannot reach the folder (a parent
#      such as /root is private) or the socket path would be too long, the cluster lives in
#      /var/tmp/pdp-pg-<hash> and ${PDP_VAR_DIR:-./var}/pg is a symlink to it;
#   3. listens on 127.0.0.1:${PDP_PG_PORT:-54329} and a unix socket in that folder only;
#      fsync off: a throw-away test cluster, speed over durability;
#   4. starts it when it is not running; ensures role and database `pdp_test` with a password
#      kept in the cluster folder; checks a password login over TCP;
#   5. prints `postgresql+psycopg://pdp_test:<password>@127.0.0.1:<port>/pdp_test` on stdout
#      (the only line on stdout; progress and errors go to stderr).
# Stop it with infra/setup/postgres-stop.sh.
set -euo pipefail

VAR_DIR=${PDP_VAR_DIR:-./var}
PORT=${PDP_PG_PORT:-54329}
PG_USER=postgres
ROLE=pdp_test
DB=pdp_test

say() { echo "postgres.sh: $*" >&2; }
die() { echo "postgres.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it may install the package and runs the server as '$PG_USER')"
case "$PORT" in '' | *[!0-9]*) die "PDP_PG_PORT must be a port number" ;; esac

# Commands run as the postgres user from /, so a private working directory does not trouble them.
as_pg() {
    if command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        (cd / && su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")")
    fi
}

# Server binaries of major version $1, or of the newest version found.
find_bindir() {
    local want=${1:-} dir ctl
    if [ -n "$want" ]; then
        dir=/usr/lib/postgresql/$want/bin
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
        return 1
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    if ctl=$(command -v pg_ctl 2>/dev/null) && command -v initdb >/dev/null 2>&1; then
        dir=$(dirname "$(readlink -f "$ctl")")
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && { echo "$dir"; return 0; }
    fi
    return 1
}

install_server() {
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is not available"
    say "PostgreSQL server not found: installing the Debian package 'postgresql'"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends postgresql >&2 || die "apt-get install postgresql failed"
}

# --- one run at a time -------------------------------------------------------------------------
mkdir -p "$VAR_DIR"
VAR_DIR=$(cd "$VAR_DIR" && pwd -P)
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VAR_DIR/pg.lock"
    flock -w 300 9 || die "another postgres.sh run holds $VAR_DIR/pg.lock"
fi

# --- binaries ----------------------------------------------------------------------------------
BINDIR=$(find_bindir) || { install_server; BINDIR=$(find_bindir) || die "no server binaries after install"; }
id -u "$PG_USER" >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$PG_USER" ||
    die "cannot create the '$PG_USER' OS user"

# --- cluster folder ----------------------------------------------------------------------------
LINK=$VAR_DIR/pg
if [ ! -e "$LINK" ]; then
    install -d -o "$PG_USER" -g "$(id -gn "$PG_USER")" -m 700 "$LINK"
    # The socket path must fit in 107 bytes: "<dir>/run/.s.PGSQL.<port>".
    if ! as_pg test -x "$LINK" || [ $((${#LINK} + 24)) -gt 100 ]; then
        rmdir "$LINK"
        FALLBACK=/var/tmp/pdp-pg-$(printf '%s' "$VAR_DIR" | sha256sum | cut -c1-12)
        say "'$PG_USER' cannot use $LINK (private parent or long path): cluster in $FALLBACK"
        install -d -o "$PG_USER" -g "$(id -gn "$PG_USER")" -m 700 "$FALLBACK"
        ln -s "$FALLBACK" "$LINK"
    fi
fi
PG_DIR=$(readlink -f "$LINK")
DATA=$PG_DIR/data
SOCK=$PG_DIR/run
LOG=$PG_DIR/postgres.log
PWFILE=$PG_DIR/$ROLE.password
chown "$PG_USER:" "$PG_DIR"
chmod 700 "$PG_DIR"
as_pg test -w "$PG_DIR" || die "'$PG_USER' cannot write $PG_DIR; set PDP_VAR_DIR to a folder it can reach"

if [ -s "$DATA/PG_VERSION" ]; then
    MAJOR=$(cat "$DATA/PG_VERSION")
    BINDIR=$(find_bindir "$MAJOR") ||
        die "the cluster in $DATA needs PostgreSQL $MAJOR, not installed; remove $PG_DIR to recreate it"
else
    [ -e "$DATA" ] && { say "removing an unfinished cluster in $DATA"; rm -rf "$DATA"; }
    say "initialising a cluster in $DATA with $BINDIR"
    as_pg "$BINDIR/initdb" -D "$DATA" -U "$PG_USER" --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 ||
        { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed (log: $PG_DIR/initdb.log)"; }
    echo "include_if_exists = 'pdp.conf'" >>"$DATA/postgresql.conf"
fi
as_pg install -d -m 700 "$SOCK"
# Rewritten every run: the port and folders follow the current settings.
cat >"$DATA/pdp.conf" <<EOF
# Written by infra/setup/postgres.sh: private test cluster.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 50
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
chown "$PG_USER:" "$DATA/pdp.conf"

# --- running -----------------------------------------------------------------------------------
if as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "cluster already running ($DATA)"
else
    say "starting the cluster on 127.0.0.1:$PORT"
    # 9>&-: the server must not inherit the lock, or it would hold it for its lifetime.
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >&2 9>&- ||
        { tail -n 20 "$LOG" >&2 || true; die "the server did not start (log: $LOG)"; }
fi

# --- role and database -------------------------------------------------------------------------
if [ ! -s "$PWFILE" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$PWFILE")
fi
PASSWORD=$(cat "$PWFILE")
[ ${#PASSWORD} -ge 16 ] || die "bad password file $PWFILE; remove it and run again"
as_pg "$BINDIR/psql" -h "$SOCK" -p "$PORT" -U "$PG_USER" -d postgres -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL ||
\\set pw '$PASSWORD'
SELECT format('CREATE ROLE %I LOGIN', '$ROLE') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')
\\gexec
ALTER ROLE $ROLE WITH LOGIN PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', '$DB', '$ROLE')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')
\\gexec
SQL
    die "cannot create role/database $ROLE (log: $LOG)"

# The URL must work as printed: a password login over TCP.
PGPASSWORD=$PASSWORD "$BINDIR/psql" -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -X -qAt -c 'SELECT 1' >/dev/null ||
    die "password login to 127.0.0.1:$PORT/$DB as $ROLE failed"
say "ready: $DB on 127.0.0.1:$PORT"
echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"

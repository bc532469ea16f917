#!/usr/bin/env bash
# Start a PostgreSQL server for the tests (Debian's packages), idempotently.
# Listens on all addresses so kind pods can reach it through the docker bridge.
# Prints the admin URL the tests use (SCORER_TEST_DATABASE_URL).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGPORT="${PGPORT:-5432}"
PGUSER_NAME="${SCORER_TEST_PGUSER:-scorer}"
PGPASSWORD_VALUE="${SCORER_TEST_PGPASSWORD:-scorer-test-pw}"
DATA="${SCORER_TEST_PGDATA:-/var/tmp/scorer-pgdata}"  # the postgres user cannot enter /root

newest_initdb() { compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1; }
[[ -n $(newest_initdb) ]] || apt_install postgresql
BIN="$(dirname "$(newest_initdb)")"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if ! as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    pwfile="$(mktemp)"; printf '%s\n' "$PGPASSWORD_VALUE" >"$pwfile"; chmod 644 "$pwfile"
    as_postgres "$BIN/initdb" -D "$DATA" -U "$PGUSER_NAME" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '*'
port = $PGPORT
unix_socket_directories = '$DATA'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
CONF
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$DATA/pg_hba.conf"
  fi
  as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w start >/dev/null
fi
echo "postgresql://$PGUSER_NAME:$PGPASSWORD_VALUE@127.0.0.1:$PGPORT/postgres"

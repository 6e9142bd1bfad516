#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on loopback for sweeps and tests; print its URL on stdout.
#
#   scripts/start_postgres.sh [DATA_DIR] [PORT]   # start (initdb first if DATA_DIR is empty); prints the URL
#   scripts/start_postgres.sh --stop DATA_DIR     # stop it
#
# DATA_DIR defaults to a new /tmp/sciknow-pg.XXXXXX, PORT to 54329. The cluster trusts loopback connections
# (no password): it is for local experiments only. Run as root, the server runs as the `postgres` user.
set -euo pipefail

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
  echo "start_postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 3
fi

as_owner() {  # postgres refuses to run as root
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ "${1:-}" == "--stop" ]]; then
  as_owner "$PG_BIN/pg_ctl" -D "$2/data" -m fast stop >&2
  exit 0
fi

DIR=${1:-$(mktemp -d /tmp/sciknow-pg.XXXXXX)}
PORT=${2:-54329}
DB=sciknow
mkdir -p "$DIR"
[[ $(id -u) -eq 0 ]] && chown postgres: "$DIR"
if [[ ! -f "$DIR/data/PG_VERSION" ]]; then
  as_owner "$PG_BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
fi
as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=100" start >&2
as_owner "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
  || as_owner "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
echo "start_postgres.sh: data in $DIR (stop: $0 --stop $DIR)" >&2
echo "postgresql://postgres@127.0.0.1:$PORT/$DB"

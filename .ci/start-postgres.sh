#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the distributed-tuning tests.
# Prints the SQLAlchemy URL on stdout; logs go to stderr. Installs the Debian
# packages when the server binaries are missing (CI machines start bare).
set -euo pipefail
# A free loopback port unless one is given, so a stray server cannot collide.
PORT="${LESIONBOOST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
DATA_DIR="${LESIONBOOST_PG_DIR:-/tmp/lesionboost-pg}"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ]; then
  echo "installing postgresql from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(pg_bin)"
RUN_AS=()
if [ "$(id -u)" = 0 ]; then RUN_AS=(runuser -u postgres --); fi

if [ -f "$DATA_DIR/postmaster.pid" ]; then
  "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA_DIR" stop -m fast >&2 || true
fi
rm -rf "$DATA_DIR"
mkdir -p "$DATA_DIR"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA_DIR"
"${RUN_AS[@]}" "$BIN/initdb" -D "$DATA_DIR" -A trust -U postgres >/dev/null
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA_DIR" -l "$DATA_DIR/server.log" -w \
  -o "-h 127.0.0.1 -p $PORT -k $DATA_DIR" start >&2
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -q -c "CREATE DATABASE lesionboost_test;" >&2
echo "postgresql+psycopg2://postgres@127.0.0.1:$PORT/lesionboost_test"

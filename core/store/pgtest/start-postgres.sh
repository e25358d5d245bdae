#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for the test suite and prints its
# admin URL on stdout (everything else goes to stderr), so that CI can share
# one server between all test packages:
#
#   PGDIR=$(mktemp -d)
#   export PEAT_TEST_DATABASE_URL=$(bash core/store/pgtest/start-postgres.sh "$PGDIR")
#   trap 'bash core/store/pgtest/start-postgres.sh --stop "$PGDIR"' EXIT
#   go test ./...
#
# pgtest.URL then creates one database per test on that server and drops it
# afterwards. Durability is off (fsync, synchronous_commit): the data is
# thrown away. PEAT_PG_BIN overrides the binary directory, PGPORT the port
# (default: the first free one from 54329).
set -euo pipefail

BIN=${PEAT_PG_BIN:-/usr/lib/postgresql/15/bin}

# as_pg runs a command as the cluster owner: initdb and postgres refuse root.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

if [ "${1:-}" = "--stop" ]; then
	DIR=${2:?usage: start-postgres.sh --stop DIR}
	if [ -f "$DIR/data/postmaster.pid" ]; then
		as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
	fi
	rm -rf "$DIR"
	exit 0
fi

DIR=${1:-$(mktemp -d /tmp/peat-pg.XXXXXX)}
mkdir -p "$DIR"
if [ ! -x "$BIN/initdb" ]; then
	echo "start-postgres.sh: $BIN/initdb not found (apt-get install postgresql-15, or set PEAT_PG_BIN)" >&2
	exit 1
fi
if [ "$(id -u)" = 0 ]; then
	chown postgres: "$DIR"
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${PGPORT:-}
if [ -z "$PORT" ]; then
	for p in $(seq 54329 54429); do
		if ! port_in_use "$p"; then PORT=$p; break; fi
	done
fi
[ -n "$PORT" ] || { echo "start-postgres.sh: no free port" >&2; exit 1; }

if [ ! -f "$DIR/data/PG_VERSION" ]; then
	as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-locale --no-sync >&2
fi
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start \
	-o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >&2 ||
	{ cat "$DIR/postgres.log" >&2; exit 1; }

echo "postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"

#!/usr/bin/env bash
# Runs a command with PEAT_TEST_DATABASE_URL pointing at one throwaway
# PostgreSQL 15 cluster shared by every test package: started here unless the
# variable is already set, and stopped when the command ends.
set -euo pipefail
if [ -n "${PEAT_TEST_DATABASE_URL:-}" ]; then exec "$@"; fi
PGDIR=$(mktemp -d /tmp/peat-pg.XXXXXX)
chmod 755 "$PGDIR"
trap 'bash core/store/pgtest/start-postgres.sh --stop "$PGDIR" >/dev/null 2>&1 || true' EXIT
PEAT_TEST_DATABASE_URL=$(bash core/store/pgtest/start-postgres.sh "$PGDIR")
export PEAT_TEST_DATABASE_URL
echo "postgres for tests: ${PEAT_TEST_DATABASE_URL%%\?*}" >&2
"$@"

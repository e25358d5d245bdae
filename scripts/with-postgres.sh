#!/usr/bin/env bash
# Runs a command with PEAT_TEST_DATABASE_URL pointing at a throwaway
# PostgreSQL 15 cluster, started here unless the variable is already set, and
# stopped when the command ends.
set -euo pipefail
if [ -n "${PEAT_TEST_DATABASE_URL:-}" ]; then exec "$@"; fi
eval "$(bash core/store/pgtest/start-postgres.sh)"
trap 'bash core/store/pgtest/start-postgres.sh --stop >/dev/null 2>&1 || true' EXIT
"$@"

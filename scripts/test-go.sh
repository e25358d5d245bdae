#!/usr/bin/env bash
# Runs the Go suite verbosely into .test-go.log, prints package results and
# failures, and fails when any test was skipped: every dependency (Postgres,
# NATS, Kafka, wasm toolchains) is available here, so a skip hides a gap.
set -uo pipefail
log=.test-go.log
go test -count=1 -timeout 25m -v "$@" ./... >"$log" 2>&1
rc=$?
grep -E '^(ok|FAIL|panic:)|^--- FAIL' "$log"
if [ $rc -ne 0 ]; then
  echo "go test failed (full log in $log); failures:"
  grep -E -B2 -A20 -- '--- FAIL' "$log" | head -200
  exit $rc
fi
if grep -q -- '--- SKIP' "$log"; then
  echo "skipped tests are failures in this project:"
  grep -- '--- SKIP' "$log"
  exit 1
fi
pass=$(grep -c -- '--- PASS' "$log")
echo "go: $pass passed, 0 failed"

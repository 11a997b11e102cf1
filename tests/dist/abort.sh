#!/usr/bin/env bash
# One rank's failure ends the whole job with its message and exit code, fast, never a hang.
set -u
fail() { echo "FAIL: $*"; exit 1; }
run() { timeout 60 "$MPIEXEC" --oversubscribe --bind-to none "$@"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
run -np 2 "$ABORT_PROBE" >"$tmp/out" 2>&1; rc=$?
took=$(( $(date +%s) - start ))
cat "$tmp/out"
[ $rc -eq 2 ] || fail "abort_probe under 2 ranks exited $rc, expected 2"
grep -q "\[rank 1\]: error: simulated bad input on the last rank" "$tmp/out" || fail "message with the rank missing"
[ $took -lt 30 ] || fail "took ${took}s to abort"

run -np 3 "$ABORT_PROBE" >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 2 ] || fail "abort_probe under 3 ranks exited $rc, expected 2"
grep -q "\[rank 2\]" "$tmp/out" || fail "rank 2's message missing"

run -np 2 "$UNIDIFF_BIN" train --data="$tmp/missing.h5" --run_dir="$tmp/run" >"$tmp/out" 2>&1; rc=$?
cat "$tmp/out"
[ $rc -eq 2 ] || fail "train with a missing file under 2 ranks exited $rc, expected 2"
grep -q "missing.h5' does not exist" "$tmp/out" || fail "missing-file message"
[ ! -e "$tmp/run" ] || fail "a run directory was created for a failed start"
echo "abort: all checks passed"

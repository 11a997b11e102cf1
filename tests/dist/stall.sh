#!/usr/bin/env bash
# A stalled rank never hangs the job (dist/watchdog.h): past the collective timeout every waiting
# rank asks the others where they are and the job ends with exit 1, naming the collective, its
# communicator and the ranks that did not arrive, with what each said (or that it did not answer).
#   - stall_probe: the last rank computes (sleeps) past the timeout, on 2 and 3 ranks;
#   - the timeout 0 waits as long as it takes; a wait shorter than the timeout is no fault;
#   - `unidiff train` under mpirun -np 2 with --dist_timeout=3 and rank 1 stopped by SIGSTOP (what a
#     swapping, hung or debugger-held rank looks like): exit 1 within the timeout plus the 5 s the
#     question waits, naming rank 1 as silent.
set -u
fail() { echo "FAIL: $*"; exit 1; }
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# --- a late rank, 2 ranks: rank 1 sleeps 30 s, the timeout is 2 s ------------------------------------
start=$(date +%s)
timeout 60 "${mpi[@]}" -np 2 "$STALL_PROBE" 2 30 >"$tmp/out" 2>&1; rc=$?
took=$(( $(date +%s) - start ))
cat "$tmp/out"
[ $rc -eq 1 ] || fail "a late rank: exit $rc, expected 1"
grep -q "\[rank 0\]: error: all_reduce #2 on communicator \"world\" (4 elements) has waited [0-9.]* s (--dist_timeout=2) for the other ranks; ranks that did not arrive: 1$" "$tmp/out" \
  || fail "rank 0's message does not name the collective and rank 1"
grep -q "^  rank 1: computing, in no collective (its last, all_reduce #1 on communicator \"world\" (4 elements), ended [0-9.]* s ago)$" "$tmp/out" \
  || fail "rank 1's answer is missing"
[ $took -lt 20 ] || fail "took ${took} s to end a job whose timeout is 2 s"

# --- 3 ranks: ranks 0 and 1 wait, rank 2 is late; each waiting rank names only rank 2 --------------
timeout 60 "${mpi[@]}" -np 3 "$STALL_PROBE" 2 30 >"$tmp/out" 2>&1; rc=$?
cat "$tmp/out"
[ $rc -eq 1 ] || fail "3 ranks: exit $rc, expected 1"
grep -q "ranks that did not arrive: 2$" "$tmp/out" || fail "3 ranks: rank 2 not named alone"
if grep -q "did not arrive: .*[01]" "$tmp/out"; then fail "3 ranks: a waiting rank was named as not there"; fi

# --- no timeout, and a wait shorter than the timeout -------------------------------------------------
timeout 60 "${mpi[@]}" -np 2 "$STALL_PROBE" 0 3 >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "stall_probe: done, sum 4" "$tmp/out" || { cat "$tmp/out"; fail "--dist_timeout=0 did not wait"; }
timeout 60 "${mpi[@]}" -np 2 "$STALL_PROBE" 10 2 >"$tmp/out" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "stall_probe: done" "$tmp/out" || { cat "$tmp/out"; fail "a 2 s wait under a 10 s timeout failed"; }

# --- a rank of a training job stopped by SIGSTOP ------------------------------------------------------
"$UNIDIFF_BIN" data toy --dist=moons --num=2000 --seed=1 --out="$tmp/d.h5" >/dev/null 2>&1 || fail "toy data"
timeout 120 "${mpi[@]}" -np 2 "$UNIDIFF_BIN" train --data="$tmp/d.h5" --data_batch=64 --model_hidden=32 \
  --model_layers=2 --train_steps=1000000 --log_every=5 --threads=1 --dist_timeout=3 --run_dir="$tmp/run" \
  >"$tmp/train.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [ -s "$tmp/run/metrics.jsonl" ] && break
  sleep 0.05
done
[ -s "$tmp/run/metrics.jsonl" ] || { cat "$tmp/train.log"; fail "the training job did not start"; }
victim=""
for pid in $(pgrep -f "unidiff train .*--run_dir=$tmp/run"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
done
[ -n "$victim" ] || fail "rank 1's process not found"
start=$(date +%s)
kill -STOP "$victim"
wait $job; rc=$?
took=$(( $(date +%s) - start ))
kill -KILL "$victim" 2>/dev/null
cat "$tmp/train.log"
[ $rc -eq 1 ] || fail "a stopped rank: exit $rc, expected 1 (124: the job hung)"
grep -q "\[rank 0\]: error: all_reduce #[0-9]* on communicator \"group 'model' gradients\" ([0-9]* elements) has waited [0-9.]* s (--dist_timeout=3) for the other ranks; ranks that did not arrive: 1$" "$tmp/train.log" \
  || fail "the message does not name the collective, its group and rank 1"
grep -q "^  rank 1: no answer within 5 s (stopped, hung or dead)$" "$tmp/train.log" || fail "rank 1 not named as silent"
[ $took -lt 30 ] || fail "took ${took} s after the stop, timeout 3 s"
echo "stall: all checks passed (the stopped rank's job ended in ${took} s)"

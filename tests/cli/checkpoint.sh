#!/usr/bin/env bash
# Sharded checkpoints end to end with the real executable under mpirun:
#   - bit-exact resume: N steps straight vs N/2, stop, resume, N/2 more (1 rank; 2 ranks; 2 ranks
#     with ZeRO-1): every tensor of the final checkpoint and model.h5 identical;
#   - resume on another world size (2 -> 1, 1 -> 3, with ZeRO-1): within float tolerance of the
#     uninterrupted run;
#   - a rank killed (SIGKILL) in the middle of a save: `latest` still names the previous
#     checkpoint and the next run resumes from it, ending bit-identical;
#   - a corrupted shard is detected (CRC-32), named, and --resume=auto falls back to the previous
#     checkpoint and says so;
#   - SIGTERM and SIGUSR1 to one rank of `mpirun -np 2`, and SIGTERM to launcher/unidiff-launch
#     (which forwards SIGUSR1 to mpirun): checkpoint, exit code 75
#     (no MPI_Abort), and the resumed run matches
#     an uninterrupted one bit for bit;
#   - `unidiff ckpt info`; the h5py snippet of docs/checkpoints.md reads every checkpoint compared here;
#   - progressive distillation stopped mid-round and resumed: bit-exact on 1 and 2 ranks;
#   - a run resumed into divergence (--optim_lr=1e6, a checkpoint every step, 3 kept) exits 1 and
#     writes no checkpoint with a non-finite loss or weights: every kept one is finite, `latest` too.
set -euo pipefail
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/expect.sh"
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
"$bin" data toy --dist=moons --num=3000 --seed=1 --out="$tmp/d.h5" >/dev/null 2>&1
common=(--data="$tmp/d.h5" --data_batch=96 --model_hidden=32 --model_layers=2 --model_time_dim=16
        --optim_lr=2e-3 --optim_warmup=5 --ema_decay=0.9 --log_every=10 --threads=1)

# compare RUN_A RUN_B MODE: the final checkpoints tensor for tensor (tests/cli/compare_runs.sh).
. "$(dirname "$0")/compare_runs.sh"

# --- bit-exact resume, 1 rank, 2 ranks, 2 ranks with ZeRO-1 -----------------------------------
"$bin" train "${common[@]}" --train_steps=40 --run_dir="$tmp/straight1" >/dev/null 2>&1
set +e
"$bin" train "${common[@]}" --train_steps=40 --train_stop_at=20 --run_dir="$tmp/resumed1" >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 75 ] || { echo "--train_stop_at exited $rc, expected 75"; exit 1; }
[ "$(cat "$tmp/resumed1/checkpoints/latest")" = "step-000000020" ]
"$bin" train "${common[@]}" --train_steps=40 --run_dir="$tmp/resumed1" >"$tmp/out" 2>&1
grep -q "resumed from .*step-000000020" "$tmp/out"
compare "$tmp/straight1" "$tmp/resumed1" exact
for zero in false true; do
  "${mpi[@]}" -np 2 "$bin" train "${common[@]}" --optim_zero=$zero --train_steps=40 --run_dir="$tmp/s2$zero" >/dev/null 2>&1
  set +e
  "${mpi[@]}" -np 2 "$bin" train "${common[@]}" --optim_zero=$zero --train_steps=40 --train_stop_at=20 \
    --run_dir="$tmp/r2$zero" >/dev/null 2>&1; rc=$?
  set -e
  [ $rc -eq 75 ] || { echo "2-rank stop exited $rc"; exit 1; }
  "${mpi[@]}" -np 2 "$bin" train "${common[@]}" --optim_zero=$zero --train_steps=40 --run_dir="$tmp/r2$zero" >/dev/null 2>&1
  compare "$tmp/s2$zero" "$tmp/r2$zero" exact
done

# --- another world size: 2 -> 1 and 1 -> 3 (ZeRO-1 on both sides) -------------------------------
set +e
"${mpi[@]}" -np 2 "$bin" train "${common[@]}" --optim_zero=true --train_steps=40 --train_stop_at=20 \
  --run_dir="$tmp/w21" >/dev/null 2>&1
"$bin" train "${common[@]}" --optim_zero=true --train_steps=40 --train_stop_at=20 --run_dir="$tmp/w13" >/dev/null 2>&1
set -e
"$bin" train "${common[@]}" --optim_zero=true --train_steps=40 --run_dir="$tmp/w21" >/dev/null 2>&1
"${mpi[@]}" -np 3 "$bin" train "${common[@]}" --optim_zero=true --train_steps=40 --run_dir="$tmp/w13" >/dev/null 2>&1
compare "$tmp/straight1" "$tmp/w21" close 1e-4
compare "$tmp/straight1" "$tmp/w13" close 1e-4
"$bin" ckpt info --checkpoint="$tmp/w13" >"$tmp/out"
grep -q "written by 3 rank(s)" "$tmp/out"

# --- a rank killed in the middle of a save ------------------------------------------------------
set +e
UNIDIFF_TEST_KILL_IN_SAVE=1:30 "${mpi[@]}" -np 2 "$bin" train "${common[@]}" --train_steps=40 --save_every=10 \
  --run_dir="$tmp/killed" >/dev/null 2>&1; rc=$?
set -e
[ $rc -ne 0 ] || { echo "the killed job exited 0"; exit 1; }
[ "$(cat "$tmp/killed/checkpoints/latest")" = "step-000000020" ] || { echo "latest moved"; exit 1; }
[ ! -e "$tmp/killed/checkpoints/step-000000030/manifest.h5" ]
"${mpi[@]}" -np 2 "$bin" train "${common[@]}" --train_steps=40 --save_every=10 --run_dir="$tmp/killed" >"$tmp/out" 2>&1
grep -q "resumed from .*step-000000020" "$tmp/out"
compare "$tmp/s2false" "$tmp/killed" exact

# --- a corrupted shard ---------------------------------------------------------------------------
"$bin" train "${common[@]}" --train_steps=30 --save_every=10 --run_dir="$tmp/bad" >/dev/null 2>&1
shard="$tmp/bad/checkpoints/step-000000030/shard-00000.h5"
printf 'garbage' | dd of="$shard" bs=1 seek=4000 conv=notrunc status=none
expect 2 "shard-00000.h5' is corrupted" -- "$bin" ckpt info --checkpoint="$tmp/bad/checkpoints/step-000000030"
expect 2 "corrupted" -- "$bin" train "${common[@]}" --train_steps=40 \
  --resume="$tmp/bad/checkpoints/step-000000030" --run_dir="$tmp/bad"
"$bin" train "${common[@]}" --train_steps=40 --run_dir="$tmp/bad" >"$tmp/out" 2>&1
grep -q "unusable" "$tmp/out" && grep -q "resumed from .*step-000000020" "$tmp/out" || { cat "$tmp/out"; exit 1; }

# --- a changed setting is refused, naming it -----------------------------------------------------
expect 2 "data_batch: 96 -> 48" -- "$bin" train "${common[@]}" --data_batch=48 --train_steps=50 --run_dir="$tmp/bad"

# --- SIGTERM, then SIGUSR1, to one rank ------------------------------------------------------------
long=(--train_steps=400 --log_every=5)
"${mpi[@]}" -np 2 "$bin" train "${common[@]}" "${long[@]}" --run_dir="$tmp/sig_straight" >/dev/null 2>&1
for sig in TERM USR1; do
  run="$tmp/sig$sig"
  "${mpi[@]}" -np 2 "$bin" train "${common[@]}" "${long[@]}" --run_dir="$run" >"$tmp/sig.log" 2>&1 &
  job=$!
  for _ in $(seq 200); do
    [ -s "$run/metrics.jsonl" ] && break
    sleep 0.05
  done
  victim=$(pgrep -f "unidiff train.*$run\$" | tail -1 || true)
  [ -z "$victim" ] && victim=$(pgrep -f "run_dir=$run" | grep -v "^$job\$" | tail -1)
  kill -$sig "$victim"
  set +e
  wait $job; rc=$?
  set -e
  if [ $rc -ne 75 ]; then echo "SIG$sig run exited $rc, expected 75"; cat "$tmp/sig.log"; exit 1; fi
  number=$(kill -l $sig)
  grep -q "on signal $number" "$tmp/sig.log" || { cat "$tmp/sig.log"; echo "no stop on signal $number"; exit 1; }
  "${mpi[@]}" -np 2 "$bin" train "${common[@]}" "${long[@]}" --run_dir="$run" >/dev/null 2>&1
  compare "$tmp/sig_straight" "$run" exact
done
# --- SIGTERM to the launcher (what schedulers and Ctrl-C send to mpirun) ---------------------------
# unidiff-launch turns it into SIGUSR1 for mpirun, which forwards it: both ranks stop after the same
# step, checkpoint and exit 75 through MPI_Finalize (no MPI_ABORT); resumed, the run ends equal to
# an uninterrupted one bit for bit.
UNIDIFF_BIN="$bin" "$UNIDIFF_SOURCE_DIR/launcher/unidiff-launch" -np 2 -x OMP_NUM_THREADS=1 train "${common[@]}" \
  "${long[@]}" --run_dir="$tmp/launch" >"$tmp/launch.log" 2>&1 &
job=$!
for _ in $(seq 200); do
  [ -s "$tmp/launch/metrics.jsonl" ] && break
  sleep 0.05
done
kill -TERM $job
set +e
wait $job; rc=$?
set -e
if [ $rc -ne 75 ]; then echo "SIGTERM to unidiff-launch exited $rc, expected 75"; cat "$tmp/launch.log"; exit 1; fi
grep -q "stopped after step .* on signal 10" "$tmp/launch.log"
if grep -q "MPI_ABORT" "$tmp/launch.log"; then echo "a clean stop went through MPI_Abort"; exit 1; fi
"${mpi[@]}" -np 2 "$bin" train "${common[@]}" "${long[@]}" --run_dir="$tmp/launch" >/dev/null 2>&1
compare "$tmp/sig_straight" "$tmp/launch" exact
# --- progressive distillation stopped mid-round, resumed: bit-exact (1 rank and 2 ranks) --------
"$bin" train "${common[@]}" --prediction=v --train_steps=30 --run_dir="$tmp/teacher" >/dev/null 2>&1
pd=(--method=progressive --pd_teacher="$tmp/teacher" --pd_start_steps=8 --pd_end_steps=2
    --pd_round_steps=20 --eval_samples=0 --data="$tmp/d.h5" --data_batch=96 --log_every=10
    --optim_lr=1e-3 --optim_warmup=0 --optim_decay=constant --ema_decay=0.9 --threads=1)
for np in 1 2; do
  "${mpi[@]}" -np $np "$bin" train "${pd[@]}" --run_dir="$tmp/pd_straight$np" >/dev/null 2>&1
  set +e
  "${mpi[@]}" -np $np "$bin" train "${pd[@]}" --train_stop_at=30 --run_dir="$tmp/pd$np" >/dev/null 2>&1; rc=$?
  set -e
  [ $rc -eq 75 ] || { echo "PD stop exited $rc"; exit 1; }
  "${mpi[@]}" -np $np "$bin" train "${pd[@]}" --run_dir="$tmp/pd$np" >"$tmp/out" 2>&1
  grep -q "round of 2 steps, step 10" "$tmp/out" || { cat "$tmp/out"; exit 1; }
  compare "$tmp/pd_straight$np" "$tmp/pd$np" close_exact
  cmp "$tmp/pd_straight$np/student-2.h5" "$tmp/pd$np/student-2.h5" >/dev/null ||
    "$UNIDIFF_PYTHON" - "$tmp/pd_straight$np/student-2.h5" "$tmp/pd$np/student-2.h5" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p) for p in sys.argv[1:3])
for g in ("params", "ema"):
    for k in a[g]:
        assert np.array_equal(a[g][k][...], b[g][k][...]), f"student-2.h5 {g}/{k} differs"
PY
done
# --- divergence never commits non-finite weights --------------------------------------------
"$bin" train "${common[@]}" --train_steps=8 --save_every=4 --run_dir="$tmp/div" >/dev/null 2>&1
expect 1 "training diverged: [0-9]+ non-finite step.*every checkpoint holds finite weights" -- "$bin" train "${common[@]}" --train_steps=200 \
  --save_every=1 --log_every=1000 --optim_lr=1e6 --allow_config_change --run_dir="$tmp/div"
"$UNIDIFF_PYTHON" - "$tmp" "$tmp/div" <<'PY'
import sys, os, numpy as np
sys.path.insert(0, sys.argv[1]); from read_ckpt import read_checkpoint
d = os.path.join(sys.argv[2], "checkpoints")
kept = sorted(x for x in os.listdir(d) if x.startswith("step-"))
latest = open(os.path.join(d, "latest")).read().strip()
for name in kept:
    bad = [k for k, v in read_checkpoint(os.path.join(d, name)).items()
           if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.isfinite(v).all()]
    assert not bad, f"{name} holds non-finite {bad[:3]}"
assert latest in kept, (latest, kept)
print(f"divergence: checkpoints {kept} all finite, latest {latest}")
PY
echo "checkpoint: all checks passed"

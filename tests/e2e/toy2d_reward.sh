#!/usr/bin/env bash
# The reward fine-tuning family end to end under `mpirun -np 2` on moons, from the shared teacher
# (toy_teacher.sh) as the starting policy, on the distance reward r = -||x - (2, 0.5)|| of the
# toy recipes: each recipe trained (DDPO and DRWR 10 epochs of 256 rollouts, ReFL, DRaFT and QSM 100
# steps of 64), its result sampled with its own sampler (20 trailing DDIM steps, eta 1: the
# rollouts' own) by `unidiff sample --checkpoint=RUN --seed=1`, and its mean reward measured by
# `unidiff eval --reward` beside the teacher's with the same sampler and seed. Must hold: every
# method raises the mean reward by at least `gain` (below; about half of what each raised it by
# when the test was written, docs/methods.md), and DDPO's run leaves RUN_DIR/reward.png and each
# epoch's reward in metrics.jsonl. The table goes to stdout (docs/methods.md copies it).
#   toy2d_reward.sh TEACHER_DIR
set -euo pipefail
teacher_dir=$1
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data=$teacher_dir/data.h5
recipes=$UNIDIFF_SOURCE_DIR/experiments/recipes
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2)
reward=(--reward=distance --reward_target=2,0.5)
mean_reward() {  # mean_reward SAMPLES
  "$UNIDIFF_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])['reward_mean'])" \
    "$("$bin" eval --samples="$1" "${reward[@]}")"
}
"$bin" sample --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=20 --spacing=trailing --eta=1 --num=2000 \
  --seed=1 --out="$tmp/teacher.h5" >/dev/null 2>&1
base=$(mean_reward "$tmp/teacher.h5")
printf '%-8s %8s %10s %8s\n' method steps reward gain
printf '%-8s %8s %10.4f %8s\n' teacher - "$base" -
status=0
run() {  # run METHOD MIN_GAIN EXTRA...
  local m=$1 gain=$2; shift 2
  local start=$SECONDS
  "${mpi[@]}" "$bin" train --flagfile="$recipes/toy2d_$m.flags" --init_from="$teacher_dir/teacher" --data="$data" \
    --run_dir="$tmp/$m" "$@" >"$tmp/$m.log" 2>&1 || { cat "$tmp/$m.log"; exit 1; }
  local secs=$((SECONDS - start))
  "$bin" sample --checkpoint="$tmp/$m" --num=2000 --seed=1 --out="$tmp/$m.h5" >"$tmp/$m-sample.log" 2>&1
  grep -q "samples with ddim, 20 of T = 1000 steps (trailing), eta 1," "$tmp/$m-sample.log" || {
    echo "$m: not sampled with the rollouts' sampler:"; cat "$tmp/$m-sample.log"; exit 1; }
  local r; r=$(mean_reward "$tmp/$m.h5")
  local steps; steps=$(grep -o 'step [0-9]*/[0-9]*' "$tmp/$m.log" | tail -1 | cut -d/ -f2)
  printf '%-8s %8s %10.4f %8.4f   (%ss on 2 ranks)\n' "$m" "$steps" "$r" "$("$UNIDIFF_PYTHON" -c "print($r - $base)")" \
    "$secs"
  if ! "$UNIDIFF_PYTHON" -c "import sys; sys.exit(0 if $r - $base >= $gain else 1)"; then
    echo "FAIL: $m raised the mean reward by $("$UNIDIFF_PYTHON" -c "print($r - $base)"), expected >= $gain"
    status=1
  fi
}
run ddpo 0.6 --rl_epochs=10
run drwr 0.5 --rl_epochs=10
run refl 1.0 --train_steps=100
run draft 1.0 --train_steps=100
run qsm 0.9 --train_steps=100
test -s "$tmp/ddpo/reward.png" || { echo "FAIL: no reward.png"; status=1; }
[ "$(grep -c '"reward_mean"' "$tmp/ddpo/metrics.jsonl")" -ge 5 ] || { echo "FAIL: reward_mean not logged"; status=1; }
exit $status

#!/usr/bin/env bash
# InstaFlow end to end under `mpirun -np 2` from the shared v-prediction DDPM teacher
# (toy_teacher.sh): 20,000 pairs from its deterministic DDIM (50 steps, eta 0), reflow on the
# teacher's chain in the w-prediction (toy2d_instaflow, from the teacher's weights), then one-step
# distillation (toy2d_instaflow_distill). Sampled by `unidiff sample` with the model's own sampler
# (instaflow, Algorithms 6-8) and evaluated on fresh noise as the mean sliced Wasserstein distance
# of four draws (sw_rows.sh). Must hold: the one-step InstaFlow within 2x of the pairs' own
# distance (the teacher's 50-step DDIM, their ceiling) and under a third of the teacher's one-step
# DDIM. The table goes to stdout (docs/methods.md copies it).
#   toy2d_instaflow.sh TEACHER_DIR
set -euo pipefail
teacher_dir=$1
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data=$teacher_dir/data.h5
recipes=$UNIDIFF_SOURCE_DIR/experiments/recipes
run() { "$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2 "$bin" train "$@" >"$tmp/train.log" 2>&1 ||
          { cat "$tmp/train.log"; exit 1; }; }
"$bin" sample --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=50 --eta=0 --num=20000 --seed=7 \
  --out="$tmp/pairs.h5" >/dev/null
run --flagfile="$recipes/toy2d_instaflow.flags" --data="$tmp/pairs.h5" --init_from="$teacher_dir/teacher" \
  --run_dir="$tmp/instaflow"
grep -q "reflow on a DDPM chain" "$tmp/train.log"
run --flagfile="$recipes/toy2d_instaflow_distill.flags" --data="$tmp/pairs.h5" --init_from="$tmp/instaflow" \
  --run_dir="$tmp/onestep"
. "$(dirname "$0")/sw_rows.sh"
sw_fresh moons
sw_measure teacher-ddim 1 --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=1 --spacing=trailing
sw_measure pairs-ddim 50 --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=50 --eta=0
sw_measure instaflow-reflow 1 --checkpoint="$tmp/instaflow" --steps=1
sw_measure instaflow-reflow 4 --checkpoint="$tmp/instaflow" --steps=4
sw_measure instaflow-1step 1 --checkpoint="$tmp/onestep" --steps=1
# The one-step model's own default: instaflow, one trailing step.
"$bin" sample --checkpoint="$tmp/onestep" --num=16 --out="$tmp/s.h5" >"$tmp/sample.log" 2>&1
grep -q "samples with instaflow, 1 of T = 1000 steps (trailing)" "$tmp/sample.log" || { cat "$tmp/sample.log"; exit 1; }
"$UNIDIFF_PYTHON" "$(dirname "$0")/sw_table.py" "$tmp/rows.txt" \
  "instaflow-1step:1 <= 2 pairs-ddim:50" \
  "instaflow-1step:1 <= 0.3333 teacher-ddim:1"

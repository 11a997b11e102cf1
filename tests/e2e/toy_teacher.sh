#!/usr/bin/env bash
# The shared teacher of the distillation (and reward) tests, made once per test run as a ctest
# fixture: 20,000 moons (seed 1; or another toy set) and a v-prediction toy2d_ddpm (2,000 steps,
# 2 ranks) in DIR.
#   toy_teacher.sh DIR [DIST]   ->  DIR/data.h5, DIR/teacher/model.h5
set -euo pipefail
dir=$1
dist=${2:-moons}
rm -rf "$dir" && mkdir -p "$dir"
"$UNIDIFF_BIN" data toy --dist="$dist" --num=20000 --seed=1 --out="$dir/data.h5"
"$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2 "$UNIDIFF_BIN" train \
  --flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/toy2d_ddpm.flags" --prediction=v \
  --train_steps=2000 --data="$dir/data.h5" --run_dir="$dir/teacher"
test -s "$dir/teacher/model.h5"

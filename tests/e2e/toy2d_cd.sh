#!/usr/bin/env bash
# Consistency distillation and LCM end to end under `mpirun -np 2` on moons, from the shared
# v-prediction teacher (toy_teacher.sh): the toy2d_cd and toy2d_lcm recipes trained, their results
# sampled by `unidiff sample --checkpoint=RUN` with their own sampler (lcm at the trailing steps),
# CD in one and two steps, LCM in four (its default) and two; the mean sliced Wasserstein distance
# of four draws (sw_rows.sh) against fresh data's and against the teacher's DDIM with the same
# number of steps. Must hold: CD in one and two steps and LCM in four within 2x of fresh data. The
# table goes to stdout (docs/methods.md copies it).
#   toy2d_cd.sh TEACHER_DIR [DIST]   (DIST: the teacher's toy set, moons by default)
set -euo pipefail
teacher_dir=$1
dist=${2:-moons}
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data=$teacher_dir/data.h5
recipes=$UNIDIFF_SOURCE_DIR/experiments/recipes
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2)
. "$(dirname "$0")/sw_rows.sh"
sw_fresh "$dist"
for n in 1 2 4; do sw_measure "teacher-ddim" $n --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=$n --spacing=trailing; done
"${mpi[@]}" "$bin" train --flagfile="$recipes/toy2d_cd.flags" --teacher="$teacher_dir/teacher" --data="$data" \
  --run_dir="$tmp/cd" >"$tmp/cd.log" 2>&1 || { cat "$tmp/cd.log"; exit 1; }
sw_measure cd 1 --checkpoint="$tmp/cd" --steps=1
sw_measure cd 2 --checkpoint="$tmp/cd"
"${mpi[@]}" "$bin" train --flagfile="$recipes/toy2d_lcm.flags" --teacher="$teacher_dir/teacher" --data="$data" \
  --run_dir="$tmp/lcm" >"$tmp/lcm.log" 2>&1 || { cat "$tmp/lcm.log"; exit 1; }
sw_measure lcm 4 --checkpoint="$tmp/lcm"
sw_measure lcm 2 --checkpoint="$tmp/lcm" --steps=2
"$UNIDIFF_PYTHON" "$(dirname "$0")/sw_table.py" "$tmp/rows.txt" \
  "cd:1 <= 2 fresh-data:0" \
  "cd:2 <= 2 fresh-data:0" \
  "lcm:4 <= 2 fresh-data:0"

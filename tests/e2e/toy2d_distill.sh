#!/usr/bin/env bash
# The distribution-matching family and ADD end to end under `mpirun -np 2` on moons, from the shared
# v-prediction teacher (toy_teacher.sh): each recipe trained, its result sampled with its own
# sampler by `unidiff sample --checkpoint=RUN` (four draws of 2,000: sampling seeds 1-4), the mean
# sliced Wasserstein distance to the data against that of fresh data (seeds 11-14), and of the
# teacher with the same number of DDIM steps. Must hold: the one-step DMD2 generator within 2x of
# fresh data and under a tenth of the teacher's one-step DDIM; DMD (v1, with teacher pairs) within
# 2x; the four-step DMD2 generator within 2x; VSD and ADD within 3x. SDS is recorded, not held
# (mode-seeking). The table goes to stdout (docs/methods.md copies it).
#   toy2d_distill.sh TEACHER_DIR
set -euo pipefail
teacher_dir=$1
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data=$teacher_dir/data.h5
recipes=$UNIDIFF_SOURCE_DIR/experiments/recipes
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2)
# DMD's pairs: the teacher's deterministic samples (DDIM, 50 steps, eta 0) of keyed noise.
"$bin" sample --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=50 --eta=0 --num=4096 --seed=7 \
  --out="$tmp/pairs.h5" >/dev/null
. "$(dirname "$0")/sw_rows.sh"
sw_fresh moons
for n in 1 4 50; do sw_measure "teacher-ddim" $n --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=$n --spacing=trailing; done
train() {  # train NAME RECIPE EXTRA...
  local name=$1 recipe=$2; shift 2
  "${mpi[@]}" "$bin" train --flagfile="$recipes/$recipe.flags" --teacher="$teacher_dir/teacher" --data="$data" \
    --run_dir="$tmp/$name" "$@" >"$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; exit 1; }
}
train dmd2 toy2d_dmd;            sw_measure dmd2 1 --checkpoint="$tmp/dmd2"
train dmd2-4 toy2d_dmd4;         sw_measure dmd2-4 4 --checkpoint="$tmp/dmd2-4"
train dmd toy2d_dmd_v1 --dmd_pairs="$tmp/pairs.h5"; sw_measure dmd 1 --checkpoint="$tmp/dmd"
train vsd toy2d_vsd;             sw_measure vsd 1 --checkpoint="$tmp/vsd"
train sds toy2d_sds;             sw_measure sds 1 --checkpoint="$tmp/sds"
train add toy2d_add;             sw_measure add 4 --checkpoint="$tmp/add"; sw_measure add 1 --checkpoint="$tmp/add" --steps=1
# The generators' logs carry each loss of the method.
grep -q "loss_gan" "$tmp/dmd2/metrics.jsonl" && grep -q "loss_reg" "$tmp/dmd/metrics.jsonl"
"$UNIDIFF_PYTHON" "$(dirname "$0")/sw_table.py" "$tmp/rows.txt" \
  "dmd2:1 <= 2 fresh-data:0" \
  "dmd2:1 <= 0.1 teacher-ddim:1" \
  "dmd2-4:4 <= 2 fresh-data:0" \
  "dmd:1 <= 2 fresh-data:0" \
  "vsd:1 <= 3 fresh-data:0" \
  "add:4 <= 3 fresh-data:0"

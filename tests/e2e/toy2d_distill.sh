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
: >"$tmp/rows.txt"
measure() {  # measure NAME NFE SAMPLE_ARGS... : mean SW over four draws
  local name=$1 nfe=$2; shift 2
  local sum=0
  for k in 1 2 3 4; do
    "$bin" sample "$@" --num=2000 --seed=$k --out="$tmp/s.h5" >/dev/null 2>&1
    sum=$("$UNIDIFF_PYTHON" -c "import json,sys; print($sum + json.loads(sys.argv[1])['sliced_wasserstein'])" \
      "$("$bin" eval --samples="$tmp/s.h5" --reference="$data")")
  done
  echo "$name $nfe $("$UNIDIFF_PYTHON" -c "print($sum / 4)")" >>"$tmp/rows.txt"
}
for k in 1 2 3 4; do
  "$bin" data toy --dist=moons --num=2000 --seed=$((10 + k)) --out="$tmp/fresh$k.h5"
done
sum=0
for k in 1 2 3 4; do
  sum=$("$UNIDIFF_PYTHON" -c "import json,sys; print($sum + json.loads(sys.argv[1])['sliced_wasserstein'])" \
    "$("$bin" eval --samples="$tmp/fresh$k.h5" --reference="$data")")
done
echo "fresh-data 0 $("$UNIDIFF_PYTHON" -c "print($sum / 4)")" >>"$tmp/rows.txt"
for n in 1 4 50; do measure "teacher-ddim" $n --checkpoint="$teacher_dir/teacher" --sampler=ddim --steps=$n --spacing=trailing; done
train() {  # train NAME RECIPE EXTRA...
  local name=$1 recipe=$2; shift 2
  "${mpi[@]}" "$bin" train --flagfile="$recipes/$recipe.flags" --teacher="$teacher_dir/teacher" --data="$data" \
    --run_dir="$tmp/$name" "$@" >"$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; exit 1; }
}
train dmd2 toy2d_dmd;            measure dmd2 1 --checkpoint="$tmp/dmd2"
train dmd2-4 toy2d_dmd4;         measure dmd2-4 4 --checkpoint="$tmp/dmd2-4"
train dmd toy2d_dmd_v1 --dmd_pairs="$tmp/pairs.h5"; measure dmd 1 --checkpoint="$tmp/dmd"
train vsd toy2d_vsd;             measure vsd 1 --checkpoint="$tmp/vsd"
train sds toy2d_sds;             measure sds 1 --checkpoint="$tmp/sds"
train add toy2d_add;             measure add 4 --checkpoint="$tmp/add"; measure add 1 --checkpoint="$tmp/add" --steps=1
# The generators' logs carry each loss of the method.
grep -q "loss_gan" "$tmp/dmd2/metrics.jsonl" && grep -q "loss_reg" "$tmp/dmd/metrics.jsonl"
"$UNIDIFF_PYTHON" - "$tmp/rows.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
sw = {(r[0], int(r[1])): float(r[2]) for r in rows}
floor = sw[("fresh-data", 0)]
print("| method | NFE | sliced Wasserstein (mean of 4 draws) | / fresh data |")
print("|---|---|---|---|")
for (name, nfe), v in sw.items():
    print(f"| {name} | {nfe} | {v:.4f} | {v / floor:.2f} |")
ok = True
def need(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok = ok and cond
need(sw[("dmd2", 1)] <= 2 * floor, "DMD2, 1 step, within 2x of fresh data")
need(sw[("dmd2", 1)] <= sw[("teacher-ddim", 1)] / 10, "DMD2, 1 step, under a tenth of the teacher's 1-step DDIM")
need(sw[("dmd2-4", 4)] <= 2 * floor, "DMD2, 4 steps, within 2x of fresh data")
need(sw[("dmd", 1)] <= 2 * floor, "DMD (regression on pairs), 1 step, within 2x of fresh data")
need(sw[("vsd", 1)] <= 3 * floor, "VSD, 1 step, within 3x of fresh data")
need(sw[("add", 4)] <= 3 * floor, "ADD, 4 steps, within 3x of fresh data")
sys.exit(0 if ok else 1)
PY

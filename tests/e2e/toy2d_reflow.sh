#!/usr/bin/env bash
# Reflow and one-step distillation end to end under `mpirun -np 2`: a rectified flow (toy2d_rf),
# 20,000 (sample, noise) pairs from its 100-step Euler ODE, a reflow round on the pairs
# (toy2d_reflow, from the flow's weights), then one-step distillation (toy2d_rf_distill). With one
# Euler step the reflowed flow and the distilled generator must be much closer to the data than
# the first flow (at most a third of its distance) and about as close as the pairs they learnt
# from (at most 1.3x the pairs' distance: the teacher's ODE is their ceiling).
set -euo pipefail
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() { "$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2 "$bin" train "$@"; }
recipes=$UNIDIFF_SOURCE_DIR/experiments/recipes
"$bin" data toy --dist=moons --num=20000 --seed=1 --out="$tmp/data.h5"
run --flagfile="$recipes/toy2d_rf.flags" --data="$tmp/data.h5" --run_dir="$tmp/rf"
"$bin" sample --checkpoint="$tmp/rf" --sampler=euler --steps=100 --num=20000 --seed=7 --out="$tmp/pairs.h5"
run --flagfile="$recipes/toy2d_reflow.flags" --data="$tmp/pairs.h5" --init_from="$tmp/rf" --run_dir="$tmp/reflow"
run --flagfile="$recipes/toy2d_rf_distill.flags" --data="$tmp/pairs.h5" --init_from="$tmp/reflow" --run_dir="$tmp/onestep"
# Fresh noise (seed 3) for every evaluation: nothing is evaluated on its own training pairs.
sw() {
  "$bin" sample --checkpoint="$tmp/$1" --sampler=euler --steps="$2" --num=2000 --seed=3 --out="$tmp/s.h5" >/dev/null
  "$bin" eval --samples="$tmp/s.h5" --reference="$tmp/data.h5"
}
"$UNIDIFF_PYTHON" - "$(sw rf 1)" "$(sw rf 100)" "$(sw reflow 1)" "$(sw onestep 1)" <<'PY'
import json, sys
rf1, pairs, reflow1, one = (json.loads(s)["sliced_wasserstein"] for s in sys.argv[1:5])
print(f"SW to the data with 1 Euler step: 1-rectified flow {rf1:.4f}, reflowed {reflow1:.4f}, "
      f"distilled {one:.4f}; the pairs' ODE (100 steps) {pairs:.4f}")
ok = all(v <= rf1 / 3 and v <= 1.3 * pairs for v in (reflow1, one))
sys.exit(0 if ok else 1)
PY

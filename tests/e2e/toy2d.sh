#!/usr/bin/env bash
# End to end, as a user runs it: make a toy dataset, train a toy recipe under `mpirun -np 2`, draw
# 2,000 samples with the given sampler flags, and evaluate. The model must reach a sliced
# Wasserstein distance to the training data within 2x (UNIDIFF_SW_RATIO) of that of 2,000 fresh
# samples of the same distribution (the distance of the data to itself at this sample size).
#   toy2d.sh TOY RECIPE [SAMPLER FLAGS...]
set -euo pipefail
toy=$1
recipe=$2
shift 2
sampler=("$@")
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" data toy --dist="$toy" --num=20000 --seed=1 --out="$tmp/data.h5"
"$bin" data toy --dist="$toy" --num=2000 --seed=4 --out="$tmp/fresh.h5"
"$MPIEXEC" --oversubscribe --bind-to none -np 2 "$bin" train \
  --flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/$recipe.flags" \
  --data="$tmp/data.h5" --run_dir="$tmp/run"
"$bin" sample --checkpoint="$tmp/run" "${sampler[@]}" --num=2000 --seed=3 --out="$tmp/samples.h5"
model=$("$bin" eval --samples="$tmp/samples.h5" --reference="$tmp/data.h5")
floor=$("$bin" eval --samples="$tmp/fresh.h5" --reference="$tmp/data.h5")
echo "model: $model"
echo "data:  $floor"
"$UNIDIFF_PYTHON" - "$model" "$floor" "$recipe ${sampler[*]}" "${UNIDIFF_SW_RATIO:-2}" <<'PY'
import json, sys
m, f = (json.loads(s)["sliced_wasserstein"] for s in sys.argv[1:3])
r = float(sys.argv[4])
print(f"{sys.argv[3]}: SW(model, data) = {m:.4f}; SW(fresh data, data) = {f:.4f}; ratio {m / f:.2f} (must be <= {r})")
sys.exit(0 if m <= r * f else 1)
PY
# The training log landed where promised.
test -s "$tmp/run/metrics.jsonl"
test -s "$tmp/run/config.flags"

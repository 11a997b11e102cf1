#!/usr/bin/env bash
# End to end, as a user runs it: make a toy dataset, train a toy recipe (toy2d_ddpm by default,
# toy2d_rf for rectified flow) under `mpirun -np 2`, draw 2,000 samples (DDPM ancestral sampler by
# default, or the given sampler flags), and evaluate. The model must
# learn: the sliced Wasserstein distance of its samples to the data is at most a third of that of
# a standard Gaussian to the data.
#   toy2d_ddpm.sh TOY [RECIPE [SAMPLER FLAGS...]]  (default: toy2d_ddpm, --sampler=ddpm)
set -euo pipefail
toy=$1
recipe=${2:-toy2d_ddpm}
shift $(( $# >= 2 ? 2 : $# ))
sampler=("$@")
[ ${#sampler[@]} -gt 0 ] || sampler=(--sampler=ddpm)
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" data toy --dist="$toy" --num=20000 --seed=1 --out="$tmp/data.h5"
"$bin" data toy --dist=gaussian --num=2000 --seed=2 --out="$tmp/gauss.h5"
"$MPIEXEC" --oversubscribe --bind-to none -np 2 "$bin" train \
  --flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/$recipe.flags" \
  --data="$tmp/data.h5" --run_dir="$tmp/run"
"$bin" sample --checkpoint="$tmp/run" "${sampler[@]}" --num=2000 --seed=3 --out="$tmp/samples.h5"
model=$("$bin" eval --samples="$tmp/samples.h5" --reference="$tmp/data.h5")
base=$("$bin" eval --samples="$tmp/gauss.h5" --reference="$tmp/data.h5")
echo "model:    $model"
echo "gaussian: $base"
"$UNIDIFF_PYTHON" - "$model" "$base" <<'PY'
import json, sys
m, b = (json.loads(s)["sliced_wasserstein"] for s in sys.argv[1:3])
print(f"SW(model, data) = {m:.4f}; SW(gaussian, data) = {b:.4f}; ratio {m / b:.3f} (must be <= 1/3)")
sys.exit(0 if m <= b / 3 else 1)
PY
# The training log landed where promised.
test -s "$tmp/run/metrics.jsonl"
test -s "$tmp/run/config.flags"

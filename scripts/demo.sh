#!/usr/bin/env bash
# The main job on its built-in default: set-up, then the toy 2-D DDPM end to end: make the moons
# dataset, train the toy2d_ddpm recipe on 2 ranks with mpirun, draw 2,000 samples, evaluate them
# against the data and a standard Gaussian, and say where the plot is. A few minutes on 2 cores.
#   UNIDIFF_DEMO_DIST   toy distribution (default moons)
#   UNIDIFF_DEMO_DIR    output folder (default runs/demo-<dist>)
#   UNIDIFF_DEMO_RANKS  data-parallel ranks (default 2)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=setup.sh
source "$repo/scripts/setup.sh"
dist=${UNIDIFF_DEMO_DIST:-moons}
out=${UNIDIFF_DEMO_DIR:-$repo/runs/demo-$dist}
bin=$UNIDIFF_BIN
mkdir -p "$out"
step() { printf '\n== %s\n' "$*" >&2; }

step "data: 20,000 samples of '$dist'"
"$bin" data toy --dist="$dist" --num=20000 --seed=1 --out="$out/data.h5"
"$bin" data toy --dist=gaussian --num=2000 --seed=2 --out="$out/gaussian.h5"

step "train: toy2d_ddpm recipe on ${UNIDIFF_DEMO_RANKS:-2} ranks"
"$repo/launcher/unidiff-launch" -np "${UNIDIFF_DEMO_RANKS:-2}" train \
  --flagfile="$repo/experiments/recipes/toy2d_ddpm.flags" \
  --data="$out/data.h5" --run_dir="$out/run" --overwrite

step "sample: 2,000 samples, DDPM ancestral, 1000 steps"
"$bin" sample --checkpoint="$out/run" --sampler=ddpm --num=2000 --seed=3 \
  --out="$out/samples.h5" --plot_reference="$out/data.h5"

step "eval: sliced Wasserstein and MMD to the data (a standard Gaussian for scale)"
model=$("$bin" eval --samples="$out/samples.h5" --reference="$out/data.h5")
base=$("$bin" eval --samples="$out/gaussian.h5" --reference="$out/data.h5")
echo "model:    $model"
echo "gaussian: $base"
"$UNIDIFF_VENV/bin/python" - "$model" "$base" <<'PY'
import json, sys
m, b = (json.loads(s)["sliced_wasserstein"] for s in sys.argv[1:3])
print(f"sliced Wasserstein to the data: model {m:.4f}, standard Gaussian {b:.4f} ({b / m:.1f}x worse)")
PY
printf '\nplot: %s\nrun:  %s (config.flags, metrics.jsonl, model.h5)\n' "$out/samples.png" "$out/run"
